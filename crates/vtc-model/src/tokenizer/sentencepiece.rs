//! SentencePiece-style BPE, as llama2.c's `run.c` encodes (and as llama.cpp's "llama"
//! vocabulary does): merges chosen by token score, `<0xXX>` byte fallback.
//!
//! Token strings are stored in SentencePiece's form, with `▁` (U+2581) for a space
//! (`▁the`); byte tokens are `<0xXX>`. Encoding a piece of text:
//! 1. a space is put in front of the text (SentencePiece's dummy prefix; `run.c` adds it
//!    when the text is non-empty) and every space becomes `▁`;
//! 2. each character that is a token becomes that token; any other character becomes its
//!    UTF-8 bytes as byte tokens (`<0x0A>`), or the unknown token if the vocabulary has
//!    no byte tokens (dropped if it has neither);
//! 3. repeatedly, of all adjacent pairs whose concatenation is a token, the one making
//!    the token of highest score is merged (the leftmost on ties).
//!
//! Tokens of every type take part, as in llama.cpp's `llm_tokenizer_spm` and run.c's
//! vocabulary lookup: text that spells a control or byte token (`<0x41>`) may merge into
//! it when the vocabulary holds the pieces on the way. Decoding turns
//! `▁` back into spaces and byte tokens into their bytes, so a `▁` in the text itself
//! encodes like a space and decodes to one, as in SentencePiece and llama.cpp.

use super::bpe::{self, MergeTable};
use super::hash::FastMap;
use super::{NONE, token_type};

/// The SentencePiece space mark `▁` (U+2581).
pub const SPACE_MARK: char = '\u{2581}';

/// UTF-8 of [`SPACE_MARK`].
const SPACE_MARK_UTF8: &[u8] = "\u{2581}".as_bytes();

/// The byte a `<0xXX>` token stands for.
pub(crate) fn byte_token_value(s: &[u8]) -> Option<u8> {
    let hex = s.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    if hex.len() != 2 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let hex = std::str::from_utf8(hex).ok()?;
    u8::from_str_radix(hex, 16).ok()
}

/// Whether the token is a byte token: type `BYTE` and spelled `<0xXX>`, or spelled so in
/// a vocabulary without token types.
fn is_byte_token(stored: &[u8], ty: u8, typed: bool) -> Option<u8> {
    if typed && ty != token_type::BYTE {
        return None;
    }
    byte_token_value(stored)
}

/// Append what a stored SentencePiece token decodes to: `▁` becomes a space, a byte token
/// its byte, anything else its own bytes.
pub(crate) fn decode_token_into(stored: &[u8], ty: u8, typed: bool, out: &mut Vec<u8>) {
    if let Some(b) = is_byte_token(stored, ty, typed) {
        out.push(b);
        return;
    }
    if ty != token_type::NORMAL {
        out.extend_from_slice(stored);
        return;
    }
    let mut rest = stored;
    while let Some(at) = rest
        .windows(SPACE_MARK_UTF8.len())
        .position(|w| w == SPACE_MARK_UTF8)
    {
        out.extend_from_slice(&rest[..at]);
        out.push(b' ');
        rest = &rest[at + SPACE_MARK_UTF8.len()..];
    }
    out.extend_from_slice(rest);
}

/// The lookup tables of a SentencePiece vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct SpModel {
    /// Normal tokens of exactly one character.
    chars: FastMap<char, u32>,
    /// Token of each byte (`<0xXX>`), [`NONE`] if absent.
    byte_ids: Box<[u32; 256]>,
    /// Pair -> (priority, merged): priority 0 is the highest score.
    merges: MergeTable,
    /// Unknown token, used for bytes without a byte token.
    unk_id: Option<u32>,
}

