//! Multi-threaded matrix products over any backend.
//!
//! [`Threaded`] wraps a [`Backend`] and a persistent pool of `threads - 1` workers
//! plus the calling thread (built once). Each matrix-vector product's row tiles are
//! cut into contiguous runs ([`Matrix::tiles`]), a few per thread, which the threads
//! claim (each its own contiguous share first, in order) and compute with the wrapped
//! backend; a batched product ([`Backend::matmul`]) is cut by inputs instead, so each
//! part reads every weight once for its share of the batch. Every output is computed
//! by the same kernel from the same data whatever the split and whoever claims it, so
//! the results are bit-identical for any thread count. Independent chunks of work
//! ([`Backend::for_each_chunk`], the attention heads) are cut into contiguous runs the
//! same way. The other operations are small and run on the calling thread.
//!
//! The calling thread claims parts like any worker (see the `pool` module), so a
//! worker whose core is busy with another process costs at most the part it has
//! claimed: the rest of the product goes to the threads that are running, and a busy
//! core slows a token down towards the 1-thread speed instead of stalling it.

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use crate::pool::Pool;
use crate::{Backend, KernelError, Matrix, Q8Vec, RopeStyle, batch_len};

/// Parts per thread of a matrix-vector product: more than one, so a thread that
/// finishes early (or runs alone while another is descheduled) takes over parts the
/// others have not claimed.
const PARTS_PER_THREAD: usize = 4;

/// Parts per thread of a batched product (see `Threaded::batch_parts`).
const BATCH_PARTS_PER_THREAD: usize = 4;

/// Parts per thread of a batched float product (split by row tiles): one, so each
/// thread's share is one run of the matrix, whose row blocks the GEMM fetches ahead
/// while it computes the previous one (smaller parts each start with a cold block).
const GEMM_PARTS_PER_THREAD: usize = 2;

/// Fewest inputs per part of a batched product: the quantized kernels' register block.
const MIN_BATCH_PART: usize = 4;

/// Fewest floats of a [`Backend::for_each_chunk`] buffer worth splitting over threads:
/// below this the work (for attention heads, about `head_dim` multiply-adds per float)
/// costs less than waking another thread.
const MIN_PARALLEL_CHUNK_FLOATS: usize = 2048;

/// Products forked together by [`Backend::matvecs`] at most (more are run in groups
/// of this many).
const MAX_GROUP: usize = 4;

/// Parts of one job at most (they live on the stack: no allocation per product).
const MAX_PARTS: usize = 64;

/// The parts of one job, each taken by the thread that claims its index. (The claim
/// already makes every index one thread's; the lock makes handing over the `&mut`
/// output safe code, at the cost of an uncontended lock per part.)
type Slots<T> = [Mutex<Option<T>>; MAX_PARTS];

fn slots<T>() -> Slots<T> {
    std::array::from_fn(|_| Mutex::new(None))
}

/// A backend whose matrix-vector products run on `threads` threads.
pub struct Threaded<B> {
    inner: B,
    pool: Pool,
    threads: usize,
    /// The parts' outputs of a batched float product (see `Threaded::matmul`), kept
    /// between products so a prompt allocates it once.
    scratch: Mutex<Vec<f32>>,
}

