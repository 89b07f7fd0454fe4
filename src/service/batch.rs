//! Writes beyond the single-purpose routes: vector updates (`PUT /points/vectors`), vector
//! deletes (`POST /points/vectors/delete`) and batches of writes (`POST /points/batch`). Each
//! becomes a validated [`Write`]; a batch checks all of its operations (vectors against the
//! collection included) before it applies the first, then applies them in order, each at a
//! version above the one before, so a later operation wins over an earlier one everywhere.

use super::models::*;
use super::validate::{self, Write};
use super::{Database, Result};
use crate::collection::Collection;
use std::sync::Arc;

impl Database {
    /// Replaces the vectors of existing points; a missing point is a 404 and changes nothing.
    pub async fn update_vectors(
        &self,
        name: &str,
        req: UpdateVectors,
        wait: bool,
    ) -> Result<UpdateResult> {
        let c = self.collection(name)?;
        let write = validate::update_vectors(req, self.config.max_batch_points)?;
        validate::fits(&c, &write)?;
        self.apply(&c, write, wait).await
    }

    /// Removes the vector of the selected points, keeping their payloads.
    pub async fn delete_vectors(
        &self,
        name: &str,
        req: DeleteVectors,
        wait: bool,
    ) -> Result<UpdateResult> {
        let c = self.collection(name)?;
        let write = validate::delete_vectors(req)?;
        self.apply(&c, write, wait).await
    }

    /// Applies a list of writes in order, once all of them passed their checks; answers one
    /// result per operation. A write that fails when applied (a point that does not exist for
    /// `update_vectors`, a replica down) stops the batch there, as in Qdrant: the operations
    /// before it stay applied.
    pub async fn batch_update(
        &self,
        name: &str,
        req: UpdateOperations,
        wait: bool,
    ) -> Result<Vec<UpdateResult>> {
        let c = self.collection(name)?;
        let writes = validate::batch_update(req, &c, self.config.max_batch_points)?;
        let mut results = Vec::with_capacity(writes.len());
        for w in writes {
            results.push(self.apply(&c, w, wait).await?);
        }
        Ok(results)
    }

    async fn apply(&self, c: &Arc<Collection>, w: Write, wait: bool) -> Result<UpdateResult> {
        let co = &self.coordinator;
        let op = match w {
            Write::Upsert(points) => co.upsert(c, points, wait).await?,
            Write::Delete(selector) => co.delete_points(c, selector, wait).await?,
            Write::Payload(selector, op) => co.modify_payload(c, selector, op, wait).await?,
            Write::Vectors(points) => co.update_vectors(c, points, wait).await?,
            Write::DeleteVectors(selector) => co.delete_vectors(c, selector, wait).await?,
        };
        Ok(UpdateResult::new(op, wait))
    }
}
