//! The coordinator's merging, failover and write counting, on fake replicas: one that answers,
//! one that fails at once, one that times out, one that answers the wrong kind of reply, one
//! still syncing. No node, no network: the seam is all the coordinator sees.

use super::*;
use crate::cluster::replica::WriteSet;
use crate::collection::ScoredPoint;
use crate::index::{HnswParams, Metric};
use crate::shard::deadline::CancelOnDrop;
use crate::shard::search::Hit;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

/// How a fake replica behaves.
#[derive(Clone)]
enum Behaviour {
    /// Answers reads with what `answer` makes of the operation, and acknowledges commits.
    Answers(fn(&ShardOp) -> ShardReply),
    /// Fails at once, as a peer that refuses connections.
    Fails,
    /// Fails after a while, as a peer whose call hit its deadline.
    TimesOut,
    /// Answers every read with a count.
    AnswersWrongKind,
    /// Holds an incomplete replica: refuses reads that want a complete one.
    Syncing(fn(&ShardOp) -> ShardReply),
    /// Runs until the read's deadline passes, then stops, as a local search does.
    RunsPastTheDeadline,
}

struct Fake {
    node: u32,
    behaviour: Behaviour,
    reads: AtomicUsize,
    commits: AtomicUsize,
}

impl Fake {
    fn new(node: u32, behaviour: Behaviour) -> Arc<Fake> {
        Arc::new(Fake {
            node,
            behaviour,
            reads: AtomicUsize::new(0),
            commits: AtomicUsize::new(0),
        })
    }

    fn unreachable(&self, timed_out: bool) -> PeerError {
        PeerError::Unreachable {
            ordinal: self.node,
            message: if timed_out {
                "timed out"
            } else {
                "connection refused"
            }
            .into(),
            timed_out,
        }
    }
}

impl Replica for Fake {
    fn node(&self) -> u32 {
        self.node
    }

    fn read<'a>(
        &'a self,
        op: &'a ShardOp,
        how: &'a ReadContext,
    ) -> futures::future::BoxFuture<'a, std::result::Result<ShardReply, PeerError>> {
        let complete_only = how.complete_only;
        self.reads.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match self.behaviour {
                Behaviour::Answers(answer) => Ok(answer(op)),
                Behaviour::Fails => Err(self.unreachable(false)),
                Behaviour::TimesOut => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(self.unreachable(true))
                }
                Behaviour::AnswersWrongKind => Ok(ShardReply::Count(0)),
                Behaviour::Syncing(_) if complete_only => Err(PeerError::NoReplica {
                    ordinal: self.node,
                    shard: 0,
                    why: "is still syncing",
                }),
                Behaviour::Syncing(answer) => Ok(answer(op)),
                Behaviour::RunsPastTheDeadline => {
                    while !how.deadline.expired() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(PeerError::Expired { ordinal: self.node })
                }
            }
        })
    }

    fn commit<'a>(
        &'a self,
        changes: &'a [Change],
        _durable: bool,
    ) -> futures::future::BoxFuture<'a, std::result::Result<u64, PeerError>> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            match self.behaviour {
                Behaviour::Answers(_) | Behaviour::Syncing(_) => Ok(changes.len() as u64),
                Behaviour::TimesOut | Behaviour::RunsPastTheDeadline => Err(self.unreachable(true)),
                Behaviour::Fails | Behaviour::AnswersWrongKind => Err(self.unreachable(false)),
            }
        })
    }
}

/// Replicas by shard, each list in read order; writes go to all of a shard's replicas.
struct Fakes {
    shards: Vec<Vec<Arc<Fake>>>,
    required: usize,
}

impl Replicas for Fakes {
    fn to_read(&self, _: &Arc<Collection>, shard: u32) -> Vec<Arc<dyn Replica>> {
        self.shards[shard as usize]
            .iter()
            .map(|f| Arc::clone(f) as Arc<dyn Replica>)
            .collect()
    }

