//! Perplexity of a model over a text, defined so the figure compares across engines and
//! with the float64 reference (`scripts/perplexity_reference.py`):
//!
//! 1. **Tokenize** the whole text once ([`perplexity_ids`]): plain text (special-token
//!    strings such as `<|im_end|>` are *not* parsed, as in llama.cpp's `perplexity`), with
//!    the BOS token prepended once, at the very start of the text, iff the model's
//!    `add_bos` flag is set. Windows after the first do not start with BOS.
//! 2. **Cut** the ids into consecutive, non-overlapping windows of `ctx` tokens
//!    ([`perplexity_windows`]); a last partial window counts if it has at least 2 tokens
//!    (a last single token is not scored).
//! 3. **Run** each window from an empty KV cache and **score** every token after the
//!    window's first: token `i` of a window costs `-ln p(token_i | tokens_0..i)`, the
//!    log-probability taken from the logits after token `i - 1` ([`token_nll`]: log-softmax
//!    in f64 of the f32 logits, max-subtracted log-sum-exp).
//! 4. **Report** `exp(nll_sum / tokens_scored)` over all scored tokens of all windows
//!    ([`PerplexityReport`]).
//!
//! The last token of a window only needs to be scored, not run, so a window of `n` tokens
//! runs its first `n - 1` tokens, batched ([`Session::score`]: bit for bit the logits of
//! running them one at a time).
//!
//! ```no_run
//! let file = tvl_loader::TvlFile::open("model.tvl")?;
//! let model = vtc_model::Model::load(&file)?;
//! let text = std::fs::read_to_string("book.txt")?;
//! let ids = vtc_model::perplexity_ids(model.tokenizer(), &text)?;
//! let backend = vtc_kernels::select(None)?;
//! let report = vtc_model::perplexity(&model, backend, &ids, 512, &mut |_, _| {})?;
//! println!("perplexity {:.4} over {} tokens", report.perplexity, report.tokens_scored);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Range;

use vtc_kernels::Backend;

use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::{Model, ModelError, Session};

/// The window length `vtc perplexity` uses unless told otherwise.
pub const DEFAULT_PERPLEXITY_CTX: usize = 512;

/// The outcome of [`perplexity`].
#[derive(Clone, Debug, PartialEq)]
pub struct PerplexityReport {
    /// `exp(nll_sum / tokens_scored)`.
    pub perplexity: f64,
    /// Tokens scored: the windows' lengths minus one each.
    pub tokens_scored: usize,
    /// Sum over the scored tokens of `-ln p(token)` (natural log), accumulated in f64.
    pub nll_sum: f64,
    /// Windows run.
    pub windows: usize,
    /// Window length asked for (the last window may be shorter).
    pub ctx: usize,
    /// Token ids given, including a trailing single token that no window covers.
    pub tokens: usize,
}

impl PerplexityReport {
    /// Mean negative log-likelihood per scored token (nats).
    pub fn mean_nll(&self) -> f64 {
        self.nll_sum / self.tokens_scored as f64
    }
}

