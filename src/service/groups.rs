//! Group searches (`/points/search/groups`, `/points/query/groups`): the best hits of a search,
//! grouped by a payload value, at most `group_size` per group, the `limit` groups whose best hit
//! is best, as Qdrant answers them.
//!
//! A group's id is a string or integer value at the `group_by` key; a point whose value there
//! is an array is in the group of each of its values (bools, floats, objects and `null` make no
//! group). The hits come from the ordinary search path (every shard's nearest, merged), in
//! bounded rounds, all inside one memory reservation:
//!
//! 1. **Widening**: search for the `limit × group_size` nearest points that have a value at the
//!    key, and group them; while fewer than `limit` groups turned up and the search came back
//!    full, search again four times as wide, up to [`WIDENING_ROUNDS`] rounds and never wider
//!    than the memory budget or [`MAX_LIMIT`](super::validate::MAX_LIMIT) allows. A group that
//!    first shows up in a wider round has its best hit below every hit of the narrower one, so
//!    the first `limit` groups found are the best `limit` groups.
//! 2. **Filling**: a group with fewer than `group_size` hits, when the search did not already
//!    reach every matching point, gets one more search restricted to its own value, for its
//!    nearest `group_size` points.
//!
//! With exact search this is exactly the brute-force answer; with HNSW it is as good as the
//! searches it is made of. The rounds fetch payloads but no vectors; the vectors of the hits
//! returned are read once at the end, when asked for.

use super::budget;
use super::budget::Reserved;
use super::models::*;
use super::queries::scored;
use super::validate::{self, Grouping, Query};
use super::{Database, Result};
use crate::collection::{Collection, ScoredPoint, SearchRequest};
use crate::shard::filter::{self, Condition, Filter};
use crate::shard::point::{Payload, PointId};
use futures::future::join_all;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Most widening searches (each four times as wide as the one before).
const WIDENING_ROUNDS: usize = 4;
const WIDEN_BY: usize = 4;

impl Database {
    /// `POST /points/search/groups`.
    pub async fn search_groups(
        &self,
        name: &str,
        req: SearchGroups,
    ) -> Result<Reserved<GroupsResult>> {
        let c = self.collection(name)?;
        let (q, g) = validate::search_groups(req)?;
        self.groups(&c, q, g).await
    }

    /// `POST /points/query/groups`.
    pub async fn query_groups(
        &self,
        name: &str,
        req: QueryGroups,
    ) -> Result<Reserved<GroupsResult>> {
        let c = self.collection(name)?;
        let (q, g) = validate::query_groups(req)?;
        self.groups(&c, q, g).await
    }

