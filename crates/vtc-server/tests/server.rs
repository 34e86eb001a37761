//! The server end to end on SmolLM2-135M-Instruct q4_1, over loopback HTTP.

mod common;

use std::time::{Duration, Instant};

use common::{Stream, TestServer, options, request};
use serde_json::{Value, json};

fn chat(content: &str, extra: Value) -> Value {
    let mut b = json!({"model": "m", "messages": [{"role": "user", "content": content}]});
    merge(&mut b, extra);
    b
}

fn completion(prompt: &str, extra: Value) -> Value {
    let mut b = json!({"model": "m", "prompt": prompt});
    merge(&mut b, extra);
    b
}

fn merge(b: &mut Value, extra: Value) {
    if let Value::Object(m) = extra {
        for (k, v) in m {
            b[k] = v;
        }
    }
}

/// Text, finish_reason and token logprobs of a non-streaming completion.
fn completion_result(r: &common::Resp) -> (String, String, Vec<f64>) {
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let c = &j["choices"][0];
    let lps = c["logprobs"]["token_logprobs"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_f64().unwrap()).collect())
        .unwrap_or_default();
    (
        c["text"].as_str().unwrap().to_string(),
        c["finish_reason"].as_str().unwrap().to_string(),
        lps,
    )
}

/// Content and token logprobs of a non-streaming chat completion.
fn chat_result(r: &common::Resp) -> (String, Vec<f64>) {
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let c = &j["choices"][0];
    let lps = c["logprobs"]["content"]
        .as_array()
        .map(|a| a.iter().map(|v| v["logprob"].as_f64().unwrap()).collect())
        .unwrap_or_default();
    (c["message"]["content"].as_str().unwrap().to_string(), lps)
}

/// Concatenated deltas, the finish_reason, and whether the stream ended with [DONE].
fn stream_text(r: &common::Resp, chat: bool) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/event-stream"),
        "{:?}",
        r.headers
    );
    let events = r.events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let mut text = String::new();
    let mut finish = None;
    for (i, e) in events[..events.len() - 1].iter().enumerate() {
        let j: Value = serde_json::from_str(e).unwrap();
        let c = &j["choices"][0];
        if chat {
            assert_eq!(j["object"], "chat.completion.chunk");
            if i == 0 {
                assert_eq!(c["delta"]["role"], "assistant", "{e}");
            }
            if let Some(t) = c["delta"]["content"].as_str() {
                text.push_str(t);
            }
        } else {
            assert_eq!(j["object"], "text_completion");
            text.push_str(c["text"].as_str().unwrap());
        }
        if let Some(f) = c["finish_reason"].as_str() {
            assert!(finish.is_none(), "two finish reasons");
            finish = Some(f.to_string());
        }
    }
    (text, finish.expect("a chunk with finish_reason"))
}

#[test]
fn chat_streaming_and_not_give_the_same_greedy_reply() {
    let s = TestServer::start(options());
    let body = chat(
        "What is the capital of France?",
        json!({"max_tokens": 24, "temperature": 0}),
    );
    let r = s.post("/v1/chat/completions", &body);
    let j = r.json();
    assert_eq!(j["object"], "chat.completion");
    let (text, _) = chat_result(&r);
    assert!(!text.is_empty());
    let finish = j["choices"][0]["finish_reason"]
        .as_str()
        .unwrap()
        .to_string();
    let usage = &j["usage"];
    let completion_tokens = usage["completion_tokens"].as_u64().unwrap();
    assert!(["stop", "length"].contains(&finish.as_str()));
    if finish == "length" {
        assert_eq!(completion_tokens, 24);
    }
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + completion_tokens
    );
    // The prompt is the model's own template, tokenized as vtc chat does.
    let file = tvl_loader::TvlFile::open(common::smollm2()).unwrap();
    let model = vtc_model::Model::load(&file).unwrap();
    let tmpl = vtc_model::chat::ChatTemplate::from_file(&file, model.tokenizer())
        .unwrap()
        .unwrap();
    let rendered = tmpl
        .render(
            &[vtc_model::chat::Message::new(
                "user",
                "What is the capital of France?",
            )],
            true,
        )
        .unwrap();
    let ids = vtc_model::chat::encode_start(model.tokenizer(), &rendered).unwrap();
    assert_eq!(usage["prompt_tokens"].as_u64().unwrap(), ids.len() as u64);

    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let (stext, sfinish) = stream_text(&s.post("/v1/chat/completions", &sbody), true);
    assert_eq!(stext, text);
    assert_eq!(sfinish, finish);
    // The second request began with the prompt a free slot held: only the last prompt
    // token was run again.
    assert_eq!(
        s.metric("vtc_prompt_tokens_reused_total"),
        ids.len() as f64 - 1.0
    );
}

