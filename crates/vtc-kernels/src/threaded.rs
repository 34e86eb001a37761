//! Multi-threaded matrix products over any backend.
//!
//! [`Threaded`] wraps a [`Backend`] and a persistent thread pool (rayon, built once).
//! Each matrix-vector product's row tiles are cut into `threads` contiguous ranges
//! ([`Matrix::tiles`]), computed by the wrapped backend on different threads; a batched
//! product ([`Backend::matmul`]) is cut by inputs instead, so each thread reads every
//! weight once for its share of the batch. Every output is computed by the same kernel
//! from the same data whatever the split, so the results are bit-identical for any
//! thread count. The other operations are small and
//! run on the calling thread.
//!
//! [`Backend::scope`] runs a whole forward pass inside the pool, so the per-product
//! fork/join is rayon's in-pool `join` (stack-allocated jobs, no thread spawned, no
//! allocation); a product whose second half was not yet picked up by another worker
//! (for example because that core is busy with another process) is taken back and run
//! by the calling thread, so a busy core slows a token down to about the 1-thread
//! speed instead of stalling it.

use std::ops::Range;

use rayon::ThreadPool;

use crate::{Backend, KernelError, Matrix, Q8Vec, RopeStyle, batch_len};

/// Parts per thread of a batched product (see `Threaded::batch_parts`).
const BATCH_PARTS_PER_THREAD: usize = 4;

/// Fewest inputs per part of a batched product: the quantized kernels' register block.
const MIN_BATCH_PART: usize = 4;

/// A backend whose matrix-vector products run on `threads` threads.
pub struct Threaded<B> {
    inner: B,
    pool: ThreadPool,
    threads: usize,
}

impl<B: Backend> Threaded<B> {
    /// Wrap `inner`, with a pool of `threads` threads (at least 1).
    pub fn new(inner: B, threads: usize) -> Result<Self, KernelError> {
        if threads == 0 {
            return Err(KernelError::Threads(
                "thread count must be at least 1".into(),
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("vtc-worker-{i}"))
            .build()
            .map_err(|e| KernelError::Threads(e.to_string()))?;
        Ok(Self {
            inner,
            pool,
            threads,
        })
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// `f(sub_matrix, its_rows_of_y)` over `parts` contiguous tile ranges, forked in
    /// halves with `rayon::join`.
    fn split(
        &self,
        w: &Matrix<'_>,
        y: &mut [f32],
        parts: usize,
        f: &(dyn Fn(&Matrix<'_>, &mut [f32]) + Sync),
    ) {
        let n_tiles = w.n_tiles();
        if parts <= 1 || n_tiles < 2 {
            f(w, y);
            return;
        }
        let left_parts = parts / 2;
        // Tiles proportional to the parts on each side.
        let left_tiles = (n_tiles * left_parts).div_ceil(parts);
        let (l, r) = (w.tiles(0, left_tiles), w.tiles(left_tiles, n_tiles));
        let (yl, yr) = y.split_at_mut(l.rows());
        rayon::join(
            || self.split(&l, yl, left_parts, f),
            || self.split(&r, yr, parts - left_parts, f),
        );
    }

    /// Parts a batch of `n` inputs is cut into: [`BATCH_PARTS_PER_THREAD`] per thread,
    /// each of at least [`MIN_BATCH_PART`] inputs where the batch allows. More parts
    /// than threads let a thread that finishes early take over parts another thread
    /// has not started (for example one sharing its core with another process), at the
    /// cost of reading the weights once more per part.
    fn batch_parts(&self, n: usize) -> usize {
        (self.threads * BATCH_PARTS_PER_THREAD)
            .min(n / MIN_BATCH_PART)
            .max(self.threads)
    }

    /// `f(inputs, their rows of y)` over `parts` contiguous ranges of a batch's `n`
    /// inputs (`y` holds `m` outputs per input), forked in halves with `rayon::join`.
    fn split_batch(
        &self,
        inputs: Range<usize>,
        m: usize,
        y: &mut [f32],
        parts: usize,
        f: &(dyn Fn(Range<usize>, &mut [f32]) + Sync),
    ) {
        let n = inputs.len();
        if parts <= 1 || n < 2 {
            f(inputs, y);
            return;
        }
        let left_parts = parts / 2;
        let mid = inputs.start + (n * left_parts).div_ceil(parts);
        let (yl, yr) = y.split_at_mut((mid - inputs.start) * m);
        rayon::join(
            || self.split_batch(inputs.start..mid, m, yl, left_parts, f),
            || self.split_batch(mid..inputs.end, m, yr, parts - left_parts, f),
        );
    }
}

impl<B: Backend> Backend for Threaded<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn scope(&self, f: &mut (dyn FnMut() + Send)) {
        if self.threads == 1 {
            f()
        } else {
            self.pool.install(f)
        }
    }

    fn matvec(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) {
        assert_eq!(y.len(), w.rows(), "matvec: y length");
        self.split(w, y, self.threads, &|m, ys| self.inner.matvec(m, x, ys));
    }

    fn quantize_q8(&self, x: &[f32], out: &mut Q8Vec) {
        self.inner.quantize_q8(x, out)
    }

    fn matvec_q8(&self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
        assert_eq!(y.len(), w.rows(), "matvec_q8: y length");
        self.split(w, y, self.threads, &|m, ys| self.inner.matvec_q8(m, x, ys));
    }

    /// A batch of one is split by rows ([`Backend::matvec`]); a larger batch by inputs,
    /// each thread reading the whole matrix once for its inputs.
    fn matmul(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) {
        let n = batch_len(w, x.len(), y.len(), "matmul");
        if n == 1 {
            return self.matvec(w, x, y);
        }
        let k = w.cols();
        self.split_batch(0..n, w.rows(), y, self.batch_parts(n), &|r, ys| {
            self.inner.matmul(w, &x[r.start * k..r.end * k], ys)
        });
    }

    /// Split as [`Threaded::matmul`].
    fn matmul_q8(&self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
        assert_eq!(y.len(), x.len() * w.rows(), "matmul_q8: y length");
        if let [x1] = x {
            return self.matvec_q8(w, x1, y);
        }
        self.split_batch(
            0..x.len(),
            w.rows(),
            y,
            self.batch_parts(x.len()),
            &|r, ys| self.inner.matmul_q8(w, &x[r], ys),
        );
    }

    fn rmsnorm(&self, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        self.inner.rmsnorm(out, x, weight, eps)
    }

    fn softmax(&self, x: &mut [f32]) {
        self.inner.softmax(x)
    }

    fn rope(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle) {
        self.inner.rope(x, head_dim, cos, sin, style)
    }

    fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
        self.inner.swiglu(gate, up)
    }

    fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
        self.inner.attn_scores(q, keys, stride, scale, out)
    }

    fn attn_values(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        self.inner.attn_values(probs, values, stride, out)
    }

    fn add(&self, y: &mut [f32], x: &[f32]) {
        self.inner.add(y, x)
    }
}
