//! Literal matching of special (control and user-defined) tokens in text.
//!
//! Semantics are leftmost-longest, like Hugging Face's added-token splitting: scanning
//! from the left, the first position where any special token occurs wins, and of the
//! tokens occurring there the longest (then the lowest id) is taken.

/// Special tokens grouped by first byte, longest first.
#[derive(Clone, Default)]
pub(crate) struct SpecialMatcher {
    /// Index into `groups` per first byte, `u8::MAX` for none.
    first: Vec<u8>,
    groups: Vec<Vec<(Box<[u8]>, u32)>>,
}

/// A part of the text: plain text or a special token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    /// Plain text.
    Text(&'a str),
    /// A special token.
    Special(u32),
}

impl SpecialMatcher {
    /// Build from `(id, text)` pairs. Empty strings and strings that are not valid UTF-8
    /// (which could match inside a character) are left out; duplicates keep the lowest id.
    pub(crate) fn new<'a>(tokens: impl IntoIterator<Item = (u32, &'a [u8])>) -> Self {
        let mut all: Vec<(&[u8], u32)> = tokens
            .into_iter()
            .filter(|(_, t)| !t.is_empty() && std::str::from_utf8(t).is_ok())
            .map(|(id, t)| (t, id))
            .collect();
        all.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        all.dedup_by(|later, earlier| later.0 == earlier.0);
        let mut first = vec![u8::MAX; 256];
        let mut groups: Vec<Vec<(Box<[u8]>, u32)>> = Vec::new();
        for (t, id) in all {
            let slot = &mut first[t[0] as usize];
            if *slot == u8::MAX {
                *slot = groups.len() as u8; // < 255: at most one group per byte value
                groups.push(Vec::new());
            }
            groups[*slot as usize].push((t.into(), id));
        }
        Self { first, groups }
    }

    /// Whether there is nothing to match.
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The leftmost-longest match at or after byte `from`: `(start, end, id)`.
    fn find(&self, text: &[u8], from: usize) -> Option<(usize, usize, u32)> {
        for (i, &b) in text.iter().enumerate().skip(from) {
            let g = self.first[b as usize];
            if g == u8::MAX {
                continue;
            }
            for (t, id) in &self.groups[g as usize] {
                if text[i..].starts_with(t) {
                    return Some((i, i + t.len(), *id));
                }
            }
        }
        None
    }

    /// Cut `text` into plain text and special tokens (empty text segments are left out).
    pub(crate) fn segments<'a>(&'a self, text: &'a str) -> impl Iterator<Item = Segment<'a>> + 'a {
        let mut pos = 0;
        let mut pending: Option<u32> = None;
        std::iter::from_fn(move || {
            loop {
                if let Some(id) = pending.take() {
                    return Some(Segment::Special(id));
                }
                if pos >= text.len() {
                    return None;
                }
                let start = pos;
                match self.find(text.as_bytes(), pos) {
                    Some((s, e, id)) => {
                        pos = e;
                        pending = Some(id);
                        if s > start {
                            // Match boundaries are char boundaries: tokens are valid UTF-8.
                            return Some(Segment::Text(text.get(start..s).unwrap_or("")));
                        }
                    }
                    None => {
                        pos = text.len();
                        return Some(Segment::Text(text.get(start..).unwrap_or("")));
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Segment::*;

    fn matcher(tokens: &[(u32, &str)]) -> SpecialMatcher {
        SpecialMatcher::new(tokens.iter().map(|&(id, t)| (id, t.as_bytes())))
    }

    #[test]
    fn leftmost_longest() {
        let m = matcher(&[(1, "<a>"), (2, "<a><b>"), (3, "b"), (4, "<a>"), (5, "")]);
        let segs: Vec<_> = m.segments("x<a><b>y<a>b").collect();
        assert_eq!(
            segs,
            [Text("x"), Special(2), Text("y"), Special(1), Special(3)]
        );
        assert_eq!(m.segments("").count(), 0);
        assert_eq!(m.segments("<a").collect::<Vec<_>>(), [Text("<a")]);
        let m = matcher(&[(7, "ab"), (8, "bcd")]);
        assert_eq!(
            m.segments("abcd").collect::<Vec<_>>(),
            [Special(7), Text("cd")]
        );
    }

    #[test]
    fn multibyte_text_around_matches() {
        let m = matcher(&[(9, "<|é|>")]);
        let segs: Vec<_> = m.segments("é<|é|>ü").collect();
        assert_eq!(segs, [Text("é"), Special(9), Text("ü")]);
    }
}
