//! A catalogue of malformed GGUF files: each gives its typed error, never a panic and
//! never a large allocation (a counting allocator checks the largest request).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use common::{GgufBuilder, gt, put_str, put_u32, put_u64, vt};
use vtc_import::{GgmlType, GgufError, GgufFile, Value};

/// Records the largest single allocation request of each thread (each test runs on
/// its own thread).
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the slot may be gone while the thread shuts down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: forwards every call to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: the caller upholds `realloc`'s contract, which we pass on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Parse, expecting an error; checks that nothing larger than 1 MiB was allocated.
fn parse_err(bytes: Vec<u8>) -> GgufError {
    LARGEST.with(|l| l.set(0));
    let err = match GgufFile::from_bytes(bytes) {
        Ok(g) => panic!("parsed a malformed file: {g:?}"),
        Err(e) => e,
    };
    assert!(!err.to_string().is_empty());
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest < 1 << 20,
        "an allocation of {largest} bytes was made"
    );
    err
}

fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    put_u32(&mut b, version);
    put_u64(&mut b, n_tensors);
    put_u64(&mut b, n_kv);
    b
}

/// A header with one tensor entry and no metadata; the caller writes the entry.
fn one_tensor(name: &str, dims: &[u64], ty: u32, offset: u64) -> Vec<u8> {
    let mut b = header(3, 1, 0);
    put_str(&mut b, name);
    put_u32(&mut b, dims.len() as u32);
    for &d in dims {
        put_u64(&mut b, d);
    }
    put_u32(&mut b, ty);
    put_u64(&mut b, offset);
    b
}

fn pad_to(b: &mut Vec<u8>, align: usize, extra: usize) {
    b.resize(b.len().div_ceil(align) * align + extra, 0);
}

/// A small valid file: two keys (a string, an array) and one F32 tensor.
fn valid() -> Vec<u8> {
    let mut g = GgufBuilder::new();
    g.str("general.architecture", "llama")
        .f32_array("a", &[1.0, 2.0])
        .tensor("t", &[4, 2], gt::F32, vec![0; 32]);
    g.build()
}

#[test]
fn the_valid_base_parses() {
    let g = GgufFile::from_bytes(valid()).unwrap();
    assert_eq!(g.tensors().len(), 1);
    assert_eq!(g.tensors()[0].dims, vec![4, 2]);
    assert_eq!(g.tensor_data(&g.tensors()[0]).len(), 32);
    assert_eq!(
        g.get("general.architecture").and_then(Value::as_str),
        Some("llama")
    );
}

#[test]
fn truncated_at_every_byte_of_the_header() {
    let full = valid();
    let data_offset = GgufFile::from_bytes(full.clone()).unwrap().data_offset() as usize;
    for len in 0..full.len() {
        let err = parse_err(full[..len].to_vec());
        if len < data_offset {
            // Inside the header and tables: a truncation (or a length that now runs
            // past the end).
            assert!(
                matches!(
                    err,
                    GgufError::Truncated { .. }
                        | GgufError::StringTooLong { .. }
                        | GgufError::ArrayTooLong { .. }
                        | GgufError::TooManyKeys { .. }
                        | GgufError::TooManyTensors { .. }
                ),
                "cut at {len}: {err}"
            );
        } else {
            assert!(
                matches!(err, GgufError::TensorOutOfBounds { .. }),
                "cut at {len}: {err}"
            );
        }
    }
    // Cuts inside each fixed field name that field and where it starts.
    for (len, field, offset) in [
        (0, "magic", 0),
        (3, "magic", 0),
        (4, "version", 4),
        (7, "version", 4),
        (8, "tensor count", 8),
        (15, "tensor count", 8),
        (16, "metadata count", 16),
        (23, "metadata count", 16),
    ] {
        match parse_err(full[..len].to_vec()) {
            GgufError::Truncated {
                what, offset: o, ..
            } => {
                assert_eq!((what, o), (field, offset), "cut at {len}");
            }
            e => panic!("cut at {len}: {e}"),
        }
    }
}

#[test]
fn bad_magic_and_version() {
    let mut b = valid();
    b[3] = b'X';
    assert!(matches!(parse_err(b), GgufError::BadMagic { found } if &found == b"GGUX"));
    for version in [0u32, 1, 4, 0x0300_0000] {
        let mut b = valid();
        b[4..8].copy_from_slice(&version.to_le_bytes());
        assert!(
            matches!(parse_err(b), GgufError::UnsupportedVersion { version: v } if v == version)
        );
    }
    let mut v2 = valid();
    v2[4] = 2;
    assert_eq!(GgufFile::from_bytes(v2).unwrap().version(), 2);
}

