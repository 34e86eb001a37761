//! Unit tests on a small handmade byte-level vocabulary.

use super::*;

/// Ids 0..=255 are the byte tokens (id = byte value); then the merge results in order;
/// then the special tokens.
const MERGES: &[&str] = &[
    "h e",     // he
    "l l",     // ll
    "he ll",   // hell
    "hell o",  // hello
    "Ġ w",     // Ġw
    "o r",     // or
    "Ġw or",   // Ġwor
    "l d",     // ld
    "Ġwor ld", // Ġworld
    "b c",     // bc   (rank 9: before "a b")
    "a b",     // ab
    "' s",     // 's
    "1 2",     // 12
    "Ġ Ġ",     // ĠĠ
    "ĠĠ ĠĠ",   // ĠĠĠĠ
    "Ċ Ċ",     // ĊĊ
    "Ã ©",     // é (bytes C3 A9)
    "Ġ h",     // Ġh
    "Ġh ello", // unused: "ello" is not a token -> see invalid merges test
];

/// Merges valid in the vocabulary (all but the last).
fn merges() -> Vec<Vec<u8>> {
    MERGES[..MERGES.len() - 1]
        .iter()
        .map(|m| m.as_bytes().to_vec())
        .collect()
}

const SPECIALS: &[(&str, u8)] = &[
    ("<|endoftext|>", token_type::CONTROL),
    ("<|im_start|>", token_type::CONTROL),
    ("<|im_end|>", token_type::CONTROL),
    ("<|im", token_type::USER_DEFINED),
];

fn data(pre: PreTokenizer) -> TokenizerData {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8)
        .map(|b| byte_level_form(&[b]).into_bytes())
        .collect();
    for m in &MERGES[..MERGES.len() - 1] {
        tokens.push(m.replace(' ', "").into_bytes());
    }
    let mut token_types = vec![token_type::NORMAL; tokens.len()];
    for (s, t) in SPECIALS {
        tokens.push(s.as_bytes().to_vec());
        token_types.push(*t);
    }
    TokenizerData {
        kind: TokenizerKind::ByteLevelBpe,
        pretokenizer: pre,
        tokens,
        token_types,
        scores: Vec::new(),
        merges: merges(),
        bos_id: None,
        eos_id: None,
        eot_id: None,
        unk_id: None,
        add_bos: false,
        add_space_prefix: true,
    }
}

fn smollm() -> Tokenizer {
    let mut d = data(PreTokenizer::SmolLm);
    d.eos_id = Some(id_of_special("<|im_end|>"));
    d.eot_id = Some(id_of_special("<|endoftext|>"));
    d.bos_id = Some(id_of_special("<|im_start|>"));
    Tokenizer::new(d).unwrap()
}

fn id_of_special(s: &str) -> u32 {
    let base = 256 + MERGES.len() as u32 - 1;
    base + SPECIALS.iter().position(|(t, _)| *t == s).unwrap() as u32
}

/// Stored strings of the ids, for readable assertions.
fn strings(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| String::from_utf8(tok.token_string(id).unwrap().to_vec()).unwrap())
        .collect()
}

fn enc(tok: &Tokenizer, s: &str) -> Vec<String> {
    strings(tok, &tok.encode(s, true).unwrap())
}

#[test]
fn builds_and_reports() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Tokenizer>();
    let tok = smollm();
    assert_eq!(tok.vocab_size(), 256 + MERGES.len() - 1 + SPECIALS.len());
    assert_eq!(tok.kind(), TokenizerKind::ByteLevelBpe);
    assert_eq!(tok.token_id("Ġworld"), Some(264));
    assert_eq!(
        tok.token_id("<|im_end|>"),
        Some(id_of_special("<|im_end|>"))
    );
    assert_eq!(tok.token_id("nope"), None);
    assert_eq!(tok.token_bytes(264), Some(&b" world"[..]));
    assert_eq!(tok.token_bytes(b'\n' as u32), Some(&b"\n"[..]));
    assert_eq!(tok.token_bytes(10_000), None);
    assert!(tok.is_special(id_of_special("<|im")));
    assert!(!tok.is_special(264));
    assert!(tok.is_stop(id_of_special("<|im_end|>")));
    assert!(tok.is_stop(id_of_special("<|endoftext|>")));
    assert!(!tok.is_stop(id_of_special("<|im_start|>")));
    let dbg = format!("{tok:?}");
    assert!(dbg.contains("merges: 18"), "{dbg}");
}

