//! Search routes: the Query API (`/points/query`, `/points/query/batch`) and the older search API
//! (`/points/search`, `/points/search/batch`). Both become a [`SearchRequest`] on the collection.

use super::budget::{self, Grant};
use super::models::*;
use super::response::Path;
use super::response::{read_search_body, ApiError, RawAnswer, SearchBody, Started};
use super::scored::{self, Shape};
use super::{AppState, Node};
use crate::collection::{Collection, ScoredPoint, SearchRequest};
use crate::error::Error;
use crate::shard::filter::{Condition, OneOrMany};
use crate::shard::point::PointId;
use axum::extract::{Request, State};
use std::sync::Arc;

/// A query validated, with what its answer should carry.
type Parsed = (Target, SearchRequest, Option<WithPayload>);
/// The collection a request searches and its parsed queries.
type Prepared = (Arc<Collection>, Vec<Parsed>);

/// Bounds on what one query may ask for.
const MAX_LIMIT: usize = 10_000;
const MAX_EF: usize = 100_000;
const MAX_BATCH: usize = 1_000;

/// The vector a Query API request searches with, or the id whose vector it borrows.
enum Target {
    Vector(Vec<f32>),
    Point(PointId),
}

fn unnamed(v: std::collections::BTreeMap<String, Vec<f32>>) -> Result<Vec<f32>, Error> {
    let mut v = v;
    match v.remove("") {
        Some(vec) if v.is_empty() => Ok(vec),
        _ => Err(Error::BadRequest(
            "named vectors are not supported; query with an unnamed vector".into(),
        )),
    }
}

fn check_bounds(limit: usize, offset: usize, ef: Option<usize>) -> Result<(), Error> {
    if limit > MAX_LIMIT || offset > MAX_LIMIT {
        return Err(Error::BadRequest(format!(
            "limit and offset must be at most {MAX_LIMIT}"
        )));
    }
    if ef.is_some_and(|ef| ef == 0 || ef > MAX_EF) {
        return Err(Error::BadRequest(format!(
            "params.hnsw_ef must be between 1 and {MAX_EF}"
        )));
    }
    Ok(())
}

/// Qdrant's `params.quantization`, checked.
fn quantization(params: &SearchParams) -> Result<crate::index::QuantSearch, Error> {
    if params.indexed_only == Some(true) {
        return Err(Error::BadRequest(
            "params.indexed_only is not supported: shoal always searches its small unindexed tail exactly".into(),
        ));
    }
    let mut how = crate::index::QuantSearch::default();
    if let Some(q) = &params.quantization {
        how.ignore = q.ignore.unwrap_or(false);
        how.rescore = q.rescore.unwrap_or(true);
        if let Some(o) = q.oversampling {
            if !(1.0..=100.0).contains(&o) {
                return Err(Error::BadRequest(format!(
                    "params.quantization.oversampling must be between 1 and 100, got {o}"
                )));
            }
            how.oversampling = o as f32;
        }
    }
    Ok(how)
}

/// Validates a Query API request into a target and a search request (vector filled in later).
fn parse_query(q: QueryPoints) -> Result<(Target, SearchRequest, Option<WithPayload>), Error> {
    if q.prefetch.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(Error::BadRequest("prefetch is not supported".into()));
    }
    if q.lookup_from.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(Error::BadRequest("lookup_from is not supported".into()));
    }
    if q.using.as_deref().is_some_and(|u| !u.is_empty()) {
        return Err(Error::BadRequest(
            "named vectors are not supported: omit `using`".into(),
        ));
    }
    let target = match q.query {
        None => {
            return Err(Error::BadRequest(
                "`query` is required: a vector, {\"nearest\": vector} or a point id".into(),
            ))
        }
        Some(QueryInput::Vector(v))
        | Some(QueryInput::Nearest {
            nearest: NearestInput::Vector(v),
        }) => Target::Vector(v),
        Some(QueryInput::Nearest {
            nearest: NearestInput::Named(v),
        }) => Target::Vector(unnamed(v)?),
        Some(QueryInput::Id(id))
        | Some(QueryInput::Nearest {
            nearest: NearestInput::Id(id),
        }) => Target::Point(id),
        Some(QueryInput::Other(v)) => {
            return Err(Error::BadRequest(format!(
                "unsupported query {v}: shoal answers nearest-vector queries"
            )))
        }
    };
    let params = q.params.unwrap_or_default();
    let (limit, offset) = (q.limit.unwrap_or(10), q.offset.unwrap_or(0));
    check_bounds(limit, offset, params.hnsw_ef)?;
    let req = SearchRequest {
        vector: Vec::new(),
        filter: q.filter,
        limit,
        offset,
        hnsw_ef: params.hnsw_ef,
        exact: params.exact.unwrap_or(false),
        quantization: quantization(&params)?,
        score_threshold: q.score_threshold,
        with_vector: WithVector::wanted(&q.with_vector),
        with_payload: WithPayload::wanted(&q.with_payload),
    };
    Ok((target, req, q.with_payload))
}