    async fn groups(
        &self,
        c: &Arc<Collection>,
        q: Query,
        g: Grouping,
    ) -> Result<Reserved<GroupsResult>> {
        let lookup = match &g.lookup {
            Some(l) => Some((self.collection(&l.collection)?, l)),
            None => None,
        };
        let mut request = q.request;
        let with_vector = request.with_vector;
        request.offset = 0;
        request.with_payload = true;
        request.with_vector = false;
        let first = g.limit * g.group_size;
        let widest = self.widest_round(c, &request, first);
        request.limit = widest;
        let mut bytes = budget::search_bytes(c, &request);
        let held = g.limit * g.group_size;
        bytes = bytes.saturating_add(budget::points_bytes(held, c.config.size, with_vector, true));
        if let Some((lc, l)) = &lookup {
            let lookup_bytes = budget::points_bytes(g.limit, lc.config.size, l.with_vector, true);
            bytes = bytes.saturating_add(lookup_bytes);
        }
        let memory = self.memory.reserve(bytes, "this group search")?;
        // The widening search and each group's fill read payloads (the group key).
        let (deadline, _dropped) = self.read_deadline(Some((c, 1 + g.limit)));
        let mut request = self.resolve(c, q.target, request, &deadline).await?;
        let user_filter = request.filter.take();
        request.filter = Some(Filter::and_must_not(
            user_filter.clone(),
            g.has_value.clone(),
        ));

        // 1. Widening.
        let mut k = first;
        let (mut groups, exhausted) = loop {
            request.limit = k;
            let hits = self.coordinator.search(c, &request, &deadline).await?;
            let mut groups = Groups::new(&g, c.config.distance.higher_is_better());
            groups.add(&hits);
            let exhausted = hits.len() < k;
            if exhausted || groups.list.len() >= g.limit || k >= widest {
                break (groups, exhausted);
            }
            k = (k * WIDEN_BY).min(widest);
        };

        // 2. Filling.
        if !exhausted {
            let fills = groups
                .list
                .iter()
                .filter(|group| group.hits.len() < g.group_size)
                .filter_map(|group| {
                    let only = match_value(&g.key_text, &group.id)?;
                    let mut r = request.clone();
                    r.filter = Some(Filter::and_must(user_filter.clone(), only));
                    r.limit = g.group_size;
                    Some(r)
                })
                .collect::<Vec<SearchRequest>>();
            let found = join_all(
                fills
                    .iter()
                    .map(|r| self.coordinator.search(c, r, &deadline)),
            );
            for hits in found.await {
                groups.add(&hits?);
            }
        }

        // The answer: vectors of the hits and the looked-up points, when asked for.
        let mut vectors: HashMap<PointId, Vec<f32>> = HashMap::new();
        if with_vector {
            let mut ids: Vec<PointId> = groups
                .list
                .iter()
                .flat_map(|g| g.hits.iter().map(|h| h.point.id))
                .collect();
            ids.sort();
            ids.dedup();
            let points = self.coordinator.retrieve(c, &ids, true, &deadline).await?;
            vectors.extend(points.into_iter().filter_map(|p| Some((p.id, p.vector?))));
        }
        let mut looked_up: HashMap<PointId, RecordOut> = HashMap::new();
        if let Some((lc, l)) = &lookup {
            let ids: Vec<PointId> = groups
                .list
                .iter()
                .filter_map(|g| as_point_id(&g.id))
                .collect();
            let points = self
                .coordinator
                .retrieve(lc, &ids, l.with_vector, &deadline)
                .await?;
            looked_up.extend(
                points
                    .into_iter()
                    .map(|p| (p.id, RecordOut::from_view(p, &l.with_payload, true))),
            );
        }
        let answer = groups
            .list
            .into_iter()
            .map(|group| {
                let mut hits = group.hits;
                for h in &mut hits {
                    h.point.vector = vectors.get(&h.point.id).cloned();
                }
                PointGroup {
                    lookup: as_point_id(&group.id).and_then(|id| looked_up.remove(&id)),
                    id: group.id,
                    hits: scored(hits, &q.with_payload),
                }
            })
            .collect();
        Ok(memory.hold(GroupsResult { groups: answer }))
    }

    /// How wide the widest round may search: `first`, widened [`WIDENING_ROUNDS`] - 1 times,
    /// within the search bound and the memory one request may hold.
    fn widest_round(&self, c: &Collection, request: &SearchRequest, first: usize) -> usize {
        let cap = self.memory.per_request();
        let mut widest = first;
        for _ in 1..WIDENING_ROUNDS {
            let wider = widest.saturating_mul(WIDEN_BY).min(validate::MAX_LIMIT);
            let probe = SearchRequest {
                limit: wider,
                ..request.clone()
            };
            let room = budget::search_bytes(c, &probe).saturating_add(budget::points_bytes(
                first,
                c.config.size,
                true,
                true,
            ));
            if wider <= widest || room > cap {
                break;
            }
            widest = wider;
        }
        widest
    }
}

/// A group being filled: its id and its hits, best first.
struct Group {
    id: Value,
    hits: Vec<ScoredPoint>,
}

/// The groups found so far, best first (in the order their best hits came).
struct Groups<'g> {
    spec: &'g Grouping,
    higher_is_better: bool,
    list: Vec<Group>,
    /// Group id (as JSON text) → position in `list`.
    index: HashMap<String, usize>,
}

