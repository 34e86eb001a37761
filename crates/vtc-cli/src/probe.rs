//! The memory-bandwidth probe that `vtc bench` reads every result against.

use std::hint::black_box;
use std::time::Instant;

/// Bytes read by the probe: far larger than any cache.
const PROBE_BYTES: usize = 256 << 20;

/// Sum `buf` with 32 independent accumulators: enough parallel adds that the loads,
/// not the add latency, are the limit.
fn read_sum(buf: &[f32]) -> f32 {
    let mut acc = [0.0f32; 32];
    let mut chunks = buf.chunks_exact(32);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// Sequential read bandwidth of one core, in bytes per second: the best of 5 passes
/// over a 256 MiB buffer whose pages are all written first (a fresh zeroed allocation
/// could map every page to the shared zero page and read faster than memory).
pub fn read_bandwidth() -> f64 {
    let buf: Vec<f32> = (0..PROBE_BYTES / 4).map(|i| (i & 7) as f32).collect();
    black_box(read_sum(&buf));
    (0..5)
        .map(|_| {
            let t = Instant::now();
            black_box(read_sum(black_box(&buf)));
            PROBE_BYTES as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}