#[test]
fn merges_apply_by_rank_not_position() {
    let tok = smollm();
    // "b c" has a lower rank than "a b".
    assert_eq!(enc(&tok, "abc"), ["a", "bc"]);
    assert_eq!(enc(&tok, "ab"), ["ab"]);
    assert_eq!(enc(&tok, "abab"), ["ab", "ab"]);
    // hello: he (0), ll (1), hell (2), hello (3).
    assert_eq!(enc(&tok, "hello"), ["hello"]);
    assert_eq!(enc(&tok, "hellx"), ["hell", "x"]);
    assert_eq!(enc(&tok, "helo"), ["he", "l", "o"]);
    // Ties go to the leftmost pair.
    assert_eq!(enc(&tok, "lll"), ["ll", "l"]);
    // Whitespace runs merge too: ĠĠ then ĠĠĠĠ.
    assert_eq!(enc(&tok, "x     "), ["x", "ĠĠĠĠ", "Ġ"]);
    // Multi-byte characters become their byte tokens, merged where merges exist.
    assert_eq!(enc(&tok, "é"), ["Ã©"]);
    assert_eq!(enc(&tok, "ü"), ["Ã", "¼"]);
}

#[test]
fn smollm_splits_digits_gpt2_does_not() {
    let tok = smollm();
    assert_eq!(enc(&tok, "12"), ["1", "2"]);
    assert_eq!(enc(&tok, "a 12"), ["a", "Ġ", "1", "2"]);
    let gpt2 = Tokenizer::new(data(PreTokenizer::Gpt2)).unwrap();
    assert_eq!(enc(&gpt2, "12"), ["12"]);
    assert_eq!(enc(&gpt2, "a 12"), ["a", "Ġ", "12"]);
}

#[test]
fn regex_split_shapes_the_tokens() {
    let tok = smollm();
    // Contractions are their own pieces, so "'s" merges; a quote elsewhere does not.
    assert_eq!(enc(&tok, "he's"), ["he", "'s"]);
    assert_eq!(enc(&tok, "'sa"), ["'s", "a"]);
    // A space joins the following word: " world" is one piece.
    assert_eq!(enc(&tok, "hello world"), ["hello", "Ġworld"]);
    // Of a run of spaces before a word, the last joins the word.
    assert_eq!(enc(&tok, "hello   world"), ["hello", "ĠĠ", "Ġworld"]);
    // Trailing whitespace stays one piece (\s+(?!\S)).
    assert_eq!(enc(&tok, "hello  "), ["hello", "ĠĠ"]);
    // Newlines: "\n\n" before a word is split as "\n" + "\n" (no space joins).
    assert_eq!(enc(&tok, "x\n\n\ny"), ["x", "ĊĊ", "Ċ", "y"]);
    assert_eq!(enc(&tok, "x\n\n"), ["x", "ĊĊ"]);
}

#[test]
fn special_tokens_are_matched_only_when_asked() {
    let tok = smollm();
    let start = id_of_special("<|im_start|>");
    let end = id_of_special("<|im_end|>");
    let im = id_of_special("<|im");
    let ids = tok.encode("<|im_start|>hello<|im_end|>\n", true).unwrap();
    assert_eq!(ids, [start, 259, end, u32::from(b'\n')]);
    // Longest match first: "<|im_end|>" over "<|im"; "<|im" alone where nothing longer fits.
    assert_eq!(tok.encode("<|imx", true).unwrap(), [im, u32::from(b'x')]);
    // Text around a special token is pre-tokenized on its own: the space before it is a
    // trailing space, not joined to "<".
    assert_eq!(
        strings(&tok, &tok.encode("hello <|im_end|>", true).unwrap()),
        ["hello", "Ġ", "<|im_end|>"]
    );
    // Without parse_special, control tokens are ordinary text, but user-defined ones
    // are still matched (llama.cpp's rule): "<|im" then the bytes of "_end|>".
    let plain = tok.encode("<|im_end|>", false).unwrap();
    assert_eq!(plain[0], im);
    assert_eq!(plain.len(), 1 + "_end|>".len()); // byte tokens: no merge applies
    assert!(plain[1..].iter().all(|&id| !tok.is_special(id)));
    assert_eq!(tok.decode(&plain), "<|im_end|>");
    let plain = tok.encode("<|im_start|>", false).unwrap();
    assert!(!plain.contains(&start));
    // Specials decode to their text.
    assert_eq!(
        tok.decode(&[start, 259, end]),
        "<|im_start|>hello<|im_end|>"
    );
}