    fn to_write(&self, _: &Arc<Collection>, shard: u32, _: u64) -> WriteSet {
        let replicas = self.to_read_all(shard);
        WriteSet {
            owners: replicas.len(),
            replicas,
            required: self.required,
        }
    }
}

impl Fakes {
    fn to_read_all(&self, shard: u32) -> Vec<Arc<dyn Replica>> {
        self.shards[shard as usize]
            .iter()
            .map(|f| Arc::clone(f) as Arc<dyn Replica>)
            .collect()
    }
}

/// A coordinator over fakes, with collection `c` of `shards.len()` shards (Dot, 2-d).
fn coordinator(
    shards: Vec<Vec<Arc<Fake>>>,
    required: usize,
) -> (tempfile::TempDir, Coordinator, Arc<Collection>) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Catalog::open(dir.path(), 0, 1 << 20, |_| Vec::new()).unwrap();
    let config = CollectionConfig {
        size: 2,
        distance: Metric::Dot,
        hnsw: HnswParams::default(),
        shard_number: shards.len() as u32,
        replication_factor: 3,
        write_consistency_factor: 1,
        on_disk_payload: true,
        quantization: None,
        full_scan_threshold_kb: None,
        optimizers: Default::default(),
        payload_schema: Default::default(),
        incarnation: 0,
    };
    catalog.create("c", config, &[]).unwrap();
    let c = catalog.get("c").unwrap();
    let fakes = Fakes { shards, required };
    let coordinator = Coordinator::with_replicas(catalog, Cluster::single(), Box::new(fakes));
    (dir, coordinator, c)
}

fn view(id: u64) -> PointView {
    PointView {
        id: PointId::Num(id),
        version: id,
        payload: crate::shard::point::empty_payload(),
        vector: None,
    }
}

/// Hits at distances -id (Dot: score id) for ids 10, 30, 50 (shard 0) or 20, 40 (shard 1):
/// the answer depends on the shard the search reached.
fn even_shard_hits(op: &ShardOp) -> ShardReply {
    hits_of(op, &[50, 30, 10])
}

fn odd_shard_hits(op: &ShardOp) -> ShardReply {
    hits_of(op, &[40, 20])
}

fn hits_of(op: &ShardOp, ids: &[u64]) -> ShardReply {
    let ShardOp::Search { k, .. } = op else {
        return ShardReply::Count(ids.len() as u64);
    };
    ShardReply::Hits(
        ids.iter()
            .take(*k)
            .map(|&id| Hit {
                distance: -(id as f32),
                point: view(id),
            })
            .collect(),
    )
}

fn points_of(op: &ShardOp) -> ShardReply {
    match op {
        ShardOp::Scroll { from, limit, .. } => ShardReply::Points(
            [3, 1, 7, 5]
                .into_iter()
                .filter(|id| from.is_none_or(|f| PointId::Num(*id) >= f))
                .take(*limit)
                .map(view)
                .collect(),
        ),
        ShardOp::Count { .. } => ShardReply::Count(4),
        _ => hits_of(op, &[1]),
    }
}

/// No deadline.
fn open() -> Deadline {
    Deadline::default()
}

fn search(limit: usize, offset: usize, score_threshold: Option<f32>) -> SearchRequest {
    SearchRequest {
        vector: vec![1.0, 0.0],
        filter: None,
        limit,
        offset,
        hnsw_ef: None,
        exact: false,
        quantization: Default::default(),
        score_threshold,
        with_vector: false,
        with_payload: false,
    }
}

fn ids(points: &[ScoredPoint]) -> Vec<u64> {
    points
        .iter()
        .map(|p| match p.point.id {
            PointId::Num(n) => n,
            PointId::Uuid(_) => panic!("uuid"),
        })
        .collect()
}

