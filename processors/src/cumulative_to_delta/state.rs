//! Per-stream state: the last cumulative point of each stream, and the conversion.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::stream_identity::hash_attributes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, ResourceMetrics, exponential_histogram_data_point,
    metric, number_data_point,
};

use super::config::{InitialValue, Settings};

/// Streams held at most; past it the least recently seen go, so a flood of new series cannot
/// grow memory without bound (their next point then counts as a first one).
pub const MAX_STREAMS: usize = 1_000_000;

#[derive(Clone, Debug)]
enum Last {
    Number(f64),
    Histogram {
        count: u64,
        sum: f64,
        buckets: Vec<u64>,
        bounds: Vec<f64>,
    },
    Exponential {
        count: u64,
        sum: f64,
        zero: u64,
        scale: i32,
        positive: (i32, Vec<u64>),
        negative: (i32, Vec<u64>),
    },
}

struct Stream {
    last: Last,
    time: u64,
    seen: Instant,
}

pub struct Tracker {
    settings: Settings,
    streams: HashMap<u64, Stream>,
    started_ns: u64,
    last_sweep: Instant,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn stale(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

impl Tracker {
    pub fn new(settings: Settings) -> Self {
        Tracker {
            settings,
            streams: HashMap::new(),
            started_ns: now_ns(),
            last_sweep: Instant::now(),
        }
    }

    #[cfg(test)]
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    fn selected(&self, name: &str, kind: &str) -> bool {
        let s = &self.settings;
        let included = s.include.is_empty() || s.include.matches(name, kind);
        let excluded = !s.exclude.is_empty() && s.exclude.matches(name, kind);
        included && !excluded
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let staleness = self.settings.max_staleness;
        let every = if staleness.is_zero() {
            Duration::from_secs(60)
        } else {
            (staleness / 2).max(Duration::from_secs(1))
        };
        if now.duration_since(self.last_sweep) >= every {
            self.last_sweep = now;
            if !staleness.is_zero() {
                self.streams
                    .retain(|_, s| now.duration_since(s.seen) < staleness);
            }
        }
        if self.streams.len() > MAX_STREAMS {
            let mut ages: Vec<(Instant, u64)> =
                self.streams.iter().map(|(k, s)| (s.seen, *k)).collect();
            ages.sort_unstable();
            for (_, key) in ages.iter().take(self.streams.len() - MAX_STREAMS * 9 / 10) {
                self.streams.remove(key);
            }
        }
    }

    /// Whether the first point of a stream goes out, per `initial_value`.
    fn send_first(&self, start: u64, time: u64) -> bool {
        match self.settings.initial_value {
            InitialValue::Keep => true,
            InitialValue::Drop => false,
            InitialValue::Auto => start != 0 && start >= self.started_ns && start != time,
        }
    }

    /// Converts every selected cumulative metric; returns the points held back.
    pub fn process(&mut self, resources: &mut [ResourceMetrics]) -> usize {
        self.sweep();
        let mut dropped = 0;
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
                    let kind = match &m.data {
                        Some(metric::Data::Sum(s))
                            if s.is_monotonic
                                && s.aggregation_temporality
                                    == AggregationTemporality::Cumulative as i32 =>
                        {
                            "sum"
                        }
                        Some(metric::Data::Histogram(h))
                            if h.aggregation_temporality
                                == AggregationTemporality::Cumulative as i32 =>
                        {
                            "histogram"
                        }
                        Some(metric::Data::ExponentialHistogram(h))
                            if h.aggregation_temporality
                                == AggregationTemporality::Cumulative as i32 =>
                        {
                            "exponentialhistogram"
                        }
                        _ => continue,
                    };
                    if !self.selected(&m.name, kind) {
                        continue;
                    }
                    let mut mh = sh.clone();
                    (&m.name, &m.unit, kind).hash(&mut mh);
                    let key_of = |attrs: &[KeyValue]| {
                        let mut h = mh.clone();
                        hash_attributes(attrs, &mut h);
                        h.finish()
                    };
                    match &mut m.data {
                        Some(metric::Data::Sum(s)) => {
                            s.aggregation_temporality = AggregationTemporality::Delta as i32;
                            let before = s.data_points.len();
                            s.data_points.retain_mut(|p| {
                                let value = match p.value {
                                    Some(number_data_point::Value::AsDouble(d)) => d,
                                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                                    None => 0.0,
                                };
                                let key = key_of(&p.attributes);
                                let Some((delta, start)) = self.step(
                                    key,
                                    Last::Number(value),
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    stale(p.flags),
                                ) else {
                                    return false;
                                };
                                if let (Last::Number(d), Some(v)) = (delta, p.value.as_mut()) {
                                    *v = match v {
                                        number_data_point::Value::AsInt(_) => {
                                            number_data_point::Value::AsInt(d as i64)
                                        }
                                        number_data_point::Value::AsDouble(_) => {
                                            number_data_point::Value::AsDouble(d)
                                        }
                                    };
                                }
                                p.start_time_unix_nano = start;
                                true
                            });
                            dropped += before - s.data_points.len();
                        }
                        Some(metric::Data::Histogram(h)) => {
                            h.aggregation_temporality = AggregationTemporality::Delta as i32;
                            let before = h.data_points.len();
                            h.data_points.retain_mut(|p| {
                                let key = key_of(&p.attributes);
                                let last = Last::Histogram {
                                    count: p.count,
                                    sum: p.sum.unwrap_or(0.0),
                                    buckets: p.bucket_counts.clone(),
                                    bounds: p.explicit_bounds.clone(),
                                };
                                let Some((delta, start)) = self.step(
                                    key,
                                    last,
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    stale(p.flags),
                                ) else {
                                    return false;
                                };
                                if let Last::Histogram {
                                    count,
                                    sum,
                                    buckets,
                                    ..
                                } = delta
                                {
                                    p.count = count;
                                    if p.sum.is_some() {
                                        p.sum = Some(sum);
                                    }
                                    p.bucket_counts = buckets;
                                    // Min and max cannot be told apart for the interval.
                                    p.min = None;
                                    p.max = None;
                                }
                                p.start_time_unix_nano = start;
                                true
                            });
                            dropped += before - h.data_points.len();
                        }
                        Some(metric::Data::ExponentialHistogram(h)) => {
                            h.aggregation_temporality = AggregationTemporality::Delta as i32;
                            let before = h.data_points.len();
                            h.data_points.retain_mut(|p| {
                                let key = key_of(&p.attributes);
                                let side =
                                    |b: &Option<exponential_histogram_data_point::Buckets>| {
                                        b.as_ref()
                                            .map(|b| (b.offset, b.bucket_counts.clone()))
                                            .unwrap_or((0, Vec::new()))
                                    };
                                let last = Last::Exponential {
                                    count: p.count,
                                    sum: p.sum.unwrap_or(0.0),
                                    zero: p.zero_count,
                                    scale: p.scale,
                                    positive: side(&p.positive),
                                    negative: side(&p.negative),
                                };
                                let Some((delta, start)) = self.step(
                                    key,
                                    last,
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    stale(p.flags),
                                ) else {
                                    return false;
                                };
                                if let Last::Exponential {
                                    count,
                                    sum,
                                    zero,
                                    positive,
                                    negative,
                                    ..
                                } = delta
                                {
                                    p.count = count;
                                    if p.sum.is_some() {
                                        p.sum = Some(sum);
                                    }
                                    p.zero_count = zero;
                                    p.positive = Some(exponential_histogram_data_point::Buckets {
                                        offset: positive.0,
                                        bucket_counts: positive.1,
                                    });
                                    p.negative = Some(exponential_histogram_data_point::Buckets {
                                        offset: negative.0,
                                        bucket_counts: negative.1,
                                    });
                                    p.min = None;
                                    p.max = None;
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
        dropped
    }

    /// One point of a stream: the delta to send and its start, or None to hold it back.
    fn step(
        &mut self,
        key: u64,
        current: Last,
        start: u64,
        time: u64,
        is_stale: bool,
    ) -> Option<(Last, u64)> {
        if is_stale {
            // Nothing to subtract; the marker goes on and the stream starts over.
            self.streams.remove(&key);
            return Some((current, start));
        }
        let now = Instant::now();
        let Some(stream) = self.streams.get_mut(&key) else {
            let send = self.send_first(start, time);
            self.streams.insert(
                key,
                Stream {
                    last: current.clone(),
                    time,
                    seen: now,
                },
            );
            return send.then_some((current, start));
        };
        if time <= stream.time {
            return None;
        }
        stream.seen = now;
        let previous_time = stream.time;
        let delta = difference(&stream.last, &current);
        stream.last = current.clone();
        stream.time = time;
        match delta {
            Some(d) => Some((d, previous_time)),
            // A reset: the counter started over, so its whole value is new since its start.
            None => Some((current, if start != 0 { start } else { previous_time })),
        }
    }
}

/// `current - last`, or None when `current` is a reset (lower, or another bucket layout).
fn difference(last: &Last, current: &Last) -> Option<Last> {
    match (last, current) {
        (Last::Number(a), Last::Number(b)) => (b >= a).then(|| Last::Number(b - a)),
        (
            Last::Histogram {
                count: c0,
                sum: s0,
                buckets: b0,
                bounds: x0,
            },
            Last::Histogram {
                count: c1,
                sum: s1,
                buckets: b1,
                bounds: x1,
            },
        ) => {
            if x0 != x1 || b0.len() != b1.len() || c1 < c0 || b0.iter().zip(b1).any(|(a, b)| b < a)
            {
                return None;
            }
            Some(Last::Histogram {
                count: c1 - c0,
                sum: s1 - s0,
                buckets: b0.iter().zip(b1).map(|(a, b)| b - a).collect(),
                bounds: x1.clone(),
            })
        }
        (
            Last::Exponential {
                count: c0,
                sum: s0,
                zero: z0,
                scale: k0,
                positive: p0,
                negative: n0,
            },
            Last::Exponential {
                count: c1,
                sum: s1,
                zero: z1,
                scale: k1,
                positive: p1,
                negative: n1,
            },
        ) => {
            if k0 != k1 || c1 < c0 || z1 < z0 {
                return None;
            }
            let positive = subtract_buckets(p0, p1)?;
            let negative = subtract_buckets(n0, n1)?;
            Some(Last::Exponential {
                count: c1 - c0,
                sum: s1 - s0,
                zero: z1 - z0,
                scale: *k1,
                positive,
                negative,
            })
        }
        _ => None,
    }
}

fn subtract_buckets(last: &(i32, Vec<u64>), current: &(i32, Vec<u64>)) -> Option<(i32, Vec<u64>)> {
    let mut out = current.1.clone();
    for (i, c) in last.1.iter().enumerate() {
        if *c == 0 {
            continue;
        }
        // Offsets come from the network: in i64 their difference cannot overflow.
        let index = i64::from(last.0) + i64::try_from(i).ok()? - i64::from(current.0);
        let slot = out.get_mut(usize::try_from(index).ok()?)?;
        *slot = slot.checked_sub(*c)?;
    }
    Some((current.0, out))
}
