//! The snapshot file: shoal's own format for a collection's configuration and points, and its
//! checks. A logical dump, not a copy of segment files, so that it restores into a cluster of
//! any size and any placement (points are re-placed on upsert), and does not depend on the
//! segment format of the release that wrote it.
//!
//! A snapshot is a tar archive (the `tar` crate writes and reads it; any `tar tf` lists it):
//!
//! ```text
//! snapshot.json        {"format": "shoal-collection-snapshot", "version": 1, "collection",
//!                       "created", "shards", "config": <the collection's config.json>}
//! shards/<i>.points    shard i's live points: frames of u32 little-endian length + bincode
//!                      {id, version, vector, payload_json}, in id order
//! checksums.json       {"files": {<entry>: <sha256 hex>}, "points": <count>}: written last
//! ```
//!
//! [`verify`] reads a file through once and refuses it — before anything is changed — unless
//! every entry is present, in order, intact (its sha256 as listed), of this format version,
//! its configuration valid and every point of the configured dimension with a readable payload.
//! A truncated file lacks `checksums.json` or ends inside an entry; a flipped byte breaks a tar
//! header checksum or an entry's sha256. The sha256 of the whole file is what the API reports as
//! the snapshot's `checksum` (as Qdrant does) and what a recover's `checksum` is compared with.

use super::catalog::validate_config;
use super::CollectionConfig;
use crate::shard::point::{parse_payload, PointId};
use crate::shard::{Shard, ShardError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

pub const FORMAT: &str = "shoal-collection-snapshot";
/// The version of the layout above; a snapshot of another version is refused.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: &str = "snapshot.json";
const CHECKSUMS: &str = "checksums.json";
/// Largest point frame read back: a 65 536-d vector and a payload as large as a request.
const MAX_FRAME: usize = 64 << 20;

pub fn shard_entry(shard: u32) -> String {
    format!("shards/{shard}.points")
}

/// `snapshot.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub collection: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub created: String,
    pub shards: u32,
    pub config: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Checksums {
    files: BTreeMap<String, String>,
    points: u64,
}

/// One point as a snapshot holds it: the stored (prepared) vector and payload text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotPoint {
    pub id: PointId,
    pub version: u64,
    pub vector: Vec<f32>,
    pub payload_json: String,
}

/// Appends point frames to a shard entry's file.
pub fn write_point(out: &mut impl Write, point: &SnapshotPoint) -> io::Result<()> {
    let bytes = crate::codec::encode(point);
    out.write_all(&(bytes.len() as u32).to_le_bytes())?;
    out.write_all(&bytes)
}

/// Reads the next frame; `None` at a clean end.
fn read_point(input: &mut impl Read) -> Result<Option<SnapshotPoint>, String> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("a point is cut short (truncated file)".into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading a point: {e}")),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(format!("a point claims {len} bytes (corrupt file)"));
    }
    let mut bytes = vec![0u8; len];
    input
        .read_exact(&mut bytes)
        .map_err(|e| format!("a point is cut short (truncated file): {e}"))?;
    crate::codec::decode(&bytes)
        .map(Some)
        .map_err(|e| format!("a point cannot be read (corrupt file): {e}"))
}

/// Hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a file, in hex (what Qdrant reports as a snapshot's checksum).
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut reader = Hashing {
        inner: BufReader::with_capacity(1 << 20, File::open(path)?),
        hash: Sha256::new(),
    };
    io::copy(&mut reader, &mut io::sink())?;
    Ok(hex(&reader.hash.finalize()))
}

/// Writes the shard's live points into `dest` (fsynced): the point-in-time walk of
/// [`Shard::dump`]. Answers how many points it wrote.
pub fn dump_shard(shard: &Shard, dest: &Path) -> Result<u64, ShardError> {
    let io = |e: std::io::Error| ShardError::Storage(format!("writing {}: {e}", dest.display()));
    let started = std::time::Instant::now();
    let file = std::fs::File::create(dest).map_err(io)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let count = shard.dump(|id, record| {
        let Some(body) = record.body else {
            return Ok(());
        };
        let point = SnapshotPoint {
            id,
            version: record.version,
            vector: body.vector,
            payload_json: body.payload_json,
        };
        write_point(&mut out, &point)
    })?;
    out.flush().map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    tracing::info!(
        points = count,
        seconds = started.elapsed().as_secs_f64(),
        "shard dumped for a snapshot (its writers waited for the walk)"
    );
    Ok(count)
}

