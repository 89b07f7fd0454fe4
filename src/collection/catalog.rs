//! The node's collections and the files behind them.
//!
//! Layout under `--data-dir`:
//! ```text
//! points.sled/                              point records of every shard (a sled tree per shard)
//! collections/<name>/config.json            collection configuration and version, written atomically
//! collections/<name>/shards/<i>/segments/   HNSW segments of this node's replica of shard i
//! collections/tombstones.json               versions of deleted collections
//! ```
//! `config.json` is the commit point of a collection: written last on create and removed first on
//! delete; a directory without it (a crash mid-create or mid-delete) is cleared on open along
//! with its sled trees.
//!
//! Creates and deletes carry versions so that every node converges on the same set of
//! collections whatever order it hears of them in: an entry applies only over an older one, and a
//! deletion is remembered as a tombstone so that a node that was down cannot resurrect it.

use super::{tree_name, Collection, CollectionConfig};
use crate::cluster::protocol::CatalogEntry;
use crate::error::{Error, Result};
use crate::fsutil;
use crate::shard::version::VersionClock;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CONFIG_FILE: &str = "config.json";
const TOMBSTONES: &str = "tombstones.json";

#[derive(Deserialize)]
struct StoredCollection {
    #[serde(default)]
    version: u64,
    #[serde(flatten)]
    config: CollectionConfig,
}

pub struct Catalog {
    dir: PathBuf,
    db: sled::Db,
    clock: Arc<VersionClock>,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    tombstones: RwLock<BTreeMap<String, u64>>,
    /// Serialises creates and deletes so two of them never interleave on one name.
    ddl: Mutex<()>,
}

/// Qdrant's rule for collection names: they become directory names.
pub fn validate_name(name: &str) -> Result<()> {
    const FORBIDDEN: &[char] = &['<', '>', ':', '"', '/', '\\', '|', '?', '*', '\0'];
    if name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(FORBIDDEN)
        || name == TOMBSTONES
    {
        return Err(Error::BadRequest(format!(
            "collection name {name:?} is invalid: it must be 1-255 characters without any of < > : \" / \\ | ? *"
        )));
    }
    Ok(())
}

