//! The numbers in README.md (the normative spec) checked against the code: record
//! field offsets, enum ids, constants and the writer's layout rules.

use std::mem::offset_of;

use half::f16;
use proptest::prelude::*;
use tvl_format::{
    ALIGN, BYTE_ORDER_MARK, CONFIG_OFFSET, DType, Header, Layout, MAGIC, ModelConfig, NAME_LEN,
    NONE_ID, PreTokenizer, RopeStyle, TABLE_OFFSET, TensorData, TensorRecord, TileGeometry,
    TokenizerKind, TvlWriter, VERSION, names, tensor_nbytes,
};

#[test]
fn header_field_offsets() {
    assert_eq!(size_of::<Header>(), 128);
    assert_eq!(offset_of!(Header, magic), 0);
    assert_eq!(offset_of!(Header, version), 8);
    assert_eq!(offset_of!(Header, byte_order), 12);
    assert_eq!(offset_of!(Header, alignment), 16);
    assert_eq!(offset_of!(Header, tensor_count), 20);
    assert_eq!(offset_of!(Header, table_offset), 24);
    assert_eq!(offset_of!(Header, data_offset), 32);
    assert_eq!(offset_of!(Header, data_len), 40);
    assert_eq!(offset_of!(Header, file_len), 48);
    assert_eq!(offset_of!(Header, reserved), 56);
}

#[test]
fn config_field_offsets() {
    assert_eq!(size_of::<ModelConfig>(), 128);
    let fields = [
        offset_of!(ModelConfig, arch),
        offset_of!(ModelConfig, dim),
        offset_of!(ModelConfig, hidden_dim),
        offset_of!(ModelConfig, n_layers),
        offset_of!(ModelConfig, n_heads),
        offset_of!(ModelConfig, n_kv_heads),
        offset_of!(ModelConfig, head_dim),
        offset_of!(ModelConfig, vocab_size),
        offset_of!(ModelConfig, context_len),
        offset_of!(ModelConfig, rope_theta),
        offset_of!(ModelConfig, rms_eps),
        offset_of!(ModelConfig, rope_style),
        offset_of!(ModelConfig, tied_output),
        offset_of!(ModelConfig, bos_id),
        offset_of!(ModelConfig, eos_id),
        offset_of!(ModelConfig, eot_id),
        offset_of!(ModelConfig, add_bos),
        offset_of!(ModelConfig, tokenizer),
        offset_of!(ModelConfig, pretokenizer),
        offset_of!(ModelConfig, unk_id),
        offset_of!(ModelConfig, tokenizer_flags),
        offset_of!(ModelConfig, block_flags),
        offset_of!(ModelConfig, embed_scale),
        offset_of!(ModelConfig, attn_scale),
        offset_of!(ModelConfig, sliding_window),
        offset_of!(ModelConfig, swa_pattern),
        offset_of!(ModelConfig, rope_theta_local),
        offset_of!(ModelConfig, reserved),
    ];
    let want: Vec<usize> = (0..28).map(|i| i * 4).collect();
    assert_eq!(fields.as_slice(), want.as_slice());
}

#[test]
fn record_field_offsets() {
    assert_eq!(size_of::<TensorRecord>(), 128);
    assert_eq!(offset_of!(TensorRecord, name), 0);
    assert_eq!(offset_of!(TensorRecord, dtype), 64);
    assert_eq!(offset_of!(TensorRecord, layout), 68);
    assert_eq!(offset_of!(TensorRecord, tile_rows), 72);
    assert_eq!(offset_of!(TensorRecord, ndim), 76);
    assert_eq!(offset_of!(TensorRecord, shape), 80);
    assert_eq!(offset_of!(TensorRecord, offset), 96);
    assert_eq!(offset_of!(TensorRecord, nbytes), 104);
    assert_eq!(offset_of!(TensorRecord, checksum), 112);
    assert_eq!(offset_of!(TensorRecord, reserved), 120);
}

