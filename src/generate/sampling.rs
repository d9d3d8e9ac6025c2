//! Choosing the next token from logits: greedy, or sampled with temperature and
//! nucleus (top-p) truncation from a seeded generator (the same seed gives the
//! same text).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampling {
    /// The most likely token (the first on ties).
    Greedy,
    /// Drawn from softmax(logits / temperature), keeping the smallest set of most
    /// likely tokens whose probability reaches `top_p`.
    Sample {
        /// Softmax temperature (> 0).
        temperature: f32,
        /// Nucleus mass in (0, 1].
        top_p: f32,
        /// Seed of the generator.
        seed: u64,
    },
}

/// Picks tokens by a [`Sampling`] rule.
pub struct Sampler {
    rule: Sampling,
    rng: StdRng,
}

impl Sampler {
    /// A sampler for `rule`.
    pub fn new(rule: Sampling) -> Sampler {
        let seed = match rule {
            Sampling::Sample { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Sampler {
            rule,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The next token for `logits`.
    pub fn pick(&mut self, logits: &[f32]) -> u32 {
        match self.rule {
            Sampling::Greedy => argmax(logits),
            Sampling::Sample {
                temperature, top_p, ..
            } => {
                if temperature <= 0.0 {
                    return argmax(logits);
                }
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut probs: Vec<(u32, f64)> = logits
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (i as u32, (((l - max) / temperature) as f64).exp()))
                    .collect();
                probs.sort_by(|a, b| b.1.total_cmp(&a.1));
                let total: f64 = probs.iter().map(|p| p.1).sum();
                let mut kept = 0;
                let mut mass = 0.0;
                for p in &probs {
                    mass += p.1 / total;
                    kept += 1;
                    if mass >= top_p as f64 {
                        break;
                    }
                }
                probs.truncate(kept.max(1));
                let kept_total: f64 = probs.iter().map(|p| p.1).sum();
                let mut r = self.rng.random::<f64>() * kept_total;
                for &(id, p) in &probs {
                    if r < p {
                        return id;
                    }
                    r -= p;
                }
                probs.last().map_or(0, |p| p.0)
            }
        }
    }
}

/// The index of the largest logit (the first on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_p() {
        let logits = [5.0, 4.9, -10.0, -10.0];
        let rule = Sampling::Sample {
            temperature: 1.0,
            top_p: 0.9,
            seed: 7,
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(rule.clone());
            (0..50).map(|_| s.pick(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(rule);
            (0..50).map(|_| s.pick(&logits)).collect()
        };
        assert_eq!(a, b);
        assert!(
            a.iter().all(|&t| t < 2),
            "tokens outside the nucleus: {a:?}"
        );
        assert!(a.contains(&0) && a.contains(&1));
    }
}
