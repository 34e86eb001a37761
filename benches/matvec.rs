//! `matvec` (GEMV over the TVL row-tiled layout) and `matvec_q8` (integer GEMV over
//! the block-tiled layout, input quantized once beforehand) per backend, weight dtype
//! and model shape, plus `quantize_q8` of the input. Throughput is the weight bytes streamed per call (padding included), so the
//! GB/s column reads directly against the sequential-read bandwidth probe that runs in
//! the same group (`matvec/bandwidth/read-256MiB`), measured in the same run.
//!
//! Each shape runs two ways:
//! - `cached`: one matrix, multiplied again and again; it stays in cache when it fits
//!   (this measures the kernel's arithmetic throughput);
//! - `streamed`: a rotation of copies totalling at least [`STREAM_BYTES`], so every call
//!   reads its weights from DRAM as a forward pass does (the whole model never fits in
//!   cache). Matrices larger than [`CACHE_BYTES`] only run this way, from one copy.
//!
//! Shapes (rows = outputs x cols = inputs): SmolLM2-135M (dim 576, hidden 1536, vocab
//! 49152) and stories110M (dim 768, hidden 2048, vocab 32000).

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tvl_format::DType;
use vtc_kernels::Q8Vec;

use common::Weights;

/// Rows per tile of the benched matrices.
const TILE_ROWS: usize = 4;

/// Bytes a `streamed` rotation covers: many times any last-level cache here.
const STREAM_BYTES: usize = 128 << 20;

/// Largest matrix also run `cached`: twice the 8 MiB L3 of the test machines; beyond
/// it a single copy already streams from DRAM.
const CACHE_BYTES: usize = 16 << 20;

const SHAPES: &[(usize, usize)] = &[
    (576, 576),
    (1536, 576),
    (576, 1536),
    (49152, 576),
    (2048, 768),
    (768, 2048),
    (32000, 768),
];

fn bench_matvec(c: &mut Criterion) {
    let mut group = c.benchmark_group("matvec");
    let probe = common::probe_buffer(common::PROBE_BYTES);
    common::bench_read(&mut group, probe.get());
    drop(probe);

    let backends = common::backends();
    for dtype in [
        DType::F32,
        DType::F16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ] {
        for (seed, &(rows, cols)) in SHAPES.iter().enumerate() {
            if dtype.is_quantized() && !cols.is_multiple_of(dtype.block_elems()) {
                continue; // (a K type needs rows of whole 256-element blocks)
            }
            // The weights are built once per shape and shared by all backends.
            let first = Weights::random(rows, cols, TILE_ROWS, dtype, seed as u64);
            let nbytes = first.matrix().nbytes();
            let copies = if nbytes > CACHE_BYTES {
                1
            } else {
                STREAM_BYTES.div_ceil(nbytes)
            };
            let mut all = vec![first];
            all.extend((1..copies).map(|k| {
                let seed = (seed * 1000 + k) as u64;
                Weights::random(rows, cols, TILE_ROWS, dtype, seed)
            }));
            let mats: Vec<_> = all.iter().map(Weights::matrix).collect();
            let x = common::Rng(99).vec(cols);
            let mut xq = Q8Vec::new(cols);
            let mut y = vec![0.0f32; rows];
            let shape = format!("{rows}x{cols}");
            group.throughput(Throughput::Bytes(nbytes as u64));

            for &backend in &backends {
                let name = |how: &str| format!("{}/{}/{how}", backend.name(), dtype.name());
                backend.quantize_q8(&x, &mut xq);
                let mv = |m, y: &mut [f32]| {
                    if dtype.is_quantized() {
                        backend.matvec_q8(black_box(m), black_box(&xq), black_box(y))
                    } else {
                        backend.matvec(black_box(m), black_box(&x), black_box(y))
                    }
                };
                if copies > 1 {
                    let m = &mats[0];
                    group.bench_function(BenchmarkId::new(name("cached"), &shape), |b| {
                        b.iter(|| mv(m, &mut y))
                    });
                }
                let mut next = 0;
                group.bench_function(BenchmarkId::new(name("streamed"), &shape), |b| {
                    b.iter(|| {
                        let m = &mats[next];
                        next = (next + 1) % mats.len();
                        mv(m, &mut y)
                    })
                });
            }
        }
    }
    group.finish();

    // Quantizing a product's input, once per input vector (shared by q, k and v).
    let mut group = c.benchmark_group("quantize_q8");
    for n in [576usize, 1536, 2048] {
        let x = common::Rng(7).vec(n);
        let mut xq = Q8Vec::new(n);
        group.throughput(Throughput::Bytes((n * 4) as u64));
        for &backend in &backends {
            group.bench_function(BenchmarkId::new(backend.name(), n), |b| {
                b.iter(|| backend.quantize_q8(black_box(&x), black_box(&mut xq)))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_matvec
}
criterion_main!(benches);
