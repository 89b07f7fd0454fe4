//! Snapshots: Qdrant's collection snapshots (create, list, download, delete, recover from a URL
//! or an upload) and full-storage snapshots (every collection in one file).
//!
//! A collection snapshot is a logical dump in shoal's own format
//! ([`crate::collection::snapshot`]): each shard dumped point-in-time by one of its replicas,
//! wherever it lives ([`crate::cluster::snapshot`]), gathered into one file on the node that took
//! it. So a snapshot taken through any node covers the whole collection, and it restores into a
//! cluster of any size: recovery creates the collection from the snapshot's configuration and
//! upserts its points, which the placement rule spreads and replicates like any upsert.
//!
//! Recovery reads the whole file and refuses it (400, nothing changed) unless it is intact, of
//! this format version, and compatible with the collection it replaces; only then is the
//! collection deleted, created again and filled (what a reader sees meanwhile: the collection
//! missing for an instant, then present and filling; see docs/snapshots.md). One recovery runs
//! at a time on a node. Creation and recovery run as their own tasks: a client that hangs up or
//! times out does not stop them halfway.
//!
//! Files live under `<data dir>/snapshots/` (`collections/<c>/`, `full/`, and `tmp/` for work in
//! progress, emptied at start), each with a `<name>.checksum` (its sha256, as Qdrant writes).

use super::{Database, Error, Result};
use crate::cluster::coordinator::Coordinator;
use crate::collection::catalog::validate_name;
use crate::collection::snapshot::{self, Header, SnapshotPoint, FORMAT, FORMAT_VERSION};
use crate::collection::{Collection, NewPoint};
use crate::shard::point::parse_payload;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use utoipa::ToSchema;

/// Qdrant's `SnapshotDescription`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SnapshotDescription {
    pub name: String,
    /// When the file was written (`YYYY-MM-DDTHH:MM:SS`, UTC, as Qdrant gives it).
    pub creation_time: Option<String>,
    pub size: u64,
    /// sha256 of the file, hex.
    pub checksum: Option<String>,
}

/// Which data wins on recovery in Qdrant. shoal's recovery rebuilds the collection from the
/// snapshot and replicates it like upserts, so no replica keeps older data: every priority
/// gives the snapshot's data (docs/snapshots.md).
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotPriority {
    NoSync,
    #[default]
    Snapshot,
    Replica,
}

/// `PUT /collections/{c}/snapshots/recover`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct SnapshotRecover {
    /// `http://`, `https://`, or `file://` inside this node's snapshots directory.
    pub location: String,
    pub priority: Option<SnapshotPriority>,
    /// sha256 the file must have (hex).
    pub checksum: Option<String>,
    /// Sent as `api-key` when downloading `location`.
    pub api_key: Option<String>,
}

/// Snapshots being taken on this node, one at a time (their names are unique per second, and
/// one dump at a time keeps the disk and the shards' writers from competing).
static CREATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Recoveries on this node, one at a time.
static RECOVERY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Points per upsert while recovering.
const RECOVER_BATCH: usize = 256;

impl Database {
    fn snapshots_root(&self) -> PathBuf {
        self.coordinator.catalog.snapshots_dir()
    }

    fn collection_snapshots(&self, name: &str) -> PathBuf {
        self.snapshots_root().join("collections").join(name)
    }

    fn full_snapshots(&self) -> PathBuf {
        self.snapshots_root().join("full")
    }

