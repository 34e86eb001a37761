//! Shared pieces of the per-kernel benches: which backends to run, the criterion
//! settings, test data, and the sequential-read bandwidth probe that every kernel is
//! read against.
//!
//! Each bench file does `mod common;` and uses a different subset of this module.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use half::f16;
use tvl_format::{BlockGeometry, DType, QuantData, TileGeometry};
use vtc_kernels::{Backend, KNOWN_BACKENDS, KernelError, Matrix, QuantSlice, WeightSlice, by_name};

/// Criterion settings for the memory-bound benches (matvec, bandwidth), whose calls
/// take up to tens of milliseconds: short enough that `cargo bench` as a whole stays
/// within a few minutes on two cores. Command-line flags (`--measurement-time`,
/// `--sample-size`, ...) still override these.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

/// Settings for the small kernels (nanoseconds to microseconds per call): one second
/// already holds hundreds of thousands of calls.
pub fn criterion_quick() -> Criterion {
    criterion().measurement_time(Duration::from_secs(1))
}

/// The backends to measure: only the one named by `VTC_BACKEND` if that is set and
/// non-empty, else every backend this CPU and build can run. The backend name is part
/// of every benchmark id, so one run compares them.
pub fn backends() -> Vec<&'static dyn Backend> {
    if let Ok(name) = std::env::var("VTC_BACKEND")
        && !name.is_empty()
    {
        return vec![by_name(&name).unwrap_or_else(|e| panic!("VTC_BACKEND: {e}"))];
    }
    KNOWN_BACKENDS
        .iter()
        .filter_map(|name| match by_name(name) {
            Ok(b) => Some(b),
            Err(KernelError::Unsupported(_)) => None,
            Err(e) => panic!("KNOWN_BACKENDS lists {name:?} but by_name fails: {e}"),
        })
        .collect()
}

/// SplitMix64: cheap, reproducible bench data.
pub struct Rng(pub u64);

impl Rng {
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn signed(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    /// `n` values uniform in [-1, 1).
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.signed()).collect()
    }
}

