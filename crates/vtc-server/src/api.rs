//! The OpenAI request bodies, their validation, and OpenAI-style errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// Fields OpenAI clients may send that are accepted and ignored. Any other field not
/// in [`Request`] is a 400 (`unknown field`), so a misspelt parameter is not silently
/// dropped.
pub const IGNORED_FIELDS: &[&str] = &[
    "user",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "suffix",
    "echo",
    "best_of",
];

/// Most alternatives `top_logprobs` (chat) or `logprobs` (completions) may ask for.
pub const MAX_TOP_LOGPROBS: u64 = 20;

/// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// `param` (the field at fault), if any.
    pub param: Option<String>,
    /// `code`, if any.
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn bad(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param: param.map(str::to_string),
            code: None,
        }
    }

    /// An error with another status.
    pub fn status(
        status: StatusCode,
        message: impl Into<String>,
        code: Option<&'static str>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code,
        }
    }

    /// With `code`.
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The OpenAI error type for the status.
    pub fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            500..=599 => "server_error",
            _ => "invalid_request_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status == StatusCode::SERVICE_UNAVAILABLE
        {
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

/// `stop`: one string or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `prompt` of /v1/completions: a string, or an array holding one string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// The prompt.
    Text(String),
    /// A batch of prompts (only one accepted).
    Batch(Vec<String>),
}

/// A message's `content`: a string or an array of text parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts; only `{"type": "text", "text": ...}` is accepted.
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Debug, Deserialize)]
pub struct Part {
    /// Must be `text`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text.
    #[serde(default)]
    pub text: Option<String>,
}

/// One chat message.
#[derive(Debug, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` (`developer` is treated as `system`).
    pub role: String,
    /// The text (may be null for an assistant message).
    #[serde(default)]
    pub content: Option<Content>,
    /// Accepted and ignored.
    #[serde(default)]
    pub name: Option<String>,
}

/// `stream_options`.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and empty `choices`) before `[DONE]`.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// The body of /v1/chat/completions and /v1/completions.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// Accepted and not checked: the server serves one model.
    #[serde(default)]
    pub model: Option<String>,
    /// Chat messages (chat only).
    #[serde(default)]
    pub messages: Option<Vec<ChatMessage>>,
    /// Prompt (completions only).
    #[serde(default)]
    pub prompt: Option<Prompt>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Same as `max_tokens` (the newer name).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature (0 = greedy).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Top-k sampling (0 = off); an extension.
    #[serde(default)]
    pub top_k: Option<u64>,
    /// Random seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Choices; only 1.
    #[serde(default)]
    pub n: Option<u64>,
    /// Server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Stream options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Chat: a boolean; completions: the number of alternatives.
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Chat: alternatives per token.
    #[serde(default)]
    pub top_logprobs: Option<u64>,
    /// Keep generating past end-of-sequence tokens (a llama.cpp extension).
    #[serde(default)]
    pub ignore_eos: Option<bool>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Which endpoint a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// /v1/chat/completions
    Chat,
    /// /v1/completions
    Completion,
}

/// A validated request.
#[derive(Debug)]
pub struct Params {
    /// Most tokens to generate (`None`: as many as fit).
    pub max_tokens: Option<u64>,
    /// Temperature (default 1, as OpenAI).
    pub temperature: f32,
    /// top_p (default 1).
    pub top_p: f32,
    /// top_k (default 0 = off).
    pub top_k: usize,
    /// Seed, if given.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Stream.
    pub stream: bool,
    /// Usage chunk when streaming.
    pub include_usage: bool,
    /// `Some(k)`: logprobs with `k` alternatives.
    pub logprobs: Option<usize>,
    /// Ignore EOS.
    pub ignore_eos: bool,
}

/// Parse a body.
pub fn parse(body: &[u8]) -> Result<Request, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad(format!("invalid request body: {e}"), None))
}

