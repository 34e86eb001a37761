//! SmolLM2's tokenizer against Hugging Face `tokenizers`: `data/smollm2-hf-tokenizer-cases.json`
//! holds texts (English prose, Python and C code, number tables, CJK in several legacy
//! encodings' test texts, emoji, whitespace runs, ChatML, contractions, and 150 random
//! fuzz strings) with the ids HF `tokenizers` produced for them from the same vocabulary
//! and merges (pre-tokenizer: digits split individually, then byte-level GPT-2 split).

mod common;

use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_model::Model;
use vtc_model::tokenizer::StreamDecoder;

#[test]
fn ids_equal_hugging_face_tokenizers() {
    let cases = common::tokenizer_cases("smollm2-hf-tokenizer-cases.json");
    let file = TvlFile::open(common::smollm2(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let tok = model.tokenizer();
    assert!(cases.len() > 150);
    let mut total_ids = 0;
    for case in &cases {
        let (name, text, want) = (&case.name, case.text.as_str(), &case.ids);
        // HF treats control tokens as added tokens: special parsing on.
        let got = tok.encode(text, true).unwrap();
        assert_eq!(got, *want, "case {name}");
        total_ids += got.len();
        // Streaming decode gives the same text as a whole decode.
        let mut dec = StreamDecoder::new();
        let mut streamed: String = got.iter().map(|&id| dec.push(tok, id)).collect();
        streamed.push_str(&dec.flush());
        assert_eq!(streamed, tok.decode(&got), "case {name}");
    }
    eprintln!(
        "{} cases, {total_ids} ids, all equal to HF tokenizers",
        cases.len()
    );
}
