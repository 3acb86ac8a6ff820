//! Per-stream running totals.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use crate::stream_identity::hash_attributes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ResourceMetrics, exponential_histogram_data_point, metric,
    number_data_point,
};

/// One side of an exponential histogram: the index of its first bucket and the counts.
type Buckets = (i32, Vec<u64>);

#[derive(Clone, Debug)]
enum Total {
    Number(f64),
    Histogram {
        count: u64,
        sum: Option<f64>,
        buckets: Vec<u64>,
        bounds: Vec<f64>,
        min: Option<f64>,
        max: Option<f64>,
    },
    Exponential {
        count: u64,
        sum: Option<f64>,
        zero: u64,
        scale: i32,
        positive: Buckets,
        negative: Buckets,
        min: Option<f64>,
        max: Option<f64>,
    },
}

struct Stream {
    total: Total,
    start: u64,
    time: u64,
    seen: Instant,
}

pub struct Accumulator {
    streams: HashMap<u64, Stream>,
    max_stale: Duration,
    max_streams: usize,
    last_sweep: Instant,
    warned_at: Option<Instant>,
}

impl Accumulator {
    pub fn new(max_stale: Duration, max_streams: usize) -> Self {
        Accumulator {
            streams: HashMap::new(),
            max_stale,
            max_streams,
            last_sweep: Instant::now(),
            warned_at: None,
        }
    }

    #[cfg(test)]
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_sweep)
            >= (self.max_stale / 4).max(Duration::from_millis(10))
        {
            self.last_sweep = now;
            let stale = self.max_stale;
            self.streams
                .retain(|_, s| now.duration_since(s.seen) < stale);
        }
    }

    /// Turns every delta metric cumulative; returns the points dropped and whether
    /// `max_streams` refused a stream (reported at most once a minute).
    pub fn process(&mut self, resources: &mut [ResourceMetrics]) -> (usize, bool) {
        self.sweep();
        let mut dropped = 0;
        let mut refused = false;
        for rm in resources.iter_mut() {
            let mut rh = std::collections::hash_map::DefaultHasher::new();
            if let Some(r) = &rm.resource {
                hash_attributes(&r.attributes, &mut rh);
            }
            for sm in rm.scope_metrics.iter_mut() {
                let mut sh = rh.clone();
                if let Some(s) = &sm.scope {
                    (&s.name, &s.version).hash(&mut sh);
                    hash_attributes(&s.attributes, &mut sh);
                }
                for m in sm.metrics.iter_mut() {
                    let delta = AggregationTemporality::Delta as i32;
                    let kind = match &m.data {
                        Some(metric::Data::Sum(s)) if s.aggregation_temporality == delta => 1u8,
                        Some(metric::Data::Histogram(h)) if h.aggregation_temporality == delta => 2,
                        Some(metric::Data::ExponentialHistogram(h))
                            if h.aggregation_temporality == delta =>
                        {
                            3
                        }
                        _ => continue,
                    };
                    let mut mh = sh.clone();
                    (&m.name, &m.unit, kind).hash(&mut mh);
                    let key_of = |attrs: &[KeyValue]| {
                        let mut h = mh.clone();
                        hash_attributes(attrs, &mut h);
                        h.finish()
                    };
                    let cumulative = AggregationTemporality::Cumulative as i32;
                    match &mut m.data {
                        Some(metric::Data::Sum(s)) => {
                            s.aggregation_temporality = cumulative;
                            let before = s.data_points.len();
                            s.data_points.retain_mut(|p| {
                                let v = match p.value {
                                    Some(number_data_point::Value::AsDouble(d)) => d,
                                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                                    None => 0.0,
                                };
                                let Some((total, start)) = self.add(
                                    key_of(&p.attributes),
                                    Total::Number(v),
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    &mut refused,
                                ) else {
                                    return false;
                                };
                                if let (Total::Number(t), Some(value)) = (total, p.value.as_mut()) {
                                    *value = match value {
                                        number_data_point::Value::AsInt(_) => {
                                            number_data_point::Value::AsInt(t as i64)
                                        }
                                        number_data_point::Value::AsDouble(_) => {
                                            number_data_point::Value::AsDouble(t)
                                        }
                                    };
                                }
                                p.start_time_unix_nano = start;
                                true
                            });
                            dropped += before - s.data_points.len();
                        }
                        Some(metric::Data::Histogram(h)) => {
                            h.aggregation_temporality = cumulative;
                            let before = h.data_points.len();
                            h.data_points.retain_mut(|p| {
                                let d = Total::Histogram {
                                    count: p.count,
                                    sum: p.sum,
                                    buckets: p.bucket_counts.clone(),
                                    bounds: p.explicit_bounds.clone(),
                                    min: p.min,
                                    max: p.max,
                                };
                                let Some((total, start)) = self.add(
                                    key_of(&p.attributes),
                                    d,
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    &mut refused,
                                ) else {
                                    return false;
                                };
                                if let Total::Histogram {
                                    count,
                                    sum,
                                    buckets,
                                    bounds,
                                    min,
                                    max,
                                } = total
                                {
                                    p.count = count;
                                    p.sum = sum;
                                    p.bucket_counts = buckets;
                                    p.explicit_bounds = bounds;
                                    p.min = min;
                                    p.max = max;
                                }
                                p.start_time_unix_nano = start;
                                true
                            });
                            dropped += before - h.data_points.len();
                        }
                        Some(metric::Data::ExponentialHistogram(h)) => {
                            h.aggregation_temporality = cumulative;
                            let before = h.data_points.len();
                            h.data_points.retain_mut(|p| {
                                let side =
                                    |b: &Option<exponential_histogram_data_point::Buckets>| {
                                        b.as_ref()
                                            .map(|b| (b.offset, b.bucket_counts.clone()))
                                            .unwrap_or((0, Vec::new()))
                                    };
                                let d = Total::Exponential {
                                    count: p.count,
                                    sum: p.sum,
                                    zero: p.zero_count,
                                    scale: p.scale,
                                    positive: side(&p.positive),
                                    negative: side(&p.negative),
                                    min: p.min,
                                    max: p.max,
                                };
                                let Some((total, start)) = self.add(
                                    key_of(&p.attributes),
                                    d,
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    &mut refused,
                                ) else {
                                    return false;
                                };
                                if let Total::Exponential {
                                    count,
                                    sum,
                                    zero,
                                    scale,
                                    positive,
                                    negative,
                                    min,
                                    max,
                                } = total
                                {
                                    p.count = count;
                                    p.sum = sum;
                                    p.zero_count = zero;
                                    p.scale = scale;
                                    p.positive = Some(exponential_histogram_data_point::Buckets {
                                        offset: positive.0,
                                        bucket_counts: positive.1,
                                    });
                                    p.negative = Some(exponential_histogram_data_point::Buckets {
                                        offset: negative.0,
                                        bucket_counts: negative.1,
                                    });
                                    p.min = min;
                                    p.max = max;
                                }
                                p.start_time_unix_nano = start;
                                true
                            });
                            dropped += before - h.data_points.len();
                        }
                        _ => {}
                    }
                }
            }
        }
        let report = refused
            && self
                .warned_at
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(60));
        if report {
            self.warned_at = Some(Instant::now());
        }
        (dropped, report)
    }

    fn add(
        &mut self,
        key: u64,
        delta: Total,
        start: u64,
        time: u64,
        refused: &mut bool,
    ) -> Option<(Total, u64)> {
        let now = Instant::now();
        match self.streams.get_mut(&key) {
            None => {
                if self.streams.len() >= self.max_streams {
                    *refused = true;
                    return None;
                }
                let start = if start == 0 { time } else { start };
                self.streams.insert(
                    key,
                    Stream {
                        total: delta.clone(),
                        start,
                        time,
                        seen: now,
                    },
                );
                Some((delta, start))
            }
            Some(stream) => {
                // Older or overlapping with what was already added: adding it would count twice.
                if time <= stream.time || (start != 0 && start < stream.time) {
                    return None;
                }
                stream.seen = now;
                stream.time = time;
                stream.total = match sum(&stream.total, &delta) {
                    Some(t) => t,
                    // Another bucket layout: the stream starts over from this point.
                    None => {
                        stream.start = if start == 0 { time } else { start };
                        delta
                    }
                };
                Some((stream.total.clone(), stream.start))
            }
        }
    }
}

