//! The `vtc` binary as a user runs it, on the synthetic GQA model.

mod common;

use common::{golden, vtc};

use std::path::PathBuf;

fn converted(dtype: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("synthetic.{dtype}.tvl"));
    let src = golden().join("synthetic-gqa/model.f32.gguf");
    let o = vtc(&[
        "convert",
        src.to_str().unwrap(),
        out.to_str().unwrap(),
        "--dtype",
        dtype,
    ]);
    assert!(
        o.status.success(),
        "convert failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (dir, out)
}

#[test]
fn inspect_json_lists_every_tensor_with_full_line_utilization() {
    let (_dir, model) = converted("f32");
    let o = vtc(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let tensors = doc["tensors"].as_array().unwrap();
    // 2 layers x 9 + token_embd + output_norm + output + tokenizer tables.
    assert!(tensors.len() >= 21, "{} tensors", tensors.len());
    let mut matrices = 0;
    for t in tensors {
        for key in [
            "name",
            "dtype",
            "shape",
            "layout",
            "offset",
            "bytes",
            "line_utilization",
        ] {
            assert!(!t[key].is_null(), "tensor entry lacks {key}: {t}");
        }
        assert_eq!(t["offset"].as_u64().unwrap() % 128, 0);
        if t["layout"] == "row_tiled" {
            matrices += 1;
            assert_eq!(t["dtype"], "f32");
            // Rows are multiples of 4; columns pad up to 32 f32 (ffn_down has 176 = 5.5 x 32).
            let cols = t["shape"][1].as_u64().unwrap() as f64;
            let want = cols / ((cols / 32.0).ceil() * 32.0);
            assert_eq!(t["line_utilization"].as_f64().unwrap(), want, "{t}");
        }
    }
    assert_eq!(matrices, 2 * 7 + 2);
    assert_eq!(doc["config"]["n_kv_heads"], 2);
}

#[test]
fn run_prints_only_the_generated_text_and_is_reproducible() {
    let (_dir, model) = converted("f16");
    let m = model.to_str().unwrap();
    let args = [
        "run",
        "--model",
        m,
        "--backend",
        "scalar",
        "-n",
        "12",
        "--temp",
        "0.9",
        "--seed",
        "7",
        "--ignore-eos",
        "hello",
    ];
    let a = vtc(&args);
    assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
    let b = vtc(&args);
    assert_eq!(a.stdout, b.stdout, "same seed, same text");
    let stderr = String::from_utf8_lossy(&a.stderr);
    assert!(
        stderr.contains("tok/s") && stderr.contains("backend scalar"),
        "{stderr}"
    );
    // stdout is exactly the continuation: 12 byte-level tokens decode to <= 12 bytes
    // (invalid UTF-8 bytes come out as U+FFFD) and never echo the prompt.
    let out = String::from_utf8(a.stdout).expect("stdout is UTF-8");
    assert!(!out.is_empty() && out.chars().count() <= 12, "{out:?}");
}

#[test]
fn errors_are_reported_not_panics() {
    let o = vtc(&["inspect", "/nonexistent/model.tvl"]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("vtc: error"), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    let (_dir, model) = converted("f32");
    let o = vtc(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--backend",
        "nope",
        "x",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown backend"));
}

#[test]
fn verify_checks_every_tensor_and_names_a_damaged_one() {
    let (_dir, path) = converted("q8_0");
    let p = path.to_str().unwrap();
    let o = vtc(&["verify", p, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["verified"], j["tensors"]);
    assert_eq!(j["mismatches"].as_array().unwrap().len(), 0);
    // Flip one byte in the middle of the data: open still works, verify fails and
    // names the tensor.
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let o = vtc(&["verify", p, "--json"]);
    assert!(!o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["mismatches"].as_array().unwrap().len(), 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("checksum") && err.contains("SIGBUS"), "{err}");
}

#[test]
fn bench_json_has_one_row_per_test_and_thread_count() {
    let (_dir, model) = converted("q4_1");
    let o = vtc(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "-p",
        "8,40",
        "-n",
        "4",
        "-t",
        "1,2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let mut seen: Vec<(u64, String)> = rows
        .iter()
        .map(|r| {
            (
                r["threads"].as_u64().unwrap(),
                r["test"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let want: Vec<(u64, String)> = [1, 2]
        .into_iter()
        .flat_map(|t| ["pp40", "pp8", "tg4"].map(|s| (t, s.to_string())))
        .collect();
    assert_eq!(seen, want);
    let whole = rows.iter().find(|r| r["test"] == "tg4").unwrap()["weight_bytes_per_token"]
        .as_u64()
        .unwrap();
    for r in &rows {
        for key in ["tok_s", "bandwidth_gb_s", "fraction_of_limit"] {
            let v = r[key].as_f64().unwrap_or(f64::NAN);
            assert!(v > 0.0 && v.is_finite(), "{key} = {v} in {r}");
        }
        assert!(r["backend"].is_string(), "{r}");
        // A prompt of p tokens reads the weights once per batch of up to 64.
        let bytes = r["weight_bytes_per_token"].as_u64().unwrap();
        let expect = match r["test"].as_str().unwrap() {
            "pp8" => whole as f64 / 8.0,
            "pp40" => whole as f64 / 40.0,
            _ => whole as f64,
        };
        assert!((bytes as f64 - expect).abs() <= 1.0, "{r}");
    }
}