impl Catalog {
    /// Opens every collection under `dir`, creating the directory if needed; `local_shards` says
    /// which shard replicas of a collection this node holds.
    /// sled keeps at most `sled_cache_bytes` of its pages in memory (its default is 1 GB).
    pub fn open(
        dir: &Path,
        sled_cache_bytes: u64,
        local_shards: impl Fn(&CollectionConfig) -> Vec<u32>,
    ) -> anyhow::Result<Catalog> {
        let root = dir.join("collections");
        std::fs::create_dir_all(&root)?;
        let db = sled::Config::new()
            .path(dir.join("points.sled"))
            .cache_capacity(sled_cache_bytes)
            .flush_every_ms(Some(200))
            .open()?;
        let tombstones = match std::fs::read(root.join(TOMBSTONES)) {
            Ok(bytes) => serde_json::from_slice(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            db,
            clock: Arc::new(VersionClock::default()),
            collections: RwLock::new(BTreeMap::new()),
            tombstones: RwLock::new(tombstones),
            ddl: Mutex::new(()),
        };
        let mut stored = Vec::new();
        for entry in std::fs::read_dir(&root)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            match std::fs::read(entry.path().join(CONFIG_FILE)) {
                Ok(bytes) => {
                    let s: StoredCollection = serde_json::from_slice(&bytes).map_err(|e| {
                        anyhow::anyhow!("collection {name}: unreadable {CONFIG_FILE}: {e}")
                    })?;
                    stored.push((name, s));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(collection = %name, "removing a collection left half-created or half-deleted");
                    std::fs::remove_dir_all(entry.path())?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        for tree in catalog.db.tree_names() {
            let t = String::from_utf8_lossy(&tree).into_owned();
            let owner = t
                .strip_prefix("c/")
                .or_else(|| t.strip_prefix("d/"))
                .and_then(|r| r.rsplit_once('/'))
                .map(|(c, _)| c.to_string());
            if owner.is_some_and(|c| !stored.iter().any(|(n, _)| *n == c)) {
                catalog.db.drop_tree(tree)?;
            }
        }
        for (name, s) in stored {
            let started = std::time::Instant::now();
            catalog.clock.observe(s.version);
            let collection = catalog.instantiate(&name, s.config, s.version);
            for shard in local_shards(&collection.config) {
                collection.open_shard(shard)?;
            }
            let (points, indexed, _) = collection.stats();
            tracing::info!(collection = %name, points, indexed, seconds = started.elapsed().as_secs_f64(), "collection opened");
            catalog
                .collections
                .write()
                .insert(name, Arc::new(collection));
        }
        Ok(catalog)
    }

    fn collection_dir(&self, name: &str) -> PathBuf {
        self.dir.join("collections").join(name)
    }

    fn instantiate(&self, name: &str, config: CollectionConfig, version: u64) -> Collection {
        Collection::new(
            name.to_string(),
            config,
            version,
            self.collection_dir(name),
            self.db.clone(),
            Arc::clone(&self.clock),
        )
    }

    pub fn clock(&self) -> &Arc<VersionClock> {
        &self.clock
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

    /// Every collection and tombstone with its version: what peers compare to converge.
    pub fn entries(&self) -> Vec<CatalogEntry> {
        let mut out: Vec<CatalogEntry> = self
            .collections
            .read()
            .values()
            .map(|c| CatalogEntry {
                name: c.name.clone(),
                version: c.version,
                config: Some(c.config.clone()),
            })
            .collect();
        out.extend(self.tombstones.read().iter().map(|(n, v)| CatalogEntry {
            name: n.clone(),
            version: *v,
            config: None,
        }));
        out
    }

    /// The version this node holds for a name (live or deleted), 0 when it never heard of it.
    fn held_version(&self, name: &str) -> u64 {
        let live = self.collections.read().get(name).map(|c| c.version);
        live.or_else(|| self.tombstones.read().get(name).copied())
            .unwrap_or(0)
    }

    /// Creates a collection from a client request: fails if the name is taken.
    pub fn create(
        &self,
        name: &str,
        config: CollectionConfig,
        local_shards: &[u32],
    ) -> Result<CatalogEntry> {
        validate_name(name)?;
        let _ddl = self.ddl.lock();
        if self.collections.read().contains_key(name) {
            return Err(Error::BadRequest(format!(
                "Collection `{name}` already exists!"
            )));
        }
        let entry = CatalogEntry {
            name: name.to_string(),
            version: self.clock.next(),
            config: Some(config),
        };
        self.apply_locked(&entry, local_shards, true)?;
        Ok(entry)
    }

    /// Deletes a collection from a client request; `None` when there was none by that name.
    pub fn delete(&self, name: &str) -> Result<Option<CatalogEntry>> {
        let _ddl = self.ddl.lock();
        if !self.collections.read().contains_key(name) {
            return Ok(None);
        }
        let entry = CatalogEntry {
            name: name.to_string(),
            version: self.clock.next(),
            config: None,
        };
        self.apply_locked(&entry, &[], true)?;
        Ok(Some(entry))
    }

    /// Applies a create or delete heard from a peer if it is newer than what this node holds.
    /// `fresh` says the collection was created just now (its creator's broadcast), so its
    /// replicas start empty and complete; otherwise data may already exist elsewhere and the
    /// local replicas start by copying it. Returns whether anything changed.
    pub fn apply(&self, entry: &CatalogEntry, local_shards: &[u32], fresh: bool) -> Result<bool> {
        validate_name(&entry.name)?;
        let _ddl = self.ddl.lock();
        if entry.version <= self.held_version(&entry.name) {
            return Ok(false);
        }
        self.clock.observe(entry.version);
        self.apply_locked(entry, local_shards, fresh)?;
        Ok(true)
    }

    fn apply_locked(&self, entry: &CatalogEntry, local_shards: &[u32], fresh: bool) -> Result<()> {
        let name = entry.name.as_str();
        if let Some(old) = self.collections.write().remove(name) {
            self.remove_files(&old)?;
        }
        match &entry.config {
            None => {
                let mut t = self.tombstones.write();
                t.insert(name.to_string(), entry.version);
                self.save_tombstones(&t)?;
                tracing::info!(collection = %name, "collection deleted");
            }
            Some(config) => {
                let dir = self.collection_dir(name);
                std::fs::create_dir_all(&dir)?;
                let collection = self.instantiate(name, config.clone(), entry.version);
                for shard in local_shards {
                    if fresh {
                        collection.open_shard(*shard)?;
                    } else {
                        collection.open_syncing(*shard)?;
                    }
                }
                let mut stored = config.to_json();
                if let Some(obj) = stored.as_object_mut() {
                    obj.insert("version".into(), entry.version.into());
                }
                let bytes = serde_json::to_vec_pretty(&stored)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                fsutil::write_atomic(&dir.join(CONFIG_FILE), &bytes)?;
                let mut t = self.tombstones.write();
                if t.remove(name).is_some() {
                    self.save_tombstones(&t)?;
                }
                self.collections
                    .write()
                    .insert(name.to_string(), Arc::new(collection));
                tracing::info!(collection = %name, ?config, "collection created");
            }
        }
        Ok(())
    }

    fn save_tombstones(&self, t: &BTreeMap<String, u64>) -> Result<()> {
        let bytes = serde_json::to_vec(t).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(fsutil::write_atomic(
            &self.dir.join("collections").join(TOMBSTONES),
            &bytes,
        )?)
    }

    fn remove_files(&self, c: &Collection) -> Result<()> {
        let dir = self.collection_dir(&c.name);
        match std::fs::remove_file(dir.join(CONFIG_FILE)) {
            Ok(()) => fsutil::sync_dir(&dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        for (shard, _) in c.local_shards() {
            let records = tree_name(&c.name, shard);
            for tree in [crate::shard::dirty_tree_name(&records), records] {
                self.db
                    .drop_tree(tree)
                    .map_err(|e| Error::Internal(e.to_string()))?;
            }
        }
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// Bytes of sled's files.
    pub fn sled_size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Makes every write so far durable (shutdown, tests).
    pub fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| Error::Internal(e.to_string()))
    }
}
