//! Use VTC from another Rust program: open a TVL model, pick a backend, stream text.
//!
//! ```text
//! cargo run --release --example generate -- MODEL.tvl "Once upon a time"
//! ```
//! Without arguments it uses the default SmolLM2-135M-Instruct model (fetched and
//! converted on first use, like `vtc run`).

use std::io::Write;

use vtc_model::{GenerateOptions, Model, SamplerConfig, Session};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = match args.next() {
        Some(p) => p.into(),
        None => vtc_import::fetch::ensure_default_model(
            vtc_import::convert::OutDType::F32,
            &mut |m: &str| eprintln!("{m}"),
        )?,
    };
    let prompt = args
        .next()
        .unwrap_or_else(|| "Once upon a time".to_string());

    // Zero-copy: the weights stay in the mapped file; `Model` holds typed views.
    let file = tvl_loader::TvlFile::open(&path)?;
    let model = Model::load(&file)?;
    // The best backend for this CPU (or $VTC_BACKEND); any `impl Backend` works here.
    let backend = vtc_kernels::select(None)?;
    let ids = model.tokenizer().encode_prompt(&prompt)?;
    let opts = GenerateOptions {
        max_tokens: 48,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        },
        stop_at_eos: true,
    };
    let mut session = Session::new(&model, backend, ids.len() + opts.max_tokens)?;
    let mut stream = session.generate(&ids, opts)?;
    let mut out = std::io::stdout().lock();
    for token in &mut stream {
        out.write_all(token?.text.as_bytes())?;
        out.flush()?;
    }
    writeln!(out, "{}", stream.finish())?;
    Ok(())
}
