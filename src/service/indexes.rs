//! Payload indexes and what they enable: create and delete an index (Qdrant's
//! `PUT /collections/{c}/index`, `DELETE /collections/{c}/index/{field}`), facet counts, and
//! scroll ordered by a field. Facets and `order_by` need the index Qdrant needs (checked here,
//! against the collection's schema, with Qdrant's messages); the coordinator merges every
//! shard's exact answer.

use super::budget::{self, Reserved};
use super::models::*;
use super::validate::{self, OrderBy};
use super::{Database, Error, Result};
use crate::shard::payload_index::FieldType;

impl Database {
    /// Indexes a payload field on every replica of the collection, everywhere in the cluster.
    pub async fn create_payload_index(
        &self,
        name: &str,
        req: CreateFieldIndex,
        wait: bool,
    ) -> Result<UpdateResult> {
        // Through an alias too: the index is the collection's.
        let c = self.collection(name)?;
        let Some(schema) = req.field_schema.filter(|s| !s.is_null()) else {
            return Err(Error::BadRequest(
                "field_schema is required: a type name (keyword, integer, float, bool, uuid, datetime, text) or {\"type\": …, params}".into(),
            ));
        };
        let op = (self.coordinator)
            .create_payload_index(&c.name, &req.field_name, &schema)
            .await?;
        Ok(UpdateResult::new(op, wait))
    }

    /// Drops a field's index everywhere; a field without one is no error.
    pub async fn delete_payload_index(
        &self,
        name: &str,
        field: &str,
        wait: bool,
    ) -> Result<UpdateResult> {
        let c = self.collection(name)?;
        let op = self
            .coordinator
            .delete_payload_index(&c.name, field)
            .await?;
        Ok(UpdateResult::new(op, wait))
    }

    /// The most frequent values of an indexed field among the points passing a filter, with
    /// their exact counts. Bounded like a scroll: the answer's hits are reserved before the
    /// read, each shard stops counting at the request's deadline and before its distinct values
    /// outgrow its share of the request's memory (the share a scroll's payloads get), and what
    /// the shards answered is charged before it is merged and held until the answer is written.
    pub async fn facet(&self, name: &str, req: FacetRequest) -> Result<Reserved<FacetResponse>> {
        let c = self.collection(name)?;
        let limit = validate::facet(&req)?;
        let field = validate::facet_key(&c.config.payload_schema, &req.key)?;
        let what = "this facet";
        let mut memory =
            (self.memory).reserve(budget::points_bytes(limit, 0, false, false), what)?;
        let (deadline, _dropped) = self.read_deadline(Some((&*c, 1)));
        let hits = (self.coordinator)
            .facet(&c, (field, req.filter, limit), &deadline, |held| {
                memory.grow(held, what)
            })
            .await?;
        let hits = hits
            .into_iter()
            .map(|(value, count)| FacetHit {
                value: value.into(),
                count,
            })
            .collect();
        // Held until the answer is written, as a scroll's page is.
        Ok(memory.hold(FacetResponse { hits }))
    }

    /// A scroll with `order_by`: points by the value of an indexed numeric or datetime field,
    /// each with its `order_value`; no next page offset (page with `start_from`), as in Qdrant.
    pub(super) async fn scroll_ordered(
        &self,
        name: &str,
        req: ScrollPoints,
        order: OrderBy,
        limit: usize,
    ) -> Result<Reserved<ScrollResponse>> {
        let c = self.collection(name)?;
        let field = validate::order_by_key(&c.config.payload_schema, &order.key)?;
        let with_vector = WithVector::wanted(&req.with_vector);
        let with_payload = !matches!(req.with_payload, Some(WithPayload::All(false)));
        let held = limit.saturating_mul(c.config.shard_number.max(1) as usize);
        let bytes = budget::points_bytes(held, c.config.size, with_vector, with_payload);
        let memory = self.memory.reserve(bytes, "this scroll")?;
        let (deadline, _dropped) = self.read_deadline(with_payload.then_some((&*c, 1)));
        let kind = field.kind();
        let ordered = (self.coordinator)
            .scroll_ordered(
                &c,
                field,
                order.direction,
                order.start_from,
                limit,
                req.filter,
                with_vector,
                &deadline,
            )
            .await?;
        let points = ordered
            .into_iter()
            .map(|(x, v)| RecordOut {
                order_value: Some(order_value(x, kind)),
                ..RecordOut::from_view(v, &req.with_payload, true)
            })
            .collect();
        Ok(memory.hold(ScrollResponse {
            points,
            next_page_offset: None,
        }))
    }
}

/// Qdrant's `order_value`: an integer for integer and datetime fields (µs since the epoch), a
/// float for float fields.
fn order_value(x: f64, kind: FieldType) -> serde_json::Value {
    match kind {
        FieldType::Float => serde_json::json!(x),
        _ if x.fract() == 0.0 && x.abs() < 9.2e18 => serde_json::json!(x as i64),
        _ => serde_json::json!(x),
    }
}
