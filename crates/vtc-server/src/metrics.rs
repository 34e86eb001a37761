//! Counters, gauges and histograms, written out in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    /// Record one observation of `secs` seconds.
    pub fn observe(&self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((secs * 1e6).max(0.0) as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// The server's metrics (shared by the HTTP layer and the engine thread).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests answered, by (endpoint, status).
    pub requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Prompt tokens admitted.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens taken from a slot's cache instead of being prefilled.
    pub reused_tokens: AtomicU64,
    /// Tokens generated.
    pub completion_tokens: AtomicU64,
    /// Engine steps that ran prompt tokens.
    pub prefill_steps: AtomicU64,
    /// Engine steps that ran prompt tokens beside other slots' decode tokens.
    pub mixed_steps: AtomicU64,
    /// Slots running a request.
    pub active_slots: AtomicI64,
    /// Requests waiting for a slot.
    pub queue_len: AtomicI64,
    /// Time from queueing a request to its first token.
    pub ttft: Histogram,
    /// Time between consecutive tokens of a request.
    pub itl: Histogram,
}

impl Metrics {
    /// Count a request to `endpoint` answered with `status`.
    pub fn request(&self, endpoint: &str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((endpoint.to_string(), status)).or_default() += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP vtc_requests_total HTTP requests answered, by endpoint and status.\n\
             # TYPE vtc_requests_total counter\n",
        );
        {
            let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            for ((endpoint, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "vtc_requests_total{{endpoint=\"{}\",status=\"{status}\"}} {n}",
                    endpoint.replace('\\', "\\\\").replace('"', "\\\"")
                );
            }
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "vtc_prompt_tokens_total",
            "Prompt tokens admitted.",
            ld(&self.prompt_tokens),
        );
        counter(
            &mut out,
            "vtc_prompt_tokens_reused_total",
            "Prompt tokens served from a slot's cache.",
            ld(&self.reused_tokens),
        );
        counter(
            &mut out,
            "vtc_completion_tokens_total",
            "Tokens generated.",
            ld(&self.completion_tokens),
        );
        counter(
            &mut out,
            "vtc_prefill_steps_total",
            "Engine steps that ran prompt tokens.",
            ld(&self.prefill_steps),
        );
        counter(
            &mut out,
            "vtc_mixed_steps_total",
            "Engine steps that ran prompt tokens beside other requests' decode tokens.",
            ld(&self.mixed_steps),
        );
        gauge(
            &mut out,
            "vtc_active_slots",
            "Slots running a request.",
            self.active_slots.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "vtc_queue_length",
            "Requests waiting for a slot.",
            self.queue_len.load(Ordering::Relaxed).max(0),
        );
        self.ttft.write(
            &mut out,
            "vtc_time_to_first_token_seconds",
            "Time from queueing a request to its first token.",
        );
        self.itl.write(
            &mut out,
            "vtc_inter_token_latency_seconds",
            "Time between consecutive tokens of a request.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.ttft.observe(0.003);
        m.ttft.observe(0.2);
        m.ttft.observe(100.0);
        m.request("/v1/models", 200);
        m.request("/v1/models", 200);
        let text = m.render();
        assert!(text.contains("vtc_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("vtc_time_to_first_token_seconds_bucket{le=\"0.25\"} 2\n"));
        assert!(text.contains("vtc_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("vtc_time_to_first_token_seconds_count 3\n"));
        assert!(text.contains("vtc_requests_total{endpoint=\"/v1/models\",status=\"200\"} 2\n"));
    }
}