#[test]
fn completions_stop_strings_cut_the_text() {
    let s = TestServer::start(options());
    let prompt = "1, 2, 3, 4,";
    let base = json!({"max_tokens": 20, "temperature": 0});
    let (full, finish, _) =
        completion_result(&s.post("/v1/completions", &completion(prompt, base.clone())));
    assert_eq!(finish, "length", "{full:?}");
    assert!(full.chars().count() >= 8, "{full:?}");
    // A stop string taken from the middle of the greedy text.
    let chars: Vec<char> = full.chars().collect();
    let stop: String = chars[4..7].iter().collect();
    let at = full.find(&stop).unwrap();
    let mut with_stop = base.clone();
    with_stop["stop"] = json!(["never-appears", stop]);
    let (cut, finish, _) =
        completion_result(&s.post("/v1/completions", &completion(prompt, with_stop.clone())));
    assert_eq!(finish, "stop");
    assert_eq!(cut, full[..at]);
    // Streamed, the held-back text is released and cut the same way.
    with_stop["stream"] = json!(true);
    let (scut, sfinish) = stream_text(
        &s.post("/v1/completions", &completion(prompt, with_stop)),
        false,
    );
    assert_eq!((scut.as_str(), sfinish.as_str()), (&full[..at], "stop"));
    // A single string works too.
    let mut one = base.clone();
    one["stop"] = json!(stop);
    assert_eq!(
        completion_result(&s.post("/v1/completions", &completion(prompt, one))).0,
        full[..at]
    );
    // Streamed without a stop: the whole greedy text.
    let mut st = base;
    st["stream"] = json!(true);
    let (stext, sfinish) = stream_text(&s.post("/v1/completions", &completion(prompt, st)), false);
    assert_eq!(
        (stext.as_str(), sfinish.as_str()),
        (full.as_str(), "length")
    );
}

#[test]
fn seeds_reproduce_sampled_text() {
    let s = TestServer::start(options());
    let run = |seed: u64| {
        let b = completion(
            "Once upon a time",
            json!({"max_tokens": 16, "temperature": 1.0, "seed": seed, "logprobs": 0}),
        );
        completion_result(&s.post("/v1/completions", &b))
    };
    let a = run(42);
    let b = run(42);
    assert_eq!(a.0, b.0);
    assert_eq!(a.2, b.2);
    assert!(!a.2.is_empty() && a.2.len() <= 16, "{:?}", a.2);
    // Different seeds sample differently (three seeds all giving one text would mean
    // the seed is ignored).
    let texts: std::collections::BTreeSet<String> =
        [1, 2, 3].into_iter().map(|s| run(s).0).collect();
    assert!(texts.len() > 1, "{texts:?}");
}

