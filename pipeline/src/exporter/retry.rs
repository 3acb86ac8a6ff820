use std::time::Duration;

use tokio::time::Instant;

use super::RetrySettings;

/// The longest wait a destination's Retry-After/RetryInfo can impose.
const MAX_SERVER_HINT: Duration = Duration::from_secs(3600);

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
        // NaN or absurd factors from a config must not panic the duration arithmetic.
        let multiplier = if settings.multiplier.is_finite() {
            settings.multiplier.clamp(1.0, 100.0)
        } else {
            1.5
        };
        let jitter = if settings.randomization_factor.is_finite() {
            settings.randomization_factor.clamp(0.0, 1.0)
        } else {
            0.5
        };
        Backoff {
            enabled: settings.enabled,
            interval: settings.initial_interval.0,
            max_interval: settings.max_interval.0,
            multiplier,
            jitter,
            give_up_at: (!budget.is_zero())
                .then(|| Instant::now().checked_add(budget))
                .flatten(),
        }
    }

    /// How long to wait before the next attempt, or None to give up. A server's Retry-After
    /// replaces the computed wait but not the overall budget.
    pub fn next(&mut self, server_hint: Option<Duration>) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        // A server's hint is untrusted: `Retry-After: 18446744073709551615` must not overflow.
        let wait = match server_hint {
            Some(hint) => hint.min(MAX_SERVER_HINT),
            None => {
                let spread = self.jitter * (2.0 * fastrand::f64() - 1.0);
                Duration::try_from_secs_f64(self.interval.as_secs_f64() * (1.0 + spread))
                    .unwrap_or(self.max_interval)
            }
        };
        self.interval = Duration::try_from_secs_f64(self.interval.as_secs_f64() * self.multiplier)
            .unwrap_or(self.max_interval)
            .min(self.max_interval);
        if let Some(limit) = self.give_up_at {
            match Instant::now().checked_add(wait) {
                Some(at) if at <= limit => {}
                _ => return None,
            }
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

    #[test]
    fn hostile_hints_and_factors_do_not_panic() {
        let settings = RetrySettings {
            multiplier: f64::NAN,
            randomization_factor: f64::INFINITY,
            max_elapsed_time: D(Duration::ZERO),
            ..RetrySettings::default()
        };
        let mut b = Backoff::new(&settings);
        assert_eq!(
            b.next(Some(Duration::from_secs(u64::MAX))),
            Some(MAX_SERVER_HINT)
        );
        assert!(b.next(None).is_some());
        let mut budgeted = Backoff::new(&RetrySettings::default());
        assert_eq!(budgeted.next(Some(Duration::MAX)), None);
    }
}
