//! Assembling a TVL Llama model from named logical tensors: shared by the importers
//! that do not start from GGUF (llama2.c checkpoints, Hugging Face safetensors).
//!
//! The importer sets the [`ModelConfig`] and hands over each tensor under its GGUF name
//! (`token_embd.weight`, `blk.N.attn_q.weight`, ...) as row-major values, `[out, in]` for
//! a matrix, with q/k rows already in the interleaved RoPE pairing. Here the tensors
//! are checked against the shapes the config implies and written in forward-pass order:
//! matrices through the converter's `add_matrix` (the chosen `OutDType`: f32, f16, kept
//! as in the source, or quantized), norms plain f32; then the tokenizer tables and the
//! chat template.

use half::f16;
use half::slice::HalfFloatSliceExt;
use tvl_format::{ModelConfig, TensorData, TvlWriter, arch, names};

use crate::convert::{Conversion, ConvertOptions, MatrixSource, add_matrix};
use crate::error::ImportError;

/// The values of one logical tensor, row-major.
pub(crate) enum Values {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 values (kept as they are for an f16 output, widened exactly for f32).
    F16(Vec<f16>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F16(v) => v.len(),
        }
    }

    fn into_f32(self) -> Vec<f32> {
        match self {
            Self::F32(v) => v,
            Self::F16(v) => {
                let mut out = vec![0.0f32; v.len()];
                v.convert_to_f32_slice(&mut out);
                out
            }
        }
    }
}

/// Tokenizer tables in the form TVL stores them (see `tvl_format::names`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Tables {
    /// Token strings, as stored (byte-level form, or SentencePiece form with `▁`).
    pub tokens: Vec<Vec<u8>>,
    /// One score per token, or empty.
    pub scores: Vec<f32>,
    /// One type per token, or empty.
    pub types: Vec<u8>,
    /// Merges `"a b"` in rank order, or empty.
    pub merges: Vec<Vec<u8>>,
    /// The chat template (Jinja source), if any.
    pub chat_template: Option<String>,
}

/// Concatenate byte strings into (bytes, offsets[n + 1]).
fn string_table(what: &str, strings: &[Vec<u8>]) -> Result<(Vec<u8>, Vec<u32>), ImportError> {
    let total: u64 = strings.iter().map(|s| s.len() as u64).sum();
    if total > u64::from(u32::MAX) {
        return Err(ImportError::TableTooLarge {
            key: what.into(),
            bytes: total,
        });
    }
    let mut bytes = Vec::with_capacity(total as usize);
    let mut offsets = Vec::with_capacity(strings.len() + 1);
    offsets.push(0);
    for s in strings {
        bytes.extend_from_slice(s);
        offsets.push(bytes.len() as u32);
    }
    Ok((bytes, offsets))
}

impl Tables {
    fn write(&self, w: &mut TvlWriter) -> Result<(), ImportError> {
        if !self.tokens.is_empty() {
            let n = self.tokens.len();
            let (bytes, offsets) = string_table(names::TOKENS, &self.tokens)?;
            w.add_plain(names::TOKENS, &[bytes.len()], TensorData::U8(bytes))?;
            w.add_plain(names::TOKEN_OFFSETS, &[n + 1], TensorData::U32(offsets))?;
            for (what, len) in [
                (names::SCORES, self.scores.len()),
                (names::TOKEN_TYPES, self.types.len()),
            ] {
                if len != 0 && len != n {
                    return Err(ImportError::TableLength {
                        key: what.into(),
                        expected: n,
                        found: len,
                    });
                }
            }
            if !self.scores.is_empty() {
                w.add_plain(names::SCORES, &[n], TensorData::F32(self.scores.clone()))?;
            }
            if !self.types.is_empty() {
                w.add_plain(names::TOKEN_TYPES, &[n], TensorData::U8(self.types.clone()))?;
            }
        }
        if !self.merges.is_empty() {
            let (bytes, offsets) = string_table(names::MERGES, &self.merges)?;
            w.add_plain(names::MERGES, &[bytes.len()], TensorData::U8(bytes))?;
            w.add_plain(
                names::MERGE_OFFSETS,
                &[self.merges.len() + 1],
                TensorData::U32(offsets),
            )?;
        }
        if let Some(t) = self.chat_template.as_ref().filter(|t| !t.is_empty()) {
            let bytes = t.as_bytes().to_vec();
            w.add_plain(names::CHAT_TEMPLATE, &[bytes.len()], TensorData::U8(bytes))?;
        }
        Ok(())
    }
}

