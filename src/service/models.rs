//! The typed requests and results of the service layer, shaped exactly like Qdrant's REST API
//! (so the official clients work unchanged, and the REST adapter reads and writes them as they
//! are) and mapping field for field onto Qdrant's gRPC messages. Fields a client may send but
//! shoal has no use for are accepted and ignored (clients send many explicit `null`s); fields
//! that change results but are not supported are refused with a 400 by [`super::validate`]
//! rather than silently ignored.

use crate::shard::filter::Filter;
use crate::shard::payload::{payload_only, payload_without, KeyPath};
use crate::shard::point::{Payload, PointId};
use crate::shard::PointView;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

// ---------- collections ----------

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateCollection {
    pub vectors: Option<VectorsConfig>,
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub write_consistency_factor: Option<u32>,
    pub on_disk_payload: Option<bool>,
    pub hnsw_config: Option<HnswConfigDiff>,
    pub sparse_vectors: Option<Value>,
    /// `{"scalar": {"type": "int8", "quantile": 0.99, "always_ram": true}}`; other kinds get a 400.
    #[schema(value_type = Option<Object>)]
    pub quantization_config: Option<Value>,
    pub optimizers_config: Option<OptimizersConfigDiff>,
    /// Refused unless null: shoal has no write-ahead log to configure.
    #[schema(value_type = Option<Object>)]
    pub wal_config: Option<Value>,
    /// Refused unless null.
    #[schema(value_type = Option<Object>)]
    pub init_from: Option<Value>,
    /// `"auto"` only.
    pub sharding_method: Option<String>,
    /// Refused unless null or `{}`.
    #[schema(value_type = Option<Object>)]
    pub strict_mode_config: Option<Value>,
    /// Refused unless null or `{}`.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Qdrant's `optimizers_config`. Honoured: `max_segment_size` (KB of vectors per segment),
/// `indexing_threshold` (KB of unindexed vectors before a build), `deleted_threshold`,
/// `vacuum_min_vector_number`; `memmap_threshold` is accepted because every segment is memory-
/// mapped anyway. The others change nothing in shoal and get a 400 unless null.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
pub struct OptimizersConfigDiff {
    pub deleted_threshold: Option<f64>,
    pub vacuum_min_vector_number: Option<usize>,
    pub default_segment_number: Option<usize>,
    pub max_segment_size: Option<usize>,
    pub memmap_threshold: Option<usize>,
    pub indexing_threshold: Option<usize>,
    pub flush_interval_sec: Option<u64>,
    #[schema(value_type = Option<Object>)]
    pub max_optimization_threads: Option<Value>,
}

#[derive(Debug)]
pub enum VectorsConfig {
    Single(VectorParams),
    Named(BTreeMap<String, VectorParams>),
}

impl<'de> Deserialize<'de> for VectorsConfig {
    /// `{"size", "distance"}` is one unnamed vector; any other object maps names to vector params.
    /// Deciding by the keys first gives errors such as "unknown variant `Cosinus`".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(d)?;
        let single = value.get("size").is_some() || value.get("distance").is_some();
        let parsed = if single {
            serde_json::from_value(value).map(VectorsConfig::Single)
        } else {
            serde_json::from_value(value).map(VectorsConfig::Named)
        };
        parsed.map_err(|e| D::Error::custom(format!("invalid `vectors`: {e}")))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VectorParams {
    pub size: u64,
    pub distance: crate::index::Metric,
    pub hnsw_config: Option<HnswConfigDiff>,
    pub multivector_config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub quantization_config: Option<Value>,
    /// True only: indexed vectors are memory-mapped files.
    pub on_disk: Option<bool>,
    /// `"float32"` only.
    pub datatype: Option<String>,
}

/// Qdrant's `hnsw_config`. Honoured: `m`, `ef_construct`, `full_scan_threshold` (KB); `on_disk`
/// may only be true (graphs are memory-mapped files) and `max_indexing_threads` only 0 (auto);
/// `payload_m` gets a 400.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
pub struct HnswConfigDiff {
    pub m: Option<usize>,
    pub ef_construct: Option<usize>,
    pub full_scan_threshold: Option<usize>,
    pub max_indexing_threads: Option<usize>,
    pub on_disk: Option<bool>,
    pub payload_m: Option<usize>,
}

/// `PATCH /collections/{name}` (Qdrant's `UpdateCollection`): each part set is a diff over the
/// collection's configuration; see [`crate::service::validate::collection_update`].
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateCollection {
    pub optimizers_config: Option<OptimizersConfigDiff>,
    pub params: Option<CollectionParamsDiff>,
    pub hnsw_config: Option<HnswConfigDiff>,
    /// `{"": {"hnsw_config": …, "quantization_config": …}}`: the unnamed vector's diff.
    pub vectors: Option<BTreeMap<String, VectorParamsDiff>>,
    /// `{"scalar": {…}}` or `"Disabled"`.
    #[schema(value_type = Option<Object>)]
    pub quantization_config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub sparse_vectors: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub strict_mode_config: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Qdrant's `CollectionParamsDiff`: the collection parameters that may change.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CollectionParamsDiff {
    pub replication_factor: Option<u32>,
    pub write_consistency_factor: Option<u32>,
    pub read_fan_out_factor: Option<u32>,
    pub on_disk_payload: Option<bool>,
}

/// Qdrant's `VectorParamsDiff`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct VectorParamsDiff {
    pub hnsw_config: Option<HnswConfigDiff>,
    #[schema(value_type = Option<Object>)]
    pub quantization_config: Option<Value>,
    pub on_disk: Option<bool>,
}

// ---------- aliases ----------

/// `POST /collections/aliases`: actions applied in order, all or none.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ChangeAliases {
    pub actions: Vec<AliasAction>,
}

