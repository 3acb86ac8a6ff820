//! Rate-limited logging for events a remote peer can cause at will (failed handshakes, broken
//! requests, connections over a limit): one line per cause per interval, so a flood of them
//! cannot flood the log or spend the CPU writing it. Each line that does get through says how
//! many of its kind were held back before it, and the held-back lines are counted in
//! `sluice_log_lines_suppressed_total{<the component's labels>, cause}` when a metrics registry
//! is given.
//!
//! ```
//! use sluice_pipeline::telemetry::{DEFAULT_LOG_INTERVAL, LogLimiter};
//!
//! let limiter = LogLimiter::new(DEFAULT_LOG_INTERVAL);
//! if let Some(suppressed) = limiter.allow("tls_handshake") {
//!     tracing::warn!(suppressed, "TLS handshake failed");
//! }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Counter, MetricsRegistry};

/// How often a line of one cause may be written, unless told otherwise.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One line per cause per interval; see the module documentation.
pub struct LogLimiter {
    interval: Duration,
    metrics: Option<SuppressedCounts>,
    causes: Mutex<HashMap<&'static str, Window>>,
}

/// Where held-back lines are counted, and the labels naming the component.
struct SuppressedCounts {
    registry: Arc<MetricsRegistry>,
    labels: Vec<(String, String)>,
}

struct Window {
    /// When the last line of this cause was written.
    written: Instant,
    /// Lines held back since then.
    suppressed: u64,
    counter: Counter,
}

impl LogLimiter {
    /// A limiter that lets one line per cause through every `interval`.
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            metrics: None,
            causes: Mutex::new(HashMap::new()),
        }
    }

    /// Like [`LogLimiter::new`], counting the lines held back in `metrics`, in series with
    /// `labels` (which name the component, e.g. `[("receiver", "otlp")]`) and `cause`.
    pub fn counted(
        interval: Duration,
        metrics: &Arc<MetricsRegistry>,
        labels: &[(&str, &str)],
    ) -> LogLimiter {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LogLimiter {
            metrics: Some(SuppressedCounts {
                registry: metrics.clone(),
                labels,
            }),
            ..LogLimiter::new(interval)
        }
    }

    /// Whether a line of `cause` may be written now: `Some(n)` with the number of lines of that
    /// cause held back since the last one written, or `None` to leave this one out.
    pub fn allow(&self, cause: &'static str) -> Option<u64> {
        self.allow_at(cause, Instant::now())
    }

    fn allow_at(&self, cause: &'static str, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked while logging: logging goes on.
        let mut causes = self.causes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(window) = causes.get_mut(cause) else {
            let counter = self.counter(cause);
            causes.insert(
                cause,
                Window {
                    written: now,
                    suppressed: 0,
                    counter,
                },
            );
            return Some(0);
        };
        if now.saturating_duration_since(window.written) >= self.interval {
            window.written = now;
            return Some(std::mem::take(&mut window.suppressed));
        }
        window.suppressed += 1;
        window.counter.add(1);
        None
    }

    fn counter(&self, cause: &str) -> Counter {
        let Some(counts) = &self.metrics else {
            return Counter::default();
        };
        let mut series: Vec<(&str, &str)> = counts
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        series.push(("cause", cause));
        counts.registry.counter(
            "sluice_log_lines_suppressed",
            "Log lines left out by rate limiting (one line per cause per interval is written)",
            &series,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_cause_per_interval_with_the_count_of_those_left_out() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(limiter.allow_at("accept", at(0)), Some(0));
        for s in 0..10 {
            assert_eq!(limiter.allow_at("accept", at(s)), None);
        }
        // Another cause has its own window.
        assert_eq!(limiter.allow_at("tls", at(5)), Some(0));
        assert_eq!(limiter.allow_at("tls", at(6)), None);
        // The next line of a cause reports what was held back, and starts a new window.
        assert_eq!(limiter.allow_at("accept", at(10)), Some(10));
        assert_eq!(limiter.allow_at("accept", at(11)), None);
        assert_eq!(limiter.allow_at("accept", at(25)), Some(1));
        assert_eq!(limiter.allow_at("tls", at(16)), Some(1));
    }

    #[test]
    fn lines_left_out_are_counted_per_component_and_cause() {
        let metrics = Arc::new(MetricsRegistry::default());
        let limiter = LogLimiter::counted(
            Duration::from_secs(10),
            &metrics,
            &[("receiver", "otlp/in"), ("transport", "grpc")],
        );
        let start = Instant::now();
        for _ in 0..5 {
            limiter.allow_at("tls_handshake", start);
        }
        limiter.allow_at("accept", start);
        let text = metrics.render();
        assert!(
            text.contains(
                "sluice_log_lines_suppressed_total{receiver=\"otlp/in\",transport=\"grpc\",cause=\"tls_handshake\"} 4\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_log_lines_suppressed_total{receiver=\"otlp/in\",transport=\"grpc\",cause=\"accept\"} 0\n"
            ),
            "{text}"
        );
    }
}
