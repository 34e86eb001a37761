//! Bytes -> a Hugging Face directory (input: u32 LE length + `config.json`, u32 LE
//! length + `model.safetensors`, the rest `tokenizer.json` if non-empty) written to a
//! scratch directory -> `hf::convert_dir` -> write -> load and touch.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vtc_import::ConvertOptions;

#[path = "common.rs"]
mod common;

/// One scratch directory per process (in /dev/shm when it exists: no disk writes).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("vtc-fuzz-hf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let (config, rest) = common::split(data);
    let (weights, tokenizer) = common::split(rest);
    let dir = scratch();
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    let tok = dir.join("tokenizer.json");
    if tokenizer.is_empty() {
        let _ = std::fs::remove_file(&tok);
    } else {
        std::fs::write(&tok, tokenizer).unwrap();
    }
    match vtc_import::hf::convert_dir(dir, &ConvertOptions::default(), &mut |_, _| {}) {
        Ok(conv) => common::write_and_touch(conv),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