impl<'g> Groups<'g> {
    fn new(spec: &'g Grouping, higher_is_better: bool) -> Self {
        Groups {
            spec,
            higher_is_better,
            list: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Adds hits (best first) to their groups: a new group while fewer than `limit` exist, a
    /// hit while its group has room and does not hold it yet.
    fn add(&mut self, hits: &[ScoredPoint]) {
        for hit in hits {
            for id in group_ids(&hit.point.payload, &self.spec.key) {
                let text = id.to_string();
                let at = match self.index.get(&text) {
                    Some(&at) => at,
                    None if self.list.len() < self.spec.limit => {
                        self.list.push(Group {
                            id,
                            hits: Vec::new(),
                        });
                        self.index.insert(text, self.list.len() - 1);
                        self.list.len() - 1
                    }
                    None => continue,
                };
                let group = &mut self.list[at];
                if group.hits.iter().any(|h| h.point.id == hit.point.id) {
                    continue;
                }
                group.hits.push(hit.clone());
                let better = |a: &ScoredPoint, b: &ScoredPoint| {
                    if self.higher_is_better {
                        b.score.total_cmp(&a.score)
                    } else {
                        a.score.total_cmp(&b.score)
                    }
                };
                group.hits.sort_by(better);
                group.hits.truncate(self.spec.group_size);
            }
        }
    }
}

/// The group ids of a payload: its string and integer values at the key, each once.
fn group_ids(payload: &Payload, key: &crate::shard::payload::KeyPath) -> Vec<Value> {
    let mut ids: Vec<Value> = Vec::new();
    for v in filter::values_at(payload, key) {
        let groupable = match v {
            Value::String(_) => true,
            Value::Number(n) => n.is_i64() || n.is_u64(),
            _ => false,
        };
        if groupable && !ids.contains(v) {
            ids.push(v.clone());
        }
    }
    ids
}

/// `key` matches the group id (an integer beyond `i64` cannot be matched: its group is not
/// filled further).
fn match_value(key: &str, id: &Value) -> Option<Condition> {
    let condition = serde_json::json!({"key": key, "match": {"value": id}});
    serde_json::from_value(condition).ok()
}

/// The point a group id names in the lookup collection: an unsigned integer or a UUID.
fn as_point_id(id: &Value) -> Option<PointId> {
    serde_json::from_value(id.clone()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::PointView;
    use serde_json::json;

    fn hit(id: u64, score: f32, value: Value) -> ScoredPoint {
        let payload = json!({ "k": value })
            .as_object()
            .cloned()
            .unwrap_or_default();
        ScoredPoint {
            score,
            point: PointView {
                id: PointId::Num(id),
                version: 1,
                payload: Arc::new(payload),
                vector: None,
            },
        }
    }

    fn grouping(limit: usize, group_size: usize) -> Grouping {
        Grouping {
            key: crate::shard::payload::KeyPath::parse("k").unwrap(),
            key_text: "k".into(),
            group_size,
            limit,
            lookup: None,
            has_value: serde_json::from_value(json!({"is_empty": {"key": "k"}})).unwrap(),
        }
    }

    fn ids(groups: &Groups) -> Vec<(Value, Vec<u64>)> {
        groups
            .list
            .iter()
            .map(|g| {
                let hits = g.hits.iter().map(|h| match h.point.id {
                    PointId::Num(n) => n,
                    PointId::Uuid(_) => 0,
                });
                (g.id.clone(), hits.collect())
            })
            .collect()
    }

    #[test]
    fn arrays_join_every_group_of_their_values_and_groups_stop_at_the_limit() {
        let spec = grouping(2, 2);
        let mut groups = Groups::new(&spec, true);
        groups.add(&[
            hit(1, 0.9, json!(["a", "a"])),
            hit(2, 0.8, json!(["a", 7])),
            hit(3, 0.7, json!("c")), // a third group: over the limit
            hit(4, 0.6, json!(7)),
            hit(5, 0.5, json!("a")), // `a` is full
            hit(6, 0.4, json!(true)),
            hit(7, 0.3, json!(1.5)),
            hit(8, 0.2, json!({"a": 1})),
        ]);
        assert_eq!(
            ids(&groups),
            vec![(json!("a"), vec![1, 2]), (json!(7), vec![2, 4])]
        );
        // Filling: a better hit found later takes its place by score; one already held is not
        // added twice.
        groups.add(&[hit(9, 0.95, json!(7)), hit(4, 0.6, json!(7))]);
        assert_eq!(
            ids(&groups),
            vec![(json!("a"), vec![1, 2]), (json!(7), vec![9, 2])]
        );
    }

    #[test]
    fn distances_rank_smallest_first() {
        let spec = grouping(1, 2);
        let mut groups = Groups::new(&spec, false);
        groups.add(&[hit(1, 0.5, json!("x")), hit(2, 0.9, json!("x"))]);
        groups.add(&[hit(3, 0.1, json!("x"))]);
        assert_eq!(ids(&groups), vec![(json!("x"), vec![3, 1])]);
    }
}
