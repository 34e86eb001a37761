use super::Tokenizer;

/// Incremental decoding for streamed generation: text is released only in whole UTF-8
/// characters, so a character whose bytes span several tokens is never split.
///
/// The concatenation of everything [`push`](Self::push) and [`flush`](Self::flush) return
/// equals [`Tokenizer::decode`] of all the ids pushed: invalid byte sequences become U+FFFD
/// exactly as in `String::from_utf8_lossy`, and an incomplete sequence is held back until
/// the next token completes it (or `flush` gives it up as U+FFFD). (One exception: for a
/// SentencePiece tokenizer, `decode` drops the dummy-prefix space at the start of the
/// text and after control tokens; the stream decodes a continuation and keeps it.)
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add token `id` (an id outside the vocabulary counts as U+FFFD, as in `decode`) and
    /// return the text completed by it, possibly empty.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        match tok.token_bytes(id) {
            Some(b) => self.pending.extend_from_slice(b),
            None => self.pending.extend_from_slice(super::REPLACEMENT),
        }
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        None => {
                            // An incomplete character at the end: wait for more bytes.
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let done = self.pending.len() - keep;
        self.pending.drain(..done);
        out
    }

    /// Give up on the held-back bytes (an incomplete character): returned as U+FFFD, and
    /// the decoder is empty again.
    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// Whether bytes are held back waiting for the rest of a character.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}