/// One of Qdrant's alias actions: `{"create_alias": {…}}`, `{"delete_alias": {…}}` or
/// `{"rename_alias": {…}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AliasAction {
    CreateAlias {
        collection_name: String,
        alias_name: String,
    },
    DeleteAlias {
        alias_name: String,
    },
    RenameAlias {
        old_alias_name: String,
        new_alias_name: String,
    },
}

/// `result` of `GET /aliases` and `GET /collections/{name}/aliases`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionsAliases {
    pub aliases: Vec<AliasDescription>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AliasDescription {
    pub alias_name: String,
    pub collection_name: String,
}

// ---------- points ----------

/// A vector as sent: a plain list, or the named form with the default (`""`) name.
/// Deserialized by hand in `vector_de` (the first token decides); the schema is the untagged one.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum VectorInput {
    Dense(Vec<f32>),
    Named(BTreeMap<String, Vec<f32>>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PointStruct {
    pub id: PointId,
    pub vector: VectorInput,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Payload>,
}

/// Deserialized by hand in `vector_de` (the first token decides); the schema is the untagged one.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum BatchVectors {
    Dense(Vec<Vec<f32>>),
    Named(BTreeMap<String, Vec<Vec<f32>>>),
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Batch {
    pub ids: Vec<PointId>,
    pub vectors: BatchVectors,
    #[schema(value_type = Option<Vec<Option<Object>>>)]
    pub payloads: Option<Vec<Option<Payload>>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpsertPoints {
    pub points: Option<Vec<PointStruct>>,
    pub batch: Option<Batch>,
    pub update_filter: Option<Filter>,
}

/// Qdrant's `wait` query parameter: whether the answer waits until the change is applied.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    pub wait: Option<bool>,
}

impl WaitParams {
    /// The client's `wait`, else no: Qdrant's default for point and index writes, which are
    /// acknowledged once logged. (Snapshot routes wait by default, as Qdrant's do.)
    pub fn wait(&self) -> bool {
        self.wait.unwrap_or(false)
    }
}

/// `{"points": [ids]}` or `{"filter": …}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PointsSelector {
    pub points: Option<Vec<PointId>>,
    pub filter: Option<Filter>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SetPayload {
    #[schema(value_type = Object)]
    pub payload: Payload,
    pub points: Option<Vec<PointId>>,
    pub filter: Option<Filter>,
    pub key: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DeletePayload {
    pub keys: Vec<String>,
    pub points: Option<Vec<PointId>>,
    pub filter: Option<Filter>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WithPayload {
    All(bool),
    Keys(Vec<String>),
    Selector {
        include: Option<Vec<String>>,
        exclude: Option<Vec<String>>,
    },
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WithVector {
    All(bool),
    Names(Vec<String>),
}

impl WithVector {
    pub fn wanted(v: &Option<WithVector>) -> bool {
        match v {
            None | Some(WithVector::All(false)) => false,
            Some(WithVector::All(true)) => true,
            Some(WithVector::Names(names)) => names.iter().any(|n| n.is_empty()),
        }
    }
}

impl WithPayload {
    /// Whether any of the payload is shown, where the default is none (search and query).
    pub fn wanted(sel: &Option<WithPayload>) -> bool {
        !matches!(sel, None | Some(WithPayload::All(false)))
    }

    /// The payload to return for one point under this selector; `None` means `null`. Keys are
    /// Qdrant's key paths (`nested.a`, `arr[].b`, `"dotted.key"`), checked by [`Self::check`].
    pub fn select(sel: &Option<WithPayload>, default: bool, payload: &Payload) -> Option<Payload> {
        let paths = |keys: &[String]| -> Vec<KeyPath> {
            keys.iter().filter_map(|k| KeyPath::parse(k).ok()).collect()
        };
        match sel {
            None if default => Some(payload.clone()),
            None | Some(WithPayload::All(false)) => None,
            Some(WithPayload::All(true)) => Some(payload.clone()),
            Some(WithPayload::Keys(keys))
            | Some(WithPayload::Selector {
                include: Some(keys),
                ..
            }) => Some(payload_only(payload, &paths(keys))),
            Some(WithPayload::Selector {
                include: None,
                exclude: Some(keys),
            }) => Some(payload_without(payload, &paths(keys))),
            Some(WithPayload::Selector {
                include: None,
                exclude: None,
            }) => Some(payload.clone()),
        }
    }

    /// Every key of the selector is a key path.
    pub fn check(sel: &Option<WithPayload>) -> Result<(), String> {
        let keys = match sel {
            Some(WithPayload::Keys(keys)) => keys.iter().collect::<Vec<_>>(),
            Some(WithPayload::Selector { include, exclude }) => {
                include.iter().chain(exclude).flatten().collect()
            }
            _ => Vec::new(),
        };
        keys.into_iter()
            .try_for_each(|k| KeyPath::parse(k).map(drop))
            .map_err(|e| format!("with_payload: {e}"))
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RetrievePoints {
    pub ids: Vec<PointId>,
    pub with_payload: Option<WithPayload>,
    pub with_vector: Option<WithVector>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ScrollPoints {
    pub offset: Option<PointId>,
    pub limit: Option<usize>,
    pub filter: Option<Filter>,
    pub with_payload: Option<WithPayload>,
    pub with_vector: Option<WithVector>,
    pub order_by: Option<Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CountPoints {
    pub filter: Option<Filter>,
    pub exact: Option<bool>,
}

// ---------- search ----------

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SearchParams {
    pub hnsw_ef: Option<usize>,
    pub exact: Option<bool>,
    pub quantization: Option<QuantizationSearchParams>,
    /// Qdrant: search only indexed segments. shoal's tail is small and searched exactly, so
    /// `false` is the only behaviour; `true` gets a 400.
    pub indexed_only: Option<bool>,
}

/// Qdrant's `params.quantization`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct QuantizationSearchParams {
    pub ignore: Option<bool>,
    pub rescore: Option<bool>,
    pub oversampling: Option<f64>,
}

/// `query` of the Query API: a vector, `{"nearest": vector}`, or a point id (search by that point's
/// vector). Other query kinds (recommend, fusion, …) are kept raw and rejected by the handler.
#[derive(Debug)]
pub enum QueryInput {
    Vector(Vec<f32>),
    Id(PointId),
    Nearest { nearest: NearestInput },
    Other(Value),
}

/// Deserialized by hand in `vector_de` (the first token decides); the schema is the untagged one.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum NearestInput {
    Vector(Vec<f32>),
    Named(BTreeMap<String, Vec<f32>>),
    Id(PointId),
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct QueryPoints {
    pub query: Option<QueryInput>,
    pub prefetch: Option<Value>,
    pub using: Option<String>,
    pub filter: Option<Filter>,
    pub params: Option<SearchParams>,
    pub score_threshold: Option<f32>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
    pub with_payload: Option<WithPayload>,
    pub with_vector: Option<WithVector>,
    pub lookup_from: Option<Value>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct QueryBatch {
    pub searches: Vec<QueryPoints>,
}

/// The older search API: `vector` plain or `{"name": …, "vector": …}`.
/// Deserialized by hand in `vector_de` (the first token decides); the schema is the untagged one.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum SearchVector {
    Dense(Vec<f32>),
    Named { name: String, vector: Vec<f32> },
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SearchPoints {
    pub vector: SearchVector,
    pub filter: Option<Filter>,
    pub params: Option<SearchParams>,
    pub limit: usize,
    pub offset: Option<usize>,
    pub with_payload: Option<WithPayload>,
    pub with_vector: Option<WithVector>,
    pub score_threshold: Option<f32>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SearchBatch {
    pub searches: Vec<SearchPoints>,
}

// ---------- responses ----------

/// A point as retrieve and scroll return it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordOut {
    pub id: PointId,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Payload>,
    #[serde(serialize_with = "vector_or_no_vectors")]
    pub vector: Option<Vec<f32>>,
    pub shard_key: Option<Value>,
    pub order_value: Option<Value>,
}

/// A point as search returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoredPointOut {
    pub id: PointId,
    pub version: u64,
    pub score: f32,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Payload>,
    pub vector: Option<Vec<f32>>,
    pub shard_key: Option<Value>,
    pub order_value: Option<Value>,
}

impl RecordOut {
    pub fn from_view(
        p: PointView,
        with_payload: &Option<WithPayload>,
        payload_default: bool,
    ) -> Self {
        RecordOut {
            id: p.id,
            payload: WithPayload::select(with_payload, payload_default, &p.payload),
            vector: p.vector,
            shard_key: None,
            order_value: None,
        }
    }
}

/// `result` of the Query API.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryResponse {
    pub points: Vec<ScoredPointOut>,
}

/// `result` of scroll.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScrollResponse {
    pub points: Vec<RecordOut>,
    pub next_page_offset: Option<PointId>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateResult {
    pub operation_id: u64,
    #[schema(value_type = String, example = "completed")]
    pub status: &'static str,
}

impl UpdateResult {
    /// The result of the write of `version` (see [`operation_id`](crate::shard::version::operation_id)).
    pub fn new(version: u64, wait: bool) -> Self {
        UpdateResult {
            operation_id: crate::shard::version::operation_id(version),
            status: if wait { "completed" } else { "acknowledged" },
        }
    }
}

/// `result` of `GET /collections`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionsList {
    pub collections: Vec<CollectionDescription>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionDescription {
    pub name: String,
}

/// `result` of `GET /collections/{name}/exists`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionExists {
    pub exists: bool,
}

/// `result` of count.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountResult {
    pub count: u64,
}

/// `result` of `GET /collections/{name}`: Qdrant's `CollectionInfo`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionInfo {
    #[schema(example = "green")]
    pub status: String,
    /// `"ok"`, or `{"error": "..."}` when the last build failed.
    pub optimizer_status: Value,
    pub indexed_vectors_count: u64,
    pub points_count: u64,
    pub segments_count: u64,
    #[schema(value_type = Object)]
    pub config: Value,
    #[schema(value_type = Object)]
    pub payload_schema: Value,
}

/// `result` of `GET /cluster`: `{"status": "disabled", "mode": "single-node"}` on a single
/// node, else this node, its peers and their state (with Qdrant's consensus fields, constant:
/// shoal has no consensus log).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ClusterStatus {
    #[schema(example = "enabled")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordinal: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statefulset: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_size: Option<u32>,
    /// By ordinal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<BTreeMap<String, PeerInfo>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raft_info: Option<RaftInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consensus_thread_status: Option<ConsensusThreadStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub message_send_failures: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PeerInfo {
    pub uri: Option<String>,
    pub name: Option<String>,
    /// `self`, `up`, `down` or `unknown`.
    pub state: &'static str,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RaftInfo {
    pub term: u64,
    pub commit: u64,
    pub pending_operations: u64,
    pub leader: Option<u64>,
    pub role: Option<String>,
    pub is_voter: bool,
}

impl Default for RaftInfo {
    fn default() -> Self {
        RaftInfo {
            term: 0,
            commit: 0,
            pending_operations: 0,
            leader: None,
            role: None,
            is_voter: true,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsensusThreadStatus {
    pub consensus_thread_status: &'static str,
    pub last_update: String,
}

/// `result` of `GET /collections/{name}/cluster`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionClusterInfo {
    pub peer_id: u32,
    pub shard_count: u32,
    pub local_shards: Vec<LocalShardInfo>,
    pub remote_shards: Vec<RemoteShardInfo>,
    #[schema(value_type = Vec<Object>)]
    pub shard_transfers: Vec<Value>,
    /// Every shard and the ordinals owning it, preferred first.
    pub shards: Vec<ShardPlacement>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LocalShardInfo {
    pub shard_id: u32,
    pub points_count: usize,
    pub state: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RemoteShardInfo {
    pub shard_id: u32,
    pub peer_id: u32,
    /// `Active`, or `Dead` while the peer does not answer.
    pub state: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShardPlacement {
    pub shard_id: u32,
    pub owners: Vec<u32>,
}

/// `GET /`: not wrapped in the envelope, as in Qdrant.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub title: String,
    pub version: String,
    pub shoal_version: String,
    pub time: f64,
}

// ---------- vector updates, batches of writes, groups ----------

/// One point's new vector (`PUT /points/vectors`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct PointVectors {
    pub id: PointId,
    pub vector: VectorInput,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateVectors {
    pub points: Vec<PointVectors>,
    pub update_filter: Option<Filter>,
}

/// `POST /points/vectors/delete`: the vector names to remove from the selected points.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DeleteVectors {
    pub points: Option<Vec<PointId>>,
    pub filter: Option<Filter>,
    pub vector: Vec<String>,
}

/// One operation of `POST /points/batch`, tagged by its name as in Qdrant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOperation {
    Upsert(UpsertPoints),
    Delete(PointsSelector),
    SetPayload(SetPayload),
    OverwritePayload(SetPayload),
    DeletePayload(DeletePayload),
    ClearPayload(PointsSelector),
    UpdateVectors(UpdateVectors),
    DeleteVectors(DeleteVectors),
}

/// `POST /points/batch`: operations applied in order.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateOperations {
    pub operations: Vec<UpdateOperation>,
}

/// `with_lookup` of a group search: a collection name, or the name with what to return of the
/// point found there by the group's id (payload by default, no vector).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum WithLookup {
    Collection(String),
    Options {
        collection: String,
        with_payload: Option<WithPayload>,
        #[serde(alias = "with_vector")]
        with_vectors: Option<WithVector>,
    },
}

/// `POST /points/search/groups`: a search whose hits are grouped by a payload value.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SearchGroups {
    #[serde(flatten)]
    pub search: SearchPoints,
    pub group_by: String,
    pub group_size: usize,
    pub with_lookup: Option<WithLookup>,
}

/// `POST /points/query/groups`: a query whose hits are grouped by a payload value; `limit` is
/// the number of groups (10 by default), `group_size` the hits per group (3 by default).
#[derive(Debug, Deserialize, ToSchema)]
pub struct QueryGroups {
    #[serde(flatten)]
    pub query: QueryPoints,
    pub group_by: String,
    pub group_size: Option<usize>,
    pub with_lookup: Option<WithLookup>,
}

/// One group: the value it is for, its best hits, and the point of the lookup collection whose
/// id is that value (when asked for and found).
#[derive(Debug, Serialize, ToSchema)]
pub struct PointGroup {
    #[schema(value_type = Object)]
    pub id: Value,
    pub hits: Vec<ScoredPointOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookup: Option<RecordOut>,
}

/// `result` of the group searches.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupsResult {
    pub groups: Vec<PointGroup>,
}