impl Request {
    /// Check the fields shared by both endpoints.
    pub fn validate(&self, kind: Kind) -> Result<Params, ApiError> {
        if let Some(k) = self
            .extra
            .keys()
            .find(|k| !IGNORED_FIELDS.contains(&k.as_str()))
        {
            return Err(ApiError::bad(format!("unknown field `{k}`"), Some(k)));
        }
        match kind {
            Kind::Chat => {
                if self.prompt.is_some() {
                    return Err(ApiError::bad(
                        "`prompt` is for /v1/completions; chat takes `messages`",
                        Some("prompt"),
                    ));
                }
            }
            Kind::Completion => {
                if self.messages.is_some() {
                    return Err(ApiError::bad(
                        "`messages` is for /v1/chat/completions; completions take `prompt`",
                        Some("messages"),
                    ));
                }
            }
        }
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ApiError::bad("only n = 1 is supported", Some("n")));
        }
        let max_tokens = match (self.max_tokens, self.max_completion_tokens) {
            (Some(a), Some(b)) if a != b => {
                return Err(ApiError::bad(
                    "max_tokens and max_completion_tokens disagree",
                    Some("max_tokens"),
                ));
            }
            (a, b) => a.or(b),
        };
        if max_tokens == Some(0) {
            return Err(ApiError::bad(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ));
        }
        let temperature = self.temperature.unwrap_or(1.0);
        if !temperature.is_finite() || temperature < 0.0 {
            return Err(ApiError::bad(
                "temperature must be a number >= 0",
                Some("temperature"),
            ));
        }
        let top_p = self.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::bad("top_p must be in (0, 1]", Some("top_p")));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > 4 {
            return Err(ApiError::bad("at most 4 stop strings", Some("stop")));
        }
        let logprobs = match (kind, &self.logprobs) {
            (_, None | Some(Value::Null)) | (Kind::Chat, Some(Value::Bool(false))) => {
                if self.top_logprobs.is_some_and(|k| k > 0) {
                    return Err(ApiError::bad(
                        "top_logprobs needs logprobs: true",
                        Some("top_logprobs"),
                    ));
                }
                None
            }
            (Kind::Chat, Some(Value::Bool(true))) => Some(self.top_logprobs.unwrap_or(0)),
            (Kind::Completion, Some(Value::Number(n))) => match n.as_u64() {
                Some(k) => Some(k),
                None => {
                    return Err(ApiError::bad(
                        "logprobs must be an integer >= 0",
                        Some("logprobs"),
                    ));
                }
            },
            (Kind::Chat, Some(_)) => {
                return Err(ApiError::bad(
                    "logprobs must be a boolean",
                    Some("logprobs"),
                ));
            }
            (Kind::Completion, Some(_)) => {
                return Err(ApiError::bad(
                    "logprobs must be an integer",
                    Some("logprobs"),
                ));
            }
        };
        if logprobs.is_some_and(|k| k > MAX_TOP_LOGPROBS) {
            return Err(ApiError::bad(
                format!("at most {MAX_TOP_LOGPROBS} top logprobs"),
                Some("top_logprobs"),
            ));
        }
        let stream = self.stream.unwrap_or(false);
        Ok(Params {
            max_tokens,
            temperature,
            top_p,
            top_k: self.top_k.unwrap_or(0).min(usize::MAX as u64) as usize,
            seed: self.seed.map(|s| s as u64),
            stop,
            stream,
            include_usage: stream
                && self
                    .stream_options
                    .as_ref()
                    .and_then(|o| o.include_usage)
                    .unwrap_or(false),
            logprobs: logprobs.map(|k| k as usize),
            ignore_eos: self.ignore_eos.unwrap_or(false),
        })
    }

    /// The chat messages as the template takes them.
    pub fn chat_messages(&self) -> Result<Vec<vtc_model::chat::Message>, ApiError> {
        let Some(msgs) = &self.messages else {
            return Err(ApiError::bad("`messages` is required", Some("messages")));
        };
        if msgs.is_empty() {
            return Err(ApiError::bad(
                "`messages` must not be empty",
                Some("messages"),
            ));
        }
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                r => {
                    return Err(ApiError::bad(
                        format!("unsupported message role `{r}`"),
                        Some("messages"),
                    ));
                }
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut s = String::new();
                    for p in parts {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            _ => {
                                return Err(ApiError::bad(
                                    "only text content parts are supported",
                                    Some("messages"),
                                ));
                            }
                        }
                    }
                    s
                }
            };
            out.push(vtc_model::chat::Message::new(role, content));
        }
        Ok(out)
    }

    /// The completion prompt.
    pub fn prompt_text(&self) -> Result<&str, ApiError> {
        match &self.prompt {
            None => Err(ApiError::bad("`prompt` is required", Some("prompt"))),
            Some(Prompt::Text(s)) => Ok(s),
            Some(Prompt::Batch(v)) if v.len() == 1 => Ok(&v[0]),
            Some(Prompt::Batch(_)) => Err(ApiError::bad(
                "only one prompt per request is supported",
                Some("prompt"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str, kind: Kind) -> ApiError {
        match parse(body.as_bytes()).and_then(|r| r.validate(kind)) {
            Ok(p) => panic!("accepted {body}: {p:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (r#"{"prompt":"a","n":2}"#, Kind::Completion, "n"),
            (r#"{"prompt":"a","bogus":1}"#, Kind::Completion, "bogus"),
            (r#"{"prompt":"a","top_p":0}"#, Kind::Completion, "top_p"),
            (
                r#"{"prompt":"a","max_tokens":0}"#,
                Kind::Completion,
                "max_tokens",
            ),
            (r#"{"messages":[],"logprobs":3}"#, Kind::Chat, "logprobs"),
            (r#"{"messages":[],"prompt":"x"}"#, Kind::Chat, "prompt"),
        ];
        for (body, kind, field) in cases {
            assert_eq!(err(body, kind).param.as_deref(), Some(field), "{body}");
        }
        assert_eq!(
            err(r#"{"prompt":"a","temperature":"hot"}"#, Kind::Completion).status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            err(r#"{"prompt":"#, Kind::Completion).status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn accepted_fields_become_params() {
        let r = parse(
            br#"{"model":"m","prompt":["hi"],"max_completion_tokens":5,"stop":"x","seed":-1,"user":"u","logprobs":2,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        let p = r.validate(Kind::Completion).unwrap();
        assert_eq!(p.max_tokens, Some(5));
        assert_eq!(p.stop, vec!["x".to_string()]);
        assert_eq!(p.seed, Some(u64::MAX));
        assert_eq!(p.logprobs, Some(2));
        assert!(p.stream && p.include_usage);
        assert_eq!(r.prompt_text().unwrap(), "hi");
    }

    #[test]
    fn chat_content_parts_are_joined() {
        let r = parse(
            br#"{"messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":null}]}"#,
        )
        .unwrap();
        let m = r.chat_messages().unwrap();
        assert_eq!(m[0], vtc_model::chat::Message::new("system", "ab"));
        assert_eq!(m[1], vtc_model::chat::Message::new("assistant", ""));
    }
}
