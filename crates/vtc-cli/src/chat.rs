//! `vtc chat`: a multi-turn conversation with the model's own chat template.
//!
//! One turn per line of stdin. On a terminal each turn is prompted with `> ` (on
//! stderr); piped, the lines are read as they come, so a script can drive it
//! (`printf 'Hi\nAnd then?\n' | vtc chat --temp 0`). stdout carries exactly the
//! replies, each streamed as it is generated and ended with a newline; diagnostics go
//! to stderr. The KV cache is kept across turns: each turn feeds only the new part of
//! the conversation (see `vtc_model::chat`).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use tvl_loader::TvlFile;
use vtc_model::chat::{Chat, ChatTemplate};
use vtc_model::{GenerateOptions, Model, SamplerConfig, Session, StopReason};

use crate::BoxError;

/// `vtc chat [--model M] [--system S] [sampling flags]`.
#[derive(clap::Args)]
pub struct ChatArgs {
    /// TVL model file (default: SmolLM2-135M-Instruct, fetched and converted on first use).
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// System message (default: the template's own, if it has one).
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 512)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Sample among the K most likely tokens only (0 = all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Sample from the smallest set of tokens whose probability reaches P.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Random seed (the same seed gives the same conversation).
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Kernel backend (default: the best this CPU supports, or $VTC_BACKEND).
    #[arg(long)]
    pub backend: Option<String>,
    /// Threads for the matrix-vector products [default: the CPUs available].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Positions of the conversation's KV cache [default: 2048, or the model's context
    /// length if shorter]. A turn that does not fit ends the chat with an error.
    #[arg(long)]
    pub ctx: Option<usize>,
}

/// The model's chat template, or an error that says so.
fn template(file: &TvlFile, model: &Model<'_>) -> Result<ChatTemplate, BoxError> {
    ChatTemplate::from_file(file, model.tokenizer())?.ok_or_else(|| {
        "this model file has no chat template (tokenizer.chat_template); use `vtc run` \
         for plain continuation"
            .into()
    })
}

/// The tokens of `prompt` as a single chat turn (`vtc run --chat`): the template
/// applied to [system,] user, with the generation prompt.
pub(crate) fn chat_prompt(
    file: &TvlFile,
    model: &Model<'_>,
    system: Option<&str>,
    prompt: &str,
) -> Result<Vec<u32>, BoxError> {
    let chat = Chat::new(template(file, model)?, system);
    Ok(chat.prompt_with(model.tokenizer(), prompt)?)
}

pub fn run(args: ChatArgs) -> Result<(), BoxError> {
    let path = match args.model {
        Some(p) => p,
        None => crate::default_model()?,
    };
    let t0 = Instant::now();
    let file = crate::open_model(&path, true)?;
    let model = Model::load(&file)?;
    let backend = crate::backend(args.backend.as_deref(), args.threads)?;
    let mut chat = Chat::new(template(&file, &model)?, args.system.as_deref());
    let ctx = model.config().context_len;
    let max_seq = args.ctx.unwrap_or(2048).min(ctx);
    let mut session = Session::new(&model, backend.as_ref(), max_seq)?;
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        sampler: SamplerConfig {
            temperature: args.temp,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        stop_at_eos: true,
    };
    let interactive = std::io::stdin().is_terminal();
    eprintln!(
        "vtc: {} ({} layers, dim {}), backend {}, loaded in {:.1} ms; context {max_seq} positions{}",
        path.display(),
        model.config().n_layers,
        model.config().dim,
        backend.name(),
        t0.elapsed().as_secs_f64() * 1e3,
        if interactive {
            "; one message per line, Ctrl-D to quit"
        } else {
            ""
        }
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut out = std::io::stdout().lock();
    let mut turn_no = 0usize;
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else {
            break;
        };
        let line = line?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        turn_no += 1;
        let t = Instant::now();
        let mut write_err = None;
        let turn = chat.turn(&mut session, line, opts, &mut |text| {
            if write_err.is_none()
                && let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
            {
                write_err = Some(e);
            }
        })?;
        if let Some(e) = write_err {
            return Err(e.into());
        }
        writeln!(out)?;
        out.flush()?;
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "vtc: turn {turn_no}: reused {} cached tokens{}, fed {}, generated {} in {:.2} s ({:.1} tok/s){}",
            turn.reused,
            if turn.reprefilled {
                " (template re-rendered history: conversation re-read)"
            } else {
                ""
            },
            turn.fed,
            turn.generated,
            secs,
            (turn.fed + turn.generated) as f64 / secs,
            match turn.stop {
                StopReason::MaxTokens => "; reply cut at the token limit",
                _ => "",
            }
        );
    }
    Ok(())
}