    /// A fresh scratch directory, removed when the guard drops.
    fn scratch(&self) -> Result<Scratch> {
        let dir = self
            .coordinator
            .catalog
            .snapshot_scratch()
            .join(uuid::Uuid::new_v4().to_string());
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    /// Empties the scratch directory (work a previous run left unfinished).
    pub fn clear_snapshot_scratch(&self) {
        let scratch = self.coordinator.catalog.snapshot_scratch();
        if scratch.exists() {
            if let Err(e) = std::fs::remove_dir_all(&scratch) {
                tracing::warn!(error = %e, "cannot empty the snapshot scratch directory");
            }
        }
    }

    /// Takes a snapshot of a collection (every shard); `None` when not waited for.
    pub async fn create_snapshot(
        &self,
        name: &str,
        wait: bool,
    ) -> Result<Option<SnapshotDescription>> {
        let c = self.collection(name)?;
        let dir = self.collection_snapshots(&c.name);
        let scratch = self.scratch()?;
        let coordinator = Arc::clone(&self.coordinator);
        let task = tokio::spawn(async move {
            let _one_at_a_time = CREATION.lock().await;
            let file = snapshot_collection(&coordinator, &c, &scratch.0).await?;
            let name = unique_name(&dir, &format!("{}-{}", c.name, coordinator.cluster.ordinal))?;
            install(&file, &dir, &name).await
        });
        finish(task, wait).await
    }

    pub fn list_snapshots(&self, name: &str) -> Result<Vec<SnapshotDescription>> {
        let c = self.collection(name)?;
        list_dir(&self.collection_snapshots(&c.name))
    }

    /// The file of a collection's snapshot, for download.
    pub fn snapshot_file(&self, name: &str, snapshot: &str) -> Result<PathBuf> {
        let c = self.collection(name)?;
        file_in(&self.collection_snapshots(&c.name), snapshot)
    }

    pub fn delete_snapshot(&self, name: &str, snapshot: &str) -> Result<bool> {
        let c = self.collection(name)?;
        delete_in(&self.collection_snapshots(&c.name), snapshot)
    }

    /// Takes a snapshot of every collection, in one file.
    pub async fn create_full_snapshot(&self, wait: bool) -> Result<Option<SnapshotDescription>> {
        let dir = self.full_snapshots();
        let scratch = self.scratch()?;
        let coordinator = Arc::clone(&self.coordinator);
        let task = tokio::spawn(async move {
            let _one_at_a_time = CREATION.lock().await;
            let mut parts = Vec::new();
            for c in coordinator.catalog.all() {
                let part = scratch.0.join(&c.name);
                std::fs::create_dir_all(&part)?;
                let file = snapshot_collection(&coordinator, &c, &part).await?;
                parts.push((c.name.clone(), file));
            }
            let file = scratch.0.join("full.snapshot");
            let written = file.clone();
            tokio::task::spawn_blocking(move || snapshot::write_full_archive(&written, &parts))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            let name = unique_name(
                &dir,
                &format!("full-snapshot-{}", coordinator.cluster.ordinal),
            )?;
            install(&file, &dir, &name).await
        });
        finish(task, wait).await
    }

    pub fn list_full_snapshots(&self) -> Result<Vec<SnapshotDescription>> {
        list_dir(&self.full_snapshots())
    }

    pub fn full_snapshot_file(&self, snapshot: &str) -> Result<PathBuf> {
        file_in(&self.full_snapshots(), snapshot)
    }

    pub fn delete_full_snapshot(&self, snapshot: &str) -> Result<bool> {
        delete_in(&self.full_snapshots(), snapshot)
    }

    /// Recovers a collection from a snapshot at `req.location`; `None` when not waited for.
    pub async fn recover_snapshot(
        self: &Arc<Self>,
        name: &str,
        req: SnapshotRecover,
        wait: bool,
    ) -> Result<Option<bool>> {
        validate_name(name)?;
        let location = req.location.trim();
        let scratch = self.scratch()?;
        let (file, fetched) = match location.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
                let path = percent_encoding::percent_decode_str(rest)
                    .decode_utf8()
                    .map_err(|_| Error::BadRequest("file:// location is not UTF-8".into()))?;
                (self.local_snapshot(&path)?, false)
            }
            Some((scheme, _))
                if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") =>
            {
                (scratch.0.join("download.snapshot"), true)
            }
            _ => {
                return Err(Error::BadRequest(format!(
                "snapshot location must be an http://, https:// or file:// URL, got {location:?}"
            )))
            }
        };
        let db = Arc::clone(self);
        let name = name.to_string();
        let url = location.to_string();
        let task = tokio::spawn(async move {
            let _scratch = scratch;
            if fetched {
                fetch(
                    &url,
                    req.api_key.as_deref(),
                    &file,
                    db.config.max_snapshot_bytes,
                )
                .await?;
            }
            db.recover_from_file(&name, &file, req.checksum.as_deref())
                .await
        });
        finish(task, wait).await
    }

    /// Recovers a collection from an uploaded snapshot (in scratch space; removed afterwards).
    pub async fn recover_uploaded(
        self: &Arc<Self>,
        name: &str,
        upload: UploadedSnapshot,
        checksum: Option<String>,
        wait: bool,
    ) -> Result<Option<bool>> {
        validate_name(name)?;
        let db = Arc::clone(self);
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let recovered = db
                .recover_from_file(&name, &upload.path, checksum.as_deref())
                .await;
            drop(upload);
            recovered
        });
        finish(task, wait).await
    }

    /// Where an upload is written before it is recovered from.
    pub fn upload_target(&self) -> Result<UploadedSnapshot> {
        let scratch = self.scratch()?;
        Ok(UploadedSnapshot {
            path: scratch.0.join("upload.snapshot"),
            _scratch: scratch,
        })
    }

    /// A `file://` location: only files inside this node's snapshots directory are read.
    fn local_snapshot(&self, path: &str) -> Result<PathBuf> {
        let root = std::fs::canonicalize(self.snapshots_root()).unwrap_or_default();
        let refused = || {
            Error::BadRequest(format!(
                "file:// snapshot locations must name an existing file inside this node's snapshots directory ({})",
                self.snapshots_root().display()
            ))
        };
        let file = std::fs::canonicalize(path).map_err(|_| refused())?;
        if root.as_os_str().is_empty() || !file.starts_with(&root) || !file.is_file() {
            return Err(refused());
        }
        Ok(file)
    }

    async fn recover_from_file(
        &self,
        name: &str,
        file: &Path,
        checksum: Option<&str>,
    ) -> Result<bool> {
        let _one_at_a_time = RECOVERY.lock().await;
        let path = file.to_path_buf();
        if let Some(expected) = checksum {
            let p = path.clone();
            let actual = blocking(move || Ok(snapshot::sha256_file(&p)?)).await?;
            if !actual.eq_ignore_ascii_case(expected.trim()) {
                return Err(Error::BadRequest(format!(
                    "Snapshot checksum mismatch: expected {expected}, got {actual}"
                )));
            }
        }
        let p = path.clone();
        let verified = blocking(move || {
            snapshot::verify(&p).map_err(|e| Error::BadRequest(format!("Invalid snapshot: {e}")))
        })
        .await?;
        if let Ok(existing) = self.collection(name) {
            let (old, new) = (&existing.config, &verified.config);
            if old.size != new.size || old.distance != new.distance {
                return Err(Error::BadRequest(format!(
                    "Snapshot is not compatible with existing collection {name}: it holds {}-dimensional {:?} vectors, the collection {}-dimensional {:?}; delete the collection first to recover it",
                    new.size, new.distance, old.size, old.distance
                )));
            }
        }
        tracing::info!(
            collection = name,
            points = verified.points,
            "recovering a collection from a snapshot"
        );
        self.coordinator.delete_collection(name).await?;
        self.coordinator
            .create_collection(name, verified.config)
            .await?;
        let c = self.collection(name)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<NewPoint>>(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(RECOVER_BATCH);
            snapshot::read_points(&path, |p: SnapshotPoint| {
                let payload = parse_payload(&p.payload_json)?;
                batch.push(NewPoint {
                    id: p.id,
                    vector: p.vector,
                    payload,
                });
                if batch.len() >= RECOVER_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(RECOVER_BATCH));
                    tx.blocking_send(full)
                        .map_err(|_| "recovery stopped".to_string())?;
                }
                Ok(())
            })?;
            if !batch.is_empty() {
                tx.blocking_send(batch)
                    .map_err(|_| "recovery stopped".to_string())?;
            }
            Ok::<_, String>(())
        });
        while let Some(batch) = rx.recv().await {
            self.coordinator.upsert(&c, batch, true).await?;
        }
        reader
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Internal(format!("reading the snapshot again: {e}")))?;
        tracing::info!(collection = name, "collection recovered from a snapshot");
        Ok(true)
    }
}