/// `len` elements starting on a 128-byte boundary, as tensors do in a TVL file.
pub struct Aligned<T> {
    buf: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> Aligned<T> {
    /// `len` default (zero) elements.
    pub fn new(len: usize) -> Self {
        let buf = vec![T::default(); len + 128 / size_of::<T>()];
        let start = buf.as_ptr().align_offset(128);
        Self { buf, start, len }
    }

    /// The elements.
    pub fn get(&self) -> &[T] {
        &self.buf[self.start..self.start + self.len]
    }

    /// The elements, mutably.
    pub fn get_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

/// Owned tiled weights of one dtype.
enum Store {
    F32(Aligned<f32>),
    F16(Aligned<f16>),
    Quant(DType, Aligned<u8>, Aligned<f16>),
}

/// Rows per tile of the benched quantized matrices (what the converter writes).
pub const BLOCK_TILE_ROWS: usize = 8;

/// A random `rows x cols` weight matrix in the row-tiled layout (block-tiled for the
/// quantized dtypes, with [`BLOCK_TILE_ROWS`]), 128-byte aligned.
pub struct Weights {
    store: Store,
    rows: usize,
    cols: usize,
    tile_rows: usize,
}

impl Weights {
    /// Random weights in [-1, 1), zero padding, rounded to `dtype`.
    pub fn random(rows: usize, cols: usize, tile_rows: usize, dtype: DType, seed: u64) -> Self {
        if dtype.is_quantized() {
            return Self::quantized(rows, cols, dtype, seed);
        }
        let g = TileGeometry::new(rows, cols, tile_rows, dtype).expect("valid geometry");
        let total = g.total_elems().expect("no overflow");
        let mut rng = Rng(seed);
        // Visit logical elements in file order so generation streams too.
        let mut fill = |set: &mut dyn FnMut(usize, f32)| {
            for r in 0..rows {
                for c0 in (0..cols).step_by(g.chunk) {
                    let start = g.index(r, c0);
                    for k in 0..g.chunk.min(cols - c0) {
                        set(start + k, rng.signed());
                    }
                }
            }
        };
        let store = match dtype {
            DType::F32 => {
                let mut a = Aligned::<f32>::new(total);
                let s = a.get_mut();
                fill(&mut |i, v| s[i] = v);
                Store::F32(a)
            }
            DType::F16 => {
                let mut a = Aligned::<f16>::new(total);
                let s = a.get_mut();
                fill(&mut |i, v| s[i] = f16::from_f32(v));
                Store::F16(a)
            }
            other => panic!("not a float dtype: {other:?}"),
        };
        Self {
            store,
            rows,
            cols,
            tile_rows,
        }
    }

    /// Random weights in [-1, 1) quantized by llama.cpp's rules, block-tiled.
    fn quantized(rows: usize, cols: usize, dtype: DType, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let x = rng.vec(rows * cols);
        // Arbitrary blocks where no quantizer from floats exists (any bytes are valid).
        let q = QuantData::quantize(dtype, &x, rows, cols).unwrap_or_else(|| {
            let n = rows * cols / dtype.block_elems();
            QuantData {
                dtype,
                quants: (0..n * dtype.block_bytes())
                    .map(|_| rng.next_u64() as u8)
                    .collect(),
                scales: (0..n * dtype.scale_fields())
                    .map(|_| f16::from_f32(rng.signed() / 64.0))
                    .collect(),
            }
        });
        let g = BlockGeometry::new(rows, cols, BLOCK_TILE_ROWS, dtype).expect("valid geometry");
        let bytes = q.tile(&g).expect("sizes match");
        let qb = g.quant_bytes().unwrap();
        let mut quants = Aligned::<u8>::new(qb);
        quants.get_mut().copy_from_slice(&bytes[..qb]);
        let (s0, ns) = (g.scales_offset().unwrap(), g.scales_len().unwrap());
        let mut scales = Aligned::<f16>::new(ns);
        for (d, c) in scales.get_mut().iter_mut().zip(bytes[s0..].chunks_exact(2)) {
            *d = f16::from_le_bytes([c[0], c[1]]);
        }
        Self {
            store: Store::Quant(dtype, quants, scales),
            rows,
            cols,
            tile_rows: BLOCK_TILE_ROWS,
        }
    }

    /// The kernel's view.
    pub fn matrix(&self) -> Matrix<'_> {
        let data = match &self.store {
            Store::F32(a) => WeightSlice::F32(a.get()),
            Store::F16(a) => WeightSlice::F16(a.get()),
            Store::Quant(dtype, q, s) => WeightSlice::Quant(QuantSlice {
                dtype: *dtype,
                quants: q.get(),
                scales: s.get(),
            }),
        };
        Matrix::new(data, self.rows, self.cols, self.tile_rows).expect("exact size")
    }
}

#[allow(unused_imports)]
pub use vtc_kernels::probe::{PROBE_BYTES, read_sum};

/// A probe buffer of `bytes` bytes, 128-byte aligned, with every page written (a
/// zero-filled fresh allocation could map every page to one shared zero page and
/// "read" far faster than memory).
pub fn probe_buffer(bytes: usize) -> Aligned<f32> {
    let mut a = Aligned::<f32>::new(bytes / 4);
    for (i, v) in a.get_mut().iter_mut().enumerate() {
        *v = (i % 1021) as f32 * 1e-3;
    }
    a
}

/// Human-readable size: `256MiB`, `32KiB`.
pub fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{}MiB", bytes >> 20)
    } else {
        format!("{}KiB", bytes >> 10)
    }
}

/// Add the sequential-read bandwidth probe over `buf` to `group`, as
/// `bandwidth/read-<size>` with `Throughput::Bytes` = the buffer's size.
pub fn bench_read(group: &mut BenchmarkGroup<'_, WallTime>, buf: &[f32]) {
    let bytes = size_of_val(buf);
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("bandwidth/read-{}", size_name(bytes)), |b| {
        b.iter(|| read_sum(black_box(buf)))
    });
}
