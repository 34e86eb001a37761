//! The engine: one OS thread that owns the model, the backend and the slots.
//!
//! Requests ([`Job`]) arrive through a bounded channel (full: the HTTP layer answers
//! 429). Each loop iteration admits queued jobs into free slots (reusing a free slot's
//! cache when the prompt starts with what it holds), then runs ONE pass for all active
//! slots together: the next token of every decoding slot, and the next chunk of every
//! joining slot's prompt (up to [`PREFILL_PER_STEP`] tokens while others decode, so a
//! long prompt does not stall their streams; the whole pass's room when none does).
//! Each slot's next token is sampled with its own [`Sampler`] and its text sent over
//! the job's channel. A job whose receiver is gone (the client disconnected) leaves its
//! slot at the next step.

pub mod runner;
pub mod stop;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use vtc_model::tokenizer::{StreamDecoder, Tokenizer};
use vtc_model::{Run, Sampler, SamplerConfig};

use crate::metrics::Metrics;
use runner::Runner;
use stop::StopBuffer;

/// Why a completion ended (`finish_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached, or the slot's context is full.
    Length,
}

impl Finish {
    /// The OpenAI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// The log-probability of one generated token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The token id.
    pub id: u32,
    /// The token's own text (lossy UTF-8).
    pub text: String,
    /// Natural log of its probability under the step's logits (log-softmax, no
    /// temperature).
    pub logprob: f32,
    /// The most likely tokens of that step with their log-probabilities (as many as
    /// the request's `top_logprobs`).
    pub top: Vec<(u32, String, f32)>,
}

/// What the engine sends back for one job.
#[derive(Debug)]
pub enum Event {
    /// Text completed since the last delta (never a partial UTF-8 character, never the
    /// start of a stop string that may still match), and the logprobs of the tokens it
    /// came from (when asked for).
    Delta {
        /// The text.
        text: String,
        /// Token logprobs (empty unless the job asked for them).
        logprobs: Vec<TokenLogprob>,
    },
    /// The job ended.
    Done {
        /// Why.
        finish: Finish,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens (stop tokens included, as OpenAI counts them).
        completion_tokens: usize,
    },
    /// The model failed; the job ended.
    Error(String),
}

/// One request for the engine.
pub struct Job {
    /// Prompt tokens (validated: at least one, fewer than the slot size).
    pub prompt: Vec<u32>,
    /// Most tokens to generate (already clipped to the room the slot has).
    pub max_tokens: usize,
    /// Sampling.
    pub sampler: SamplerConfig,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Keep generating after end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Send logprobs; `Some(k)`: with the `k` most likely alternatives.
    pub logprobs: Option<usize>,
    /// Where the events go.
    pub events: UnboundedSender<Event>,
    /// When the HTTP layer queued it.
    pub queued: Instant,
}

/// Prompt tokens a step runs for the joining slots while other slots are decoding:
/// their next token waits for the pass, so a prompt of hundreds of tokens is spread
/// over several steps instead of stalling every stream for its whole prefill.
pub const PREFILL_PER_STEP: usize = 32;

/// A slot's running job.
struct Active {
    job: Job,
    /// Prompt tokens in the slot's cache; the job decodes once all are.
    fed: usize,
    sampler: Sampler,
    decoder: StreamDecoder,
    stop: StopBuffer,
    generated: usize,
    /// The token sampled last, to be run at the next step.
    next: u32,
    /// Logprobs not yet sent with a delta.
    lps: Vec<TokenLogprob>,
    last_token: Instant,
}

/// Per-slot bookkeeping.
struct Slot {
    /// The tokens in the slot's cache, position by position.
    cached: Vec<u32>,
    active: Option<Active>,
}

