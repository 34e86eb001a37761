//! `vtc serve`: an OpenAI-compatible HTTP server with continuous batching.
//!
//! Three layers (see README.md): the HTTP layer ([`http`], axum on tokio) parses and
//! validates requests, tokenizes prompts and streams replies; one engine thread
//! ([`engine`]) owns the model, the backend and the slots and advances every active
//! request by one token per step; the [`engine::runner::Runner`] trait is everything
//! the engine asks of the model.
#![deny(missing_docs)]

pub mod api;
pub mod engine;
pub mod http;
pub mod metrics;

use std::future::{Future, IntoFuture};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

use vtc_model::Model;
use vtc_model::chat::ChatTemplate;

use crate::metrics::Metrics;

/// Errors of starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The model file could not be opened.
    #[error("opening the model: {0}")]
    Load(#[from] tvl_loader::LoadError),
    /// The model could not be loaded or its slots allocated.
    #[error(transparent)]
    Model(#[from] vtc_model::ModelError),
    /// The chat template does not compile.
    #[error("chat template: {0}")]
    Chat(#[from] vtc_model::chat::ChatError),
    /// The backend is unknown or unsupported here, or its threads did not start.
    #[error(transparent)]
    Kernel(#[from] vtc_kernels::KernelError),
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// Socket or thread errors.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The engine thread stopped before it was ready.
    #[error("the engine thread died while starting")]
    EngineDied,
}

/// Server settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// The TVL model file.
    pub model: PathBuf,
    /// Concurrent sequences (each with its own KV cache).
    pub slots: usize,
    /// Positions per slot (prompt + reply); clipped to the model's context length.
    pub ctx: usize,
    /// Requests that may wait for a slot before new ones get 429.
    pub queue: usize,
    /// Required `Authorization: Bearer` key.
    pub api_key: Option<String>,
    /// Kernel threads (default: the CPUs available).
    pub threads: Option<usize>,
    /// Kernel backend name (default: the best for this CPU, or `$VTC_BACKEND`).
    pub backend: Option<String>,
    /// Largest request body in bytes (larger: 413).
    pub body_limit: usize,
    /// How long running requests may go on after a shutdown signal before they are cut.
    pub grace: std::time::Duration,
}

impl Options {
    /// Defaults for `model`: 4 slots of 2048 positions, a queue of 64, 1 MiB bodies, 30 s
    /// of grace at shutdown.
    pub fn new(model: PathBuf) -> Self {
        Self {
            model,
            slots: 4,
            ctx: 2048,
            queue: 64,
            api_key: None,
            threads: None,
            backend: None,
            body_limit: 1 << 20,
            grace: std::time::Duration::from_secs(30),
        }
    }
}

/// A started engine, ready to serve.
pub struct Server {
    state: Arc<http::AppState>,
    engine: JoinHandle<()>,
    /// Set at the end of the grace period: the engine ends every job and returns.
    cut: Arc<AtomicBool>,
    body_limit: usize,
    grace: std::time::Duration,
    /// Backend name.
    pub backend: String,
    /// Positions per slot.
    pub max_seq: usize,
}

fn backend(
    name: Option<&str>,
    threads: Option<usize>,
) -> Result<Box<dyn vtc_kernels::Backend>, ServerError> {
    let be = vtc_kernels::select(name)?;
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    Ok(if threads <= 1 {
        Box::new(be)
    } else {
        Box::new(vtc_kernels::Threaded::new(be, threads)?)
    })
}

/// What the engine thread reports once the model is loaded.
struct Ready {
    tokenizer: vtc_model::tokenizer::Tokenizer,
    template: Option<ChatTemplate>,
    max_seq: usize,
    backend: String,
}

impl Server {
    /// Start the engine thread: open the model, allocate the slots, and wait until it
    /// is ready (or report why it could not start).
    pub fn start(opts: &Options) -> Result<Self, ServerError> {
        if opts.slots == 0 || opts.queue == 0 || opts.ctx == 0 {
            return Err(ServerError::Config(
                "--slots, --ctx and the queue length must be at least 1".into(),
            ));
        }
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel(opts.queue);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<Ready, ServerError>>(1);
        let metrics = Arc::new(Metrics::default());
        let o = opts.clone();
        let m = metrics.clone();
        let cut = Arc::new(AtomicBool::new(false));
        let cut_engine = cut.clone();
        // The engine thread owns the mapped file, the model borrowing it, the backend
        // and the sessions: nothing model-facing crosses threads except the tokenizer
        // and template (owned copies) sent back once.
        let engine = std::thread::Builder::new()
            .name("vtc-engine".into())
            .spawn(move || {
                let started = (|| -> Result<_, ServerError> {
                    let file = tvl_loader::TvlFile::open_with(
                        &o.model,
                        &tvl_loader::OpenOptions {
                            populate: true,
                            ..Default::default()
                        },
                    )?;
                    Ok(file)
                })();
                let file = match started {
                    Ok(f) => f,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let setup = (|| -> Result<_, ServerError> {
                    let model = Model::load(&file)?;
                    let be = backend(o.backend.as_deref(), o.threads)?;
                    let template = ChatTemplate::from_file(&file, model.tokenizer())?;
                    Ok((model, be, template))
                })();
                let (model, be, template) = match setup {
                    Ok(x) => x,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let max_seq = o.ctx.min(model.config().context_len);
                let runner = match vtc_model::Slots::new(&model, be.as_ref(), o.slots, max_seq) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                let ready = Ready {
                    tokenizer: model.tokenizer().clone(),
                    template,
                    max_seq,
                    backend: be.name().to_string(),
                };
                if ready_tx.send(Ok(ready)).is_err() {
                    return;
                }
                engine::run(runner, model.tokenizer(), job_rx, m, cut_engine);
            })?;
        let ready = ready_rx.recv().map_err(|_| ServerError::EngineDied)??;
        let model_id = opts
            .model
            .file_stem()
            .map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
        let state = Arc::new(http::AppState {
            jobs: job_tx,
            tokenizer: ready.tokenizer,
            template: ready.template,
            model_id,
            max_seq: ready.max_seq,
            api_key: opts.api_key.clone(),
            metrics,
            counter: AtomicU64::new(0),
            started: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        });
        Ok(Self {
            state,
            engine,
            cut,
            body_limit: opts.body_limit,
            grace: opts.grace,
            backend: ready.backend,
            max_seq: ready.max_seq,
        })
    }

    /// Serve on `listener` until `shutdown` resolves: then stop accepting, let running
    /// requests finish for up to [`Options::grace`] (then cut them), and stop the
    /// engine.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let app = http::router(self.state, self.body_limit);
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let mut stop = rx.clone();
        let graceful = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|v| *v).await;
            })
            .into_future();
        let mut stop = rx;
        let grace = self.grace;
        let deadline = async move {
            let _ = stop.wait_for(|v| *v).await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(graceful);
        tokio::select! {
            r = &mut graceful => r?,
            () = deadline => {
                // Requests still running after the grace period are cut: the engine
                // ends them (finish_reason "length") and returns; their last events get
                // a moment to go out.
                self.cut.store(true, Ordering::Relaxed);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), &mut graceful).await;
            }
        }
        // The router (and with it the last sender of the job queue) is gone: the engine
        // finishes what it holds and returns.
        let engine = self.engine;
        tokio::task::spawn_blocking(move || engine.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| ServerError::EngineDied)?;
        Ok(())
    }
}

/// Resolves at SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
