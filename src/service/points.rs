//! Points: upsert, delete, payload changes, retrieve, scroll and count (the write and read
//! operations of Qdrant's `Points` service).

use super::budget::{self, Reserved};
use super::models::*;
use super::validate;
use super::{Database, Error, Result};
use crate::shard::point::PointId;
use crate::shard::{PayloadOp, Selector};

impl Database {
    /// Writes points; with `wait` the answer comes once enough replicas have them on disk.
    pub async fn upsert(&self, name: &str, req: UpsertPoints, wait: bool) -> Result<UpdateResult> {
        let c = self.collection(name)?;
        let points = validate::upsert(req, self.config.max_batch_points)?;
        let op = self.coordinator.upsert(&c, points, wait).await?;
        Ok(UpdateResult::new(op, wait))
    }

    pub async fn delete_points(
        &self,
        name: &str,
        req: PointsSelector,
        wait: bool,
    ) -> Result<UpdateResult> {
        let c = self.collection(name)?;
        let selector = validate::selector(req.points, req.filter)?;
        let op = self.coordinator.delete_points(&c, selector, wait).await?;
        Ok(UpdateResult::new(op, wait))
    }

    /// Merges keys into the payloads of the selected points (at `key`, a nested path, if set).
    pub async fn set_payload(
        &self,
        name: &str,
        req: SetPayload,
        wait: bool,
    ) -> Result<UpdateResult> {
        let op = PayloadOp::Set {
            payload: req.payload,
            key: req.key,
        };
        self.change_payload(name, validate::selector(req.points, req.filter), op, wait)
            .await
    }

    /// Replaces the payloads of the selected points.
    pub async fn overwrite_payload(
        &self,
        name: &str,
        req: SetPayload,
        wait: bool,
    ) -> Result<UpdateResult> {
        let op = PayloadOp::Overwrite(req.payload);
        self.change_payload(name, validate::selector(req.points, req.filter), op, wait)
            .await
    }

    /// Removes keys (paths) from the payloads of the selected points.
    pub async fn delete_payload(
        &self,
        name: &str,
        req: DeletePayload,
        wait: bool,
    ) -> Result<UpdateResult> {
        let op = PayloadOp::DeleteKeys(req.keys);
        self.change_payload(name, validate::selector(req.points, req.filter), op, wait)
            .await
    }

    pub async fn clear_payload(
        &self,
        name: &str,
        req: PointsSelector,
        wait: bool,
    ) -> Result<UpdateResult> {
        let selected = validate::selector(req.points, req.filter);
        self.change_payload(name, selected, PayloadOp::Clear, wait)
            .await
    }

    async fn change_payload(
        &self,
        name: &str,
        selected: Result<Selector>,
        op: PayloadOp,
        wait: bool,
    ) -> Result<UpdateResult> {
        let selector = selected?;
        validate::payload_op(&op)?;
        let c = self.collection(name)?;
        let op = self
            .coordinator
            .modify_payload(&c, selector, op, wait)
            .await?;
        Ok(UpdateResult::new(op, wait))
    }

    /// Points by id, in the order asked; ids that do not exist are left out.
    pub async fn retrieve(
        &self,
        name: &str,
        req: RetrievePoints,
    ) -> Result<Reserved<Vec<RecordOut>>> {
        let c = self.collection(name)?;
        WithPayload::check(&req.with_payload).map_err(Error::BadRequest)?;
        let with_vector = WithVector::wanted(&req.with_vector);
        let with_payload = !matches!(req.with_payload, Some(WithPayload::All(false)));
        let bytes = budget::points_bytes(req.ids.len(), c.config.size, with_vector, with_payload);
        let memory = self.memory.reserve(bytes, "this retrieve")?;
        let (deadline, _dropped) = self.read_deadline(with_payload.then_some((&*c, 1)));
        let views = (self.coordinator)
            .retrieve(&c, &req.ids, with_vector, &deadline)
            .await?;
        let points = views
            .into_iter()
            .map(|v| RecordOut::from_view(v, &req.with_payload, true))
            .collect();
        Ok(memory.hold(points))
    }

    /// One point, with its payload and vector.
    pub async fn get_point(&self, name: &str, id: PointId) -> Result<RecordOut> {
        let c = self.collection(name)?;
        let (deadline, _dropped) = self.read_deadline(Some((&c, 1)));
        let view = self
            .coordinator
            .retrieve(&c, &[id], true, &deadline)
            .await?
            .pop()
            .ok_or_else(|| Error::NotFound(format!("No point with id {id} found")))?;
        Ok(RecordOut::from_view(view, &None, true))
    }

    /// A page of points in id order from `offset`, and where the next page starts (or, with
    /// `order_by`, ordered by a field: [`Database::scroll_ordered`]).
    pub async fn scroll(&self, name: &str, req: ScrollPoints) -> Result<Reserved<ScrollResponse>> {
        let c = self.collection(name)?;
        let limit = validate::scroll(&req)?;
        if let Some(order) = validate::order_by(&req)? {
            return self.scroll_ordered(name, req, order, limit).await;
        }
        let with_vector = WithVector::wanted(&req.with_vector);
        let with_payload = !matches!(req.with_payload, Some(WithPayload::All(false)));
        // Every shard returns a page, merged here.
        let held = (limit + 1).saturating_mul(c.config.shard_number.max(1) as usize);
        let bytes = budget::points_bytes(held, c.config.size, with_vector, with_payload);
        let memory = self.memory.reserve(bytes, "this scroll")?;
        let (deadline, _dropped) = self.read_deadline(with_payload.then_some((&*c, 1)));
        let (views, next) = (self.coordinator)
            .scroll(&c, req.offset, limit, req.filter, with_vector, &deadline)
            .await?;
        let points = views
            .into_iter()
            .map(|v| RecordOut::from_view(v, &req.with_payload, true))
            .collect();
        Ok(memory.hold(ScrollResponse {
            points,
            next_page_offset: next,
        }))
    }

    /// How many points pass the filter (always exact).
    pub async fn count(&self, name: &str, req: CountPoints) -> Result<CountResult> {
        let c = self.collection(name)?;
        validate::check_filter(req.filter.as_ref())?;
        let (deadline, _dropped) = self.read_deadline(None);
        let count = self.coordinator.count(&c, req.filter, &deadline).await?;
        Ok(CountResult { count })
    }
}
