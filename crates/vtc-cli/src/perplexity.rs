//! `vtc perplexity`: how well a model predicts a text, the figure users compare
//! quantizations by. The definition (tokenization, windows, scoring) is
//! `vtc_model::perplexity`'s.
//!
//! Output: the figure goes to stdout (one line, or with `--json` one JSON object);
//! diagnostics (model, backend, load time, seconds, tok/s) go to stderr, with a progress
//! bar when stderr is a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use vtc_model::{DEFAULT_PERPLEXITY_CTX, Model, perplexity, perplexity_ids};

use crate::BoxError;

/// `vtc perplexity [--model M] FILE [--ctx N] [--chunks K] [--backend B] [--json]`.
#[derive(clap::Args)]
pub struct PerplexityArgs {
    /// TVL model file (default: SmolLM2-135M-Instruct, fetched and converted on first use).
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// The text file (UTF-8), tokenized whole: BOS once at the start iff the model's
    /// add-bos flag is set; special-token strings are plain text.
    pub file: PathBuf,
    /// Window length in tokens; each window runs from an empty KV cache
    /// [default: 512, or the model's context length if shorter].
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Score only the first K windows.
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Kernel backend (default: the best this CPU supports, or $VTC_BACKEND).
    #[arg(long)]
    pub backend: Option<String>,
    /// Threads for the matrix-vector products [default: the CPUs available].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// One JSON object on stdout (perplexity, tokens_scored, nll_sum, ctx, windows, model,
    /// backend, seconds...) instead of a line of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the token ids of FILE (all of them, as JSON) to this path, e.g. for
    /// scripts/perplexity_reference.py.
    #[arg(long, value_name = "OUT.json")]
    pub dump_ids: Option<PathBuf>,
}

pub fn run(args: PerplexityArgs) -> Result<(), BoxError> {
    let path = match args.model {
        Some(p) => p,
        None => crate::default_model()?,
    };
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("reading {}: {e}", args.file.display()))?;
    let t0 = Instant::now();
    let file = crate::open_model(&path, true)?;
    let model = Model::load(&file)?;
    let backend = crate::backend(args.backend.as_deref(), args.threads)?;
    let load_s = t0.elapsed().as_secs_f64();
    let context_len = model.config().context_len;
    let ctx = args
        .ctx
        .unwrap_or_else(|| DEFAULT_PERPLEXITY_CTX.min(context_len));
    let mut ids = perplexity_ids(model.tokenizer(), &text)?;
    if let Some(out) = &args.dump_ids {
        let doc = json!({
            "ids": ids,
            "add_bos": model.tokenizer().add_bos(),
            "bos_id": model.tokenizer().bos_id(),
            "parse_special": false,
            "file": args.file.display().to_string(),
            "file_bytes": text.len(),
            "model": path.display().to_string(),
        });
        std::fs::write(out, serde_json::to_string(&doc)? + "\n")
            .map_err(|e| format!("writing {}: {e}", out.display()))?;
    }
    let all_tokens = ids.len();
    if let Some(chunks) = args.chunks {
        ids.truncate(chunks.saturating_mul(ctx));
    }
    eprintln!(
        "vtc: {} ({} layers, dim {}), backend {}, loaded in {:.1} ms; {} tokens from {} ({} bytes), windows of {ctx}",
        path.display(),
        model.config().n_layers,
        model.config().dim,
        backend.name(),
        load_s * 1e3,
        all_tokens,
        args.file.display(),
        text.len(),
    );
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "perplexity [{bar:30}] {pos}/{len} tokens ({per_sec}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let t1 = Instant::now();
    let report = perplexity(&model, backend.as_ref(), &ids, ctx, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let seconds = t1.elapsed().as_secs_f64();
    let tok_s = report.tokens_scored as f64 / seconds;
    eprintln!(
        "vtc: {} tokens scored in {} windows, {seconds:.2} s ({tok_s:.1} tok/s)",
        report.tokens_scored, report.windows
    );
    if args.json {
        println!(
            "{}",
            json!({
                "perplexity": report.perplexity,
                "tokens_scored": report.tokens_scored,
                "nll_sum": report.nll_sum,
                "mean_nll": report.mean_nll(),
                "ctx": report.ctx,
                "windows": report.windows,
                "tokens": report.tokens,
                "model": path.display().to_string(),
                "file": args.file.display().to_string(),
                "backend": backend.name(),
                "seconds": seconds,
                "tok_s": tok_s,
            })
        );
    } else {
        println!(
            "perplexity {:.4} ({} tokens scored, {} windows of {})",
            report.perplexity, report.tokens_scored, report.windows, report.ctx
        );
    }
    Ok(())
}
