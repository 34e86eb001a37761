//! The paper's workload shape end to end: a llama2.c legacy checkpoint of stories110M's
//! shape (dim 768, hidden 2048, 12 layers, 12 heads, vocab 32000, context 1024, shared
//! classifier) with seeded random weights, plus llama2.c's real `tokenizer.bin`,
//! converted to TVL, loaded and run. The weights must arrive unchanged and the prompt
//! must tokenize as `run.c` does.

mod common;

use std::path::Path;

use tvl_loader::TvlFile;
use vtc_import::convert::{ConvertOptions, OutDType};
use vtc_model::{GenerateOptions, Model, Session};

const DIM: usize = 768;
const HIDDEN: usize = 2048;
const LAYERS: usize = 12;
const HEADS: usize = 12;
const VOCAB: usize = 32000;
const SEQ: usize = 1024;

/// SplitMix64 mapped to uniform floats in [-scale, scale).
struct Rng(u64);

impl Rng {
    fn next(&mut self, scale: f32) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
}

/// Write the checkpoint in run.c's order; returns (offset in floats, len) of a few
/// tensors to check later: token_embedding, layer 11's w2 (ffn_down), rms_final.
fn write_checkpoint(path: &Path) -> Vec<(String, usize, usize)> {
    let mut floats: Vec<f32> = Vec::with_capacity(110_000_000);
    let mut rng = Rng(110);
    let mut marks = Vec::new();
    let mut group = |floats: &mut Vec<f32>, name: &str, count: usize, n: usize, scale: f32| {
        for l in 0..count {
            let at = floats.len();
            floats.extend((0..n).map(|_| rng.next(scale)));
            marks.push((format!("{name}#{l}"), at, n));
        }
    };
    let m = 0.06; // ~ sqrt(3 / dim): activations keep their scale
    group(&mut floats, "token_embd", 1, VOCAB * DIM, 1.0);
    group(&mut floats, "attn_norm", LAYERS, DIM, 0.0);
    group(&mut floats, "attn_q", LAYERS, DIM * DIM, m);
    group(&mut floats, "attn_k", LAYERS, DIM * DIM, m);
    group(&mut floats, "attn_v", LAYERS, DIM * DIM, m);
    group(&mut floats, "attn_output", LAYERS, DIM * DIM, m);
    group(&mut floats, "ffn_norm", LAYERS, DIM, 0.0);
    group(&mut floats, "ffn_gate", LAYERS, HIDDEN * DIM, m);
    group(&mut floats, "ffn_down", LAYERS, DIM * HIDDEN, 0.04);
    group(&mut floats, "ffn_up", LAYERS, HIDDEN * DIM, m);
    group(&mut floats, "output_norm", 1, DIM, 0.0);
    group(&mut floats, "freq_cis", 2, SEQ * (DIM / HEADS) / 2, 1.0);
    // Norm gains of 1 (the generator gave zeros for scale 0).
    for (name, at, n) in &marks {
        if name.contains("norm") {
            floats[*at..at + n].fill(1.0);
        }
    }
    let mut bytes = Vec::with_capacity(28 + floats.len() * 4);
    for v in [DIM, HIDDEN, LAYERS, HEADS, HEADS, VOCAB, SEQ] {
        bytes.extend_from_slice(&(v as i32).to_le_bytes());
    }
    for x in &floats {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, &bytes).unwrap();
    marks
        .into_iter()
        .filter(|(n, _, _)| ["token_embd#0", "ffn_down#11", "output_norm#0"].contains(&n.as_str()))
        .map(|(n, at, len)| (n, 7 + at, len)) // in 4-byte units from the file start
        .collect()
}

#[test]
fn stories110m_shaped_checkpoint_converts_and_runs() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bin = dir.path().join("stories110m.bin");
    let marks = write_checkpoint(&bin);
    let raw = std::fs::read(&bin).unwrap();
    let tokenizer = vtc_testdata::shared_data("llama2c-tokenizer.bin");
    let tvl = dir.path().join("stories110m.tvl");
    let t = std::time::Instant::now();
    let (kind, report) = vtc_import::source::convert_any(
        &bin,
        &tvl,
        Some(&tokenizer),
        &ConvertOptions {
            dtype: OutDType::F32,
            ..ConvertOptions::default()
        },
        &mut |_, _| {},
    )
    .unwrap();
    eprintln!(
        "converted {} MB in {:.2} s",
        report.bytes_written / 1_000_000,
        t.elapsed().as_secs_f64()
    );
    assert_eq!(kind, vtc_import::source::InputKind::Llama2c);
    assert!(report.rounded_tensors.is_empty());
    std::fs::remove_file(&bin).unwrap();

    let file = TvlFile::open(&tvl).unwrap();
    let model = Model::load(&file).unwrap();
    let c = model.config();
    assert_eq!(
        (
            c.dim,
            c.hidden_dim,
            c.n_layers,
            c.n_heads,
            c.vocab_size,
            c.context_len
        ),
        (DIM, HIDDEN, LAYERS, HEADS, VOCAB, SEQ)
    );
    assert!(
        c.tied_output,
        "a positive vocab_size means a shared classifier"
    );

    // Lossless: the TVL tensors hold the checkpoint's floats.
    let src = |at: usize, i: usize| {
        let b = &raw[(at + i) * 4..(at + i) * 4 + 4];
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    };
    for (name, at, len) in &marks {
        let (tname, rows, cols) = match name.as_str() {
            "token_embd#0" => ("token_embd.weight", VOCAB, DIM),
            "ffn_down#11" => ("blk.11.ffn_down.weight", DIM, HIDDEN),
            _ => ("output_norm.weight", 1, DIM),
        };
        assert_eq!(rows * cols, *len);
        let v = file.tensor(tname).unwrap();
        let data = v.as_f32().unwrap();
        for (r, col) in [(0, 0), (rows - 1, cols - 1), (rows / 3, cols / 2 + 1)] {
            let want = src(*at, r * cols + col);
            let got = match v.geometry() {
                Some(g) => data[g.index(r, col)],
                None => data[col],
            };
            assert_eq!(got.to_bits(), want.to_bits(), "{tname}[{r}, {col}]");
        }
    }

    // The tokenizer is llama2.c's, and the model runs.
    let tok = model.tokenizer();
    let prompt = tok.encode_prompt("Once upon a time").unwrap();
    assert_eq!(prompt, [1, 9038, 2501, 263, 931]);
    assert!(tok.is_stop(1) && tok.is_stop(2));
    let mut session = Session::new(&model, vtc_kernels::select(None).unwrap(), 32).unwrap();
    let opts = GenerateOptions {
        max_tokens: 8,
        stop_at_eos: false,
        ..GenerateOptions::default()
    };
    let t = std::time::Instant::now();
    let ids: Vec<u32> = session
        .generate(&prompt, opts)
        .unwrap()
        .map(|g| g.unwrap().id)
        .collect();
    eprintln!(
        "13 forward passes in {:.2} s; ids {ids:?}",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(ids.len(), 8);
    assert!(ids.iter().all(|&id| (id as usize) < VOCAB));
    assert!(session.logits().iter().all(|x| x.is_finite()));
}
