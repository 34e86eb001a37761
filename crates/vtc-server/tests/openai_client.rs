//! The server through the real `openai` Python client (tests/openai_client.py).
//!
//! The client lives in a venv that `.ci/run` creates
//! (`~/.cache/vtc/openai-venv`, or `$VTC_OPENAI_PYTHON` naming its python). Without
//! it the test prints a loud SKIPPED and returns, unless `VTC_REQUIRE_OPENAI=1` (set by
//! CI), which makes a missing venv a failure.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VTC_OPENAI_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var_os("VTC_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/vtc")))?;
    let p = home.join("openai-venv/bin/python");
    p.exists().then_some(p)
}

#[test]
fn openai_python_client() {
    let required = std::env::var("VTC_REQUIRE_OPENAI").is_ok_and(|v| v == "1");
    let Some(py) = python() else {
        assert!(
            !required,
            "VTC_REQUIRE_OPENAI=1 but no openai venv (create it: python3 -m venv \
             ~/.cache/vtc/openai-venv && ~/.cache/vtc/openai-venv/bin/pip install openai)"
        );
        eprintln!(
            "\n*** SKIPPED openai_python_client: no ~/.cache/vtc/openai-venv (see .ci/run) ***\n"
        );
        return;
    };
    let mut o = common::options();
    o.api_key = Some("test-key".into());
    let s = common::TestServer::start(o);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new(&py)
        .arg(&script)
        .args([
            "--base-url",
            &format!("{}/v1", s.url()),
            "--api-key",
            "test-key",
        ])
        .output()
        .expect("running the openai client script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "openai client script failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
}