#[test]
fn models_health_and_metrics() {
    let s = TestServer::start(options());
    let m = s.get("/v1/models");
    assert_eq!(m.status, 200);
    let j = m.json();
    assert_eq!(j["object"], "list");
    assert_eq!(j["data"][0]["id"], "smollm2-135m-instruct.q4_1");
    assert_eq!(s.get("/health").status, 200);
    let r = s.post(
        "/v1/completions",
        &completion("Hello", json!({"max_tokens": 3, "temperature": 0})),
    );
    let j = r.json();
    let prompt_tokens = j["usage"]["prompt_tokens"].as_f64().unwrap();
    let completion_tokens = j["usage"]["completion_tokens"].as_f64().unwrap();
    assert_eq!(
        s.post("/v1/completions", &json!({"prompt": "x", "n": 3}))
            .status,
        400
    );
    let metrics = s.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    assert!(
        text.contains("vtc_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("vtc_requests_total{endpoint=\"/v1/completions\",status=\"400\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("vtc_requests_total{endpoint=\"/v1/models\",status=\"200\"} 1\n"),
        "{text}"
    );
    assert_eq!(s.metric("vtc_prompt_tokens_total"), prompt_tokens);
    assert_eq!(s.metric("vtc_completion_tokens_total"), completion_tokens);
    s.wait_metric("vtc_active_slots", |v| v == 0.0);
    assert_eq!(s.metric("vtc_queue_length"), 0.0);
    assert_eq!(s.metric("vtc_time_to_first_token_seconds_count"), 1.0);
    assert_eq!(
        s.metric("vtc_inter_token_latency_seconds_count"),
        completion_tokens - 1.0
    );
}

/// The status and the OpenAI error object of a refused request.
fn refused(r: &common::Resp) -> (u16, Value) {
    let j = r.json();
    let e = j["error"].clone();
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{j}");
    assert!(e["type"].as_str().is_some(), "{j}");
    (r.status, e)
}

#[test]
fn bad_input_gets_openai_errors_with_the_right_status() {
    let mut o = options();
    o.ctx = 64;
    o.body_limit = 4096;
    let s = TestServer::start(o);
    let raw = |path: &str, body: &str| request(s.addr, "POST", path, &[], body.as_bytes());
    for path in ["/v1/chat/completions", "/v1/completions"] {
        assert_eq!(refused(&raw(path, "{\"prompt\": ")).0, 400);
        assert_eq!(refused(&raw(path, "not json")).0, 400);
        assert_eq!(refused(&raw(path, "[1, 2]")).0, 400);
    }
    let cases = [
        (
            completion("hi", json!({"temperature": "hot"})),
            "/v1/completions",
        ),
        (
            completion("hi", json!({"max_tokens": -1})),
            "/v1/completions",
        ),
        (completion("hi", json!({"stop": 5})), "/v1/completions"),
        (
            completion("hi", json!({"stream": "yes"})),
            "/v1/completions",
        ),
        (json!({"prompt": 7}), "/v1/completions"),
        (json!({"messages": "hi"}), "/v1/chat/completions"),
        (
            json!({"messages": [{"role": "user"}], "top_p": 2}),
            "/v1/chat/completions",
        ),
        (
            json!({"messages": [{"content": "x"}]}),
            "/v1/chat/completions",
        ),
        (
            json!({"messages": [{"role": "wizard", "content": "x"}]}),
            "/v1/chat/completions",
        ),
        (json!({"messages": []}), "/v1/chat/completions"),
        (json!({}), "/v1/chat/completions"),
        (json!({}), "/v1/completions"),
    ];
    for (body, path) in &cases {
        let (status, _) = refused(&s.post(path, body));
        assert_eq!(status, 400, "{body}");
    }
    let (status, e) = refused(&s.post(
        "/v1/completions",
        &completion("hi", json!({"tempreature": 0})),
    ));
    assert_eq!((status, e["param"].as_str()), (400, Some("tempreature")));
    let (status, e) = refused(&s.post("/v1/chat/completions", &chat("hi", json!({"n": 2}))));
    assert_eq!((status, e["param"].as_str()), (400, Some("n")));
    // A prompt longer than a slot.
    let long = "word ".repeat(100);
    for (path, body) in [
        ("/v1/completions", completion(&long, json!({}))),
        ("/v1/chat/completions", chat(&long, json!({}))),
    ] {
        let (status, e) = refused(&s.post(path, &body));
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some("context_length_exceeded")),
            "{path}"
        );
    }
    // max_tokens beyond the room left is clipped to it.
    let r = s.post(
        "/v1/completions",
        &completion(
            "1, 2, 3,",
            json!({"max_tokens": 100000, "temperature": 0, "ignore_eos": true}),
        ),
    );
    let j = r.json();
    assert_eq!(j["choices"][0]["finish_reason"], "length", "{j}");
    assert_eq!(j["usage"]["total_tokens"].as_u64(), Some(64));
    // Over the body limit.
    let big = completion(&"x".repeat(5000), json!({}));
    let (status, _) = refused(&s.post("/v1/completions", &big));
    assert_eq!(status, 413);
    // Unknown route.
    assert_eq!(refused(&s.get("/v2/nothing")).0, 404);
    // The server still answers.
    let r = s.post(
        "/v1/completions",
        &completion("Hi", json!({"max_tokens": 2})),
    );
    assert_eq!(r.json()["usage"]["completion_tokens"].as_u64(), Some(2));
}