#[test]
fn huge_counts_are_rejected_before_allocating() {
    let b = header(3, u64::MAX, 0);
    assert!(matches!(
        parse_err(b),
        GgufError::TooManyTensors {
            count: u64::MAX,
            ..
        }
    ));
    let b = header(3, 0, 1 << 60);
    assert!(matches!(parse_err(b), GgufError::TooManyKeys { .. }));
    // Just one more than fits.
    let mut b = header(3, 0, 2);
    put_str(&mut b, "k");
    put_u32(&mut b, vt::U8);
    b.push(1);
    assert!(matches!(
        parse_err(b),
        GgufError::TooManyKeys {
            count: 2,
            available: 14
        }
    ));
}

#[test]
fn huge_string_lengths() {
    for len in [u64::MAX, 1 << 60, 1000] {
        let mut b = header(3, 0, 1);
        put_u64(&mut b, len);
        b.extend([b'k'; 16]);
        match parse_err(b) {
            GgufError::StringTooLong {
                offset,
                len: l,
                available,
            } => {
                assert_eq!((offset, l, available), (24, len, 16));
            }
            e => panic!("{e}"),
        }
    }
    // In a value, too.
    let mut b = header(3, 0, 1);
    put_str(&mut b, "k");
    put_u32(&mut b, vt::STRING);
    put_u64(&mut b, u64::MAX - 3);
    b.extend([0; 8]);
    assert!(matches!(
        parse_err(b),
        GgufError::StringTooLong { offset: 37, .. }
    ));
}

#[test]
fn huge_array_counts() {
    for (elem, count) in [
        (vt::U8, 1u64 << 60),
        (vt::U64, u64::MAX),
        (vt::STRING, 1 << 40),
        (vt::ARRAY, 1 << 61),
        (vt::F32, 3), // 3 * 4 bytes do not fit in the 8 that follow
    ] {
        let mut b = header(3, 0, 1);
        put_str(&mut b, "arr");
        put_u32(&mut b, vt::ARRAY);
        put_u32(&mut b, elem);
        put_u64(&mut b, count);
        b.extend([0u8; 8]);
        match parse_err(b) {
            GgufError::ArrayTooLong {
                key,
                count: c,
                offset,
                ..
            } => {
                assert_eq!((key.as_str(), c, offset), ("arr", count, 39));
            }
            e => panic!("{e}"),
        }
    }
}

#[test]
fn nested_arrays_are_depth_capped() {
    fn nested(levels: usize) -> Vec<u8> {
        let mut b = header(3, 0, 1);
        put_str(&mut b, "deep");
        put_u32(&mut b, vt::ARRAY);
        for _ in 1..levels {
            put_u32(&mut b, vt::ARRAY);
            put_u64(&mut b, 1);
        }
        put_u32(&mut b, vt::U8);
        put_u64(&mut b, 1);
        b.push(42);
        b
    }
    let g = GgufFile::from_bytes(nested(vtc_import::gguf::MAX_ARRAY_DEPTH)).unwrap();
    assert_eq!(g.get("deep").unwrap().as_array().unwrap().len(), 1);
    let err = parse_err(nested(vtc_import::gguf::MAX_ARRAY_DEPTH + 1));
    assert!(
        matches!(err, GgufError::ArrayTooDeep { ref key, .. } if key == "deep"),
        "{err}"
    );
    // Deep nesting never recurses far: 10_000 levels are refused at level 5.
    assert!(matches!(
        parse_err(nested(10_000)),
        GgufError::ArrayTooDeep { .. }
    ));
}

#[test]
fn unknown_value_types() {
    let mut b = header(3, 0, 1);
    put_str(&mut b, "k");
    put_u32(&mut b, 13);
    b.extend([0; 8]);
    assert!(matches!(
        parse_err(b),
        GgufError::UnknownValueType {
            type_id: 13,
            offset: 33,
            ..
        }
    ));
    let mut b = header(3, 0, 1);
    put_str(&mut b, "k");
    put_u32(&mut b, vt::ARRAY);
    put_u32(&mut b, 77);
    put_u64(&mut b, 0);
    assert!(matches!(
        parse_err(b),
        GgufError::UnknownValueType {
            type_id: 77,
            offset: 37,
            ..
        }
    ));
}

