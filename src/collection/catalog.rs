//! The node's collections and the files behind them.
//!
//! Layout under `--data-dir`:
//! ```text
//! points.sled/                              point records of every shard (a sled tree per shard)
//! collections/<name>/config.json            collection configuration and version, written atomically
//! collections/<name>/shards/<i>/segments/   HNSW segments of this node's replica of shard i
//! catalog/tombstones.json                   versions of deleted collections
//! catalog/aliases.json                      aliases, live and deleted ([`super::aliases`])
//! ```
//! `collections/` holds one directory per collection, named exactly as the collection, and
//! nothing else: the node's own files live in `catalog/`, so no collection name can collide with
//! them (Qdrant's name rule allows names such as `tombstones.json` or `.x.tmp`). Data dirs
//! written before this layout kept the tombstones in `collections/tombstones.json`; opening one
//! moves the file.
//!
//! `config.json` is the commit point of a collection: written last on create and removed first on
//! delete; a directory without it (a crash mid-create or mid-delete) is cleared on open along
//! with its sled trees.
//!
//! Creates and deletes carry versions so that every node converges on the same set of
//! collections whatever order it hears of them in: an entry applies only over an older one, and a
//! deletion is remembered as a tombstone so that a node that was down cannot resurrect it.
//! Entries from peers are checked like a client's create ([`check_entry`]).

use super::aliases::{AliasChange, AliasEntry, Aliases};
use super::{Collection, CollectionConfig};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::shard::payload_index::{field_path, FieldSchema};
use crate::shard::version::VersionClock;
use crate::store::Store;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CONFIG_FILE: &str = "config.json";
const TOMBSTONES: &str = "tombstones.json";
/// Largest vector dimension accepted (Qdrant's limit).
pub const MAX_DIM: usize = 65_536;

/// A collection as the catalog knows it, with the version of its last create or delete;
/// `config: None` records a deletion. What nodes exchange to agree on their collections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    pub name: String,
    pub version: u64,
    pub config: Option<CollectionConfig>,
}

impl CatalogEntry {
    /// The entry of a live collection.
    pub fn of(c: &Collection) -> CatalogEntry {
        CatalogEntry {
            name: c.name.clone(),
            version: c.version,
            config: Some(c.config.clone()),
        }
    }
}

#[derive(Deserialize)]
struct StoredCollection {
    #[serde(default)]
    version: u64,
    #[serde(flatten)]
    config: CollectionConfig,
}

pub struct Catalog {
    dir: PathBuf,
    store: Store,
    clock: Arc<VersionClock>,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    tombstones: RwLock<BTreeMap<String, u64>>,
    aliases: Aliases,
    /// Serialises creates, deletes and alias changes so two of them never interleave on one name.
    ddl: Mutex<()>,
}

/// Qdrant's rule for collection names: 1-255 bytes, none of `< > : " / \ | ? *`, NUL or U+001F,
/// and not `.` or `..` (names are directory names).
pub fn validate_name(name: &str) -> Result<()> {
    const FORBIDDEN: &[char] = &['<', '>', ':', '"', '/', '\\', '|', '?', '*', '\0', '\u{1F}'];
    if name.is_empty()
        || name.len() > 255
        || name == "."
        || name == ".."
        || name.contains(FORBIDDEN)
    {
        return Err(Error::BadRequest(format!(
            "collection name {name:?} is invalid: it must be 1-255 bytes without any of < > : \" / \\ | ? *"
        )));
    }
    Ok(())
}

