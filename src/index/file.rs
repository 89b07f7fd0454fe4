//! The segment file, `segment.shoal`: shoal's own versioned, checksummed format, written once
//! when a segment is built and served memory-mapped.
//!
//! ```text
//! 0      "SHOALSEG"                      magic
//! 8      u32 version (2)                 1 was the hnsw_rs-dump era (converted on open, see shard)
//! 12     u32 header length H
//! 16     u64 checksum of the header
//! 24     header (bincode, fixed-width integers): parameters + the section table
//! …      zero padding to 4096
//!        sections, each starting on a 4096-byte boundary, in the order of the table
//! ```
//!
//! A section is a named byte range with its own length and checksum. The graph and vectors are
//! sections named in [`names`]; callers attach their own (the shard stores point ids, versions and
//! payloads by internal id next to the vectors, so one file is one segment). Names are
//! namespaced by the vector they belong to (`""` is the unnamed default vector) so that several
//! named dense vectors, and sparse ones, fit in one file later without a version bump.
//!
//! **Integrity.** `open` checks the magic, the version, the header's checksum, and that every
//! section lies inside the file, is aligned, and has the size its parameters imply: a few
//! syscalls and no pass over the data, so reopening a segment costs the same whatever its size.
//! The per-section checksums are verified afterwards by [`MappedFile::verify`] (the shard runs it
//! in the background after open): reading every byte of a large segment at open would be the
//! pass over all points a reopen must avoid. Until then a corrupt section can give wrong
//! answers but never undefined behaviour: every access is bounds-checked.

use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

pub(crate) const SEGMENT_FILE: &str = "segment.shoal";
const MAGIC: &[u8; 8] = b"SHOALSEG";
/// The format version this code writes and reads.
pub(crate) const VERSION: u32 = 2;
/// Sections start on page boundaries (so each can be advised and counted separately).
const ALIGN: u64 = 4096;
const PREFIX_LEN: usize = 24;

/// Section names of the graph and vectors of one vector space (`space` "" is the unnamed vector).
pub mod names {
    pub fn vectors(space: &str) -> String {
        format!("{space}/vectors")
    }
    pub fn layer0(space: &str) -> String {
        format!("{space}/graph.layer0")
    }
    pub fn levels(space: &str) -> String {
        format!("{space}/graph.levels")
    }
    pub fn upper_offset(space: &str) -> String {
        format!("{space}/graph.upper_offset")
    }
    pub fn upper(space: &str) -> String {
        format!("{space}/graph.upper")
    }
    pub fn int8_codes(space: &str) -> String {
        format!("{space}/int8.codes")
    }
}

/// One named byte range of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    pub name: String,
    pub offset: u64,
    pub len: u64,
    pub checksum: u64,
}

/// The header: everything needed to interpret the sections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Number of entries (internal ids `0..n`).
    pub n: u64,
    /// The dense vector spaces stored (today exactly one, named "").
    pub spaces: Vec<SpaceHeader>,
    pub sections: Vec<Section>,
    /// Free-form parameters of attached sections (e.g. how many point ids are numeric).
    pub attributes: Vec<(String, u64)>,
}

/// Parameters of one dense vector space and its HNSW graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpaceHeader {
    pub name: String,
    pub metric: super::Metric,
    pub dim: u64,
    pub m: u64,
    pub ef_construct: u64,
    pub max_nb_connection: u64,
    pub m0: u64,
    pub m_up: u64,
    pub entry: u32,
    pub top_level: u8,
    /// Scalar int8 quantization of the vectors, when the collection asks for it.
    pub int8: Option<super::quantized::Int8Params>,
}

impl Header {
    pub fn attribute(&self, key: &str) -> Option<u64> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
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

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_fixed_int_encoding()
}

/// fsyncs a directory (so renames and new entries in it are durable).
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `segment.shoal` into `dir`: to a temporary name, fsynced, renamed into place, and the
/// directory fsynced, so the file exists complete or not at all. `header.sections` is filled in.
pub(crate) fn write(dir: &Path, mut header: Header, sections: &[(String, &[u8])]) -> Result<()> {
    // The header's size does not depend on the offsets (fixed-width integers), so lay out once
    // with zero offsets to learn it.
    header.sections = sections
        .iter()
        .map(|(name, bytes)| Section {
            name: name.clone(),
            offset: 0,
            len: bytes.len() as u64,
            checksum: checksum(bytes),
        })
        .collect();
    let probe = bincode::serde::encode_to_vec(&header, bincode_config())?;
    let mut at = (PREFIX_LEN as u64 + probe.len() as u64).next_multiple_of(ALIGN);
    for s in &mut header.sections {
        s.offset = at;
        at = (at + s.len).next_multiple_of(ALIGN);
    }
    let head = bincode::serde::encode_to_vec(&header, bincode_config())?;
    ensure!(head.len() == probe.len(), "segment header changed size");
    let tmp = dir.join(format!("{SEGMENT_FILE}.tmp"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let io = (|| -> std::io::Result<()> {
        let mut written = 0u64;
        let mut put = |bytes: &[u8]| -> std::io::Result<u64> {
            out.write_all(bytes)?;
            written += bytes.len() as u64;
            Ok(written)
        };
        put(MAGIC)?;
        put(&VERSION.to_le_bytes())?;
        put(&(head.len() as u32).to_le_bytes())?;
        put(&checksum(&head).to_le_bytes())?;
        let mut at = put(&head)?;
        let zeros = vec![0u8; ALIGN as usize];
        for (s, (_, bytes)) in header.sections.iter().zip(sections) {
            put(&zeros[..(s.offset - at) as usize])?;
            at = put(bytes)?;
        }
        put(&zeros[..(at.next_multiple_of(ALIGN) - at) as usize])?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    io.with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(SEGMENT_FILE))
        .with_context(|| format!("renaming {} into place", tmp.display()))?;
    fsync_dir(dir)
}

/// What kind of segment directory this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirFormat {
    /// The current format.
    Current,
    /// A segment of an older shoal (hnsw_rs dump + `segment.shoal` v1 + `ids.bin`).
    Old,
    /// Missing or unrecognisable.
    Unknown,
}

/// Tells a current segment directory from an older one without opening it.
pub fn dir_format(dir: &Path) -> DirFormat {
    let mut prefix = [0u8; 12];
    let read = File::open(dir.join(SEGMENT_FILE))
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut prefix));
    if read.is_err() || &prefix[..8] != MAGIC {
        return if dir.join("hnsw.hnsw.graph").exists() {
            DirFormat::Old
        } else {
            DirFormat::Unknown
        };
    }
    match u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) {
        VERSION => DirFormat::Current,
        v if v < VERSION => DirFormat::Old,
        _ => DirFormat::Unknown,
    }
}

