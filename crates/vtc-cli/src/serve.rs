//! `vtc serve`: the OpenAI-compatible HTTP server (`vtc_server`).

use std::path::PathBuf;

use crate::BoxError;

/// `vtc serve [--model M] [--host H] [--port P] [--slots N] [--ctx C] [--api-key K]`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// TVL model file (default: SmolLM2-135M-Instruct, fetched and converted on first use).
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Requests run at once, each with its own KV cache of --ctx positions.
    #[arg(long, default_value_t = 4)]
    pub slots: usize,
    /// Positions per slot, prompt and reply together [clipped to the model's context].
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    /// Requests that may wait for a free slot; beyond that, 429.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1/ routes (default: $VTC_API_KEY if set).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Kernel backend (default: the best this CPU supports, or $VTC_BACKEND).
    #[arg(long)]
    pub backend: Option<String>,
    /// Threads for the matrix products [default: the CPUs available].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Seconds running requests may go on after SIGINT/SIGTERM before they are cut.
    #[arg(long, default_value_t = 30.0)]
    pub grace: f64,
}

pub fn run(args: ServeArgs) -> Result<(), BoxError> {
    let path = match args.model {
        Some(p) => p,
        None => crate::default_model()?,
    };
    let mut opts = vtc_server::Options::new(path.clone());
    opts.slots = args.slots;
    opts.ctx = args.ctx;
    opts.queue = args.queue;
    opts.api_key = args.api_key.or_else(|| std::env::var("VTC_API_KEY").ok());
    opts.backend = args.backend;
    opts.threads = args.threads;
    opts.grace = std::time::Duration::try_from_secs_f64(args.grace)
        .map_err(|_| "--grace must be a number of seconds >= 0")?;
    let server = vtc_server::Server::start(&opts)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
        eprintln!(
            "vtc: serving {} on http://{} (backend {}, {} slots of {} positions{})",
            path.display(),
            listener.local_addr()?,
            server.backend,
            args.slots,
            server.max_seq,
            if opts.api_key.is_some() {
                ", API key required"
            } else {
                ""
            }
        );
        server
            .serve(listener, vtc_server::shutdown_signal())
            .await?;
        eprintln!("vtc: stopped");
        Ok(())
    })
}
