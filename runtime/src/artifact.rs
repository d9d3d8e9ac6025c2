//! The on-disk container of an ahead-of-time compiled model (`MODEL.kiln`).
//!
//! An artifact is a versioned container of named binary sections (object code, a
//! serialized execution plan, weights, ...) described by a JSON manifest. It is
//! written atomically by [`ArtifactWriter`] and memory-mapped and fully validated by
//! [`Artifact::open`], after which every section is a zero-copy slice of the map.
//!
//! # File layout
//!
//! All integers are little-endian.
//!
//! | offset | size | contents |
//! |-------:|-----:|----------|
//! | 0      | 8    | [`MAGIC`], `b"KILNART\0"` |
//! | 8      | 4    | `u32` format version ([`FORMAT_VERSION`]) |
//! | 12     | 8    | `u64` manifest length in bytes (at most [`MAX_MANIFEST_BYTES`]) |
//! | 20     | 4    | `u32` CRC-32 (IEEE) of the manifest bytes |
//! | 24     | len  | the manifest, UTF-8 JSON |
//! | ...    |      | the sections' bytes, each at an offset aligned to [`SECTION_ALIGN`] |
//!
//! The manifest is the JSON object
//!
//! ```json
//! {
//!   "format_version": 2,
//!   "kiln_version": "0.1.0",
//!   "meta": { "...": "whatever the compiler stored" },
//!   "sections": [
//!     { "name": "code", "offset": 128, "length": 4096, "crc32": 305419896 }
//!   ]
//! }
//! ```
//!
//! where `offset` is the absolute file offset of the section's first byte and
//! `crc32` the CRC-32 (IEEE) of its bytes. Sections are listed in increasing offset
//! order and never overlap. Every byte between the manifest and the first section
//! and between two sections is zero padding, and the file ends exactly where the
//! last section ends: a reader checks all of this, so a file that passes
//! [`Artifact::open`] has no byte that was not written by [`ArtifactWriter`] (any
//! single corrupted byte is detected).
//!
//! Because the map's base is page-aligned and every section offset is a multiple of
//! [`SECTION_ALIGN`], a section's slice is 64-byte aligned in memory: f32 weights and
//! machine code can be used in place.
//!
//! # Replacing an artifact that is in use
//!
//! [`ArtifactWriter::write`] never modifies an existing file: it writes a new file
//! and renames it over the old one. A process that has the old artifact open keeps
//! reading the old bytes (the old inode lives as long as the map); the next
//! [`Artifact::open`] sees the new one.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The first bytes of every kiln artifact.
pub const MAGIC: [u8; 8] = *b"KILNART\0";

/// The version of the container format this kiln writes and reads. A reader refuses
/// any other version ([`ArtifactError::IncompatibleVersion`]).
///
/// History: 1, the first; 2, host steps record why they run on the host
/// (`Step::Host::reason`) and ops carry the shared window/conv/resize
/// attribute structs.
pub const FORMAT_VERSION: u32 = 2;

/// Length of the fixed header: magic, format version, manifest length, manifest CRC.
pub const HEADER_LEN: usize = 24;

/// Alignment in bytes of every section's offset in the file (and so of its slice in
/// a memory map): a cache line, enough for any vector load.
pub const SECTION_ALIGN: usize = 64;

pub use kiln_ir::limits::ARTIFACT_MAX_MANIFEST_BYTES as MAX_MANIFEST_BYTES;

pub use kiln_ir::limits::ARTIFACT_MAX_SECTIONS as MAX_SECTIONS;

pub use kiln_ir::limits::ARTIFACT_MAX_SECTION_NAME_BYTES as MAX_SECTION_NAME_BYTES;

/// Largest number of section names listed in a [`ArtifactError::MissingSection`]
/// message (the rest are counted).
const MAX_NAMES_IN_ERROR: usize = 16;

/// Byte range of the format version in the header.
const VERSION_RANGE: Range<usize> = 8..12;
/// Byte range of the manifest length in the header.
const MANIFEST_LEN_RANGE: Range<usize> = 12..20;
/// Byte range of the manifest CRC-32 in the header.
const MANIFEST_CRC_RANGE: Range<usize> = 20..24;