/// A record's vector: a point whose vector was deleted has none, which Qdrant shows as `{}`
/// (no named vectors).
fn vector_or_no_vectors<S: serde::Serializer>(
    v: &Option<Vec<f32>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match v {
        Some(v) if v.is_empty() => s.serialize_map(Some(0))?.end(),
        other => other.serialize(s),
    }
}

// ---------- payload indexes, facets ----------

/// `PUT /collections/{name}/index`: Qdrant's `CreateFieldIndex`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateFieldIndex {
    /// A key path, as filters write it (`a.b`, `"a.b"`, `tags[]`).
    pub field_name: String,
    /// A type name (`keyword`, `integer`, `float`, `bool`, `uuid`, `datetime`, `text`) or the
    /// object form `{"type": …, params}` (`lookup`/`range` for integers, `tokenizer`,
    /// `lowercase`, `min_token_len`, `max_token_len` for text).
    #[schema(value_type = Object)]
    pub field_schema: Option<Value>,
}

/// The index routes' other query parameter besides `wait`: `ordering` (`weak`, `medium`,
/// `strong`), accepted for compatibility: a configuration change is ordered by its version.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderingParams {
    pub ordering: Option<WriteOrdering>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WriteOrdering {
    Weak,
    Medium,
    Strong,
}

