//! `matmul` (the float GEMM of prefill: `Y = X Wᵀ` for a batch of inputs over the TVL
//! row-tiled layout) per backend, weight dtype and SmolLM2-135M shape, for a batch of
//! 64 inputs (`vtc_model::BATCH`) and a ragged one of 33. Throughput is the
//! multiply-adds per call (`rows * cols * inputs`): criterion's `elem/s` column is
//! multiply-adds per second, half the FLOP/s.
//!
//! The matrix is one copy, multiplied again and again (the largest, 3.5 MB at f32,
//! stays in the last-level cache): a batched product reads each weight once per batch,
//! so the arithmetic, not the memory, is what this measures.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tvl_format::DType;

use common::Weights;

/// Rows per tile of the benched matrices (the converter's default).
const TILE_ROWS: usize = 4;

/// Rows x cols: SmolLM2-135M's q/o (576x576), gate/up (1536x576) and down (576x1536).
const SHAPES: &[(usize, usize)] = &[(576, 576), (1536, 576), (576, 1536)];

/// Inputs per call: a full batch and a ragged one.
const BATCHES: &[usize] = &[64, 33];

fn bench_matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    let backends = common::backends();
    for dtype in [DType::F32, DType::F16] {
        for (seed, &(rows, cols)) in SHAPES.iter().enumerate() {
            let w = Weights::random(rows, cols, TILE_ROWS, dtype, seed as u64);
            let m = w.matrix();
            for &n in BATCHES {
                let x = common::Rng(99).vec(n * cols);
                let mut y = vec![0.0f32; n * rows];
                group.throughput(Throughput::Elements((rows * cols * n) as u64));
                for &backend in &backends {
                    let id = format!("{}/{}/n{n}", backend.name(), dtype.name());
                    group.bench_function(BenchmarkId::new(id, format!("{rows}x{cols}")), |b| {
                        b.iter(|| backend.matmul(black_box(&m), black_box(&x), black_box(&mut y)))
                    });
                }
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_matmul
}
criterion_main!(benches);
