//! How many spans one sampled span stands for: the OpenTelemetry sampling threshold in the W3C
//! `tracestate` (`ot=th:<hex>`) gives the adjusted count `2^56 / (2^56 - threshold)`. Counts
//! with a fraction are rounded up or down at random in proportion, so totals stay unbiased,
//! as the OTel Collector's spanmetrics connector counts them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// 2^56: thresholds are 56-bit.
const MAX_THRESHOLD: f64 = 72_057_594_037_927_936.0;

/// The adjusted count of a span with this `tracestate`, or `None` when it carries no
/// sampling threshold (the span then counts once, as "counted").
pub fn adjusted_count(trace_state: &str) -> Option<f64> {
    let ot = trace_state.split(',').find_map(|member| {
        let (key, value) = member.trim().split_once('=')?;
        (key == "ot").then_some(value)
    })?;
    let th = ot.split(';').find_map(|field| field.strip_prefix("th:"))?;
    if th.is_empty() || th.len() > 14 || !th.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    // Trailing zeros may be left off: the digits are the most significant ones.
    let threshold = u64::from_str_radix(th, 16).ok()? << (4 * (14 - th.len()));
    Some(MAX_THRESHOLD / (MAX_THRESHOLD - threshold as f64))
}

/// A small, fast generator for the rounding: quality matters little, speed and no locking do.
pub struct Rounding(u64);

impl Rounding {
    pub fn new() -> Self {
        // The standard library seeds `RandomState` from the operating system.
        let seed = RandomState::new().build_hasher().finish();
        Rounding(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 12;
        x ^= x >> 25;
        x ^= x << 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `weight` as a whole count: its floor, plus one with the probability of its fraction.
    pub fn count(&mut self, weight: f64) -> u64 {
        let floor = weight.floor();
        let fraction = weight - floor;
        let whole = floor as u64;
        if fraction <= 0.0 {
            return whole;
        }
        let threshold = (fraction * u64::MAX as f64) as u64;
        whole + u64::from(self.next() < threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_give_adjusted_counts() {
        assert_eq!(adjusted_count(""), None);
        assert_eq!(adjusted_count("vendor=x"), None);
        assert_eq!(adjusted_count("ot=rv:abc"), None);
        assert_eq!(adjusted_count("ot=th:0"), Some(1.0));
        // Half of the randomness space rejected: each kept span stands for two.
        assert_eq!(adjusted_count("ot=th:8"), Some(2.0));
        assert_eq!(adjusted_count("a=b, ot=p:8;th:c;rv:1"), Some(4.0));
        assert_eq!(adjusted_count("ot=th:zz"), None);
        assert_eq!(adjusted_count("ot=th:123456789abcdef"), None);
    }

    #[test]
    fn rounding_keeps_totals_unbiased() {
        let mut r = Rounding::new();
        assert_eq!(r.count(3.0), 3);
        let total: u64 = (0..10_000).map(|_| r.count(1.5)).sum();
        assert!((14_000..=16_000).contains(&total), "{total}");
    }
}
