//! Attention for one query head over a KV cache of 64..1024 positions, head dim 64,
//! per backend: `scores` (`attn_scores`), `values` (`attn_values`) and `head` (scores,
//! softmax, values: one head's whole attention). The cache rows have stride 192 (three
//! KV heads of 64 interleaved per position, as in SmolLM2-135M), so each position's
//! head is a 256-byte run inside a 768-byte row. Throughput is the cache bytes the
//! call reads: 256 per position for `scores` and `values`, 512 for `head`.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const HEAD_DIM: usize = 64;
const STRIDE: usize = 3 * HEAD_DIM;
const POSITIONS: &[usize] = &[64, 128, 256, 512, 1024];

fn bench_attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    for backend in common::backends() {
        for &n in POSITIONS {
            let mut rng = common::Rng(n as u64);
            let q = rng.vec(HEAD_DIM);
            let keys = rng.vec(n * STRIDE);
            let values = rng.vec(n * STRIDE);
            let mut att = vec![0.0f32; n];
            let mut out = vec![0.0f32; HEAD_DIM];
            let head_bytes = (n * HEAD_DIM * 4) as u64;
            let name = |what: &str| format!("{}/{what}", backend.name());

            group.throughput(Throughput::Bytes(head_bytes));
            group.bench_function(BenchmarkId::new(name("scores"), n), |b| {
                b.iter(|| {
                    backend.attn_scores(black_box(&q), black_box(&keys), STRIDE, scale, &mut att)
                })
            });
            backend.softmax(&mut att);
            group.bench_function(BenchmarkId::new(name("values"), n), |b| {
                b.iter(|| {
                    backend.attn_values(black_box(&att), black_box(&values), STRIDE, &mut out)
                })
            });
            group.throughput(Throughput::Bytes(2 * head_bytes));
            group.bench_function(BenchmarkId::new(name("head"), n), |b| {
                b.iter(|| {
                    backend.attn_scores(black_box(&q), black_box(&keys), STRIDE, scale, &mut att);
                    backend.softmax(&mut att);
                    backend.attn_values(&att, black_box(&values), STRIDE, &mut out);
                    black_box(&out);
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_quick();
    targets = bench_attention
}
criterion_main!(benches);
