//! Test data and error-bound helpers shared by the kernel test files.
#![allow(dead_code)]

use half::f16;
use half::slice::HalfFloatSliceExt;
use proptest::prelude::*;
use tvl_format::{BlockGeometry, DType, QuantData, TileGeometry};
use vtc_kernels::{Matrix, QuantSlice, WeightSlice};

/// Unit roundoff of f32.
pub const U: f64 = f32::EPSILON as f64 / 2.0;

/// Smallest positive subnormal f32.
pub const SUB: f64 = 1.401_298_464_324_817e-45;

/// `γ(k) = k u / (1 - k u)`: the relative error bound of `k` chained roundings.
pub fn gamma(k: usize) -> f64 {
    let ku = k as f64 * U;
    assert!(ku < 0.5, "bound too loose to mean anything");
    ku / (1.0 - ku)
}

/// How random values are drawn.
#[derive(Clone, Copy, Debug)]
pub enum Dist {
    /// Uniform in [-1, 1).
    Unit,
    /// Random sign, magnitudes spread over 2^-8 .. 2^9 (cancellation, mixed scales).
    Wide,
    /// Integers in -4..=4: every f32 product and (short enough) sum is exact.
    Int,
}

pub fn any_dist() -> impl Strategy<Value = Dist> {
    prop_oneof![Just(Dist::Unit), Just(Dist::Wide), Just(Dist::Int)]
}

pub fn any_float_dtype() -> impl Strategy<Value = DType> {
    prop_oneof![Just(DType::F32), Just(DType::F16)]
}

/// SplitMix64: proptest picks the seed (and shrinks the shape); the bulk data comes
/// from here so that million-element cases stay cheap.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f32 {
        (lo + (hi - lo) * self.unit()) as f32
    }

    pub fn sample(&mut self, d: Dist) -> f32 {
        match d {
            Dist::Unit => self.range(-1.0, 1.0),
            Dist::Wide => {
                let mag = (1.0 + self.unit()) * 2f64.powi((self.next() % 17) as i32 - 8);
                (if self.next() & 1 == 0 { mag } else { -mag }) as f32
            }
            Dist::Int => ((self.next() % 9) as i32 - 4) as f32,
        }
    }

    pub fn vec(&mut self, n: usize, d: Dist) -> Vec<f32> {
        (0..n).map(|_| self.sample(d)).collect()
    }
}

/// Owned tiled weights.
pub enum Store {
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// A random `rows x cols` matrix: its logical row-major values (as the kernel sees
/// them, i.e. after rounding to f16 for f16 weights) and its tiled, zero-padded buffer.
pub struct Tiled {
    pub rows: usize,
    pub cols: usize,
    pub tile_rows: usize,
    pub logical: Vec<f32>,
    pub store: Store,
}

impl Tiled {
    pub fn new(
        rows: usize,
        cols: usize,
        tile_rows: usize,
        dtype: DType,
        rng: &mut Rng,
        d: Dist,
    ) -> Self {
        let mut logical = rng.vec(rows * cols, d);
        Self::from_logical(rows, cols, tile_rows, dtype, &mut logical)
    }

    /// Tile `logical` (rounding it in place to the stored precision).
    pub fn from_logical(
        rows: usize,
        cols: usize,
        tile_rows: usize,
        dtype: DType,
        logical: &mut Vec<f32>,
    ) -> Self {
        assert_eq!(logical.len(), rows * cols);
        let g = TileGeometry::new(rows, cols, tile_rows, dtype).expect("valid geometry");
        let total = g.total_elems().expect("no overflow");
        // Copy chunk by chunk: each piece of a row is contiguous in the tiled buffer.
        let pieces = |r: usize| {
            (0..cols.div_ceil(g.chunk)).map(move |k| {
                let c0 = k * g.chunk;
                (
                    r * cols + c0..r * cols + cols.min(c0 + g.chunk),
                    g.index(r, c0),
                )
            })
        };
        let store = match dtype {
            DType::F32 => {
                let mut buf = vec![0.0f32; total];
                for r in 0..rows {
                    for (src, dst) in pieces(r) {
                        buf[dst..dst + src.len()].copy_from_slice(&logical[src]);
                    }
                }
                Store::F32(buf)
            }
            DType::F16 => {
                let mut buf = vec![f16::ZERO; total];
                for r in 0..rows {
                    for (src, dst) in pieces(r) {
                        let out = &mut buf[dst..dst + src.len()];
                        out.convert_from_f32_slice(&logical[src.clone()]);
                        out.convert_to_f32_slice(&mut logical[src]);
                    }
                }
                Store::F16(buf)
            }
            other => unreachable!("not a float dtype: {other:?}"),
        };
        Self {
            rows,
            cols,
            tile_rows,
            logical: std::mem::take(logical),
            store,
        }
    }

