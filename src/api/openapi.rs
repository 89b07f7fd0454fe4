//! The machine-readable description of the public API, served at `GET /openapi.json`.
//!
//! Routes and their descriptions come from one place: every public handler carries a
//! `#[utoipa::path]` and is registered with `utoipa_axum::routes!` (see [`super::router`]), so a
//! route cannot exist without its description. Request and response bodies derive `ToSchema` in
//! [`crate::service::models`] and [`super::response`], and the filter language's in
//! [`crate::shard::filter`]. The few types whose serde form is written by hand (`PointId`,
//! `Metric`, `VectorsConfig`, `QueryInput`) get their schema here; the tests below check each
//! against what the real type accepts.

use crate::index::Metric;
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
        (name = "collections", description = "Create, inspect, list, update and delete collections"),
        (name = "aliases", description = "Other names for collections, accepted wherever a collection name is"),
        (name = "points", description = "Write, read, scroll and count points"),
        (name = "search", description = "Nearest-neighbour search"),
        (name = "cluster", description = "Cluster and shard placement"),
        (name = "snapshots", description = "Collection and full-storage snapshots: create, list, download, delete, recover"),
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

// ---------- schemas referred to but not reached by a route's own types ----------

/// The schema of `T`, by its name.
fn named<T: ToSchema>() -> (String, RefOr<Schema>) {
    (T::name().into_owned(), T::schema())
}

/// Schemas every route may refer to: the error shape, and every part of the (recursive) filter
/// language, whose types do not register each other (their recursion would not end).
pub fn shared_schemas() -> Vec<(String, RefOr<Schema>)> {
    use crate::shard::filter::*;
    vec![
        named::<super::response::ErrorResponse>(),
        named::<super::response::ErrorStatus>(),
        named::<Filter>(),
        // A generic's schema goes by the name its users refer to it by.
        (
            "OneOrMany_Condition".into(),
            OneOrMany::<Condition>::schema(),
        ),
        named::<Condition>(),
        named::<MinShould>(),
        named::<FieldCondition>(),
        named::<Match>(),
        named::<MatchValue>(),
        named::<Range>(),
        named::<ValuesCount>(),
        named::<KeyRef>(),
        named::<NestedCondition>(),
        // Query parameters refer to their types' schemas too.
        named::<crate::service::models::WriteOrdering>(),
    ]
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

#[cfg(test)]
mod tests;
