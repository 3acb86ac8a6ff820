//! Turning data points into the number a rule compares: rates of counters, histogram means
//! and percentiles.
//!
//! Cumulative data is evaluated over the interval between consecutive points of a series, so
//! an alert reflects what happened recently rather than since the process started: a counter's
//! rate is Δvalue / Δtime, a cumulative histogram's mean and percentiles come from the bucket
//! differences. The first point of a cumulative histogram (or the first after a reset) is
//! evaluated over its whole start..time window; a counter needs two points.

use super::config::{Direction, ValueKind};

const NANOS: f64 = 1e9;

#[derive(Clone, Debug, PartialEq)]
pub struct Hist {
    pub count: u64,
    pub sum: Option<f64>,
    pub bounds: Vec<f64>,
    pub buckets: Vec<u64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// One data point as far as a rule cares.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    Gauge(f64),
    Sum {
        value: f64,
        monotonic: bool,
        cumulative: bool,
        start: u64,
    },
    Hist {
        hist: Hist,
        cumulative: bool,
        start: u64,
    },
}

impl Raw {
    /// Folds another point of the same series and time into this one (a `group_by` that
    /// leaves several points in one series): counters and histograms add up, so rates and
    /// percentiles cover the whole group; gauges keep the worst value for the rule.
    pub fn combine(&mut self, other: Raw, direction: Option<Direction>) {
        match (self, other) {
            (Raw::Gauge(a), Raw::Gauge(b)) => {
                *a = match direction {
                    Some(Direction::Below) => a.min(b),
                    _ => a.max(b),
                }
            }
            (Raw::Sum { value: a, .. }, Raw::Sum { value: b, .. }) => *a += b,
            (Raw::Hist { hist: a, .. }, Raw::Hist { hist: b, .. })
                if a.bounds == b.bounds && a.buckets.len() == b.buckets.len() =>
            {
                a.count += b.count;
                a.sum = a.sum.zip(b.sum).map(|(x, y)| x + y);
                for (x, y) in a.buckets.iter_mut().zip(&b.buckets) {
                    *x += y;
                }
                a.min = a.min.zip(b.min).map(|(x, y)| x.min(y));
                a.max = a.max.zip(b.max).map(|(x, y)| x.max(y));
            }
            // Different shapes cannot be merged meaningfully: keep the first.
            _ => {}
        }
    }
}

/// The value of `raw` at `time`, given the series' previous point; `None` when this point
/// yields no value (first point of a counter, a counter reset, a histogram with no new
/// observations, a kind the rule's `value` does not apply to).
pub fn compute(kind: ValueKind, raw: &Raw, time: u64, prev: Option<&(u64, Raw)>) -> Option<f64> {
    let v = match (kind, raw) {
        (ValueKind::Auto | ValueKind::Last, Raw::Gauge(v)) => Some(*v),
        (ValueKind::Rate, Raw::Gauge(v)) => match prev {
            Some((pt, Raw::Gauge(pv))) if time > *pt => Some((v - pv) / secs(time - pt)),
            _ => None,
        },
        (ValueKind::Last, Raw::Sum { value, .. }) => Some(*value),
        (
            ValueKind::Auto,
            Raw::Sum {
                value,
                monotonic: false,
                cumulative: true,
                ..
            },
        ) => Some(*value),
        (
            ValueKind::Auto | ValueKind::Rate,
            Raw::Sum {
                value,
                cumulative: false,
                start,
                ..
            },
        ) => (*start > 0 && time > *start).then(|| value / secs(time - start)),
        (
            ValueKind::Auto | ValueKind::Rate,
            Raw::Sum {
                value,
                monotonic,
                cumulative: true,
                start,
            },
        ) => match prev {
            Some((
                pt,
                Raw::Sum {
                    value: pv,
                    start: pstart,
                    ..
                },
            )) if time > *pt => {
                let restarted = *start != 0 && *pstart != 0 && start != pstart;
                if *monotonic && (value < pv || restarted) {
                    // A counter reset: the interval spans the restart, so it says nothing.
                    None
                } else {
                    Some((value - pv) / secs(time - pt))
                }
            }
            _ => None,
        },
        (ValueKind::Auto | ValueKind::Mean, Raw::Hist { .. }) => {
            let w = window(raw, prev)?;
            w.sum.map(|s| s / w.count as f64)
        }
        (ValueKind::Quantile(q), Raw::Hist { .. }) => quantile(&window(raw, prev)?, q),
        _ => None,
    };
    v.filter(|v| v.is_finite())
}

fn secs(nanos: u64) -> f64 {
    nanos as f64 / NANOS
}