/// Runs a query by id: that point's vector, with the point itself excluded (as Qdrant does).
async fn resolve(
    node: &Node,
    c: &Arc<Collection>,
    target: Target,
    mut req: SearchRequest,
) -> Result<SearchRequest, Error> {
    match target {
        Target::Vector(v) => req.vector = v,
        Target::Point(id) => {
            // Boxed, so that the rare query by id does not make every search's future larger.
            let point = Box::pin(node.retrieve(c, &[id], true))
                .await?
                .pop()
                .ok_or_else(|| Error::NotFound(format!("No point with id {id} found")))?;
            req.vector = point.vector.unwrap_or_default();
            let exclude = Condition::HasId { has_id: vec![id] };
            let mut filter = req.filter.take().unwrap_or_default();
            let mut must_not = match filter.must_not.take() {
                Some(OneOrMany::Many(v)) => v,
                Some(OneOrMany::One(c)) => vec![*c],
                None => Vec::new(),
            };
            must_not.push(exclude);
            filter.must_not = Some(OneOrMany::Many(must_not));
            req.filter = Some(filter);
        }
    }
    Ok(req)
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

fn scored_json(
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

/// What the search routes answer: their `result` is written by [`scored`].
type HitsResult = Result<RawAnswer, ApiError>;

fn answer(t: Started, result: serde_json::Result<Vec<u8>>) -> HitsResult {
    result
        .map(|json| RawAnswer(t, json))
        .map_err(|e| Error::Internal(e.to_string()).into())
}

/// The hits of a request that held one search.
fn only(results: &[Vec<ScoredPointOut>]) -> &[ScoredPointOut] {
    results.first().map_or(&[], Vec::as_slice)
}

/// Answers parsed queries one after the other.
async fn run_all(
    node: &Node,
    c: &Arc<Collection>,
    parsed: Vec<Parsed>,
) -> Result<Vec<Vec<ScoredPointOut>>, Error> {
    let mut out = Vec::with_capacity(parsed.len());
    for (target, req, with_payload) in parsed {
        let req = resolve(node, c, target, req).await?;
        out.push(scored_json(node.search(c, &req).await?, &with_payload));
    }
    Ok(out)
}

fn parse_queries(queries: Vec<QueryPoints>) -> Result<Vec<Parsed>, Error> {
    queries.into_iter().map(parse_query).collect()
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/query",
    tag = "search",
    summary = "Query points (nearest vector)",
    params(("name" = String, Path, description = "Collection name")),
    request_body = QueryPoints,
    responses((status = 200, description = "Success", body = super::response::Envelope<QueryResponse>), super::openapi::ApiErrors)
)]
pub async fn query(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    SearchBody(q): SearchBody<QueryPoints>,
) -> HitsResult {
    run_one(&node, t, prepare_query(&node, &name, q)?, Shape::Points).await
}

/// A single query's collection and parsed form.
fn prepare_query(node: &Node, name: &str, q: QueryPoints) -> Result<Prepared, Error> {
    let c = node.catalog.get(name)?;
    Ok((c, parse_queries(vec![q])?))
}

/// Runs a prepared single search or query and writes its answer in the route's shape.
async fn run_one(node: &Node, t: Started, (c, parsed): Prepared, shape: Shape) -> HitsResult {
    let _memory = reserve(node, &c, &parsed)?;
    let results = run_all(node, &c, parsed).await?;
    answer(t, scored::single(only(&results), shape))
}

/// The memory the searches of one request will hold until their answer is written.
fn reserve<'a>(node: &'a Node, c: &Collection, parsed: &[Parsed]) -> Result<Grant<'a>, ApiError> {
    let bytes = parsed
        .iter()
        .map(|(_, req, _)| budget::search_bytes(c, req))
        .fold(0, usize::saturating_add);
    let what = match parsed.len() {
        1 => "this search".to_string(),
        n => format!("this batch of {n} searches"),
    };
    node.memory.reserve(bytes, &what)
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/query/batch",
    tag = "search",
    summary = "Batch of queries",
    params(("name" = String, Path, description = "Collection name")),
    request_body = QueryBatch,
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<QueryResponse>>), super::openapi::ApiErrors)
)]
pub async fn query_batch(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    SearchBody(b): SearchBody<QueryBatch>,
) -> HitsResult {
    let c = node.catalog.get(&name)?;
    if b.searches.len() > MAX_BATCH {
        return Err(Error::BadRequest(format!("a batch holds at most {MAX_BATCH} queries")).into());
    }
    let parsed = parse_queries(b.searches)?;
    let _memory = reserve(&node, &c, &parsed)?;
    let results = run_all(&node, &c, parsed).await?;
    answer(t, scored::batch(&results, Shape::Points))
}