#[test]
fn constants_and_ids() {
    assert_eq!(&MAGIC, b"VTC-TVL\0");
    assert_eq!((VERSION, ALIGN, BYTE_ORDER_MARK), (1, 128, 0x0102_0304));
    assert_eq!(
        (CONFIG_OFFSET, TABLE_OFFSET, NAME_LEN, NONE_ID),
        (128, 256, 64, u32::MAX)
    );
    let dtypes = [
        DType::F32,
        DType::F16,
        DType::U8,
        DType::U32,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];
    assert_eq!(dtypes, DType::ALL);
    for (id, d) in dtypes.into_iter().enumerate() {
        assert_eq!(d as u32, id as u32);
        assert_eq!(DType::from_u32(id as u32), Some(d));
    }
    assert_eq!(DType::from_u32(12), None, "id 12 and up are unknown");
    assert_eq!(
        dtypes.map(|d| (d.size(), d.is_float(), d.is_quantized())),
        [
            (4, true, false),
            (2, true, false),
            (1, false, false),
            (4, false, false),
            (0, false, true),
            (0, false, true),
            (0, false, true),
            (0, false, true),
            (0, false, true),
            (0, false, true),
            (0, false, true),
            (0, false, true)
        ]
    );
    // (elements, quant bytes, fields) per block: the table of section 6.
    assert_eq!(
        dtypes[4..]
            .iter()
            .map(|d| (d.block_elems(), d.block_bytes(), d.scale_fields()))
            .collect::<Vec<_>>(),
        vec![
            (32, 32, 1),
            (32, 16, 1),
            (32, 16, 2),
            (32, 20, 1),
            (32, 20, 2),
            (256, 140, 2),
            (256, 172, 2),
            (256, 208, 1)
        ]
    );
    assert_eq!(
        (DType::F32.chunk_elems(), DType::F16.chunk_elems()),
        (32, 64)
    );
    assert_eq!(
        (
            Layout::Plain as u32,
            Layout::RowTiled as u32,
            Layout::BlockTiled as u32
        ),
        (0, 1, 3)
    );
    assert_eq!(Layout::from_u32(3), Some(Layout::BlockTiled));
    // Id 2, the first block layout, is retired: refused like any unknown id.
    assert_eq!(Layout::RETIRED_BLOCK_TILED, 2);
    assert_eq!(Layout::from_u32(2), None);
    assert_eq!(Layout::from_u32(4), None);
    assert_eq!(
        (RopeStyle::Interleaved as u32, RopeStyle::HalfSplit as u32),
        (0, 1)
    );
    assert_eq!(
        (
            TokenizerKind::None as u32,
            TokenizerKind::ByteLevelBpe as u32,
            TokenizerKind::SentencePiece as u32
        ),
        (0, 1, 2)
    );
    assert_eq!(
        (
            PreTokenizer::Gpt2 as u32,
            PreTokenizer::SmolLm as u32,
            PreTokenizer::Qwen2 as u32,
            PreTokenizer::Llama3 as u32
        ),
        (0, 1, 2, 3)
    );
    for v in 0..4 {
        assert_eq!(PreTokenizer::from_u32(v).map(|p| p as u32), Some(v));
    }
    assert_eq!(PreTokenizer::from_u32(4), None);
    assert_eq!(
        [
            names::TOKENS,
            names::TOKEN_OFFSETS,
            names::SCORES,
            names::TOKEN_TYPES,
            names::MERGES,
            names::MERGE_OFFSETS,
            names::CHAT_TEMPLATE
        ],
        [
            "tokenizer.tokens",
            "tokenizer.token_offsets",
            "tokenizer.scores",
            "tokenizer.token_types",
            "tokenizer.merges",
            "tokenizer.merge_offsets",
            "tokenizer.chat_template"
        ]
    );
}

#[test]
fn the_readme_index_formula_is_tile_geometry_index() {
    for (rows, cols, r, dtype) in [
        (5, 33, 4, DType::F32),
        (7, 100, 3, DType::F16),
        (1, 1, 8, DType::F32),
    ] {
        let g = TileGeometry::new(rows, cols, r, dtype).unwrap();
        let c = 128 / dtype.size();
        let padded_cols = cols.div_ceil(c) * c;
        let tile_elems = r * padded_cols;
        assert_eq!(
            g.nbytes(),
            Some(rows.div_ceil(r) * r * padded_cols * dtype.size())
        );
        for row in 0..rows {
            for col in 0..cols {
                let spec = (row / r) * tile_elems + (col / c) * r * c + (row % r) * c + col % c;
                assert_eq!(g.index(row, col), spec);
            }
        }
    }
}

#[test]
fn plain_and_invalid_sizes() {
    assert_eq!(
        tensor_nbytes(DType::F16, Layout::Plain, &[3, 0, 5], 0),
        Some(0)
    );
    assert_eq!(
        tensor_nbytes(DType::U32, Layout::Plain, &[2, 3], 0),
        Some(24)
    );
    // Row-tiled needs a 2-D float matrix and tile_rows >= 1.
    assert_eq!(tensor_nbytes(DType::U8, Layout::RowTiled, &[4, 4], 4), None);
    assert_eq!(tensor_nbytes(DType::F32, Layout::RowTiled, &[16], 4), None);
    assert_eq!(
        tensor_nbytes(DType::F32, Layout::RowTiled, &[4, 4], 0),
        None
    );
    assert_eq!(
        tensor_nbytes(DType::U8, Layout::Plain, &[usize::MAX, 2], 0),
        None
    );
}