/// Everything that can go wrong writing or reading an artifact. Every variant says
/// which file (where there is one) and exactly what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The file could not be opened, read or mapped.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The artifact's path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The artifact (or its temporary file) could not be written, synced or renamed
    /// into place; the target, if it existed, is unchanged.
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The target path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file does not start with [`MAGIC`].
    #[error("`{}` is not a kiln artifact", path.display())]
    NotAnArtifact {
        /// The file's path.
        path: PathBuf,
    },
    /// The file was written in another container format version.
    #[error(
        "`{}` was compiled by an incompatible kiln (format {found}, this kiln reads \
         {FORMAT_VERSION}): recompile it with `kiln compile`",
        path.display()
    )]
    IncompatibleVersion {
        /// The artifact's path.
        path: PathBuf,
        /// The format version in its header.
        found: u32,
    },
    /// The file ends before its header or manifest does.
    #[error(
        "`{}` is truncated: its {what} needs {needed} bytes but the file has {file_len}",
        path.display()
    )]
    Truncated {
        /// The artifact's path.
        path: PathBuf,
        /// What is cut off (`header` or `manifest`).
        what: &'static str,
        /// Bytes the file needs to hold it.
        needed: u64,
        /// Bytes the file has.
        file_len: u64,
    },
    /// The header's manifest length is over [`MAX_MANIFEST_BYTES`] (at read), or the
    /// manifest to write would be (at write).
    #[error(
        "`{}`: manifest of {len} bytes is over the limit of {MAX_MANIFEST_BYTES} bytes",
        path.display()
    )]
    ManifestTooLarge {
        /// The artifact's path.
        path: PathBuf,
        /// The manifest length.
        len: u64,
    },
    /// The manifest bytes do not match the CRC-32 stored in the header.
    #[error(
        "`{}` is corrupt: its manifest fails its checksum (stored {stored:08x}, computed \
         {computed:08x})",
        path.display()
    )]
    ManifestChecksum {
        /// The artifact's path.
        path: PathBuf,
        /// CRC-32 in the header.
        stored: u32,
        /// CRC-32 of the bytes found.
        computed: u32,
    },
    /// The manifest is not the JSON object this format describes, or disagrees with
    /// the header.
    #[error("`{}` is corrupt: invalid manifest: {reason}", path.display())]
    ManifestInvalid {
        /// The artifact's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A section's offset is not a multiple of [`SECTION_ALIGN`].
    #[error(
        "`{}` is corrupt: section `{section}` starts at offset {offset}, which is not \
         {SECTION_ALIGN}-byte aligned",
        path.display()
    )]
    SectionMisaligned {
        /// The artifact's path.
        path: PathBuf,
        /// The section's name.
        section: String,
        /// Its offset.
        offset: u64,
    },
    /// A section starts before the end of the manifest or of the previous section.
    #[error(
        "`{}` is corrupt: section `{section}` at offset {offset} overlaps {other}",
        path.display()
    )]
    SectionOverlap {
        /// The artifact's path.
        path: PathBuf,
        /// The section's name.
        section: String,
        /// Its offset.
        offset: u64,
        /// What it overlaps (`the manifest` or ``section `name` ``).
        other: String,
    },
    /// A section extends past the end of the file.
    #[error(
        "`{}` is truncated or corrupt: section `{section}` (bytes {offset}..{end}) lies \
         beyond the end of the file ({file_len} bytes)",
        path.display()
    )]
    SectionOutOfBounds {
        /// The artifact's path.
        path: PathBuf,
        /// The section's name.
        section: String,
        /// Its offset.
        offset: u64,
        /// Its end offset (saturated at `u64::MAX`).
        end: u64,
        /// The file's length.
        file_len: u64,
    },
    /// A section's bytes do not match its CRC-32 in the manifest.
    #[error(
        "`{}` is corrupt: section `{section}` fails its checksum (stored {stored:08x}, \
         computed {computed:08x})",
        path.display()
    )]
    SectionChecksum {
        /// The artifact's path.
        path: PathBuf,
        /// The section's name.
        section: String,
        /// CRC-32 in the manifest.
        stored: u32,
        /// CRC-32 of the bytes found.
        computed: u32,
    },
    /// A byte of the padding before a section is not zero.
    #[error(
        "`{}` is corrupt: non-zero byte at offset {offset} in the padding before {before}",
        path.display()
    )]
    NonZeroPadding {
        /// The artifact's path.
        path: PathBuf,
        /// Offset of the first non-zero padding byte.
        offset: u64,
        /// What the padding precedes (``section `name` ``).
        before: String,
    },
    /// The file goes on after the end of its last section (or of its manifest, when
    /// it has no sections).
    #[error(
        "`{}` is corrupt: {extra} unexpected bytes after the end of its data at offset {end}",
        path.display()
    )]
    TrailingBytes {
        /// The artifact's path.
        path: PathBuf,
        /// Where the data ends.
        end: u64,
        /// How many bytes follow.
        extra: u64,
    },
    /// [`Artifact::section`] or [`Artifact::section_bytes`] was asked for a name the
    /// artifact does not have.
    #[error("`{}` has no section `{section}` ({available})", path.display())]
    MissingSection {
        /// The artifact's path.
        path: PathBuf,
        /// The name asked for.
        section: String,
        /// The sections it does have, for the message.
        available: String,
    },
    /// [`ArtifactWriter::add_section`] was given a name already added.
    #[error("duplicate artifact section `{section}`")]
    DuplicateSection {
        /// The repeated name.
        section: String,
    },
    /// [`ArtifactWriter::add_section`] was given a name that is not valid (see
    /// [`validate_section_name`]).
    #[error("invalid artifact section name {section:?}: {reason}")]
    InvalidSectionName {
        /// The name given.
        section: String,
        /// Why it is refused.
        reason: String,
    },
    /// [`ArtifactWriter::add_section`] was called more than [`MAX_SECTIONS`] times.
    #[error("an artifact holds at most {MAX_SECTIONS} sections")]
    TooManySections,
}

