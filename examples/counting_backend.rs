//! Plug your own kernel backend into the model: this one wraps the detected backend
//! and counts the weight bytes each matrix-vector product streams and the calls of every
//! other op, then checks the total against what the model says a token costs.
//!
//! ```text
//! cargo run --release --example counting_backend -- [MODEL.tvl] [PROMPT]
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vtc_kernels::{Backend, Matrix, Q8Vec, RopeStyle};
use vtc_model::{GenerateOptions, Model, Session};

/// Any `Backend` can be wrapped: the model only sees the trait.
struct Counting<B> {
    inner: B,
    matvec_bytes: AtomicU64,
    matvec_calls: AtomicU64,
    other_calls: AtomicU64,
}

impl<B: Backend> Counting<B> {
    fn new(inner: B) -> Self {
        Self {
            inner,
            matvec_bytes: AtomicU64::new(0),
            matvec_calls: AtomicU64::new(0),
            other_calls: AtomicU64::new(0),
        }
    }

    fn tick(&self) {
        self.other_calls.fetch_add(1, Relaxed);
    }
}

impl<B: Backend> Backend for Counting<B> {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn matvec(&self, w: &Matrix<'_>, x: &[f32], y: &mut [f32]) {
        self.matvec_bytes.fetch_add(w.nbytes() as u64, Relaxed);
        self.matvec_calls.fetch_add(1, Relaxed);
        self.inner.matvec(w, x, y)
    }
    fn quantize_q8(&self, x: &[f32], out: &mut Q8Vec) {
        self.tick();
        self.inner.quantize_q8(x, out)
    }
    fn matvec_q8(&self, w: &Matrix<'_>, x: &Q8Vec, y: &mut [f32]) {
        self.matvec_bytes.fetch_add(w.nbytes() as u64, Relaxed);
        self.matvec_calls.fetch_add(1, Relaxed);
        self.inner.matvec_q8(w, x, y)
    }
    fn rmsnorm(&self, out: &mut [f32], x: &[f32], weight: &[f32], eps: f32) {
        self.tick();
        self.inner.rmsnorm(out, x, weight, eps)
    }
    fn softmax(&self, x: &mut [f32]) {
        self.tick();
        self.inner.softmax(x)
    }
    fn rope(&self, x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], style: RopeStyle) {
        self.tick();
        self.inner.rope(x, head_dim, cos, sin, style)
    }
    fn swiglu(&self, gate: &mut [f32], up: &[f32]) {
        self.tick();
        self.inner.swiglu(gate, up)
    }
    fn geglu(&self, gate: &mut [f32], up: &[f32]) {
        self.tick();
        self.inner.geglu(gate, up)
    }
    fn attn_scores(&self, q: &[f32], keys: &[f32], stride: usize, scale: f32, out: &mut [f32]) {
        self.tick();
        self.inner.attn_scores(q, keys, stride, scale, out)
    }
    fn attn_values(&self, probs: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
        self.tick();
        self.inner.attn_values(probs, values, stride, out)
    }
    fn add(&self, y: &mut [f32], x: &[f32]) {
        self.tick();
        self.inner.add(y, x)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = match args.next() {
        Some(p) => p.into(),
        None => vtc_import::fetch::ensure_default_model(
            vtc_import::convert::OutDType::Q4_1,
            &mut |m: &str| eprintln!("{m}"),
        )?,
    };
    let prompt = args
        .next()
        .unwrap_or_else(|| "The capital of France is".to_string());
    let file = tvl_loader::TvlFile::open(&path)?;
    let model = Model::load(&file)?;
    let backend = Counting::new(vtc_kernels::select(None)?);
    let ids = model.tokenizer().encode_prompt(&prompt)?;
    let opts = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    let mut session = Session::new(&model, &backend, ids.len() + opts.max_tokens)?;
    let text: String = session
        .generate(&ids, opts)?
        .map(|t| t.map(|t| t.text))
        .collect::<Result<_, _>>()?;
    let positions = session.pos() as u64;
    println!("{prompt}{text}");
    let bytes = backend.matvec_bytes.load(Relaxed);
    println!(
        "{positions} forward passes on {}: {} matvecs streaming {:.1} MB per token \
         (the model says {:.1} MB of weights per token, norms included), {} other op calls",
        backend.inner.name(),
        backend.matvec_calls.load(Relaxed),
        bytes as f64 / positions as f64 / 1e6,
        model.weight_bytes_per_token() as f64 / 1e6,
        backend.other_calls.load(Relaxed),
    );
    Ok(())
}