#[test]
fn api_key_is_required_when_set() {
    let mut o = options();
    o.api_key = Some("sekrit".into());
    let s = TestServer::start(o);
    let body = completion("Hi", json!({"max_tokens": 2})).to_string();
    let send = |h: &[(&str, &str)]| request(s.addr, "POST", "/v1/completions", h, body.as_bytes());
    let (status, e) = refused(&send(&[]));
    assert_eq!(
        (status, e["type"].as_str()),
        (401, Some("authentication_error"))
    );
    assert_eq!(refused(&send(&[("Authorization", "Bearer wrong")])).0, 401);
    assert_eq!(refused(&send(&[("Authorization", "sekrit")])).0, 401);
    assert_eq!(
        refused(&request(s.addr, "GET", "/v1/models", &[], b"")).0,
        401
    );
    assert_eq!(send(&[("Authorization", "Bearer sekrit")]).status, 200);
    assert_eq!(s.get("/health").status, 200);
}

#[test]
fn full_queue_gets_429_and_a_disconnect_frees_the_slot() {
    let mut o = options();
    o.slots = 1;
    o.queue = 1;
    let s = TestServer::start(o);
    // A: a long stream occupying the only slot.
    let mut a = Stream::open(
        s.addr,
        "/v1/completions",
        &completion(
            "1, 2, 3,",
            json!({"max_tokens": 400, "ignore_eos": true, "stream": true, "temperature": 0}),
        ),
    );
    a.wait_for("data: ", 2);
    // B waits in the queue.
    let addr = s.addr;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let b = std::thread::spawn(move || {
        let body = completion("Hello", json!({"max_tokens": 3})).to_string();
        let r = request(addr, "POST", "/v1/completions", &[], body.as_bytes());
        let _ = done_tx.send(r.status);
    });
    let t = Instant::now();
    while s.metric("vtc_queue_length") < 1.0 {
        assert!(t.elapsed() < Duration::from_secs(30), "B never queued");
        std::thread::sleep(Duration::from_millis(10));
    }
    // C: the queue is full.
    let c = s.post(
        "/v1/completions",
        &completion("Hi", json!({"max_tokens": 2})),
    );
    let (status, e) = refused(&c);
    assert_eq!(
        (status, e["type"].as_str()),
        (429, Some("rate_limit_error"))
    );
    assert!(c.header("retry-after").is_some(), "{:?}", c.headers);
    assert_eq!(done_rx.try_recv().ok(), None, "B ran while A held the slot");
    // A disconnects: its slot goes to B well before A's 400 tokens would be done.
    drop(a);
    let status = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("B never ran after A disconnected");
    assert_eq!(status, 200);
    b.join().unwrap();
    s.wait_metric("vtc_active_slots", |v| v == 0.0);
}