/// Checks that `name` may name a section: 1 to [`MAX_SECTION_NAME_BYTES`] bytes, no
/// control characters (names appear in messages and listings), no leading or
/// trailing whitespace. Returns why not.
pub fn validate_section_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_SECTION_NAME_BYTES {
        return Err(format!(
            "it is {} bytes long, over the limit of {MAX_SECTION_NAME_BYTES}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("it contains a control character".into());
    }
    if name.trim() != name {
        return Err("it starts or ends with whitespace".into());
    }
    Ok(())
}

/// One section as the manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionInfo {
    /// The section's name, unique in the artifact.
    pub name: String,
    /// Absolute file offset of its first byte (a multiple of [`SECTION_ALIGN`]).
    pub offset: u64,
    /// Its length in bytes.
    pub length: u64,
    /// CRC-32 (IEEE) of its bytes.
    pub crc32: u32,
}

/// The JSON manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format_version: u32,
    kiln_version: String,
    meta: serde_json::Value,
    sections: Vec<SectionInfo>,
}

/// `x` rounded up to a multiple of [`SECTION_ALIGN`].
fn align_up(x: u64) -> u64 {
    let a = SECTION_ALIGN as u64;
    x.div_ceil(a) * a
}

fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Builds an artifact in memory and writes it atomically.
///
/// ```no_run
/// use kiln_runtime::artifact::{Artifact, ArtifactWriter};
/// # fn main() -> Result<(), kiln_runtime::artifact::ArtifactError> {
/// let mut w = ArtifactWriter::new(serde_json::json!({ "target": "cpu" }));
/// w.add_section("code", vec![0xc3])?.add_section("weights", &[0u8; 256][..])?;
/// w.write("MODEL.kiln")?;
/// let a = Artifact::open("MODEL.kiln")?;
/// assert_eq!(a.section("code")?, &[0xc3]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ArtifactWriter {
    meta: serde_json::Value,
    sections: Vec<(String, Vec<u8>)>,
    names: HashSet<String>,
}

