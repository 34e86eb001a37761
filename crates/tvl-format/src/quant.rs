//! Block-quantized weights: the values a block stands for, llama.cpp's quantizers, and
//! the `BlockTiled` layout's index arithmetic (the one place that knows where the
//! quants and scales of block (r, b) live).
//!
//! A block is `elems` consecutive elements of one row: 32 for `Q8_0`, `Q4_0`, `Q4_1`,
//! `Q5_0`, `Q5_1`, and 256 (a *super-block*) for `Q4_K`, `Q5_K`, `Q6_K`. Each block is
//! its *quant bytes* (everything but the f16 fields, in GGUF's byte order) and one or
//! two f16 *fields*: GGUF's block with the f16 fields taken out, so import is a copy
//! and the values are ggml's bit for bit. The quant bytes of each type (offsets within
//! them):
//!
//! | type   | bytes | runs                                          | fields      |
//! |--------|------:|-----------------------------------------------|-------------|
//! | `Q8_0` | 32    | `qs[32]` (i8)                                 | `d`         |
//! | `Q4_0` | 16    | `qs[16]` (nibbles)                            | `d`         |
//! | `Q4_1` | 16    | `qs[16]`                                      | `d`, `m`    |
//! | `Q5_0` | 20    | `qh[4]` at 0, `qs[16]` at 4                   | `d`         |
//! | `Q5_1` | 20    | `qh[4]` at 0, `qs[16]` at 4                   | `d`, `m`    |
//! | `Q4_K` | 140   | `scales[12]` at 0, `qs[128]` at 12            | `d`, `dmin` |
//! | `Q5_K` | 172   | `scales[12]` at 0, `qh[32]` at 12, `qs[128]` at 44 | `d`, `dmin` |
//! | `Q6_K` | 208   | `ql[128]` at 0, `qh[64]` at 128, `scales[16]` (i8) at 192 | `d` |
//!
//! Every run is a multiple of 4 bytes (one [`LANE`]), so in the tiled layout each run
//! of a tile's rows is contiguous and 32-byte aligned (see [`BlockGeometry`]).

use half::f16;

use crate::{ALIGN, DType};

/// Elements of the smallest block, and of the blocks of the int8 input that every
/// quantized product takes: 32.
pub const BLOCK: usize = 32;

/// Elements of a K-type super-block: 256.
pub const SUPER_BLOCK: usize = 256;

/// The largest quant bytes of any block type (`Q6_K`'s 208).
pub const MAX_BLOCK_BYTES: usize = 208;

/// The block-quantized element types. Every `match` on it is exhaustive, so a new type
/// fails to compile until every importer, writer and kernel handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum BlockType {
    /// 32 x i8, `d`.
    Q8_0,
    /// 32 x 4 bits, `d`.
    Q4_0,
    /// 32 x 4 bits, `d`, `m`.
    Q4_1,
    /// 32 x 5 bits, `d`.
    Q5_0,
    /// 32 x 5 bits, `d`, `m`.
    Q5_1,
    /// 256 x 4 bits in 8 sub-blocks of 32 with 6-bit scales and minimums; `d`, `dmin`.
    Q4_K,
    /// 256 x 5 bits in 8 sub-blocks of 32 with 6-bit scales and minimums; `d`, `dmin`.
    Q5_K,
    /// 256 x 6 bits in 16 sub-blocks of 16 with int8 scales; `d`.
    Q6_K,
}

impl BlockType {
    /// Every block type, in dtype id order.
    pub const ALL: [BlockType; 8] = [
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
    ];

    /// The dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::Q8_0 => DType::Q8_0,
            Self::Q4_0 => DType::Q4_0,
            Self::Q4_1 => DType::Q4_1,
            Self::Q5_0 => DType::Q5_0,
            Self::Q5_1 => DType::Q5_1,
            Self::Q4_K => DType::Q4_K,
            Self::Q5_K => DType::Q5_K,
            Self::Q6_K => DType::Q6_K,
        }
    }

    /// Elements per block: 32, or 256 for the K types.
    #[inline]
    pub fn elems(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 => BLOCK,
            Self::Q4_K | Self::Q5_K | Self::Q6_K => SUPER_BLOCK,
        }
    }

    /// Quant bytes per block (the f16 fields excluded).
    #[inline]
    pub fn quant_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 32,
            Self::Q4_0 | Self::Q4_1 => 16,
            Self::Q5_0 | Self::Q5_1 => 20,
            Self::Q4_K => 140,
            Self::Q5_K => 172,
            Self::Q6_K => 208,
        }
    }

    /// f16 fields per block: 1 (`d`) or 2 (`d` and `m`, or `d` and `dmin`).
    #[inline]
    pub fn fields(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_0 | Self::Q5_0 | Self::Q6_K => 1,
            Self::Q4_1 | Self::Q5_1 | Self::Q4_K | Self::Q5_K => 2,
        }
    }

    /// Bytes of one GGUF block of this type: quant bytes plus the fields.
    pub fn gguf_bytes(self) -> usize {
        self.quant_bytes() + 2 * self.fields()
    }

    /// Offset of the f16 fields within a GGUF block: at the start, except for `Q6_K`,
    /// whose `d` is its last two bytes. The quant bytes are the rest, in order.
    pub fn gguf_fields_at(self) -> usize {
        match self {
            Self::Q6_K => self.quant_bytes(),
            Self::Q8_0
            | Self::Q4_0
            | Self::Q4_1
            | Self::Q5_0
            | Self::Q5_1
            | Self::Q4_K
            | Self::Q5_K => 0,
        }
    }

    /// Split one GGUF block `raw` ([`gguf_bytes`](Self::gguf_bytes) long) into its
    /// quant bytes (written to `quants`, [`quant_bytes`](Self::quant_bytes) long) and
    /// fields `(d, m)` (`m` is 0 for one-field types). Panics on wrong lengths.
    pub fn split_gguf(self, raw: &[u8], quants: &mut [u8]) -> (f16, f16) {
        let (qb, f, at) = (self.quant_bytes(), self.fields(), self.gguf_fields_at());
        assert_eq!(raw.len(), self.gguf_bytes(), "{self:?}: GGUF block length");
        assert_eq!(quants.len(), qb, "{self:?}: quant bytes length");
        let field = |k: usize| f16::from_le_bytes([raw[at + 2 * k], raw[at + 2 * k + 1]]);
        let fields_end = at + 2 * f;
        if at == 0 {
            quants.copy_from_slice(&raw[fields_end..]);
        } else {
            quants.copy_from_slice(&raw[..at]);
        }
        (field(0), if f == 2 { field(1) } else { f16::ZERO })
    }

    /// The inverse of [`split_gguf`](Self::split_gguf): the GGUF block of `quants` and
    /// fields `(d, m)` into `raw`.
    pub fn join_gguf(self, quants: &[u8], d: f16, m: f16, raw: &mut [u8]) {
        let (qb, f, at) = (self.quant_bytes(), self.fields(), self.gguf_fields_at());
        assert_eq!(raw.len(), self.gguf_bytes(), "{self:?}: GGUF block length");
        assert_eq!(quants.len(), qb, "{self:?}: quant bytes length");
        raw[at..at + 2].copy_from_slice(&d.to_le_bytes());
        if f == 2 {
            raw[at + 2..at + 4].copy_from_slice(&m.to_le_bytes());
        }
        if at == 0 {
            raw[2 * f..].copy_from_slice(quants);
        } else {
            raw[..at].copy_from_slice(quants);
        }
    }
}