fn opt_add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        _ => None,
    }
}

fn min_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => None,
    }
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    }
}

fn sum(total: &Total, delta: &Total) -> Option<Total> {
    match (total, delta) {
        (Total::Number(a), Total::Number(b)) => Some(Total::Number(a + b)),
        (
            Total::Histogram {
                count: c0,
                sum: s0,
                buckets: b0,
                bounds: x0,
                min: m0,
                max: n0,
            },
            Total::Histogram {
                count: c1,
                sum: s1,
                buckets: b1,
                bounds: x1,
                min: m1,
                max: n1,
            },
        ) if x0 == x1 && b0.len() == b1.len() => Some(Total::Histogram {
            // Counts come from the network: a sum past u64 must not panic.
            count: c0.saturating_add(*c1),
            sum: opt_add(*s0, *s1),
            buckets: b0
                .iter()
                .zip(b1)
                .map(|(a, b)| a.saturating_add(*b))
                .collect(),
            bounds: x0.clone(),
            min: min_of(*m0, *m1),
            max: max_of(*n0, *n1),
        }),
        (
            Total::Exponential {
                count: c0,
                sum: s0,
                zero: z0,
                scale: k0,
                positive: p0,
                negative: n0,
                min: m0,
                max: x0,
            },
            Total::Exponential {
                count: c1,
                sum: s1,
                zero: z1,
                scale: k1,
                positive: p1,
                negative: n1,
                min: m1,
                max: x1,
            },
        ) => {
            let (scale, positive, negative) = add_exponential(
                Exponential {
                    scale: *k0,
                    positive: p0,
                    negative: n0,
                },
                Exponential {
                    scale: *k1,
                    positive: p1,
                    negative: n1,
                },
            );
            Some(Total::Exponential {
                count: c0.saturating_add(*c1),
                sum: opt_add(*s0, *s1),
                zero: z0.saturating_add(*z1),
                scale,
                positive,
                negative,
                min: min_of(*m0, *m1),
                max: max_of(*x0, *x1),
            })
        }
        _ => None,
    }
}