impl ArtifactWriter {
    /// A writer with no sections; `meta` is stored verbatim in the manifest and
    /// returned by [`Artifact::meta`].
    pub fn new(meta: serde_json::Value) -> Self {
        Self {
            meta,
            sections: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Appends a section. Sections are laid out in the order they are added.
    ///
    /// Fails on a name already added, a name [`validate_section_name`] refuses, or
    /// more than [`MAX_SECTIONS`] sections; the writer is unchanged then.
    pub fn add_section(
        &mut self,
        name: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<&mut Self, ArtifactError> {
        validate_section_name(name).map_err(|reason| ArtifactError::InvalidSectionName {
            section: name.to_string(),
            reason,
        })?;
        if self.names.contains(name) {
            return Err(ArtifactError::DuplicateSection {
                section: name.to_string(),
            });
        }
        if self.sections.len() >= MAX_SECTIONS {
            return Err(ArtifactError::TooManySections);
        }
        self.names.insert(name.to_string());
        self.sections.push((name.to_string(), bytes.into()));
        Ok(self)
    }

    /// The names of the sections added so far, in order.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|(n, _)| n.as_str())
    }

    /// The manifest bytes and the section table for this writer's sections.
    ///
    /// Offsets depend on where the data starts, which depends on the manifest's
    /// length, which depends on the offsets' digits: iterate until the data start
    /// covers the manifest (offsets only grow, so this takes two or three rounds).
    fn layout(&self, path: &Path) -> Result<(Vec<u8>, Vec<SectionInfo>), ArtifactError> {
        let crcs: Vec<u32> = self.sections.iter().map(|(_, b)| crc32(b)).collect();
        let mut data_start = HEADER_LEN as u64;
        loop {
            let mut cursor = data_start;
            let table: Vec<SectionInfo> = self
                .sections
                .iter()
                .zip(&crcs)
                .map(|((name, bytes), &crc)| {
                    let offset = align_up(cursor);
                    cursor = offset + bytes.len() as u64;
                    SectionInfo {
                        name: name.clone(),
                        offset,
                        length: bytes.len() as u64,
                        crc32: crc,
                    }
                })
                .collect();
            let manifest = Manifest {
                format_version: FORMAT_VERSION,
                kiln_version: env!("CARGO_PKG_VERSION").to_string(),
                meta: self.meta.clone(),
                sections: table,
            };
            let json = serde_json::to_vec(&manifest).expect("a manifest always serializes");
            if json.len() > MAX_MANIFEST_BYTES {
                return Err(ArtifactError::ManifestTooLarge {
                    path: path.to_path_buf(),
                    len: json.len() as u64,
                });
            }
            let manifest_end = (HEADER_LEN + json.len()) as u64;
            if manifest_end <= data_start {
                return Ok((json, manifest.sections));
            }
            data_start = manifest_end;
        }
    }

    /// Writes the artifact to `path` atomically: into a temporary file in the same
    /// folder, synced to disk, then renamed over `path`. A failed write leaves no
    /// temporary file behind and `path` as it was (absent, or the old artifact).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), ArtifactError> {
        let path = path.as_ref();
        let (manifest, table) = self.layout(path)?;
        let err = |source: std::io::Error| ArtifactError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".kiln-artifact-").suffix(".tmp");
        // A plain file's permissions (0o666 less the umask), not the temporary
        // file's owner-only default: the artifact is an ordinary output file.
        #[cfg(unix)]
        let perms = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::Permissions::from_mode(0o666)
        };
        #[cfg(unix)]
        builder.permissions(perms);
        let tmp = builder.tempfile_in(dir).map_err(err)?;

        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(&MAGIC);
        header[VERSION_RANGE].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        header[MANIFEST_LEN_RANGE].copy_from_slice(&(manifest.len() as u64).to_le_bytes());
        header[MANIFEST_CRC_RANGE].copy_from_slice(&crc32(&manifest).to_le_bytes());

