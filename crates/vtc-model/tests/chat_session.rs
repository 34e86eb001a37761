//! Multi-turn chat on the synthetic GQA model (byte-level vocabulary): the KV cache is
//! reused across turns and holds exactly the conversation's tokens, a template that
//! re-renders history falls back to re-reading it, and a full context is a typed error.

mod common;

use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_model::chat::{Chat, ChatError, ChatTemplate};
use vtc_model::{GenerateOptions, Model, SamplerConfig, Session, StopReason};

const TEMPLATE: &str = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>\n{% endfor %}\
                        {% if add_generation_prompt %}<assistant>{% endif %}";

fn opts(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampler: SamplerConfig::default(), // greedy
        stop_at_eos: true,
    }
}

/// Greedy continuation of `prompt` from an empty cache.
fn fresh_reply(model: &Model<'_>, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut s = Session::new(model, vtc_kernels::Scalar, 64).unwrap();
    s.generate(prompt, opts(n))
        .unwrap()
        .map(|t| t.unwrap().id)
        .collect()
}

#[test]
fn turns_reuse_the_cache_and_match_a_fresh_run() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let tok = model.tokenizer();
    let mut session = Session::new(&model, vtc_kernels::Scalar, 64).unwrap();
    let mut chat = Chat::new(ChatTemplate::new(TEMPLATE, "", "").unwrap(), None);

    let mut streamed = String::new();
    let t1 = chat
        .turn(&mut session, "hi", opts(6), &mut |s| streamed.push_str(s))
        .unwrap();
    assert_eq!((t1.reused, t1.reprefilled), (0, false));
    assert_eq!(t1.text, streamed);
    let rendered1 = "<user>hi</s>\n<assistant>";
    assert_eq!(t1.fed, tok.encode(rendered1, true).unwrap().len());
    // The reply is the greedy continuation of the rendered prompt.
    let ids1 = tok.encode(rendered1, true).unwrap();
    let reply1 = fresh_reply(&model, &ids1, 6);
    assert_eq!(tok.decode(&reply1), t1.text);

    let t2 = chat
        .turn(&mut session, "more", opts(3), &mut |_| {})
        .unwrap();
    // The random model replies with bytes that are not UTF-8 (shown as U+FFFD); the
    // history is rendered so, and the cache keeps the bytes the model produced.
    assert!(!t2.reprefilled, "{t1:?} {t2:?}");
    assert_eq!(t2.reused, t1.fed + t1.generated);
    assert_eq!(session.pos(), t2.reused + t2.fed + t2.generated);
    // The cache holds the conversation so far, token for token: a fresh session fed the
    // same tokens continues identically.
    let cached = chat.cached_tokens().to_vec();
    assert_eq!(cached.len(), session.pos());
    let prompt2 = &cached[..t2.reused + t2.fed];
    let reply2 = fresh_reply(&model, prompt2, 3);
    assert_eq!(tok.decode(&reply2), t2.text);
    let text = tok.decode(prompt2);
    assert!(text.starts_with(rendered1), "{text:?}");
    assert!(
        text.ends_with("</s>\n<user>more</s>\n<assistant>"),
        "{text:?}"
    );
    assert_eq!(chat.messages().len(), 4);
    assert_eq!(chat.messages()[3].content, t2.text);
}

#[test]
fn a_template_that_rewrites_history_re_reads_it() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let mut session = Session::new(&model, vtc_kernels::Scalar, 64).unwrap();
    // The message count comes first, so every turn renders a different prefix.
    let t = ChatTemplate::new(&format!("{{{{ messages | length }}}}{TEMPLATE}"), "", "").unwrap();
    let mut chat = Chat::new(t, None);
    chat.turn(&mut session, "a", opts(3), &mut |_| {}).unwrap();
    let t2 = chat.turn(&mut session, "b", opts(3), &mut |_| {}).unwrap();
    assert!(t2.reprefilled);
    assert_eq!(t2.reused, 0);
    let cached = chat.cached_tokens().to_vec();
    let prompt = &cached[..t2.fed];
    let text = model.tokenizer().decode(prompt);
    assert!(text.starts_with("3<user>a</s>"), "{text:?}");
    let reply = fresh_reply(&model, prompt, 3);
    assert_eq!(model.tokenizer().decode(&reply), t2.text);
}

#[test]
fn a_full_context_is_a_typed_error() {
    let file = TvlFile::open(common::synthetic_tvl(OutDType::F32)).unwrap();
    let model = Model::load(&file).unwrap();
    let mut session = Session::new(&model, vtc_kernels::Scalar, 24).unwrap();
    let mut chat = Chat::new(ChatTemplate::new(TEMPLATE, "", "").unwrap(), None);
    // 18 tokens of prompt leave room for a reply of at most 7 tokens.
    let t = chat
        .turn(&mut session, "x", opts(100), &mut |_| {})
        .unwrap();
    assert!(t.generated <= 24 + 1 - 18);
    if t.stop == StopReason::MaxTokens {
        assert_eq!(session.pos(), 24);
    }
    match chat.turn(&mut session, "again", opts(4), &mut |_| {}) {
        Err(ChatError::ContextFull { needed, max_seq }) => {
            assert_eq!(max_seq, 24);
            assert!(needed > 24);
        }
        other => panic!("expected ContextFull, got {other:?}"),
    }
}