/// The observations a histogram point adds: the difference from the previous cumulative
/// point when the two line up, otherwise the point itself. `None` when there are none.
fn window(raw: &Raw, prev: Option<&(u64, Raw)>) -> Option<Hist> {
    let Raw::Hist {
        hist,
        cumulative,
        start,
    } = raw
    else {
        return None;
    };
    let mut w = hist.clone();
    if *cumulative
        && let Some((
            _,
            Raw::Hist {
                hist: p,
                cumulative: true,
                start: pstart,
            },
        )) = prev
        && (start == pstart || *start == 0 || *pstart == 0)
        && p.bounds == hist.bounds
        && p.buckets.len() == hist.buckets.len()
        && p.count <= hist.count
        && p.buckets.iter().zip(&hist.buckets).all(|(a, b)| a <= b)
    {
        w.count = hist.count - p.count;
        w.sum = hist.sum.zip(p.sum).map(|(a, b)| a - b);
        for (b, pb) in w.buckets.iter_mut().zip(&p.buckets) {
            *b -= pb;
        }
        // Extremes are of the whole lifetime, not of this interval.
        w.min = None;
        w.max = None;
    }
    (w.count > 0).then_some(w)
}

/// The `q` quantile, interpolating linearly inside the bucket it falls in. The open-ended
/// first and last buckets are bounded by the point's min and max when present, otherwise
/// by 0 (for a positive first bound) and by the last bound, as Prometheus does.
pub fn quantile(h: &Hist, q: f64) -> Option<f64> {
    let total: u64 = h.buckets.iter().sum();
    if total == 0 || h.buckets.len() != h.bounds.len() + 1 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in h.buckets.iter().enumerate() {
        if n == 0 || ((below + n) as f64) < rank {
            below += n;
            continue;
        }
        let upper = match h.bounds.get(i) {
            Some(&b) => b,
            None => return Some(h.max.unwrap_or(h.bounds.last().copied().unwrap_or(0.0))),
        };
        let lower = match i {
            0 => h
                .min
                .unwrap_or(if upper > 0.0 { 0.0 } else { upper })
                .min(upper),
            _ => h.bounds.get(i - 1).copied().unwrap_or(upper),
        };
        let v = lower + (upper - lower) * ((rank - below as f64) / n as f64);
        let v = h.max.map_or(v, |m| v.min(m));
        return Some(h.min.map_or(v, |m| v.max(m)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(bounds: &[f64], buckets: &[u64], sum: f64) -> Hist {
        Hist {
            count: buckets.iter().sum(),
            sum: Some(sum),
            bounds: bounds.to_vec(),
            buckets: buckets.to_vec(),
            min: None,
            max: None,
        }
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        // 10 observations in (0,100], 10 in (100,200].
        let h = hist(&[100.0, 200.0], &[10, 10, 0], 0.0);
        assert_eq!(quantile(&h, 0.5), Some(100.0));
        assert_eq!(quantile(&h, 0.25), Some(50.0));
        assert_eq!(quantile(&h, 0.75), Some(150.0));
        // The open last bucket reports the last bound.
        let h = hist(&[100.0], &[0, 5], 0.0);
        assert_eq!(quantile(&h, 0.99), Some(100.0));
        assert_eq!(quantile(&hist(&[1.0], &[0, 0], 0.0), 0.5), None);
    }

    #[test]
    fn counter_rate_skips_resets_and_needs_two_points() {
        let sum = |v: f64| Raw::Sum {
            value: v,
            monotonic: true,
            cumulative: true,
            start: 1,
        };
        let s = 1_000_000_000;
        assert_eq!(compute(ValueKind::Auto, &sum(10.0), 10 * s, None), None);
        let prev = (10 * s, sum(10.0));
        assert_eq!(
            compute(ValueKind::Auto, &sum(30.0), 20 * s, Some(&prev)),
            Some(2.0)
        );
        assert_eq!(
            compute(ValueKind::Auto, &sum(3.0), 20 * s, Some(&prev)),
            None
        );
        // An up-down counter (memory in use) is a level, not a rate.
        let level = Raw::Sum {
            value: 5.0,
            monotonic: false,
            cumulative: true,
            start: 1,
        };
        assert_eq!(
            compute(ValueKind::Auto, &level, 20 * s, Some(&prev)),
            Some(5.0)
        );
        // A delta sum is divided by its own interval.
        let delta = Raw::Sum {
            value: 50.0,
            monotonic: true,
            cumulative: false,
            start: 10 * s,
        };
        assert_eq!(compute(ValueKind::Auto, &delta, 20 * s, None), Some(5.0));
    }

    #[test]
    fn cumulative_histograms_use_the_difference_between_points() {
        let raw = |buckets: &[u64], sum: f64| Raw::Hist {
            hist: hist(&[1.0, 2.0], buckets, sum),
            cumulative: true,
            start: 1,
        };
        let first = raw(&[100, 0, 0], 50.0);
        assert_eq!(compute(ValueKind::Mean, &first, 10, None), Some(0.5));
        let prev = (10, first);
        let next = raw(&[100, 0, 10], 80.0);
        assert_eq!(compute(ValueKind::Mean, &next, 20, Some(&prev)), Some(3.0));
        assert_eq!(
            compute(ValueKind::Quantile(0.5), &next, 20, Some(&prev)),
            Some(2.0)
        );
        // No new observations: nothing to say.
        assert_eq!(compute(ValueKind::Mean, &prev.1, 20, Some(&prev)), None);
        // Percentiles do not apply to gauges.
        assert_eq!(
            compute(ValueKind::Quantile(0.5), &Raw::Gauge(1.0), 20, None),
            None
        );
    }
}
