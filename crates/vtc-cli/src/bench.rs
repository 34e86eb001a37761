//! `vtc bench`: llama-bench's workloads (pp = a prompt of P tokens, tg = N tokens
//! generated one at a time, each from an empty cache) per backend, read against the
//! memory bandwidth measured in the same run.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use vtc_kernels::Backend;
use vtc_model::{Model, Session, Slots, argmax};

use crate::BoxError;
use vtc_kernels::probe;

/// What to measure.
pub struct BenchArgs {
    /// Model path (`None` = the default model).
    pub model: Option<PathBuf>,
    /// Prompt lengths (pp tests).
    pub prompts: Vec<usize>,
    /// Generated lengths (tg tests).
    pub gens: Vec<usize>,
    /// Backend names (`None` = the selected default).
    pub backends: Vec<String>,
    /// Thread counts to run each backend with.
    pub threads: Vec<usize>,
    /// Sequences decoded together in the tg tests (1 = one [`Session`]; more = one
    /// [`Slots`] step per token of all of them).
    pub seqs: Vec<usize>,
    /// Repetitions of each test (the best is reported).
    pub reps: usize,
    /// One JSON object per line instead of a table.
    pub json: bool,
    /// Map the model lazily (no prefaulting): the first token pays the page faults.
    pub lazy: bool,
}

/// Read bandwidth in bytes per second of one thread count.
#[derive(Clone, Copy)]
struct Probe {
    /// Over a buffer of the model's weight bytes per token.
    working_set: f64,
    /// Over [`probe::PROBE_BYTES`], far larger than any cache.
    dram: f64,
}

struct Row {
    test: String,
    threads: usize,
    backend: &'static str,
    tok_s: f64,
    median_ms: f64,
    max_ms: f64,
    /// Weight reads per token, in units of the whole model's per-token bytes: 1 for a
    /// token generated alone, `1 / S` for one of `S` sequences decoded together;
    /// `ceil(p / BATCH) / p` for a prompt of `p` tokens, whose batches of up to
    /// `vtc_model::BATCH` tokens each read the weights once.
    weight_reads: f64,
}

