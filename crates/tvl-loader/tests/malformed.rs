//! A catalogue of malformed files: each gives its specific error, never a panic.
//! Every file is a valid one (written by `TvlWriter`) with a few bytes patched.

mod common;

use common::{header, patch_header, patch_record, record, valid};
use tvl_format::{DType, Layout, TvlWriter};
use tvl_loader::{LoadError, TvlFile};

/// Open `bytes` both from memory and from a real file; both must fail identically.
fn err(bytes: &[u8]) -> LoadError {
    let from_bytes = TvlFile::from_bytes(bytes).expect_err("from_bytes accepted a bad file");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    let from_file = TvlFile::open(f.path()).expect_err("open accepted a bad file");
    assert_eq!(format!("{from_bytes:?}"), format!("{from_file:?}"));
    // Every message renders.
    assert!(!from_bytes.to_string().is_empty());
    from_bytes
}

fn patched(f: impl FnOnce(&mut Vec<u8>)) -> LoadError {
    let mut b = valid();
    f(&mut b);
    err(&b)
}

#[test]
fn the_base_file_is_valid() {
    let b = valid();
    let file = TvlFile::from_bytes(&b).unwrap();
    assert_eq!(file.len(), 4);
    assert_eq!(file.file_len(), b.len() as u64);
    assert_eq!(header(&b).file_len, 3200);
    assert_eq!(file.tensor("a").unwrap().as_f32().unwrap()[14], 14.0);
    common::touch_all(&file);
}

#[test]
fn empty_file() {
    let e = err(&[]);
    assert!(
        matches!(
            e,
            LoadError::Truncated {
                expected: 256,
                actual: 0
            }
        ),
        "{e:?}"
    );
}

#[test]
fn truncated_inside_header() {
    let b = valid();
    let e = err(&b[..100]);
    assert!(
        matches!(
            e,
            LoadError::Truncated {
                expected: 256,
                actual: 100
            }
        ),
        "{e:?}"
    );
}

