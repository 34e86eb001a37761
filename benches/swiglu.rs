//! `swiglu` and `geglu` (Gemma's tanh-GELU gate) per backend over FFN hidden widths
//! (SmolLM2 1536, stories110M 2048, Gemma 3 270M 2048, and a larger 8192). Throughput is the bytes touched: `gate` read and written, `up` read
//! (12 bytes per element). Each iteration restores `gate` first (a `copy_from_slice`,
//! a small fraction of the `exp`-bound kernel) so the data does not drift.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: &[usize] = &[1536, 2048, 8192];

type Glu = fn(&dyn vtc_kernels::Backend, &mut [f32], &[f32]);

fn bench_swiglu(c: &mut Criterion) {
    let kernels: [(&str, Glu); 2] = [
        ("swiglu", |b, g, u| b.swiglu(g, u)),
        ("geglu", |b, g, u| b.geglu(g, u)),
    ];
    for (name, glu) in kernels {
        bench_glu(c, name, glu);
    }
}

fn bench_glu(c: &mut Criterion, name: &str, glu: Glu) {
    let mut group = c.benchmark_group(name);
    for backend in common::backends() {
        for &n in SIZES {
            let mut rng = common::Rng(n as u64);
            let src: Vec<f32> = rng.vec(n).iter().map(|v| v * 8.0).collect();
            let up = rng.vec(n);
            let mut gate = src.clone();
            group.throughput(Throughput::Bytes((3 * n * 4) as u64));
            group.bench_function(BenchmarkId::new(backend.name(), n), |b| {
                b.iter(|| {
                    gate.copy_from_slice(&src);
                    glu(backend, black_box(&mut gate), black_box(&up))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_quick();
    targets = bench_swiglu
}
criterion_main!(benches);