/// Build the TVL writer of a Llama model. `fetch(name)` gives the values of a tensor
/// (`None` if the source has no such tensor; only `output.weight` may be absent, and
/// only when `config.tied_output` is 1). `progress(done, total)` counts tensors.
pub(crate) fn assemble(
    config: ModelConfig,
    opts: &ConvertOptions,
    fetch: &mut dyn FnMut(&str) -> Result<Option<Values>, ImportError>,
    tables: &Tables,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Conversion, ImportError> {
    if opts.tile_rows == 0 || opts.block_tile_rows == 0 {
        return Err(ImportError::InvalidOption {
            reason: "tile_rows and block_tile_rows must be at least 1".into(),
        });
    }
    // The importer set the tokenizer fields too: check the whole record once more, as
    // the model will when it loads the file.
    config.validate()?;
    let mut writer = TvlWriter::new(config);
    let mut rounded_tensors = Vec::new();
    let order: Vec<arch::TensorSpec> = arch::tensors(&config).collect();
    let total = order.len();
    progress(0, total);
    for (i, arch::TensorSpec { name, shape, .. }) in order.into_iter().enumerate() {
        let tied = name == "output.weight" && config.tied_output == 1;
        let values = match fetch(&name)? {
            None if tied => {
                progress(i + 1, total);
                continue;
            }
            None => return Err(ImportError::MissingTensor { name }),
            Some(_) if tied => {
                return Err(ImportError::InvalidConfig {
                    reason: "the config ties the output head to the embedding, but the \
                             source has a separate output.weight"
                        .into(),
                });
            }
            Some(v) => v,
        };
        let dims: Vec<usize> = shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<_, _>>()
            .map_err(|_| ImportError::InvalidConfig {
                reason: format!("tensor {name}: shape {shape:?} exceeds usize"),
            })?;
        let want = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if want != Some(values.len()) {
            return Err(ImportError::InvalidConfig {
                reason: format!(
                    "tensor {name}: {} values, the config needs shape {shape:?}",
                    values.len()
                ),
            });
        }
        if let [rows, cols] = dims[..] {
            let src = match values {
                Values::F32(v) => MatrixSource::F32(v),
                Values::F16(v) => MatrixSource::F16(v),
            };
            let output_head =
                name == "output.weight" || (name == "token_embd.weight" && config.tied_output == 1);
            let exact = add_matrix(&mut writer, &name, rows, cols, src, output_head, opts)?;
            if !exact {
                rounded_tensors.push(name);
            }
        } else {
            writer.add_plain(&name, &dims, TensorData::F32(values.into_f32()))?;
        }
        progress(i + 1, total);
    }
    tables.write(&mut writer)?;
    Ok(Conversion {
        writer,
        config,
        rounded_tensors,
    })
}

/// Reorder the rows of a q or k projection (`[n_heads * head_dim, cols]`) from the
/// half-split RoPE pairing (Hugging Face: rotate `(i, i + head_dim / 2)`) to the
/// interleaved one (GGUF and run.c: rotate `(2i, 2i + 1)`), as llama.cpp's converter
/// does: within each head, output row `2i` is input row `i` and row `2i + 1` is input
/// row `i + head_dim / 2`.
pub(crate) fn half_split_to_interleaved<T: Copy>(
    w: &[T],
    n_heads: usize,
    head_dim: usize,
    cols: usize,
) -> Vec<T> {
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..n_heads {
        for i in 0..half {
            for src in [i, i + half] {
                let r = h * head_dim + src;
                out.extend_from_slice(&w[r * cols..(r + 1) * cols]);
            }
        }
    }
    out
}

/// The inverse of [`half_split_to_interleaved`].
pub fn interleaved_to_half_split<T: Copy>(
    w: &[T],
    n_heads: usize,
    head_dim: usize,
    cols: usize,
) -> Vec<T> {
    let half = head_dim / 2;
    let mut out = Vec::with_capacity(w.len());
    for h in 0..n_heads {
        for parity in 0..2 {
            for i in 0..half {
                let r = h * head_dim + 2 * i + parity;
                out.extend_from_slice(&w[r * cols..(r + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_permutations_invert_each_other() {
        // 2 heads of dim 6, 2 columns: row r holds [r, r].
        let w: Vec<u32> = (0..12).flat_map(|r| [r, r]).collect();
        let inter = half_split_to_interleaved(&w, 2, 6, 2);
        let rows: Vec<u32> = inter.chunks(2).map(|c| c[0]).collect();
        assert_eq!(rows, [0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11]);
        assert_eq!(interleaved_to_half_split(&inter, 2, 6, 2), w);
    }
}