/// Buckets a merged exponential histogram may span at most, as upstream's
/// deltatocumulative: past it the histogram is downscaled until it fits. Without a bound two
/// points with far-apart offsets (up to 2^32 buckets apart) would need a vector that large.
pub const MAX_BUCKETS: i64 = 160;

/// The scale and buckets of one exponential histogram point.
struct Exponential<'a> {
    scale: i32,
    positive: &'a Buckets,
    negative: &'a Buckets,
}

/// Adds two exponential histograms: both are brought to the coarser scale, then further down
/// until each side of the sum spans at most [`MAX_BUCKETS`], then added bucket by bucket.
fn add_exponential(a: Exponential<'_>, b: Exponential<'_>) -> (i32, Buckets, Buckets) {
    let scale = a.scale.min(b.scale);
    // Scales come from the network: their difference may not fit an i32.
    let by_a = i64::from(a.scale) - i64::from(scale);
    let by_b = i64::from(b.scale) - i64::from(scale);
    let pa = downscale(a.positive, by_a);
    let pb = downscale(b.positive, by_b);
    let na = downscale(a.negative, by_a);
    let nb = downscale(b.negative, by_b);
    let extra = fitting_downscale(&pa, &pb).max(fitting_downscale(&na, &nb));
    let scale = i32::try_from(i64::from(scale) - extra).unwrap_or(i32::MIN);
    let positive = merge(&downscale(&pa, extra), &downscale(&pb, extra));
    let negative = merge(&downscale(&na, extra), &downscale(&nb, extra));
    (scale, positive, negative)
}

/// Index of the first and last bucket, in i64: `offset + len` may overflow an i32.
fn bounds(buckets: &Buckets) -> Option<(i64, i64)> {
    let len = i64::try_from(buckets.1.len()).ok()?;
    (len > 0).then(|| (i64::from(buckets.0), i64::from(buckets.0) + len - 1))
}

/// How many scale steps down make the buckets of `a` and `b` together span at most
/// [`MAX_BUCKETS`]. Each step halves the span, so 63 steps always suffice.
fn fitting_downscale(a: &Buckets, b: &Buckets) -> i64 {
    let sides: Vec<(i64, i64)> = [bounds(a), bounds(b)].into_iter().flatten().collect();
    let Some(first) = sides.iter().map(|s| s.0).min() else {
        return 0;
    };
    let Some(last) = sides.iter().map(|s| s.1).max() else {
        return 0;
    };
    (0..63)
        .find(|by| (last >> by) - (first >> by) < MAX_BUCKETS)
        .unwrap_or(63)
}

/// Buckets at a scale `by` steps coarser: 2^by neighbours merge into one.
fn downscale(buckets: &Buckets, by: i64) -> Buckets {
    let Some((first, last)) = bounds(buckets) else {
        return buckets.clone();
    };
    if by <= 0 {
        return buckets.clone();
    }
    // Shifting an i64 by 63 already maps every index to 0 or -1.
    let by = by.min(63);
    let (first, last) = (first >> by, last >> by);
    // Shifting right never grows an index's magnitude, so these fit where they came from.
    let len = usize::try_from(last - first + 1).unwrap_or(0);
    let mut out = vec![0u64; len];
    for (i, c) in buckets.1.iter().enumerate() {
        let index = (i64::from(buckets.0) + i as i64) >> by;
        if let Some(slot) = usize::try_from(index - first)
            .ok()
            .and_then(|at| out.get_mut(at))
        {
            *slot = slot.saturating_add(*c);
        }
    }
    (i32::try_from(first).unwrap_or(buckets.0), out)
}

/// Two sets of buckets of the same scale added up; callers keep their span small.
fn merge(a: &Buckets, b: &Buckets) -> Buckets {
    let (Some((a_first, a_last)), Some((b_first, b_last))) = (bounds(a), bounds(b)) else {
        return if a.1.is_empty() { b.clone() } else { a.clone() };
    };
    let first = a_first.min(b_first);
    let last = a_last.max(b_last);
    let len = usize::try_from(last - first + 1).unwrap_or(0);
    let mut out = vec![0u64; len];
    for side in [a, b] {
        for (i, c) in side.1.iter().enumerate() {
            let at = usize::try_from(i64::from(side.0) - first)
                .ok()
                .and_then(|start| start.checked_add(i));
            if let Some(slot) = at.and_then(|at| out.get_mut(at)) {
                *slot = slot.saturating_add(*c);
            }
        }
    }
    // `first` is one of the two offsets.
    (i32::try_from(first).unwrap_or(a.0.min(b.0)), out)
}

#[cfg(test)]
pub fn downscale_for_tests(buckets: &Buckets, by: i32) -> Buckets {
    downscale(buckets, i64::from(by))
}
