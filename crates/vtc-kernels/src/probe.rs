//! The sequential-read bandwidth probe that kernels and whole decode runs are read
//! against: the fastest one core can stream memory, so "fraction of the bandwidth
//! limit" means something. Used by `vtc bench` and the criterion benches.

use std::hint::black_box;
use std::time::Instant;

/// Bytes [`read_bandwidth`] streams: far larger than any cache.
pub const PROBE_BYTES: usize = 256 << 20;

/// Sum `buf` with 32 independent accumulators: enough parallel adds that the loads,
/// not the add latency, are the limit. Compiled for the widest vector unit this CPU
/// has (AVX2 where present), so the probe is never slower than a kernel.
pub fn read_sum(buf: &[f32]) -> f32 {
    crate::arch::read_sum(buf)
}

/// The portable body of [`read_sum`], inlined into each ISA's entry point.
#[inline(always)]
pub(crate) fn read_sum_body(buf: &[f32]) -> f32 {
    const ACC: usize = 32;
    let mut acc = [0.0f32; ACC];
    let mut chunks = buf.chunks_exact(ACC);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// A probe buffer of `bytes` bytes with every page written (a fresh zeroed allocation
/// could map every page to the shared zero page and read faster than memory).
pub fn probe_buffer(bytes: usize) -> Vec<f32> {
    (0..bytes / 4).map(|i| (i % 1021) as f32 * 1e-3).collect()
}

/// Sequential read bandwidth of one core in bytes per second: the best of 10 passes of
/// [`read_sum`] over [`PROBE_BYTES`] (memory, not cache).
pub fn read_bandwidth() -> f64 {
    read_bandwidth_threads(1)
}

/// [`read_bandwidth_over`] of [`PROBE_BYTES`]: what `threads`-thread kernels can stream
/// from memory (DRAM) at most.
pub fn read_bandwidth_threads(threads: usize) -> f64 {
    read_bandwidth_over(threads, PROBE_BYTES)
}

/// Aggregate sequential read bandwidth in bytes per second of `threads` threads
/// reading disjoint buffers of `bytes / threads` each at the same time (total bytes
/// over the slowest thread's time), best of 10 passes after one warm-up pass.
///
/// With `bytes` the size of a model's weights per token this is the rate a decode
/// loop that reads those weights again and again can reach: where the last-level cache
/// holds them (about 100 MB on the Intel machines this was tuned on), the warm-up pass
/// leaves them there and the figure is the cache's bandwidth, not DRAM's.
pub fn read_bandwidth_over(threads: usize, bytes: usize) -> f64 {
    let threads = threads.max(1);
    // At least one 64-byte line per thread, in whole floats.
    let per = (bytes / threads).max(64) / 4 * 4;
    let bufs: Vec<Vec<f32>> = (0..threads).map(|_| probe_buffer(per)).collect();
    let pass = || {
        let start = std::sync::Barrier::new(threads);
        let secs = std::thread::scope(|s| {
            let handles: Vec<_> = bufs
                .iter()
                .map(|b| {
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        let t = Instant::now();
                        black_box(read_sum(black_box(b)));
                        t.elapsed().as_secs_f64()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread panicked"))
                .fold(0.0, f64::max)
        });
        (per * threads) as f64 / secs
    };
    pass();
    (0..10).map(|_| pass()).fold(0.0, f64::max)
}
