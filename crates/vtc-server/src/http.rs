//! The HTTP layer: routes, authentication, request metrics, and turning engine events
//! into OpenAI responses (JSON or server-sent events).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request as HttpRequest, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use vtc_model::SamplerConfig;
use vtc_model::chat::ChatTemplate;
use vtc_model::tokenizer::Tokenizer;

use crate::api::{self, ApiError, Kind, Params};
use crate::engine::{Event, Job, TokenLogprob};
use crate::metrics::Metrics;

/// What the handlers share.
pub struct AppState {
    /// The engine's queue.
    pub jobs: SyncSender<Job>,
    /// The model's tokenizer.
    pub tokenizer: Tokenizer,
    /// The model's chat template, if it has one.
    pub template: Option<ChatTemplate>,
    /// Model id reported by /v1/models and in responses.
    pub model_id: String,
    /// Positions per slot.
    pub max_seq: usize,
    /// Required `Authorization: Bearer` key, if any.
    pub api_key: Option<String>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Request ids and seeds for requests without one.
    pub counter: AtomicU64,
    /// Start time (Unix seconds), for `created`.
    pub started: u64,
}

type Shared = Arc<AppState>;

/// The router, with a body limit of `body_limit` bytes.
pub fn router(state: Shared, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Count every answered request by endpoint and status.
async fn count(State(s): State<Shared>, req: HttpRequest, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", |p| p.as_str())
        .to_string();
    let r = next.run(req).await;
    s.metrics.request(&endpoint, r.status().as_u16());
    r
}

/// With `--api-key`, every `/v1/` route needs `Authorization: Bearer KEY`; `/health` and
/// `/metrics` stay open.
async fn auth(State(s): State<Shared>, req: HttpRequest, next: Next) -> Response {
    if let Some(key) = &s.api_key
        && req.uri().path().starts_with("/v1/")
    {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), key.as_bytes())) {
            return ApiError::status(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key (Authorization: Bearer KEY)",
                Some("invalid_api_key"),
            )
            .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::status(StatusCode::NOT_FOUND, "no such endpoint", None)
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn models(State(s): State<Shared>) -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": s.model_id, "object": "model", "created": s.started, "owned_by": "vtc"}],
    }))
    .into_response()
}

async fn chat(State(s): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    handle(s, body, Kind::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(s): State<Shared>, body: Result<Bytes, BytesRejection>) -> Response {
    handle(s, body, Kind::Completion)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A request accepted by the engine.
struct Accepted {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    params: Params,
    events: UnboundedReceiver<Event>,
}

async fn handle(
    s: Shared,
    body: Result<Bytes, BytesRejection>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        let status = e.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "request body too large".to_string()
        } else {
            e.body_text()
        };
        ApiError::status(status, msg, None)
    })?;
    let req = api::parse(&body)?;
    let params = req.validate(kind)?;
    let prompt = match kind {
        Kind::Chat => {
            let Some(template) = &s.template else {
                return Err(ApiError::bad(
                    "this model has no chat template; use /v1/completions",
                    Some("messages"),
                ));
            };
            let messages = req.chat_messages()?;
            let text = template
                .render(&messages, true)
                .map_err(|e| ApiError::bad(format!("chat template: {e}"), Some("messages")))?;
            vtc_model::chat::encode_start(&s.tokenizer, &text)
                .map_err(|e| ApiError::bad(format!("tokenizing: {e}"), Some("messages")))?
        }
        Kind::Completion => s
            .tokenizer
            .encode_prompt(req.prompt_text()?)
            .map_err(|e| ApiError::bad(format!("tokenizing: {e}"), Some("prompt")))?,
    };
    let param = if kind == Kind::Chat {
        "messages"
    } else {
        "prompt"
    };
    if prompt.is_empty() {
        return Err(ApiError::bad("the prompt has no tokens", Some(param)));
    }
    if prompt.len() >= s.max_seq {
        return Err(ApiError::bad(
            format!(
                "the prompt is {} tokens; a slot holds {} positions (prompt and reply)",
                prompt.len(),
                s.max_seq
            ),
            Some(param),
        )
        .code("context_length_exceeded"));
    }
    // max_tokens beyond the room left is clipped to it (finish_reason "length").
    let room = s.max_seq - prompt.len();
    let max_tokens = params
        .max_tokens
        .map_or(room, |m| m.min(room as u64) as usize);
    let n = s.counter.fetch_add(1, Ordering::Relaxed);
    let seed = params.seed.unwrap_or_else(|| {
        // No seed: a fresh one per request.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        t ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    });
    let (tx, rx) = unbounded_channel();
    let job = Job {
        prompt,
        max_tokens,
        sampler: SamplerConfig {
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
            seed,
        },
        stop: params.stop.clone(),
        ignore_eos: params.ignore_eos,
        logprobs: params.logprobs,
        events: tx,
        queued: Instant::now(),
    };
    s.metrics.queue_len.fetch_add(1, Ordering::Relaxed);
    match s.jobs.try_send(job) {
        Ok(()) => {}
        Err(e) => {
            s.metrics.queue_len.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                TrySendError::Full(_) => ApiError::status(
                    StatusCode::TOO_MANY_REQUESTS,
                    "the request queue is full; retry later",
                    Some("queue_full"),
                ),
                TrySendError::Disconnected(_) => ApiError::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down",
                    None,
                ),
            });
        }
    }
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let acc = Accepted {
        kind,
        id: format!("{prefix}-{:x}{n:x}", s.started),
        created: now(),
        model: s.model_id.clone(),
        params,
        events: rx,
    };
    Ok(if acc.params.stream {
        stream(acc)
    } else {
        whole(acc).await?
    })
}

