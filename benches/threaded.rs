//! The fixed cost of one parallel region of `vtc_kernels::Threaded`: a matrix-vector
//! product on a 16x64 f32 matrix (tile rows 4, the converter's default: 4 tiles, one
//! part each, and the arithmetic is ~100 ns), on the plain backend, on `Threaded` with
//! 1 thread and with 2 threads. `x2 - x1` is the fork/join cost of one product; a
//! decode token pays it once per group of products (see `vtc_model::forward`).
//!
//! Between products the calling thread spins for `gap` (0, 20 or 200 us) as a forward
//! pass does its unthreaded ops (norms, attention): past the pool's spin time (30 us)
//! the idle worker has gone to sleep and must be woken, which a back-to-back loop never
//! measures. The gap is in every variant, so it cancels in `x2 - x1`.
//!
//! One backend: `VTC_BACKEND` if set, else the fastest this CPU runs (the pool's cost
//! does not depend on the kernel).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use tvl_format::DType;
use vtc_kernels::{Backend, Threaded};

use common::Weights;

/// Rows x cols of the product: little enough that its arithmetic is negligible.
const ROWS: usize = 16;
const COLS: usize = 64;
/// Rows per tile (the converter's default for float matrices).
const TILE_ROWS: usize = 4;

/// Calling-thread work between two products.
const GAPS_US: &[u64] = &[0, 20, 200];

/// Spin (not sleep: the thread must stay on its core) for `d`.
fn spin(d: Duration) {
    if d.is_zero() {
        return;
    }
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn bench_threaded(c: &mut Criterion) {
    let inner = vtc_kernels::select(None).unwrap_or_else(|e| panic!("VTC_BACKEND: {e}"));
    let weights = Weights::random(ROWS, COLS, TILE_ROWS, DType::F32, 7);
    let m = weights.matrix();
    let x = common::Rng(8).vec(COLS);
    let t1 = Threaded::new(inner, 1).expect("1-thread pool");
    let t2 = Threaded::new(inner, 2).expect("2-thread pool");
    let variants: [(&str, &dyn Backend); 3] = [("plain", &inner), ("x1", &t1), ("x2", &t2)];

    let mut group = c.benchmark_group(format!("threaded/{}", inner.name()));
    for &gap_us in GAPS_US {
        let gap = Duration::from_micros(gap_us);
        for &(name, be) in &variants {
            let id = BenchmarkId::new(format!("matvec-{ROWS}x{COLS}-gap{gap_us}us"), name);
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut y = vec![0.0f32; ROWS];
                    let t = Instant::now();
                    for _ in 0..iters {
                        be.matvec(black_box(&m), black_box(&x), black_box(&mut y));
                        spin(gap);
                    }
                    t.elapsed()
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion_quick();
    targets = bench_threaded
}
criterion_main!(benches);
