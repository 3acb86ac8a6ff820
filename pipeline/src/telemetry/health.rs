use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Instant, SystemTime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthState {
    Starting,
    Ready,
    Draining,
}

/// The collector's readiness, shared by the runtime (which sets it) and the health endpoint.
#[derive(Clone)]
pub struct Health {
    state: Arc<AtomicU8>,
    since: Arc<(SystemTime, Instant)>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: Arc::new(AtomicU8::new(0)),
            since: Arc::new((SystemTime::now(), Instant::now())),
        }
    }
}

impl Health {
    pub fn set(&self, state: HealthState) {
        let value = match state {
            HealthState::Starting => 0,
            HealthState::Ready => 1,
            HealthState::Draining => 2,
        };
        self.state.store(value, Ordering::SeqCst);
    }

    pub fn get(&self) -> HealthState {
        match self.state.load(Ordering::SeqCst) {
            1 => HealthState::Ready,
            2 => HealthState::Draining,
            _ => HealthState::Starting,
        }
    }

    /// When the process started, RFC 3339 in UTC (the Collector's `upSince`).
    pub fn up_since(&self) -> String {
        let secs = self
            .since
            .0
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        rfc3339(secs)
    }

    /// How long it has run, as a Go duration string (the Collector's `uptime`).
    pub fn uptime(&self) -> String {
        format!("{:.3}s", self.since.1.elapsed().as_secs_f64())
    }
}

/// Seconds since the epoch as `2024-05-01T12:00:00Z`.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), valid for every date after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }
}
