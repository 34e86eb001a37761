//! `softmax` per backend over attention rows (64..1024 positions) and vocabulary-sized
//! logits (49152). Throughput is the slice's bytes (transformed in place).
//! Each iteration restores the input first (a `copy_from_slice`, a small fraction of
//! the `exp`-bound kernel), so every call sees the same data.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: &[usize] = &[64, 256, 1024, 49152];

fn bench_softmax(c: &mut Criterion) {
    let mut group = c.benchmark_group("softmax");
    for backend in common::backends() {
        for &n in SIZES {
            let src: Vec<f32> = common::Rng(n as u64)
                .vec(n)
                .iter()
                .map(|v| v * 10.0)
                .collect();
            let mut x = src.clone();
            group.throughput(Throughput::Bytes((n * 4) as u64));
            group.bench_function(BenchmarkId::new(backend.name(), n), |b| {
                b.iter(|| {
                    x.copy_from_slice(&src);
                    backend.softmax(black_box(&mut x))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_quick();
    targets = bench_softmax
}
criterion_main!(benches);
