//! Pre-tokenization: cutting text into the pieces BPE runs on.
//!
//! [`split`] is a hand-written equivalent of the GPT-2 pattern
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! applied with leftmost-first semantics (the first alternative that matches at a position
//! wins, and every character starts a match, so the pieces cover the text). For SmolLM,
//! every `\p{N}` character is first split off on its own and the pattern then runs on each
//! remaining piece separately: a digit acts like the end of the text for the whitespace
//! lookahead. The tests check it against `fancy-regex` on random text.

use super::chars::{CharClass, classify};
use tvl_format::PreTokenizer;

/// The GPT-2 pattern, for reference implementations (tests).
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Decode the character starting at byte `i` of `s` (a char boundary, `i < s.len()`).
#[inline]
fn char_at(s: &str, i: usize) -> (char, usize) {
    let b = s.as_bytes()[i];
    if b < 0x80 {
        return (b as char, 1);
    }
    match s[i..].chars().next() {
        Some(c) => (c, c.len_utf8()),
        None => ('\0', 1), // unreachable: i is a boundary inside s
    }
}

/// Length after the apostrophe of a contraction starting at `rest`, or 0.
#[inline]
fn contraction(rest: &[u8]) -> usize {
    match rest {
        [b's' | b't' | b'm' | b'd', ..] => 1,
        [b'r', b'e', ..] | [b'v', b'e', ..] | [b'l', b'l', ..] => 2,
        _ => 0,
    }
}

/// Whether `c` is split off on its own by the SmolLM pre-tokenizer: `\p{N}` as Rust's
/// `char::is_numeric` defines it, which is what Hugging Face's `Digits` pre-tokenizer uses
/// (its Unicode version can be newer than the `regex` crate's).
#[inline]
pub(crate) fn is_isolated_digit(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_digit()
    } else {
        c.is_numeric()
    }
}

