//! The machine-readable description of the public API, served at `GET /openapi.json`.
//!
//! Routes and their descriptions come from one place: every public handler carries a
//! `#[utoipa::path]` and is registered with `utoipa_axum::routes!` (see [`super::router`]), so a
//! route cannot exist without its description. Request and response bodies derive `ToSchema` in
//! [`crate::service::models`] and [`super::response`]. Types owned by other modules (`PointId`, `Filter`,
//! `Metric`) get their schema here from mirror types shaped like their serde form, so that
//! `src/shard` and `src/index` need no OpenAPI code; a unit test checks the mirrors against what
//! the real types accept.

use crate::index::Metric;
use crate::shard::filter::Filter;
use crate::shard::point::PointId;
use serde::Serialize;
use std::borrow::Cow;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Document-level information; paths and schemas are added by the router.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "shoal",
        description = "A Qdrant-compatible vector search node. Successful answers are wrapped in \
                       `{\"result\": …, \"status\": \"ok\", \"time\": seconds}`; errors are \
                       `{\"status\": {\"error\": \"…\"}, \"time\": seconds}`. With `--api-key`, every \
                       route but the probes needs the key (`api-key` header or `Authorization: Bearer`).",
        license(name = "Apache-2.0")
    ),
    modifiers(&ApiKeySecurity),
    tags(
        (name = "service", description = "Health, readiness, metrics and this document"),
        (name = "collections", description = "Create, inspect, list and delete collections"),
        (name = "points", description = "Write, read, scroll and count points"),
        (name = "search", description = "Nearest-neighbour search"),
        (name = "cluster", description = "Cluster and shard placement"),
    )
)]
pub struct ApiDoc;

struct ApiKeySecurity;

impl utoipa::Modify for ApiKeySecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api-key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("api-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

// ---------- PointId ----------

impl PartialSchema for PointId {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::Custom("uint64".into())))
                    .minimum(Some(0)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::Custom("uuid".into()))),
            )
            .description(Some("An unsigned integer or a UUID string"))
            .into()
    }
}

impl ToSchema for PointId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ExtendedPointId")
    }
}

// ---------- Metric ----------

/// Distance function of a collection.
#[derive(Serialize, ToSchema)]
#[schema(as = Distance)]
pub enum MetricDoc {
    Cosine,
    Dot,
    Euclid,
    Manhattan,
}

impl PartialSchema for Metric {
    fn schema() -> RefOr<Schema> {
        MetricDoc::schema()
    }
}

impl ToSchema for Metric {
    fn name() -> Cow<'static, str> {
        MetricDoc::name()
    }
}

// ---------- Filter (src/shard/filter.rs) ----------

/// `must` (all), `should` (at least one), `must_not` (none), `min_should`. Each clause is a list
/// of conditions or one bare condition.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Filter, no_recursion)]
pub struct FilterDoc {
    pub must: Option<ConditionsDoc>,
    pub should: Option<ConditionsDoc>,
    pub must_not: Option<ConditionsDoc>,
    pub min_should: Option<MinShouldDoc>,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Conditions, no_recursion)]
pub enum ConditionsDoc {
    Many(Vec<ConditionDoc>),
    One(Box<ConditionDoc>),
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MinShould, no_recursion)]
pub struct MinShouldDoc {
    pub conditions: Vec<ConditionDoc>,
    pub min_count: u64,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Condition, no_recursion)]
pub enum ConditionDoc {
    Field(FieldConditionDoc),
    IsEmpty(IsEmptyDoc),
    IsNull(IsNullDoc),
    HasId(HasIdDoc),
    Nested(NestedDoc),
    Filter(FilterDoc),
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FieldCondition)]
pub struct FieldConditionDoc {
    pub key: String,
    #[serde(rename = "match")]
    pub matches: Option<MatchDoc>,
    pub range: Option<RangeDoc>,
    pub values_count: Option<ValuesCountDoc>,
    pub is_empty: Option<bool>,
    pub is_null: Option<bool>,
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Match)]
pub enum MatchDoc {
    Value { value: MatchValueDoc },
    Text { text: String },
    Any { any: Vec<MatchValueDoc> },
    Except { except: Vec<MatchValueDoc> },
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = MatchValue)]
pub enum MatchValueDoc {
    Bool(bool),
    Int(i64),
    Keyword(String),
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Range)]
pub struct RangeDoc {
    pub lt: Option<f64>,
    pub gt: Option<f64>,
    pub gte: Option<f64>,
    pub lte: Option<f64>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ValuesCount)]
pub struct ValuesCountDoc {
    pub lt: Option<u64>,
    pub gt: Option<u64>,
    pub gte: Option<u64>,
    pub lte: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = PayloadKey)]
pub struct KeyRefDoc {
    pub key: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IsEmptyCondition)]
