//! Lossless import: for every supported source type, the f32 TVL copy, and the `keep`
//! copy (quantized blocks copied into the block-tiled layout, f16 kept), hold exactly
//! the floats ggml's block formulas give (computed here independently of the crate).

mod common;

use common::{TINY, gt, llama_tensors, ref_element, tiny_llama};
use tvl_format::{DType, Layout};
use tvl_loader::TvlFile;
use vtc_import::{ConvertOptions, GgufFile, OutDType, convert, dequantize};

fn to_tvl(bytes: Vec<u8>, opts: &ConvertOptions) -> (TvlFile, Vec<String>) {
    let g = GgufFile::from_bytes(bytes).unwrap();
    let conv = convert(&g, opts, &mut |_, _| {}).unwrap();
    let mut out = Vec::new();
    conv.writer.write_to(&mut out).unwrap();
    (TvlFile::from_bytes(&out).unwrap(), conv.rounded_tensors)
}

/// The value of logical element (r, c) of a TVL matrix of any dtype.
fn tvl_element(v: &tvl_loader::TensorView<'_>, r: usize, c: usize) -> f32 {
    match v.dtype() {
        DType::F32 => v.as_f32().unwrap()[v.geometry().unwrap().index(r, c)],
        DType::F16 => v.as_f16().unwrap()[v.geometry().unwrap().index(r, c)].to_f32(),
        _ => {
            let q = v.as_quant().unwrap();
            let mut block = [0.0f32; 32];
            q.geometry
                .dequantize_at(q.quants, q.scales, r, c / 32, &mut block);
            block[c % 32]
        }
    }
}

/// `keep` stores each matrix in its source type, and every value is ggml's.
fn check_keep(ty: u32, name: &str, want_dtype: DType) {
    for seed in [1, 2] {
        let b = tiny_llama(ty, seed, true);
        let opts = ConvertOptions {
            dtype: OutDType::Keep,
            ..ConvertOptions::default()
        };
        let (tvl, rounded) = to_tvl(b.build(), &opts);
        assert!(
            rounded.is_empty(),
            "{name}: keep must be exact: {rounded:?}"
        );
        for (tname, dims) in llama_tensors(&TINY, true) {
            let src = b.tensor_data(&tname).unwrap();
            let v = tvl.tensor(&tname).unwrap();
            if let [cols, rows] = dims[..] {
                let (rows, cols) = (rows as usize, cols as usize);
                assert_eq!(v.dtype(), want_dtype, "{name} {tname}");
                for r in 0..rows {
                    for c in 0..cols {
                        let want = ref_element(ty, src, r * cols + c);
                        let got = tvl_element(&v, r, c);
                        assert_eq!(got.to_bits(), want.to_bits(), "{name} {tname}[{r},{c}]");
                    }
                }
            }
        }
    }
}

#[test]
fn keep_copies_every_source_type_exactly() {
    check_keep(gt::Q8_0, "Q8_0", DType::Q8_0);
    check_keep(gt::Q4_0, "Q4_0", DType::Q4_0);
    check_keep(gt::Q4_1, "Q4_1", DType::Q4_1);
    check_keep(gt::F16, "F16", DType::F16);
    check_keep(gt::BF16, "BF16", DType::F32);
    check_keep(gt::F32, "F32", DType::F32);
}

#[test]
fn quantized_outputs_follow_the_rules() {
    // Q4_1 source to q4_0: requantized (reported as rounded), the untied output head
    // is q8_0, and every matrix is block-tiled with 8-row tiles.
    let b = tiny_llama(gt::Q4_1, 5, true);
    let opts = ConvertOptions {
        dtype: OutDType::Q4_0,
        ..ConvertOptions::default()
    };
    let (tvl, rounded) = to_tvl(b.build(), &opts);
    assert!(rounded.contains(&"blk.0.ffn_up.weight".to_string()));
    let out = tvl.tensor("output.weight").unwrap();
    assert_eq!(
        (out.dtype(), out.layout()),
        (DType::Q8_0, Layout::BlockTiled)
    );
    let up = tvl.tensor("blk.0.ffn_up.weight").unwrap();
    assert_eq!((up.dtype(), up.tile_rows()), (DType::Q4_0, 8));
    // The same source to q4_1 copies every Q4_1 block: nothing rounds but the head.
    let opts = ConvertOptions {
        dtype: OutDType::Q4_1,
        ..ConvertOptions::default()
    };
    let (_, rounded) = to_tvl(b.build(), &opts);
    assert_eq!(rounded, vec!["output.weight".to_string()]);
    // Values of a requantized matrix are within one step of the source.
    let g = GgufFile::from_bytes(b.build()).unwrap();
    let t = g.tensor("blk.0.ffn_up.weight").unwrap();
    let mut flat = vec![0.0; t.n_elements() as usize];
    dequantize(t.ggml_type, g.tensor_data(t), &mut flat).unwrap();
    let cols = up.shape()[1];
    for (i, &x) in flat.iter().enumerate() {
        let got = tvl_element(&up, i / cols, i % cols);
        let amax = flat[i / 32 * 32..i / 32 * 32 + 32]
            .iter()
            .fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(
            (got - x).abs() <= amax / 8.0 * 1.01 + 1e-6,
            "{i}: {got} vs {x}"
        );
    }
}

