//! The node's sled database, and the disk it lives on.
//!
//! **A free-space reserve.** Every write is admitted only while the data volume keeps
//! `--disk-reserve-bytes` free after it (what is being written counted), so sled never meets a
//! full disk in the normal course: a write that would eat into the reserve is refused with a 503
//! that says so, reads go on, and writes resume by themselves once space is freed. Index builds
//! check the same reserve before they start ([`Store::has_room`]).
//!
//! **Recovery from an I/O error.** If sled does hit an error while writing (the disk filled from
//! outside between the check and the write), sled 0.34 records it as a "global error" and fails
//! every later write and flush until it is reopened: this is why writes used to keep failing after
//! space was freed. An I/O error therefore marks the store as failed, and the next write once the
//! reserve is free again reopens the database: the handle is dropped (no operation holds a tree
//! outside [`Store::with_tree`]) and sled recovers from its log as after a crash. Writes that were
//! acknowledged without `wait=true` and not yet flushed may be lost then, as after a crash; writes
//! acknowledged with `wait=true` were fsynced before their answer and are kept.
//!
//! **Bounding sled's recovery.** sled 0.34 replays its log from its last snapshot when it opens,
//! and it writes a snapshot only then (its `snapshot_after_ops` setting does nothing in 0.34):
//! a node that loaded a million points since it started would read ~1 GB of log again after a
//! crash, seconds before it is Ready. So the store reopens sled itself once about
//! `--sled-reopen-after-mb` have been logged since it opened and writes have been quiet for
//! [`REOPEN_QUIET`] (or, whatever the writes, once twice that much has been logged): it flushes,
//! drops the handle and opens it again, which replays that log once, in the background, and
//! leaves a snapshot behind, so that a crash afterwards replays only what came after it. Writes
//! and reads arriving meanwhile wait for the handle (they are not refused); a reopen that cannot
//! have the handle within [`REOPEN_LOCK_WAIT`] (a snapshot's walk holds it) is tried again at the
//! next upkeep. Nothing acknowledged is lost: the flush comes first, and a crash during the
//! reopen is sled's ordinary crash recovery.
//!
//! **Keeping sled's log out of the page cache.** sled writes its log through the page cache, a
//! few records at a time, so each page of it is written several times and the kernel counts it
//! as used twice: recently used, on the active list. The records are read back only when a shard
//! opens or is rebuilt (through sled's own cache), yet a million-point upload left ≈ 170 MiB of
//! log pages in a pod's memory cgroup ahead of the segments' pages that every search reads
//! (docs/storage.md, *What a node holds after an upload*). So each time [`DROP_CACHE_EVERY`] has
//! been written, once writes are quiet, and after sled opens (its recovery reads the log), the
//! store asks the kernel to drop the clean pages of sled's files (`posix_fadvise(DONTNEED)`;
//! dirty ones are written back by sled's own flush and dropped the next time).
//!
//! **A ballast file.** sled cannot open on a completely full volume (it zeroes the rest of its
//! log segment on open). The store keeps `<data-dir>/disk-ballast`, a file of
//! [`ballast_bytes`] allocated on disk; when the volume is full at start it is deleted first,
//! which gives sled room to open: the node then serves reads and refuses writes (the reserve is
//! not free) until space is freed, and the ballast is recreated once the reserve allows.

use parking_lot::RwLock;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The store's sled directory under the data dir.
const SLED_DIR: &str = "points.sled";
/// The ballast file under the data dir.
pub const BALLAST_FILE: &str = "disk-ballast";
/// What sled needs free to open: one log segment (512 KiB) and its metadata, with margin.
const OPEN_MIN_FREE: u64 = 2 << 20;
/// Writes must have stopped this long before sled is reopened to bound its recovery.
pub const REOPEN_QUIET: Duration = Duration::from_secs(3);
/// Past this many times `--sled-reopen-after-mb` logged, sled is reopened while writes go on
/// (they wait for it): the log a crash replays stays bounded under a steady stream of writes.
const REOPEN_FORCED_FACTOR: u64 = 2;
/// How long a reopen waits for the operations holding the database before it tries again later
/// (writers arriving meanwhile wait behind it, so this bounds their delay too).
const REOPEN_LOCK_WAIT: Duration = Duration::from_millis(200);
/// sled's files are dropped from the page cache each time about this much was admitted. sled
/// logs several times what the store counts (whole pages rewritten, its own metadata): with
/// 8 MiB, ≈ 117 MiB of its log was still cached after a 1M x 128 upload.
pub const DROP_CACHE_EVERY: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Writes are refused until space is freed (503).
    #[error("{0}")]
    Unavailable(String),
    /// sled failed in a way a retry will not fix (500).
    #[error("storage error: {0}")]
    Failed(String),
}