/// Sub-block `j` (`j < 8`)'s 6-bit scale and minimum from the 12 packed scale bytes of
/// a `Q4_K` / `Q5_K` block (ggml's `get_scale_min_k4`): for `j < 4`, the low 6 bits of
/// bytes `j` and `j + 4`; for `j >= 4`, the low (scale) and high (minimum) nibble of
/// byte `j + 4` under the top 2 bits of bytes `j - 4` and `j`.
#[inline]
pub fn scale_min_k4(scales: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// The 5-bit quant of element `j` (`j < 32`) of a `Q5_0` / `Q5_1` block's quant
/// bytes: its nibble (`qs` as in the 4-bit types) with bit `j` of the little-endian
/// `u32` `qh` as the 5th bit.
#[inline]
pub fn q5(q: &[u8], j: usize) -> u8 {
    nibble(&q[4..], j) | (((q[j / 8] >> (j % 8)) & 1) << 4)
}

/// The quant of element `j` (`j < 256`) of a K-type block's quant bytes `q`, with its
/// sub-block's scale (and minimum, 0 for `Q6_K`): `(quant, scale, min)`. `Q4_K` and
/// `Q5_K`: sub-block `s = j / 32` of 32 elements, element `j` in nibble `s % 2` of byte
/// `32 (s / 2) + j % 32` of `qs` (and, for `Q5_K`, bit `s` of byte `j % 32` of `qh` as
/// its 5th bit). `Q6_K`: in each half `h = j / 128`, quarter `k = (j % 128) / 32`, the
/// low 4 bits are nibble `k / 2` of byte `64 h + 32 (k % 2) + j % 32` of `ql`, the high 2
/// bits are bits `2k..2k + 2` of byte `32 h + j % 32` of `qh`, minus 32; scale `j / 16`.
#[inline]
pub fn k_quant(kind: BlockType, q: &[u8], j: usize) -> (i32, i32, i32) {
    let (s, l) = (j / 32, j % 32);
    match kind {
        BlockType::Q4_K | BlockType::Q5_K => {
            let (sc, mn) = scale_min_k4(&q[..12], s);
            let qs = if kind == BlockType::Q4_K {
                &q[12..]
            } else {
                &q[44..]
            };
            let byte = qs[32 * (s / 2) + l];
            let mut v = if s % 2 == 0 { byte & 15 } else { byte >> 4 } as i32;
            if kind == BlockType::Q5_K {
                v |= (((q[12 + l] >> s) & 1) as i32) << 4;
            }
            (v, sc as i32, mn as i32)
        }
        BlockType::Q6_K => {
            let (h, k) = (j / 128, (j % 128) / 32);
            let lo = q[64 * h + 32 * (k % 2) + l];
            let lo = if k / 2 == 0 { lo & 15 } else { lo >> 4 };
            let hi = (q[128 + 32 * h + l] >> (2 * k)) & 3;
            let v = (lo | (hi << 4)) as i32 - 32;
            (v, q[192 + j / 16] as i8 as i32, 0)
        }
        BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q5_1 => {
            panic!("k_quant of {kind:?}, which has no sub-blocks")
        }
    }
}

/// The block type of `dtype`, or a panic naming the caller (a caller bug).
fn kind_of(dtype: DType, what: &str) -> BlockType {
    dtype
        .block_type()
        .unwrap_or_else(|| panic!("{what} of non-block dtype {dtype}"))
}

/// The value of element `j` (`j < elems`) of a block with quant bytes `q`, field `d`
/// and second field `m` (`m` or `dmin`; ignored by one-field types), in f32 arithmetic
/// with every product and sum rounded (no fused multiply-add):
///
/// - `Q8_0`: `(q[j] as i8) * d`
/// - `Q4_0`: `(nibble(j) - 8) * d`; `Q5_0`: `(q5(j) - 16) * d`
/// - `Q4_1`: `nibble(j) * d + m`; `Q5_1`: `q5(j) * d + m`
/// - `Q4_K`, `Q5_K`: `(d * sc) * q - (dmin * mn)` with `(q, sc, mn)` from [`k_quant`]
/// - `Q6_K`: `(d * sc) * q` with `(q, sc)` from [`k_quant`]
///
/// where `nibble(j) = q[j] & 15` for `j < 16` and `q[j - 16] >> 4` otherwise, and
/// [`q5`]. This is ggml's (and gguf-py's) dequantization, bit for bit.
#[inline]
pub fn block_value(dtype: DType, q: &[u8], d: f16, m: f16, j: usize) -> f32 {
    let kind = kind_of(dtype, "block_value");
    let (d, m) = (d.to_f32(), m.to_f32());
    match kind {
        BlockType::Q8_0 => f32::from(q[j] as i8) * d,
        BlockType::Q4_0 => (nibble(q, j) as i32 - 8) as f32 * d,
        BlockType::Q4_1 => nibble(q, j) as f32 * d + m,
        BlockType::Q5_0 => (q5(q, j) as i32 - 16) as f32 * d,
        BlockType::Q5_1 => q5(q, j) as f32 * d + m,
        BlockType::Q4_K | BlockType::Q5_K => {
            let (v, sc, mn) = k_quant(kind, q, j);
            (d * sc as f32) * v as f32 - m * mn as f32
        }
        BlockType::Q6_K => {
            let (v, sc, _) = k_quant(kind, q, j);
            (d * sc as f32) * v as f32
        }
    }
}

/// Nibble `j` (`j < 32`) of a 16-byte 4-bit block.
#[inline]
pub fn nibble(q: &[u8], j: usize) -> u8 {
    if j < 16 { q[j] & 15 } else { q[j - 16] >> 4 }
}

/// Dequantize one block into `out` (its `elems` floats), as [`block_value`].
pub fn dequantize_block(dtype: DType, q: &[u8], d: f16, m: f16, out: &mut [f32]) {
    let n = kind_of(dtype, "dequantize_block").elems();
    for (j, o) in out[..n].iter_mut().enumerate() {
        *o = block_value(dtype, q, d, m, j);
    }
}

/// Quantize one block of floats (32, or 256 for the K types) by llama.cpp's reference
/// rules (`quantize_row_*_ref` in ggml's `ggml-quants.c`), ported operation for
/// operation (same f32 operations in the same order, no fused multiply-add), so users
/// get the files they know, bit for bit:
///
/// - `Q8_0`: `d = amax / 127`, `q = round(x / d)` (`x * (1 / d)`, half away from zero).
/// - `Q4_0`: `max` = the element of largest magnitude (the first one), `d = max / -8`,
///   `q = min(15, trunc(x * (1 / d) + 8.5))`.
/// - `Q4_1`: `d = (max - min) / 15`, `m = min`, `q = min(15, trunc((x - min) * (1 / d) + 0.5))`.
/// - `Q5_0`: `d = max / -16`, `q = min(31, trunc(x * (1 / d) + 16.5))`.
/// - `Q5_1`: `d = (max - min) / 31`, `m = min`, `q = trunc((x - min) * (1 / d) + 0.5)`.
/// - `Q4_K`, `Q5_K`: per sub-block of 32, the scale and minimum of ggml's
///   `make_qkx2_quants` (a weighted least-squares search over 21 / 16 candidate scales,
///   weights `sqrt(mean(x^2)) + |x|`); `d` and `dmin` are the largest scale and minimum
///   over 63, the 6-bit sub-block scales and minimums `nearest_int` of them in those
///   units, and the quants are requantized with the rounded scales.
/// - `Q6_K`: per sub-block of 16, the scale of ggml's `make_qx_quants` (`nmax` 32,
///   weights `x^2`, 19 candidate scales); `d` = the scale of largest magnitude over
///   -128, int8 sub-block scales, quants requantized with the rounded scales (a block
///   whose scales are all below 1e-15 is all zero).
///
/// `1 / d` is 0 when `d` is 0; `d` and `m` are stored rounded to f16 (to nearest even).
/// Casts of floats to 8-bit integers are C's on x86-64 (truncation to i32 with
/// `i32::MIN` for NaN and out-of-range values, then the low byte), which only matters
/// for degenerate blocks (e.g. a subnormal `d` whose inverse overflows). Writes
/// [`DType::block_bytes`] bytes of `q` and returns `(d, m)` (`m`, or `dmin`; 0 for
/// one-field types). Panics for a dtype without a quantizer ([`has_quantizer`]).
pub fn quantize_block(dtype: DType, x: &[f32], q: &mut [u8]) -> (f16, f16) {
    let kind = kind_of(dtype, "quantize_block");
    let x = &x[..kind.elems()];
    match kind {
        BlockType::Q8_0 => {
            let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            for (o, v) in q[..BLOCK].iter_mut().zip(x) {
                *o = c_cast_u8((v * id).round());
            }
            (f16::from_f32(d), f16::ZERO)
        }
        BlockType::Q4_0 => {
            let (mut amax, mut max) = (0.0f32, 0.0f32);
            for &v in x {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            pack_nibbles(q, |j| (c_cast_u8(x[j] * id + 8.5) as i8).min(15) as u8);
            (f16::from_f32(d), f16::ZERO)
        }
        BlockType::Q4_1 => {
            let (min, max) = min_max(x);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            pack_nibbles(q, |j| {
                (c_cast_u8((x[j] - min) * id + 0.5) as i8).min(15) as u8
            });
            (f16::from_f32(d), f16::from_f32(min))
        }
        BlockType::Q5_0 | BlockType::Q5_1 | BlockType::Q4_K | BlockType::Q5_K | BlockType::Q6_K => {
            let mut raw = [0u8; MAX_BLOCK_BYTES + 4];
            let raw = &mut raw[..kind.gguf_bytes()];
            match kind {
                BlockType::Q5_0 => quantize_q5_0(x, raw),
                BlockType::Q5_1 => quantize_q5_1(x, raw),
                BlockType::Q4_K => quantize_q45_k(x, raw, false),
                BlockType::Q5_K => quantize_q45_k(x, raw, true),
                BlockType::Q6_K => quantize_q6_k(x, raw),
                BlockType::Q8_0 | BlockType::Q4_0 | BlockType::Q4_1 => unreachable!(),
            }
            kind.split_gguf(raw, &mut q[..kind.quant_bytes()])
        }
    }
}

/// Whether [`quantize_block`] can quantize floats to `dtype`: every block type can
/// (and be imported losslessly from GGUF).
pub fn has_quantizer(dtype: DType) -> bool {
    match dtype.block_type() {
        Some(
            BlockType::Q8_0
            | BlockType::Q4_0
            | BlockType::Q4_1
            | BlockType::Q5_0
            | BlockType::Q5_1
            | BlockType::Q4_K
            | BlockType::Q5_K
            | BlockType::Q6_K,
        ) => true,
        None => false,
    }
}

/// C's cast of a float to `int8_t` / `uint8_t` as x86-64 compilers emit it (ggml's
/// quantizers rely on it): truncation toward zero to i32 (`cvttss2si`, which gives
/// `i32::MIN` for NaN and values out of i32's range), then the low 8 bits. Rust's
/// `as u8` saturates instead, which differs only out of range.
#[inline]
fn c_cast_u8(v: f32) -> u8 {
    let i = if (-2147483648.0..2147483648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    };
    i as u8
}

/// ggml's `nearest_int`: round to nearest (ties to even) by adding 1.5 * 2^23 and
/// reading the low mantissa bits. Exact for `|v| <= 2^22 - 1`; beyond that (and for
/// NaN) it gives what ggml's does with its assert compiled out, never a panic.
#[inline]
fn nearest_int(fval: f32) -> i32 {
    let val = fval + 12582912.0f32;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// ggml's `GROUP_MAX_EPS`: below it a group's largest magnitude counts as zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// The smallest and largest element (`FLT_MAX` / `-FLT_MAX` start, `<` / `>` tests).
fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Pack 32 5-bit quants into ggml's `qh` (bit `j` the 5th bit of element `j`,
/// little-endian `u32`) and `qs` (nibbles as the 4-bit types), `raw[..4]` and
/// `raw[4..20]`.
fn pack_q5(raw: &mut [u8], xi: impl Fn(usize) -> u8) {
    let mut qh = 0u32;
    for j in 0..BLOCK / 2 {
        let (xi0, xi1) = (xi(j), xi(j + BLOCK / 2));
        raw[4 + j] = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= ((u32::from(xi0) & 0x10) >> 4) << j;
        qh |= ((u32::from(xi1) & 0x10) >> 4) << (j + BLOCK / 2);
    }
    raw[..4].copy_from_slice(&qh.to_le_bytes());
}

/// `quantize_row_q5_0_ref` for one block into its ggml block (`d`, `qh`, `qs`).
fn quantize_q5_0(x: &[f32], raw: &mut [u8]) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    raw[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    pack_q5(&mut raw[2..], |j| {
        (c_cast_u8(x[j] * id + 16.5) as i8).min(31) as u8
    });
}

/// `quantize_row_q5_1_ref` for one block into its ggml block (`d`, `m`, `qh`, `qs`).
fn quantize_q5_1(x: &[f32], raw: &mut [u8]) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    raw[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    raw[2..4].copy_from_slice(&f16::from_f32(min).to_le_bytes());
    pack_q5(&mut raw[4..], |j| c_cast_u8((x[j] - min) * id + 0.5));
}

/// ggml's `make_qkx2_quants` with `use_mad = false` (the K types' only use): the scale
/// (returned) and minimum (`-the_min`, written to `the_min`) of `x` minimizing the
/// weighted squared error over `nstep + 1` candidate scales
/// `(rmin + rdelta * is + nmax) / (max - min)`; the quants in `l`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    the_min: &mut f32,
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> f32 {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l[..n].fill(0);
        *the_min = -min;
        return 0.0;
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let li = nearest_int(iscale * (x[i] - min));
        l[i] = li.clamp(0, nmax) as u8;
        let diff = scale * f32::from(l[i]) + min - x[i];
        let diff = diff * diff;
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        *the_min = -min;
        return scale;
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = li as u8;
            let (w, lf) = (weights[i], li as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let dd = sum_w * sum_l2 - sum_l * sum_l;
        if dd > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / dd;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / dd;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * f32::from(laux[i]) + this_min - x[i];
                let diff = diff * diff;
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                l[..n].copy_from_slice(&laux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    scale
}

/// `quantize_row_q4_K_ref` (`five = false`) or `quantize_row_q5_K_ref` (`five`) for one
/// super-block into its ggml block (`d`, `dmin`, `scales[12]`, [`qh[32]`,] `qs[128]`).
fn quantize_q45_k(x: &[f32], raw: &mut [u8], five: bool) {
    let (nmax, rmin, nstep) = if five { (31, -0.5, 15) } else { (15, -1.0, 20) };
    let mut l = [0u8; SUPER_BLOCK];
    let mut laux = [0u8; 32];
    let mut weights = [0.0f32; 32];
    let mut mins = [0.0f32; SUPER_BLOCK / 32];
    let mut scales = [0.0f32; SUPER_BLOCK / 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..SUPER_BLOCK / 32 {
        let xs = &x[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        for (w, &v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        scales[j] = make_qkx2_quants(
            nmax,
            xs,
            &weights,
            &mut l[32 * j..32 * j + 32],
            &mut mins[j],
            &mut laux,
            rmin,
            0.1,
            nstep,
        );
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let (fields, rest) = raw.split_at_mut(4);
    let (sc, qs) = rest.split_at_mut(12);
    for j in 0..SUPER_BLOCK / 32 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            sc[j] = ls;
            sc[j + 4] = lm;
        } else {
            sc[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            sc[j - 4] |= (ls >> 4) << 6;
            sc[j] |= (lm >> 4) << 6;
        }
    }
    let (d, dmin) = (
        f16::from_f32(max_scale / 63.0),
        f16::from_f32(max_min / 63.0),
    );
    fields[..2].copy_from_slice(&d.to_le_bytes());
    fields[2..].copy_from_slice(&dmin.to_le_bytes());
    for j in 0..SUPER_BLOCK / 32 {
        let (s, m) = scale_min_k4(sc, j);
        let dj = d.to_f32() * f32::from(s);
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for ii in 0..32 {
            let v = nearest_int((x[32 * j + ii] + dm) / dj);
            l[32 * j + ii] = v.clamp(0, nmax) as u8;
        }
    }
    if five {
        let (qh, ql) = qs.split_at_mut(32);
        qh.fill(0);
        let (mut m1, mut m2) = (1u8, 2u8);
        for n in (0..SUPER_BLOCK).step_by(64) {
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[n / 2 + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    } else {
        for j in (0..SUPER_BLOCK).step_by(64) {
            for i in 0..32 {
                qs[j / 2 + i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
}

/// ggml's `make_qx_quants` with `rmse_type = 1` and no importance weights (`Q6_K`'s
/// only use; weights `x^2`): the scale (returned) of `x`'s signed quants in
/// `[-nmax, nmax)`, best of 19 candidate scales `-(nmax + 0.1 is) / max`; the quants
/// plus `nmax` in `l`.
fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [u8]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -nmax as f32 / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l[i] = (li + nmax) as u8;
        let (w, lf) = (x[i] * x[i], li as f32);
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let li = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
            let (w, lf) = (v * v, li as f32);
            sumlx += w * v * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let li = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
                l[i] = (nmax + li) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `quantize_row_q6_K_ref` for one super-block into its ggml block (`ql[128]`,
/// `qh[64]`, `scales[16]`, `d`).
fn quantize_q6_k(x: &[f32], raw: &mut [u8]) {
    let mut l = [0u8; SUPER_BLOCK];
    let mut scales = [0.0f32; SUPER_BLOCK / 16];
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for ib in 0..SUPER_BLOCK / 16 {
        let scale = make_qx_quants(32, &x[16 * ib..16 * ib + 16], &mut l[16 * ib..16 * ib + 16]);
        scales[ib] = scale;
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        raw.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    let d = f16::from_f32(1.0 / iscale);
    raw[208..210].copy_from_slice(&d.to_le_bytes());
    for ib in 0..SUPER_BLOCK / 16 {
        raw[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
    }
    for j in 0..SUPER_BLOCK / 16 {
        let dj = d.to_f32() * f32::from(raw[192 + j] as i8);
        if dj == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let v = nearest_int(x[16 * j + ii] / dj).clamp(-32, 31);
            l[16 * j + ii] = (v + 32) as u8;
        }
    }
    let (ql, rest) = raw.split_at_mut(128);
    let qh = &mut rest[..64];
    for j in (0..SUPER_BLOCK).step_by(128) {
        let (ql, qh) = (&mut ql[j / 2..], &mut qh[j / 4..]);
        for i in 0..32 {
            let q1 = l[j + i] & 0xF;
            let q2 = l[j + i + 32] & 0xF;
            let q3 = l[j + i + 64] & 0xF;
            let q4 = l[j + i + 96] & 0xF;
            ql[i] = q1 | (q3 << 4);
            ql[i + 32] = q2 | (q4 << 4);
            qh[i] = (l[j + i] >> 4)
                | ((l[j + i + 32] >> 4) << 2)
                | ((l[j + i + 64] >> 4) << 4)
                | ((l[j + i + 96] >> 4) << 6);
        }
    }
}

fn pack_nibbles(q: &mut [u8], nib: impl Fn(usize) -> u8) {
    for (j, o) in q[..BLOCK / 2].iter_mut().enumerate() {
        *o = (nib(j) & 15) | ((nib(j + 16) & 15) << 4);
    }
}

/// Bytes of one row's block that lie together in a tile (one 32-bit lane of an integer
/// dot-product instruction: x86 `vpdpbusd` / `pmaddubsw` + `pmaddwd`, Arm `sdot`).
pub const LANE: usize = 4;

/// Shape of a `BlockTiled` matrix: `rows` outputs by `cols` inputs (`cols` a multiple
/// of the block's elements), in tiles of `tile_rows` rows. The tensor holds two regions:
///
/// - *quants*, from byte 0: for each tile, for each block column `b`, the quant bytes
///   of block `b` of the tile's rows `0..R`, interleaved [`LANE`] bytes at a time
///   (bytes `0..4` of rows `0..R`, then bytes `4..8` of rows `0..R`, ...), so that one
///   32-byte load holds the same 4 bytes of 8 rows, one row per 32-bit lane (and each
///   run of a block's quant bytes, such as a K type's scales, is a contiguous run of
///   the tile);
/// - *scales*, from byte [`scales_offset`](Self::scales_offset) (a multiple of 128):
///   f16 values, for each tile, for each block column, for each field (`d`, then `m`
///   or `dmin` for two-field types), the field of rows `0..R`.
///
/// A kernel computing `R` outputs reads both regions front to back, in step, and gets
/// each row's block sums in its own lane: no horizontal reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockGeometry {
    /// Logical rows (outputs).
    pub rows: usize,
    /// Logical columns (inputs), a multiple of the block's elements.
    pub cols: usize,
    /// Rows per tile (R).
    pub tile_rows: usize,
    /// The block dtype.
    pub dtype: DType,
}

impl BlockGeometry {
    /// Geometry of a `rows x cols` matrix of the block dtype `dtype` in tiles of
    /// `tile_rows` rows. `None` unless `dtype` is a block type, `tile_rows >= 1`,
    /// `cols` is a multiple of the block's elements (32 or 256) and every size fits
    /// `usize`.
    pub fn new(rows: usize, cols: usize, tile_rows: usize, dtype: DType) -> Option<Self> {
        let kind = dtype.block_type()?;
        if tile_rows == 0 || !cols.is_multiple_of(kind.elems()) {
            return None;
        }
        let g = Self {
            rows,
            cols,
            tile_rows,
            dtype,
        };
        g.nbytes()?;
        // One tile's sizes must be addressable too (they can overflow when rows == 0).
        g.blocks_per_row()
            .checked_mul(tile_rows)?
            .checked_mul(g.block_bytes() + 2 * g.fields())?;
        Some(g)
    }

    /// The block type.
    #[inline]
    pub fn kind(&self) -> BlockType {
        self.dtype
            .block_type()
            .expect("a BlockGeometry's dtype is a block type (checked by new)")
    }

    /// Elements per block: 32, or 256 for the K types.
    #[inline]
    pub fn block_elems(&self) -> usize {
        self.dtype.block_elems()
    }

    /// Blocks per row: `cols / block_elems`.
    #[inline]
    pub fn blocks_per_row(&self) -> usize {
        self.cols / self.block_elems()
    }

    /// Quant bytes per block ([`BlockType::quant_bytes`]).
    #[inline]
    pub fn block_bytes(&self) -> usize {
        self.dtype.block_bytes()
    }

    /// f16 fields per block: 1 (`d`) or 2 (`d`, then `m` or `dmin`).
    #[inline]
    pub fn fields(&self) -> usize {
        self.dtype.scale_fields()
    }

    /// Number of row tiles: ceil(rows / tile_rows).
    #[inline]
    pub fn n_tiles(&self) -> usize {
        self.rows.div_ceil(self.tile_rows)
    }

    /// Quant bytes of one tile.
    #[inline]
    pub fn tile_quant_bytes(&self) -> usize {
        self.tile_rows * self.blocks_per_row() * self.block_bytes()
    }

    /// f16 scale values of one tile.
    #[inline]
    pub fn tile_scales(&self) -> usize {
        self.tile_rows * self.blocks_per_row() * self.fields()
    }

    /// Bytes of the quant region (tiles only, before the alignment padding).
    #[inline]
    pub fn quant_bytes(&self) -> Option<usize> {
        self.n_tiles()
            .checked_mul(self.tile_rows)?
            .checked_mul(self.blocks_per_row())?
            .checked_mul(self.block_bytes())
    }

    /// f16 values of the scale region.
    pub fn scales_len(&self) -> Option<usize> {
        self.n_tiles()
            .checked_mul(self.tile_rows)?
            .checked_mul(self.blocks_per_row())?
            .checked_mul(self.fields())
    }

    /// Byte offset of the scale region in the tensor: `align_up(quant_bytes)`.
    pub fn scales_offset(&self) -> Option<usize> {
        crate::align_up(self.quant_bytes()?, ALIGN)
    }

    /// Bytes of the whole tensor: `align_up(scales_offset + 2 * scales_len)`.
    pub fn nbytes(&self) -> Option<usize> {
        let end = self
            .scales_offset()?
            .checked_add(self.scales_len()?.checked_mul(2)?)?;
        crate::align_up(end, ALIGN)
    }

    /// Byte offset, within the quant region, of quant byte `k` (`k < block_bytes`) of
    /// block `b` of row `row`.
    #[inline]
    pub fn quant_index(&self, row: usize, b: usize, k: usize) -> usize {
        let (tile, r) = (row / self.tile_rows, row % self.tile_rows);
        let block = (tile * self.blocks_per_row() + b) * self.tile_rows * self.block_bytes();
        block + (k / LANE) * self.tile_rows * LANE + r * LANE + k % LANE
    }

    /// The quant bytes of block `b` of row `row`, gathered from the quant region
    /// `quants` into their logical order (the first [`block_bytes`](Self::block_bytes)
    /// bytes of the result; the rest are zero).
    #[inline]
    pub fn block_quants(&self, quants: &[u8], row: usize, b: usize) -> [u8; MAX_BLOCK_BYTES] {
        let mut out = [0u8; MAX_BLOCK_BYTES];
        let at = self.quant_index(row, b, 0);
        for (k, run) in out[..self.block_bytes()].chunks_exact_mut(LANE).enumerate() {
            let from = at + k * self.tile_rows * LANE;
            run.copy_from_slice(&quants[from..from + LANE]);
        }
        out
    }

    /// Index, within the scale region (in f16 values), of field `field` (0 = `d`,
    /// 1 = `m`) of block `b` of row `row`.
    #[inline]
    pub fn scale_index(&self, row: usize, b: usize, field: usize) -> usize {
        let (tile, r) = (row / self.tile_rows, row % self.tile_rows);
        ((tile * self.blocks_per_row() + b) * self.fields() + field) * self.tile_rows + r
    }

    /// Fields `(d, m)` of block `b` of row `row` from the scale region `scales` (`m` is
    /// zero unless the dtype has it).
    #[inline]
    pub fn block_fields(&self, scales: &[f16], row: usize, b: usize) -> (f16, f16) {
        let d = scales[self.scale_index(row, b, 0)];
        let m = if self.fields() == 2 {
            scales[self.scale_index(row, b, 1)]
        } else {
            f16::ZERO
        };
        (d, m)
    }

    /// Dequantize block `b` of row `row` of a tensor's two regions into `out`
    /// ([`block_elems`](Self::block_elems) floats), as [`block_value`].
    pub fn dequantize_at(
        &self,
        quants: &[u8],
        scales: &[f16],
        row: usize,
        b: usize,
        out: &mut [f32],
    ) {
        let (d, m) = self.block_fields(scales, row, b);
        dequantize_block(self.dtype, &self.block_quants(quants, row, b), d, m, out);
    }

    /// Geometry of the sub-matrix made of tiles `first_tile..first_tile + n_tiles`
    /// (rows clipped to the logical rows). Its quants are the contiguous byte range
    /// from `first_tile * tile_quant_bytes()` and its scales the contiguous range from
    /// `first_tile * tile_scales()`.
    pub fn tiles(&self, first_tile: usize, n_tiles: usize) -> Self {
        let start = (first_tile * self.tile_rows).min(self.rows);
        let end = ((first_tile + n_tiles) * self.tile_rows).min(self.rows);
        Self {
            rows: end - start,
            ..*self
        }
    }

    /// Fraction of the bytes the kernel streams that hold logical data (quants and
    /// scales of real rows): `rows * blocks * (block_bytes + 2 * fields) / nbytes`.
    pub fn line_utilization(&self) -> f64 {
        let used =
            (self.rows * self.blocks_per_row() * (self.block_bytes() + 2 * self.fields())) as f64;
        match self.nbytes() {
            Some(0) | None => 1.0,
            Some(n) => used / n as f64,
        }
    }
}

/// A block-quantized matrix in logical order, as a writer receives it: row `r`'s
/// block `b` has quant bytes `quants[(r * blocks + b) * block_bytes ..][.. block_bytes]`
/// and fields `scales[(r * blocks + b) * fields ..][.. fields]` (`d`, then `m`).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantData {
    /// A block type.
    pub dtype: DType,
    /// Quant bytes, row-major by block.
    pub quants: Vec<u8>,
    /// Scale fields, row-major by block.
    pub scales: Vec<f16>,
}

impl QuantData {
    /// Quantize a row-major `[rows, cols]` f32 matrix (`cols` a multiple of the block's
    /// elements) by [`quantize_block`]. `None` if `dtype` is not a block type with a
    /// quantizer ([`has_quantizer`]), `cols` is not whole blocks or
    /// `x.len() != rows * cols`.
    pub fn quantize(dtype: DType, x: &[f32], rows: usize, cols: usize) -> Option<Self> {
        let n_el = dtype.block_elems();
        if !has_quantizer(dtype) || !cols.is_multiple_of(n_el) || rows.checked_mul(cols)? != x.len()
        {
            return None;
        }
        let n = x.len() / n_el;
        let (bb, f) = (dtype.block_bytes(), dtype.scale_fields());
        let mut quants = vec![0u8; n * bb];
        let mut scales = vec![f16::ZERO; n * f];
        for (i, blk) in x.chunks_exact(n_el).enumerate() {
            let (d, m) = quantize_block(dtype, blk, &mut quants[i * bb..(i + 1) * bb]);
            scales[i * f] = d;
            if f == 2 {
                scales[i * f + 1] = m;
            }
        }
        Some(Self {
            dtype,
            quants,
            scales,
        })
    }

    /// Dequantize block `i` (row-major block index) into `out` (its block's floats).
    pub fn dequantize_block(&self, i: usize, out: &mut [f32]) {
        let (bb, f) = (self.dtype.block_bytes(), self.dtype.scale_fields());
        let m = if f == 2 {
            self.scales[i * f + 1]
        } else {
            f16::ZERO
        };
        dequantize_block(
            self.dtype,
            &self.quants[i * bb..(i + 1) * bb],
            self.scales[i * f],
            m,
            out,
        );
    }

    /// Dequantize everything, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let n = self.quants.len() / self.dtype.block_bytes().max(1);
        let n_el = self.dtype.block_elems().max(1);
        let mut out = vec![0.0; n * n_el];
        for (i, o) in out.chunks_exact_mut(n_el).enumerate() {
            self.dequantize_block(i, o);
        }
        out
    }

    /// Lay the blocks of a `rows x cols` matrix out in the `BlockTiled` order of `g`
    /// (zero padding included): the tensor's bytes.
    pub fn tile(&self, g: &BlockGeometry) -> Option<Vec<u8>> {
        let nb = g.blocks_per_row();
        let (bb, f) = (g.block_bytes(), g.fields());
        if self.quants.len() != g.rows * nb * bb || self.scales.len() != g.rows * nb * f {
            return None;
        }
        let mut out = vec![0u8; g.nbytes()?];
        let s0 = g.scales_offset()?;
        for r in 0..g.rows {
            for b in 0..nb {
                let i = r * nb + b;
                for (k, &v) in self.quants[i * bb..(i + 1) * bb].iter().enumerate() {
                    out[g.quant_index(r, b, k)] = v;
                }
                for k in 0..f {
                    let at = s0 + 2 * g.scale_index(r, b, k);
                    out[at..at + 2].copy_from_slice(&self.scales[i * f + k].to_le_bytes());
                }
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matrix of `dtype` in logical order: quantized from floats where a quantizer
    /// exists, else arbitrary bytes and fields (every bit pattern is a valid block).
    fn sample(dtype: DType, rows: usize, cols: usize) -> QuantData {
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        if let Some(q) = QuantData::quantize(dtype, &x, rows, cols) {
            return q;
        }
        let n = rows * cols / dtype.block_elems();
        let mut state = 0x9E37_79B9u32 ^ dtype as u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        QuantData {
            dtype,
            quants: (0..n * dtype.block_bytes()).map(|_| next() as u8).collect(),
            scales: (0..n * dtype.scale_fields())
                .map(|_| f16::from_f32((next() % 2001) as f32 / 1000.0 - 1.0))
                .collect(),
        }
    }

    /// Shapes `(rows, blocks per row, tile rows)` of the layout tests.
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 1, 8),
        (9, 2, 8),
        (8, 3, 4),
        (3, 1, 1),
        (0, 1, 8),
        (17, 3, 8),
    ];

    #[test]
    fn slots_are_a_bijection_and_regions_do_not_overlap() {
        for kind in BlockType::ALL {
            let dtype = kind.dtype();
            for (rows, nb, r) in SHAPES {
                let cols = nb * kind.elems();
                let g = BlockGeometry::new(rows, cols, r, dtype).unwrap();
                let (bb, f, nb) = (g.block_bytes(), g.fields(), g.blocks_per_row());
                let mut q = vec![false; g.quant_bytes().unwrap()];
                let mut s = vec![false; g.scales_len().unwrap()];
                for row in 0..rows {
                    for b in 0..nb {
                        for k in 0..bb {
                            let o = g.quant_index(row, b, k);
                            assert!(!q[o], "{dtype} {rows}x{cols}/{r}: byte {o} twice");
                            q[o] = true;
                            // Runs of LANE bytes of one row are contiguous.
                            if k % LANE != 0 {
                                assert_eq!(o, g.quant_index(row, b, k - 1) + 1);
                            }
                        }
                        for k in 0..f {
                            let i = g.scale_index(row, b, k);
                            assert!(!s[i]);
                            s[i] = true;
                        }
                    }
                }
                assert_eq!(g.nbytes().unwrap() % ALIGN, 0);
                assert_eq!(g.scales_offset().unwrap() % ALIGN, 0);
                assert!(g.scales_offset().unwrap() >= g.quant_bytes().unwrap());
                assert!(
                    g.scales_offset().unwrap() + 2 * g.scales_len().unwrap() <= g.nbytes().unwrap()
                );
            }
        }
    }

    #[test]
    fn tiling_then_gathering_gives_back_every_block() {
        for kind in BlockType::ALL {
            let dtype = kind.dtype();
            for (rows, nb, r) in SHAPES {
                let cols = nb * kind.elems();
                let q = sample(dtype, rows, cols);
                let g = BlockGeometry::new(rows, cols, r, dtype).unwrap();
                let t = q.tile(&g).unwrap();
                let bb = g.block_bytes();
                let scales: Vec<f16> = t[g.scales_offset().unwrap()..]
                    .chunks_exact(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]))
                    .collect();
                let (mut got, mut want) = ([0.0f32; SUPER_BLOCK], [0.0f32; SUPER_BLOCK]);
                for row in 0..rows {
                    for b in 0..g.blocks_per_row() {
                        let i = row * g.blocks_per_row() + b;
                        let block = g.block_quants(&t, row, b);
                        assert_eq!(&block[..bb], &q.quants[i * bb..(i + 1) * bb]);
                        assert!(block[bb..].iter().all(|&v| v == 0));
                        g.dequantize_at(&t, &scales, row, b, &mut got);
                        q.dequantize_block(i, &mut want);
                        assert_eq!(got.map(f32::to_bits), want.map(f32::to_bits));
                    }
                }
            }
        }
    }

    #[test]
    fn gguf_blocks_split_and_join_back() {
        for kind in BlockType::ALL {
            let raw: Vec<u8> = (0..kind.gguf_bytes()).map(|i| (i * 7 + 3) as u8).collect();
            let mut q = vec![0u8; kind.quant_bytes()];
            let (d, m) = kind.split_gguf(&raw, &mut q);
            let at = kind.gguf_fields_at();
            assert_eq!(d.to_le_bytes(), [raw[at], raw[at + 1]], "{kind:?}");
            if kind.fields() == 2 {
                assert_eq!(m.to_le_bytes(), [raw[at + 2], raw[at + 3]], "{kind:?}");
            }
            // The quant bytes are the others, in order.
            let rest: Vec<u8> = raw
                .iter()
                .enumerate()
                .filter(|(i, _)| !(at..at + 2 * kind.fields()).contains(i))
                .map(|(_, &v)| v)
                .collect();
            assert_eq!(q, rest, "{kind:?}");
            let mut back = vec![0u8; kind.gguf_bytes()];
            kind.join_gguf(&q, d, m, &mut back);
            assert_eq!(back, raw, "{kind:?}");
            assert_eq!(kind.quant_bytes() % LANE, 0);
            assert!(kind.quant_bytes() <= MAX_BLOCK_BYTES);
            assert_eq!(kind.dtype().block_type(), Some(kind));
        }
    }

    #[test]
    fn k_quants_read_the_bits_ggml_documents() {
        // Q4_K scales: sub-block 5 takes byte 9's low nibble and the top bits of byte 1.
        let mut s = [0u8; 12];
        s[1] = 0b1100_0000 | 7;
        s[5] = 0b0100_0000 | 9;
        s[9] = 0xA3;
        assert_eq!(scale_min_k4(&s, 1), (7, 9));
        assert_eq!(scale_min_k4(&s, 5), (0x3 | (3 << 4), 0xA | (1 << 4)));
        // Q5_K: element 32 * 3 + 5 is the high nibble of qs[32 + 5] with bit 3 of qh[5].
        let mut q = [0u8; 172];
        q[44 + 32 + 5] = 0x90;
        q[12 + 5] = 1 << 3;
        q[3] = 5; // sub-block 3's scale: byte 3 & 63
        assert_eq!(k_quant(BlockType::Q5_K, &q, 3 * 32 + 5).0, 9 | 16);
        assert_eq!(k_quant(BlockType::Q5_K, &q, 3 * 32 + 5).1, 5);
        // Q6_K: element 128 + 64 + 7 (half 1, quarter 2) is the high nibble of
        // ql[64 + 7] with bits 4..6 of qh[32 + 7], minus 32; scale 12.
        let mut q = [0u8; 208];
        q[64 + 7] = 0x50;
        q[128 + 32 + 7] = 0b10 << 4;
        q[192 + 12] = (-3i8) as u8;
        assert_eq!(
            k_quant(BlockType::Q6_K, &q, 128 + 64 + 7),
            ((5 | (2 << 4)) - 32, -3, 0)
        );
        // Q5_0: element 9 takes nibble 9 of qs and bit 1 of qh[1].
        let mut q = [0u8; 20];
        q[4 + 9] = 0x0C;
        q[1] = 0b10;
        assert_eq!(q5(&q, 9), 12 | 16);
        assert_eq!(
            block_value(DType::Q5_0, &q, f16::from_f32(0.5), f16::ZERO, 9),
            6.0
        );
    }

    #[test]
    fn geometry_rejects_what_it_cannot_describe() {
        assert!(BlockGeometry::new(4, 33, 8, DType::Q8_0).is_none());
        assert!(BlockGeometry::new(4, 288, 8, DType::Q4_K).is_none());
        assert!(BlockGeometry::new(4, 288, 8, DType::Q5_0).is_some());
        assert!(BlockGeometry::new(4, 32, 0, DType::Q8_0).is_none());
        assert!(BlockGeometry::new(4, 32, 8, DType::F32).is_none());
        assert!(BlockGeometry::new(usize::MAX, 32, 8, DType::Q4_1).is_none());
        assert!(BlockGeometry::new(0, usize::MAX - 31, 8, DType::Q4_1).is_none());
    }

    #[test]
    fn smollm2_and_gemma3_shapes_use_every_byte() {
        for kind in BlockType::ALL {
            let dtype = kind.dtype();
            for (rows, cols) in [
                (576usize, 576usize),
                (192, 576),
                (1536, 576),
                (576, 1536),
                (49152, 576),
                (640, 640),
                (2048, 640),
                (640, 2048),
                (262144, 640),
            ] {
                if !cols.is_multiple_of(kind.elems()) {
                    continue;
                }
                let g = BlockGeometry::new(rows, cols, 8, dtype).unwrap();
                assert_eq!(g.line_utilization(), 1.0, "{dtype} {rows}x{cols}");
            }
        }
    }

    #[test]
    fn quantizers_follow_llama_cpp_on_hand_checked_blocks() {
        // Q8_0: amax 31.75 -> d = 0.25, id = 4. -1.625 * 4 = -6.5 and 0.125 * 4 = 0.5
        // round half away from zero (to -7 and 1, where half-to-even gives -6 and 0).
        let mut x = [0.0f32; 32];
        x[0] = 31.75;
        x[1] = -1.625;
        x[2] = 0.125;
        let mut q = [0u8; 32];
        let (d, _) = quantize_block(DType::Q8_0, &x, &mut q);
        assert_eq!(d.to_f32(), 0.25);
        assert_eq!(
            (q[0] as i8, q[1] as i8, q[2] as i8, q[3] as i8),
            (127, -7, 1, 0)
        );
        // Q4_0: max = -4 (largest magnitude, negative) -> d = 0.5, id = 2.
        let mut x = [0.0f32; 32];
        x[0] = -4.0;
        x[1] = 3.0;
        x[17] = 1.2;
        let (d, _) = quantize_block(DType::Q4_0, &x, &mut q);
        assert_eq!(d.to_f32(), 0.5);
        // x * 2 + 8.5 truncated: -4 -> 0, 3 -> 14, 0 -> 8, 1.2 -> 10; clamp at 15.
        assert_eq!(
            (nibble(&q, 0), nibble(&q, 1), nibble(&q, 2), nibble(&q, 17)),
            (0, 14, 8, 10)
        );
        let vals: Vec<f32> = (0..32)
            .map(|j| block_value(DType::Q4_0, &q, d, f16::ZERO, j))
            .collect();
        assert_eq!((vals[0], vals[1], vals[17]), (-4.0, 3.0, 1.0));
        // Q4_1: min -1, max 2 -> d = 0.2, m = -1.
        let mut x = [0.5f32; 32];
        x[3] = -1.0;
        x[30] = 2.0;
        let (d, m) = quantize_block(DType::Q4_1, &x, &mut q);
        assert_eq!((d, m), (f16::from_f32(0.2), f16::from_f32(-1.0)));
        assert_eq!((nibble(&q, 3), nibble(&q, 30), nibble(&q, 0)), (0, 15, 8));
    }

    #[test]
    fn quantize_then_dequantize_stays_within_half_a_step() {
        let x: Vec<f32> = (0..64 * 3)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect();
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            let q = QuantData::quantize(dtype, &x, 3, 64).unwrap();
            let y = q.dequantize();
            for (blk, (xs, ys)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
                let d = q.scales[blk * dtype.scale_fields()].to_f32().abs();
                // Half a step plus the f16 rounding of d and m; Q4_0 clips the side
                // opposite its extreme at 7 steps, so a whole step there.
                let steps = if dtype == DType::Q4_0 { 1.0 } else { 0.5 };
                for (a, b) in xs.iter().zip(ys) {
                    assert!((a - b).abs() <= steps * d + 1e-2, "{dtype} {a} {b} d={d}");
                }
            }
        }
    }
}
