//! Retry back-off: exponential with full jitter around a growing base, capped.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// How long to wait before attempt `n + 1` after attempt `n` failed.
///
/// The delay is `min(max, base * factor^(n-1))`, then jittered: a uniformly random value
/// in `[delay * (1 - jitter), delay]`, so replicas that failed together do not retry
/// together.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt (default 1 s).
    pub base: Duration,
    /// Growth per attempt (default 2).
    pub factor: f64,
    /// Upper bound (default 30 s).
    pub max: Duration,
    /// Fraction of the delay that is random, 0..=1 (default 0.5).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// The un-jittered delay after failed attempt `attempt` (1-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = if self.factor.is_finite() && self.factor >= 1.0 {
            self.factor
        } else {
            1.0
        };
        let secs = self.base.as_secs_f64() * factor.powi(exp);
        let max = self.max.as_secs_f64();
        if !secs.is_finite() || secs >= max {
            self.max
        } else {
            Duration::from_secs_f64(secs.max(0.0))
        }
    }

    /// The jittered delay after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let nominal = self.nominal(attempt);
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        if jitter == 0.0 || nominal.is_zero() {
            return nominal;
        }
        let low = 1.0 - jitter;
        let f: f64 = rand::rng().random_range(low..=1.0);
        nominal.mul_f64(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.nominal(1), Duration::from_secs(1));
        assert_eq!(p.nominal(2), Duration::from_secs(2));
        assert_eq!(p.nominal(5), Duration::from_secs(16));
        assert_eq!(p.nominal(6), Duration::from_secs(30));
        assert_eq!(p.nominal(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_the_band_and_varies() {
        let p = RetryPolicy::default();
        let samples: Vec<Duration> = (0..200).map(|_| p.delay(3)).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= Duration::from_secs(2) && *d <= Duration::from_secs(4))
        );
        let first = samples[0];
        assert!(samples.iter().any(|d| *d != first), "no jitter at all");
        let none = RetryPolicy { jitter: 0.0, ..p };
        assert_eq!(none.delay(3), Duration::from_secs(4));
    }
}