/// `POST /collections/{name}/facet`: Qdrant's `FacetRequest`. Counts are always exact.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct FacetRequest {
    pub key: String,
    /// Most values returned (default 10).
    pub limit: Option<usize>,
    pub filter: Option<Filter>,
    /// Accepted; every count is exact.
    pub exact: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub shard_key: Option<Value>,
}

/// `result` of facet: values by count, most frequent first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FacetResponse {
    pub hits: Vec<FacetHit>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FacetHit {
    pub value: FacetValueOut,
    pub count: u64,
}

/// A facet value: a string (keyword or uuid), an integer or a boolean.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FacetValueOut {
    String(String),
    Integer(i64),
    Bool(bool),
}

impl From<crate::shard::facet::FacetValue> for FacetValueOut {
    fn from(v: crate::shard::facet::FacetValue) -> Self {
        use crate::shard::facet::FacetValue;
        match v {
            FacetValue::Keyword(s) => FacetValueOut::String(s),
            FacetValue::Int(n) => FacetValueOut::Integer(n),
            FacetValue::Bool(b) => FacetValueOut::Bool(b),
        }
    }
}

/// One field's entry in `payload_schema` of collection info.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayloadIndexInfo {
    #[schema(value_type = String, example = "keyword")]
    pub data_type: crate::shard::payload_index::FieldType,
    /// The object form, as it was sent; absent when the schema was a type name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<serde_json::Map<String, Value>>,
    /// Points of this node's replicas holding a value for the field.
    pub points: u64,
}
