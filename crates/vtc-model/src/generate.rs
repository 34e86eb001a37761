//! Streaming generation: an iterator of tokens with their text, for apps that embed the
//! runtime.

use vtc_kernels::Backend;

use crate::tokenizer::StreamDecoder;
use crate::{ModelError, Sampler, SamplerConfig, Session};

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Most tokens to produce.
    pub max_tokens: usize,
    /// How to pick each token.
    pub sampler: SamplerConfig,
    /// Stop at the tokenizer's end-of-sequence / end-of-turn ids (they are not yielded).
    pub stop_at_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            stop_at_eos: true,
        }
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` were produced.
    MaxTokens,
    /// The model produced an end-of-sequence or end-of-turn token.
    EndOfSequence,
    /// A forward pass failed (the error was yielded).
    Error,
}

/// One generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// Token id.
    pub id: u32,
    /// Text this token completes (may be empty while a UTF-8 character is split across
    /// tokens; never a partial character).
    pub text: String,
}

/// An in-progress generation; iterate it to get tokens. The prompt is processed on the
/// first call to `next`.
pub struct Generation<'s, 'm, B: Backend> {
    session: &'s mut Session<'m, B>,
    prompt: Vec<u32>,
    opts: GenerateOptions,
    sampler: Sampler,
    decoder: StreamDecoder,
    last: Option<u32>,
    produced: usize,
    stop: Option<StopReason>,
}

impl<'m, B: Backend> Session<'m, B> {
    /// Generate a continuation of `prompt` (token ids, appended after what the session
    /// already holds). Fails up front if the prompt plus `max_tokens` does not fit in
    /// the session's context.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        opts: GenerateOptions,
    ) -> Result<Generation<'_, 'm, B>, ModelError> {
        if prompt.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        let need = self.pos() + prompt.len() + opts.max_tokens;
        if need > self.max_seq() + 1 {
            return Err(ModelError::ContextTooLong {
                requested: need - 1,
                max: self.max_seq(),
            });
        }
        Ok(Generation {
            session: self,
            prompt: prompt.to_vec(),
            sampler: Sampler::new(opts.sampler),
            opts,
            decoder: StreamDecoder::new(),
            last: None,
            produced: 0,
            stop: None,
        })
    }
}

impl<B: Backend> Generation<'_, '_, B> {
    /// Why the generation ended (`None` while it runs).
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Tokens produced so far.
    pub fn produced(&self) -> usize {
        self.produced
    }

    /// Text of bytes still held back at the end (an incomplete UTF-8 sequence, shown
    /// as U+FFFD); call once after the iteration.
    pub fn finish(&mut self) -> String {
        self.decoder.flush()
    }

    fn step(&mut self) -> Result<Option<Generated>, ModelError> {
        if self.produced >= self.opts.max_tokens {
            self.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        let logits = match self.last {
            None => self.session.prefill(&self.prompt)?,
            Some(t) => self.session.forward(t)?,
        };
        let id = self.sampler.sample(logits);
        let tok = self.session.model().tokenizer();
        if self.opts.stop_at_eos && tok.is_stop(id) {
            self.stop = Some(StopReason::EndOfSequence);
            return Ok(None);
        }
        self.produced += 1;
        self.last = Some(id);
        Ok(Some(Generated {
            id,
            text: self.decoder.push(tok, id),
        }))
    }
}

impl<B: Backend> Iterator for Generation<'_, '_, B> {
    type Item = Result<Generated, ModelError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.stop.is_some() {
            return None;
        }
        match self.step() {
            Ok(Some(g)) => Some(Ok(g)),
            Ok(None) => None,
            Err(e) => {
                self.stop = Some(StopReason::Error);
                Some(Err(e))
            }
        }
    }
}