/// A non-streaming client that disconnects before its reply frees its slot too: the
/// engine stops generating for it long before its max_tokens.
#[test]
fn a_non_streaming_disconnect_frees_the_slot() {
    let mut o = options();
    o.slots = 1;
    let s = TestServer::start(o);
    let before = s.metric("vtc_completion_tokens_total");
    let body = completion(
        "1, 2, 3,",
        json!({"max_tokens": 480, "ignore_eos": true, "temperature": 0}),
    )
    .to_string();
    let mut sock = std::net::TcpStream::connect(s.addr).unwrap();
    use std::io::Write;
    write!(
        sock,
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.wait_metric("vtc_completion_tokens_total", |v| v >= before + 8.0);
    drop(sock);
    s.wait_metric("vtc_active_slots", |v| v == 0.0);
    let generated = s.metric("vtc_completion_tokens_total") - before;
    assert!(
        generated < 400.0,
        "{generated} tokens generated for a gone client"
    );
}

/// A long prompt that joins while another request decodes runs in chunks mixed into
/// that request's decode steps (so its stream keeps moving), and both get the text
/// and logprobs they get alone.
#[test]
fn a_joining_prompt_is_prefilled_in_chunks_beside_a_running_stream() {
    let s = TestServer::start(options());
    let long: String = (0..40)
        .map(|i| format!("Sentence number {i} is about the weather in spring. "))
        .collect();
    let a_body = completion(
        "1, 2, 3,",
        json!({"max_tokens": 160, "temperature": 0, "ignore_eos": true, "logprobs": 0}),
    );
    let b_body = completion(
        &long,
        json!({"max_tokens": 8, "temperature": 0, "logprobs": 0}),
    );
    let a_alone = completion_result(&s.post("/v1/completions", &a_body));
    let b_resp = s.post("/v1/completions", &b_body);
    let b_alone = completion_result(&b_resp);
    let b_prompt = b_resp.json()["usage"]["prompt_tokens"].as_u64().unwrap() as f64;
    assert!(b_prompt > 300.0, "{b_prompt}");
    let mixed_before = s.metric("vtc_mixed_steps_total");

    let addr = s.addr;
    let a = std::thread::spawn(move || {
        let r = request(
            addr,
            "POST",
            "/v1/completions",
            &[],
            a_body.to_string().as_bytes(),
        );
        completion_result(&r)
    });
    // B joins once A is decoding.
    let started = s.metric("vtc_completion_tokens_total");
    s.wait_metric("vtc_completion_tokens_total", |v| v >= started + 4.0);
    // A took back slot 0 (where B ran alone, after A), so B lands in the empty slot 1
    // and its whole prompt is prefilled, beside A's decoding.
    let b_among = completion_result(&s.post("/v1/completions", &b_body));
    let a_among = a.join().unwrap();
    assert_eq!(a_among, a_alone);
    assert_eq!(b_among, b_alone);
    let mixed = s.metric("vtc_mixed_steps_total") - mixed_before;
    // B's prompt needed at least prompt / 32 steps; all but the last few ran beside A.
    assert!(
        mixed >= (b_prompt / 32.0).floor() - 1.0,
        "{mixed} mixed steps for a prompt of {b_prompt}"
    );
}

/// A request's text and logprobs are the same bits alone and among 7 others.
#[test]
fn batch_invariance_alone_and_among_seven_others() {
    let mut o = options();
    o.slots = 8;
    let s = TestServer::start(o);
    let probe_sampled = completion(
        "The quick brown fox",
        json!({"max_tokens": 16, "temperature": 0.9, "seed": 1234, "logprobs": 0, "ignore_eos": true}),
    );
    let probe_greedy = chat(
        "Name three colors.",
        json!({"max_tokens": 16, "temperature": 0, "logprobs": true}),
    );
    let alone_sampled = completion_result(&s.post("/v1/completions", &probe_sampled));
    let alone_greedy = chat_result(&s.post("/v1/chat/completions", &probe_greedy));
    assert_eq!(alone_sampled.2.len(), 16);
    assert!(!alone_greedy.1.is_empty());

    // Seven other requests with different prompts and settings, started first so the
    // probes run beside them.
    let prompts = [
        "Write a poem about the sea.",
        "1, 2, 3,",
        "Explain gravity to a child.",
        "def fibonacci(n):",
        "List the planets.",
        "Why is the sky blue?",
        "Translate 'good morning' into French.",
    ];
    let addr = s.addr;
    let others: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let body = if i % 2 == 0 {
                chat(
                    p,
                    json!({"max_tokens": 64, "temperature": 0.7, "seed": i, "ignore_eos": true}),
                )
            } else {
                completion(
                    p,
                    json!({"max_tokens": 64, "temperature": 0, "ignore_eos": true}),
                )
            };
            let path = if i % 2 == 0 {
                "/v1/chat/completions"
            } else {
                "/v1/completions"
            };
            std::thread::spawn(move || {
                let r = request(addr, "POST", path, &[], body.to_string().as_bytes());
                assert_eq!(r.status, 200, "{}", r.body);
            })
        })
        .collect();
    let t = Instant::now();
    while s.metric("vtc_active_slots") < 7.0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the others never all ran"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let among_sampled = completion_result(&s.post("/v1/completions", &probe_sampled));
    // The greedy probe joins while the others still run (they have 64 tokens each).
    let among_greedy = chat_result(&s.post("/v1/chat/completions", &probe_greedy));
    for o in others {
        o.join().unwrap();
    }
    assert_eq!(among_sampled, alone_sampled);
    assert_eq!(among_greedy, alone_greedy);
    // Bit-identical logprobs (JSON carries each f32 exactly).
    let bits = |v: &[f64]| v.iter().map(|x| (*x as f32).to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&among_sampled.2), bits(&alone_sampled.2));
}

