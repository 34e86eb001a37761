//! Typed views of a model's weights, borrowed from the mapped TVL file: nothing is
//! copied or converted here.

use tvl_format::arch::{self, Part, TensorSpec};
use tvl_format::{DType, Layout};
use tvl_loader::{TensorView, TvlFile};
use vtc_kernels::{Matrix, QuantSlice, WeightSlice};

use crate::{Config, ModelError};

/// Weights of one transformer block. The `Option`s are the tensors an architecture's
/// [`block_flags`](tvl_format::block_flags) add (present exactly when the flag is set).
#[derive(Clone, Debug)]
pub struct LayerWeights<'a> {
    /// RMSNorm gain before attention, `[dim]`.
    pub attn_norm: &'a [f32],
    /// Query projection, `[q_dim, dim]`.
    pub wq: Matrix<'a>,
    /// Query bias, `[q_dim]` (Qwen2).
    pub q_bias: Option<&'a [f32]>,
    /// Key projection, `[kv_dim, dim]`.
    pub wk: Matrix<'a>,
    /// Key bias, `[kv_dim]` (Qwen2).
    pub k_bias: Option<&'a [f32]>,
    /// Value projection, `[kv_dim, dim]`.
    pub wv: Matrix<'a>,
    /// Value bias, `[kv_dim]` (Qwen2).
    pub v_bias: Option<&'a [f32]>,
    /// RMSNorm gain of each query head, `[head_dim]` (Qwen3, Gemma 3).
    pub q_norm: Option<&'a [f32]>,
    /// RMSNorm gain of each key head, `[head_dim]` (Qwen3, Gemma 3).
    pub k_norm: Option<&'a [f32]>,
    /// Attention output projection, `[dim, q_dim]`.
    pub wo: Matrix<'a>,
    /// RMSNorm gain of the attention output, `[dim]` (Gemma).
    pub post_attn_norm: Option<&'a [f32]>,
    /// RMSNorm gain before the feed-forward block, `[dim]`.
    pub ffn_norm: &'a [f32],
    /// Feed-forward gate projection, `[hidden_dim, dim]`.
    pub w_gate: Matrix<'a>,
    /// Feed-forward up projection, `[hidden_dim, dim]`.
    pub w_up: Matrix<'a>,
    /// Feed-forward down projection, `[dim, hidden_dim]`.
    pub w_down: Matrix<'a>,
    /// RMSNorm gain of the feed-forward output, `[dim]` (Gemma).
    pub post_ffn_norm: Option<&'a [f32]>,
}

impl LayerWeights<'_> {
    /// The block's matrices.
    fn matrices(&self) -> [&Matrix<'_>; 7] {
        [
            &self.wq,
            &self.wk,
            &self.wv,
            &self.wo,
            &self.w_gate,
            &self.w_up,
            &self.w_down,
        ]
    }

    /// The block's vectors (norm gains and biases).
    fn vectors(&self) -> impl Iterator<Item = &[f32]> {
        [self.attn_norm, self.ffn_norm].into_iter().chain(
            [
                self.q_bias,
                self.k_bias,
                self.v_bias,
                self.q_norm,
                self.k_norm,
                self.post_attn_norm,
                self.post_ffn_norm,
            ]
            .into_iter()
            .flatten(),
        )
    }
}

/// All weights of a model.
#[derive(Clone, Debug)]
pub struct Weights<'a> {
    /// RoPE frequency divisors, `[head_dim / 2]` (Llama 3's scaled RoPE).
    pub rope_freqs: Option<&'a [f32]>,
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
        let mut t = Table {
            rows: arch::tensors(file.config()).peekable(),
            arch: file.config().arch,
        };
        let rope_freqs = t.opt_vector(file, Part::RopeFreqs)?;
        let token_embd = matrix(file, &t.req(Part::TokenEmbd)?)?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for _ in 0..cfg.n_layers {
            layers.push(LayerWeights {
                attn_norm: vector(file, &t.req(Part::AttnNorm)?)?,
                wq: matrix(file, &t.req(Part::AttnQ)?)?,
                q_bias: t.opt_vector(file, Part::AttnQBias)?,
                wk: matrix(file, &t.req(Part::AttnK)?)?,
                k_bias: t.opt_vector(file, Part::AttnKBias)?,
                wv: matrix(file, &t.req(Part::AttnV)?)?,
                v_bias: t.opt_vector(file, Part::AttnVBias)?,
                q_norm: t.opt_vector(file, Part::AttnQNorm)?,
                k_norm: t.opt_vector(file, Part::AttnKNorm)?,
                wo: matrix(file, &t.req(Part::AttnOutput)?)?,
                post_attn_norm: t.opt_vector(file, Part::PostAttnNorm)?,
                ffn_norm: vector(file, &t.req(Part::FfnNorm)?)?,
                w_gate: matrix(file, &t.req(Part::FfnGate)?)?,
                w_up: matrix(file, &t.req(Part::FfnUp)?)?,
                w_down: matrix(file, &t.req(Part::FfnDown)?)?,
                post_ffn_norm: t.opt_vector(file, Part::PostFfnNorm)?,
            });
        }
        let output_norm = vector(file, &t.req(Part::OutputNorm)?)?;
        let head = t.req(Part::Output)?;
        if t.rows.next().is_some() {
            return Err(t.mismatch());
        }
        let output = if cfg.tied_output {
            token_embd
        } else {
            matrix(file, &head)?
        };
        Ok(Self {
            rope_freqs,
            token_embd,
            layers,
            output_norm,
            output,
        })
    }

    /// Bytes of weights one decode step streams: every matrix once (the embedding row
    /// lookup reads a single row and is not counted) plus the norm vectors.
    pub fn bytes_per_token(&self) -> usize {
        self.layers
            .iter()
            .map(|l| {
                l.matrices().iter().map(|m| m.nbytes()).sum::<usize>()
                    + l.vectors().map(|v| v.len() * 4).sum::<usize>()
            })
            .sum::<usize>()
            + self.output.nbytes()
            + self.output_norm.len() * 4
    }
}

/// The architecture's tensor table, read front to back as [`Weights`] takes its parts
/// (the struct and the table list the same weights in the same order).
struct Table<I: Iterator<Item = TensorSpec>> {
    rows: std::iter::Peekable<I>,
    arch: u32,
}

impl<I: Iterator<Item = TensorSpec>> Table<I> {
    fn mismatch(&self) -> ModelError {
        ModelError::Config {
            field: "arch",
            value: self.arch.to_string(),
            why: "the tensor table does not match the weights of this architecture",
        }
    }

    /// The next row, which must be `part`.
    fn req(&mut self, part: Part) -> Result<TensorSpec, ModelError> {
        self.opt(part).ok_or_else(|| self.mismatch())
    }

    /// The next row if it is `part`.
    fn opt(&mut self, part: Part) -> Option<TensorSpec> {
        self.rows.next_if(|t| t.part == part)
    }

    /// The vector of a part the flags may add: the table has it exactly when the
    /// flag is set.
    fn opt_vector<'a>(
        &mut self,
        file: &'a TvlFile,
        part: Part,
    ) -> Result<Option<&'a [f32]>, ModelError> {
        self.opt(part).map(|t| vector(file, &t)).transpose()
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

/// A plain f32 vector (a norm's gains, a bias, the RoPE frequency divisors).
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