/// An uploaded snapshot file in scratch space (removed with it when dropped).
pub struct UploadedSnapshot {
    pub path: PathBuf,
    _scratch: Scratch,
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

/// Waits for a snapshot task, or lets it run on.
async fn finish<T: Send + 'static>(
    task: tokio::task::JoinHandle<Result<T>>,
    wait: bool,
) -> Result<Option<T>> {
    if !wait {
        tokio::spawn(async move {
            if let Ok(Err(e)) = task.await {
                tracing::error!(error = %e, "snapshot task failed");
            }
        });
        return Ok(None);
    }
    task.await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map(Some)
}

/// Dumps every shard of `c` into `dir` and writes the snapshot file there; answers its path.
async fn snapshot_collection(
    coordinator: &Arc<Coordinator>,
    c: &Arc<Collection>,
    dir: &Path,
) -> Result<PathBuf> {
    let shards = (0..c.config.shard_number).map(|s| {
        let path = dir.join(format!("{s}.points"));
        async move {
            let points = coordinator.dump_shard(c, s, &path).await?;
            Ok::<_, Error>((s, path, points))
        }
    });
    let shards = futures::future::try_join_all(shards).await?;
    let header = Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        collection: c.name.clone(),
        created: crate::logging::now_rfc3339(),
        shards: c.config.shard_number,
        config: c.config.to_json(),
    };
    let file = dir.join("collection.snapshot");
    let written = file.clone();
    blocking(move || {
        let parts: Vec<(u32, &Path, u64)> = shards
            .iter()
            .map(|(s, p, n)| (*s, p.as_path(), *n))
            .collect();
        snapshot::write_archive(&written, &header, &parts)?;
        for (_, p, _) in &shards {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    })
    .await?;
    Ok(file)
}

