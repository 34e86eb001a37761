//! Shared by the CLI tests: where the golden files are, and running the binary.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// `../shared/golden` beside the checkout, or `$VTC_GOLDEN`.
pub fn golden() -> PathBuf {
    let dir = std::env::var_os("VTC_GOLDEN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden")
        });
    assert!(
        dir.join("README.md").is_file(),
        "golden files not found at {}",
        dir.display()
    );
    dir
}

/// Run `vtc ARGS` (without `VTC_BACKEND`) and collect its output.
pub fn vtc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vtc"))
        .args(args)
        .env_remove("VTC_BACKEND")
        .output()
        .expect("running vtc")
}
