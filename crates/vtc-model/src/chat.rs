//! Chat: the model's own chat template (Jinja, as Hugging Face and llama.cpp use it),
//! rendered with [minijinja], and a multi-turn conversation that keeps its KV cache
//! across turns.
//!
//! [`ChatTemplate`] renders `messages` (a list of `{role, content}`) with the variables
//! Hugging Face's `apply_chat_template` passes: `add_generation_prompt`, `bos_token`,
//! `eos_token`; and its helpers: `raise_exception(msg)`, `strftime_now(fmt)`, the
//! `tojson` filter, loop controls, and Python's string and dict methods
//! (`.strip()`, `.startswith()`, `.items()`...). Blocks are trimmed as in
//! `transformers` (`trim_blocks`, `lstrip_blocks`).
//!
//! [`Chat`] holds the messages and what the session's KV cache already holds. Each turn
//! renders the whole conversation, checks that it starts with the text already fed
//! (the previous prompt plus the reply exactly as generated), and feeds only the rest:
//! the end-of-turn marker after the reply, the new user message and the generation
//! prompt. If a template re-renders history differently (it trims the reply, or moves
//! the system message), the prefix check fails and the turn re-reads the whole
//! conversation from an empty cache instead (reported in [`Turn::reprefilled`]).
//!
//! ```
//! use vtc_model::chat::{ChatTemplate, Message};
//! let t = ChatTemplate::new(
//!     "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}\
//!      {% if add_generation_prompt %}<|assistant|>{% endif %}",
//!     "<s>",
//!     "</s>",
//! )?;
//! let text = t.render(&[Message::new("user", " Hi ")], true)?;
//! assert_eq!(text, "<|user|>Hi\n<|assistant|>");
//! # Ok::<(), vtc_model::chat::ChatError>(())
//! ```

use std::collections::BTreeMap;

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};
use tvl_loader::TvlFile;
use vtc_kernels::Backend;

use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::{GenerateOptions, ModelError, Session, StopReason};