#[test]
fn shutdown_lets_running_streams_finish_then_stops() {
    let mut s = TestServer::start(options());
    let addr = s.addr;
    let mut a = Stream::open(
        addr,
        "/v1/completions",
        &completion(
            "1, 2, 3,",
            json!({"max_tokens": 40, "ignore_eos": true, "stream": true, "temperature": 0}),
        ),
    );
    a.wait_for("data: ", 1);
    s.signal_shutdown();
    // The running stream still ends properly.
    a.wait_for("[DONE]", 1);
    let seen = String::from_utf8_lossy(&a.seen).into_owned();
    assert!(seen.contains("\"finish_reason\":\"length\""), "{seen}");
    drop(a);
    s.join();
    // No longer listening.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn shutdown_cuts_streams_after_the_grace_period() {
    let mut o = options();
    o.grace = Duration::from_millis(200);
    o.ctx = 2048;
    let mut s = TestServer::start(o);
    let mut a = Stream::open(
        s.addr,
        "/v1/completions",
        &completion(
            "1, 2, 3,",
            json!({"max_tokens": 2000, "ignore_eos": true, "stream": true, "temperature": 0}),
        ),
    );
    a.wait_for("data: ", 1);
    let t = Instant::now();
    s.signal_shutdown();
    s.join();
    // The stream is ended (finish_reason "length", then [DONE]) long before 2000 tokens
    // (over 10 s at any speed this machine reaches) would be done.
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut a.sock, &mut rest);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    a.seen.extend_from_slice(&rest);
    let seen = String::from_utf8_lossy(&a.seen).into_owned();
    assert!(seen.contains("[DONE]"), "{seen}");
    assert!(seen.contains("\"finish_reason\":\"length\""), "{seen}");
    assert!(seen.matches("data: ").count() < 1000, "{seen}");
}
