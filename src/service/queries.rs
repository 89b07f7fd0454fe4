//! Searches and queries (the read side of Qdrant's `Points` service): the Query API
//! (`query`, `query_batch`) and the older search API (`search`, `search_batch`). Each becomes a
//! validated [`Query`](validate::Query), whose memory is reserved before anything runs, and is
//! answered by the coordinator.

use super::budget::{self, Reserved};
use super::models::*;
use super::validate::{self, Query, Target};
use super::{Database, Error, Result};
use crate::collection::{Collection, ScoredPoint, SearchRequest};
use crate::shard::deadline::Deadline;
use crate::shard::filter::{Condition, Filter};
use std::sync::Arc;

impl Database {
    /// The nearest points to a vector (`/points/search`).
    pub async fn search(
        &self,
        name: &str,
        req: SearchPoints,
    ) -> Result<Reserved<Vec<ScoredPointOut>>> {
        let c = self.collection(name)?;
        let queries = vec![validate::search(req)?];
        let (mut hits, memory) = self.run(&c, queries).await?;
        Ok(memory.hold(hits.pop().unwrap_or_default()))
    }

    /// Several searches in one request, answered in order.
    pub async fn search_batch(
        &self,
        name: &str,
        req: SearchBatch,
    ) -> Result<Reserved<Vec<Vec<ScoredPointOut>>>> {
        let c = self.collection(name)?;
        let queries = validate::batch(req.searches, validate::search)?;
        let (hits, memory) = self.run(&c, queries).await?;
        Ok(memory.hold(hits))
    }

    /// The nearest points to a vector or to a stored point (`/points/query`).
    pub async fn query(&self, name: &str, req: QueryPoints) -> Result<Reserved<QueryResponse>> {
        let c = self.collection(name)?;
        let queries = vec![validate::query(req)?];
        let (mut hits, memory) = self.run(&c, queries).await?;
        let points = hits.pop().unwrap_or_default();
        Ok(memory.hold(QueryResponse { points }))
    }

    /// Several queries in one request, answered in order.
    pub async fn query_batch(
        &self,
        name: &str,
        req: QueryBatch,
    ) -> Result<Reserved<Vec<QueryResponse>>> {
        let c = self.collection(name)?;
        let queries = validate::batch(req.searches, validate::query)?;
        let (hits, memory) = self.run(&c, queries).await?;
        let answers = hits
            .into_iter()
            .map(|points| QueryResponse { points })
            .collect();
        Ok(memory.hold(answers))
    }

    /// Reserves the memory of every query of a request, then answers them one after the other.
    async fn run(
        &self,
        c: &Arc<Collection>,
        queries: Vec<Query>,
    ) -> Result<(Vec<Vec<ScoredPointOut>>, budget::Grant)> {
        let bytes = queries
            .iter()
            .map(|q| budget::search_bytes(c, &q.request))
            .fold(0, usize::saturating_add);
        let what: std::borrow::Cow<str> = match queries.len() {
            1 => "this search".into(),
            n => format!("this batch of {n} searches").into(),
        };
        let memory = self.memory.reserve(bytes, &what)?;
        let with_payloads = queries.iter().filter(|q| q.request.with_payload).count();
        let (deadline, _dropped) =
            self.read_deadline((with_payloads > 0).then_some((&**c, with_payloads)));
        let mut answers = Vec::with_capacity(queries.len());
        for q in queries {
            let request = self.resolve(c, q.target, q.request, &deadline).await?;
            let hits = self.coordinator.search(c, &request, &deadline).await?;
            answers.push(scored(hits, &q.with_payload));
        }
        Ok((answers, memory))
    }

    /// The request with its vector: the one sent, or, for a query by id, that point's vector
    /// with the point itself excluded (as Qdrant does).
    pub(super) async fn resolve(
        &self,
        c: &Arc<Collection>,
        target: Target,
        mut req: SearchRequest,
        deadline: &Deadline,
    ) -> Result<SearchRequest> {
        match target {
            Target::Vector(v) => req.vector = v,
            Target::Point(id) => {
                // Boxed, so that the rare query by id does not make every search's future larger.
                let point = Box::pin(self.coordinator.retrieve(c, &[id], true, deadline))
                    .await?
                    .pop()
                    .ok_or_else(|| Error::NotFound(format!("No point with id {id} found")))?;
                req.vector = match point.vector {
                    Some(v) if !v.is_empty() => v,
                    _ => return Err(Error::BadRequest(format!("point {id} has no vector"))),
                };
                let exclude = Condition::HasId { has_id: vec![id] };
                req.filter = Some(Filter::and_must_not(req.filter.take(), exclude));
            }
        }
        Ok(req)
    }
}

/// A score as JSON can carry it: never `null`. Vectors are bounded at upsert so that scores are
/// finite ([`crate::collection::MAX_VECTOR_NORM`]); only a point stored before that bound could
/// still score infinity or NaN, and it is then answered as the largest finite number (or 0).
fn finite(score: f32) -> f32 {
    if score.is_nan() {
        0.0
    } else {
        score.clamp(-f32::MAX, f32::MAX)
    }
}

/// Hits as the API answers them: the payload cut to what the request asked for.
pub(super) fn scored(
    points: Vec<ScoredPoint>,
    with_payload: &Option<WithPayload>,
) -> Vec<ScoredPointOut> {
    points
        .into_iter()
        .map(|p| ScoredPointOut {
            id: p.point.id,
            version: p.point.version,
            score: finite(p.score),
            payload: WithPayload::select(with_payload, false, &p.point.payload),
            vector: p.point.vector,
            shard_key: None,
            order_value: None,
        })
        .collect()
}
