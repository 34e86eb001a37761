//! Bytes -> TVL open + validate -> every view read and typed, checksums verified, the
//! model and tokenizer built, one forward pass for tiny models.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvl_loader::TvlFile;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = TvlFile::from_bytes(data) {
        common::touch_tvl(&file);
    }
});
