//! Bytes -> a llama2.c checkpoint and a `tokenizer.bin` (input: u32 LE length of the
//! checkpoint, the checkpoint, then the tokenizer; none if empty) -> parse both ->
//! read every tensor -> convert to TVL -> write -> load and touch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vtc_import::ConvertOptions;
use vtc_import::llama2c::{Checkpoint, Vocab, convert, looks_like_checkpoint};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (ckpt, vocab_bytes) = common::split(data);
    let _ = looks_like_checkpoint(ckpt);
    if let Ok(ck) = Checkpoint::parse(ckpt) {
        let names: Vec<String> = ck.tensor_names().map(str::to_string).collect();
        for name in &names {
            assert!(
                ck.tensor_f32(ckpt, name).is_some(),
                "{name} listed but unreadable"
            );
        }
    }
    let vocab = if vocab_bytes.is_empty() {
        None
    } else {
        match Vocab::parse(vocab_bytes) {
            Ok(v) => {
                assert_eq!(v.tokens.len(), v.scores.len());
                assert_eq!(v.tokens.len(), v.types.len());
                Some(v)
            }
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
    };
    if let Ok(conv) = convert(ckpt, vocab, &ConvertOptions::default(), &mut |_, _| {}) {
        common::write_and_touch(conv);
    }
});
