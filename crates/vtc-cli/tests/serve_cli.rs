//! `vtc serve` as a user starts it: the binary on a free loopback port (`--port 0`,
//! the address printed at start), answering /health and a completion over plain
//! HTTP/1.1, then SIGTERM: it drains and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use vtc_import::convert::OutDType;

/// `METHOD path` with an optional JSON body; the status and the body (de-chunked).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        rest.to_string()
    };
    (status, body)
}

#[test]
fn serve_answers_on_the_printed_port_and_drains_on_sigterm() {
    let model =
        vtc_import::fetch::ensure_default_model(OutDType::Q4_1, &mut |m: &str| eprintln!("{m}"))
            .expect("fetching SmolLM2-135M-Instruct");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vtc"))
        .args([
            "serve", "--port", "0", "--slots", "1", "--ctx", "256", "-t", "1",
        ])
        .arg("--model")
        .arg(&model)
        .env_remove("VTC_API_KEY")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting vtc serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "vtc serve exited");
        if let Some(rest) = line.split_once("on http://") {
            break rest.1.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let (status, body) = http(&addr, "GET", "/health", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(
        &addr,
        "POST",
        "/v1/completions",
        r#"{"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}"#,
    );
    assert_eq!(status, 200, "{body}");
    let j: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["usage"]["completion_tokens"], 8, "{body}");
    assert!(
        !j["choices"][0]["text"].as_str().unwrap().is_empty(),
        "{body}"
    );

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("vtc: stopped"), "{rest}");
}