#[tokio::test]
async fn search_merges_every_shard_then_skips_the_offset_and_applies_the_threshold() {
    let (_dir, node, c) = coordinator(
        vec![
            vec![Fake::new(0, Behaviour::Answers(even_shard_hits))],
            vec![Fake::new(1, Behaviour::Answers(odd_shard_hits))],
        ],
        1,
    );
    let found = node.search(&c, &search(4, 0, None), &open()).await.unwrap();
    assert_eq!(ids(&found), [50, 40, 30, 20]);
    assert_eq!(found[0].score, 50.0, "Dot: the score is minus the distance");
    let found = node.search(&c, &search(2, 1, None), &open()).await.unwrap();
    assert_eq!(ids(&found), [40, 30]);
    let found = node
        .search(&c, &search(10, 0, Some(25.0)), &open())
        .await
        .unwrap();
    assert_eq!(ids(&found), [50, 40, 30]);
}

#[tokio::test]
async fn a_read_fails_over_past_replicas_that_fail_time_out_or_answer_the_wrong_kind() {
    let fails = Fake::new(1, Behaviour::Fails);
    let times_out = Fake::new(2, Behaviour::TimesOut);
    let wrong = Fake::new(3, Behaviour::AnswersWrongKind);
    let good = Fake::new(4, Behaviour::Answers(even_shard_hits));
    let after = Fake::new(5, Behaviour::Answers(odd_shard_hits));
    let order = vec![
        fails.clone(),
        times_out.clone(),
        wrong.clone(),
        good.clone(),
        after.clone(),
    ];
    let (_dir, node, c) = coordinator(vec![order], 1);
    let found = node.search(&c, &search(3, 0, None), &open()).await.unwrap();
    assert_eq!(
        ids(&found),
        [50, 30, 10],
        "the first replica that answers well"
    );
    for tried in [&fails, &times_out, &wrong, &good] {
        assert_eq!(tried.reads.load(Ordering::SeqCst), 1);
    }
    assert_eq!(
        after.reads.load(Ordering::SeqCst),
        0,
        "no read past the answer"
    );
}