/// Token ids of `text` for a perplexity run: the text encoded as plain text (special
/// tokens written in it are not parsed), with the BOS token prepended once iff the
/// tokenizer's [`add_bos`](Tokenizer::add_bos) flag is set.
pub fn perplexity_ids(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, TokenizerError> {
    let mut ids = Vec::new();
    if let (true, Some(bos)) = (tokenizer.add_bos(), tokenizer.bos_id()) {
        ids.push(bos);
    }
    ids.extend(tokenizer.encode(text, false)?);
    Ok(ids)
}

/// The windows of a perplexity run over `n_tokens` ids: `start..end` ranges of `ctx`
/// tokens, consecutive and non-overlapping from 0, plus a last partial window if at least
/// 2 tokens remain. With `ctx < 2` no window can score a token: the result is empty.
pub fn perplexity_windows(n_tokens: usize, ctx: usize) -> Vec<Range<usize>> {
    if ctx < 2 {
        return Vec::new();
    }
    (0..n_tokens)
        .step_by(ctx)
        .map(|start| start..(start + ctx).min(n_tokens))
        .filter(|w| w.len() >= 2)
        .collect()
}

/// `-ln softmax(logits)[target]`, computed in f64: `logsumexp(logits) - logits[target]`
/// with the maximum subtracted before exponentiating. `None` if `target` is outside
/// `logits`. Non-finite logits give a non-finite result.
pub fn token_nll(logits: &[f32], target: u32) -> Option<f64> {
    let chosen = f64::from(*logits.get(target as usize)?);
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
    let sum: f64 = logits.iter().map(|&l| (f64::from(l) - max).exp()).sum();
    Some(max + sum.ln() - chosen)
}

/// Perplexity of `model` on `ids` with windows of `ctx` tokens, run on `backend`: `ids`
/// cut into consecutive windows (a last one of at least 2 tokens counts), each run
/// from an empty cache, every token after a window's first scored by its negative
/// log-probability; the result is `exp` of the mean over all scored tokens.
///
/// `progress(done, total)` is called after every forward pass with the tokens scored so
/// far and the total to score.
///
/// Errors: [`ModelError::PerplexityWindow`] if `ctx < 2` or `ctx` exceeds the model's
/// context length; [`ModelError::TooFewTokens`] if `ids` has fewer than 2 tokens;
/// [`ModelError::TokenOutOfRange`] if an id is outside the vocabulary (checked before
/// any work is done).
pub fn perplexity<B: Backend>(
    model: &Model<'_>,
    backend: B,
    ids: &[u32],
    ctx: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityReport, ModelError> {
    let max = model.config().context_len;
    if ctx < 2 || ctx > max {
        return Err(ModelError::PerplexityWindow { ctx, max });
    }
    if ids.len() < 2 {
        return Err(ModelError::TooFewTokens { tokens: ids.len() });
    }
    let vocab = model.config().vocab_size;
    if let Some(&token) = ids.iter().find(|&&t| t as usize >= vocab) {
        return Err(ModelError::TokenOutOfRange { token, vocab });
    }
    let windows = perplexity_windows(ids.len(), ctx);
    let total: usize = windows.iter().map(|w| w.len() - 1).sum();
    // Room for the longest window less its last token, which is scored but never run.
    let longest = windows.iter().map(|w| w.len() - 1).max().unwrap_or(1);
    let mut session = Session::new(model, backend, longest)?;
    let mut nll_sum = 0.0f64;
    let mut done = 0usize;
    for w in &windows {
        session.reset();
        let window = &ids[w.clone()];
        let mut bad = None;
        session.score(&window[..window.len() - 1], &mut |i, logits| {
            let next = window[i + 1];
            match token_nll(logits, next) {
                Some(nll) => nll_sum += nll,
                None => bad = bad.or(Some(next)),
            }
            done += 1;
            progress(done, total);
        })?;
        if let Some(token) = bad {
            return Err(ModelError::TokenOutOfRange { token, vocab });
        }
    }
    Ok(PerplexityReport {
        perplexity: (nll_sum / total as f64).exp(),
        tokens_scored: total,
        nll_sum,
        windows: windows.len(),
        ctx,
        tokens: ids.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use tvl_format::{PreTokenizer, TokenizerKind};

    use crate::tokenizer::{TokenizerData, byte_level_form};

    /// The windows as `(start, end)` pairs.
    fn cut(n_tokens: usize, ctx: usize) -> Vec<(usize, usize)> {
        perplexity_windows(n_tokens, ctx)
            .into_iter()
            .map(|w| (w.start, w.end))
            .collect()
    }

    #[test]
    fn windows_cover_the_ids_and_drop_only_a_single_trailing_token() {
        let n = 8;
        let cases: [(usize, &[(usize, usize)]); 7] = [
            (0, &[]),
            (1, &[]),
            (2, &[(0, 2)]),
            (n - 1, &[(0, 7)]),
            (n, &[(0, 8)]),
            (n + 1, &[(0, 8)]),
            (2 * n + 1, &[(0, 8), (8, 16)]),
        ];
        for (tokens, want) in cases {
            assert_eq!(cut(tokens, n), want, "{tokens} tokens");
        }
        assert_eq!(cut(n + 2, n), [(0, 8), (8, 10)]);
        assert_eq!(cut(5, 2), [(0, 2), (2, 4)]);
        assert_eq!(cut(6, 2), [(0, 2), (2, 4), (4, 6)]);
        for ctx in [0, 1] {
            assert!(cut(100, ctx).is_empty());
        }
    }

    #[test]
    fn windows_are_consecutive_and_score_len_minus_one_each() {
        for ctx in 2..12 {
            for n in 0..50 {
                let ws = perplexity_windows(n, ctx);
                let mut next = 0;
                for w in &ws {
                    assert_eq!(w.start, next);
                    assert!(w.len() >= 2 && w.len() <= ctx);
                    next = w.end;
                }
                // Everything is covered but a single trailing token (or nothing at all).
                assert!(n - next <= 1, "n {n} ctx {ctx}");
                let scored: usize = ws.iter().map(|w| w.len() - 1).sum();
                let full = n / ctx;
                let rest = n % ctx;
                let want = full * (ctx - 1) + rest.saturating_sub(1);
                assert_eq!(scored, want, "n {n} ctx {ctx}");
            }
        }
    }

    #[test]
    fn token_nll_is_a_stable_log_softmax() {
        // Uniform logits: -ln(1/4).
        let nll = token_nll(&[3.0; 4], 2).unwrap();
        assert!((nll - 4f64.ln()).abs() < 1e-15);
        // Large logits do not overflow: the maximum is subtracted first.
        let nll = token_nll(&[1000.0, 1000.0], 0).unwrap();
        assert!((nll - 2f64.ln()).abs() < 1e-12);
        // Against a direct f64 formula.
        let logits = [0.5f32, -1.25, 2.0, 0.0, 3.5];
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        for (i, &l) in logits.iter().enumerate() {
            let want = -(f64::from(l).exp() / z).ln();
            assert!((token_nll(&logits, i as u32).unwrap() - want).abs() < 1e-12);
        }
        assert_eq!(token_nll(&logits, 5), None);
        assert!(token_nll(&[f32::NAN, 0.0], 1).unwrap().is_nan());
    }

    fn byte_tokenizer(add_bos: bool) -> Tokenizer {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8)
            .map(|b| byte_level_form(&[b]).into_bytes())
            .collect();
        tokens.push(b"<s>".to_vec());
        let mut token_types = vec![1u8; 257];
        token_types[256] = 3;
        Tokenizer::new(TokenizerData {
            kind: TokenizerKind::ByteLevelBpe,
            pretokenizer: PreTokenizer::Gpt2,
            tokens,
            token_types,
            scores: Vec::new(),
            merges: Vec::new(),
            bos_id: Some(256),
            eos_id: None,
            eot_id: None,
            unk_id: None,
            add_bos,
            add_space_prefix: true,
        })
        .unwrap()
    }

    #[test]
    fn ids_start_with_bos_once_iff_the_model_asks_and_specials_stay_text() {
        let text = "ab<s>c";
        let plain: Vec<u32> = text.bytes().map(u32::from).collect();
        assert_eq!(perplexity_ids(&byte_tokenizer(false), text).unwrap(), plain);
        let with_bos = perplexity_ids(&byte_tokenizer(true), text).unwrap();
        assert_eq!(with_bos[0], 256);
        assert_eq!(with_bos[1..], plain[..]);
        assert_eq!(with_bos.iter().filter(|&&t| t == 256).count(), 1);
    }
}