fn check_type(ty: u32, name: &str) {
    for seed in [1, 2, 3] {
        let b = tiny_llama(ty, seed, true);
        let bytes = b.build();
        let (tvl, rounded) = to_tvl(bytes.clone(), &ConvertOptions::default());
        assert!(rounded.is_empty(), "{name}: f32 output must be exact");
        let g = GgufFile::from_bytes(bytes).unwrap();
        for (tname, dims) in llama_tensors(&TINY, true) {
            let src = b.tensor_data(&tname).unwrap();
            let v = tvl.tensor(&tname).unwrap();
            let data = v.as_f32().unwrap();
            if let [cols, rows] = dims[..] {
                let (rows, cols) = (rows as usize, cols as usize);
                assert_eq!(v.shape(), [rows, cols]);
                assert_eq!(v.layout(), Layout::RowTiled);
                let geo = v.geometry().unwrap();
                for r in 0..rows {
                    for c in 0..cols {
                        let want = ref_element(ty, src, r * cols + c);
                        let got = data[geo.index(r, c)];
                        assert_eq!(got.to_bits(), want.to_bits(), "{name} {tname}[{r},{c}]");
                    }
                }
                // The crate's own dequantizer agrees with the reference too.
                let t = g.tensor(&tname).unwrap();
                let mut flat = vec![0.0; rows * cols];
                dequantize(t.ggml_type, g.tensor_data(t), &mut flat).unwrap();
                for (j, x) in flat.iter().enumerate() {
                    assert_eq!(x.to_bits(), ref_element(ty, src, j).to_bits());
                }
            } else {
                for (j, x) in data.iter().enumerate() {
                    assert_eq!(x.to_bits(), ref_element(gt::F32, src, j).to_bits());
                }
            }
        }
    }
}

#[test]
fn f16_source_is_lossless() {
    check_type(gt::F16, "F16");
}

#[test]
fn q8_0_source_is_lossless() {
    check_type(gt::Q8_0, "Q8_0");
}

#[test]
fn q4_0_source_is_lossless() {
    check_type(gt::Q4_0, "Q4_0");
}

#[test]
fn q4_1_source_is_lossless() {
    check_type(gt::Q4_1, "Q4_1");
}

#[test]
fn bf16_and_f32_sources_are_lossless() {
    check_type(gt::BF16, "BF16");
    check_type(gt::F32, "F32");
}

#[test]
fn f16_output_keeps_f16_sources_bit_exact() {
    let b = tiny_llama(gt::F16, 7, false);
    let opts = ConvertOptions {
        dtype: OutDType::F16,
        tile_rows: 3,
        ..ConvertOptions::default()
    };
    let (tvl, rounded) = to_tvl(b.build(), &opts);
    assert!(
        rounded.is_empty(),
        "F16 -> f16 is a copy, nothing rounds: {rounded:?}"
    );
    let v = tvl.tensor("blk.1.ffn_down.weight").unwrap();
    assert_eq!(
        (v.dtype(), v.tile_rows(), v.shape()),
        (DType::F16, 3, &[64usize, 96][..])
    );
    let src = b.tensor_data("blk.1.ffn_down.weight").unwrap();
    let geo = v.geometry().unwrap();
    let data = v.as_f16().unwrap();
    for r in 0..64 {
        for c in 0..96 {
            let j = 2 * (r * 96 + c);
            assert_eq!(
                data[geo.index(r, c)].to_bits(),
                u16::from_le_bytes([src[j], src[j + 1]])
            );
        }
    }
    // A quantized source rounds to f16 and is reported.
    let (_, rounded) = to_tvl(tiny_llama(gt::Q4_1, 7, false).build(), &opts);
    assert!(
        rounded.contains(&"blk.0.attn_q.weight".to_string()),
        "{rounded:?}"
    );
    assert!(!rounded.iter().any(|n| n.ends_with("norm.weight")));
}
