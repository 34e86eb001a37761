//! Shared by the CLI tests: where the golden files are, and running the binary.
#![allow(dead_code)]

use std::process::Command;

/// `../shared/golden` beside the checkout, or `$VTC_GOLDEN` (fails the test when
/// missing).
pub use vtc_testdata::golden_dir as golden;

/// Run `vtc ARGS` (without `VTC_BACKEND`) and collect its output.
pub fn vtc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vtc"))
        .args(args)
        .env_remove("VTC_BACKEND")
        .output()
        .expect("running vtc")
}
