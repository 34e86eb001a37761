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
//! lookahead.
//!
//! Qwen2 and Llama 3 use the pattern [`QWEN2_PATTERN`] / [`LLAMA3_PATTERN`] (llama.cpp's
//! form of the Hugging Face one: the `(?i:...)` contractions in ASCII case only), split
//! by [`split_qwen2_llama3`], one hand-written function for both (they differ only in
//! how many `\p{N}` a piece takes: one, or up to three). The tests check every split
//! against `fancy-regex` on random text.

use super::chars::{CharClass, classify};
use tvl_format::PreTokenizer;

/// The GPT-2 pattern, for reference implementations (tests).
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The Qwen2 pattern (Qwen2, Qwen2.5, Qwen3), as llama.cpp writes it.
pub const QWEN2_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The Llama 3 pattern, as llama.cpp writes it: [`QWEN2_PATTERN`] with `\p{N}{1,3}`.
pub const LLAMA3_PATTERN: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

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

/// Length after the apostrophe of a contraction starting at `rest`, ASCII case
/// insensitive (`'S`, `'Ll`), or 0.
#[inline]
fn contraction_any_case(rest: &[u8]) -> usize {
    match rest {
        [a, b, ..]
            if matches!(
                [a.to_ascii_lowercase(), b.to_ascii_lowercase()],
                [b'r' | b'v', b'e'] | [b'l', b'l']
            ) =>
        {
            2
        }
        [a, ..] if matches!(a.to_ascii_lowercase(), b's' | b't' | b'm' | b'd') => 1,
        _ => 0,
    }
}

/// Call `emit(start, end)` for each piece of `s`, in order, per `pre`.
pub(crate) fn split(s: &str, pre: PreTokenizer, emit: impl FnMut(usize, usize)) {
    match pre {
        PreTokenizer::Gpt2 => split_gpt2(s, false, emit),
        PreTokenizer::SmolLm => split_gpt2(s, true, emit),
        PreTokenizer::Qwen2 => split_qwen2_llama3(s, 1, emit),
        PreTokenizer::Llama3 => split_qwen2_llama3(s, 3, emit),
    }
}