/// An open segment file: the mapping and its header.
pub struct MappedFile {
    pub map: Arc<Mmap>,
    pub header: Header,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("bytes", &self.map.len())
            .field("n", &self.header.n)
            .finish()
    }
}

impl MappedFile {
    /// Maps `dir/segment.shoal` and checks its header (see the module doc for what is checked
    /// now and what later).
    pub fn open(dir: &Path) -> Result<MappedFile> {
        let path = dir.join(SEGMENT_FILE);
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: segment files are immutable once renamed into place; shoal never writes to
        // one again, and removes a directory only after no segment refers to it. (Another
        // process truncating it would be as fatal as for any mapped file.)
        let map =
            unsafe { Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        let bytes = &map[..];
        ensure!(bytes.len() >= PREFIX_LEN, "{} is truncated", path.display());
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
                "{}: segment format version {version}, this shoal reads {VERSION}",
                path.display()
            );
        }
        let len = word(12..16) as usize;
        ensure!(
            bytes.len() >= PREFIX_LEN + len,
            "{} is truncated",
            path.display()
        );
        let head = &bytes[PREFIX_LEN..PREFIX_LEN + len];
        ensure!(
            checksum(head) == word(16..24),
            "{} has a corrupt header (checksum mismatch)",
            path.display()
        );
        let (header, used): (Header, usize) =
            bincode::serde::decode_from_slice(head, bincode_config())
                .with_context(|| format!("decoding the header of {}", path.display()))?;
        ensure!(used == len, "{} has a malformed header", path.display());
        for s in &header.sections {
            ensure!(
                s.offset % ALIGN == 0
                    && s.offset >= (PREFIX_LEN + len) as u64
                    && s.offset
                        .checked_add(s.len)
                        .is_some_and(|end| end <= bytes.len() as u64),
                "{}: section {} lies outside the file (truncated?)",
                path.display(),
                s.name
            );
        }
        if let Some(posix) = advise_random(&map) {
            tracing::debug!(error = %posix, "madvise(MADV_RANDOM) failed");
        }
        Ok(MappedFile {
            map: Arc::new(map),
            header,
        })
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.header.sections.iter().find(|s| s.name == name)
    }

    /// The bytes of a section.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        let s = self.section(name)?;
        self.map.get(s.offset as usize..(s.offset + s.len) as usize)
    }

    /// A section as an array of exactly `count` values of `T`.
    pub(crate) fn slab<T: Copy + 'static>(
        &self,
        name: &str,
        count: usize,
    ) -> Result<super::slab::Slab<T>> {
        let s = self
            .section(name)
            .with_context(|| format!("segment file lacks section {name}"))?;
        ensure!(
            s.len == (count * std::mem::size_of::<T>()) as u64,
            "section {name} has {} bytes, expected {} values",
            s.len,
            count
        );
        super::slab::Slab::mapped(&self.map, s.offset as usize, count)
            .with_context(|| format!("section {name} is misplaced"))
    }

    /// Verifies every section's checksum (reads the whole file).
    pub fn verify(&self) -> Result<()> {
        for s in &self.header.sections {
            let bytes = self
                .map
                .get(s.offset as usize..(s.offset + s.len) as usize)
                .with_context(|| format!("section {} out of range", s.name))?;
            ensure!(
                checksum(bytes) == s.checksum,
                "section {} is corrupt (checksum mismatch)",
                s.name
            );
        }
        Ok(())
    }

    /// Bytes of the file.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Search reads scattered rows: readahead around each fault would only evict useful pages.
fn advise_random(map: &Mmap) -> Option<std::io::Error> {
    #[cfg(unix)]
    {
        map.advise(memmap2::Advice::Random).err()
    }
    #[cfg(not(unix))]
    {
        let _ = map;
        None
    }
}