/// `logprobs` of a chat choice or chunk.
fn chat_logprobs(lps: &[TokenLogprob]) -> Value {
    let bytes = |t: &str| Value::from(t.as_bytes().to_vec());
    json!({"content": lps.iter().map(|l| json!({
        "token": l.text,
        "logprob": l.logprob,
        "bytes": bytes(&l.text),
        "top_logprobs": l.top.iter().map(|(_, t, lp)| json!({
            "token": t, "logprob": lp, "bytes": bytes(t),
        })).collect::<Vec<_>>(),
    })).collect::<Vec<_>>()})
}

/// `logprobs` of a completion choice (the legacy shape); `offset` is the text length
/// before these tokens.
fn completion_logprobs(lps: &[TokenLogprob], offset: usize) -> Value {
    let mut off = offset;
    let offsets: Vec<usize> = lps
        .iter()
        .map(|l| {
            let o = off;
            off += l.text.len();
            o
        })
        .collect();
    json!({
        "tokens": lps.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|l| {
            let m: serde_json::Map<String, Value> =
                l.top.iter().map(|(_, t, lp)| (t.clone(), Value::from(*lp))).collect();
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// Collect the whole reply.
async fn whole(mut acc: Accepted) -> Result<Response, ApiError> {
    let mut text = String::new();
    let mut lps = Vec::new();
    loop {
        match acc.events.recv().await {
            Some(Event::Delta { text: t, logprobs }) => {
                text.push_str(&t);
                lps.extend(logprobs);
            }
            Some(Event::Done {
                finish,
                prompt_tokens,
                completion_tokens,
            }) => {
                let logprobs = match (acc.params.logprobs, acc.kind) {
                    (None, _) => Value::Null,
                    (Some(_), Kind::Chat) => chat_logprobs(&lps),
                    (Some(_), Kind::Completion) => completion_logprobs(&lps, 0),
                };
                let choice = match acc.kind {
                    Kind::Chat => json!({
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": logprobs,
                        "finish_reason": finish.as_str(),
                    }),
                    Kind::Completion => json!({
                        "index": 0,
                        "text": text,
                        "logprobs": logprobs,
                        "finish_reason": finish.as_str(),
                    }),
                };
                let object = match acc.kind {
                    Kind::Chat => "chat.completion",
                    Kind::Completion => "text_completion",
                };
                return Ok(axum::Json(json!({
                    "id": acc.id,
                    "object": object,
                    "created": acc.created,
                    "model": acc.model,
                    "choices": [choice],
                    "usage": usage(prompt_tokens, completion_tokens),
                }))
                .into_response());
            }
            Some(Event::Error(e)) => {
                return Err(ApiError::status(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the model failed: {e}"),
                    None,
                ));
            }
            None => {
                return Err(ApiError::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the engine stopped",
                    None,
                ));
            }
        }
    }
}

/// Stream the reply as server-sent events.
fn stream(mut acc: Accepted) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<SseEvent, Infallible>>(16);
    tokio::spawn(async move {
        let chunk = |acc: &Accepted, choice: Value| -> SseEvent {
            let object = match acc.kind {
                Kind::Chat => "chat.completion.chunk",
                Kind::Completion => "text_completion",
            };
            SseEvent::default().data(
                json!({
                    "id": acc.id,
                    "object": object,
                    "created": acc.created,
                    "model": acc.model,
                    "choices": [choice],
                })
                .to_string(),
            )
        };
        if acc.kind == Kind::Chat {
            let first = chunk(
                &acc,
                json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}),
            );
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
        }
        let mut offset = 0;
        loop {
            let ev = match acc.events.recv().await {
                Some(Event::Delta { text, logprobs }) => {
                    let lp = match (acc.params.logprobs, acc.kind) {
                        (None, _) => Value::Null,
                        (Some(_), Kind::Chat) => chat_logprobs(&logprobs),
                        (Some(_), Kind::Completion) => completion_logprobs(&logprobs, offset),
                    };
                    offset += text.len();
                    let choice = match acc.kind {
                        Kind::Chat => {
                            json!({"index": 0, "delta": {"content": text}, "logprobs": lp, "finish_reason": null})
                        }
                        Kind::Completion => {
                            json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": null})
                        }
                    };
                    chunk(&acc, choice)
                }
                Some(Event::Done {
                    finish,
                    prompt_tokens,
                    completion_tokens,
                }) => {
                    let choice = match acc.kind {
                        Kind::Chat => {
                            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish.as_str()})
                        }
                        Kind::Completion => {
                            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": finish.as_str()})
                        }
                    };
                    let last = chunk(&acc, choice);
                    if tx.send(Ok(last)).await.is_err() {
                        return;
                    }
                    if acc.params.include_usage {
                        let object = match acc.kind {
                            Kind::Chat => "chat.completion.chunk",
                            Kind::Completion => "text_completion",
                        };
                        let u = SseEvent::default().data(
                            json!({
                                "id": acc.id, "object": object, "created": acc.created,
                                "model": acc.model, "choices": [],
                                "usage": usage(prompt_tokens, completion_tokens),
                            })
                            .to_string(),
                        );
                        if tx.send(Ok(u)).await.is_err() {
                            return;
                        }
                    }
                    break;
                }
                Some(Event::Error(e)) => {
                    let err = ApiError::status(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the model failed: {e}"),
                        None,
                    );
                    let _ = tx
                        .send(Ok(SseEvent::default().data(err.body().to_string())))
                        .await;
                    break;
                }
                None => break,
            };
            if tx.send(Ok(ev)).await.is_err() {
                // The client went away: dropping `acc.events` tells the engine.
                return;
            }
        }
        let _ = tx.send(Ok(SseEvent::default().data("[DONE]"))).await;
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response()
}