/// The Qwen2 (`max_digits` 1) or Llama 3 (`max_digits` 3) split, alternative by
/// alternative as in the pattern.
fn split_qwen2_llama3(s: &str, max_digits: usize, mut emit: impl FnMut(usize, usize)) {
    let bytes = s.as_bytes();
    let n = bytes.len();
    let class_at = |j: usize| (j < n).then(|| classify(char_at(s, j).0));
    let newline = |c: char| c == '\r' || c == '\n';
    // End of the run of characters of class `class` starting at `j`.
    let run = |mut j: usize, class: CharClass| {
        while j < n {
            let (c, l) = char_at(s, j);
            if classify(c) != class {
                break;
            }
            j += l;
        }
        j
    };
    let mut i = 0;
    while i < n {
        let (c, clen) = char_at(s, i);
        let class = classify(c);
        // `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`
        if c == '\'' {
            let k = contraction_any_case(&bytes[i + 1..]);
            if k > 0 {
                emit(i, i + 1 + k);
                i += 1 + k;
                continue;
            }
        }
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if class == CharClass::Letter
            || (!newline(c)
                && class != CharClass::Number
                && class_at(i + clen) == Some(CharClass::Letter))
        {
            let end = run(i + clen, CharClass::Letter);
            emit(i, end);
            i = end;
            continue;
        }
        // `\p{N}` or `\p{N}{1,3}`
        if class == CharClass::Number {
            let mut end = i + clen;
            for _ in 1..max_digits {
                match (end < n).then(|| char_at(s, end)) {
                    Some((d, l)) if classify(d) == CharClass::Number => end += l,
                    _ => break,
                }
            }
            emit(i, end);
            i = end;
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let other_start = if c == ' ' && class_at(i + 1) == Some(CharClass::Other) {
            Some(i + 1)
        } else {
            (class == CharClass::Other).then_some(i)
        };
        if let Some(start) = other_start {
            let mut end = run(start, CharClass::Other);
            while end < n && matches!(bytes[end], b'\r' | b'\n') {
                end += 1;
            }
            emit(i, end);
            i = end;
            continue;
        }
        // Whitespace: `\s*[\r\n]+` takes the run up to its last newline; else
        // `\s+(?!\S)` all of it but the last character when something follows (and
        // that leaves any), else `\s+` all of it.
        let mut j = i;
        let mut last = i;
        let mut after_newline = None;
        while j < n {
            let (c, l) = char_at(s, j);
            if classify(c) != CharClass::Space {
                break;
            }
            if newline(c) {
                after_newline = Some(j + l);
            }
            last = j;
            j += l;
        }
        let end = match after_newline {
            Some(e) => e,
            None if j < n && last > i => last,
            None => j,
        };
        emit(i, end);
        i = end;
    }
}

/// The GPT-2 split; with `isolate`, SmolLM's (digits split off first).
fn split_gpt2(s: &str, isolate: bool, mut emit: impl FnMut(usize, usize)) {
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

    #[test]
    fn qwen2_and_llama3_examples() {
        let q = |s| pieces(s, PreTokenizer::Qwen2);
        let l = |s| pieces(s, PreTokenizer::Llama3);
        assert_eq!(q("12345678"), ["1", "2", "3", "4", "5", "6", "7", "8"]);
        assert_eq!(l("12345678"), ["123", "456", "78"]);
        assert_eq!(
            l("1,234,567 x12"),
            ["1", ",", "234", ",", "567", " x", "12"]
        );
        assert_eq!(l("²³¹½"), ["²³¹", "½"]);
        assert_eq!(
            q("I'M you'LL don't it'S we'Ve"),
            [
                "I", "'M", " you", "'LL", " don", "'t", " it", "'S", " we", "'Ve"
            ]
        );
        assert_eq!(q("'ſ"), ["'ſ"]); // long s: not a contraction in ASCII case
        assert_eq!(q("Hello world"), ["Hello", " world"]);
        assert_eq!(q("(x) .y"), ["(x", ")", " .", "y"]);
        assert_eq!(q("\tHello\nworld"), ["\tHello", "\n", "world"]);
        assert_eq!(q("a\r\n\r\nb"), ["a", "\r\n\r\n", "b"]);
        assert_eq!(q("x \n \n y"), ["x", " \n \n", " y"]);
        assert_eq!(q("a   b"), ["a", "  ", " b"]);
        assert_eq!(q("a  1"), ["a", " ", " ", "1"]);
        assert_eq!(q("end  "), ["end", "  "]);
        assert_eq!(q("!!\n\nx"), ["!!\n\n", "x"]);
        assert_eq!(q(" ?!'s"), [" ?!'", "s"]);
        assert_eq!(q("''s"), ["''", "s"]);
        assert_eq!(q("héllo wörld 中文"), ["héllo", " wörld", " 中文"]);
        assert_eq!(q(""), Vec::<&str>::new());
        assert_eq!(q(" "), [" "]);
    }
}

#[cfg(test)]
mod regex_equivalence {
    use super::*;
    use proptest::prelude::*;

    /// The pieces per `fancy-regex`: digits (`char::is_numeric`, as in HF's `Digits`)
    /// split off first (SmolLM), then the pattern.
    fn reference(s: &str, pre: PreTokenizer) -> Vec<String> {
        use std::sync::LazyLock;
        static RE: LazyLock<fancy_regex::Regex> =
            LazyLock::new(|| fancy_regex::Regex::new(GPT2_PATTERN).unwrap());
        static QWEN2: LazyLock<fancy_regex::Regex> =
            LazyLock::new(|| fancy_regex::Regex::new(QWEN2_PATTERN).unwrap());
        static LLAMA3: LazyLock<fancy_regex::Regex> =
            LazyLock::new(|| fancy_regex::Regex::new(LLAMA3_PATTERN).unwrap());
        let re = match pre {
            PreTokenizer::Qwen2 => &*QWEN2,
            PreTokenizer::Llama3 => &*LLAMA3,
            _ => &*RE,
        };
        let mut segments: Vec<&str> = Vec::new();
        match pre {
            PreTokenizer::Gpt2 | PreTokenizer::Qwen2 | PreTokenizer::Llama3 => segments.push(s),
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

    const ALL: [PreTokenizer; 4] = [
        PreTokenizer::Gpt2,
        PreTokenizer::SmolLm,
        PreTokenizer::Qwen2,
        PreTokenizer::Llama3,
    ];

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
                '\'', 's', 't', 'r', 'e', 'v', 'm', 'l', 'd', 'S', 'L', 'E', 'ſ', ' ', ' ', ' ', '\n', '\t',
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

        #[test]
        fn qwen2_matches_fancy_regex(s in text()) {
            prop_assert_eq!(ours(&s, PreTokenizer::Qwen2), reference(&s, PreTokenizer::Qwen2));
        }

        #[test]
        fn llama3_matches_fancy_regex(s in text()) {
            prop_assert_eq!(ours(&s, PreTokenizer::Llama3), reference(&s, PreTokenizer::Llama3));
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn arbitrary_strings_match(s in any::<String>()) {
            prop_assert_eq!(ours(&s, PreTokenizer::Gpt2), reference(&s, PreTokenizer::Gpt2));
            prop_assert_eq!(ours(&s, PreTokenizer::SmolLm), reference(&s, PreTokenizer::SmolLm));
            prop_assert_eq!(ours(&s, PreTokenizer::Qwen2), reference(&s, PreTokenizer::Qwen2));
            prop_assert_eq!(ours(&s, PreTokenizer::Llama3), reference(&s, PreTokenizer::Llama3));
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
            "12345678 1,234,567",
            "I'M you'LL 'ſ",
            "CRLF\r\nline\r\n",
            " \r\n \t x",
            "!!\n\n",
            "\u{3000}a\tb",
        ] {
            for pre in ALL {
                assert_eq!(ours(s, pre), reference(s, pre), "{s:?} {pre:?}");
            }
        }
    }
}
