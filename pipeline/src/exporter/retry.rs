use std::time::Duration;

use tokio::time::Instant;

use super::RetrySettings;

/// Exponential backoff with jitter and an overall time budget.
pub struct Backoff {
    enabled: bool,
    interval: Duration,
    max_interval: Duration,
    multiplier: f64,
    jitter: f64,
    give_up_at: Option<Instant>,
}

impl Backoff {
    pub fn new(settings: &RetrySettings) -> Self {
        let budget = settings.max_elapsed_time.0;
        Backoff {
            enabled: settings.enabled,
            interval: settings.initial_interval.0,
            max_interval: settings.max_interval.0,
            multiplier: settings.multiplier.max(1.0),
            jitter: settings.randomization_factor.clamp(0.0, 1.0),
            give_up_at: (!budget.is_zero()).then(|| Instant::now() + budget),
        }
    }

    /// How long to wait before the next attempt, or None to give up. A server's Retry-After
    /// replaces the computed wait but not the overall budget.
    pub fn next(&mut self, server_hint: Option<Duration>) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        let wait = server_hint.unwrap_or_else(|| {
            let spread = self.jitter * (2.0 * fastrand::f64() - 1.0);
            self.interval.mul_f64(1.0 + spread)
        });
        self.interval = self
            .interval
            .mul_f64(self.multiplier)
            .min(self.max_interval);
        if let Some(limit) = self.give_up_at
            && Instant::now() + wait > limit
        {
            return None;
        }
        Some(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::Duration as D;

    #[test]
    fn grows_to_the_cap_within_jitter_and_gives_up_after_budget() {
        let settings = RetrySettings {
            initial_interval: D(Duration::from_secs(1)),
            max_interval: D(Duration::from_secs(4)),
            max_elapsed_time: D(Duration::from_secs(20)),
            ..RetrySettings::default()
        };
        let mut b = Backoff::new(&settings);
        let expected = [1.0, 1.5, 2.25, 3.375, 4.0, 4.0];
        for want in expected {
            let got = b.next(None).unwrap().as_secs_f64();
            assert!(
                got >= want * 0.5 - 1e-9 && got <= want * 1.5 + 1e-9,
                "{got} vs {want}"
            );
        }
        assert_eq!(
            b.next(Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(b.next(Some(Duration::from_secs(60))), None);
    }
}