/// Moves a finished snapshot file into `dir` as `name`, with its `.checksum`.
async fn install(file: &Path, dir: &Path, name: &str) -> Result<SnapshotDescription> {
    let (file, dir, name) = (file.to_path_buf(), dir.to_path_buf(), name.to_string());
    blocking(move || {
        std::fs::create_dir_all(&dir)?;
        let checksum = snapshot::sha256_file(&file)?;
        let dest = dir.join(&name);
        crate::fsutil::write_atomic(&dir.join(format!("{name}.checksum")), checksum.as_bytes())?;
        std::fs::rename(&file, &dest)?;
        crate::fsutil::sync_dir(&dir)?;
        describe(&dest)
    })
    .await
}

/// `<prefix>-YYYY-MM-DD-HH-MM-SS.snapshot`, Qdrant's naming, with `-<n>` if taken.
fn unique_name(dir: &Path, prefix: &str) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (date, time) = civil(now);
    let stamp = format!("{date}-{}", time.replace(':', "-"));
    let mut name = format!("{prefix}-{stamp}.snapshot");
    let mut n = 1;
    while dir.join(&name).exists() {
        n += 1;
        name = format!("{prefix}-{stamp}-{n}.snapshot");
    }
    Ok(name)
}

/// A Unix time as (`YYYY-MM-DD`, `HH:MM:SS`), UTC (the civil-from-days algorithm).
fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60),
    )
}

/// A snapshot name as a client gives it: a plain file name ending in `.snapshot`.
fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.ends_with(".snapshot");
    if plain {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid snapshot name {name:?}: a file name ending in .snapshot, without path separators"
        )))
    }
}

fn file_in(dir: &Path, name: &str) -> Result<PathBuf> {
    check_name(name)?;
    let path = dir.join(name);
    if !path.is_file() {
        return Err(Error::NotFound(format!("Snapshot {name} not found")));
    }
    Ok(path)
}

fn delete_in(dir: &Path, name: &str) -> Result<bool> {
    let path = file_in(dir, name)?;
    std::fs::remove_file(&path)?;
    let _ = std::fs::remove_file(dir.join(format!("{name}.checksum")));
    Ok(true)
}

fn describe(path: &Path) -> Result<SnapshotDescription> {
    let meta = std::fs::metadata(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let creation_time = meta.modified().ok().and_then(|t| {
        let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
        let (date, time) = civil(secs);
        Some(format!("{date}T{time}"))
    });
    let checksum = path
        .parent()
        .and_then(|d| std::fs::read_to_string(d.join(format!("{name}.checksum"))).ok())
        .map(|s| s.trim().to_string());
    Ok(SnapshotDescription {
        name,
        creation_time,
        size: meta.len(),
        checksum,
    })
}

fn list_dir(dir: &Path) -> Result<Vec<SnapshotDescription>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| check_name(&n).is_ok()) && path.is_file() {
            out.push(describe(&path)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Downloads a snapshot URL into `dest`, refusing more than `max_bytes`.
async fn fetch(url: &str, api_key: Option<&str>, dest: &Path, max_bytes: u64) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let bad =
        |m: String| Error::BadRequest(format!("cannot download the snapshot from {url}: {m}"));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        // A source that stops sending fails the download rather than holding it forever.
        .read_timeout(std::time::Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut request = client.get(url);
    if let Some(key) = api_key {
        request = request.header("api-key", key);
    }
    let mut response = request.send().await.map_err(|e| bad(e.to_string()))?;
    if !response.status().is_success() {
        return Err(bad(format!("it answered {}", response.status())));
    }
    let too_big = || bad(format!("larger than --max-snapshot-bytes ({max_bytes})"));
    if response.content_length().is_some_and(|n| n > max_bytes) {
        return Err(too_big());
    }
    let mut file = tokio::fs::File::create(dest).await?;
    let mut written = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(|e| bad(e.to_string()))? {
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(too_big());
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), ("1970-01-01".into(), "00:00:00".into()));
        assert_eq!(civil(951_782_400), ("2000-02-29".into(), "00:00:00".into()));
        assert_eq!(
            civil(1_764_474_181),
            ("2025-11-30".into(), "03:43:01".into())
        );
    }

    #[test]
    fn snapshot_names_are_plain_files() {
        assert!(check_name("c-0-2025-01-01-00-00-00.snapshot").is_ok());
        for bad in [
            "../x.snapshot",
            "a/b.snapshot",
            ".hidden.snapshot",
            "x.checksum",
            "",
            "a\\b.snapshot",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