/// Call `emit(start, end)` for each piece of `s`, in order, per `pre`.
pub(crate) fn split(s: &str, pre: PreTokenizer, mut emit: impl FnMut(usize, usize)) {
    let isolate = match pre {
        PreTokenizer::Gpt2 => false,
        PreTokenizer::SmolLm => true,
    };
    // A digit split off first ends every run and is the end of the text for the lookahead.
    let digit = |c: char| isolate && is_isolated_digit(c);
    let bytes = s.as_bytes();
    let n = bytes.len();
    let mut i = 0;
    while i < n {
        let (c, clen) = char_at(s, i);
        if digit(c) {
            emit(i, i + clen);
            i += clen;
            continue;
        }
        if c == '\'' {
            let k = contraction(&bytes[i + 1..]);
            if k > 0 {
                emit(i, i + 1 + k);
                i += 1 + k;
                continue;
            }
        }
        // ` ?X+` for X in letters, numbers, others: a space joins the run that follows.
        let (run_start, run_class) = if c == ' ' && i + 1 < n {
            let next = char_at(s, i + 1).0;
            match classify(next) {
                _ if digit(next) => (i, CharClass::Space),
                next_class => (i + 1, next_class),
            }
        } else {
            (i, classify(c))
        };
        if run_class != CharClass::Space {
            let mut j = run_start;
            while j < n {
                let (c, l) = char_at(s, j);
                if classify(c) != run_class || digit(c) {
                    break;
                }
                j += l;
            }
            emit(i, j);
            i = j;
            continue;
        }
        // Whitespace: `\s+(?!\S)` takes the run up to its end if nothing non-space follows,
        // else all but its last character (if that leaves any); otherwise `\s+`.
        let mut j = i;
        let mut last = i;
        let mut at_end = true;
        while j < n {
            let (c, l) = char_at(s, j);
            if digit(c) {
                break;
            }
            if classify(c) != CharClass::Space {
                at_end = false;
                break;
            }
            last = j;
            j += l;
        }
        let end = if at_end || last == i { j } else { last };
        emit(i, end);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(s: &str, pre: PreTokenizer) -> Vec<&str> {
        let mut out = Vec::new();
        split(s, pre, |a, b| out.push(&s[a..b]));
        out
    }

    #[test]
    fn gpt2_examples() {
        let g = |s| pieces(s, PreTokenizer::Gpt2);
        assert_eq!(g("Hello world"), ["Hello", " world"]);
        assert_eq!(
            g("I'm he's they'll we've you're it'd can't"),
            [
                "I", "'m", " he", "'s", " they", "'ll", " we", "'ve", " you", "'re", " it", "'d",
                " can", "'t"
            ]
        );
        assert_eq!(g("'S 'x"), ["'", "S", " '", "x"]);
        assert_eq!(g("a   b"), ["a", "  ", " b"]);
        assert_eq!(g("a \n\tb"), ["a", " \n", "\t", "b"]);
        assert_eq!(g("end  "), ["end", "  "]);
        assert_eq!(g("x\n\ny"), ["x", "\n", "\n", "y"]);
        assert_eq!(g("x \ny"), ["x", " ", "\n", "y"]);
        assert_eq!(g("year 2024!!"), ["year", " 2024", "!!"]);
        assert_eq!(g(" ?!'s"), [" ?!'", "s"]);
        assert_eq!(g("héllo wörld 中文"), ["héllo", " wörld", " 中文"]);
        assert_eq!(g(""), Vec::<&str>::new());
        assert_eq!(g(" "), [" "]);
    }

    #[test]
    fn smollm_isolates_digits() {
        let s = |s| pieces(s, PreTokenizer::SmolLm);
        assert_eq!(
            s("In 1492, Columbus"),
            ["In", " ", "1", "4", "9", "2", ",", " Columbus"]
        );
        assert_eq!(s("a  1"), ["a", "  ", "1"]);
        assert_eq!(s("x2y"), ["x", "2", "y"]);
        assert_eq!(s("3.14"), ["3", ".", "1", "4"]);
        assert_eq!(s("²½"), ["²", "½"]);
        assert_eq!(s("' 1'"), ["'", " ", "1", "'"]);
    }
}

#[cfg(test)]
mod regex_equivalence {
    use super::*;
    use proptest::prelude::*;

    /// The pieces per `fancy-regex`: digits (`char::is_numeric`, as in HF's `Digits`)
    /// split off first (SmolLM), then the pattern.
    fn reference(s: &str, pre: PreTokenizer) -> Vec<String> {
        static RE: std::sync::LazyLock<fancy_regex::Regex> =
            std::sync::LazyLock::new(|| fancy_regex::Regex::new(GPT2_PATTERN).unwrap());
        let re = &*RE;
        let mut segments: Vec<&str> = Vec::new();
        match pre {
            PreTokenizer::Gpt2 => segments.push(s),
            PreTokenizer::SmolLm => {
                let mut last = 0;
                for (at, c) in s.char_indices().filter(|&(_, c)| c.is_numeric()) {
                    segments.push(&s[last..at]);
                    segments.push(&s[at..at + c.len_utf8()]);
                    last = at + c.len_utf8();
                }
                segments.push(&s[last..]);
            }
        }
        let mut out = Vec::new();
        for seg in segments {
            let mut covered = 0;
            for m in re.find_iter(seg) {
                let m = m.unwrap();
                assert_eq!(m.start(), covered, "the pattern skipped text in {seg:?}");
                covered = m.end();
                out.push(m.as_str().to_string());
            }
            assert_eq!(covered, seg.len());
        }
        out
    }

    fn ours(s: &str, pre: PreTokenizer) -> Vec<String> {
        let mut out = Vec::new();
        split(s, pre, |a, b| out.push(s[a..b].to_string()));
        out
    }

    /// Characters that exercise every branch: quotes and contraction letters, spaces of
    /// several kinds, letters, digits and other numbers, punctuation, marks, emoji.
    fn interesting_char() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => proptest::sample::select(vec![
                '\'', 's', 't', 'r', 'e', 'v', 'm', 'l', 'd', 'S', ' ', ' ', ' ', '\n', '\t',
                '\r', '\u{a0}', '\u{3000}', '\u{2028}', '\u{85}', '0', '7', '²', '½', 'Ⅻ', '٣',
                '.', ',', '!', '-', '_', '(', '"', 'é', 'ß', '中', 'ж', '\u{301}', '😀', '\u{200d}',
                '\u{feff}', '\0',
            ]),
            1 => any::<char>(),
        ]
    }

    fn text() -> impl Strategy<Value = String> {
        proptest::collection::vec(interesting_char(), 0..40).prop_map(|v| v.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn gpt2_matches_fancy_regex(s in text()) {
            prop_assert_eq!(ours(&s, PreTokenizer::Gpt2), reference(&s, PreTokenizer::Gpt2));
        }

        #[test]
        fn smollm_matches_fancy_regex(s in text()) {
            prop_assert_eq!(ours(&s, PreTokenizer::SmolLm), reference(&s, PreTokenizer::SmolLm));
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn arbitrary_strings_match(s in any::<String>()) {
            prop_assert_eq!(ours(&s, PreTokenizer::Gpt2), reference(&s, PreTokenizer::Gpt2));
            prop_assert_eq!(ours(&s, PreTokenizer::SmolLm), reference(&s, PreTokenizer::SmolLm));
        }
    }

    #[test]
    fn fixed_cases_match() {
        for s in [
            "Hello world",
            "  leading",
            "trailing  ",
            "a \n\tb",
            "it's 'll 'LL",
            "x\u{a0}y",
            "\n\n\n",
            " \u{3000}a",
            "1 2  3   4",
            "a 1",
            "'1'",
            " ½",
            "\u{85}x",
            "😀 😀  😀",
        ] {
            for pre in [PreTokenizer::Gpt2, PreTokenizer::SmolLm] {
                assert_eq!(ours(s, pre), reference(s, pre), "{s:?} {pre:?}");
            }
        }
    }
}