#[test]
fn strings_must_be_utf8() {
    let mut b = header(3, 0, 1);
    put_u64(&mut b, 4);
    b.extend(b"ab\xffc");
    put_u32(&mut b, vt::U8);
    b.push(0);
    assert!(matches!(
        parse_err(b),
        GgufError::BadUtf8 {
            what: "metadata key",
            offset: 34
        }
    ));
    let mut b = one_tensor("x", &[1], gt::F32, 0);
    let at = b.iter().position(|&c| c == b'x').unwrap();
    b[at] = 0xC0;
    pad_to(&mut b, 32, 4);
    assert!(matches!(
        parse_err(b),
        GgufError::BadUtf8 {
            what: "tensor name",
            ..
        }
    ));
}

#[test]
fn duplicates() {
    let mut g = GgufBuilder::new();
    g.u32("a", 1);
    let mut b = g.build();
    // Append a second "a" and bump the count.
    b[16..24].copy_from_slice(&2u64.to_le_bytes());
    let mut extra = Vec::new();
    put_str(&mut extra, "a");
    put_u32(&mut extra, vt::U32);
    put_u32(&mut extra, 2);
    let at = 24 + 8 + 1 + 4 + 4;
    b.splice(at..at, extra);
    assert!(matches!(parse_err(b), GgufError::DuplicateKey { ref key, offset: 41 } if key == "a"));

    let mut b = header(3, 2, 0);
    for _ in 0..2 {
        put_str(&mut b, "w");
        put_u32(&mut b, 1);
        put_u64(&mut b, 8);
        put_u32(&mut b, gt::F32);
        put_u64(&mut b, 0);
    }
    pad_to(&mut b, 32, 32);
    assert!(matches!(parse_err(b), GgufError::DuplicateTensor { ref name } if name == "w"));
}

#[test]
fn tensor_name_length_limit() {
    let ok = "n".repeat(63);
    let mut b = one_tensor(&ok, &[8], gt::F32, 0);
    pad_to(&mut b, 32, 32);
    assert_eq!(GgufFile::from_bytes(b).unwrap().tensors()[0].name, ok);
    let mut b = one_tensor(&"n".repeat(64), &[8], gt::F32, 0);
    pad_to(&mut b, 32, 32);
    assert!(matches!(
        parse_err(b),
        GgufError::TensorNameTooLong {
            len: 64,
            offset: 24
        }
    ));
    // A huge name length is refused as too long before anything is read.
    let mut b = header(3, 1, 0);
    put_u64(&mut b, u64::MAX);
    b.extend([0; 64]);
    assert!(matches!(
        parse_err(b),
        GgufError::TensorNameTooLong { len: u64::MAX, .. }
    ));
}

#[test]
fn too_many_dims() {
    let mut b = one_tensor("t", &[1, 1, 1, 1, 1], gt::F32, 0);
    pad_to(&mut b, 32, 32);
    assert!(matches!(parse_err(b), GgufError::TooManyDims { n_dims: 5, ref name } if name == "t"));
    let mut b = header(3, 1, 0);
    put_str(&mut b, "t");
    put_u32(&mut b, u32::MAX);
    b.extend([0; 64]);
    assert!(matches!(
        parse_err(b),
        GgufError::TooManyDims {
            n_dims: u32::MAX,
            ..
        }
    ));
}

#[test]
fn unknown_ggml_types() {
    for ty in [4u32, 5, 31, 36, 42, u32::MAX] {
        let mut b = one_tensor("t", &[32], ty, 0);
        pad_to(&mut b, 32, 64);
        assert!(
            matches!(parse_err(b), GgufError::UnknownGgmlType { type_id, ref name } if type_id == ty && name == "t")
        );
    }
    // Known but unsupported types parse (they fail at conversion).
    let mut b = one_tensor("t", &[256], gt::Q2_K, 0);
    pad_to(&mut b, 32, 84);
    let g = GgufFile::from_bytes(b).unwrap();
    assert_eq!(g.tensors()[0].ggml_type, GgmlType::Other(10));
    assert_eq!(g.tensors()[0].nbytes, 84);
}

#[test]
fn offsets_must_be_aligned_and_inside_the_file() {
    let mut b = one_tensor("t", &[8], gt::F32, 4);
    pad_to(&mut b, 32, 64);
    assert!(matches!(
        parse_err(b),
        GgufError::MisalignedOffset {
            offset: 4,
            alignment: 32,
            ..
        }
    ));
    let mut b = one_tensor("t", &[8], gt::F32, 64);
    pad_to(&mut b, 32, 64);
    assert!(matches!(
        parse_err(b),
        GgufError::TensorOutOfBounds {
            offset: 64,
            nbytes: 32,
            data_len: 64,
            ..
        }
    ));
    // offset + nbytes overflowing u64 is out of bounds too.
    let mut b = one_tensor("t", &[8], gt::F32, u64::MAX - 31);
    pad_to(&mut b, 32, 64);
    assert!(matches!(parse_err(b), GgufError::TensorOutOfBounds { .. }));
    // File ends inside the padding before the data section.
    let b = one_tensor("t", &[8], gt::F32, 0);
    assert!(matches!(
        parse_err(b),
        GgufError::Truncated {
            what: "padding before the data section",
            ..
        }
    ));
}