/// The ballast kept for a reserve: a quarter of it, between 1 and 16 MiB (none without a reserve).
pub fn ballast_bytes(reserve: u64) -> u64 {
    match reserve {
        0 => 0,
        r => (r / 4).clamp(1 << 20, 16 << 20),
    }
}

/// The node's record store (cheap to clone: one shared handle).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    /// The data dir (the volume measured, where the ballast lives); `None` for a store made from
    /// an existing sled handle, which has no reserve and cannot reopen.
    volume: Option<PathBuf>,
    reserve: u64,
    /// sled's page cache bound, in bytes (sled's own default is 1 GB).
    cache_bytes: u64,
    /// `None` only while a reopen after an I/O error is under way.
    db: RwLock<Option<sled::Db>>,
    /// Set by an I/O error from sled: it fails every write until reopened.
    failed: AtomicBool,
    /// Bytes admitted and not yet written.
    pending: AtomicU64,
    /// Commits acknowledged without a flush, and how many of them the last flush covered.
    unflushed: AtomicU64,
    flushed: AtomicU64,
    /// Reopen sled once about this many bytes were logged since it opened (0: never).
    reopen_after: AtomicU64,
    /// Bytes written since sled opened (an estimate of the log its recovery would replay).
    logged: AtomicU64,
    /// Bytes written since sled's files were last dropped from the page cache.
    uncached: AtomicU64,
    /// Whether sled's files were dropped since writes last went quiet.
    quiet_dropped: AtomicBool,
    /// When the last write was admitted.
    last_write: parking_lot::Mutex<Instant>,
    /// sled's size on disk when last measured (answered while a reopen holds the handle).
    size: AtomicU64,
}

/// Room taken by a write until it is written (see [`Store::admit`]).
pub struct Admission<'a> {
    store: &'a Inner,
    bytes: u64,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.store.pending.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