pub struct IsEmptyDoc {
    pub is_empty: KeyRefDoc,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IsNullCondition)]
pub struct IsNullDoc {
    pub is_null: KeyRefDoc,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = HasIdCondition)]
pub struct HasIdDoc {
    pub has_id: Vec<PointId>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NestedCondition, no_recursion)]
pub struct NestedDoc {
    pub nested: NestedBodyDoc,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Nested, no_recursion)]
pub struct NestedBodyDoc {
    pub key: String,
    pub filter: Box<FilterDoc>,
}

impl PartialSchema for Filter {
    fn schema() -> RefOr<Schema> {
        FilterDoc::schema()
    }
}

impl ToSchema for Filter {
    fn name() -> Cow<'static, str> {
        FilterDoc::name()
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        // The filter language is recursive: register every part once, by name.
        fn add<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
            let name = T::name().into_owned();
            if !schemas.iter().any(|(n, _)| *n == name) {
                schemas.push((name, T::schema()));
            }
        }
        add::<FilterDoc>(schemas);
        add::<ConditionsDoc>(schemas);
        add::<ConditionDoc>(schemas);
        add::<MinShouldDoc>(schemas);
        add::<FieldConditionDoc>(schemas);
        add::<MatchDoc>(schemas);
        add::<MatchValueDoc>(schemas);
        add::<RangeDoc>(schemas);
        add::<ValuesCountDoc>(schemas);
        add::<KeyRefDoc>(schemas);
        add::<IsEmptyDoc>(schemas);
        add::<IsNullDoc>(schemas);
        add::<HasIdDoc>(schemas);
        add::<NestedDoc>(schemas);
        add::<NestedBodyDoc>(schemas);
        add::<PointId>(schemas);
    }
}

// ---------- VectorsConfig (custom Deserialize in models.rs) ----------

impl PartialSchema for crate::service::models::VectorsConfig {
    fn schema() -> RefOr<Schema> {
        let params: RefOr<Schema> =
            RefOr::Ref(utoipa::openapi::Ref::from_schema_name("VectorParams"));
        OneOfBuilder::new()
            .item(params.clone())
            .item(ObjectBuilder::new().schema_type(Type::Object).additional_properties(Some(params)))
            .description(Some("One unnamed vector `{size, distance}`, or names mapped to vector params (only the name \"\" is supported)"))
            .into()
    }
}

impl ToSchema for crate::service::models::VectorsConfig {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("VectorsConfig")
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        use crate::service::models::VectorParams;
        schemas.push((VectorParams::name().into_owned(), VectorParams::schema()));
        VectorParams::schemas(schemas);
    }
}

// ---------- errors ----------

/// The error answers every route may give, in Qdrant's error shape: 4xx for what the client got
/// wrong (400 bad body, 401/403 keys, 404 unknown collection or point, 409 conflict, 413 body too
/// large), 503 when overloaded or a replica is unavailable, 504 when the request timed out.
pub struct ApiErrors;

impl utoipa::IntoResponses for ApiErrors {
    fn responses() -> std::collections::BTreeMap<String, RefOr<utoipa::openapi::response::Response>>
    {
        use utoipa::openapi::response::ResponseBuilder;
        use utoipa::openapi::ContentBuilder;
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                            "ErrorResponse",
                        ))))
                        .build(),
                )
                .build()
                .into()
        };
        [
            (
                "4XX".to_string(),
                error("The request was wrong: the message says what"),
            ),
            (
                "5XX".to_string(),
                error("Overloaded (503), timed out (504), or an internal error"),
            ),
        ]
        .into_iter()
        .collect()
    }
}

/// The document as served: built once from the router's routes.
pub fn render(doc: &utoipa::openapi::OpenApi) -> axum::body::Bytes {
    serde_json::to_vec(doc).map(Into::into).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot render the OpenAPI document");
        axum::body::Bytes::from_static(b"{}")
    })
}

// ---------- QueryInput (its catch-all variant is parsed only to be rejected with a clear 400) ----------

/// What the Query API accepts as `query`.
#[derive(serde::Deserialize, ToSchema)]
#[serde(untagged)]
#[schema(as = QueryInput)]
pub enum QueryInputDoc {
    /// Search with this vector.
    Vector(Vec<f32>),
    /// Search with the vector of this point (the point itself is excluded).
    Id(PointId),
    Nearest {
        nearest: crate::service::models::NearestInput,
    },
}

impl PartialSchema for crate::service::models::QueryInput {
    fn schema() -> RefOr<Schema> {
        QueryInputDoc::schema()
    }
}

impl ToSchema for crate::service::models::QueryInput {
    fn name() -> Cow<'static, str> {
        QueryInputDoc::name()
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        QueryInputDoc::schemas(schemas);
    }
}