#[tokio::test]
async fn a_shard_without_a_live_replica_fails_the_read_and_says_why() {
    let (_dir, node, c) = coordinator(
        vec![
            vec![Fake::new(0, Behaviour::Answers(points_of))],
            vec![
                Fake::new(1, Behaviour::Fails),
                Fake::new(2, Behaviour::TimesOut),
                Fake::new(3, Behaviour::AnswersWrongKind),
            ],
        ],
        1,
    );
    let err = node
        .search(&c, &search(3, 0, None), &open())
        .await
        .unwrap_err();
    let Error::Unavailable(message) = err else {
        panic!("{err:?}")
    };
    for part in [
        "shard 1 of collection `c` has no live replica",
        "peer 1 unreachable: connection refused",
        "peer 2 unreachable: timed out",
        "peer 3 gave a bad answer: answered count to a search",
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    // A wrong reply is never an empty answer: the count fails as well.
    let wrong = vec![vec![Fake::new(3, Behaviour::AnswersWrongKind)]];
    let (_dir, node, c) = coordinator(wrong, 1);
    assert!(node
        .scroll(&c, None, 10, None, false, &open())
        .await
        .is_err());
    assert!(node
        .retrieve(&c, &[PointId::Num(1)], false, &open())
        .await
        .is_err());
    let (_dir, node, c) = coordinator(
        vec![vec![Fake::new(3, Behaviour::Answers(even_shard_hits))]],
        1,
    );
    assert!(node.count(&c, None, &open()).await.is_ok());
    let (_dir, node, c) = coordinator(
        vec![vec![Fake::new(
            3,
            Behaviour::Answers(|_| ShardReply::Hits(vec![])),
        )]],
        1,
    );
    assert!(
        node.count(&c, None, &open()).await.is_err(),
        "hits are not a count"
    );
}

#[tokio::test]
async fn a_syncing_replica_answers_only_when_no_complete_one_does() {
    let syncing = Fake::new(0, Behaviour::Syncing(even_shard_hits));
    let complete = Fake::new(1, Behaviour::Answers(odd_shard_hits));
    let (_dir, node, c) = coordinator(vec![vec![syncing.clone(), complete.clone()]], 1);
    let found = node.search(&c, &search(2, 0, None), &open()).await.unwrap();
    assert_eq!(
        ids(&found),
        [40, 20],
        "the complete replica, though tried second"
    );
    let (_dir, node, c) = coordinator(vec![vec![syncing.clone()]], 1);
    let found = node.search(&c, &search(2, 0, None), &open()).await.unwrap();
    assert_eq!(
        ids(&found),
        [50, 30],
        "the syncing replica, when it is all there is"
    );
}

#[tokio::test]
async fn scroll_and_count_merge_every_shard() {
    let (_dir, node, c) = coordinator(
        vec![
            vec![Fake::new(0, Behaviour::Answers(points_of))],
            vec![Fake::new(1, Behaviour::Answers(points_of))],
        ],
        1,
    );
    assert_eq!(node.count(&c, None, &open()).await.unwrap(), 8);
    let (page, next) = node
        .scroll(&c, None, 3, None, false, &open())
        .await
        .unwrap();
    let page: Vec<PointId> = page.iter().map(|p| p.id).collect();
    assert_eq!(page, [PointId::Num(1), PointId::Num(1), PointId::Num(3)]);
    assert_eq!(next, Some(PointId::Num(3)));
}

#[tokio::test]
async fn a_write_needs_its_acknowledgements_and_reaches_every_replica() {
    async fn upsert(node: &Coordinator, c: Arc<Collection>) -> Result<u64> {
        let points = (0..4)
            .map(|i| NewPoint {
                id: PointId::Num(i),
                vector: vec![1.0, 0.0],
                payload: Default::default(),
            })
            .collect();
        node.upsert(&c, points, true).await
    }
    let replicas = || {
        vec![
            Fake::new(0, Behaviour::Answers(points_of)),
            Fake::new(1, Behaviour::TimesOut),
            Fake::new(2, Behaviour::Answers(points_of)),
        ]
    };
    let two_of_three = replicas();
    let (_dir, node, c) = coordinator(vec![two_of_three.clone()], 2);
    upsert(&node, c)
        .await
        .expect("two acknowledgements are enough");
    for r in &two_of_three {
        assert_eq!(
            r.commits.load(Ordering::SeqCst),
            1,
            "every replica gets the write"
        );
    }
    // The replica that did not acknowledge it lacks the write until it has caught up from the
    // two that did.
    let told = node.cluster.deferred.for_owner(1);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!((told[0].shard, told[0].from.clone()), (0, vec![0, 2]));
    assert!(node.cluster.deferred.for_owner(2).is_empty());

    let (_dir, node, c) = coordinator(vec![replicas()], 3);
    let err = upsert(&node, c).await.unwrap_err();
    let Error::Unavailable(message) = err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("2 of 3 replicas acknowledged the write, 3 required"),
        "{message}"
    );
    assert!(
        message.contains("peer 1 unreachable: timed out"),
        "{message}"
    );

    // A delete plans on one replica and commits on all; a wrong plan reply fails it.
    let plan = |_: &ShardOp| ShardReply::Changes(vec![Change::delete(PointId::Num(1), 5)]);
    let with_plan = vec![
        Fake::new(0, Behaviour::AnswersWrongKind),
        Fake::new(1, Behaviour::Answers(plan)),
    ];
    let (_dir, node, c) = coordinator(vec![with_plan.clone()], 1);
    node.delete_points(&c, Selector::Ids(vec![PointId::Num(1)]), true)
        .await
        .expect("planned by the replica that answers a plan");
    assert_eq!(with_plan[1].reads.load(Ordering::SeqCst), 1);
    assert_eq!(with_plan[0].commits.load(Ordering::SeqCst), 1);
    assert_eq!(with_plan[1].commits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_read_past_its_deadline_is_a_timeout_and_tries_no_other_replica() {
    let slow = Fake::new(1, Behaviour::RunsPastTheDeadline);
    let next = Fake::new(2, Behaviour::Answers(even_shard_hits));
    let (_dir, node, c) = coordinator(vec![vec![slow.clone(), next.clone()]], 1);
    let soon = Deadline::after(Some(Duration::from_millis(50)));
    let err = node
        .search(&c, &search(3, 0, None), &soon)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    assert_eq!(
        next.reads.load(Ordering::SeqCst),
        0,
        "a deadline is not failed over"
    );

    // A request dropped before its answer stops its reads at once.
    let dropped = CancelOnDrop::default();
    let cancelled = Deadline::default().or_cancelled(dropped.flag());
    drop(dropped);
    let err = node.count(&c, None, &cancelled).await.unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
}

/// Answers a retrieve with points 0..4 (4 and up do not exist) and a plan with its new vectors
/// as changes.
fn vectors_plan(op: &ShardOp) -> ShardReply {
    match op {
        ShardOp::Retrieve { ids, .. } => ShardReply::Points(
            ids.iter()
                .filter_map(|id| match id {
                    PointId::Num(n) if *n < 4 => Some(view(*n)),
                    _ => None,
                })
                .collect(),
        ),
        ShardOp::Plan {
            plan: Plan::Vectors(points),
            version,
            ..
        } => ShardReply::Changes(
            points
                .iter()
                .map(|(id, v)| Change::upsert(*id, *version, v.clone(), Default::default()))
                .collect(),
        ),
        _ => ShardReply::Count(0),
    }
}

#[tokio::test]
async fn new_vectors_are_planned_per_shard_and_committed_on_every_replica() {
    let shards: Vec<Vec<Arc<Fake>>> = (0..3)
        .map(|s| {
            (0..2)
                .map(|r| Fake::new(s * 2 + r, Behaviour::Answers(vectors_plan)))
                .collect()
        })
        .collect();
    let (_dir, node, c) = coordinator(shards.clone(), 2);
    let points: Vec<(PointId, Vec<f32>)> = (0..4)
        .map(|i| (PointId::Num(i), vec![1.0, i as f32]))
        .collect();
    // Each shard plans only the points that hash to it.
    for (shard, plan) in node.plans_by_shard(&c, Plan::Vectors(points.clone())) {
        let Plan::Vectors(mine) = plan else {
            panic!("{plan:?}")
        };
        assert!(!mine.is_empty());
        for (id, _) in &mine {
            assert_eq!(crate::cluster::placement::shard_of(id, 3), shard);
        }
    }
    // A missing point: a 404 naming it, and nothing is committed anywhere.
    let mut with_missing = points.clone();
    with_missing.push((PointId::Num(77), vec![0.0, 1.0]));
    let err = node
        .update_vectors(&c, with_missing, true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(m) if m == "No point with id 77 found"),
        "{err:?}"
    );
    let commits = |shards: &[Vec<Arc<Fake>>]| -> Vec<usize> {
        shards
            .iter()
            .flatten()
            .map(|f| f.commits.load(Ordering::SeqCst))
            .collect()
    };
    assert_eq!(commits(&shards), vec![0; 6]);
    // A wrong dimension is refused before anything is read.
    let err = node
        .update_vectors(&c, vec![(PointId::Num(1), vec![1.0; 3])], true)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::BadRequest(m) if m.contains("point 1")),
        "{err:?}"
    );
    // Every replica of every shard holding one of the points commits the new vectors once.
    node.update_vectors(&c, points.clone(), true).await.unwrap();
    let touched: std::collections::BTreeSet<u32> = points
        .iter()
        .map(|(id, _)| crate::cluster::placement::shard_of(id, 3))
        .collect();
    for (s, replicas) in shards.iter().enumerate() {
        let want = usize::from(touched.contains(&(s as u32)));
        for r in replicas {
            assert_eq!(r.commits.load(Ordering::SeqCst), want, "shard {s}");
        }
    }
}