impl<B: Backend> Threaded<B> {
    /// Wrap `inner`, with a pool of `threads` threads (at least 1; the calling thread
    /// is one of them).
    pub fn new(inner: B, threads: usize) -> Result<Self, KernelError> {
        if threads == 0 {
            return Err(KernelError::Threads(
                "thread count must be at least 1".into(),
            ));
        }
        let pool = Pool::new(threads - 1).map_err(|e| KernelError::Threads(e.to_string()))?;
        Ok(Self {
            inner,
            pool,
            threads,
            scratch: Mutex::new(Vec::new()),
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

    /// `f` over the first `n` parts of `slots`, on all threads.
    fn run<T: Send>(&self, slots: &Slots<T>, n: usize, f: &(dyn Fn(T) + Sync)) {
        self.pool.run(n, &|i| {
            let part = slots[i]
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(part) = part {
                f(part)
            }
        });
    }

    /// The products of `products` (matrices reading one input), in groups of up to
    /// [`MAX_GROUP`], each group cut into about `threads * PARTS_PER_THREAD` runs of
    /// tiles of equal length (`f(sub_matrix, its_rows_of_y)` per run), so a group
    /// costs one job.
    fn split_products(
        &self,
        products: &mut [(&Matrix<'_>, &mut [f32])],
        f: &(dyn Fn(&Matrix<'_>, &mut [f32]) + Sync),
    ) {
        let want = if self.threads == 1 {
            1
        } else {
            (self.threads * PARTS_PER_THREAD).min(MAX_PARTS - MAX_GROUP)
        };
        for group in products.chunks_mut(MAX_GROUP) {
            let tiles: usize = group.iter().map(|(w, _)| w.n_tiles()).sum();
            // At most `want + group.len()` runs in all.
            let per = tiles.div_ceil(want).max(1);
            let mut slots = slots();
            let mut n = 0;
            for (w, y) in group.iter_mut() {
                assert_eq!(y.len(), w.rows(), "matvec: y length");
                let mut rest: &mut [f32] = y;
                let mut first = 0;
                // At least one run, so an empty product's shapes are still checked.
                loop {
                    let sub = w.tiles(first, per);
                    let (mine, more) = std::mem::take(&mut rest).split_at_mut(sub.rows());
                    *slots[n].get_mut().unwrap_or_else(PoisonError::into_inner) = Some((sub, mine));
                    n += 1;
                    rest = more;
                    first += per;
                    if first >= w.n_tiles() {
                        break;
                    }
                }
            }
            self.run(&slots, n, &|(w, y)| f(&w, y));
        }
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

    /// `f(inputs, their rows of y)` over `parts` contiguous ranges of about equal
    /// length of a batch's `n` inputs (`y` holds `m` outputs per input); one part
    /// (`f(0..n, y)`) when `n` or `parts` is below 2.
    fn split_batch(
        &self,
        n: usize,
        m: usize,
        y: &mut [f32],
        parts: usize,
        f: &(dyn Fn(Range<usize>, &mut [f32]) + Sync),
    ) {
        let parts = parts.min(n).clamp(1, MAX_PARTS);
        let mut slots = slots();
        let mut rest = y;
        let mut start = 0;
        for (p, slot) in slots.iter_mut().enumerate().take(parts) {
            let end = n * (p + 1) / parts;
            let (mine, more) = std::mem::take(&mut rest).split_at_mut((end - start) * m);
            *slot.get_mut().unwrap_or_else(PoisonError::into_inner) = Some((start..end, mine));
            rest = more;
            start = end;
        }
        self.run(&slots, parts, &|(r, ys)| f(r, ys));
    }
}

impl<B: Backend> Backend for Threaded<B> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn threads(&self) -> usize {
        self.threads
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

    /// A batch of one is split by rows ([`Backend::matvec`]); a larger batch by row
    /// tiles too: each thread computes its runs of tiles for every input, so the
    /// threads read disjoint parts of the matrix (the float GEMM is compute-bound, but
    /// split by inputs every thread would stream the whole matrix, and two threads
    /// reading it twice over take a third of the shared bandwidth at f32). Each part
    /// writes its `n x rows` block to the scratch buffer, copied into `y` after.
    fn matmul(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) {
        let n = batch_len(w, x.len(), y.len(), "matmul");
        if n == 1 {
            return self.matvec(w, x, y);
        }
        if self.threads == 1 || n == 0 {
            return self.inner.matmul(w, x, y);
        }
        let m = w.rows();
        let want = (self.threads * GEMM_PARTS_PER_THREAD).min(MAX_PARTS);
        let per = w.n_tiles().div_ceil(want).max(1);
        let mut scratch = self.scratch.lock().unwrap_or_else(PoisonError::into_inner);
        if scratch.len() < n * m {
            scratch.resize(n * m, 0.0);
        }
        let mut slots = slots();
        let mut parts = 0;
        let mut rest = &mut scratch[..n * m];
        let mut first = 0;
        while first < w.n_tiles() {
            let sub = w.tiles(first, per);
            let (mine, more) = std::mem::take(&mut rest).split_at_mut(n * sub.rows());
            *slots[parts]
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner) = Some((sub, mine));
            parts += 1;
            rest = more;
            first += per;
        }
        self.run(&slots, parts, &|(sub, out)| self.inner.matmul(&sub, x, out));
        // Part `p` holds rows `row0 .. row0 + sub_rows` of every input, input-major.
        let (mut row0, mut at) = (0, 0);
        first = 0;
        while first < w.n_tiles() {
            let sub_rows = w.tiles(first, per).rows();
            for (i, yi) in y.chunks_exact_mut(m).enumerate() {
                let src = at + i * sub_rows;
                yi[row0..row0 + sub_rows].copy_from_slice(&scratch[src..src + sub_rows]);
            }
            row0 += sub_rows;
            at += n * sub_rows;
            first += per;
        }
    }

    /// Split as [`Threaded::matmul`].
    fn matmul_q8(&self, w: &Matrix<'_>, x: &[Q8Vec], y: &mut [f32]) {
        assert_eq!(y.len(), x.len() * w.rows(), "matmul_q8: y length");
        if let [x1] = x {
            return self.matvec_q8(w, x1, y);
        }
        self.split_batch(x.len(), w.rows(), y, self.batch_parts(x.len()), &|r, ys| {
            self.inner.matmul_q8(w, &x[r], ys)
        });
    }

    /// The chunks cut into a few contiguous runs per thread (one run for a buffer under
    /// `MIN_PARALLEL_CHUNK_FLOATS`), split like the inputs of a batch.
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
            self.threads * PARTS_PER_THREAD
        };
        self.split_batch(n, chunk_len, buf, parts, &|r, part| {
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

    fn geglu(&self, gate: &mut [f32], up: &[f32]) {
        self.inner.geglu(gate, up)
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