/// Run the engine until `jobs` is closed and no job is left, or until `cut` is set:
/// then every running job ends at once (`finish_reason` "length"), queued ones get an
/// error, and it returns.
pub fn run<R: Runner>(
    mut runner: R,
    tokenizer: &Tokenizer,
    jobs: Receiver<Job>,
    metrics: Arc<Metrics>,
    cut: Arc<AtomicBool>,
) {
    let mut slots: Vec<Slot> = (0..runner.slots())
        .map(|_| Slot {
            cached: Vec::new(),
            active: None,
        })
        .collect();
    let mut closed = false;
    let mut steps: Vec<Step> = Vec::new();
    loop {
        if cut.load(Ordering::Relaxed) {
            for s in &mut slots {
                if let Some(a) = s.active.take() {
                    let _ = a.job.events.send(Event::Done {
                        finish: Finish::Length,
                        prompt_tokens: a.job.prompt.len(),
                        completion_tokens: a.generated,
                    });
                }
            }
            while let Ok(job) = jobs.try_recv() {
                metrics.queue_len.fetch_sub(1, Ordering::Relaxed);
                let _ = job
                    .events
                    .send(Event::Error("the server is shutting down".into()));
            }
            metrics.active_slots.store(0, Ordering::Relaxed);
            return;
        }
        // Admit queued jobs into free slots.
        while !closed && slots.iter().any(|s| s.active.is_none()) {
            let idle = slots.iter().all(|s| s.active.is_none());
            let job = if idle {
                // Wake now and then to see `cut`.
                match jobs.recv_timeout(Duration::from_millis(100)) {
                    Ok(j) => j,
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            } else {
                match jobs.try_recv() {
                    Ok(j) => j,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            };
            metrics.queue_len.fetch_sub(1, Ordering::Relaxed);
            if job.events.is_closed() {
                continue;
            }
            admit(&mut runner, &mut slots, job, &metrics);
        }
        metrics.active_slots.store(
            slots.iter().filter(|s| s.active.is_some()).count() as i64,
            Ordering::Relaxed,
        );
        for s in slots.iter_mut() {
            if let Some(a) = &s.active
                && a.job.events.is_closed()
            {
                // The client went away: free the slot.
                s.active = None;
            }
        }
        plan(&slots, runner.capacity(), &mut steps);
        if steps.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        let runs: Vec<Run<'_>> = steps
            .iter()
            .map(|st| {
                let a = slots[st.slot]
                    .active
                    .as_ref()
                    .expect("planned slots are active");
                match st.prompt {
                    Some(n) => Run {
                        slot: st.slot,
                        tokens: &a.job.prompt[a.fed..a.fed + n],
                        logits: a.fed + n == a.job.prompt.len(),
                    },
                    None => Run {
                        slot: st.slot,
                        tokens: std::slice::from_ref(&a.next),
                        logits: true,
                    },
                }
            })
            .collect();
        let ran = runner.run(&runs);
        drop(runs);
        if let Err(e) = ran {
            for st in &steps {
                if let Some(a) = slots[st.slot].active.take() {
                    let _ = a.job.events.send(Event::Error(e.to_string()));
                }
                slots[st.slot].cached.clear();
                runner.truncate(st.slot, 0);
            }
            continue;
        }
        if steps.iter().any(|st| st.prompt.is_some()) {
            metrics.prefill_steps.fetch_add(1, Ordering::Relaxed);
            if steps.iter().any(|st| st.prompt.is_none()) {
                metrics.mixed_steps.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut out = 0;
        for st in &steps {
            let slot = &mut slots[st.slot];
            let Some(mut a) = slot.active.take() else {
                continue;
            };
            match st.prompt {
                Some(n) => {
                    slot.cached
                        .extend_from_slice(&a.job.prompt[a.fed..a.fed + n]);
                    a.fed += n;
                    if a.fed < a.job.prompt.len() {
                        slot.active = Some(a);
                        continue;
                    }
                    metrics.ttft.observe(a.job.queued.elapsed().as_secs_f64());
                }
                None => slot.cached.push(a.next),
            }
            let logits = runner.logits(out);
            out += 1;
            let full = runner.pos(st.slot) >= runner.max_seq();
            slot.active = advance(a, logits, tokenizer, full, &metrics);
        }
        metrics.active_slots.store(
            slots.iter().filter(|s| s.active.is_some()).count() as i64,
            Ordering::Relaxed,
        );
    }
}

/// One slot's part of a step: its next token (`prompt: None`) or the next `n` tokens
/// of its prompt.
struct Step {
    slot: usize,
    prompt: Option<usize>,
}

/// The runs of the next step, in slot order: every decoding slot's next token, then
/// as much of the joining slots' prompts (in slot order) as the pass has room for, at
/// most [`PREFILL_PER_STEP`] tokens when some slot decodes.
fn plan(slots: &[Slot], capacity: usize, steps: &mut Vec<Step>) {
    steps.clear();
    let active = || {
        slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i, s.active.as_ref()?)))
    };
    let decoding = active()
        .filter(|(_, a)| a.fed == a.job.prompt.len())
        .count();
    let mut room = if decoding > 0 {
        PREFILL_PER_STEP.min(capacity - decoding)
    } else {
        capacity
    };
    for (i, a) in active() {
        let left = a.job.prompt.len() - a.fed;
        if left == 0 {
            steps.push(Step {
                slot: i,
                prompt: None,
            });
        } else if room > 0 {
            let n = left.min(room);
            room -= n;
            steps.push(Step {
                slot: i,
                prompt: Some(n),
            });
        }
    }
}

/// Put `job` into the free slot whose cache shares the longest prefix with its prompt;
/// the rest of the prompt runs in the next steps.
fn admit<R: Runner>(runner: &mut R, slots: &mut [Slot], job: Job, metrics: &Metrics) {
    let prompt = &job.prompt;
    let Some((i, common)) = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.active.is_none())
        .map(|(i, s)| (i, common_prefix(&s.cached, prompt)))
        .max_by_key(|&(i, c)| (c, std::cmp::Reverse(i)))
    else {
        return;
    };
    // At least one token must run to give the logits of the next.
    let keep = common.min(prompt.len().saturating_sub(1));
    runner.truncate(i, keep);
    let slot = &mut slots[i];
    slot.cached.truncate(keep);
    metrics
        .prompt_tokens
        .fetch_add(prompt.len() as u64, Ordering::Relaxed);
    metrics
        .reused_tokens
        .fetch_add(keep as u64, Ordering::Relaxed);
    // The rest of the prompt runs in the next steps' passes ([`plan`]).
    slot.active = Some(Active {
        fed: keep,
        sampler: Sampler::new(job.sampler),
        decoder: StreamDecoder::new(),
        stop: StopBuffer::new(job.stop.clone()),
        generated: 0,
        next: 0,
        lps: Vec::new(),
        last_token: Instant::now(),
        job,
    });
}