/// Writes the archive to `dest` (fsynced): the header, each shard's file of point frames (as
/// `(shard, path, points)`), then the checksums.
pub fn write_archive(dest: &Path, header: &Header, shards: &[(u32, &Path, u64)]) -> io::Result<()> {
    let file = File::create(dest)?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let mut sums = Checksums {
        files: BTreeMap::new(),
        points: 0,
    };
    let header_bytes = serde_json::to_vec_pretty(header).map_err(io::Error::other)?;
    sums.files
        .insert(HEADER.into(), hex(&Sha256::digest(&header_bytes)));
    append_bytes(&mut tar, HEADER, &header_bytes)?;
    for (shard, path, points) in shards {
        let name = shard_entry(*shard);
        sums.files.insert(name.clone(), sha256_file(path)?);
        sums.points += points;
        tar.append_path_with_name(path, &name)?;
    }
    let sums_bytes = serde_json::to_vec_pretty(&sums).map_err(io::Error::other)?;
    append_bytes(&mut tar, CHECKSUMS, &sums_bytes)?;
    let out = tar.into_inner()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

fn append_bytes(tar: &mut tar::Builder<impl Write>, name: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_size(bytes.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    h.set_cksum();
    tar.append_data(&mut h, name, bytes)
}

/// A full-storage snapshot: `full.json` (`{"format": "shoal-full-snapshot", "version": 1,
/// "collections": {<name>: <entry>}}`), then one collection snapshot per collection as
/// `collections/<name>.snapshot`. Each is restored on its own (docs/snapshots.md).
pub fn write_full_archive(
    dest: &Path,
    collections: &[(String, std::path::PathBuf)],
) -> io::Result<()> {
    let file = File::create(dest)?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    let entries: BTreeMap<&str, String> = collections
        .iter()
        .map(|(name, _)| (name.as_str(), format!("collections/{name}.snapshot")))
        .collect();
    let index = serde_json::json!({
        "format": "shoal-full-snapshot",
        "version": FORMAT_VERSION,
        "created": crate::logging::now_rfc3339(),
        "collections": entries,
    });
    let index = serde_json::to_vec_pretty(&index).map_err(io::Error::other)?;
    append_bytes(&mut tar, "full.json", &index)?;
    for (name, path) in collections {
        tar.append_path_with_name(path, format!("collections/{name}.snapshot"))?;
    }
    let out = tar.into_inner()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// What a verified snapshot holds.
#[derive(Debug)]
pub struct Verified {
    pub header: Header,
    pub config: CollectionConfig,
    pub points: u64,
}

/// Reads the whole file and answers what it holds, or why it is refused (see the module doc).
pub fn verify(path: &Path) -> Result<Verified, String> {
    walk(path, |_| Ok(()))
}

/// Reads a snapshot [`verify`] accepted, handing every point to `each`.
pub fn read_points(
    path: &Path,
    each: impl FnMut(SnapshotPoint) -> Result<(), String>,
) -> Result<Verified, String> {
    walk(path, each)
}

fn walk(
    path: &Path,
    mut each: impl FnMut(SnapshotPoint) -> Result<(), String>,
) -> Result<Verified, String> {
    let file = File::open(path).map_err(|e| format!("cannot open the snapshot: {e}"))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let entries = archive
        .entries()
        .map_err(|e| format!("not a snapshot archive: {}", short(&e)))?;
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut head: Option<(Header, CollectionConfig)> = None;
    let mut points = 0u64;
    for entry in entries {
        let entry =
            entry.map_err(|e| format!("corrupt or truncated snapshot archive: {}", short(&e)))?;
        let name = entry
            .path()
            .map_err(|e| format!("corrupt entry name: {e}"))?
            .to_string_lossy()
            .into_owned();
        let mut input = Hashing {
            inner: entry,
            hash: Sha256::new(),
        };
        if name == CHECKSUMS {
            let sums: Checksums = read_json(&mut input, CHECKSUMS)?;
            if head.is_none() {
                return Err(format!("{HEADER} is missing"));
            }
            check_sums(&sums, &found, points)?;
            let (header, config) = head.take().ok_or("unreachable")?;
            if let Some(s) = (0..header.shards).find(|s| !found.contains_key(&shard_entry(*s))) {
                return Err(format!("shard {s} is missing from the snapshot"));
            }
            return Ok(Verified {
                header,
                config,
                points,
            });
        }
        match &head {
            None if name == HEADER => {
                let header: Header = read_json(&mut input, HEADER)?;
                if header.format != FORMAT {
                    return Err(format!(
                        "not a shoal collection snapshot (format {:?})",
                        header.format
                    ));
                }
                if header.version != FORMAT_VERSION {
                    return Err(format!(
                        "snapshot format version {} is not the one this node reads ({FORMAT_VERSION})",
                        header.version
                    ));
                }
                let config: CollectionConfig = serde_json::from_value(header.config.clone())
                    .map_err(|e| format!("the snapshot's collection config cannot be read: {e}"))?;
                validate_config(&config)
                    .map_err(|e| format!("the snapshot's collection config is invalid: {e}"))?;
                if header.shards != config.shard_number {
                    return Err(format!(
                        "the snapshot announces {} shards for a collection of {}",
                        header.shards, config.shard_number
                    ));
                }
                head = Some((header, config));
            }
            None => return Err(format!("{HEADER} must come first, found {name}")),
            Some((header, config)) => {
                let shard = name
                    .strip_prefix("shards/")
                    .and_then(|n| n.strip_suffix(".points"))
                    .and_then(|n| n.parse::<u32>().ok());
                let known = shard.is_some_and(|s| s < header.shards && shard_entry(s) == name);
                if !known || found.contains_key(&name) {
                    return Err(format!("unexpected entry {name} in the snapshot"));
                }
                while let Some(p) = read_point(&mut input)? {
                    if p.vector.len() != config.size {
                        return Err(format!(
                            "dimension mismatch: point {} has {} dimensions, the snapshot's collection {}",
                            p.id,
                            p.vector.len(),
                            config.size
                        ));
                    }
                    parse_payload(&p.payload_json)
                        .map_err(|e| format!("point {}: unreadable payload: {e}", p.id))?;
                    points += 1;
                    each(p)?;
                }
            }
        }
        found.insert(name, hex(&input.hash.finalize()));
    }
    Err(format!(
        "{CHECKSUMS} is missing: the snapshot is truncated or incomplete"
    ))
}

/// An archive error as a line of text: the tar reader quotes the bytes it could not read, which
/// in a damaged file are anything.
fn short(e: &io::Error) -> String {
    let text: String = e
        .to_string()
        .chars()
        .filter(|c| !c.is_control())
        .take(160)
        .collect();
    text.escape_debug().to_string()
}

fn read_json<T: serde::de::DeserializeOwned>(
    input: &mut impl Read,
    what: &str,
) -> Result<T, String> {
    let mut text = Vec::new();
    input
        .take(MAX_FRAME as u64)
        .read_to_end(&mut text)
        .map_err(|e| format!("{what} cannot be read: {e}"))?;
    serde_json::from_slice(&text).map_err(|e| format!("{what} is corrupt: {e}"))
}

fn check_sums(
    sums: &Checksums,
    found: &BTreeMap<String, String>,
    points: u64,
) -> Result<(), String> {
    for (name, sum) in &sums.files {
        match found.get(name) {
            None => return Err(format!("entry {name} is missing from the snapshot")),
            Some(s) if s != sum => {
                return Err(format!(
                    "entry {name} is corrupt: its sha256 is {s}, the snapshot lists {sum}"
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = found.keys().find(|n| !sums.files.contains_key(*n)) {
        return Err(format!("entry {extra} is not listed in {CHECKSUMS}"));
    }
    if sums.points != points {
        return Err(format!(
            "the snapshot lists {} points and holds {points}",
            sums.points
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