pub fn bench(args: BenchArgs) -> Result<(), BoxError> {
    let path = match args.model {
        Some(p) => p,
        None => crate::default_model()?,
    };
    let t0 = Instant::now();
    let file = crate::open_model(&path, !args.lazy)?;
    let model = Model::load(&file)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let bytes_per_token = model.weight_bytes_per_token();
    let backends: Vec<&'static dyn Backend> = if args.backends.is_empty() {
        vec![vtc_kernels::select(None)?]
    } else {
        args.backends
            .iter()
            .map(|b| vtc_kernels::select(Some(b)))
            .collect::<Result<_, _>>()?
    };
    let longest = args
        .prompts
        .iter()
        .chain(&args.gens)
        .copied()
        .max()
        .unwrap_or(1);
    let ctx = model.config().context_len;
    if longest > ctx {
        return Err(format!("a test needs {longest} positions; the model holds {ctx}").into());
    }
    // Time to first token: first forward pass on a fresh session, cold caches aside
    // (the mapping's pages may already be resident).
    let t1 = Instant::now();
    {
        let mut s = Session::new(&model, backends[0], 1)?;
        s.forward(first_token(&model))?;
    }
    let first_token_ms = t1.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "vtc bench: {} ({:.1} MB of weights per token), load {load_ms:.1} ms, first token {first_token_ms:.1} ms",
        path.display(),
        bytes_per_token as f64 / 1e6
    );
    let threads = if args.threads.is_empty() {
        vec![1]
    } else {
        args.threads.clone()
    };
    // Read bandwidth with as many threads as each test uses, before and after, over two
    // buffers: one the size of the weights read per token (the limit: a model that fits
    // the last-level cache is read at the cache's bandwidth, as decode reads it) and one
    // far larger than any cache (DRAM, reported beside it).
    let probe_all = || -> Vec<Probe> {
        threads
            .iter()
            .map(|&t| Probe {
                working_set: probe::read_bandwidth_over(t, bytes_per_token),
                dram: probe::read_bandwidth_threads(t),
            })
            .collect()
    };
    let bw_before = probe_all();
    for (t, bw) in threads.iter().zip(&bw_before) {
        eprintln!(
            "vtc bench: sequential read bandwidth {:.2} GB/s over {:.1} MB (the weights per token), {:.2} GB/s over {} MiB (DRAM) ({t} thread{})",
            bw.working_set / 1e9,
            bytes_per_token as f64 / 1e6,
            bw.dram / 1e9,
            probe::PROBE_BYTES >> 20,
            if *t == 1 { "" } else { "s" }
        );
    }

    let mut rows = Vec::new();
    let mut runs: Vec<Box<dyn Backend>> = Vec::new();
    for &be in &backends {
        for &t in &threads {
            runs.push(if t == 1 {
                Box::new(be)
            } else {
                Box::new(vtc_kernels::Threaded::new(be, t)?)
            });
        }
    }
    for be in &runs {
        let mut session = Session::new(&model, be.as_ref(), longest.max(1))?;
        for &p in &args.prompts {
            let mut best: Option<Row> = None;
            for _ in 0..args.reps.max(1) {
                let r = run_pp(&mut session, p)?;
                if best.as_ref().is_none_or(|b| r.tok_s > b.tok_s) {
                    best = Some(r);
                }
            }
            rows.extend(best);
        }
        for &n in &args.gens {
            for &seqs in &args.seqs {
                let mut slots = match seqs {
                    0 | 1 => None,
                    _ => Some(Slots::new(&model, be.as_ref(), seqs, n.max(1))?),
                };
                let mut best: Option<Row> = None;
                for _ in 0..args.reps.max(1) {
                    let r = match &mut slots {
                        None => run_tg(&mut session, n)?,
                        Some(slots) => run_tg_slots(slots, n)?,
                    };
                    if best.as_ref().is_none_or(|b| r.tok_s > b.tok_s) {
                        best = Some(r);
                    }
                }
                rows.extend(best);
            }
        }
    }
    // Bandwidth again after the runs: the machine is shared, report both ends.
    let bw_after_all = probe_all();
    let probes = |t: usize| {
        let i = threads.iter().position(|&x| x == t).unwrap_or(0);
        (bw_before[i], bw_after_all[i])
    };
    for r in &rows {
        let (before, after) = probes(r.threads);
        // The limit uses the better of the two probes over the working set: a
        // conservative fraction on a shared, noisy machine. A prompt reads the weights
        // once per batch, so its limit is far higher (and its fraction says how little of
        // the bandwidth a compute-bound prefill uses).
        let bw = before.working_set.max(after.working_set);
        let bytes = bytes_per_token as f64 * r.weight_reads;
        let limit = bw / bytes;
        let frac = r.tok_s / limit;
        if args.json {
            println!(
                "{}",
                json!({
                    "model": path.display().to_string(),
                    "threads": r.threads,
                    "test": r.test,
                    "backend": r.backend,
                    "tok_s": r.tok_s,
                    "median_step_ms": r.median_ms,
                    "max_step_ms": r.max_ms,
                    "weight_bytes_per_token": bytes.round() as u64,
                    "bandwidth_gb_s": before.working_set / 1e9,
                    "bandwidth_after_gb_s": after.working_set / 1e9,
                    "bandwidth_dram_gb_s": before.dram.max(after.dram) / 1e9,
                    "limit_dram_tok_s": before.dram.max(after.dram) / bytes,
                    "limit_tok_s": limit,
                    "fraction_of_limit": frac,
                    "load_ms": load_ms,
                    "first_token_ms": first_token_ms,
                })
            );
        } else if r.weight_reads < 1.0 && r.test.starts_with("pp") {
            println!(
                "{:<8} {:<7} threads {}  {:>8.2} tok/s  per token {:>7.2} ms              {:>5.1}% of the bandwidth (weights read once per batch)",
                r.backend,
                r.test,
                r.threads,
                r.tok_s,
                r.median_ms,
                100.0 * frac,
            );
        } else {
            println!(
                "{:<8} {:<7} threads {}  {:>8.2} tok/s  step median {:>7.2} ms max {:>7.2} ms  {:>5.1}% of the bandwidth limit ({:.1} tok/s)",
                r.backend,
                r.test,
                r.threads,
                r.tok_s,
                r.median_ms,
                r.max_ms,
                100.0 * frac,
                limit
            );
        }
    }
    if !args.json {
        for &t in &threads {
            let (before, after) = probes(t);
            println!(
                "bandwidth ({t} thread(s)) over the weights per token {:.2} GB/s before, {:.2} GB/s after; DRAM ({} MiB) {:.2} / {:.2} GB/s",
                before.working_set / 1e9,
                after.working_set / 1e9,
                probe::PROBE_BYTES >> 20,
                before.dram / 1e9,
                after.dram / 1e9
            );
        }
        println!(
            "weights {:.1} MB/token; load {load_ms:.1} ms; first token {first_token_ms:.1} ms",
            bytes_per_token as f64 / 1e6
        );
    }
    Ok(())
}

