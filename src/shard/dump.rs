//! A point-in-time walk over a shard's live records: what a snapshot is made of.
//!
//! The walk holds the shard's write lock from its first record to its last, so no change lands
//! in between: the records it yields are exactly the shard's state at one instant (writers to
//! this shard wait meanwhile; reads go on). It reads sled in id order and hands each live
//! record to the caller, which writes it out (to a local file: see
//! `crate::cluster::snapshot`), so its memory is one record whatever the shard's size.

use super::point::{PointId, Record};
use super::{Shard, ShardError};
use std::io;

impl Shard {
    /// Calls `each` with every live record (tombstones skipped), in id order, under the write
    /// lock; answers how many it gave. An error from `each` stops the walk and is returned.
    pub fn dump(
        &self,
        mut each: impl FnMut(PointId, Record) -> io::Result<()>,
    ) -> Result<u64, ShardError> {
        let _writer = self.write_lock.lock();
        if self.is_retired() {
            return Err(ShardError::Removed);
        }
        let walk = |tree: &sled::Tree| -> sled::Result<Result<u64, ShardError>> {
            let mut count = 0;
            for item in tree.iter() {
                let (key, value) = item?;
                let (id, record) = match super::decode_entry(&key, &value) {
                    Ok(entry) => entry,
                    Err(e) => return Ok(Err(e)),
                };
                if record.body.is_none() {
                    continue;
                }
                if let Err(e) = each(id, record) {
                    return Ok(Err(ShardError::Storage(format!("writing the dump: {e}"))));
                }
                count += 1;
            }
            Ok(Ok(count))
        };
        self.store.with_tree(&self.tree, walk)?
    }
}