fn open_sled(path: &Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let open = || {
        sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(200))
            .open()
    };
    // A database this process just closed keeps its lock until sled's flusher thread notices,
    // at its next tick (every 200 ms): wait for it rather than fail a reopen (tests do that).
    for _ in 0..15 {
        match open() {
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
    open()
}

/// Free bytes on the volume holding `path` (what an unprivileged writer may use).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: a NUL-terminated path and a buffer the size of `statvfs`, filled on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // fsblkcnt_t and c_ulong are 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let (blocks, size) = (st.f_bavail as u64, st.f_frsize as u64);
    Some(blocks.saturating_mul(size))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl Store {
    /// Opens `<data_dir>/points.sled` keeping `reserve` bytes free on its volume (0: no reserve)
    /// and at most `cache_bytes` of sled's pages in memory. On a full volume the ballast is given
    /// up first so that sled can open.
    pub fn open(data_dir: &Path, reserve: u64, cache_bytes: u64) -> anyhow::Result<Store> {
        std::fs::create_dir_all(data_dir)?;
        let ballast = data_dir.join(BALLAST_FILE);
        let short = free_bytes(data_dir).is_some_and(|f| f < OPEN_MIN_FREE);
        if short && release_ballast(&ballast) {
            tracing::warn!("the data volume is full: gave up the disk ballast so that the node can open (writes stay refused until space is freed)");
        }
        let path = data_dir.join(SLED_DIR);
        let db = match open_sled(&path, cache_bytes) {
            Ok(db) => db,
            Err(e) if release_ballast(&ballast) => {
                tracing::warn!(error = %e, "cannot open the records: gave up the disk ballast and retrying");
                open_sled(&path, cache_bytes)?
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot open {} ({} free on its volume)",
                    path.display(),
                    free_bytes(data_dir).map_or("unknown".into(), mib)
                )))
            }
        };
        let store = Store::with(Some(data_dir.to_path_buf()), reserve, cache_bytes, db);
        drop_cached_pages(&path);
        store.maintain();
        Ok(store)
    }

    /// A store around an open sled database, with no reserve (tests and benchmarks).
    pub fn from_db(db: sled::Db) -> Store {
        Store::with(None, 0, 0, db)
    }

    fn with(volume: Option<PathBuf>, reserve: u64, cache_bytes: u64, db: sled::Db) -> Store {
        Store {
            inner: Arc::new(Inner {
                volume,
                reserve,
                cache_bytes,
                db: RwLock::new(Some(db)),
                failed: AtomicBool::new(false),
                pending: AtomicU64::new(0),
                unflushed: AtomicU64::new(0),
                flushed: AtomicU64::new(0),
                reopen_after: AtomicU64::new(0),
                logged: AtomicU64::new(0),
                uncached: AtomicU64::new(0),
                quiet_dropped: AtomicBool::new(false),
                last_write: parking_lot::Mutex::new(Instant::now()),
                size: AtomicU64::new(0),
            }),
        }
    }

    /// Free bytes on the data volume, if it can be measured.
    pub fn free(&self) -> Option<u64> {
        self.inner.volume.as_deref().and_then(free_bytes)
    }

    /// Whether `bytes` more can be written now with the reserve still free.
    pub fn has_room(&self, bytes: u64) -> Result<(), StoreError> {
        let Some(free) = self.free() else {
            return Ok(());
        };
        let pending = self.inner.pending.load(Ordering::Acquire);
        let needed = self
            .inner
            .reserve
            .saturating_add(pending)
            .saturating_add(bytes);
        if self.inner.reserve > 0 && free < needed {
            metrics::counter!("shoal_writes_refused_total", "reason" => "disk_reserve")
                .increment(1);
            return Err(StoreError::Unavailable(format!(
                "the data volume is full: {} free, and {} must stay free (--disk-reserve-bytes) after this write of {}; writes are refused until space is freed, reads are served",
                mib(free),
                mib(self.inner.reserve),
                mib(bytes)
            )));
        }
        Ok(())
    }

    /// Admits a write of about `bytes`: refused while the reserve would not stay free; after an
    /// I/O error, reopens the database first once there is room. Held until the write is done.
    pub fn admit(&self, bytes: u64) -> Result<Admission<'_>, StoreError> {
        self.has_room(bytes)?;
        self.recover()?;
        self.note_written(bytes);
        self.inner.pending.fetch_add(bytes, Ordering::AcqRel);
        Ok(Admission {
            store: &self.inner,
            bytes,
        })
    }

    /// Runs `f` on the tree `name` (opened or created). No tree handle outlives the call, which
    /// is what lets a reopen drop the database.
    pub fn with_tree<T>(
        &self,
        name: &str,
        f: impl FnOnce(&sled::Tree) -> sled::Result<T>,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.read();
        let db = db.as_ref().ok_or_else(reopening)?;
        let result = db.open_tree(name).and_then(|tree| f(&tree));
        result.map_err(|e| self.failure(e))
    }

    /// Removes a tree and its records.
    pub fn drop_tree(&self, name: &str) -> Result<bool, StoreError> {
        let db = self.inner.db.read();
        let db = db.as_ref().ok_or_else(reopening)?;
        let result = db.drop_tree(name);
        result.map_err(|e| self.failure(e))
    }

    /// The names of every tree.
    pub fn tree_names(&self) -> Result<Vec<String>, StoreError> {
        let db = self.inner.db.read();
        let db = db.as_ref().ok_or_else(reopening)?;
        Ok(db
            .tree_names()
            .iter()
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect())
    }

    /// Bytes of sled's files (as last measured while a reopen holds the handle: metrics and
    /// collection info never wait for one).
    pub fn size_on_disk(&self) -> u64 {
        if let Some(db) = self.inner.db.try_read() {
            if let Some(size) = db.as_ref().and_then(|db| db.size_on_disk().ok()) {
                self.inner.size.store(size, Ordering::Relaxed);
            }
        }
        self.inner.size.load(Ordering::Relaxed)
    }

    /// Reopen sled once about `bytes` were logged since it opened (0: never; see the module
    /// doc). A store made with [`Store::from_db`] never reopens.
    pub fn set_reopen_after(&self, bytes: u64) {
        self.inner.reopen_after.store(bytes, Ordering::Relaxed);
    }

    /// Counts a write of about `bytes` towards the log sled would replay after a crash.
    /// [`Store::admit`] counts what it admits; writes that skip admission (dirty marks cleared
    /// by a build) call this.
    pub fn note_written(&self, bytes: u64) {
        self.inner.logged.fetch_add(bytes, Ordering::Relaxed);
        *self.inner.last_write.lock() = Instant::now();
        self.inner.quiet_dropped.store(false, Ordering::Release);
        let before = self.inner.uncached.fetch_add(bytes, Ordering::AcqRel);
        // One writer in each DROP_CACHE_EVERY crosses the mark, and it alone drops.
        if before / DROP_CACHE_EVERY != (before + bytes) / DROP_CACHE_EVERY {
            self.drop_cached_pages();
        }
    }

    /// Drops sled's files from the page cache (see the module doc).
    fn drop_cached_pages(&self) {
        if let Some(volume) = &self.inner.volume {
            drop_cached_pages(&volume.join(SLED_DIR));
        }
    }

    /// Bytes of sled's files in the page cache (0 for a store without a data dir).
    #[cfg(test)]
    fn cached_bytes(&self) -> u64 {
        self.inner
            .volume
            .as_deref()
            .map_or(0, |v| cached_bytes(&v.join(SLED_DIR)))
    }

    /// Bytes written since sled was last opened.
    pub fn logged_since_open(&self) -> u64 {
        self.inner.logged.load(Ordering::Relaxed)
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        let covered = self.inner.unflushed.load(Ordering::Acquire);
        let db = self.inner.db.read();
        let db = db.as_ref().ok_or_else(reopening)?;
        let result = db.flush();
        result.map_err(|e| self.failure(e))?;
        self.inner.flushed.fetch_max(covered, Ordering::AcqRel);
        Ok(())
    }

    /// Notes a commit acknowledged before a flush (a write without `wait=true`).
    pub fn note_unflushed(&self) {
        self.inner.unflushed.fetch_add(1, Ordering::AcqRel);
    }

    /// Commits acknowledged since the last flush that succeeded.
    pub fn unflushed(&self) -> u64 {
        let (all, covered) = (
            self.inner.unflushed.load(Ordering::Acquire),
            self.inner.flushed.load(Ordering::Acquire),
        );
        all.saturating_sub(covered)
    }

    /// Whether sled failed on an I/O error and waits to be reopened.
    pub fn is_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    /// Periodic upkeep: flushes what was acknowledged without a flush, drops sled's files from
    /// the page cache once writes are quiet (what the last writes left there), reopens sled when
    /// its log since it opened is due to be bounded, and recreates the ballast once the reserve
    /// and the ballast both fit.
    pub fn maintain(&self) {
        if self.unflushed() > 0 && !self.is_failed() {
            if let Err(e) = self.flush() {
                tracing::warn!(error = %e, "cannot flush the records");
            }
        }
        if self.inner.last_write.lock().elapsed() >= REOPEN_QUIET
            && !self.inner.quiet_dropped.swap(true, Ordering::AcqRel)
        {
            self.drop_cached_pages();
        }
        if self.reopen_due() {
            if let Err(e) = self.reopen_to_bound_recovery() {
                tracing::warn!(error = %e, "cannot reopen the record store to bound its recovery");
            }
        }
        let Some(volume) = &self.inner.volume else {
            return;
        };
        let size = ballast_bytes(self.inner.reserve);
        let ballast = volume.join(BALLAST_FILE);
        if size == 0 || ballast.metadata().is_ok_and(|m| m.len() >= size) {
            return;
        }
        let room = self.free().is_some_and(|f| f >= self.inner.reserve + size);
        if room {
            match make_ballast(&ballast, size) {
                Ok(()) => tracing::info!(bytes = size, "disk ballast in place"),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create the disk ballast");
                    let _ = std::fs::remove_file(&ballast);
                }
            }
        }
    }

    /// Turns a sled error into the store's, marking the store failed on an I/O error.
    fn failure(&self, e: sled::Error) -> StoreError {
        match e {
            sled::Error::Io(io) => {
                if !self.inner.failed.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %io, "the record store hit an I/O error: writes are refused until it is reopened, once the disk has room");
                }
                StoreError::Unavailable(format!("storage I/O error: {io}"))
            }
            other => StoreError::Failed(other.to_string()),
        }
    }

    /// Makes the store ready for a write: after an I/O error, reopens it once the reserve (and
    /// what sled needs to open) is free; a refusal says why not yet.
    pub fn recover(&self) -> Result<(), StoreError> {
        if !self.inner.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(free) = self.free() {
            let needed = self.inner.reserve.saturating_add(OPEN_MIN_FREE);
            if free < needed {
                return Err(StoreError::Unavailable(format!(
                    "the record store failed on a full disk: writes resume once {} are free on the data volume (now {})",
                    mib(needed),
                    mib(free)
                )));
            }
        }
        self.reopen()
    }

    /// Reopens sled after an I/O error: drops the handle (waiting for the operations using it)
    /// and opens it again, which replays its log as after a crash.
    fn reopen(&self) -> Result<(), StoreError> {
        let Some(volume) = &self.inner.volume else {
            return Err(StoreError::Unavailable(
                "the record store failed and cannot be reopened".into(),
            ));
        };
        let mut db = self.inner.db.write();
        if !self.inner.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.open_again(volume, &mut db)?;
        tracing::warn!("the record store was reopened after an I/O error: writes resume");
        Ok(())
    }

    /// Whether enough was logged since sled opened to reopen it now (see the module doc).
    fn reopen_due(&self) -> bool {
        let after = self.inner.reopen_after.load(Ordering::Relaxed);
        if after == 0 || self.inner.volume.is_none() || self.is_failed() {
            return false;
        }
        let logged = self.logged_since_open();
        let quiet = self.inner.last_write.lock().elapsed() >= REOPEN_QUIET
            && self.inner.pending.load(Ordering::Acquire) == 0;
        logged >= after.saturating_mul(REOPEN_FORCED_FACTOR) || (logged >= after && quiet)
    }

    /// Flushes and reopens sled so that it writes a snapshot of everything logged so far (see
    /// the module doc). Answers whether it reopened: not when the operations in flight kept the
    /// handle longer than [`REOPEN_LOCK_WAIT`].
    pub fn reopen_to_bound_recovery(&self) -> Result<bool, StoreError> {
        let Some(volume) = &self.inner.volume else {
            return Ok(false);
        };
        let Some(mut db) = self.inner.db.try_write_for(REOPEN_LOCK_WAIT) else {
            tracing::debug!("the record store is busy: its reopen waits for the next upkeep");
            return Ok(false);
        };
        let Some(open) = db.as_ref() else {
            return Ok(false);
        };
        let started = Instant::now();
        let logged = self.logged_since_open();
        metrics::gauge!("shoal_sled_reopening").set(1.0);
        // Everything written so far reaches the disk before the handle goes.
        let covered = self.inner.unflushed.load(Ordering::Acquire);
        let result = open
            .flush()
            .map_err(|e| self.failure(e))
            .and_then(|_| self.open_again(volume, &mut db));
        metrics::gauge!("shoal_sled_reopening").set(0.0);
        result?;
        self.inner.flushed.fetch_max(covered, Ordering::AcqRel);
        let seconds = started.elapsed().as_secs_f64();
        metrics::counter!("shoal_sled_reopens_total").increment(1);
        metrics::histogram!("shoal_sled_reopen_seconds").record(seconds);
        tracing::info!(
            logged_mb = logged >> 20,
            seconds,
            "record store reopened: a restart replays only what is written from now on"
        );
        Ok(true)
    }

    /// Drops the handle held in `db` and opens sled again (its recovery replays the log since its
    /// last snapshot and writes a new one). On failure the store is marked failed, so that the
    /// next write tries again ([`Store::recover`]).
    fn open_again(&self, volume: &Path, db: &mut Option<sled::Db>) -> Result<(), StoreError> {
        drop(db.take());
        let path = volume.join(SLED_DIR);
        // sled's own threads may hold its file lock for a moment after the handle is dropped:
        // up to 3 s, as on a loaded machine half a second was once not enough (a racing writer
        // then got an error in `reopen_keeps_writes_and_racing_writers_wait`).
        let mut last = None;
        for _ in 0..150 {
            match open_sled(&path, self.inner.cache_bytes) {
                Ok(reopened) => {
                    *db = Some(reopened);
                    drop_cached_pages(&path);
                    self.inner.logged.store(0, Ordering::Relaxed);
                    self.inner.failed.store(false, Ordering::Release);
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.inner.failed.store(true, Ordering::Release);
        let error = last.map_or_else(String::new, |e| e.to_string());
        tracing::error!(%error, "cannot reopen the record store");
        Err(StoreError::Unavailable(format!(
            "the record store cannot be reopened yet: {error}"
        )))
    }
}

/// The regular files under `dir` (sled's log, snapshots, blobs), recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                Ok(t) if t.is_file() => files.push(entry.path()),
                _ => {}
            }
        }
    }
    files
}

