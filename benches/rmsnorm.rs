//! `rmsnorm` per backend over model widths (576, 768), a hidden width (2048) and a
//! vocabulary-sized 49152. Throughput is the bytes touched per call: `x` and `weight`
//! read, `out` written (12 bytes per element).

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: &[usize] = &[576, 768, 2048, 49152];

fn bench_rmsnorm(c: &mut Criterion) {
    let mut group = c.benchmark_group("rmsnorm");
    for backend in common::backends() {
        for &n in SIZES {
            let mut rng = common::Rng(n as u64);
            let (x, w) = (rng.vec(n), rng.vec(n));
            let mut out = vec![0.0f32; n];
            group.throughput(Throughput::Bytes((3 * n * 4) as u64));
            group.bench_function(BenchmarkId::new(backend.name(), n), |b| {
                b.iter(|| backend.rmsnorm(black_box(&mut out), black_box(&x), &w, 1e-5))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_quick();
    targets = bench_rmsnorm
}
criterion_main!(benches);