/// The bounds every collection configuration keeps, whether a client or a peer asks for it.
pub fn validate_config(c: &CollectionConfig) -> Result<()> {
    let bad = |m: String| Err(Error::BadRequest(m));
    if c.size == 0 || c.size > MAX_DIM {
        return bad(format!(
            "vector size must be between 1 and {MAX_DIM}, got {}",
            c.size
        ));
    }
    if !(2..=128).contains(&c.hnsw.m) {
        return bad(format!(
            "hnsw_config.m must be between 2 and 128, got {}",
            c.hnsw.m
        ));
    }
    if !(4..=4096).contains(&c.hnsw.ef_construct) {
        return bad(format!(
            "hnsw_config.ef_construct must be between 4 and 4096, got {}",
            c.hnsw.ef_construct
        ));
    }
    if !(1..=1024).contains(&c.shard_number) {
        return bad(format!(
            "shard_number must be between 1 and 1024, got {}",
            c.shard_number
        ));
    }
    if c.replication_factor == 0 {
        return bad("replication_factor must be at least 1".into());
    }
    if c.write_consistency_factor == 0 || c.write_consistency_factor > c.replication_factor {
        return bad(format!(
            "write_consistency_factor must be between 1 and replication_factor ({}), got {}",
            c.replication_factor, c.write_consistency_factor
        ));
    }
    if let Some(q) = &c.quantization {
        if !(0.5..=1.0).contains(&q.quantile) {
            return bad(format!(
                "quantization_config.scalar.quantile must be between 0.5 and 1, got {}",
                q.quantile
            ));
        }
    }
    for (key, field) in &c.payload_schema {
        field_path(key).map_err(Error::BadRequest)?;
        field.check().map_err(Error::BadRequest)?;
    }
    let o = &c.optimizers;
    if o.max_segment_size_kb == Some(0) {
        return bad("optimizers_config.max_segment_size must be positive (KB)".into());
    }
    if o.deleted_threshold
        .is_some_and(|t| !(0.0..=1.0).contains(&t))
    {
        return bad(format!(
            "optimizers_config.deleted_threshold must be between 0 and 1, got {:?}",
            o.deleted_threshold
        ));
    }
    Ok(())
}

/// Checks a catalog entry heard from a peer as a client's create or delete would be checked:
/// its name, its configuration, and a version no further ahead of this node's clock than
/// clocks drift.
pub fn check_entry(entry: &CatalogEntry) -> Result<()> {
    validate_name(&entry.name)?;
    if let Some(config) = &entry.config {
        validate_config(config)?;
    }
    VersionClock::check_from_peer(entry.version)
        .map_err(|e| Error::BadRequest(format!("collection {:?}: {e}", entry.name)))
}

/// Writes `config.json` (atomically: the commit point of a create or a change).
fn save_config(dir: &Path, config: &CollectionConfig, version: u64) -> Result<()> {
    let mut stored = config.to_json();
    if let Some(obj) = stored.as_object_mut() {
        obj.insert("version".into(), version.into());
    }
    let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(fsutil::write_atomic(&dir.join(CONFIG_FILE), &bytes)?)
}

