//! Zero-copy loader for TVL files.
//!
//! [`TvlFile::open`] maps a file read-only and validates its header, config and tensor
//! table in time proportional to the number of tensors: tensor data bytes are never
//! read, copied or converted at open, and the only allocation is an index whose size
//! is proportional to the tensor count (after that count has been checked against the
//! file length). Each tensor is then a [`TensorView`]: a typed slice into the mapping.
//!
//! What open checks (each failure is a distinct [`LoadError`] variant):
//! - the file holds at least the header and config (256 bytes); magic, version,
//!   byte-order mark, `alignment == 128`, `table_offset == 256`;
//! - `file_len` equals the actual length (a shorter file is [`LoadError::Truncated`]);
//! - the table fits in the file; `data_offset` is the table end rounded up to 128 and
//!   `data_offset + data_len == file_len`;
//! - per record: a non-empty, NUL-terminated, NUL-padded UTF-8 name, unique; known dtype
//!   and layout; `ndim` in 1..=4 with unused shape entries 0; row-tiled only for 2-D
//!   float matrices with `tile_rows >= 1`, plain with `tile_rows == 0`; `nbytes` equal to
//!   [`tvl_format::tensor_nbytes`]; `offset` a multiple of 128, inside the data section,
//!   `offset + nbytes <= file_len`; offsets non-decreasing and no tensor starting inside
//!   the previous one.
//!
//! Checksums are not verified and config values are not range-checked here.
//!
//! ```
//! use tvl_format::{ModelConfig, TensorData, TvlWriter};
//! use tvl_loader::TvlFile;
//!
//! let mut w = TvlWriter::new(ModelConfig::default());
//! w.add_plain("norm", &[4], TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]))?;
//! let mut bytes = Vec::new();
//! w.write_to(&mut bytes)?;
//!
//! let file = TvlFile::from_bytes(&bytes)?;
//! assert_eq!(file.tensor("norm")?.as_f32()?, &[1.0, 2.0, 3.0, 4.0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod error;
mod validate;
mod view;

use std::collections::HashMap;
use std::path::Path;

use memmap2::{Mmap, MmapMut, MmapOptions};

pub use error::LoadError;
pub use tvl_format::{BlockGeometry, DType, Header, Layout, ModelConfig, TileGeometry};
pub use view::{QuantView, TensorView};

use validate::{Entry, Parsed};

/// An open, validated TVL file: the read-only mapping, the header and config (copied)
/// and an index of the tensor table.
pub struct TvlFile {
    map: Mmap,
    header: Header,
    config: ModelConfig,
    entries: Vec<Entry>,
    index: HashMap<Box<str>, usize>,
}

impl std::fmt::Debug for TvlFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TvlFile")
            .field("file_len", &self.file_len())
            .field("tensors", &self.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// How [`TvlFile::open_with`] maps the file. The default ([`TvlFile::open`]) maps it
/// lazily: opening costs O(tensors) and each page is faulted in on first touch, during
/// the first forward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    /// Fault every page of the mapping in at open (`MAP_POPULATE` on Linux; on other
    /// systems `madvise(WILLNEED)` where available), so the first forward pass does not
    /// pay the page faults. Open then takes time proportional to the file size (no disk
    /// read if the file is in the page cache). The whole file is read before it is
    /// validated, so use this for files you mean to run.
    pub populate: bool,
    /// Lock the mapping's pages in RAM (`mlock`) so memory pressure cannot evict them
    /// (needs enough `RLIMIT_MEMLOCK`; Unix only, ignored elsewhere).
    pub lock: bool,
}