#[test]
fn truncated_inside_config() {
    let b = valid();
    let e = err(&b[..200]);
    // The header is readable, so the error knows the full length.
    assert!(
        matches!(
            e,
            LoadError::Truncated {
                expected: 3200,
                actual: 200
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("3000 bytes missing"), "{e}");
}

#[test]
fn truncated_inside_table() {
    let b = valid();
    let e = err(&b[..300]);
    assert!(
        matches!(
            e,
            LoadError::Truncated {
                expected: 3200,
                actual: 300
            }
        ),
        "{e:?}"
    );
}

#[test]
fn truncated_inside_data() {
    let b = valid();
    let e = err(&b[..b.len() - 50]);
    assert!(
        matches!(
            e,
            LoadError::Truncated {
                expected: 3200,
                actual: 3150
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("50 bytes missing"), "{e}");
}

#[test]
fn trailing_bytes() {
    let e = patched(|b| b.extend_from_slice(&[0; 128]));
    assert!(
        matches!(
            e,
            LoadError::FileLenMismatch {
                header: 3200,
                actual: 3328
            }
        ),
        "{e:?}"
    );
}

#[test]
fn bad_magic() {
    let e = patched(|b| b[0] = b'X');
    assert!(
        matches!(e, LoadError::BadMagic { found } if &found == b"XTC-TVL\0"),
        "{e:?}"
    );
}

#[test]
fn bad_version() {
    let e = patched(|b| patch_header(b, |h| h.version = 2));
    assert!(
        matches!(
            e,
            LoadError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        ),
        "{e:?}"
    );
}

#[test]
fn big_endian_file() {
    let e = patched(|b| patch_header(b, |h| h.byte_order = h.byte_order.swap_bytes()));
    assert!(
        matches!(e, LoadError::ByteOrder { found: 0x0403_0201 }),
        "{e:?}"
    );
}

#[test]
fn wrong_alignment_field() {
    let e = patched(|b| patch_header(b, |h| h.alignment = 64));
    assert!(matches!(e, LoadError::BadAlignment { found: 64 }), "{e:?}");
}

#[test]
fn wrong_table_offset() {
    let e = patched(|b| patch_header(b, |h| h.table_offset = 384));
    assert!(
        matches!(e, LoadError::BadTableOffset { found: 384 }),
        "{e:?}"
    );
}

#[test]
fn huge_tensor_count_errors_before_allocating() {
    // (tests/alloc.rs checks the "before allocating" part with a counting allocator.)
    let e = patched(|b| patch_header(b, |h| h.tensor_count = u32::MAX));
    let want_end = 256 + u64::from(u32::MAX) * 128;
    assert!(
        matches!(e, LoadError::TableTooLarge { tensor_count: u32::MAX, table_end, file_len: 3200 } if table_end == want_end),
        "{e:?}"
    );
}

#[test]
fn tensor_count_one_too_many() {
    // The table still fits, but the data section no longer starts where it says.
    let e = patched(|b| patch_header(b, |h| h.tensor_count += 1));
    assert!(
        matches!(
            e,
            LoadError::BadDataOffset {
                expected: 896,
                found: 768
            }
        ),
        "{e:?}"
    );
}

#[test]
fn wrong_data_offset() {
    let e = patched(|b| patch_header(b, |h| h.data_offset += 128));
    assert!(
        matches!(
            e,
            LoadError::BadDataOffset {
                expected: 768,
                found: 896
            }
        ),
        "{e:?}"
    );
}

#[test]
fn wrong_data_len() {
    let e = patched(|b| patch_header(b, |h| h.data_len -= 128));
    assert!(
        matches!(
            e,
            LoadError::BadDataLen {
                data_offset: 768,
                ..
            }
        ),
        "{e:?}"
    );
    let e = patched(|b| patch_header(b, |h| h.data_len = u64::MAX));
    assert!(
        matches!(
            e,
            LoadError::BadDataLen {
                data_len: u64::MAX,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn unknown_dtype() {
    // Dtype ids past Q6_K (11) are unknown to this reader and refused.
    let e = patched(|b| patch_record(b, 2, |r| r.dtype = 12));
    assert!(
        matches!(&e, LoadError::UnknownDType { index: 2, name, dtype: 12 } if name == "t"),
        "{e:?}"
    );
    // A known block dtype in the plain layout is refused too.
    let e = patched(|b| patch_record(b, 2, |r| r.dtype = 4));
    assert!(
        matches!(
            &e,
            LoadError::BadLayout {
                index: 2,
                dtype: DType::Q8_0,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn unknown_layout() {
    let e = patched(|b| patch_record(b, 0, |r| r.layout = 4));
    assert!(
        matches!(&e, LoadError::UnknownLayout { index: 0, name, layout: 4 } if name == "a"),
        "{e:?}"
    );
    // The retired first block layout is named, so users know to convert again.
    let e = patched(|b| patch_record(b, 0, |r| r.layout = 2));
    assert!(
        matches!(&e, LoadError::RetiredLayout { index: 0, name } if name == "a"),
        "{e:?}"
    );
    assert!(e.to_string().contains("vtc convert"), "{e}");
    // The block-tiled layout with a float dtype is refused.
    let e = patched(|b| patch_record(b, 0, |r| r.layout = Layout::BlockTiled as u32));
    assert!(
        matches!(
            &e,
            LoadError::BadLayout {
                index: 0,
                layout: Layout::BlockTiled,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn ndim_zero_and_five() {
    for ndim in [0, 5, u32::MAX] {
        let e = patched(|b| patch_record(b, 2, |r| r.ndim = ndim));
        assert!(
            matches!(&e, LoadError::BadRank { index: 2, ndim: n, .. } if *n == ndim),
            "{e:?}"
        );
    }
}

#[test]
fn unused_shape_entries_must_be_zero() {
    let e = patched(|b| patch_record(b, 2, |r| r.shape[3] = 1));
    assert!(
        matches!(
            e,
            LoadError::BadShape {
                index: 2,
                ndim: 1,
                shape: [10, 0, 0, 1],
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn layout_constraints() {
    // Plain with tile_rows.
    let e = patched(|b| patch_record(b, 0, |r| r.tile_rows = 4));
    assert!(
        matches!(
            e,
            LoadError::BadLayout {
                index: 0,
                layout: Layout::Plain,
                tile_rows: 4,
                ..
            }
        ),
        "{e:?}"
    );
    // Row-tiled with tile_rows 0.
    let e = patched(|b| patch_record(b, 1, |r| r.tile_rows = 0));
    assert!(
        matches!(
            e,
            LoadError::BadLayout {
                index: 1,
                layout: Layout::RowTiled,
                tile_rows: 0,
                ..
            }
        ),
        "{e:?}"
    );
    // Row-tiled bytes.
    let e = patched(|b| patch_record(b, 1, |r| r.dtype = DType::U8 as u32));
    assert!(
        matches!(
            e,
            LoadError::BadLayout {
                index: 1,
                dtype: DType::U8,
                ..
            }
        ),
        "{e:?}"
    );
    // Row-tiled vector.
    let e = patched(|b| {
        patch_record(b, 1, |r| {
            r.ndim = 1;
            r.shape[1] = 0;
        })
    });
    assert!(
        matches!(
            e,
            LoadError::BadLayout {
                index: 1,
                ndim: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn shape_product_overflow() {
    let e = patched(|b| {
        patch_record(b, 2, |r| {
            r.ndim = 4;
            r.shape = [u32::MAX; 4];
        })
    });
    assert!(
        matches!(&e, LoadError::ShapeOverflow { index: 2, name, shape } if name == "t" && shape.len() == 4),
        "{e:?}"
    );
    // Row-tiled: the padded size overflows.
    let e = patched(|b| patch_record(b, 1, |r| r.shape = [u32::MAX, u32::MAX, 0, 0]));
    assert!(
        matches!(e, LoadError::ShapeOverflow { index: 1, .. }),
        "{e:?}"
    );
    // Row-tiled with no rows: nbytes is 0, but one tile would not be addressable.
    let e = patched(|b| {
        patch_record(b, 1, |r| {
            r.shape = [0, u32::MAX, 0, 0];
            r.tile_rows = u32::MAX;
            r.nbytes = 0;
        })
    });
    assert!(
        matches!(e, LoadError::ShapeOverflow { index: 1, .. }),
        "{e:?}"
    );
}

#[test]
fn nbytes_mismatch() {
    let e = patched(|b| patch_record(b, 0, |r| r.nbytes = 64));
    assert!(
        matches!(
            e,
            LoadError::NbytesMismatch {
                index: 0,
                expected: 60,
                found: 64,
                ..
            }
        ),
        "{e:?}"
    );
    // A bigger shape than the bytes written.
    let e = patched(|b| patch_record(b, 1, |r| r.shape[0] = 9));
    assert!(
        matches!(
            e,
            LoadError::NbytesMismatch {
                index: 1,
                expected: 3072,
                found: 2048,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn offset_past_the_end() {
    let e = patched(|b| patch_record(b, 3, |r| r.offset = 3200 + 128));
    assert!(
        matches!(&e, LoadError::TensorOutOfBounds { index: 3, name, offset: 3328, nbytes: 14, file_len: 3200 } if name == "e"),
        "{e:?}"
    );
    // Ends one byte past the end.
    let e = patched(|b| {
        patch_record(b, 3, |r| {
            r.offset = 3200 - 128;
            r.shape[0] = 65;
            r.nbytes = 130;
        })
    });
    assert!(
        matches!(e, LoadError::TensorOutOfBounds { index: 3, .. }),
        "{e:?}"
    );
    // offset + nbytes overflows u64.
    let e = patched(|b| patch_record(b, 3, |r| r.offset = u64::MAX - 127));
    assert!(
        matches!(e, LoadError::TensorOutOfBounds { index: 3, .. }),
        "{e:?}"
    );
}

#[test]
fn misaligned_offset() {
    let e = patched(|b| patch_record(b, 2, |r| r.offset += 4));
    assert!(
        matches!(
            e,
            LoadError::MisalignedOffset {
                index: 2,
                offset: 2948,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn offset_before_data() {
    let e = patched(|b| patch_record(b, 0, |r| r.offset = 640));
    assert!(
        matches!(
            e,
            LoadError::OffsetBeforeData {
                index: 0,
                offset: 640,
                data_offset: 768,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn overlapping_tensors() {
    // `w` (2048 bytes at 896) and `t` moved into it.
    let e = patched(|b| patch_record(b, 2, |r| r.offset = 896 + 1024));
    assert!(
        matches!(&e, LoadError::Overlap { index: 2, name, offset: 1920, prev_end: 2944 } if name == "t"),
        "{e:?}"
    );
    // Same offset as a non-empty predecessor.
    let e = patched(|b| patch_record(b, 1, |r| r.offset = 768));
    assert!(
        matches!(
            e,
            LoadError::Overlap {
                index: 1,
                prev_end: 828,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn out_of_order_offsets() {
    let e = patched(|b| {
        let (r1, r2) = (record(b, 1), record(b, 2));
        patch_record(b, 1, |r| *r = r2);
        patch_record(b, 2, |r| *r = r1);
    });
    assert!(
        matches!(&e, LoadError::OutOfOrder { index: 2, name, offset: 896, prev_offset: 2944 } if name == "w"),
        "{e:?}"
    );
}

#[test]
fn duplicate_names() {
    let e = patched(|b| patch_record(b, 3, |r| r.name[0] = b'a'));
    assert!(
        matches!(&e, LoadError::DuplicateName { index: 3, name, first: 0 } if name == "a"),
        "{e:?}"
    );
}

#[test]
fn bad_names() {
    let e = patched(|b| patch_record(b, 1, |r| r.name[0] = 0xff));
    assert!(
        matches!(e, LoadError::NameNotUtf8 { index: 1, .. }),
        "{e:?}"
    );
    let e = patched(|b| patch_record(b, 1, |r| r.name[0] = 0));
    assert!(matches!(e, LoadError::EmptyName { index: 1 }), "{e:?}");
    let e = patched(|b| patch_record(b, 1, |r| r.name = [b'x'; 64]));
    assert!(
        matches!(e, LoadError::NameNotTerminated { index: 1 }),
        "{e:?}"
    );
    let e = patched(|b| patch_record(b, 1, |r| r.name[10] = b'x'));
    assert!(
        matches!(&e, LoadError::NamePadding { index: 1, name } if name == "w"),
        "{e:?}"
    );
}

#[test]
fn view_errors() {
    let file = TvlFile::from_bytes(&valid()).unwrap();
    let e = file.tensor("nope").unwrap_err();
    assert!(
        matches!(&e, LoadError::MissingTensor { name } if name == "nope"),
        "{e:?}"
    );
    assert!(file.get("nope").is_none());
    let t = file.tensor("t").unwrap();
    let e = t.as_f32().unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::WrongDType {
                expected: DType::F32,
                found: DType::U8,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(
        file.tensor("e").unwrap().as_u32(),
        Err(LoadError::WrongDType { .. })
    ));
    assert!(matches!(
        file.tensor("a").unwrap().as_u8(),
        Err(LoadError::WrongDType { .. })
    ));
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = TvlFile::open(dir.path().join("absent.tvl")).unwrap_err();
    assert!(
        matches!(&e, LoadError::Io { path, .. } if path.ends_with("absent.tvl")),
        "{e:?}"
    );
}

#[test]
fn a_file_without_tensors_is_valid() {
    let mut b = Vec::new();
    TvlWriter::new(Default::default()).write_to(&mut b).unwrap();
    assert_eq!(b.len(), 256);
    let file = TvlFile::from_bytes(&b).unwrap();
    assert!(file.is_empty());
    assert_eq!(file.tensors().count(), 0);
}

#[test]
fn messages_name_the_tensor_and_the_numbers() {
    let e = patched(|b| patch_record(b, 0, |r| r.nbytes = 64));
    let msg = e.to_string();
    assert!(msg.contains("#0") && msg.contains("\"a\""), "{msg}");
    assert!(msg.contains("64") && msg.contains("60"), "{msg}");
}

/// A valid file with one 9 x 64 Q4_1 matrix (tiles of 8) after a plain tensor.
fn quant_file() -> Vec<u8> {
    let mut w = TvlWriter::new(tvl_format::ModelConfig::default());
    w.add_plain("n", &[3], tvl_format::TensorData::F32(vec![1.0; 3]))
        .unwrap();
    let x: Vec<f32> = (0..9 * 64).map(|i| i as f32 * 0.01).collect();
    let q = tvl_format::QuantData::quantize(DType::Q4_1, &x, 9, 64).unwrap();
    w.add_quant("q", 9, 64, 8, q).unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

#[test]
fn block_tiled_records() {
    let good = quant_file();
    let f = TvlFile::from_bytes(&good).unwrap();
    let v = f.tensor("q").unwrap().as_quant().unwrap();
    assert_eq!((v.geometry.rows, v.geometry.cols), (9, 64));
    assert!(matches!(
        f.tensor("n").unwrap().as_quant(),
        Err(LoadError::NotQuantized {
            dtype: DType::F32,
            ..
        })
    ));
    let open = |edit: &dyn Fn(&mut tvl_format::TensorRecord)| {
        let mut b = good.clone();
        patch_record(&mut b, 1, edit);
        TvlFile::from_bytes(&b).map(|_| ()).unwrap_err()
    };
    // Columns that are not whole blocks.
    let e = open(&|r| r.shape[1] = 63);
    assert!(
        matches!(
            e,
            LoadError::PartialBlock {
                index: 1,
                cols: 63,
                ..
            }
        ),
        "{e:?}"
    );
    // Zero tile rows.
    let e = open(&|r| r.tile_rows = 0);
    assert!(matches!(e, LoadError::BadLayout { index: 1, .. }), "{e:?}");
    // Three dimensions.
    let e = open(&|r| {
        r.ndim = 3;
        r.shape[2] = 1;
    });
    assert!(matches!(e, LoadError::BadLayout { index: 1, .. }), "{e:?}");
    // Another block type changes the size: nbytes no longer matches.
    let e = open(&|r| r.dtype = DType::Q8_0 as u32);
    assert!(
        matches!(e, LoadError::NbytesMismatch { index: 1, .. }),
        "{e:?}"
    );
    // Different tiling, same rows: the scale region moves, so nbytes changes too.
    let e = open(&|r| r.tile_rows = 1);
    assert!(
        matches!(e, LoadError::NbytesMismatch { index: 1, .. }),
        "{e:?}"
    );
    // A row count whose blocks overflow.
    let e = open(&|r| r.shape[0] = u32::MAX);
    assert!(
        matches!(
            e,
            LoadError::NbytesMismatch { .. } | LoadError::ShapeOverflow { .. }
        ),
        "{e:?}"
    );
}