    pub fn slice(&self) -> WeightSlice<'_> {
        match &self.store {
            Store::F32(v) => WeightSlice::F32(v),
            Store::F16(v) => WeightSlice::F16(v),
        }
    }

    pub fn matrix(&self) -> Matrix<'_> {
        Matrix::new(self.slice(), self.rows, self.cols, self.tile_rows)
            .expect("buffer has exactly the geometry's size")
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.logical[r * self.cols..(r + 1) * self.cols]
    }

    pub fn describe(&self) -> String {
        let dt = match self.store {
            Store::F32(_) => "f32",
            Store::F16(_) => "f16",
        };
        format!("{}x{} {dt} R={}", self.rows, self.cols, self.tile_rows)
    }
}

impl Tiled {
    /// Tile owned logical values (rounded to the stored precision).
    pub fn from_vec(
        rows: usize,
        cols: usize,
        tile_rows: usize,
        dtype: DType,
        mut logical: Vec<f32>,
    ) -> Self {
        Self::from_logical(rows, cols, tile_rows, dtype, &mut logical)
    }
}

/// A quantized matrix in the block-tiled layout, owned.
pub struct QMat {
    pub data: QuantData,
    pub g: BlockGeometry,
    pub quants: Vec<u8>,
    pub scales: Vec<f16>,
}

impl QMat {
    pub fn from_data(data: QuantData, rows: usize, cols: usize, tile_rows: usize) -> Self {
        let g = BlockGeometry::new(rows, cols, tile_rows, data.dtype).unwrap();
        let bytes = data.tile(&g).unwrap();
        let quants = bytes[..g.quant_bytes().unwrap()].to_vec();
        let s0 = g.scales_offset().unwrap();
        let scales = bytes[s0..s0 + 2 * g.scales_len().unwrap()]
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]))
            .collect();
        Self {
            data,
            g,
            quants,
            scales,
        }
    }

    pub fn random(
        dtype: DType,
        rows: usize,
        cols: usize,
        tile_rows: usize,
        rng: &mut Rng,
        dist: Dist,
    ) -> Self {
        let x = rng.vec(rows * cols, dist);
        let data = QuantData::quantize(dtype, &x, rows, cols).unwrap_or_else(|| {
            // No quantizer from floats for this type: arbitrary quant bytes (every bit
            // pattern is a valid block, extreme scales included) and fields of the
            // distribution's size.
            let n = rows * cols / dtype.block_elems().max(1);
            let scale = match dist {
                Dist::Wide => 1.0,
                _ => 1.0 / 64.0,
            };
            QuantData {
                dtype,
                quants: (0..n * dtype.block_bytes())
                    .map(|_| rng.next() as u8)
                    .collect(),
                scales: (0..n * dtype.scale_fields())
                    .map(|_| f16::from_f32(rng.range(-1.0, 1.0) * scale))
                    .collect(),
            }
        });
        Self::from_data(data, rows, cols, tile_rows)
    }

    pub fn matrix(&self) -> Matrix<'_> {
        let q = QuantSlice {
            dtype: self.data.dtype,
            quants: &self.quants,
            scales: &self.scales,
        };
        Matrix::new(
            WeightSlice::Quant(q),
            self.g.rows,
            self.g.cols,
            self.g.tile_rows,
        )
        .unwrap()
    }
}
