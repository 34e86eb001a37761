//! `vtc perplexity` as a user runs it, on the synthetic GQA model.

mod common;

use common::{golden, vtc};

use std::path::{Path, PathBuf};

/// The synthetic model as f32 TVL, and a text file holding the byte range of
/// english.txt that the float64 reference's `synthetic-gqa` case covers.
fn setup(dir: &Path) -> (PathBuf, PathBuf, serde_json::Value) {
    let model = dir.join("synthetic.f32.tvl");
    let src = golden().join("synthetic-gqa/model.f32.gguf");
    let o = vtc(&["convert", src.to_str().unwrap(), model.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vtc-model/tests/data");
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("perplexity-reference.json")).unwrap(),
    )
    .unwrap();
    let case = reference["cases"]["synthetic-gqa"].clone();
    let text = std::fs::read_to_string(data.join("english.txt")).unwrap();
    let (a, b) = (
        case["text_bytes"][0].as_u64().unwrap() as usize,
        case["text_bytes"][1].as_u64().unwrap() as usize,
    );
    let file = dir.join("slice.txt");
    std::fs::write(&file, &text[a..b]).unwrap();
    (model, file, case)
}

#[test]
fn perplexity_json_reports_the_reference_figure() {
    let dir = tempfile::tempdir().unwrap();
    let (model, file, case) = setup(dir.path());
    let ids = dir.path().join("ids.json");
    let o = vtc(&[
        "perplexity",
        "--json",
        "--model",
        model.to_str().unwrap(),
        file.to_str().unwrap(),
        "--ctx",
        "64",
        "--dump-ids",
        ids.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let ppl = doc["perplexity"].as_f64().expect("perplexity");
    let scored = doc["tokens_scored"].as_u64().expect("tokens_scored");
    assert!(ppl.is_finite() && ppl > 1.0, "{doc}");
    assert_eq!(scored, case["tokens_scored"].as_u64().unwrap());
    assert_eq!(doc["ctx"], 64);
    assert_eq!(doc["windows"], case["windows"]);
    for key in ["model", "backend", "seconds", "nll_sum"] {
        assert!(!doc[key].is_null(), "no {key} in {doc}");
    }
    let want = case["perplexity"].as_f64().unwrap();
    assert!((ppl - want).abs() / want < 1e-3, "{ppl} vs float64 {want}");
    // The dumped ids are the reference's.
    let dumped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ids).unwrap()).unwrap();
    assert_eq!(dumped["ids"], case["ids"]);
    assert_eq!(dumped["add_bos"], false);
    // Diagnostics stay on stderr.
    assert!(String::from_utf8_lossy(&o.stderr).contains("tok/s"));
}

#[test]
fn perplexity_text_output_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (model, file, _) = setup(dir.path());
    let m = model.to_str().unwrap();
    let f = file.to_str().unwrap();
    // Without --ctx the window is 512 cut to the model's context (64); two windows only.
    let o = vtc(&[
        "perplexity",
        "--model",
        m,
        f,
        "--chunks",
        "2",
        "--backend",
        "scalar",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(
        out.starts_with("perplexity ") && out.contains("126 tokens scored, 2 windows of 64"),
        "{out}"
    );
    for (args, msg) in [
        (vec!["--ctx", "65"], "at most 64"),
        (vec!["--ctx", "1"], "at least 2"),
        (vec!["--chunks", "0"], "at least 2 tokens"),
    ] {
        let mut all = vec!["perplexity", "--model", m, f];
        all.extend(args);
        let o = vtc(&all);
        assert!(!o.status.success());
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("vtc: error") && e.contains(msg), "{e}");
        assert!(!e.contains("panicked"), "{e}");
    }
    let o = vtc(&["perplexity", "--model", m, "/nonexistent/text.txt"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("reading /nonexistent/text.txt"));
}
