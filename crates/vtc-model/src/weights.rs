//! Typed views of a model's weights, borrowed from the mapped TVL file: nothing is
//! copied or converted here.

use tvl_format::{DType, Layout};
use tvl_loader::{TensorView, TvlFile};
use vtc_kernels::{Matrix, QuantSlice, WeightSlice};

use crate::{Config, ModelError};

/// Weights of one transformer block.
#[derive(Clone, Debug)]
pub struct LayerWeights<'a> {
    /// RMSNorm gain before attention, `[dim]`.
    pub attn_norm: &'a [f32],
    /// Query projection, `[q_dim, dim]`.
    pub wq: Matrix<'a>,
    /// Key projection, `[kv_dim, dim]`.
    pub wk: Matrix<'a>,
    /// Value projection, `[kv_dim, dim]`.
    pub wv: Matrix<'a>,
    /// Attention output projection, `[dim, q_dim]`.
    pub wo: Matrix<'a>,
    /// RMSNorm gain before the feed-forward block, `[dim]`.
    pub ffn_norm: &'a [f32],
    /// SwiGLU gate projection, `[hidden_dim, dim]`.
    pub w_gate: Matrix<'a>,
    /// SwiGLU up projection, `[hidden_dim, dim]`.
    pub w_up: Matrix<'a>,
    /// Feed-forward down projection, `[dim, hidden_dim]`.
    pub w_down: Matrix<'a>,
}

/// All weights of a Llama model.
#[derive(Clone, Debug)]
pub struct Weights<'a> {
    /// Token embedding table, `[vocab, dim]` (row lookup; also the output head when tied).
    pub token_embd: Matrix<'a>,
    /// Transformer blocks.
    pub layers: Vec<LayerWeights<'a>>,
    /// Final RMSNorm gain, `[dim]`.
    pub output_norm: &'a [f32],
    /// Output head, `[vocab, dim]`.
    pub output: Matrix<'a>,
}

impl<'a> Weights<'a> {
    /// Look up and shape-check every weight of `cfg` in `file` (GGUF tensor names).
    pub fn from_tvl(file: &'a TvlFile, cfg: &Config) -> Result<Self, ModelError> {
        let (dim, hid, q, kv) = (cfg.dim, cfg.hidden_dim, cfg.q_dim(), cfg.kv_dim());
        let token_embd = matrix(file, "token_embd.weight", cfg.vocab_size, dim)?;
        let output = if cfg.tied_output {
            token_embd
        } else {
            matrix(file, "output.weight", cfg.vocab_size, dim)?
        };
        let layers = (0..cfg.n_layers)
            .map(|l| {
                let n = |s: &str| format!("blk.{l}.{s}.weight");
                Ok(LayerWeights {
                    attn_norm: vector(file, &n("attn_norm"), dim)?,
                    wq: matrix(file, &n("attn_q"), q, dim)?,
                    wk: matrix(file, &n("attn_k"), kv, dim)?,
                    wv: matrix(file, &n("attn_v"), kv, dim)?,
                    wo: matrix(file, &n("attn_output"), dim, q)?,
                    ffn_norm: vector(file, &n("ffn_norm"), dim)?,
                    w_gate: matrix(file, &n("ffn_gate"), hid, dim)?,
                    w_up: matrix(file, &n("ffn_up"), hid, dim)?,
                    w_down: matrix(file, &n("ffn_down"), dim, hid)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        Ok(Self {
            token_embd,
            layers,
            output_norm: vector(file, "output_norm.weight", dim)?,
            output,
        })
    }

    /// Bytes of weights one decode step streams: every matrix once (the embedding row
    /// lookup reads a single row and is not counted) plus the norm vectors.
    pub fn bytes_per_token(&self) -> usize {
        let norms = |l: &LayerWeights| (l.attn_norm.len() + l.ffn_norm.len()) * 4;
        self.layers
            .iter()
            .map(|l| {
                [l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down]
                    .iter()
                    .map(Matrix::nbytes)
                    .sum::<usize>()
                    + norms(l)
            })
            .sum::<usize>()
            + self.output.nbytes()
            + self.output_norm.len() * 4
    }
}

fn shape_err(v: &TensorView<'_>, want: Vec<usize>) -> ModelError {
    ModelError::TensorShape {
        name: v.name().to_string(),
        want,
        got: v.shape().to_vec(),
    }
}

/// A weight matrix `[rows, cols]`: row-tiled f32/f16 or block-tiled Q8_0/Q4_0/Q4_1.
fn matrix<'a>(
    file: &'a TvlFile,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<Matrix<'a>, ModelError> {
    let v = file.tensor(name)?;
    if v.shape() != [rows, cols] {
        return Err(shape_err(&v, vec![rows, cols]));
    }
    let kind = || ModelError::TensorKind {
        name: name.to_string(),
        dtype: v.dtype(),
        layout: v.layout(),
        want: "a row-tiled f32/f16 or block-tiled q8_0/q4_0/q4_1 matrix",
    };
    let data = match (v.layout(), v.dtype()) {
        (Layout::RowTiled, DType::F32) => WeightSlice::F32(v.as_f32()?),
        (Layout::RowTiled, DType::F16) => WeightSlice::F16(v.as_f16()?),
        (Layout::BlockTiled, dtype) if dtype.is_quantized() => {
            let q = v.as_quant()?;
            WeightSlice::Quant(QuantSlice {
                dtype,
                quants: q.quants,
                scales: q.scales,
            })
        }
        _ => return Err(kind()),
    };
    Ok(Matrix::new(data, rows, cols, v.tile_rows())?)
}

/// A plain f32 vector of `len` elements.
fn vector<'a>(file: &'a TvlFile, name: &str, len: usize) -> Result<&'a [f32], ModelError> {
    let v = file.tensor(name)?;
    if v.shape() != [len] {
        return Err(shape_err(&v, vec![len]));
    }
    if v.dtype() != DType::F32 || v.layout() != Layout::Plain {
        return Err(ModelError::TensorKind {
            name: name.to_string(),
            dtype: v.dtype(),
            layout: v.layout(),
            want: "a plain f32 vector",
        });
    }
    Ok(v.as_f32()?)
}