/// Asks the kernel to drop the clean pages of every file under `dir` from the page cache
/// (starting writeback of the dirty ones). Best effort: the files stay as they are.
fn drop_cached_pages(dir: &Path) {
    use std::os::unix::io::AsRawFd;
    for path in files_under(dir) {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        // SAFETY: an open file descriptor; offset 0 and length 0 mean the whole file.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            tracing::debug!(path = %path.display(), error = %std::io::Error::from_raw_os_error(rc), "posix_fadvise(DONTNEED) failed");
        }
    }
}

/// Bytes of the files under `dir` that are in the page cache (`mincore` over a mapping of each).
#[cfg(test)]
fn cached_bytes(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .filter_map(|path| {
            let file = std::fs::File::open(path).ok()?;
            if file.metadata().ok()?.len() == 0 {
                return Some(0);
            }
            // SAFETY: the mapping is only passed to mincore, never read: a file changed or
            // truncated meanwhile cannot fault this process.
            let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
            Some(crate::memory::resident_bytes(&map) as u64)
        })
        .sum()
}

fn reopening() -> StoreError {
    StoreError::Unavailable("the record store is being reopened; retry".into())
}

/// Deletes the ballast; whether there was one.
fn release_ballast(path: &Path) -> bool {
    std::fs::remove_file(path).is_ok()
}