/// Errors of chat templates and chat turns.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The model file has no chat template.
    #[error("the model file has no chat template (tensor tokenizer.chat_template)")]
    NoTemplate,
    /// The stored template is not UTF-8.
    #[error("the chat template is not valid UTF-8 (byte {offset})")]
    TemplateNotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The template does not parse.
    #[error("chat template: {0:#}")]
    Syntax(JinjaError),
    /// Rendering failed (including `raise_exception` from the template itself).
    #[error("rendering the chat template: {0:#}")]
    Render(JinjaError),
    /// The rendered conversation could not be encoded.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A forward pass failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The conversation no longer fits in the session.
    #[error(
        "context full: the conversation needs {needed} positions, the session holds {max_seq} \
         (start a new chat, or allow a longer context)"
    )]
    ContextFull {
        /// Positions the conversation and at least one reply token need.
        needed: usize,
        /// Positions the session holds.
        max_seq: usize,
    },
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    fn value(&self) -> Value {
        let mut m = BTreeMap::new();
        m.insert("role".to_string(), Value::from(self.role.as_str()));
        m.insert("content".to_string(), Value::from(self.content.as_str()));
        Value::from(m)
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "chat";

fn raise_exception(msg: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
}

/// `strftime_now(fmt)` (Llama 3 templates print today's date): the current UTC date with
/// `%d`, `%m`, `%Y`, `%y`, `%b`, `%B` and `%%` (other directives are kept as written).
fn strftime_now(fmt: String) -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl ChatTemplate {
    /// Compile `source`; `bos_token` and `eos_token` are the texts the template sees.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(ChatError::Syntax)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string())
            .map_err(ChatError::Syntax)?;
        Ok(Self {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The template stored in a model file (`tokenizer.chat_template`), with the
    /// tokenizer's BOS and EOS texts; `Ok(None)` if the file has none.
    pub fn from_file(file: &TvlFile, tokenizer: &Tokenizer) -> Result<Option<Self>, ChatError> {
        let Some(view) = file.get(tvl_format::names::CHAT_TEMPLATE) else {
            return Ok(None);
        };
        let bytes = view.as_u8().map_err(|e| ChatError::Model(e.into()))?;
        let source = std::str::from_utf8(bytes).map_err(|e| ChatError::TemplateNotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let text = |id: Option<u32>| {
            id.and_then(|id| tokenizer.token_string(id))
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default()
        };
        Self::new(source, &text(tokenizer.bos_id()), &text(tokenizer.eos_id())).map(Some)
    }

    /// Render the conversation; with `add_generation_prompt` the text ends where the
    /// assistant's reply begins.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let tmpl = self.env.get_template(NAME).map_err(ChatError::Render)?;
        let mut ctx = BTreeMap::new();
        ctx.insert(
            "messages",
            Value::from(messages.iter().map(Message::value).collect::<Vec<_>>()),
        );
        ctx.insert("add_generation_prompt", Value::from(add_generation_prompt));
        ctx.insert("bos_token", Value::from(self.bos_token.as_str()));
        ctx.insert("eos_token", Value::from(self.eos_token.as_str()));
        tmpl.render(Value::from(ctx)).map_err(ChatError::Render)
    }
}

/// What one [`Chat::turn`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    /// The reply, as generated (end-of-turn token not included).
    pub text: String,
    /// Tokens generated.
    pub generated: usize,
    /// Tokens already in the KV cache that the turn reused.
    pub reused: usize,
    /// Tokens fed for the new part of the conversation (before the reply).
    pub fed: usize,
    /// Whether the cache had to be discarded and the conversation re-read.
    pub reprefilled: bool,
    /// Why the reply ended.
    pub stop: StopReason,
}

/// A conversation: messages, and the text and tokens the session's cache holds.
#[derive(Debug)]
pub struct Chat {
    template: ChatTemplate,
    messages: Vec<Message>,
    /// Rendered bytes whose tokens are in the cache.
    fed_text: Vec<u8>,
    /// Tokens in the cache (positions `0..fed.len()` of the session).
    fed: Vec<u32>,
}

impl Chat {
    /// A new conversation, starting with a system message if one is given (else the
    /// template's default, if it has one).
    pub fn new(template: ChatTemplate, system: Option<&str>) -> Self {
        Self {
            template,
            messages: system
                .map(|s| vec![Message::new("system", s)])
                .unwrap_or_default(),
            fed_text: Vec::new(),
            fed: Vec::new(),
        }
    }

    /// The messages so far.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The tokens the session's KV cache holds for this conversation, position by
    /// position.
    pub fn cached_tokens(&self) -> &[u32] {
        &self.fed
    }

    /// The template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Tokens of the conversation rendered with a generation prompt after a new user
    /// message (without recording it): the whole prompt of a one-shot chat
    /// (`vtc run --chat`). BOS is prepended if the tokenizer adds one and the template
    /// did not write it.
    pub fn prompt_with(&self, tokenizer: &Tokenizer, user: &str) -> Result<Vec<u32>, ChatError> {
        let mut messages = self.messages.clone();
        messages.push(Message::new("user", user));
        let text = self.template.render(&messages, true)?;
        encode_start(tokenizer, &text)
    }

    /// One turn: add the user's message, feed what the cache lacks, generate the reply
    /// (streaming each piece of text to `on_text`) and record it. Generation stops at an
    /// end-of-turn token (if `opts.stop_at_eos`), after `opts.max_tokens`, or when the
    /// session is full. `session` must be used only by this conversation.
    pub fn turn<B: Backend>(
        &mut self,
        session: &mut Session<'_, B>,
        user: &str,
        opts: GenerateOptions,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Turn, ChatError> {
        let tok = session.model().tokenizer();
        let mut messages = self.messages.clone();
        messages.push(Message::new("user", user));
        let text = self.template.render(&messages, true)?;

        // Reuse the cache iff the new rendering extends exactly what it holds (and the
        // cut falls between characters).
        let had_history = !self.fed.is_empty();
        let reuse = had_history
            && session.pos() == self.fed.len()
            && !self.fed_text.is_empty()
            && text.as_bytes().starts_with(&self.fed_text)
            && text.is_char_boundary(self.fed_text.len());
        let (reused, feed) = if reuse {
            (
                self.fed.len(),
                tok.encode(&text[self.fed_text.len()..], true)?,
            )
        } else {
            (0, encode_start(tok, &text)?)
        };
        if feed.is_empty() {
            return Err(ModelError::EmptyPrompt.into());
        }
        if !reuse {
            session.reset();
            self.fed.clear();
            self.fed_text.clear();
        }
        let room = (session.max_seq() + 1).saturating_sub(reused + feed.len());
        if room == 0 {
            return Err(ChatError::ContextFull {
                needed: reused + feed.len() + 1,
                max_seq: session.max_seq(),
            });
        }
        let opts = GenerateOptions {
            max_tokens: opts.max_tokens.min(room),
            ..opts
        };
        let mut reply_ids = Vec::new();
        let mut reply = String::new();
        let mut stream = session.generate(&feed, opts)?;
        for t in &mut stream {
            let t = t?;
            reply_ids.push(t.id);
            reply.push_str(&t.text);
            on_text(&t.text);
        }
        let tail = stream.finish();
        on_text(&tail);
        reply.push_str(&tail);
        let stop = stream.stop_reason().unwrap_or(StopReason::MaxTokens);
        drop(stream);

        // The cache holds the fed tokens and the reply's tokens, except the last one
        // when generation ended on max_tokens (it was sampled, not run): run it now, so
        // the cache holds the whole reply and the next turn feeds only what follows it.
        // The reply is recorded as streamed (invalid UTF-8 shown as U+FFFD): the next
        // rendering shows it so, and the cache keeps the tokens the model produced.
        self.fed.extend_from_slice(&feed);
        self.fed.extend_from_slice(&reply_ids);
        if session.pos() + 1 == self.fed.len()
            && let Some(&last) = reply_ids.last()
            && session.pos() < session.max_seq()
        {
            session.forward(last)?;
        }
        self.fed_text = text.into_bytes();
        self.fed_text.extend_from_slice(reply.as_bytes());
        if session.pos() != self.fed.len() {
            // The context is full: the next turn re-reads, and fails if it cannot fit.
            self.fed.truncate(session.pos());
            self.fed_text.clear();
        }
        messages.push(Message::new("assistant", reply.clone()));
        self.messages = messages;
        Ok(Turn {
            text: reply,
            generated: reply_ids.len(),
            reused,
            fed: feed.len(),
            reprefilled: had_history && !reuse,
            stop,
        })
    }
}

/// Encode a rendered conversation from its start: special tokens parsed, BOS first if
/// the tokenizer adds one and the text does not already begin with it.
pub fn encode_start(tok: &Tokenizer, text: &str) -> Result<Vec<u32>, ChatError> {
    let mut ids = tok.encode(text, true)?;
    if let (true, Some(bos)) = (tok.add_bos(), tok.bos_id())
        && ids.first() != Some(&bos)
    {
        ids.insert(0, bos);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_with_the_default_system_message() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>").unwrap();
        let s = t.render(&[Message::new("user", "Hi")], true).unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by \
             Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let s = t
            .render(
                &[
                    Message::new("system", "Be brief."),
                    Message::new("user", "Hi"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn hugging_face_helpers_work() {
        // Llama-2 style: raise_exception, bos/eos, .strip(), trim_blocks.
        let src = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation roles must alternate') }}{% endif %}\n\
                   {% for m in messages %}\n\
                   {{ bos_token + '[INST] ' + m['content'].strip() + ' [/INST]' }}\n\
                   {% endfor %}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        assert_eq!(
            t.render(&[Message::new("user", "  hello ")], false)
                .unwrap(),
            "<s>[INST] hello [/INST]\n"
        );
        let e = t
            .render(&[Message::new("assistant", "x")], false)
            .unwrap_err();
        assert!(
            e.to_string().contains("Conversation roles must alternate"),
            "{e}"
        );
        // tojson, loop controls, strftime_now.
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m | tojson }}{% endfor %}|{{ strftime_now('%Y') | length }}",
            "",
            "",
        )
        .unwrap();
        let s = t
            .render(
                &[Message::new("user", "a\"b"), Message::new("user", "c")],
                false,
            )
            .unwrap();
        // Python's json.dumps spacing, as Jinja's tojson.
        assert_eq!(s, r#"{"content": "a\"b", "role": "user"}|4"#);
    }

    #[test]
    fn syntax_errors_are_typed() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(ChatError::Syntax(_))
        ));
        assert!(matches!(
            ChatTemplate::new("{{ nope() }}", "", "")
                .unwrap()
                .render(&[], true),
            Err(ChatError::Render(_))
        ));
    }

    #[test]
    fn strftime_formats_a_plausible_date() {
        let s = strftime_now("%d %b %Y|%m|%%|%q".into());
        let (d, rest) = s.split_once(' ').unwrap();
        assert_eq!(d.len(), 2);
        assert!(rest.contains("|%|%q"), "{s}");
        let year: i64 = rest[4..8].parse().unwrap();
        assert!((2024..2200).contains(&year), "{s}");
    }
}