#[test]
fn encode_prompt_adds_bos_iff_asked() {
    let tok = smollm();
    assert_eq!(tok.encode_prompt("ab").unwrap(), [266]);
    let mut d = data(PreTokenizer::SmolLm);
    d.bos_id = Some(id_of_special("<|endoftext|>"));
    d.add_bos = true;
    let tok = Tokenizer::new(d).unwrap();
    assert_eq!(
        tok.encode_prompt("ab").unwrap(),
        [id_of_special("<|endoftext|>"), 266]
    );
    assert_eq!(tok.encode("ab", true).unwrap(), [266]);
    assert!(tok.add_bos());
}

#[test]
fn round_trips() {
    let tok = smollm();
    for s in [
        "",
        "hello world",
        "  leading and trailing  ",
        "tabs\tand\r\nnewlines\n\n",
        "It's 12 o'clock, isn't it? 3.14159",
        "naïve café, Straße, 日本語のテキスト, Ελληνικά, עברית",
        "emoji 😀👍🏽 and ZWJ 👨‍👩‍👧 family",
        "fn main() { println!(\"{}\", 1 + 2); }",
        "\u{0}\u{1}\u{7f}\u{80}\u{ffff}\u{10ffff}",
        "<|im_start|>user\nhi<|im_end|>",
    ] {
        for special in [false, true] {
            assert_eq!(tok.decode(&tok.encode(s, special).unwrap()), s, "{s:?}");
        }
    }
}

#[test]
fn decode_is_lossy_and_tolerant() {
    let tok = smollm();
    // 0xC3 alone is an incomplete sequence; 0xFF is never valid.
    assert_eq!(tok.decode(&[0xC3]), "\u{FFFD}");
    assert_eq!(tok.decode(&[b'a' as u32, 0xFF, b'b' as u32]), "a\u{FFFD}b");
    assert_eq!(tok.decode(&[0xC3, 0xA9]), "é");
    // Ids outside the vocabulary: U+FFFD, no panic.
    assert_eq!(
        tok.decode(&[b'a' as u32, 99_999, u32::MAX]),
        "a\u{FFFD}\u{FFFD}"
    );
}

#[test]
fn stream_decoder_holds_back_partial_characters() {
    let tok = smollm();
    let mut sd = StreamDecoder::new();
    assert_eq!(sd.push(&tok, b'a' as u32), "a");
    // "€" = E2 82 AC, one byte token at a time.
    assert_eq!(sd.push(&tok, 0xE2), "");
    assert!(sd.has_pending());
    assert_eq!(sd.push(&tok, 0x82), "");
    assert_eq!(sd.push(&tok, 0xAC), "€");
    assert!(!sd.has_pending());
    // An invalid byte is released at once as U+FFFD.
    assert_eq!(sd.push(&tok, 0xFF), "\u{FFFD}");
    // An incomplete sequence interrupted by ASCII: U+FFFD then the ASCII.
    assert_eq!(sd.push(&tok, 0xE2), "");
    assert_eq!(sd.push(&tok, b'x' as u32), "\u{FFFD}x");
    // Out of vocabulary.
    assert_eq!(sd.push(&tok, 1 << 30), "\u{FFFD}");
    // Flush gives up an incomplete character.
    assert_eq!(sd.push(&tok, 0xF0), "");
    assert_eq!(sd.push(&tok, 0x9F), "");
    assert_eq!(sd.flush(), "\u{FFFD}");
    assert_eq!(sd.flush(), "");
    // Special tokens stream as their text.
    assert_eq!(sd.push(&tok, id_of_special("<|im_end|>")), "<|im_end|>");
}