#[test]
fn dims_product_overflow() {
    for dims in [
        vec![1u64 << 32, 1 << 32],
        vec![1 << 62, 4],
        vec![u64::MAX],
        vec![1 << 20, 1 << 20, 1 << 20, 1 << 20],
    ] {
        let mut b = one_tensor("t", &dims, gt::F32, 0);
        pad_to(&mut b, 32, 32);
        match parse_err(b) {
            GgufError::SizeOverflow { name, dims: d } => {
                assert_eq!(name, "t");
                assert_eq!(d, dims);
            }
            e => panic!("{dims:?}: {e}"),
        }
    }
    // Elements fit i64 but the byte size does not.
    let mut b = one_tensor("t", &[1 << 62], gt::F32, 0);
    pad_to(&mut b, 32, 32);
    assert!(matches!(parse_err(b), GgufError::SizeOverflow { .. }));
    // A big but representable size is just out of bounds.
    let mut b = one_tensor("t", &[1 << 40, 1 << 20], gt::F32, 0);
    pad_to(&mut b, 32, 32);
    assert!(matches!(parse_err(b), GgufError::TensorOutOfBounds { .. }));
}

#[test]
fn rows_must_be_whole_blocks() {
    let mut b = one_tensor("q", &[16, 2], gt::Q4_0, 0);
    pad_to(&mut b, 32, 64);
    assert!(matches!(
        parse_err(b),
        GgufError::NotBlockMultiple {
            row_len: 16,
            block: 32,
            ggml_type: GgmlType::Q4_0,
            ..
        }
    ));
}

#[test]
fn alignment_key() {
    for (ty, value) in [
        (vt::U32, 0u32.to_le_bytes().to_vec()),
        (vt::U32, 48u32.to_le_bytes().to_vec()),
        (vt::I32, (-32i32).to_le_bytes().to_vec()),
        (vt::F32, 32f32.to_le_bytes().to_vec()),
    ] {
        let mut g = GgufBuilder::new();
        g.raw("general.alignment", ty, value);
        assert!(matches!(
            parse_err(g.build()),
            GgufError::BadAlignment { .. }
        ));
    }
    // A valid alignment (any integer type) is honoured: data starts on it.
    let mut g = GgufBuilder::new();
    g.alignment = 256;
    g.raw("general.alignment", vt::U64, 256u64.to_le_bytes().to_vec())
        .tensor("a", &[3], gt::F32, vec![1; 12])
        .tensor("b", &[5], gt::F32, vec![2; 20]);
    let f = GgufFile::from_bytes(g.build()).unwrap();
    assert_eq!(f.alignment(), 256);
    assert_eq!(f.data_offset() % 256, 0);
    assert_eq!(f.tensors()[1].offset, 256);
    assert_eq!(f.tensor_data(&f.tensors()[1]), &[2; 20]);
    // Offsets aligned to 32 but not 256 are refused under alignment 256.
    let mut b = header(3, 1, 1);
    put_str(&mut b, "general.alignment");
    put_u32(&mut b, vt::U32);
    put_u32(&mut b, 256);
    put_str(&mut b, "t");
    put_u32(&mut b, 1);
    put_u64(&mut b, 8);
    put_u32(&mut b, gt::F32);
    put_u64(&mut b, 32);
    pad_to(&mut b, 256, 512);
    assert!(matches!(
        parse_err(b),
        GgufError::MisalignedOffset {
            offset: 32,
            alignment: 256,
            ..
        }
    ));
}

#[test]
fn foreign_tensor_info_gives_an_empty_slice() {
    let g = GgufFile::from_bytes(valid()).unwrap();
    let mut t = g.tensors()[0].clone();
    t.offset = u64::MAX;
    assert!(g.tensor_data(&t).is_empty());
    t.offset = 0;
    t.nbytes = 1 << 40;
    assert!(g.tensor_data(&t).is_empty());
}

#[test]
fn open_reports_io_errors_and_empty_files() {
    let err = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/model.gguf"));
    let f = tempfile::NamedTempFile::new().unwrap();
    assert!(matches!(
        GgufFile::open(f.path()).unwrap_err(),
        GgufError::Truncated { what: "magic", .. }
    ));
}
