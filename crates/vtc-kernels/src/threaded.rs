//! Multi-threaded matrix products over any backend.
//!
//! [`Threaded`] wraps a [`Backend`] and a persistent thread pool (rayon, built once).
//! Each matrix-vector product's row tiles are cut into `threads` contiguous ranges
//! ([`Matrix::tiles`]), computed by the wrapped backend on different threads; a batched
//! product ([`Backend::matmul`]) is cut by inputs instead, so each thread reads every
//! weight once for its share of the batch. Every output is computed by the same kernel
//! from the same data whatever the split, so the results are bit-identical for any
//! thread count. Independent chunks of work ([`Backend::for_each_chunk`], the attention
//! heads) are cut into one contiguous run per thread the same way. The other
//! operations are small and run on the calling thread.
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

/// Fewest floats of a [`Backend::for_each_chunk`] buffer worth splitting over threads:
/// below this the work (for attention heads, about `head_dim` multiply-adds per float)
/// costs less than waking another thread.
const MIN_PARALLEL_CHUNK_FLOATS: usize = 2048;

/// Products forked together by [`Backend::matvecs`] at most (more are run in groups
/// of this many).
const MAX_GROUP: usize = 4;

/// Products of one input being split over threads: sub-matrices and their outputs.
type Group<'w, 'y> = [Option<(Matrix<'w>, &'y mut [f32])>; MAX_GROUP];

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

    /// The products of `products` (matrices reading one input), each cut into
    /// `threads` contiguous tile ranges: thread `i` computes range `i` of every
    /// product (`f(sub_matrix, its_rows_of_y)`), so a group costs one fork.
    fn split_products(
        &self,
        products: &mut [(&Matrix<'_>, &mut [f32])],
        f: &(dyn Fn(&Matrix<'_>, &mut [f32]) + Sync),
    ) {
        for chunk in products.chunks_mut(MAX_GROUP) {
            let mut group = Group::default();
            for (slot, (w, y)) in group.iter_mut().zip(chunk.iter_mut()) {
                assert_eq!(y.len(), w.rows(), "matvec: y length");
                *slot = Some((**w, &mut **y));
            }
            self.split_group(group, self.threads, f);
        }
    }

    /// `f` over every product of `group`, each cut into `parts` contiguous tile ranges
    /// (in proportion), forked in halves with `rayon::join`.
    fn split_group(
        &self,
        group: Group<'_, '_>,
        parts: usize,
        f: &(dyn Fn(&Matrix<'_>, &mut [f32]) + Sync),
    ) {
        let tiles = group.iter().flatten().map(|(w, _)| w.n_tiles()).max();
        if parts <= 1 || tiles.unwrap_or(0) < 2 {
            for (w, y) in group.into_iter().flatten() {
                f(&w, y);
            }
            return;
        }
        let left_parts = parts / 2;
        let (mut left, mut right) = (Group::default(), Group::default());
        for ((p, l), r) in group.into_iter().zip(&mut left).zip(&mut right) {
            let Some((w, y)) = p else { continue };
            // Tiles proportional to the parts on each side.
            let n_tiles = w.n_tiles();
            let left_tiles = (n_tiles * left_parts).div_ceil(parts);
            let (wl, wr) = (w.tiles(0, left_tiles), w.tiles(left_tiles, n_tiles));
            let (yl, yr) = y.split_at_mut(wl.rows());
            // A product too small to reach one side stays whole on the other (an
            // empty one on the left, where its shapes are still checked).
            *l = (wl.rows() > 0 || n_tiles == 0).then_some((wl, yl));
            *r = (wr.rows() > 0).then_some((wr, yr));
        }
        rayon::join(
            || self.split_group(left, left_parts, f),
            || self.split_group(right, parts - left_parts, f),
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
        self.split_products(&mut [(w, y)], &|m, ys| self.inner.matvec(m, x, ys));
    }

    fn quantize_q8(&self, x: &[f32], out: &mut Q8Vec) {
        self.inner.quantize_q8(x, out)
    }

    fn matvec_q8(&self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
        self.split_products(&mut [(w, y)], &|m, ys| self.inner.matvec_q8(m, x, ys));
    }

    /// All the products in one fork: each thread computes its range of every one.
    fn matvecs(&self, x: &[f32], xq: &Q8Vec, products: &mut [(&Matrix<'_>, &mut [f32])]) {
        self.split_products(products, &|m, ys| crate::product(&self.inner, m, x, xq, ys));
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

    /// The chunks cut into `threads` contiguous runs (none for a buffer under
    /// [`MIN_PARALLEL_CHUNK_FLOATS`]), forked like the inputs of a batch.
    fn for_each_chunk(
        &self,
        buf: &mut [f32],
        chunk_len: usize,
        f: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) {
        let n = crate::chunks(buf, chunk_len).len();
        let parts = if buf.len() < MIN_PARALLEL_CHUNK_FLOATS {
            1
        } else {
            self.threads.min(n)
        };
        self.split_batch(0..n, chunk_len, buf, parts, &|r, part| {
            for (c, i) in part.chunks_exact_mut(chunk_len).zip(r) {
                f(i, c);
            }
        });
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