#[test]
fn bytes_without_a_token_are_dropped_before_merging() {
    let mut d = data(PreTokenizer::SmolLm);
    // Make bytes 0x04 and 0xF1 unreachable, like the 21 byte tokens SmolLM2 lacks, and
    // add the merge 0x88 + 0x92 (stored "Ī Ĵ").
    d.tokens[4] = "ĀĀ".as_bytes().to_vec();
    d.tokens[0xF1] = "ĀĀĀ".as_bytes().to_vec();
    d.tokens.push("ĪĴ".as_bytes().to_vec());
    d.token_types.push(token_type::NORMAL);
    d.merges.push("Ī Ĵ".as_bytes().to_vec());
    d.unk_id = Some(id_of_special("<|endoftext|>"));
    let tok = Tokenizer::new(d).unwrap();
    let ids = |s: &str| tok.encode(s, true).unwrap();
    assert_eq!(ids("\u{4}"), Vec::<u32>::new());
    assert_eq!(ids("a\u{4}b"), [u32::from(b'a'), u32::from(b'b')]);
    // "⠈\u{52d77}" is E2 A0 88 | F1 92 B5 B7, one piece: without 0xF1, 0x88 and 0x92
    // become neighbours and merge, as in Hugging Face `tokenizers` (the unknown token is
    // not used).
    assert_eq!(ids("\u{2808}\u{52d77}"), [0xE2, 0xA0, 278, 0xB5, 0xB7]);
    // Cached pieces give the same.
    let text = "\u{2808}\u{52d77} ".repeat(20);
    assert_eq!(ids(&text).len(), 20 * 6); // 5 per character pair, 1 per space
}

#[test]
fn validation_errors_say_what_and_where() {
    let check = |edit: &dyn Fn(&mut TokenizerData), want: TokenizerError| {
        let mut d = data(PreTokenizer::SmolLm);
        edit(&mut d);
        let got = Tokenizer::new(d).err();
        assert_eq!(got.as_ref(), Some(&want));
        // Every message renders.
        assert!(!want.to_string().is_empty());
    };
    // A file without tokenizer gives a tokenizer without vocabulary whose encode fails.
    let mut d = data(PreTokenizer::SmolLm);
    d.kind = TokenizerKind::None;
    let none = Tokenizer::new(d).unwrap();
    assert_eq!((none.kind(), none.vocab_size()), (TokenizerKind::None, 0));
    assert_eq!(none.encode("x", true), Err(TokenizerError::NoTokenizer));
    assert_eq!(none.decode(&[0, 1]), "\u{FFFD}\u{FFFD}");
    check(
        &|d| {
            d.tokens.clear();
            d.token_types.clear();
            d.merges.clear();
        },
        TokenizerError::EmptyVocab,
    );
    check(
        &|d| d.token_types.truncate(10),
        TokenizerError::TokenTypesLength {
            got: 10,
            vocab: 278,
        },
    );
    check(
        &|d| d.scores = vec![0.0; 3],
        TokenizerError::ScoresLength { got: 3, vocab: 278 },
    );
    check(
        &|d| d.eos_id = Some(278),
        TokenizerError::SpecialIdOutOfRange {
            which: "eos",
            id: 278,
            vocab: 278,
        },
    );
    check(
        &|d| d.unk_id = Some(tvl_format::NONE_ID),
        TokenizerError::SpecialIdOutOfRange {
            which: "unk",
            id: u32::MAX,
            vocab: 278,
        },
    );
    check(&|d| d.add_bos = true, TokenizerError::AddBosWithoutBos);
    check(
        &|d| d.tokens[270] = b"a b".to_vec(),
        TokenizerError::TokenNotByteLevel {
            id: 270,
            offset: 1,
            ch: ' ',
        },
    );
    check(
        &|d| d.tokens[5] = vec![b'a', 0xFF],
        TokenizerError::TokenNotUtf8 { id: 5, offset: 1 },
    );
    check(
        &|d| d.merges.push(MERGES.last().unwrap().as_bytes().to_vec()),
        TokenizerError::UnknownMergeToken {
            index: 18,
            part: "ello".into(),
        },
    );
    check(
        &|d| d.merges.insert(2, b"x qq".to_vec()),
        TokenizerError::UnknownMergeToken {
            index: 2,
            part: "qq".into(),
        },
    );
    check(
        &|d| d.merges.push(b"abc".to_vec()),
        TokenizerError::MalformedMerge {
            index: 18,
            text: "abc".into(),
        },
    );
    check(
        &|d| d.merges.push(b"ab ".to_vec()),
        TokenizerError::MalformedMerge {
            index: 18,
            text: "ab ".into(),
        },
    );
    check(
        &|d| d.merges.push(b"<|im _start|>".to_vec()),
        TokenizerError::UnknownMergeToken {
            index: 18,
            part: "_start|>".into(),
        },
    );
}

