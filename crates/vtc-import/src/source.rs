//! Which importer a path needs, and converting any supported input to a TVL file.
//!
//! | input | detected by | importer |
//! |---|---|---|
//! | GGUF file | its first four bytes are `GGUF` | [`crate::convert`] |
//! | Hugging Face directory | it is a directory (`config.json`, safetensors, `tokenizer.json`) | [`crate::hf`] |
//! | llama2.c checkpoint | anything else (`model.bin`; its vocabulary via `tokenizer`) | [`crate::llama2c`] |

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::convert::{Conversion, ConvertOptions, ConvertReport, convert_file, write_atomically};
use crate::error::ImportError;

/// The kinds of model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// A GGUF file.
    Gguf,
    /// A Hugging Face model directory (safetensors).
    HfDir,
    /// A llama2.c checkpoint.
    Llama2c,
}

impl InputKind {
    /// A name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gguf => "GGUF",
            Self::HfDir => "Hugging Face safetensors directory",
            Self::Llama2c => "llama2.c checkpoint",
        }
    }
}

/// Decide the kind of `input` (see the module table).
pub fn detect(input: &Path) -> Result<InputKind, ImportError> {
    let io = |source| ImportError::Io {
        action: "cannot read",
        path: input.to_path_buf(),
        source,
    };
    if std::fs::metadata(input).map_err(io)?.is_dir() {
        return Ok(InputKind::HfDir);
    }
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(input).map_err(io)?;
    let mut got = 0;
    while got < 4 {
        match f.read(&mut magic[got..]).map_err(io)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(if got == 4 && magic == crate::gguf::MAGIC {
        InputKind::Gguf
    } else {
        InputKind::Llama2c
    })
}

/// Convert `input` (of any [`InputKind`]) into the TVL file `output`, written
/// atomically. `tokenizer` is the `tokenizer.bin` of a llama2.c checkpoint (an error for
/// the other kinds, which carry their tokenizer); without it a llama2.c model gets no
/// tokenizer.
pub fn convert_any(
    input: &Path,
    output: &Path,
    tokenizer: Option<&Path>,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(InputKind, ConvertReport), ImportError> {
    let kind = detect(input)?;
    if tokenizer.is_some() && kind != InputKind::Llama2c {
        return Err(ImportError::InvalidOption {
            reason: format!(
                "a separate tokenizer is for llama2.c checkpoints; {} is a {}, which carries its own",
                input.display(),
                kind.name()
            ),
        });
    }
    let conv: Conversion = match kind {
        InputKind::Gguf => return Ok((kind, convert_file(input, output, opts, progress)?)),
        InputKind::HfDir => crate::hf::convert_dir(input, opts, progress)?,
        InputKind::Llama2c => crate::llama2c::convert_file(input, tokenizer, opts, progress)?,
    };
    let bytes_written = write_atomically(output, |out| Ok(conv.writer.write_to(out)?))?;
    Ok((
        kind,
        ConvertReport {
            output: PathBuf::from(output),
            config: conv.config,
            tensors: conv.writer.len(),
            bytes_written,
            rounded_tensors: conv.rounded_tensors,
        },
    ))
}
