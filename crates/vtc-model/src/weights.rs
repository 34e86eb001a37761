//! Typed views of a model's weights, borrowed from the mapped TVL file: nothing is
//! copied or converted here.

use tvl_format::arch::{self, Part, TensorSpec};
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
    /// Look up and shape-check every weight of `cfg` in `file`: the rows of the
    /// architecture's tensor table ([`tvl_format::arch::tensors`]), read in its
    /// (forward-pass) order, with the names and shapes it gives.
    pub fn from_tvl(file: &'a TvlFile, cfg: &Config) -> Result<Self, ModelError> {
        let mut table = arch::tensors(file.config());
        // The next row of the table, which must be `part` (the struct below and the
        // table list the same weights in the same order).
        let mut next = |part: Part| {
            table
                .next()
                .filter(|t| t.part == part)
                .ok_or(ModelError::Config {
                    field: "arch",
                    value: file.config().arch.to_string(),
                    why: "the tensor table does not match the weights of this architecture",
                })
        };
        let token_embd = matrix(file, &next(Part::TokenEmbd)?)?;
        let layers = (0..cfg.n_layers)
            .map(|_| {
                Ok(LayerWeights {
                    attn_norm: vector(file, &next(Part::AttnNorm)?)?,
                    wq: matrix(file, &next(Part::AttnQ)?)?,
                    wk: matrix(file, &next(Part::AttnK)?)?,
                    wv: matrix(file, &next(Part::AttnV)?)?,
                    wo: matrix(file, &next(Part::AttnOutput)?)?,
                    ffn_norm: vector(file, &next(Part::FfnNorm)?)?,
                    w_gate: matrix(file, &next(Part::FfnGate)?)?,
                    w_up: matrix(file, &next(Part::FfnUp)?)?,
                    w_down: matrix(file, &next(Part::FfnDown)?)?,
                })
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let output_norm = vector(file, &next(Part::OutputNorm)?)?;
        let head = next(Part::Output)?;
        let output = if cfg.tied_output {
            token_embd
        } else {
            matrix(file, &head)?
        };
        Ok(Self {
            token_embd,
            layers,
            output_norm,
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
fn matrix<'a>(file: &'a TvlFile, t: &TensorSpec) -> Result<Matrix<'a>, ModelError> {
    let name = t.name.as_str();
    let [rows, cols] = dims(t)?[..] else {
        return Err(ModelError::Config {
            field: "arch",
            value: t.name.clone(),
            why: "the tensor table gives a matrix that is not 2-D",
        });
    };
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

/// A plain f32 vector (a norm's gains).
fn vector<'a>(file: &'a TvlFile, t: &TensorSpec) -> Result<&'a [f32], ModelError> {
    let name = t.name.as_str();
    let [len] = dims(t)?[..] else {
        return Err(ModelError::Config {
            field: "arch",
            value: t.name.clone(),
            why: "the tensor table gives a norm that is not 1-D",
        });
    };
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

/// The table's shape in `usize` (every size field is below 2^20, checked by
/// [`Config::from_tvl`], so products of two fit).
fn dims(t: &TensorSpec) -> Result<Vec<usize>, ModelError> {
    t.shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| ModelError::Config {
            field: "arch",
            value: t.name.clone(),
            why: "a tensor dimension exceeds usize",
        })
}
