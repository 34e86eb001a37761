//! Stop strings over streamed text: text that could still be the start of a stop string
//! is held back; at a match the text is cut just before it.

/// Streamed text filtered through a set of stop strings.
#[derive(Debug, Default)]
pub struct StopBuffer {
    stops: Vec<String>,
    /// Text received but not released (it may begin a stop string).
    held: String,
    matched: bool,
}

impl StopBuffer {
    /// A buffer for these stop strings (empty ones are ignored).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            matched: false,
        }
    }

    /// Whether a stop string has matched (nothing more is released after it).
    pub fn matched(&self) -> bool {
        self.matched
    }

    /// Add `piece`; returns the text that can be released and whether a stop string
    /// matched (the returned text then ends just before it).
    pub fn push(&mut self, piece: &str) -> (String, bool) {
        if self.matched {
            return (String::new(), true);
        }
        self.held.push_str(piece);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.matched = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return (out, true);
        }
        let keep = self.partial_suffix();
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// The end of the stream: add `piece` and release everything left (up to a match).
    pub fn finish(&mut self, piece: &str) -> String {
        let (mut out, matched) = self.push(piece);
        if !matched {
            out.push_str(&std::mem::take(&mut self.held));
        }
        out
    }

    /// Length of the longest suffix of `held` that is a proper prefix of a stop string
    /// (on a character boundary).
    fn partial_suffix(&self) -> usize {
        let h = &self.held;
        let mut best = 0;
        for s in &self.stops {
            let max = (s.len() - 1).min(h.len());
            for n in (best + 1..=max).rev() {
                let start = h.len() - n;
                if h.is_char_boundary(start) && s.starts_with(&h[start..]) {
                    best = n;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut b = StopBuffer::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (t, m) = b.push(p);
            out.push_str(&t);
            if m {
                return (out, true);
            }
        }
        out.push_str(&b.finish(""));
        (out, false)
    }

    #[test]
    fn cuts_at_a_stop_split_across_pieces() {
        assert_eq!(
            run(&["STOP"], &["hello S", "T", "OP world"]),
            ("hello ".to_string(), true)
        );
    }

    #[test]
    fn holds_back_only_a_possible_prefix() {
        let mut b = StopBuffer::new(vec!["abc".into()]);
        assert_eq!(b.push("xxab"), ("xx".to_string(), false));
        assert_eq!(b.push("d"), ("abd".to_string(), false));
        assert_eq!(b.finish("a"), "a");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(
            run(&["world", "lo"], &["hello world"]),
            ("hel".to_string(), true)
        );
    }

    #[test]
    fn no_stops_releases_everything() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".to_string(), false));
        assert_eq!(run(&[""], &["a", "b"]), ("ab".to_string(), false));
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        assert_eq!(
            run(&["é!"], &["caf", "é", "é!x"]),
            ("café".to_string(), true)
        );
    }
}