impl SpModel {
    /// Build from the stored token strings, their types (`types.len() == tokens.len()`),
    /// whether the file had types, and the scores (empty, or one per token).
    pub(crate) fn new(
        tokens: &[Vec<u8>],
        types: &[u8],
        typed: bool,
        scores: &[f32],
        unk_id: Option<u32>,
    ) -> Self {
        let mut chars = FastMap::default();
        let mut byte_ids = Box::new([NONE; 256]);
        let mut by_string: FastMap<&[u8], u32> = FastMap::default();
        by_string.reserve(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            let id = i as u32;
            if let Some(b) = is_byte_token(t, types[i], typed)
                && byte_ids[b as usize] == NONE
            {
                byte_ids[b as usize] = id;
            }
            by_string.entry(t.as_slice()).or_insert(id);
            if let Ok(s) = std::str::from_utf8(t) {
                let mut it = s.chars();
                if let (Some(c), None) = (it.next(), it.next()) {
                    chars.entry(c).or_insert(id);
                }
            }
        }

        // Priority = dense rank of the score, highest first (equal scores share a
        // priority, so the leftmost pair wins between them, as in run.c). NaN ranks last.
        let score = |i: usize| {
            let s = scores.get(i).copied().unwrap_or(0.0);
            if s.is_nan() { f32::NEG_INFINITY } else { s }
        };
        let mut order: Vec<u32> = by_string.values().copied().collect();
        order.sort_unstable_by(|&a, &b| score(b as usize).total_cmp(&score(a as usize)));
        let mut priority = vec![0u32; tokens.len()];
        let mut rank = 0u32;
        for (k, &id) in order.iter().enumerate() {
            if k > 0 && score(order[k - 1] as usize) != score(id as usize) {
                rank += 1;
            }
            priority[id as usize] = rank;
        }

        // Every split of a token into two tokens is a merge. The tokens are read in id
        // order (their strings lie in memory in that order); a string held by several
        // ids counts once, under the first.
        let mut pairs = Vec::new();
        for (i, s) in tokens.iter().enumerate() {
            let Ok(text) = std::str::from_utf8(s) else {
                continue;
            };
            if text.len() < 2 || by_string.get(s.as_slice()) != Some(&(i as u32)) {
                continue;
            }
            for (at, _) in text.char_indices().skip(1) {
                // The right part is looked up only when the left one is a token.
                let Some(&l) = by_string.get(&s[..at]) else {
                    continue;
                };
                if let Some(&r) = by_string.get(&s[at..]) {
                    pairs.push((l, r, i as u32));
                }
            }
        }
        let mut merges = MergeTable::with_capacity(pairs.len());
        for (l, r, id) in pairs {
            merges.insert(l, r, priority[id as usize], id);
        }
        Self {
            chars,
            byte_ids,
            merges,
            unk_id,
        }
    }

    /// Number of merge pairs.
    pub(crate) fn merges(&self) -> usize {
        self.merges.len()
    }

    /// Encode one piece of plain text, with the dummy-prefix space if `prefix`.
    pub(crate) fn encode(
        &self,
        text: &str,
        prefix: bool,
        word: &mut Vec<u32>,
        scratch: &mut bpe::Scratch,
        out: &mut Vec<u32>,
    ) {
        word.clear();
        let mut push = |c: char| {
            let c = if c == ' ' { SPACE_MARK } else { c };
            if let Some(&id) = self.chars.get(&c) {
                word.push(id);
                return;
            }
            let mut buf = [0u8; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                match (self.byte_ids[b as usize], self.unk_id) {
                    (NONE, Some(unk)) => word.push(unk),
                    (NONE, None) => {}
                    (id, _) => word.push(id),
                }
            }
        };
        if prefix && !text.is_empty() {
            push(' ');
        }
        text.chars().for_each(&mut push);
        bpe::merge(&self.merges, word, scratch);
        out.extend_from_slice(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens_parse_only_in_their_exact_form() {
        assert_eq!(byte_token_value(b"<0x0A>"), Some(10));
        assert_eq!(byte_token_value(b"<0xff>"), Some(255));
        for bad in [
            &b"<0x0A"[..],
            b"<0xA>",
            b"<0x0AB>",
            b"<0x+A>",
            b"0x0A",
            b"<0xG0>",
        ] {
            assert_eq!(byte_token_value(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn decoding_maps_the_space_mark_and_bytes() {
        let mut out = Vec::new();
        decode_token_into("▁the▁end".as_bytes(), token_type::NORMAL, true, &mut out);
        decode_token_into(b"<0x0A>", token_type::BYTE, true, &mut out);
        // Without types a <0xXX> spelling is a byte token; with types only type 6 is.
        decode_token_into(b"<0x41>", token_type::NORMAL, false, &mut out);
        decode_token_into(b"<0x41>", token_type::NORMAL, true, &mut out);
        decode_token_into("<s>▁".as_bytes(), token_type::CONTROL, true, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            " the end\nA<0x41><s>\u{2581}"
        );
    }
}
