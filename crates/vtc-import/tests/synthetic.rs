//! The synthetic GQA model of the golden data converts, its config matches the
//! reference, and the TVL read back through tvl-loader holds exactly the GGUF weights
//! in the documented orientation.

mod common;

use tvl_format::{DType, Layout, NONE_ID, PreTokenizer, RopeStyle, TokenizerKind, names};
use tvl_loader::TvlFile;
use vtc_import::{ConvertOptions, GgufFile, OutDType, convert_file};

fn gguf_path() -> std::path::PathBuf {
    let p = common::golden_dir().join("synthetic-gqa/model.f32.gguf");
    assert!(p.is_file(), "golden model {} is missing", p.display());
    p
}

fn reference_config() -> serde_json::Value {
    let p = common::golden_dir().join("synthetic-gqa/logits.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", p.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("logits.json is JSON");
    v["config"].clone()
}

/// GGUF f32 element `i` of a tensor.
fn gguf_f32(g: &GgufFile, name: &str) -> Vec<f32> {
    let t = g.tensor(name).unwrap();
    g.tensor_data(t)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn synthetic_model_converts_with_reference_config_and_exact_weights() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synthetic.tvl");
    let mut calls = Vec::new();
    let report = convert_file(
        &gguf_path(),
        &out,
        &ConvertOptions::default(),
        &mut |done, total| calls.push((done, total)),
    )
    .unwrap();
    assert_eq!(calls.first(), Some(&(0, 21)));
    assert_eq!(calls.last(), Some(&(21, 21)));
    assert!(report.rounded_tensors.is_empty());
    assert_eq!(report.bytes_written, std::fs::metadata(&out).unwrap().len());
    // Only the final file is left: no temporary.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("synthetic.tvl")]);

    let cfg = reference_config();
    let tvl = TvlFile::open(&out).unwrap();
    let c = *tvl.config();
    assert_eq!(c, report.config);
    let u = |k: &str| cfg[k].as_u64().unwrap_or_else(|| panic!("config.{k}")) as u32;
    assert_eq!(c.arch, 1);
    assert_eq!(c.dim, u("dim"));
    assert_eq!(c.hidden_dim, u("hidden_dim"));
    assert_eq!(c.n_layers, u("n_layers"));
    assert_eq!(c.n_heads, u("n_heads"));
    assert_eq!(c.n_kv_heads, u("n_kv_heads"));
    assert_eq!(c.head_dim, u("head_dim"));
    assert_eq!(c.head_dim, u("rope_dim"));
    assert_eq!(c.vocab_size, u("vocab_size"));
    assert_eq!(c.context_len, u("max_seq_len"));
    assert_eq!(c.rope_theta, cfg["rope_theta"].as_f64().unwrap() as f32);
    assert_eq!(c.rms_eps, cfg["norm_eps"].as_f64().unwrap() as f32);
    assert_eq!(cfg["rope_mode"], "norm");
    assert_eq!(c.rope_style, RopeStyle::Interleaved as u32);
    assert_eq!(
        c.tied_output, 0,
        "the synthetic model has a separate output matrix"
    );
    assert_eq!(c.tokenizer, TokenizerKind::ByteLevelBpe as u32);
    assert_eq!(c.pretokenizer, PreTokenizer::Gpt2 as u32);
    assert_eq!((c.bos_id, c.eos_id, c.eot_id), (1, 2, 2));
    assert_eq!(c.unk_id, NONE_ID);
    assert_eq!(c.add_bos, 0);

    let g = GgufFile::open(gguf_path()).unwrap();
    assert_eq!(
        tvl.len(),
        g.tensors().len() + 5,
        "weights + tokens, offsets, types, merges, merge offsets"
    );

    // Every weight: same values, matrices transposed from GGUF [in, out] to [out, in].
    for t in g.tensors() {
        let v = tvl.tensor(&t.name).unwrap();
        let src = gguf_f32(&g, &t.name);
        let data = v.as_f32().unwrap();
        match t.dims[..] {
            [cols, rows] => {
                assert_eq!(v.layout(), Layout::RowTiled, "{}", t.name);
                assert_eq!(v.dtype(), DType::F32);
                assert_eq!(v.tile_rows(), 4);
                assert_eq!(v.shape(), [rows as usize, cols as usize], "{}", t.name);
                let geo = v.geometry().unwrap();
                for r in 0..rows as usize {
                    // Row r of the TVL matrix = the r-th dims[0]-long run of the GGUF data.
                    let run = &src[r * cols as usize..(r + 1) * cols as usize];
                    for (c, &x) in run.iter().enumerate() {
                        assert_eq!(
                            data[geo.index(r, c)].to_bits(),
                            x.to_bits(),
                            "{}[{r},{c}]",
                            t.name
                        );
                    }
                }
            }
            [n] => {
                assert_eq!(v.layout(), Layout::Plain);
                assert_eq!(v.shape(), [n as usize]);
                assert_eq!(data, &src[..], "{}", t.name);
            }
            _ => panic!("unexpected dims {:?}", t.dims),
        }
    }

    // A spot check with explicit numbers: attn_k is [32 out, 64 in] in TVL.
    let k = tvl.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(k.shape(), [32, 64]);
    let src = gguf_f32(&g, "blk.0.attn_k.weight");
    let geo = k.geometry().unwrap();
    assert_eq!(k.as_f32().unwrap()[geo.index(5, 7)], src[5 * 64 + 7]);
    // ffn_down is [64, 176]: 176 columns pad to 192 (6 chunks of 32).
    let down = tvl.tensor("blk.1.ffn_down.weight").unwrap();
    assert_eq!(down.shape(), [64, 176]);
    assert_eq!(down.geometry().unwrap().padded_cols(), 192);

    // Tokenizer tables: strings byte-exact, offsets, types, merges.
    let tokens = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
    let tokens = tokens.as_strings().unwrap();
    let bytes = tvl.tensor(names::TOKENS).unwrap().as_u8().unwrap();
    let offs = tvl.tensor(names::TOKEN_OFFSETS).unwrap().as_u32().unwrap();
    assert_eq!(offs.len(), 257);
    for (i, s) in tokens.iter().enumerate() {
        assert_eq!(&bytes[offs[i] as usize..offs[i + 1] as usize], s.as_bytes());
    }
    assert_eq!(
        tvl.tensor(names::TOKEN_TYPES).unwrap().as_u8().unwrap(),
        &[1u8; 256][..]
    );
    let merges = tvl.tensor(names::MERGES).unwrap().as_u8().unwrap();
    assert_eq!(merges, "Ġ Ġ".as_bytes());
    assert_eq!(
        tvl.tensor(names::MERGE_OFFSETS).unwrap().as_u32().unwrap(),
        &[0, merges.len() as u32]
    );
    assert!(tvl.get(names::SCORES).is_none());
    assert!(tvl.get(names::CHAT_TEMPLATE).is_none());
}

#[test]
fn synthetic_model_f16_is_exact_to_f16_rounding() {
    let g = GgufFile::open(gguf_path()).unwrap();
    let opts = ConvertOptions {
        dtype: OutDType::F16,
        tile_rows: 2,
        ..ConvertOptions::default()
    };
    let conv = vtc_import::convert(&g, &opts, &mut |_, _| {}).unwrap();
    // F32 sources do not fit f16 exactly: every matrix is reported as rounded.
    assert_eq!(conv.rounded_tensors.len(), 2 + 7 * 2);
    let mut bytes = Vec::new();
    conv.writer.write_to(&mut bytes).unwrap();
    let tvl = TvlFile::from_bytes(&bytes).unwrap();
    let v = tvl.tensor("blk.0.ffn_gate.weight").unwrap();
    assert_eq!(
        (v.dtype(), v.tile_rows(), v.shape()),
        (DType::F16, 2, &[176usize, 64][..])
    );
    let geo = v.geometry().unwrap();
    let src = gguf_f32(&g, "blk.0.ffn_gate.weight");
    let data = v.as_f16().unwrap();
    for r in 0..176 {
        for c in 0..64 {
            assert_eq!(data[geo.index(r, c)], half::f16::from_f32(src[r * 64 + c]));
        }
    }
    // Norms stay f32.
    assert_eq!(
        tvl.tensor("output_norm.weight").unwrap().dtype(),
        DType::F32
    );
}