/// Writes a ballast of `size` bytes whose blocks are really allocated (not a sparse file).
fn make_ballast(path: &Path, size: u64) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let len = libc::off_t::try_from(size).map_err(std::io::Error::other)?;
    // SAFETY: an open file descriptor and a non-negative length.
    let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ballast_follows_the_reserve() {
        assert_eq!(ballast_bytes(0), 0);
        assert_eq!(ballast_bytes(64 << 20), 16 << 20);
        assert_eq!(ballast_bytes(1 << 20), 1 << 20);
        assert_eq!(ballast_bytes(1 << 30), 16 << 20);
    }

    #[test]
    fn store_writes_flushes_and_counts_unflushed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0, 1 << 20).unwrap();
        let admitted = store.admit(10).unwrap();
        store
            .with_tree("t", |t| t.insert(b"k", b"v".to_vec()))
            .unwrap();
        drop(admitted);
        store.note_unflushed();
        assert_eq!(store.unflushed(), 1);
        store.flush().unwrap();
        assert_eq!(store.unflushed(), 0);
        assert_eq!(
            store
                .tree_names()
                .unwrap()
                .iter()
                .filter(|n| *n == "t")
                .count(),
            1
        );
        assert!(free_bytes(dir.path()).is_some());
    }

    /// Whether `dir` is on tmpfs, whose pages are the files themselves (nothing to drop).
    fn on_tmpfs(dir: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: a NUL-terminated path and a buffer the size of `statfs`.
        let rc = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
        // SAFETY: filled when statfs returned 0.
        rc == 0 && unsafe { st.assume_init() }.f_type as i64 == 0x0102_1994
    }

    /// sled's log leaves the page cache as writes go on (its records are read back through
    /// sled's own cache, never these pages), and every record stays readable.
    #[test]
    fn sleds_files_leave_the_page_cache_as_writes_go_on() {
        let dir = tempfile::tempdir().unwrap();
        if on_tmpfs(dir.path()) {
            eprintln!("skipped: on tmpfs the page cache is the file");
            return;
        }
        let store = Store::open(dir.path(), 0, 1 << 20).unwrap();
        const VALUE: u64 = 4096;
        let write = |k: u64| {
            let _room = store.admit(VALUE).unwrap();
            store
                .with_tree("t", |t| {
                    t.insert(k.to_be_bytes(), vec![k as u8; VALUE as usize])
                })
                .unwrap();
            if k % 64 == 63 {
                store.flush().unwrap();
            }
        };
        // Under the mark, what sled wrote stays cached (clean: sled flushed it).
        let under = DROP_CACHE_EVERY / VALUE - 64;
        (0..under).for_each(write);
        store.flush().unwrap();
        let before = store.cached_bytes();
        assert!(
            before > DROP_CACHE_EVERY / 2,
            "{before} bytes of sled's files cached after writing {} (nothing to tell apart)",
            under * VALUE
        );
        // Many times the mark: at most a few marks' worth (what sled logged since the last one,
        // and what was still dirty then) stays.
        let all = 32 * DROP_CACHE_EVERY / VALUE;
        (under..all).for_each(write);
        store.flush().unwrap();
        let after = store.cached_bytes();
        assert!(
            after < 4 * DROP_CACHE_EVERY,
            "{after} bytes of sled's files cached after writing {}",
            all * VALUE
        );
        // Once writes are quiet, the upkeep drops what the last of them left.
        let more = all + DROP_CACHE_EVERY / VALUE / 2;
        (all..more).for_each(write);
        store.flush().unwrap();
        std::thread::sleep(REOPEN_QUIET + Duration::from_millis(100));
        store.maintain();
        let quiet = store.cached_bytes();
        assert!(
            quiet < DROP_CACHE_EVERY / 4,
            "{quiet} bytes of sled's files cached once writes were quiet"
        );
        let all = more;
        let held = store.with_tree("t", |t| Ok(t.len())).unwrap();
        assert_eq!(held as u64, all);
        let last = store
            .with_tree("t", |t| t.get((all - 1).to_be_bytes()))
            .unwrap()
            .unwrap();
        assert_eq!(&last[..], &vec![(all - 1) as u8; VALUE as usize][..]);
    }

    /// A reopen to bound sled's recovery keeps every write, and writers racing it wait for it
    /// instead of failing.
    #[test]
    fn reopen_keeps_writes_and_racing_writers_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0, 1 << 20).unwrap();
        store.set_reopen_after(64 << 10);
        let write = |store: &Store, k: u64| -> Result<(), StoreError> {
            let _room = store.admit(1024)?;
            store.with_tree("t", |t| t.insert(k.to_be_bytes(), vec![7u8; 512]))?;
            store.flush()
        };
        // Enough written to be due whatever the writes (twice the threshold): the upkeep reopens.
        for k in 0..200 {
            write(&store, k).unwrap();
        }
        assert!(store.reopen_due());
        store.maintain();
        assert_eq!(store.logged_since_open(), 0, "the upkeep reopened sled");
        assert!(!store.reopen_due());
        // Below the forced bound and not quiet: no reopen.
        write(&store, 1000).unwrap();
        assert!(!store.reopen_due());

        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3u64)
            .map(|w| {
                let (store, stop) = (store.clone(), std::sync::Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        write(&store, 10_000 * (w + 1) + n).expect("a write racing a reopen");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut reopened = 0;
        while reopened < 5 {
            reopened += usize::from(store.reopen_to_bound_recovery().unwrap());
        }
        stop.store(true, Ordering::Relaxed);
        let written: Vec<u64> = writers.into_iter().map(|t| t.join().unwrap()).collect();
        drop(store);
        let store = Store::open(dir.path(), 0, 1 << 20).unwrap();
        let held = store.with_tree("t", |t| Ok(t.len())).unwrap();
        assert_eq!(held, 201 + written.iter().sum::<u64>() as usize);
    }
}