#[test]
fn writer_refuses_what_the_spec_forbids() {
    let mut w = TvlWriter::new(ModelConfig::default());
    let one = || TensorData::F32(vec![0.0]);
    assert!(w.add_plain("", &[1], one()).is_err());
    assert!(w.add_plain(&"x".repeat(64), &[1], one()).is_err());
    assert!(w.add_plain(&"x".repeat(63), &[1], one()).is_ok());
    assert!(w.add_plain("a\0b", &[1], one()).is_err());
    assert!(w.add_plain("v", &[1, 1, 1, 1, 1], one()).is_err());
    assert!(w.add_plain("v", &[], one()).is_err());
    assert!(w.add_tiled("u", 1, 1, 4, TensorData::U8(vec![0])).is_err());
    assert!(w.add("p", &[1], Layout::Plain, 2, one()).is_err());
    assert!(w.add_plain("v", &[2], one()).is_err(), "data size");
    assert!(w.add_plain("v", &[1], one()).is_ok());
    assert!(w.add_plain("v", &[1], one()).is_err(), "duplicate");
}

#[derive(Clone, Debug)]
enum T {
    Plain(Vec<usize>, u8),
    Tiled(usize, usize, usize, bool),
}

fn tensor() -> impl Strategy<Value = T> {
    prop_oneof![
        (proptest::collection::vec(0usize..40, 1..=3), 0u8..4).prop_map(|(s, d)| T::Plain(s, d)),
        (0usize..20, 0usize..140, 1usize..=8, any::<bool>())
            .prop_map(|(r, c, t, h)| T::Tiled(r, c, t, h)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The writer's output obeys sections 2, 3, 5 and 8: header values, aligned
    /// ascending offsets, exact nbytes, zero gaps, and the file ends aligned.
    #[test]
    fn writer_output_follows_the_layout_rules(ts in proptest::collection::vec(tensor(), 0..6)) {
        let mut w = TvlWriter::new(ModelConfig::default());
        for (i, t) in ts.iter().enumerate() {
            let name = format!("t{i}");
            match t {
                T::Plain(shape, d) => {
                    let n: usize = shape.iter().product();
                    let data = match d {
                        0 => TensorData::F32(vec![1.0; n]),
                        1 => TensorData::F16(vec![f16::ONE; n]),
                        2 => TensorData::U8(vec![1; n]),
                        _ => TensorData::U32(vec![1; n]),
                    };
                    w.add_plain(&name, shape, data).unwrap();
                }
                T::Tiled(r, c, tr, half) => {
                    let data = if *half {
                        TensorData::F16(vec![f16::ONE; r * c])
                    } else {
                        TensorData::F32(vec![1.0; r * c])
                    };
                    w.add_tiled(&name, *r, *c, *tr, data).unwrap();
                }
            }
        }
        let mut b = Vec::new();
        let len = w.write_to(&mut b).unwrap();
        prop_assert_eq!(len as usize, b.len());
        let h: Header = bytemuck::pod_read_unaligned(&b[..128]);
        let n = ts.len() as u64;
        prop_assert_eq!(h.magic, MAGIC);
        prop_assert_eq!((h.version, h.byte_order, h.alignment), (1, BYTE_ORDER_MARK, 128));
        prop_assert_eq!((h.tensor_count as u64, h.table_offset, h.data_offset), (n, 256, 256 + 128 * n));
        prop_assert_eq!(h.data_offset + h.data_len, h.file_len);
        prop_assert_eq!(h.file_len, len);
        prop_assert_eq!(len % 128, 0);
        prop_assert!(h.reserved.iter().all(|&r| r == 0));
        let mut expect = h.data_offset;
        for i in 0..ts.len() {
            let at = 256 + 128 * i;
            let rec: TensorRecord = bytemuck::pod_read_unaligned(&b[at..at + 128]);
            let dims: Vec<usize> = rec.dims().unwrap().iter().map(|&d| d as usize).collect();
            let dtype = DType::from_u32(rec.dtype).unwrap();
            let layout = Layout::from_u32(rec.layout).unwrap();
            prop_assert_eq!(rec.offset, expect);
            prop_assert_eq!(
                Some(rec.nbytes as usize),
                tensor_nbytes(dtype, layout, &dims, rec.tile_rows as usize)
            );
            prop_assert_eq!(rec.reserved, 0);
            let data = &b[rec.offset as usize..(rec.offset + rec.nbytes) as usize];
            prop_assert_eq!(rec.checksum, tvl_format::checksum(data));
            prop_assert!(rec.name[rec.name_str().unwrap().len()..].iter().all(|&c| c == 0));
            let end = (rec.offset + rec.nbytes) as usize;
            let next = end.next_multiple_of(128);
            prop_assert!(b[end..next].iter().all(|&c| c == 0), "gap after tensor {} is zero", i);
            expect = next as u64;
        }
        prop_assert_eq!(expect, h.file_len);
    }
}