fn search_request(s: SearchPoints) -> Result<(SearchRequest, Option<WithPayload>), Error> {
    let vector = match s.vector {
        SearchVector::Dense(v) => v,
        SearchVector::Named { name, vector } if name.is_empty() => vector,
        SearchVector::Named { name, .. } => {
            return Err(Error::BadRequest(format!(
                "named vector {name:?} is not supported: send an unnamed vector"
            )))
        }
    };
    let params = s.params.unwrap_or_default();
    let offset = s.offset.unwrap_or(0);
    check_bounds(s.limit, offset, params.hnsw_ef)?;
    let req = SearchRequest {
        vector,
        filter: s.filter,
        limit: s.limit,
        offset,
        hnsw_ef: params.hnsw_ef,
        exact: params.exact.unwrap_or(false),
        quantization: quantization(&params)?,
        score_threshold: s.score_threshold,
        with_vector: WithVector::wanted(&s.with_vector),
        with_payload: WithPayload::wanted(&s.with_payload),
    };
    Ok((req, s.with_payload))
}

fn parse_searches(searches: Vec<SearchPoints>) -> Result<Vec<Parsed>, Error> {
    searches
        .into_iter()
        .map(|s| {
            search_request(s)
                .map(|(mut req, wp)| (Target::Vector(std::mem::take(&mut req.vector)), req, wp))
        })
        .collect()
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/search",
    tag = "search",
    summary = "Search points (older API)",
    params(("name" = String, Path, description = "Collection name")),
    request_body = SearchPoints,
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<ScoredPointOut>>), super::openapi::ApiErrors)
)]
pub async fn search(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    SearchBody(s): SearchBody<Option<SearchPoints>>,
) -> HitsResult {
    run_one(&node, t, prepare_search(&node, &name, s)?, Shape::Hits).await
}

/// A single search's collection and parsed form.
fn prepare_search(node: &Node, name: &str, s: Option<SearchPoints>) -> Result<Prepared, Error> {
    let c = node.catalog.get(name)?;
    let s = s.ok_or_else(|| {
        Error::BadRequest("a search body with `vector` and `limit` is required".into())
    })?;
    Ok((c, parse_searches(vec![s])?))
}

/// The single-query routes [`super::hot`] serves without the router.
#[derive(Debug, Clone, Copy)]
pub enum HotRoute {
    /// `POST /collections/{name}/points/search`: [`search`].
    Search,
    /// `POST /collections/{name}/points/query`: [`query`].
    Query,
}

/// Serves a hot route exactly as its handler does, from the request as it left the body limit:
/// the body read, the query prepared and then run, each one future deep, so that the request's
/// future stays small (it is boxed and moved as a whole).
pub async fn hot(node: AppState, route: HotRoute, name: String, req: Request) -> HitsResult {
    let t = Started::now();
    let (prepared, shape) = match route {
        HotRoute::Search => (
            prepare_search(&node, &name, read_search_body(req).await?)?,
            Shape::Hits,
        ),
        HotRoute::Query => (
            prepare_query(&node, &name, read_search_body(req).await?)?,
            Shape::Points,
        ),
    };
    run_one(&node, t, prepared, shape).await
}

#[utoipa::path(
    post,
    path = "/collections/{name}/points/search/batch",
    tag = "search",
    summary = "Batch of searches (older API)",
    params(("name" = String, Path, description = "Collection name")),
    request_body = SearchBatch,
    responses((status = 200, description = "Success", body = super::response::Envelope<Vec<Vec<ScoredPointOut>>>), super::openapi::ApiErrors)
)]
pub async fn search_batch(
    State(node): State<AppState>,
    t: Started,
    Path(name): Path<String>,
    SearchBody(b): SearchBody<SearchBatch>,
) -> HitsResult {
    let c = node.catalog.get(&name)?;
    if b.searches.len() > MAX_BATCH {
        return Err(
            Error::BadRequest(format!("a batch holds at most {MAX_BATCH} searches")).into(),
        );
    }
    let parsed = parse_searches(b.searches)?;
    let _memory = reserve(&node, &c, &parsed)?;
    let results = run_all(&node, &c, parsed).await?;
    answer(t, scored::batch(&results, Shape::Hits))
}