        let zeros = [0u8; SECTION_ALIGN];
        {
            let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
            out.write_all(&header).map_err(err)?;
            out.write_all(&manifest).map_err(err)?;
            let mut pos = (HEADER_LEN + manifest.len()) as u64;
            for (info, (_, bytes)) in table.iter().zip(&self.sections) {
                let mut pad = info.offset - pos;
                while pad > 0 {
                    let n = pad.min(SECTION_ALIGN as u64) as usize;
                    out.write_all(&zeros[..n]).map_err(err)?;
                    pad -= n as u64;
                }
                out.write_all(bytes).map_err(err)?;
                pos = info.offset + info.length;
            }
            out.flush().map_err(err)?;
        }
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        // Make the rename itself durable. Best effort: the new artifact is already in
        // place, and some platforms and filesystems cannot sync a directory.
        #[cfg(unix)]
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// An artifact opened for reading: a read-only memory map of the file whose header,
/// manifest, layout and every section's checksum have been validated.
///
/// Cloning is cheap: clones share the map.
#[derive(Clone)]
pub struct Artifact {
    path: PathBuf,
    /// The whole file, shared zero-copy by every [`Bytes`] handed out.
    data: Bytes,
    format_version: u32,
    kiln_version: String,
    meta: serde_json::Value,
    sections: Vec<SectionInfo>,
    /// Position of each section in `sections`, by name.
    index: HashMap<String, usize>,
}

/// Owner of a memory map inside a [`Bytes`].
struct MappedFile(memmap2::Mmap);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Artifact {
    /// Memory-maps the artifact at `path` and validates it: magic, format version,
    /// manifest (length, checksum, JSON), every section (name, alignment, bounds, no
    /// overlap, checksum), zero padding and no trailing bytes. Never panics,
    /// whatever the file holds.
    ///
    /// Validation reads every byte once (checksums), so opening costs about one pass
    /// over the file; the bytes then stay in the page cache for use.
    ///
    /// The file must not be modified in place while it is open (kiln never does:
    /// [`ArtifactWriter::write`] replaces files by renaming).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ArtifactError> {
        let path = path.as_ref();
        let read_err = |source: std::io::Error| ArtifactError::Read {
            path: path.to_path_buf(),
            source,
        };
        // Refuse directories, FIFOs and devices before opening (opening a FIFO would
        // block), and again on the opened file (the path may have been replaced).
        let not_file = || read_err(std::io::Error::other("not a regular file"));
        if !std::fs::metadata(path).map_err(read_err)?.is_file() {
            return Err(not_file());
        }
        let file = File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(not_file());
        }
        if meta.len() < MAGIC.len() as u64 {
            return Err(ArtifactError::NotAnArtifact {
                path: path.to_path_buf(),
            });
        }
        // SAFETY: the file is opened read-only and kiln never writes to a file in
        // place (artifacts are replaced by rename); a file changed by another process
        // while mapped is outside what kiln supports, as for every memory-mapping
        // model loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(read_err)?;
        Self::from_mapped(path, Bytes::from_owner(MappedFile(map)))
    }

    /// Validates `data`, the whole file at `path`.
    fn from_mapped(path: &Path, data: Bytes) -> Result<Self, ArtifactError> {
        let p = || path.to_path_buf();
        let file_len = data.len() as u64;
        let truncated = |what: &'static str, needed: u64| ArtifactError::Truncated {
            path: p(),
            what,
            needed,
            file_len,
        };
        let u32_at = |r: Range<usize>| u32::from_le_bytes(data[r].try_into().expect("4 bytes"));

        if data.len() < MAGIC.len() || data[..MAGIC.len()] != MAGIC {
            return Err(ArtifactError::NotAnArtifact { path: p() });
        }
        if data.len() < VERSION_RANGE.end {
            return Err(truncated("header", HEADER_LEN as u64));
        }
        let version = u32_at(VERSION_RANGE);
        if version != FORMAT_VERSION {
            return Err(ArtifactError::IncompatibleVersion {
                path: p(),
                found: version,
            });
        }
        if data.len() < HEADER_LEN {
            return Err(truncated("header", HEADER_LEN as u64));
        }
        let manifest_len = u64::from_le_bytes(
            data[MANIFEST_LEN_RANGE]
                .try_into()
                .expect("MANIFEST_LEN_RANGE is 8 bytes"),
        );
        if manifest_len > MAX_MANIFEST_BYTES as u64 {
            return Err(ArtifactError::ManifestTooLarge {
                path: p(),
                len: manifest_len,
            });
        }
        let manifest_end = HEADER_LEN as u64 + manifest_len;
        if manifest_end > file_len {
            return Err(truncated("manifest", manifest_end));
        }
        // Both fit in usize: manifest_end <= file_len == data.len().
        let manifest_bytes = &data[HEADER_LEN..manifest_end as usize];
        let stored = u32_at(MANIFEST_CRC_RANGE);
        let computed = crc32(manifest_bytes);
        if stored != computed {
            return Err(ArtifactError::ManifestChecksum {
                path: p(),
                stored,
                computed,
            });
        }
        let invalid = |reason: String| ArtifactError::ManifestInvalid { path: p(), reason };
        let manifest: Manifest =
            serde_json::from_slice(manifest_bytes).map_err(|e| invalid(e.to_string()))?;
        if manifest.format_version != version {
            return Err(invalid(format!(
                "it says format version {} but the header says {version}",
                manifest.format_version
            )));
        }
        if manifest.sections.len() > MAX_SECTIONS {
            return Err(invalid(format!(
                "{} sections, over the limit of {MAX_SECTIONS}",
                manifest.sections.len()
            )));
        }

        let mut index = HashMap::with_capacity(manifest.sections.len());
        // End of the previous thing in the file and what it was.
        let mut prev_end = manifest_end;
        let mut prev_what = "the manifest".to_string();
        for (i, s) in manifest.sections.iter().enumerate() {
            validate_section_name(&s.name)
                .map_err(|reason| invalid(format!("section name {:?}: {reason}", s.name)))?;
            if index.insert(s.name.clone(), i).is_some() {
                return Err(invalid(format!("section `{}` is listed twice", s.name)));
            }
            if s.offset % SECTION_ALIGN as u64 != 0 {
                return Err(ArtifactError::SectionMisaligned {
                    path: p(),
                    section: s.name.clone(),
                    offset: s.offset,
                });
            }
            if s.offset < prev_end {
                return Err(ArtifactError::SectionOverlap {
                    path: p(),
                    section: s.name.clone(),
                    offset: s.offset,
                    other: prev_what,
                });
            }
            let end = s.offset.checked_add(s.length);
            if end.is_none_or(|e| e > file_len) {
                return Err(ArtifactError::SectionOutOfBounds {
                    path: p(),
                    section: s.name.clone(),
                    offset: s.offset,
                    end: end.unwrap_or(u64::MAX),
                    file_len,
                });
            }
            let end = end.expect("checked above");
            // prev_end <= offset <= end <= file_len, all fit in usize.
            let padding = &data[prev_end as usize..s.offset as usize];
            if let Some(i) = padding.iter().position(|&b| b != 0) {
                return Err(ArtifactError::NonZeroPadding {
                    path: p(),
                    offset: prev_end + i as u64,
                    before: format!("section `{}`", s.name),
                });
            }
            let computed = crc32(&data[s.offset as usize..end as usize]);
            if computed != s.crc32 {
                return Err(ArtifactError::SectionChecksum {
                    path: p(),
                    section: s.name.clone(),
                    stored: s.crc32,
                    computed,
                });
            }
            prev_end = end;
            prev_what = format!("section `{}`", s.name);
        }
        if prev_end != file_len {
            return Err(ArtifactError::TrailingBytes {
                path: p(),
                end: prev_end,
                extra: file_len - prev_end,
            });
        }

        Ok(Self {
            path: path.to_path_buf(),
            data,
            format_version: version,
            kiln_version: manifest.kiln_version,
            meta: manifest.meta,
            sections: manifest.sections,
            index,
        })
    }

    /// The path the artifact was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container format version of the file (always [`FORMAT_VERSION`] once
    /// open).
    pub fn format_version(&self) -> u32 {
        self.format_version
    }

    /// The version of kiln that wrote the artifact (its `CARGO_PKG_VERSION`).
    pub fn kiln_version(&self) -> &str {
        &self.kiln_version
    }

    /// The free-form metadata given to [`ArtifactWriter::new`].
    pub fn meta(&self) -> &serde_json::Value {
        &self.meta
    }

    /// The section table, in file order.
    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// The section names, in file order.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.iter().map(|s| s.name.as_str())
    }

    /// Whether the artifact has a section `name`.
    pub fn has_section(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The byte range of section `name` in the file.
    fn range(&self, name: &str) -> Result<Range<usize>, ArtifactError> {
        match self.index.get(name).map(|&i| &self.sections[i]) {
            // Validated at open: offset + length <= file length, which fits in usize.
            Some(s) => Ok(s.offset as usize..(s.offset + s.length) as usize),
            None => Err(self.missing(name)),
        }
    }

    fn missing(&self, name: &str) -> ArtifactError {
        let available = if self.sections.is_empty() {
            "it has no sections".to_string()
        } else {
            let mut list: Vec<String> = self
                .sections
                .iter()
                .take(MAX_NAMES_IN_ERROR)
                .map(|s| format!("`{}`", s.name))
                .collect();
            if self.sections.len() > MAX_NAMES_IN_ERROR {
                list.push(format!(
                    "and {} more",
                    self.sections.len() - MAX_NAMES_IN_ERROR
                ));
            }
            format!("it has {}", list.join(", "))
        };
        ArtifactError::MissingSection {
            path: self.path.clone(),
            section: name.to_string(),
            available,
        }
    }

    /// The bytes of section `name`, borrowed from the map; the slice starts at a
    /// [`SECTION_ALIGN`]-aligned address.
    pub fn section(&self, name: &str) -> Result<&[u8], ArtifactError> {
        let r = self.range(name)?;
        Ok(&self.data[r])
    }

    /// The bytes of section `name` as a zero-copy [`Bytes`] sharing the map, which
    /// stays alive as long as any such view does (even after the `Artifact` is
    /// dropped).
    pub fn section_bytes(&self, name: &str) -> Result<Bytes, ArtifactError> {
        let r = self.range(name)?;
        Ok(self.data.slice(r))
    }
}

impl fmt::Debug for Artifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Artifact")
            .field("path", &self.path)
            .field("format_version", &self.format_version)
            .field("kiln_version", &self.kiln_version)
            .field("meta", &self.meta)
            .field("sections", &self.sections)
            .finish()
    }
}
