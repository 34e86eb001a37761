//! The scalar reference backend. Plain Rust, no intrinsics; the lane-interleaved
//! accumulation ([`LANES`] partial sums) fixes the reduction order that other backends
//! reproduce, and lets the compiler vectorize the inner loops.

use half::slice::HalfFloatSliceExt;

use crate::{Backend, Geometry, LANES, Matrix, Q8Vec, RopeStyle, WeightSlice, quant};

/// The scalar reference backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalar;

/// Combine lane partial sums in a fixed pairwise order:
/// `((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7))`, the order a SIMD horizontal
/// reduction by halving produces.
#[inline]
pub fn hsum(l: &[f32; LANES]) -> f32 {
    let a = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let b = [a[0] + a[2], a[1] + a[3]];
    b[0] + b[1]
}

/// Accumulate `w[i] * x[i]` into lane `i % LANES`.
#[inline(always)]
fn dot_lanes(acc: &mut [f32; LANES], w: &[f32], x: &[f32]) {
    let n = w.len().min(x.len());
    let (w, x) = (&w[..n], &x[..n]);
    let mut wc = w.chunks_exact(LANES);
    let mut xc = x.chunks_exact(LANES);
    for (wv, xv) in (&mut wc).zip(&mut xc) {
        for l in 0..LANES {
            acc[l] += wv[l] * xv[l];
        }
    }
    for (l, (a, b)) in wc.remainder().iter().zip(xc.remainder()).enumerate() {
        acc[l] += a * b;
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0; LANES];
    dot_lanes(&mut acc, a, b);
    hsum(&acc)
}

impl Backend for Scalar {
    fn name(&self) -> &'static str {
        "scalar"
    }

    fn quantize_q8(&self, x: &[f32], out: &mut Q8Vec) {
        quant::quantize_ref(x, out);
    }

    fn matvec_q8(&self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
        let a = quant::check(w, x, y);
        quant::matvec_ref(&a, x, y);
    }

    fn matvec(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) {
        let Geometry::Tiled(g) = *w.geometry() else {
            panic!("matvec of a block-quantized matrix: use matvec_q8");
        };
        assert_eq!(x.len(), g.cols, "matvec: x length");
        assert_eq!(y.len(), g.rows, "matvec: y length");
        let (r_per_tile, chunk, te) = (g.tile_rows, g.chunk, g.tile_elems());
        let mut wide = [0.0f32; tvl_format::ALIGN / 2];
        for (row, out) in y.iter_mut().enumerate() {
            let base = (row / r_per_tile) * te + (row % r_per_tile) * chunk;
            let mut acc = [0.0f32; LANES];
            for (k, xs) in x.chunks(chunk).enumerate() {
                let start = base + k * r_per_tile * chunk;
                match w.data() {
                    WeightSlice::F32(s) => dot_lanes(&mut acc, &s[start..start + chunk], xs),
                    WeightSlice::F16(s) => {
                        let ws = &mut wide[..chunk];
                        s[start..start + chunk].convert_to_f32_slice(ws);
                        dot_lanes(&mut acc, ws, xs);
                    }
                    WeightSlice::Quant(_) => unreachable!("quantized data has a block geometry"),
                }
            }
            *out = hsum(&acc);
        }
    }

    fn rmsnorm(&self, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        assert_eq!(out.len(), x.len(), "rmsnorm: out length");
        assert_eq!(weight.len(), x.len(), "rmsnorm: weight length");
        if x.is_empty() {
            return;
        }
        let ss = dot(x, x) / x.len() as f32;
        let inv = 1.0 / (ss + eps).sqrt();
        for ((o, &v), &g) in out.iter_mut().zip(x).zip(weight) {
            *o = v * inv * g;
        }
    }

    fn softmax(&self, x: &mut [f32]) {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f32;
        for v in x.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in x.iter_mut() {
            *v *= inv;
        }
    }

    fn rope(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle) {
        assert!(
            head_dim.is_multiple_of(2) && head_dim > 0,
            "rope: head_dim must be even"
        );
        assert_eq!(x.len() % head_dim, 0, "rope: x length");
        let half = head_dim / 2;
        assert!(cos.len() == half && sin.len() == half, "rope: table length");
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (a, b) = match style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::HalfSplit => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }

    fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
        assert_eq!(gate.len(), up.len(), "swiglu: lengths");
        for (g, &u) in gate.iter_mut().zip(up) {
            *g = *g / (1.0 + (-*g).exp()) * u;
        }
    }

    fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
        let n = out.len();
        if n == 0 {
            return;
        }
        assert!(
            stride >= q.len() && keys.len() >= (n - 1) * stride + q.len(),
            "attn_scores: keys length"
        );
        for (t, o) in out.iter_mut().enumerate() {
            *o = dot(q, &keys[t * stride..t * stride + q.len()]) * scale;
        }
    }

    fn attn_values(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        let (n, d) = (probs.len(), out.len());
        out.fill(0.0);
        if n == 0 {
            return;
        }
        assert!(
            stride >= d && values.len() >= (n - 1) * stride + d,
            "attn_values: values length"
        );
        for (t, &p) in probs.iter().enumerate() {
            for (o, &v) in out.iter_mut().zip(&values[t * stride..t * stride + d]) {
                *o += p * v;
            }
        }
    }

    fn add(&self, y: &mut [f32], x: &[f32]) {
        assert_eq!(y.len(), x.len(), "add: lengths");
        for (a, &b) in y.iter_mut().zip(x) {
            *a += b;
        }
    }
}