impl TvlFile {
    /// Map the file at `path` read-only and validate it (see the [crate docs](crate)).
    ///
    /// # Hazard
    ///
    /// The tensors are views into a shared mapping of the file, not copies. The file
    /// must not be modified or truncated (by this or any other process) while the
    /// returned `TvlFile` is alive: a write changes tensor contents under live `&[T]`
    /// borrows, and a truncation makes touching the lost pages raise SIGBUS. Replace
    /// model files by writing a new file and renaming it over the old one, never by
    /// rewriting in place.
    pub fn open(path: impl AsRef<Path>) -> Result<TvlFile, LoadError> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// [`TvlFile::open`] with mapping options (prefaulting, locking); same hazard.
    pub fn open_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<TvlFile, LoadError> {
        let path = path.as_ref();
        let io = |source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len < tvl_format::TABLE_OFFSET as u64 {
            // Too short to map usefully: read the few bytes for a precise error.
            let bytes = std::fs::read(path).map_err(io)?;
            validate::parse(&bytes)?;
        }
        let mut mo = MmapOptions::new();
        if opts.populate {
            mo.populate();
        }
        // SAFETY: the map is read-only (PROT_READ) and owned by the returned TvlFile, which
        // unmaps it on drop, so no view (they borrow the TvlFile) outlives it, and we never
        // write through it. What `Mmap::map` cannot guarantee is that no one else
        // modifies or truncates the file while it is mapped (changed bytes under `&[T]`,
        // SIGBUS); that is the documented precondition of `open` ("Hazard" above). All
        // accesses stay within the map's own length, which `parse` checks the table against.
        let map = unsafe { mo.map(&file) }.map_err(io)?;
        #[cfg(all(unix, not(target_os = "linux")))]
        if opts.populate {
            // No MAP_POPULATE: ask for read-ahead instead (advice only, never fails hard).
            let _ = map.advise(memmap2::Advice::WillNeed);
        }
        #[cfg(unix)]
        if opts.lock {
            map.lock().map_err(io)?;
        }
        Self::from_map(map)
    }

    /// Validate `bytes` and copy them into a fresh anonymous, page-aligned, read-only
    /// mapping (for tests and fuzzing; there is no file to be modified under it).
    pub fn from_bytes(bytes: &[u8]) -> Result<TvlFile, LoadError> {
        // Validate first: a short or hostile input never causes a mapping at all.
        let parsed = validate::parse(bytes)?;
        let anon = |source| LoadError::AnonMap {
            len: bytes.len(),
            source,
        };
        let mut map = MmapMut::map_anon(bytes.len()).map_err(anon)?;
        map.copy_from_slice(bytes);
        // The copy has the same length and contents, so `parsed` describes it.
        Ok(Self::assemble(map.make_read_only().map_err(anon)?, parsed))
    }

    fn from_map(map: Mmap) -> Result<TvlFile, LoadError> {
        let parsed = validate::parse(&map)?;
        Ok(Self::assemble(map, parsed))
    }

    fn assemble(map: Mmap, parsed: Parsed) -> TvlFile {
        let Parsed {
            header,
            config,
            entries,
            index,
        } = parsed;
        TvlFile {
            map,
            header,
            config,
            entries,
            index,
        }
    }

    /// The file header (copied at open).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The model configuration, as stored (not range-checked).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Length of the file in bytes.
    pub fn file_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// All tensors, in table order (which is also ascending offset order).
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = TensorView<'_>> + '_ {
        (0..self.entries.len()).map(move |i| self.view(i))
    }

    /// The tensor at position `index` of the table.
    pub fn tensor_at(&self, index: usize) -> Option<TensorView<'_>> {
        (index < self.entries.len()).then(|| self.view(index))
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<TensorView<'_>> {
        self.index.get(name).map(|&i| self.view(i))
    }

    /// The tensor called `name`, or [`LoadError::MissingTensor`].
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>, LoadError> {
        self.get(name).ok_or_else(|| LoadError::MissingTensor {
            name: name.to_string(),
        })
    }

    /// The whole file as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.map
    }

    fn view(&self, i: usize) -> TensorView<'_> {
        let e = &self.entries[i];
        // In bounds and UTF-8: validated at open (the record lies inside the table).
        let name_at = tvl_format::TABLE_OFFSET + i * size_of::<tvl_format::TensorRecord>();
        let name = std::str::from_utf8(&self.map[name_at..name_at + e.name_len]);
        TensorView {
            name: name.unwrap_or_default(),
            dtype: e.dtype,
            layout: e.layout,
            tile_rows: e.tile_rows,
            shape: e.shape,
            ndim: e.ndim,
            // In bounds: validated at open against this mapping's length.
            bytes: &self.map[e.offset..e.offset + e.nbytes],
            index: i,
            offset: e.offset as u64,
            checksum: e.checksum,
        }
    }
}
