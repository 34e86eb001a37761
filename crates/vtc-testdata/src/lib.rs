//! # vtc-testdata
//!
//! Deterministic fixture builders shared by the workspace's test suites and by the
//! cargo-fuzz workspace in `fuzz/` (its targets and `seedgen`, which writes
//! `fuzz/seeds/`). Not published; nothing in the runtime depends on it.
//!
//! Everything here produces plain data: bytes of input files (GGUF, llama2.c
//! checkpoints and `tokenizer.bin`, safetensors), strings, `Vec`s, paths. It depends
//! on none of the workspace's own crates, so any of them can take it as a
//! dev-dependency without a dependency cycle (and without a second copy of its types).
//! The one place where a fixture meets a crate's type, the tokenizer tables, goes
//! through the [`tokenizer_data!`] macro, which expands in the caller's crate.
//!
//! | module | what |
//! |---|---|
//! | [`gguf`] | a GGUF writer ([`gguf::GgufBuilder`]), random tensor data of every ggml type, the tiny Llama GGUF |
//! | [`llama2c`] | llama2.c headers (legacy and versioned), legacy checkpoints, `tokenizer.bin` files |
//! | [`hf`] | the tensor names and shapes of a Hugging Face Llama, safetensors files |
//! | [`tokenizer`] | the handmade SentencePiece and byte-level BPE vocabularies |
//! | [`alloc`] | a counting global allocator type (the `#[global_allocator]` static stays in each test binary) |
//! | this page | [`Rng`], a seeded PRNG; [`golden_dir`], the shared reference files |
//!
//! Every builder is deterministic: the same arguments give the same bytes on every
//! machine and every run (the fuzz seeds are committed and must not change when they
//! are regenerated).

use std::path::PathBuf;

pub mod alloc;
pub mod gguf;
pub mod hf;
pub mod llama2c;
pub mod tokenizer;

/// xorshift64*: deterministic test data without extra dependencies. The state must not
/// be 0 (it would stay 0).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// The shared golden directory (reference models, tokenizer cases and outputs the
/// tests compare against): `$VTC_GOLDEN`, else `../shared/golden` beside the checkout.
/// Panics (failing the test) with a clear message when it is missing: a reference test
/// that cannot find its reference must not pass.
pub fn golden_dir() -> PathBuf {
    let dir = std::env::var_os("VTC_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden")
        });
    assert!(
        dir.join("README.md").is_file(),
        "golden reference files not found at {}: they hold the reference models and \
         outputs these tests compare against (set VTC_GOLDEN to their location)",
        dir.display()
    );
    dir
}

/// A file of the shared data directory beside the golden one (`golden_dir()/../data`),
/// such as `llama2c-tokenizer.bin` (the Llama 2 vocabulary of llama2.c). Panics when the
/// file is missing.
pub fn shared_data(name: &str) -> PathBuf {
    let p = golden_dir().join("../data").join(name);
    assert!(p.is_file(), "{} not found", p.display());
    p
}
