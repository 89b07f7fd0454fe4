//! The segment's own file, `segment.shoal`, and the integrity checks around the hnsw_rs dump.
//!
//! A segment directory holds three files:
//! - `hnsw.hnsw.graph`, `hnsw.hnsw.data`: hnsw_rs's dump (its `file_dump`), fsynced by us since
//!   hnsw_rs only flushes;
//! - `segment.shoal`: written last, atomically (`segment.shoal.tmp`, fsync, rename, fsync of the
//!   directory), so its presence means the segment is complete. It records the parameters, the
//!   length and a 64-bit checksum of each dump file, and the search graph as shoal improved it
//!   (see `repair`), and carries a checksum of its own payload.
//!
//! `open` verifies everything before any byte reaches hnsw_rs's loader (which panics, or calls
//! `process::exit`, on malformed input), so a truncated or corrupted file is an `Err`.

use super::flat::FlatGraph;
use super::Metric;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

pub(crate) const SEGMENT_FILE: &str = "segment.shoal";
const MAGIC: &[u8; 8] = b"SHOALSEG";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 8;

/// Length and checksum of one file written by hnsw_rs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileCheck {
    pub name: String,
    pub len: u64,
    pub hash: u64,
}

/// The payload of `segment.shoal`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SegmentFile {
    pub metric: Metric,
    pub m: usize,
    pub ef_construct: usize,
    pub max_nb_connection: usize,
    pub n: usize,
    pub dim: usize,
    pub dump: Vec<FileCheck>,
    /// The search graph (without vectors: those come from the hnsw_rs dump).
    pub m0: usize,
    pub m_up: usize,
    pub entry: u32,
    pub top_level: u8,
    pub levels: Vec<u8>,
    pub layer0: Vec<u32>,
    pub upper_offset: Vec<u32>,
    pub upper: Vec<u32>,
}

impl SegmentFile {
    /// Moves the adjacency of `g` into a graph that has the vectors.
    pub fn graph_with_vectors(self, vectors: Vec<f32>) -> FlatGraph {
        FlatGraph {
            n: self.n,
            dim: self.dim,
            vectors,
            m0: self.m0,
            m_up: self.m_up,
            layer0: self.layer0,
            levels: self.levels,
            upper_offset: self.upper_offset,
            upper: self.upper,
            entry: self.entry,
            top_level: self.top_level,
        }
    }

