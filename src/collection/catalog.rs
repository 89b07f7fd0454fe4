//! The node's collections and the files behind them.
//!
//! Layout under `--data-dir`:
//! ```text
//! points.sled/                          point records of every shard (one sled database, a tree per shard)
//! collections/<name>/config.json        collection configuration, written atomically
//! collections/<name>/shards/<i>/segments/   HNSW segments of shard i (see shard::optimizer)
//! ```
//! `config.json` is the commit point of a collection: it is written last on create and removed
//! first on delete, and a directory without it (a crash mid-create or mid-delete) is cleared on open
//! along with its sled trees.

use super::{Collection, CollectionConfig};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::shard::version::VersionClock;
use crate::shard::{Shard, ShardConfig};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CONFIG_FILE: &str = "config.json";

pub struct Catalog {
    dir: PathBuf,
    db: sled::Db,
    clock: Arc<VersionClock>,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    /// Serialises create and delete so two of them never interleave on one name.
    ddl: parking_lot::Mutex<()>,
}

fn tree_name(collection: &str, shard: u32) -> String {
    format!("c/{collection}/{shard}")
}

/// Qdrant's rule for collection names: they become directory names.
pub fn validate_name(name: &str) -> Result<()> {
    const FORBIDDEN: &[char] = &['<', '>', ':', '"', '/', '\\', '|', '?', '*', '\0'];
    if name.is_empty() || name.len() > 255 || name == "." || name == ".." || name.contains(FORBIDDEN) {
        return Err(Error::BadRequest(format!(
            "collection name {name:?} is invalid: it must be 1-255 characters without any of < > : \" / \\ | ? *"
        )));
    }
    Ok(())
}

impl Catalog {
    /// Opens every collection under `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> anyhow::Result<Catalog> {
        std::fs::create_dir_all(dir.join("collections"))?;
        let db = sled::Config::new().path(dir.join("points.sled")).flush_every_ms(Some(200)).open()?;
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            db,
            clock: Arc::new(VersionClock::default()),
            collections: RwLock::new(BTreeMap::new()),
            ddl: parking_lot::Mutex::new(()),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir.join("collections"))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join(CONFIG_FILE).exists() {
                names.push(name);
            } else {
                tracing::warn!(collection = %name, "removing a collection left half-created or half-deleted");
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        for tree in catalog.db.tree_names() {
            let t = String::from_utf8_lossy(&tree).into_owned();
            let owner = t.strip_prefix("c/").and_then(|r| r.rsplit_once('/')).map(|(c, _)| c.to_string());
            if owner.is_some_and(|c| !names.contains(&c)) {
                catalog.db.drop_tree(tree)?;
            }
        }
        for name in names {
            let started = std::time::Instant::now();
            let bytes = std::fs::read(catalog.collection_dir(&name).join(CONFIG_FILE))?;
            let config: CollectionConfig = serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("collection {name}: unreadable {CONFIG_FILE}: {e}"))?;
            let collection = catalog.open_collection(&name, config)?;
            tracing::info!(collection = %name, points = collection.count(None), seconds = started.elapsed().as_secs_f64(), "collection opened");
            catalog.collections.write().insert(name, Arc::new(collection));
        }
        Ok(catalog)
    }

    fn collection_dir(&self, name: &str) -> PathBuf {
        self.dir.join("collections").join(name)
    }

    fn open_collection(&self, name: &str, config: CollectionConfig) -> anyhow::Result<Collection> {
        let shard_config = ShardConfig { dim: config.size, metric: config.distance, hnsw: config.hnsw };
        let shards = (0..config.shard_number)
            .map(|i| {
                let dir = self.collection_dir(name).join("shards").join(i.to_string());
                Shard::open(&self.db, &tree_name(name, i), &dir, shard_config, Arc::clone(&self.clock)).map(Arc::new)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Collection::new(name.to_string(), config, shards, Arc::clone(&self.clock)))
    }

    pub fn get(&self, name: &str) -> Result<Arc<Collection>> {
        self.collections
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("Collection `{name}` doesn't exist!")))
    }

    pub fn names(&self) -> Vec<String> {
        self.collections.read().keys().cloned().collect()
    }

    pub fn all(&self) -> Vec<Arc<Collection>> {
        self.collections.read().values().cloned().collect()
    }

    pub fn create(&self, name: &str, config: CollectionConfig) -> Result<()> {
        validate_name(name)?;
        let _ddl = self.ddl.lock();
        if self.collections.read().contains_key(name) {
            return Err(Error::BadRequest(format!("Collection `{name}` already exists!")));
        }
        let dir = self.collection_dir(name);
        std::fs::create_dir_all(&dir)?;
        let collection = self.open_collection(name, config.clone())?;
        let bytes = serde_json::to_vec_pretty(&config).map_err(|e| Error::Internal(e.to_string()))?;
        fsutil::write_atomic(&dir.join(CONFIG_FILE), &bytes)?;
        self.collections.write().insert(name.to_string(), Arc::new(collection));
        tracing::info!(collection = %name, ?config, "collection created");
        Ok(())
    }

    /// Deletes a collection; `false` when there was none by that name.
    pub fn delete(&self, name: &str) -> Result<bool> {
        let _ddl = self.ddl.lock();
        let Some(collection) = self.collections.write().remove(name) else { return Ok(false) };
        let dir = self.collection_dir(name);
        std::fs::remove_file(dir.join(CONFIG_FILE))?;
        fsutil::sync_dir(&dir)?;
        for i in 0..collection.config.shard_number {
            self.db.drop_tree(tree_name(name, i)).map_err(|e| Error::Internal(e.to_string()))?;
        }
        std::fs::remove_dir_all(&dir)?;
        tracing::info!(collection = %name, "collection deleted");
        Ok(true)
    }

    /// Makes every write so far durable (shutdown, tests).
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| Error::Internal(e.to_string()))
    }
}
