//! Sequential-read bandwidth of one core: the ceiling for a GEMV that streams its
//! weights once. Sums buffers sized for L1, L2, the last-level cache and DRAM (see
//! `common::read_sum`); `Throughput::Bytes` is the buffer size, so criterion reports the
//! read bandwidth directly. `matvec` runs the DRAM-sized probe in its own group too, so
//! its shapes can be read as a fraction of it from one run.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};

/// Buffer sizes: L1 (32 KiB), L2 (256 KiB), L3 (4 MiB) resident, and 256 MiB from DRAM.
const SIZES: &[usize] = &[32 << 10, 256 << 10, 4 << 20, common::PROBE_BYTES];

fn bench_bandwidth(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory");
    for &bytes in SIZES {
        let buf = common::probe_buffer(bytes);
        common::bench_read(&mut group, buf.get());
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_bandwidth
}
criterion_main!(benches);
