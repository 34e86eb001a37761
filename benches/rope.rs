//! `rope` per backend and pairing style over one token's query or key vector: SmolLM2
//! (9 query / 3 key heads of 64) and stories110M (12 heads of 64). Throughput is the
//! bytes of `x` (rotated in place). Rotating twice by the same angle is still a
//! rotation, so the data stays bounded across iterations.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vtc_kernels::RopeStyle;

const HEAD_DIM: usize = 64;
/// (heads, what) per benchmark.
const SHAPES: &[(usize, &str)] = &[(3, "k3x64"), (9, "q9x64"), (12, "q12x64")];

fn bench_rope(c: &mut Criterion) {
    let mut group = c.benchmark_group("rope");
    let (cos, sin): (Vec<f32>, Vec<f32>) = (0..HEAD_DIM / 2)
        .map(|i| {
            let theta = 321.0 * 10000f64.powf(-2.0 * i as f64 / HEAD_DIM as f64);
            (theta.cos() as f32, theta.sin() as f32)
        })
        .unzip();
    for backend in common::backends() {
        for style in [RopeStyle::Interleaved, RopeStyle::HalfSplit] {
            for &(heads, what) in SHAPES {
                let mut x = common::Rng(heads as u64).vec(heads * HEAD_DIM);
                group.throughput(Throughput::Bytes((x.len() * 4) as u64));
                let id = BenchmarkId::new(format!("{}/{style:?}", backend.name()), what);
                group.bench_function(id, |b| {
                    b.iter(|| backend.rope(black_box(&mut x), HEAD_DIM, &cos, &sin, style))
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_quick();
    targets = bench_rope
}
criterion_main!(benches);