    /// Checks the graph's shape so that search can index without bounds surprises.
    pub fn validate(&self) -> Result<()> {
        let n = self.n;
        ensure!(self.m0 >= 1 && self.m_up >= 1, "bad degrees");
        ensure!(self.dim >= 1, "bad dimension");
        ensure!(
            self.levels.len() == n && self.upper_offset.len() == n,
            "bad per-node arrays"
        );
        ensure!(self.layer0.len() == n * (1 + self.m0), "bad layer-0 size");
        if n == 0 {
            return Ok(());
        }
        ensure!((self.entry as usize) < n, "entry out of range");
        ensure!(
            self.levels[self.entry as usize] == self.top_level,
            "entry not on top layer"
        );
        let mut expect_off = 0usize;
        for id in 0..n {
            let l = self.levels[id] as usize;
            ensure!(l <= self.top_level as usize, "level above top");
            if l > 0 {
                ensure!(
                    self.upper_offset[id] as usize == expect_off,
                    "bad upper offset"
                );
                expect_off += l * (1 + self.m_up);
            } else {
                ensure!(
                    self.upper_offset[id] == super::flat::NO_UPPER,
                    "bad upper offset"
                );
            }
        }
        ensure!(self.upper.len() == expect_off, "bad upper size");
        let check_row = |row: &[u32], level: usize| -> Result<()> {
            let cnt = row[0] as usize;
            ensure!(cnt < row.len(), "row count too large");
            for &nb in &row[1..1 + cnt] {
                ensure!(
                    (nb as usize) < n && self.levels[nb as usize] as usize >= level,
                    "bad neighbour id"
                );
            }
            Ok(())
        };
        for row in self.layer0.chunks_exact(1 + self.m0) {
            check_row(row, 0)?;
        }
        for id in 0..n {
            let l = self.levels[id] as usize;
            if l > 0 {
                let start = self.upper_offset[id] as usize;
                for (i, row) in self.upper[start..start + l * (1 + self.m_up)]
                    .chunks_exact(1 + self.m_up)
                    .enumerate()
                {
                    check_row(row, i + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// A fast 64-bit checksum (word-wise multiply-rotate with a final avalanche). Detects
/// truncation and corruption; it is not meant to resist deliberate tampering.
pub(crate) fn checksum(bytes: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    let mut h = [P1, P2, P1 ^ P2, 0x1656_67B1_9E37_79F9u64];
    let mut chunks = bytes.chunks_exact(32);
    for c in &mut chunks {
        for (lane, w) in h.iter_mut().zip(c.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            *lane = (*lane ^ u64::from_le_bytes(b).wrapping_mul(P2))
                .rotate_left(31)
                .wrapping_mul(P1);
        }
    }
    let mut acc = bytes.len() as u64;
    for lane in h {
        acc = (acc ^ lane).wrapping_mul(P1).rotate_left(27);
    }
    for &b in chunks.remainder() {
        acc = (acc ^ b as u64).wrapping_mul(P2).rotate_left(11);
    }
    acc ^= acc >> 33;
    acc = acc.wrapping_mul(P2);
    acc ^ (acc >> 29)
}

/// fsyncs an existing file.
pub(crate) fn fsync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync {}", path.display()))
}

/// fsyncs a directory (so renames and new entries in it are durable). Best effort on platforms
/// where directories cannot be opened.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        fsync_file(dir)?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads a whole file and returns its length and checksum.
pub(crate) fn check_file(dir: &Path, name: &str) -> Result<FileCheck> {
    let path = dir.join(name);
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(FileCheck {
        name: name.to_string(),
        len: bytes.len() as u64,
        hash: checksum(&bytes),
    })
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_fixed_int_encoding()
}

/// Writes `segment.shoal` atomically into `dir`.
pub(crate) fn write_segment_file(dir: &Path, file: &SegmentFile) -> Result<()> {
    let payload =
        bincode::serde::encode_to_vec(file, bincode_config()).context("encoding segment file")?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    let tmp = dir.join(format!("{SEGMENT_FILE}.tmp"));
    let fin = dir.join(SEGMENT_FILE);
    {
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&out)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("fsync {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &fin)
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    fsync_dir(dir)
}

/// Reads and verifies `segment.shoal`.
pub(crate) fn read_segment_file(dir: &Path) -> Result<SegmentFile> {
    let path = dir.join(SEGMENT_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(bytes.len() >= HEADER_LEN, "{} is truncated", path.display());
    ensure!(
        &bytes[..8] == MAGIC,
        "{} is not a shoal segment file",
        path.display()
    );
    let word = |r: std::ops::Range<usize>| -> u64 {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&bytes[r]);
        u64::from_le_bytes(b)
    };
    let version = word(8..12) as u32;
    if version != VERSION {
        bail!(
            "{}: unsupported segment format version {version}",
            path.display()
        );
    }
    let len = word(12..20);
    let hash = word(20..28);
    let payload = &bytes[HEADER_LEN..];
    ensure!(
        payload.len() as u64 == len,
        "{} is truncated",
        path.display()
    );
    ensure!(
        checksum(payload) == hash,
        "{} is corrupt (checksum mismatch)",
        path.display()
    );
    let (file, used): (SegmentFile, usize) =
        bincode::serde::decode_from_slice(payload, bincode_config())
            .with_context(|| format!("decoding {}", path.display()))?;
    ensure!(
        used == payload.len(),
        "{} has trailing bytes",
        path.display()
    );
    file.validate()
        .with_context(|| format!("{} holds an inconsistent graph", path.display()))?;
    Ok(file)
}
