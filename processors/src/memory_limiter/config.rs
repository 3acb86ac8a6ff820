//! `processors: memory_limiter:` with the OTel Collector's keys, and the limits they resolve to.

use std::time::Duration as StdDuration;

use serde::Deserialize;
use sluice_config::Duration;

const MIB: u64 = 1024 * 1024;

/// `processors: memory_limiter:`. Exactly one of `limit_mib` and `limit_percentage` is set
/// (0 counts as unset, as in the OTel Collector).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimiterConfig {
    /// How often the process's resident memory is measured (default 1s; at least every
    /// 100ms whatever this says, see the memory limiter's documentation). Refused clients are
    /// told to retry after this long (at least 1s).
    pub check_interval: Duration,
    /// Hard limit on the process's resident memory, in MiB.
    pub limit_mib: u64,
    /// Headroom kept below the hard limit for bursts, in MiB (default 20% of `limit_mib`).
    /// New data is refused above `limit_mib - spike_limit_mib` (the soft limit); it is also
    /// the in-flight byte budget of the receivers.
    pub spike_limit_mib: u64,
    /// Hard limit as a percentage of the memory available: the cgroup's memory limit when
    /// one is set, else physical memory.
    pub limit_percentage: u64,
    /// Headroom as a percentage of the memory available (default 20% of the hard limit).
    pub spike_limit_percentage: u64,
}

impl Default for MemoryLimiterConfig {
    fn default() -> Self {
        MemoryLimiterConfig {
            check_interval: Duration(StdDuration::from_secs(1)),
            limit_mib: 0,
            spike_limit_mib: 0,
            limit_percentage: 0,
            spike_limit_percentage: 0,
        }
    }
}

/// The limits in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub hard: u64,
    pub spike: u64,
}

impl Limits {
    /// Above this, new data is refused.
    pub fn soft(&self) -> u64 {
        self.hard - self.spike
    }
}

/// A configuration problem: the key at fault and what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid {
    pub key: &'static str,
    pub message: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        key,
        message: message.into(),
    }
}

impl MemoryLimiterConfig {
    /// The limits this configuration means; `available` is asked for the memory available
    /// (bytes) only when percentages are used.
    pub fn limits(&self, available: impl FnOnce() -> Option<u64>) -> Result<Limits, Invalid> {
        if self.check_interval.0.is_zero() {
            return Err(invalid("check_interval", "must be greater than 0"));
        }
        let (mib, pct) = (self.limit_mib, self.limit_percentage);
        if mib == 0 && pct == 0 {
            return Err(invalid(
                "limit_mib",
                "set `limit_mib` or `limit_percentage` (the memory limit is required)",
            ));
        }
        if mib > 0 && pct > 0 {
            return Err(invalid(
                "limit_percentage",
                "set either `limit_mib` or `limit_percentage`, not both",
            ));
        }
        if mib > 0 {
            if self.spike_limit_percentage > 0 {
                return Err(invalid(
                    "spike_limit_percentage",
                    "goes with `limit_percentage`; with `limit_mib` use `spike_limit_mib`",
                ));
            }
            let spike = if self.spike_limit_mib > 0 {
                self.spike_limit_mib
            } else {
                mib / 5
            };
            if spike >= mib {
                return Err(invalid(
                    "spike_limit_mib",
                    format!("{spike} must be smaller than limit_mib ({mib})"),
                ));
            }
            let hard = mib.saturating_mul(MIB);
            let spike = if self.spike_limit_mib > 0 {
                spike.saturating_mul(MIB)
            } else {
                hard / 5
            };
            return Ok(Limits { hard, spike });
        }
        if self.spike_limit_mib > 0 {
            return Err(invalid(
                "spike_limit_mib",
                "goes with `limit_mib`; with `limit_percentage` use `spike_limit_percentage`",
            ));
        }
        if pct > 100 {
            return Err(invalid(
                "limit_percentage",
                format!("{pct} is more than 100"),
            ));
        }
        if self.spike_limit_percentage >= pct {
            return Err(invalid(
                "spike_limit_percentage",
                format!(
                    "{} must be smaller than limit_percentage ({pct})",
                    self.spike_limit_percentage
                ),
            ));
        }
        let Some(total) = available() else {
            return Err(invalid(
                "limit_percentage",
                "the memory available is unknown (no cgroup limit and no /proc/meminfo); use limit_mib",
            ));
        };
        let hard = total / 100 * pct;
        let spike = if self.spike_limit_percentage > 0 {
            total / 100 * self.spike_limit_percentage
        } else {
            hard / 5
        };
        Ok(Limits { hard, spike })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(limit_mib: u64, spike_mib: u64, pct: u64, spike_pct: u64) -> MemoryLimiterConfig {
        MemoryLimiterConfig {
            limit_mib,
            spike_limit_mib: spike_mib,
            limit_percentage: pct,
            spike_limit_percentage: spike_pct,
            ..Default::default()
        }
    }

    #[test]
    fn limits_in_mib_and_in_percent_with_their_defaults() {
        let gib = 1024 * MIB;
        assert_eq!(
            cfg(200, 0, 0, 0).limits(|| None).unwrap(),
            Limits {
                hard: 200 * MIB,
                spike: 40 * MIB
            }
        );
        assert_eq!(
            cfg(200, 50, 0, 0).limits(|| None).unwrap(),
            Limits {
                hard: 200 * MIB,
                spike: 50 * MIB
            }
        );
        let l = cfg(0, 0, 80, 0).limits(|| Some(10 * gib)).unwrap();
        assert_eq!(l.hard, 10 * gib / 100 * 80);
        assert_eq!(l.spike, l.hard / 5);
        let l = cfg(0, 0, 80, 25).limits(|| Some(10 * gib)).unwrap();
        assert_eq!(l.spike, 10 * gib / 100 * 25);
        assert_eq!(l.soft(), l.hard - l.spike);
    }

    #[test]
    fn contradictions_name_the_key() {
        let key = |c: MemoryLimiterConfig| c.limits(|| Some(1 << 30)).unwrap_err().key;
        assert_eq!(key(cfg(0, 0, 0, 0)), "limit_mib");
        assert_eq!(key(cfg(100, 0, 50, 0)), "limit_percentage");
        assert_eq!(key(cfg(100, 100, 0, 0)), "spike_limit_mib");
        assert_eq!(key(cfg(100, 0, 0, 10)), "spike_limit_percentage");
        assert_eq!(key(cfg(0, 10, 50, 0)), "spike_limit_mib");
        assert_eq!(key(cfg(0, 0, 101, 0)), "limit_percentage");
        assert_eq!(key(cfg(0, 0, 50, 50)), "spike_limit_percentage");
        let mut zero = cfg(100, 0, 0, 0);
        zero.check_interval = Duration(StdDuration::ZERO);
        assert_eq!(key(zero), "check_interval");
        assert_eq!(
            cfg(0, 0, 50, 0).limits(|| None).unwrap_err().key,
            "limit_percentage"
        );
    }
}