fn first_token(model: &Model<'_>) -> u32 {
    model.tokenizer().bos_id().unwrap_or(0)
}

/// Deterministic pseudo-random prompt ids.
fn prompt_ids(n: usize, vocab: usize) -> Vec<u32> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab as u64) as u32
        })
        .collect()
}

fn stats(test: String, backend: &'static str, threads: usize, mut steps: Vec<f64>) -> Row {
    let total: f64 = steps.iter().sum();
    steps.sort_by(f64::total_cmp);
    Row {
        tok_s: steps.len() as f64 / total,
        median_ms: steps.get(steps.len() / 2).copied().unwrap_or(0.0) * 1e3,
        max_ms: steps.last().copied().unwrap_or(0.0) * 1e3,
        test,
        threads,
        backend,
        weight_reads: 1.0,
    }
}

fn run_pp<B: Backend>(s: &mut Session<'_, B>, p: usize) -> Result<Row, BoxError> {
    s.reset();
    let ids = prompt_ids(p, s.model().config().vocab_size);
    let t = Instant::now();
    s.prefill(&ids)?;
    let secs = t.elapsed().as_secs_f64();
    Ok(Row {
        test: format!("pp{p}"),
        threads: s.backend().threads(),
        backend: s.backend().name(),
        tok_s: p as f64 / secs,
        median_ms: secs / p as f64 * 1e3,
        max_ms: secs / p as f64 * 1e3,
        weight_reads: p.div_ceil(vtc_model::BATCH) as f64 / p as f64,
    })
}

fn run_tg<B: Backend>(s: &mut Session<'_, B>, n: usize) -> Result<Row, BoxError> {
    s.reset();
    let mut tok = first_token(s.model());
    let mut steps = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let logits = s.forward(tok)?;
        tok = argmax(logits);
        steps.push(t.elapsed().as_secs_f64());
    }
    let b = s.backend();
    Ok(stats(format!("tg{n}"), b.name(), b.threads(), steps))
}

/// `n` decode steps of `S` sequences together (`S = slots.slots()`), each step one
/// [`Slots::step`]; sequence `k` starts from a different token. Tokens per second are
/// the aggregate of all sequences.
fn run_tg_slots<B: Backend>(slots: &mut Slots<'_, B>, n: usize) -> Result<Row, BoxError> {
    let seqs = slots.slots();
    let vocab = slots.model().config().vocab_size;
    for k in 0..seqs {
        slots.truncate(k, 0);
    }
    let mut rows: Vec<(usize, u32)> = (0..seqs)
        .map(|k| {
            (
                k,
                (first_token(slots.model()) as usize + k) as u32 % vocab as u32,
            )
        })
        .collect();
    let mut steps = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        slots.step(&rows)?;
        for (i, row) in rows.iter_mut().enumerate() {
            row.1 = argmax(slots.logits(i));
        }
        steps.push(t.elapsed().as_secs_f64());
    }
    let b = slots.backend();
    let mut r = stats(format!("tg{n}x{seqs}"), b.name(), b.threads(), steps);
    r.tok_s *= seqs as f64;
    r.weight_reads = 1.0 / seqs as f64;
    Ok(r)
}
