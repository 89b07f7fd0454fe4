//! Collection aliases (Qdrant's `POST /collections/aliases`): another name for a collection,
//! accepted wherever a collection name is.
//!
//! Aliases are catalog state like collections: every alias carries the version of its last
//! change, a deleted alias is remembered as a tombstone (`collection: None`), and a node applies
//! an entry only over an older one, so every node converges whatever order it hears of changes
//! in, and a node that was down catches up from its peers' entries. One request's actions share
//! one version and are applied in one write of `catalog/aliases.json` — all of them or none, on
//! the node that takes the request and on every peer.
//!
//! Deleting a collection drops its aliases (as Qdrant does); every node does so itself when it
//! applies the deletion, with the deletion's version, so no node needs to be told.

use crate::error::{Error, Result};
use crate::fsutil;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const FILE: &str = "aliases.json";

/// An alias as nodes exchange it: what it names (`None`: deleted) since `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEntry {
    pub alias: String,
    pub version: u64,
    pub collection: Option<String>,
}

/// One action of a request, applied in order with the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasChange {
    Create { alias: String, collection: String },
    Delete { alias: String },
    Rename { from: String, to: String },
}

/// Every alias this node knows of, live or deleted, persisted in `catalog/aliases.json`.
pub struct Aliases {
    path: PathBuf,
    entries: RwLock<BTreeMap<String, AliasEntry>>,
}

impl Aliases {
    /// Reads `dir/aliases.json` (none yet: no aliases).
    pub fn open(dir: &Path) -> anyhow::Result<Aliases> {
        let path = dir.join(FILE);
        let entries: Vec<AliasEntry> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("unreadable {}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let entries = entries.into_iter().map(|e| (e.alias.clone(), e)).collect();
        Ok(Aliases {
            path,
            entries: RwLock::new(entries),
        })
    }

    /// The collection an alias names, if it is a live alias.
    pub fn target(&self, alias: &str) -> Option<String> {
        self.entries.read().get(alias)?.collection.clone()
    }

    /// Live aliases and their collections, by alias name.
    pub fn live(&self) -> Vec<(String, String)> {
        self.entries
            .read()
            .values()
            .filter_map(|e| Some((e.alias.clone(), e.collection.clone()?)))
            .collect()
    }

    /// Every entry, tombstones included: what peers compare to converge.
    pub fn entries(&self) -> Vec<AliasEntry> {
        self.entries.read().values().cloned().collect()
    }

    /// The highest version of any entry (the catalog's clock moves past it on open).
    pub fn max_version(&self) -> u64 {
        self.entries
            .read()
            .values()
            .map(|e| e.version)
            .max()
            .unwrap_or(0)
    }

    /// Applies a client's actions, in order, all or none: each is checked against the aliases
    /// as the actions before it left them, and `is_collection` says which names are
    /// collections. Returns the changed entries (all of `version`) to send to peers.
    /// The caller serialises changes (the catalog's lock).
    pub(super) fn change(
        &self,
        changes: &[AliasChange],
        version: u64,
        is_collection: impl Fn(&str) -> bool,
    ) -> Result<Vec<AliasEntry>> {
        let mut next = self.entries.read().clone();
        let mut changed = BTreeMap::new();
        let mut set = |next: &mut BTreeMap<String, AliasEntry>, alias: &str, collection| {
            let entry = AliasEntry {
                alias: alias.to_string(),
                version,
                collection,
            };
            next.insert(alias.to_string(), entry.clone());
            changed.insert(alias.to_string(), entry);
        };
        let live = |next: &BTreeMap<String, AliasEntry>, alias: &str| {
            next.get(alias).and_then(|e| e.collection.clone())
        };
        for change in changes {
            match change {
                AliasChange::Create { alias, collection } => {
                    super::catalog::validate_name(alias)?;
                    if !is_collection(collection) {
                        return Err(Error::NotFound(format!(
                            "Collection `{collection}` doesn't exist!"
                        )));
                    }
                    refuse_collection_name(alias, &is_collection)?;
                    set(&mut next, alias, Some(collection.clone()));
                }
                AliasChange::Delete { alias } => {
                    // Qdrant: deleting an alias that does not exist is no error.
                    if live(&next, alias).is_some() {
                        set(&mut next, alias, None);
                    }
                }
                AliasChange::Rename { from, to } => {
                    let Some(collection) = live(&next, from) else {
                        return Err(Error::NotFound(format!("Alias {from} does not exists!")));
                    };
                    super::catalog::validate_name(to)?;
                    refuse_collection_name(to, &is_collection)?;
                    set(&mut next, from, None);
                    set(&mut next, to, Some(collection));
                }
            }
        }
        let changed: Vec<AliasEntry> = changed.into_values().collect();
        if !changed.is_empty() {
            self.save(&next)?;
            *self.entries.write() = next;
        }
        Ok(changed)
    }

    /// Applies entries heard from a peer, each only over an older one, in one write. Returns
    /// whether anything changed. The caller serialises changes (the catalog's lock).
    pub(super) fn apply(&self, entries: &[AliasEntry]) -> Result<bool> {
        let mut next = self.entries.read().clone();
        let mut changed = false;
        for e in entries {
            if next
                .get(&e.alias)
                .is_none_or(|held| held.version < e.version)
            {
                next.insert(e.alias.clone(), e.clone());
                changed = true;
            }
        }
        if changed {
            self.save(&next)?;
            *self.entries.write() = next;
        }
        Ok(changed)
    }

    /// Deletes the aliases of a collection deleted at `version`.
    pub(super) fn drop_collection(&self, collection: &str, version: u64) -> Result<()> {
        let gone: Vec<AliasEntry> = self
            .entries
            .read()
            .values()
            .filter(|e| e.collection.as_deref() == Some(collection) && e.version < version)
            .map(|e| AliasEntry {
                alias: e.alias.clone(),
                version,
                collection: None,
            })
            .collect();
        if !gone.is_empty() {
            tracing::info!(
                collection,
                aliases = gone.len(),
                "aliases of a deleted collection dropped"
            );
            self.apply(&gone)?;
        }
        Ok(())
    }

    fn save(&self, entries: &BTreeMap<String, AliasEntry>) -> Result<()> {
        let list: Vec<&AliasEntry> = entries.values().collect();
        let bytes = serde_json::to_vec(&list).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(fsutil::write_atomic(&self.path, &bytes)?)
    }
}

/// Qdrant's rule: an alias may not be named like a collection.
fn refuse_collection_name(alias: &str, is_collection: impl Fn(&str) -> bool) -> Result<()> {
    if is_collection(alias) {
        return Err(Error::BadRequest(format!(
            "Collection `{alias}` already exists! An alias cannot be named like a collection"
        )));
    }
    Ok(())
}
