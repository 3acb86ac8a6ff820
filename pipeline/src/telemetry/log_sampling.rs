//! zap's log sampler, as the OTel Collector's `logs.sampling` and the debug exporter's
//! `sampling_initial` / `sampling_thereafter` use it: of the lines with one key (message and
//! level) within each tick, the first `initial` are written, then every `thereafter`-th.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Sampler {
    tick: Duration,
    initial: u64,
    thereafter: u64,
    counts: Mutex<HashMap<u64, (Instant, u64)>>,
}

/// Keys kept at most; past this the oldest ticks are forgotten, so a stream of distinct
/// messages cannot grow the table without bound.
const MAX_KEYS: usize = 4096;

impl Sampler {
    /// `thereafter` 0 drops every line past `initial` in a tick.
    pub fn new(tick: Duration, initial: u64, thereafter: u64) -> Sampler {
        Sampler {
            tick,
            initial,
            thereafter,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the next line with `key` is written.
    pub fn allow(&self, key: u64) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: u64, now: Instant) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_KEYS && !counts.contains_key(&key) {
            let tick = self.tick;
            counts.retain(|_, (start, _)| now.duration_since(*start) < tick);
            if counts.len() >= MAX_KEYS {
                counts.clear();
            }
        }
        let (start, n) = counts.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= self.tick {
            *start = now;
            *n = 0;
        }
        *n += 1;
        if *n <= self.initial {
            return true;
        }
        self.thereafter > 0 && (*n - self.initial).is_multiple_of(self.thereafter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_initial_then_every_thereafter_per_tick() {
        let s = Sampler::new(Duration::from_secs(1), 2, 3);
        let t = Instant::now();
        let written: Vec<bool> = (0..8).map(|_| s.allow_at(1, t)).collect();
        assert_eq!(
            written,
            [true, true, false, false, true, false, false, true]
        );
        // Another key has its own count; a new tick starts over.
        assert!(s.allow_at(2, t));
        assert!(s.allow_at(1, t + Duration::from_secs(1)));
        assert!(s.allow_at(1, t + Duration::from_secs(1)));
        let none = Sampler::new(Duration::from_secs(1), 1, 0);
        assert!(none.allow_at(1, t));
        assert!(!(0..100).any(|_| none.allow_at(1, t)));
    }
}