/// Reads the tombstones, moving them out of `collections/` where data dirs written before the
/// `catalog/` directory kept them.
fn open_tombstones(dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    let path = dir.join("catalog").join(TOMBSTONES);
    let legacy = dir.join("collections").join(TOMBSTONES);
    let read = |p: &Path| -> anyhow::Result<Option<BTreeMap<String, u64>>> {
        match std::fs::read(p) {
            Ok(bytes) => {
                Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                    anyhow::anyhow!("unreadable {}: {e}", p.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let tombstones = match read(&path)? {
        Some(t) => t,
        None => {
            let t = if legacy.is_file() {
                read(&legacy)?
            } else {
                None
            };
            let t = t.unwrap_or_default();
            fsutil::write_atomic(&path, &serde_json::to_vec(&t)?)?;
            t
        }
    };
    // The old file (and an old interrupted write of it) go once the new one is durable.
    for old in [
        legacy,
        dir.join("collections").join(format!(".{TOMBSTONES}.tmp")),
    ] {
        if old.is_file() {
            std::fs::remove_file(&old)?;
            tracing::info!(file = %old.display(), "moved the catalog's tombstones to catalog/");
        }
    }
    Ok(tombstones)
}

impl Catalog {
    /// Opens every collection under `dir`, creating the directory if needed; `local_shards` says
    /// which shard replicas of a collection this node holds.
    /// `disk_reserve` bytes are kept free on the data volume (see [`crate::store`]); sled keeps
    /// at most `sled_cache_bytes` of its pages in memory (its default is 1 GB).
    pub fn open(
        dir: &Path,
        disk_reserve: u64,
        sled_cache_bytes: u64,
        local_shards: impl Fn(&CollectionConfig) -> Vec<u32>,
    ) -> anyhow::Result<Catalog> {
        let store = Store::open(dir, disk_reserve, sled_cache_bytes)?;
        let root = dir.join("collections");
        std::fs::create_dir_all(&root)?;
        std::fs::create_dir_all(dir.join("catalog"))?;
        let tombstones = open_tombstones(dir)?;
        let aliases = Aliases::open(&dir.join("catalog"))?;
        let catalog = Catalog {
            dir: dir.to_path_buf(),
            store,
            clock: Arc::new(VersionClock::default()),
            collections: RwLock::new(BTreeMap::new()),
            tombstones: RwLock::new(tombstones),
            aliases,
            ddl: Mutex::new(()),
        };
        catalog.clock.observe(catalog.aliases.max_version());
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
        for t in catalog.store.tree_names()? {
            let owner = t
                .strip_prefix("c/")
                .or_else(|| t.strip_prefix("d/"))
                .and_then(|r| r.rsplit_once('/'))
                .map(|(c, _)| c.to_string());
            if owner.is_some_and(|c| !stored.iter().any(|(n, _)| *n == c)) {
                catalog.store.drop_tree(&t)?;
            }
        }
        for (name, s) in stored {
            let started = std::time::Instant::now();
            catalog.clock.observe(s.version);
            let mut config = s.config;
            if config.incarnation == 0 {
                // Written before configurations could change in place: its create is its version.
                config.incarnation = s.version;
            }
            let collection = catalog.instantiate(&name, config, s.version);
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
            self.store.clone(),
            Arc::clone(&self.clock),
        )
    }

    /// Where this node keeps its snapshots (`<data dir>/snapshots`).
    pub fn snapshots_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }

    /// Scratch space for snapshots being written or received (emptied at start).
    pub fn snapshot_scratch(&self) -> PathBuf {
        self.snapshots_dir().join("tmp")
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

    /// The collection a request names: a collection, or an alias of one (Qdrant resolves
    /// every collection name of a request this way, once).
    pub fn resolve(&self, name: &str) -> Result<Arc<Collection>> {
        if let Some(c) = self.collections.read().get(name) {
            return Ok(Arc::clone(c));
        }
        self.aliases
            .target(name)
            .and_then(|target| self.collections.read().get(&target).cloned())
            .ok_or_else(|| Error::NotFound(format!("Collection `{name}` doesn't exist!")))
    }

    /// Live aliases and the collections they name, by alias.
    pub fn aliases(&self) -> Vec<(String, String)> {
        self.aliases.live()
    }

    /// Every alias entry, deleted ones included: what peers compare to converge.
    pub fn alias_entries(&self) -> Vec<AliasEntry> {
        self.aliases.entries()
    }

    /// Applies a client's alias actions, all or none (see [`super::aliases`]); returns the
    /// entries to send to peers.
    pub fn update_aliases(&self, changes: &[AliasChange]) -> Result<Vec<AliasEntry>> {
        let _ddl = self.ddl.lock();
        let version = self.clock.next();
        let collections = self.collections.read().clone();
        self.aliases
            .change(changes, version, |n| collections.contains_key(n))
    }

    /// Applies alias entries heard from a peer, each if newer than this node's; checked like a
    /// client's (names, versions no further ahead than clocks drift).
    pub fn apply_aliases(&self, entries: &[AliasEntry]) -> Result<bool> {
        for e in entries {
            validate_name(&e.alias)?;
            if let Some(c) = &e.collection {
                validate_name(c)?;
            }
            VersionClock::check_from_peer(e.version)
                .map_err(|m| Error::BadRequest(format!("alias {:?}: {m}", e.alias)))?;
        }
        let _ddl = self.ddl.lock();
        for e in entries {
            self.clock.observe(e.version);
        }
        self.aliases.apply(entries)
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
            .map(|c| CatalogEntry::of(c))
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
        validate_config(&config)?;
        self.store
            .has_room(1 << 20)
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let _ddl = self.ddl.lock();
        if self.collections.read().contains_key(name) {
            return Err(Error::BadRequest(format!(
                "Collection `{name}` already exists!"
            )));
        }
        if self.aliases.target(name).is_some() {
            return Err(Error::BadRequest(format!(
                "Can't create collection with name {name}. Alias with the same name already exists"
            )));
        }
        let version = self.clock.next();
        let entry = CatalogEntry {
            name: name.to_string(),
            version,
            config: Some(CollectionConfig {
                incarnation: version,
                ..config
            }),
        };
        self.apply_locked(&entry, local_shards, true)?;
        Ok(entry)
    }

    /// Changes an existing collection's configuration (the payload index routes; Qdrant's
    /// `PATCH /collections/{c}` later): `change` edits a copy, which is checked like a create's
    /// and becomes a newer catalog entry of the same incarnation. Peers apply it like a create
    /// (last writer wins by version), in place: the data stays, open replicas follow it.
    /// Returns the entry to broadcast.
    pub fn update_config(
        &self,
        name: &str,
        change: impl FnOnce(&mut CollectionConfig) -> Result<()>,
    ) -> Result<CatalogEntry> {
        let _ddl = self.ddl.lock();
        let current = self.get(name)?;
        let mut config = current.config.clone();
        change(&mut config)?;
        config.incarnation = current.config.incarnation;
        validate_config(&config)?;
        let entry = CatalogEntry {
            name: name.to_string(),
            version: self.clock.next(),
            config: Some(config),
        };
        self.apply_locked(&entry, &[], false)?;
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
        check_entry(entry)?;
        let _ddl = self.ddl.lock();
        if entry.version <= self.held_version(&entry.name) {
            return Ok(false);
        }
        self.clock.observe(entry.version);
        self.apply_locked(entry, local_shards, fresh)?;
        Ok(true)
    }

    /// Qdrant's `PUT /collections/{c}/index`: indexes `field` (a key path, as filters read
    /// it) with `field_schema` (a type name or `{"type": …, params}`) on every replica. A field
    /// has one index, as in Qdrant: an index already on the same path, however its name was
    /// written (`a.b`, `"a".b`), is replaced; the definition keeps the name as sent. Returns the
    /// entry to broadcast.
    pub fn create_payload_index(
        &self,
        collection: &str,
        field: &str,
        field_schema: &serde_json::Value,
    ) -> Result<CatalogEntry> {
        let path = field_path(field).map_err(Error::BadRequest)?;
        let schema = FieldSchema::parse(field_schema).map_err(Error::BadRequest)?;
        self.update_config(collection, |c| {
            c.payload_schema
                .retain(|k, _| !field_path(k).is_ok_and(|p| p == path));
            c.payload_schema.insert(field.to_string(), schema);
            Ok(())
        })
    }

    /// Qdrant's `DELETE /collections/{c}/index/{field}`: drops the index on that key path
    /// (a field without an index is no error; a name that is not a key path is).
    pub fn delete_payload_index(&self, collection: &str, field: &str) -> Result<CatalogEntry> {
        let path = field_path(field).map_err(Error::BadRequest)?;
        self.update_config(collection, |c| {
            c.payload_schema
                .retain(|k, _| !field_path(k).is_ok_and(|p| p == path));
            Ok(())
        })
    }

    fn apply_locked(&self, entry: &CatalogEntry, local_shards: &[u32], fresh: bool) -> Result<()> {
        let name = entry.name.as_str();
        if let Some(config) = &entry.config {
            let current = self.collections.read().get(name).cloned();
            if let Some(current) = current
                .filter(|c| config.incarnation != 0 && c.config.incarnation == config.incarnation)
            {
                return self.reconfigure(&current, config, entry.version);
            }
        }
        if let Some(old) = self.collections.write().remove(name) {
            self.remove_files(&old)?;
        }
        match &entry.config {
            None => {
                let mut t = self.tombstones.write();
                t.insert(name.to_string(), entry.version);
                self.save_tombstones(&t)?;
                self.aliases.drop_collection(name, entry.version)?;
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
                save_config(&dir, config, entry.version)?;
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

    /// A newer configuration of the same collection, applied in place.
    fn reconfigure(
        &self,
        current: &Collection,
        config: &CollectionConfig,
        version: u64,
    ) -> Result<()> {
        let name = current.name.clone();
        save_config(&self.collection_dir(&name), config, version)?;
        let next = current.reconfigured(config.clone(), version);
        self.collections
            .write()
            .insert(name.clone(), Arc::new(next));
        tracing::info!(collection = %name, version, ?config, "collection configuration changed");
        Ok(())
    }

    fn save_tombstones(&self, t: &BTreeMap<String, u64>) -> Result<()> {
        let bytes = serde_json::to_vec(t).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(fsutil::write_atomic(
            &self.dir.join("catalog").join(TOMBSTONES),
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
        c.remove_replicas()?;
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    /// Bytes of sled's files.
    pub fn sled_size_on_disk(&self) -> u64 {
        self.store.size_on_disk()
    }

    /// Makes every write so far durable (shutdown, tests).
    pub fn flush(&self) -> Result<()> {
        self.store
            .flush()
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// The record store (its disk reserve, its upkeep).
    pub fn store(&self) -> &Store {
        &self.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{HnswParams, Metric};

    /// Opens the catalog in `dir`, waiting for a catalog the test just dropped to let go of
    /// sled's file lock (its flusher thread does so only at its next tick).
    fn open_catalog(dir: &std::path::Path) -> Catalog {
        let started = std::time::Instant::now();
        loop {
            match Catalog::open(dir, 0, 1 << 20, |_| vec![0]) {
                Ok(catalog) => return catalog,
                Err(_) if started.elapsed() < std::time::Duration::from_secs(10) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("open the catalog in {}: {e}", dir.display()),
            }
        }
    }

    fn config() -> CollectionConfig {
        CollectionConfig::plain(2, Metric::Dot)
    }

    #[test]
    fn config_updates_apply_in_place_replicate_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let peer_dir = tempfile::tempdir().unwrap();
        let catalog = open_catalog(dir.path());
        let peer = open_catalog(peer_dir.path());
        let created = catalog.create("c", config(), &[0]).unwrap();
        assert!(peer.apply(&created, &[0], true).unwrap());
        let shard = catalog.get("c").unwrap().open_shard(0).unwrap();
        let point = crate::shard::Change::upsert(
            crate::shard::point::PointId::Num(1),
            catalog.clock().next(),
            vec![1.0, 0.0],
            serde_json::json!({"k": "a"}).as_object().cloned().unwrap(),
        );
        shard.commit(vec![point], true).unwrap();

        let update = catalog
            .create_payload_index("c", "k", &serde_json::json!("keyword"))
            .unwrap();
        assert!(update.version > created.version);
        let c = catalog.get("c").unwrap();
        assert_eq!(c.version, update.version);
        assert_eq!(c.stats().0, 1, "the data stays");
        assert_eq!(c.payload_index_info()["k"].1, 1);
        assert!(
            Arc::ptr_eq(&c.local_shard(0).unwrap(), &shard),
            "the replica stays open"
        );
        assert_eq!(shard.payload_schema().len(), 1);
        assert!(catalog
            .create_payload_index("c", "k", &serde_json::json!("geo"))
            .is_err());
        assert!(catalog
            .create_payload_index("nope", "k", &serde_json::json!("keyword"))
            .is_err());

        // A peer applies it in place; an older update (or a replay) changes nothing.
        assert!(peer.apply(&update, &[0], false).unwrap());
        assert!(!peer.apply(&update, &[0], false).unwrap());
        assert_eq!(peer.get("c").unwrap().config.payload_schema.len(), 1);
        let removed = catalog.delete_payload_index("c", "k").unwrap();
        assert!(shard.payload_schema().is_empty());
        assert!(peer.apply(&removed, &[0], false).unwrap());
        assert!(
            !peer.apply(&update, &[0], false).unwrap(),
            "last writer wins"
        );
        assert!(peer.get("c").unwrap().config.payload_schema.is_empty());

        // Persisted: a reopen has the schema of the last update.
        let again = catalog
            .create_payload_index(
                "c",
                "n",
                &serde_json::json!({"type": "integer", "range": false}),
            )
            .unwrap();
        catalog.flush().unwrap();
        drop((c, shard, catalog));
        let catalog = open_catalog(dir.path());
        let c = catalog.get("c").unwrap();
        assert_eq!(c.version, again.version);
        assert_eq!(c.config.incarnation, created.version);
        assert_eq!(c.open_shard(0).unwrap().payload_schema().len(), 1);
        // Index names are key paths, matched by path: one index per field however it is
        // written, and a name that is not a key path is refused.
        for bad in ["", "a..b", "a b", "[0]", "\"open"] {
            assert!(
                catalog
                    .create_payload_index("c", bad, &serde_json::json!("keyword"))
                    .is_err(),
                "{bad:?}"
            );
            assert!(catalog.delete_payload_index("c", bad).is_err(), "{bad:?}");
        }
        catalog
            .create_payload_index("c", "\"n\"", &serde_json::json!("keyword"))
            .unwrap();
        let schema = catalog.get("c").unwrap().config.payload_schema.clone();
        assert_eq!(schema.keys().collect::<Vec<_>>(), ["\"n\""], "replaced n");
        catalog
            .create_payload_index("c", "\"a.b\"", &serde_json::json!("keyword"))
            .unwrap();
        catalog.delete_payload_index("c", "a.b").unwrap();
        assert_eq!(catalog.get("c").unwrap().config.payload_schema.len(), 2);
        catalog.delete_payload_index("c", "n").unwrap();
        let schema = catalog.get("c").unwrap().config.payload_schema.clone();
        assert_eq!(schema.keys().collect::<Vec<_>>(), ["\"a.b\""]);

        // A delete reaches the collection as it was before its last reconfiguration too: no
        // replica of it opens after (it would create the records of a later "c").
        let before = catalog.get("c").unwrap();
        catalog
            .create_payload_index("c", "k", &serde_json::json!("keyword"))
            .unwrap();
        // A re-create (a new incarnation) still replaces the collection.
        catalog.delete("c").unwrap();
        assert!(before.open_shard(7).is_err());
        catalog.create("c", config(), &[0]).unwrap();
        assert_eq!(catalog.get("c").unwrap().stats().0, 0);
    }

    #[test]
    fn aliases_change_atomically_replicate_and_persist() {
        use AliasChange::*;
        let dir = tempfile::tempdir().unwrap();
        let peer_dir = tempfile::tempdir().unwrap();
        let catalog = open_catalog(dir.path());
        let peer = open_catalog(peer_dir.path());
        for c in ["a", "b"] {
            let e = catalog.create(c, config(), &[0]).unwrap();
            peer.apply(&e, &[0], true).unwrap();
        }
        let create = |alias: &str, collection: &str| Create {
            alias: alias.into(),
            collection: collection.into(),
        };
        let sent = catalog
            .update_aliases(&[create("x", "a"), create("y", "a")])
            .unwrap();
        assert_eq!(sent.len(), 2);
        assert_eq!(catalog.resolve("x").unwrap().name, "a");
        assert_eq!(catalog.resolve("a").unwrap().name, "a");

        // All or none: a failing action leaves every earlier one of the request undone.
        let failing: [&[AliasChange]; 4] = [
            &[create("z", "b"), create("w", "nope")],
            &[Delete { alias: "x".into() }, create("b", "a")],
            &[
                Rename {
                    from: "y".into(),
                    to: "v".into(),
                },
                Rename {
                    from: "gone".into(),
                    to: "u".into(),
                },
            ],
            &[create("bad/name", "a")],
        ];
        for changes in failing {
            assert!(catalog.update_aliases(changes).is_err(), "{changes:?}");
        }
        let live = |c: &Catalog| c.aliases();
        let expected = vec![("x".to_string(), "a".to_string()), ("y".into(), "a".into())];
        assert_eq!(live(&catalog), expected);
        // A collection may not take an alias's name.
        assert!(catalog.create("x", config(), &[0]).is_err());

        // Peers converge on the entries whatever the order; an older entry changes nothing.
        assert!(peer.apply_aliases(&sent).unwrap());
        let switched = catalog
            .update_aliases(&[
                Delete { alias: "x".into() },
                create("x", "b"),
                Rename {
                    from: "y".into(),
                    to: "v".into(),
                },
                Delete {
                    alias: "never".into(),
                },
            ])
            .unwrap();
        assert!(peer.apply_aliases(&switched).unwrap());
        assert!(!peer.apply_aliases(&sent).unwrap(), "last writer wins");
        let expected = vec![("v".to_string(), "a".to_string()), ("x".into(), "b".into())];
        assert_eq!(live(&catalog), expected);
        assert_eq!(live(&peer), expected);
        assert_eq!(peer.alias_entries(), catalog.alias_entries());
        let future = AliasEntry {
            alias: "f".into(),
            version: u64::MAX,
            collection: Some("a".into()),
        };
        assert!(peer.apply_aliases(&[future]).is_err());

        // Deleting a collection drops its aliases, on every node by the deletion's version.
        let deleted = catalog.delete("b").unwrap().unwrap();
        assert!(peer.apply(&deleted, &[0], false).unwrap());
        assert_eq!(live(&catalog), [("v".to_string(), "a".to_string())]);
        assert_eq!(peer.alias_entries(), catalog.alias_entries());
        assert!(catalog.resolve("x").is_err());

        // Persisted, tombstones included.
        catalog.flush().unwrap();
        let entries = catalog.alias_entries();
        drop(catalog);
        let catalog = open_catalog(dir.path());
        assert_eq!(catalog.alias_entries(), entries);
        assert_eq!(catalog.resolve("v").unwrap().name, "a");
        assert!(catalog.clock().next() > entries.iter().map(|e| e.version).max().unwrap());
    }

    #[test]
    fn collection_updates_reach_open_replicas_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = open_catalog(dir.path());
        let created = catalog.create("c", config(), &[0]).unwrap();
        let shard = catalog.get("c").unwrap().open_shard(0).unwrap();
        let update = catalog
            .update_config("c", |c| {
                c.hnsw = HnswParams {
                    m: 8,
                    ef_construct: 50,
                };
                c.full_scan_threshold_kb = Some(1);
                c.quantization = Some(crate::index::ScalarInt8 {
                    quantile: 0.9,
                    always_ram: false,
                });
                c.optimizers.indexing_threshold = Some(7);
                c.optimizers.indexing_threshold_kb = Some(1);
                Ok(())
            })
            .unwrap();
        assert_eq!(update.config.as_ref().unwrap().incarnation, created.version);
        let want = catalog.get("c").unwrap().config.clone();
        let in_force = |s: &crate::shard::Shard| {
            let c = s.config();
            (c.hnsw, c.int8, c.full_scan_threshold, c.optimizer)
        };
        let expected = {
            let c = want.shard_config();
            (c.hnsw, c.int8, c.full_scan_threshold, c.optimizer)
        };
        assert_eq!(in_force(&shard), expected, "the open replica follows");
        assert_eq!(expected.2, 128, "1 KB of 2-d vectors");
        // A refused change changes nothing.
        assert!(catalog
            .update_config("c", |c| {
                c.hnsw.m = 1;
                Ok(())
            })
            .is_err());
        assert_eq!(catalog.get("c").unwrap().config, want);

        catalog.flush().unwrap();
        drop((shard, catalog));
        let catalog = open_catalog(dir.path());
        let c = catalog.get("c").unwrap();
        assert_eq!(c.config, want);
        assert_eq!(c.version, update.version);
        assert_eq!(in_force(&c.open_shard(0).unwrap()), expected);
    }

    #[test]
    fn a_tiny_max_segment_size_is_raised_to_the_floor() {
        use crate::shard::optimizer::MIN_SEGMENT_POINTS;
        let with_kb = |kb| CollectionConfig {
            size: 256,
            optimizers: super::super::OptimizersConfig {
                max_segment_size_kb: Some(kb),
                ..Default::default()
            },
            ..config()
        };
        assert_eq!(
            with_kb(1).optimizer().max_segment_points,
            MIN_SEGMENT_POINTS
        );
        assert_eq!(with_kb(10_000).optimizer().max_segment_points, 10_000);
    }

    #[test]
    fn names_never_collide_with_the_catalogs_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "tombstones.json",
            ".tombstones.json.tmp",
            "catalog",
            "x.tmp",
            "a#b %c ü",
        ];
        {
            let catalog = open_catalog(dir.path());
            for name in names {
                catalog.create(name, config(), &[0]).unwrap();
            }
            catalog.create("gone", config(), &[0]).unwrap();
            assert!(catalog.delete("gone").unwrap().is_some());
            assert!(catalog.delete(".tombstones.json.tmp").unwrap().is_some());
            catalog.flush().unwrap();
        }
        let catalog = open_catalog(dir.path());
        let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        expected.retain(|n| n != ".tombstones.json.tmp");
        expected.sort();
        assert_eq!(catalog.names(), expected);
        let deleted: Vec<String> = catalog
            .entries()
            .into_iter()
            .filter(|e| e.config.is_none())
            .map(|e| e.name)
            .collect();
        assert_eq!(deleted, [".tombstones.json.tmp", "gone"]);
    }

    #[test]
    fn old_data_dirs_open_with_their_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let catalog = open_catalog(dir.path());
            catalog.create("kept", config(), &[0]).unwrap();
            catalog.flush().unwrap();
        }
        // The layout before catalog/: tombstones inside collections/.
        std::fs::remove_dir_all(dir.path().join("catalog")).unwrap();
        std::fs::write(
            dir.path().join("collections").join(TOMBSTONES),
            br#"{"old": 12345}"#,
        )
        .unwrap();
        let catalog = open_catalog(dir.path());
        assert_eq!(catalog.names(), ["kept"]);
        assert!(catalog.entries().contains(&CatalogEntry {
            name: "old".into(),
            version: 12345,
            config: None
        }));
        assert!(!dir.path().join("collections").join(TOMBSTONES).exists());
        assert!(dir.path().join("catalog").join(TOMBSTONES).is_file());
    }

    #[test]
    fn a_write_that_waited_through_a_delete_never_reaches_the_next_collection_of_that_name() {
        use crate::shard::point::PointId;
        use crate::shard::Change;
        let dir = tempfile::tempdir().unwrap();
        let catalog = open_catalog(dir.path());
        catalog.create("c", config(), &[0]).unwrap();
        // A request holds the collection (and its shard) while another deletes it.
        let old = catalog.get("c").unwrap().open_shard(0).unwrap();
        catalog.delete("c").unwrap();
        let write = |id| Change::upsert(PointId::Num(id), 1, vec![1.0, 0.0], Default::default());
        assert!(
            old.commit(vec![write(7)], true).is_err(),
            "a write to a deleted collection must fail, not be acknowledged"
        );
        // It used to write into a fresh sled tree of the same name, which the next collection
        // called `c` then opened and served (and kept across restarts).
        catalog.create("c", config(), &[0]).unwrap();
        assert_eq!(catalog.get("c").unwrap().open_shard(0).unwrap().len(), 0);
        catalog.flush().unwrap();
        drop((old, catalog));
        let catalog = open_catalog(dir.path());
        assert_eq!(catalog.get("c").unwrap().open_shard(0).unwrap().len(), 0);
    }

    #[test]
    fn a_deleted_collection_opens_no_replica_in_the_directory_of_the_next_one() {
        // A request holding a deleted collection that opens a replica it did not have yet (a
        // shard this node newly owns) created its records tree and directory by name — those
        // of a collection created again with the same name.
        let dir = tempfile::tempdir().unwrap();
        let catalog = open_catalog(dir.path());
        catalog
            .create(
                "c",
                CollectionConfig {
                    shard_number: 2,
                    ..config()
                },
                &[0],
            )
            .unwrap();
        let old = catalog.get("c").unwrap();
        catalog.delete("c").unwrap();
        catalog
            .create(
                "c",
                CollectionConfig {
                    shard_number: 2,
                    ..config()
                },
                &[0],
            )
            .unwrap();
        assert!(old.open_shard(1).is_err());
        assert!(
            !old.shard_dir(1).exists(),
            "a directory was created for a deleted collection"
        );
    }

    #[test]
    fn entries_from_peers_are_checked_like_creates() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = open_catalog(dir.path());
        let entry = |name: &str, version: u64, config: Option<CollectionConfig>| CatalogEntry {
            name: name.into(),
            version,
            config,
        };
        let now = catalog.clock().next();
        let zero_shards = CollectionConfig {
            shard_number: 0,
            ..config()
        };
        let bad = [
            entry("a/b", now, Some(config())),
            entry("", now, Some(config())),
            entry("ok", now, Some(zero_shards)),
            entry(
                "ok",
                now,
                Some(CollectionConfig {
                    size: 0,
                    ..config()
                }),
            ),
            entry(
                "ok",
                now,
                Some(CollectionConfig {
                    write_consistency_factor: 2,
                    ..config()
                }),
            ),
            entry("ok", u64::MAX, Some(config())),
            entry("ok", u64::MAX, None),
        ];
        for e in bad {
            assert!(catalog.apply(&e, &[0], true).is_err(), "{e:?}");
        }
        assert!(catalog.entries().is_empty(), "nothing changed");
        assert!(catalog
            .apply(&entry("ok", now, Some(config())), &[0], true)
            .unwrap());
    }
}
