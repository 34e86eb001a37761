//! Choosing the next token from logits: greedy, or temperature with top-k and top-p
//! (nucleus) filtering, driven by a seeded generator so runs are reproducible.

/// Sampling settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `<= 0` means greedy (argmax).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 = no limit.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`;
    /// `>= 1` = no limit.
    pub top_p: f32,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0x5eed,
        }
    }
}

/// SplitMix64: tiny, fast, statistically sound for sampling, and the same sequence on
/// every platform.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A sampler with its own random state and scratch buffer (reused across steps).
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    cand: Vec<(f32, u32)>,
}

/// Index of the largest value (the first one on ties; NaN never wins). 0 for an empty
/// slice.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

impl Sampler {
    /// A sampler with these settings.
    pub fn new(cfg: SamplerConfig) -> Self {
        Self {
            cfg,
            rng: Rng(cfg.seed),
            cand: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Pick a token id from `logits`.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let t = self.cfg.temperature;
        // `t > 0` is false for NaN too: anything but a positive temperature is greedy.
        if t.is_nan() || t <= 0.0 || logits.is_empty() {
            return argmax(logits);
        }
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_nan())
                .map(|(i, &v)| (v, i as u32)),
        );
        if self.cand.is_empty() {
            return 0;
        }
        let desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        let k = self.cfg.top_k;
        if k > 0 && k < self.cand.len() {
            self.cand.select_nth_unstable_by(k - 1, desc);
            self.cand.truncate(k);
        }
        self.cand.sort_unstable_by(desc);
        // Probabilities in f64 relative to the max (stable for any temperature).
        let max = self.cand[0].0 as f64;
        let inv_t = 1.0 / t as f64;
        let weights = self
            .cand
            .iter()
            .map(|&(v, _)| ((v as f64 - max) * inv_t).exp());
        let total: f64 = weights.clone().sum();
        let mut n = self.cand.len();
        if self.cfg.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, wt) in weights.clone().enumerate() {
                acc += wt / total;
                if acc >= self.cfg.top_p as f64 {
                    n = i + 1;
                    break;
                }
            }
        }
        let kept: f64 = weights.clone().take(n).sum();
        let mut r = self.rng.next_f64() * kept;
        for (i, wt) in weights.take(n).enumerate() {
            r -= wt;
            if r < 0.0 {
                return self.cand[i].1;
            }
        }
        self.cand[n - 1].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::default());
        assert_eq!(s.sample(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(s.sample(&[f32::NAN, 0.5]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let cfg = SamplerConfig {
            temperature: 1.0,
            seed: 42,
            ..Default::default()
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg);
            (0..50).map(|_| s.sample(&logits)).collect()
        };
        let mut s = Sampler::new(cfg);
        let b: Vec<u32> = (0..50).map(|_| s.sample(&logits)).collect();
        assert_eq!(a, b);
        assert!(a.iter().any(|&t| t != a[0]), "temperature 1 should vary");
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let logits = [0.0f32, 5.0, 4.9, 1.0, 4.8];
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 2,
            ..Default::default()
        });
        for _ in 0..200 {
            assert!(matches!(s.sample(&logits), 1 | 2));
        }
        // Token 1 alone holds < 50%, tokens 1 and 2 together hold > 50%.
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        });
        let mut seen = [0usize; 5];
        for _ in 0..400 {
            seen[s.sample(&logits) as usize] += 1;
        }
        assert_eq!(seen[0] + seen[3] + seen[4], 0);
        assert!(seen[1] > 0 && seen[2] > 0);
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // p = softmax([0, ln 3]) = [0.25, 0.75].
        let logits = [0.0f32, 3f32.ln()];
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            seed: 7,
            ..Default::default()
        });
        let ones = (0..20000).filter(|_| s.sample(&logits) == 1).count();
        let frac = ones as f64 / 20000.0;
        assert!((frac - 0.75).abs() < 0.02, "got {frac}");
    }
}
