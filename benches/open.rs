//! Open-and-validate time of a TVL file (`TvlFile::open`: open, mmap, check header,
//! config and table, build the name index, unmap).
//!
//! Three synthetic files, written once into a temporary directory:
//! - `smollm2-135m`: SmolLM2-135M's tensor table (30 layers, dim 576, hidden 1536,
//!   9 heads / 3 kv heads of 64, vocab 49152, tied output), f32 row-tiled: ~540 MB;
//! - `smollm2-3layer`: the same model 10x smaller (3 layers, vocab 4915): ~54 MB, and
//!   a 10x smaller table;
//! - `smollm2-table-tiny-data` / `smollm2-3layer-tiny-data`: the same two tables with
//!   tiny tensors (dim 64): the same tensor counts and ~1% of the bytes.
//!
//! Throughput is in tensors, so criterion reports the time per tensor. Open time should
//! follow the tensor count (each file vs its tiny-data twin: about equal) and not the
//! data bytes.

use std::hint::black_box;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tvl_format::{ModelConfig, TensorData, TvlWriter, names};
use tvl_loader::TvlFile;

struct Shape {
    name: &'static str,
    layers: usize,
    dim: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
}

const SHAPES: [Shape; 4] = [
    Shape {
        name: "smollm2-135m",
        layers: 30,
        dim: 576,
        hidden: 1536,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        vocab: 49152,
    },
    Shape {
        name: "smollm2-3layer",
        layers: 3,
        dim: 576,
        hidden: 1536,
        heads: 9,
        kv_heads: 3,
        head_dim: 64,
        vocab: 4915,
    },
    Shape {
        name: "smollm2-table-tiny-data",
        layers: 30,
        dim: 64,
        hidden: 128,
        heads: 2,
        kv_heads: 1,
        head_dim: 32,
        vocab: 512,
    },
    Shape {
        name: "smollm2-3layer-tiny-data",
        layers: 3,
        dim: 64,
        hidden: 128,
        heads: 2,
        kv_heads: 1,
        head_dim: 32,
        vocab: 512,
    },
];

/// Write a Llama-shaped file with zero weights (f32, row-tiled by 4) and a small
/// tokenizer table; returns its path.
fn write_model(dir: &Path, s: &Shape) -> PathBuf {
    let cfg = ModelConfig {
        arch: 1,
        dim: s.dim as u32,
        hidden_dim: s.hidden as u32,
        n_layers: s.layers as u32,
        n_heads: s.heads as u32,
        n_kv_heads: s.kv_heads as u32,
        head_dim: s.head_dim as u32,
        vocab_size: s.vocab as u32,
        context_len: 8192,
        rope_theta: 100_000.0,
        rms_eps: 1e-5,
        tied_output: 1,
        ..ModelConfig::default()
    };
    let mut w = TvlWriter::new(cfg);
    // Zeroed allocations are lazily committed, so holding them all is cheap.
    let tiled = |w: &mut TvlWriter, name: &str, rows: usize, cols: usize| {
        w.add_tiled(name, rows, cols, 4, TensorData::F32(vec![0.0; rows * cols]))
            .unwrap();
    };
    let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    tiled(&mut w, "token_embd.weight", s.vocab, s.dim);
    for l in 0..s.layers {
        let n = |t: &str| format!("blk.{l}.{t}.weight");
        w.add_plain(&n("attn_norm"), &[s.dim], TensorData::F32(vec![1.0; s.dim]))
            .unwrap();
        tiled(&mut w, &n("attn_q"), q, s.dim);
        tiled(&mut w, &n("attn_k"), kv, s.dim);
        tiled(&mut w, &n("attn_v"), kv, s.dim);
        tiled(&mut w, &n("attn_output"), s.dim, q);
        w.add_plain(&n("ffn_norm"), &[s.dim], TensorData::F32(vec![1.0; s.dim]))
            .unwrap();
        tiled(&mut w, &n("ffn_gate"), s.hidden, s.dim);
        tiled(&mut w, &n("ffn_up"), s.hidden, s.dim);
        tiled(&mut w, &n("ffn_down"), s.dim, s.hidden);
    }
    w.add_plain(
        "output_norm.weight",
        &[s.dim],
        TensorData::F32(vec![1.0; s.dim]),
    )
    .unwrap();
    // A token table of 6-byte tokens (the content does not matter here).
    w.add_plain(
        names::TOKENS,
        &[s.vocab * 6],
        TensorData::U8(vec![b'a'; s.vocab * 6]),
    )
    .unwrap();
    let offsets = (0..=s.vocab as u32).map(|i| i * 6).collect();
    w.add_plain(
        names::TOKEN_OFFSETS,
        &[s.vocab + 1],
        TensorData::U32(offsets),
    )
    .unwrap();

    let path = dir.join(format!("{}.tvl", s.name));
    let file = std::fs::File::create(&path).unwrap();
    // No fsync: the bench reads the file back from the page cache.
    w.write_to(BufWriter::with_capacity(1 << 20, file)).unwrap();
    path
}

fn open(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&Shape, PathBuf, TvlFile)> = SHAPES
        .iter()
        .map(|s| {
            let path = write_model(dir.path(), s);
            let file = TvlFile::open(&path).unwrap();
            (s, path, file)
        })
        .collect();
    for (s, _, f) in &files {
        eprintln!(
            "{:<24} {:>4} tensors, {:>11} bytes ({:.1} MB)",
            s.name,
            f.len(),
            f.file_len(),
            f.file_len() as f64 / 1e6
        );
    }

    let mut g = c.benchmark_group("open");
    g.measurement_time(Duration::from_secs(4));
    for (s, path, f) in &files {
        g.throughput(Throughput::Elements(f.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(s.name), path, |b, p| {
            b.iter(|| black_box(TvlFile::open(black_box(p)).unwrap()).len())
        });
    }
    g.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