/// Sample the next token of `a` from `logits` and send what it completes; `None` when
/// the job is over (the events are sent).
fn advance(
    mut a: Active,
    logits: &[f32],
    tokenizer: &Tokenizer,
    full: bool,
    metrics: &Metrics,
) -> Option<Active> {
    let tok = a.sampler.sample(logits);
    let now = Instant::now();
    if a.generated > 0 {
        metrics
            .itl
            .observe(now.duration_since(a.last_token).as_secs_f64());
    }
    a.last_token = now;
    a.generated += 1;
    metrics.completion_tokens.fetch_add(1, Ordering::Relaxed);
    if let Some(k) = a.job.logprobs {
        a.lps.push(logprob_of(tokenizer, logits, tok, k));
    }
    let mut finish = None;
    let mut text = String::new();
    if !a.job.ignore_eos && tokenizer.is_stop(tok) {
        finish = Some(Finish::Stop);
        text.push_str(&a.stop.finish(&a.decoder.flush()));
    } else {
        let piece = a.decoder.push(tokenizer, tok);
        let (out, matched) = a.stop.push(&piece);
        text = out;
        if matched {
            finish = Some(Finish::Stop);
        } else if a.generated >= a.job.max_tokens || full {
            finish = Some(Finish::Length);
            text.push_str(&a.stop.finish(&a.decoder.flush()));
            // A stop string completed by the flushed text still ends the text there.
            if a.stop.matched() {
                finish = Some(Finish::Stop);
            }
        }
    }
    if !text.is_empty() || (finish.is_some() && !a.lps.is_empty()) {
        let logprobs = std::mem::take(&mut a.lps);
        if a.job.events.send(Event::Delta { text, logprobs }).is_err() {
            return None;
        }
    }
    match finish {
        Some(finish) => {
            let _ = a.job.events.send(Event::Done {
                finish,
                prompt_tokens: a.job.prompt.len(),
                completion_tokens: a.generated,
            });
            None
        }
        None => {
            a.next = tok;
            Some(a)
        }
    }
}

/// Length of the common prefix of `a` and `b`.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The log-softmax of `logits` at `tok`, and the `k` most likely tokens.
fn logprob_of(tokenizer: &Tokenizer, logits: &[f32], tok: u32, k: usize) -> TokenLogprob {
    let lsm = LogSoftmax::new(logits);
    let text = |id: u32| tokenizer.decode(&[id]);
    let mut top = Vec::new();
    if k > 0 {
        let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
        let desc = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let k = k.min(idx.len());
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, desc);
            idx.truncate(k);
        }
        idx.sort_unstable_by(desc);
        top = idx
            .into_iter()
            .map(|id| (id, text(id), lsm.at(logits, id)))
            .collect();
    }
    TokenLogprob {
        id: tok,
        text: text(tok),
        logprob: lsm.at(logits, tok),
        top,
    }
}

/// `max + ln(sum(exp(x - max)))` of a logit row, in f64, in index order (so the same
/// row gives the same bits).
struct LogSoftmax {
    max: f64,
    log_sum: f64,
}

impl LogSoftmax {
    fn new(logits: &[f32]) -> Self {
        let max = logits
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum: f64 = logits
            .iter()
            .filter(|v| !v.is_nan())
            .map(|&v| (v as f64 - max).exp())
            .sum();
        Self {
            max,
            log_sum: sum.ln(),
        }
    }

    fn at(&self, logits: &[f32], id: u32) -> f32 {
        let v = logits.get(id as usize).copied().unwrap_or(f32::NAN) as f64;
        (v - self.max - self.log_sum) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_sums_to_one() {
        let logits = [1.0f32, 2.0, 3.0, -1.0];
        let l = LogSoftmax::new(&logits);
        let total: f64 = (0..4).map(|i| (l.at(&logits, i) as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{total}");
        assert!(l.at(&logits, 2) > l.at(&logits, 1));
    }

    #[test]
    fn common_prefix_lengths() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2, 3]), 2);
    }
}