#[test]
fn merges_that_cannot_apply_are_left_out() {
    let mut d = data(PreTokenizer::SmolLm);
    let before = Tokenizer::new(d.clone()).unwrap();
    // The result is not a token (a placeholder merge, as in the synthetic test model).
    d.merges.insert(0, b"x y".to_vec());
    // A part or the result is a control / user-defined token.
    d.merges.insert(0, b"<|im <|im".to_vec());
    d.merges.insert(0, b"<|im_end|> a".to_vec());
    d.tokens.push(b"<q>".to_vec());
    d.token_types.push(token_type::CONTROL);
    d.tokens.push(b"q>".to_vec());
    d.token_types.push(token_type::NORMAL);
    d.merges.insert(0, b"< q>".to_vec());
    let tok = Tokenizer::new(d).unwrap();
    assert!(format!("{tok:?}").contains("merges: 18"), "{tok:?}");
    for s in ["xy", "<q>", "<|im<|im", "<|im_end|>a", "hello world"] {
        assert_eq!(
            tok.encode(s, false).unwrap(),
            before.encode(s, false).unwrap(),
            "{s:?}"
        );
    }
    assert_eq!(
        tok.encode("xy", true).unwrap(),
        [u32::from(b'x'), u32::from(b'y')]
    );
}

#[test]
fn lenient_where_harmless() {
    // Unknown / unused tokens outside the byte-level form decode to their raw text.
    let mut d = data(PreTokenizer::SmolLm);
    d.tokens.push(b"[UNUSED 1]".to_vec());
    d.token_types.push(token_type::UNUSED);
    d.tokens.push(b"<unk>\xFF".to_vec());
    d.token_types.push(token_type::UNKNOWN);
    // Duplicate strings: the first id wins for lookups.
    d.tokens.push(b"hello".to_vec());
    d.token_types.push(token_type::NORMAL);
    // token_types may be empty (all normal) if there are no specials.
    let tok = Tokenizer::new(d).unwrap();
    assert_eq!(tok.token_bytes(278), Some(&b"[UNUSED 1]"[..]));
    assert_eq!(tok.token_bytes(279), Some(&b"<unk>\xFF"[..]));
    assert_eq!(tok.token_id("hello"), Some(259));
    assert_eq!(tok.encode("hello", true).unwrap(), [259]);

    let mut d = data(PreTokenizer::Gpt2);
    d.tokens.truncate(256 + MERGES.len() - 1);
    d.token_types.clear();
    let tok = Tokenizer::new(d).unwrap();
    assert_eq!(tok.encode("<|im_end|>", true).unwrap().len(), 10);
    assert_eq!(TokenizerData::id_field(tvl_format::NONE_ID), None);
    assert_eq!(TokenizerData::id_field(7), Some(7));
}

#[test]
fn long_words_use_the_heap_path_with_the_same_result() {
    let tok = smollm();
    // 101 spaces at the end: one piece, merged into ĠĠĠĠ x 25 + Ġ.
    let s = format!("x{}", " ".repeat(101));
    let ids = tok.encode(&s, false).unwrap();
    let mut want = vec![u32::from(b'x')];
    want.extend(std::iter::repeat_n(tok.token_id("ĠĠĠĠ").unwrap(), 25));
    want.push(tok.token_id("Ġ").unwrap());
    assert_eq!(ids, want);
    // A long letter run.
    let s = "ll".repeat(40);
    assert_eq!(tok.encode(&s, false).unwrap(), vec![257; 40]);
}

#[test]
fn the_cache_does_not_change_results() {
    let tok = smollm();
    // Each word is whole pieces whatever precedes or follows it.
    let words = [
        " hello", " world", " abc", " ab", " lll", " he's", " é", " 12x", " x  y",
    ];
    let mut text = String::new();
    let mut want = Vec::new();
    for i in 0..500 {
        let w = words[(i * 7 + i / 3) % words.len()];
        text.push_str(w);
        want.extend(tok.encode(w, false).unwrap());
    }
    assert_eq!(tok.encode(&text, false).unwrap(), want);
}

/// A small SentencePiece vocabulary: byte tokens, single characters, a few merges by
/// score, a control token that the merges can spell, and a user-defined newline.
fn spm(add_space_prefix: bool) -> Tokenizer {
    let mut tokens: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"<s>".to_vec()];
    let mut types = vec![token_type::UNKNOWN, token_type::CONTROL];
    let mut scores = vec![0.0, -1000.0];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>").into_bytes());
        types.push(token_type::BYTE);
        scores.push(0.0);
    }
    for (t, score) in [
        ("\u{2581}", -1.0),
        ("a", -2.0),
        ("b", -2.0),
        ("<", -3.0),
        ("s", -3.0),
        (">", -3.0),
        ("ab", -5.0),
        ("\u{2581}a", -4.0),
        ("<s", -6.0),
    ] {
        tokens.push(t.as_bytes().to_vec());
        types.push(token_type::NORMAL);
        scores.push(score);
    }
    tokens.push(b"\n".to_vec());
    types.push(token_type::USER_DEFINED);
    scores.push(-1000.0);
    Tokenizer::new(TokenizerData {
        kind: TokenizerKind::SentencePiece,
        pretokenizer: PreTokenizer::Gpt2,
        tokens,
        token_types: types,
        scores,
        merges: Vec::new(),
        bos_id: Some(1),
        eos_id: None,
        eot_id: None,
        unk_id: Some(0),
        add_bos: true,
        add_space_prefix,
    })
    .unwrap()
}

fn spm_strings(tok: &Tokenizer, text: &str, parse_special: bool) -> Vec<String> {
    let ids = tok.encode(text, parse_special).unwrap();
    strings(tok, &ids)
}

#[test]
fn sentencepiece_dummy_prefix_only_when_the_vocabulary_asks() {
    let with = spm(true);
    let without = spm(false);
    // "▁a" (-4) beats "ab" (-5): the prefix changes the segmentation.
    assert_eq!(spm_strings(&with, "ab", false), ["▁a", "b"]);
    assert_eq!(spm_strings(&without, "ab", false), ["ab"]);
    assert_eq!(spm_strings(&without, " ab", false), ["▁a", "b"]);
    // Each piece after a special token gets the prefix too (llama.cpp), and decoding
    // removes exactly what encoding added.
    assert_eq!(
        spm_strings(&with, "ab\nab", false),
        ["▁a", "b", "\n", "▁a", "b"]
    );
    assert_eq!(spm_strings(&without, "ab\nab", false), ["ab", "\n", "ab"]);
    for tok in [&with, &without] {
        for text in ["ab", " ab", "ab\nab", "x\u{e9} a"] {
            let ids = tok.encode(text, false).unwrap();
            assert_eq!(tok.decode(&ids), text, "{text:?}");
        }
    }
}

#[test]
fn sentencepiece_merges_may_spell_control_and_byte_tokens() {
    let tok = spm(false);
    // Not parsed as special, "<s>" is text; "<s" (-6) then "<s>" (the control token,
    // -1000, reachable only by merging) as llama.cpp's SPM tokenizer does.
    let ids = tok.encode("<s>", false).unwrap();
    assert_eq!(ids, [1]);
    // Parsed as special it is the control token directly.
    assert_eq!(tok.encode("<s>", true).unwrap(), [1]);
    // A character without a token falls back to its UTF-8 bytes.
    assert_eq!(spm_strings(&tok, "\u{e9}", false), ["<0xC3>", "<0xA9>"]);
}
