//! What the pull exporter holds between scrapes: the latest value of every series, delta sums
//! and histograms added up into cumulative ones, each series forgotten once it has not been
//! updated for `metric_expiration`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, ResourceMetrics, metric, number_data_point,
};

use crate::otel_to_prometheus::{Translation, exponential_to_explicit, value_text};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Histogram {
        /// (upper bound, cumulative count), +Inf last.
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    },
    Summary {
        quantiles: Vec<(f64, f64)>,
        sum: f64,
        count: u64,
    },
}

#[derive(Clone, Debug)]
pub struct Entry {
    pub value: Value,
    /// Milliseconds since the epoch of the latest point.
    pub timestamp_ms: i64,
    updated: Instant,
}

#[derive(Clone, Debug, Default)]
pub struct Family {
    pub kind: Option<Kind>,
    pub help: String,
    pub unit: String,
    /// By sorted labels.
    pub series: BTreeMap<Vec<(String, String)>, Entry>,
}

#[derive(Default)]
pub struct Accumulator {
    /// By Prometheus name.
    pub families: BTreeMap<String, Family>,
    /// `target_info` label sets, by `job`/`instance`.
    pub target_info: BTreeMap<Vec<(String, String)>, Entry>,
}

fn stale(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

fn with(
    base: &[(String, String)],
    tr: &Translation,
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
) -> Vec<(String, String)> {
    let mut map: BTreeMap<String, String> = base.iter().cloned().collect();
    for a in attrs {
        map.insert(tr.label_name(&a.key), value_text(&a.value));
    }
    map.into_iter().filter(|(_, v)| !v.is_empty()).collect()
}

impl Accumulator {
    pub fn add(&mut self, resources: &[ResourceMetrics], tr: &Translation) {
        let now = Instant::now();
        for rm in resources {
            let resource = rm.resource.as_ref();
            let mut latest = 0i64;
            for sm in &rm.scope_metrics {
                let base = tr.base_labels(resource, sm.scope.as_ref());
                for m in &sm.metrics {
                    let name = tr.metric_name(m);
                    let Some(data) = &m.data else { continue };
                    // As upstream: a delta up-down sum has no running total a scrape could
                    // show (adding its changes up would invent one from whenever sluice
                    // started), and unspecified temporality means nothing; both are dropped.
                    if let metric::Data::Sum(s) = data
                        && (s.aggregation_temporality == AggregationTemporality::Unspecified as i32
                            || (s.aggregation_temporality == AggregationTemporality::Delta as i32
                                && !s.is_monotonic))
                    {
                        continue;
                    }
                    let (kind, delta) = match data {
                        metric::Data::Gauge(_) => (Kind::Gauge, false),
                        metric::Data::Sum(s) => (
                            if s.is_monotonic {
                                Kind::Counter
                            } else {
                                Kind::Gauge
                            },
                            s.aggregation_temporality == AggregationTemporality::Delta as i32,
                        ),
                        metric::Data::Histogram(h) => (
                            Kind::Histogram,
                            h.aggregation_temporality == AggregationTemporality::Delta as i32,
                        ),
                        metric::Data::ExponentialHistogram(h) => (
                            Kind::Histogram,
                            h.aggregation_temporality == AggregationTemporality::Delta as i32,
                        ),
                        metric::Data::Summary(_) => (Kind::Summary, false),
                    };
                    let family = self.families.entry(name).or_default();
                    if family.kind.is_some_and(|k| k != kind) {
                        // The same name with another type: the newer definition wins.
                        family.series.clear();
                    }
                    family.kind = Some(kind);
                    family.help = m.description.clone();
                    family.unit = m.unit.clone();
                    let mut put = |labels: Vec<(String, String)>,
                                   value: Value,
                                   time_ns: u64,
                                   is_stale: bool| {
                        let ts = (time_ns / 1_000_000) as i64;
                        latest = latest.max(ts);
                        if is_stale {
                            family.series.remove(&labels);
                            return;
                        }
                        match family.series.get_mut(&labels) {
                            Some(existing) if ts < existing.timestamp_ms => {}
                            Some(existing) if delta => {
                                existing.value = accumulate(&existing.value, value);
                                existing.timestamp_ms = ts;
                                existing.updated = now;
                            }
                            Some(existing) => {
                                existing.value = value;
                                existing.timestamp_ms = ts;
                                existing.updated = now;
                            }
                            None => {
                                family.series.insert(
                                    labels,
                                    Entry {
                                        value,
                                        timestamp_ms: ts,
                                        updated: now,
                                    },
                                );
                            }
                        }
                    };
                    let number = |v: &Option<number_data_point::Value>| match v {
                        Some(number_data_point::Value::AsDouble(d)) => *d,
                        Some(number_data_point::Value::AsInt(i)) => *i as f64,
                        None => 0.0,
                    };
                    match data {
                        metric::Data::Gauge(g) => {
                            for p in &g.data_points {
                                put(
                                    with(&base, tr, &p.attributes),
                                    Value::Number(number(&p.value)),
                                    p.time_unix_nano,
                                    stale(p.flags),
                                );
                            }
                        }
                        metric::Data::Sum(s) => {
                            for p in &s.data_points {
                                put(
                                    with(&base, tr, &p.attributes),
                                    Value::Number(number(&p.value)),
                                    p.time_unix_nano,
                                    stale(p.flags),
                                );
                            }
                        }
                        metric::Data::Histogram(h) => {
                            for p in &h.data_points {
                                let mut cumulative = 0u64;
                                let mut buckets = Vec::with_capacity(p.bucket_counts.len());
                                for (i, c) in p.bucket_counts.iter().enumerate() {
                                    cumulative = cumulative.saturating_add(*c);
                                    buckets.push((
                                        p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY),
                                        cumulative,
                                    ));
                                }
                                if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
                                    buckets.push((f64::INFINITY, p.count));
                                }
                                let value = Value::Histogram {
                                    buckets,
                                    sum: p.sum.unwrap_or(0.0),
                                    count: p.count,
                                };
                                put(
                                    with(&base, tr, &p.attributes),
                                    value,
                                    p.time_unix_nano,
                                    stale(p.flags),
                                );
                            }
                        }
                        metric::Data::ExponentialHistogram(h) => {
                            for p in &h.data_points {
                                let positive = p
                                    .positive
                                    .as_ref()
                                    .map(|b| (b.offset, b.bucket_counts.as_slice()));
                                let negative = p
                                    .negative
                                    .as_ref()
                                    .map(|b| (b.offset, b.bucket_counts.as_slice()));
                                let mut buckets = exponential_to_explicit(
                                    p.scale,
                                    p.zero_count,
                                    positive,
                                    negative,
                                );
                                buckets.push((f64::INFINITY, p.count));
                                let value = Value::Histogram {
                                    buckets,
                                    sum: p.sum.unwrap_or(0.0),
                                    count: p.count,
                                };
                                put(
                                    with(&base, tr, &p.attributes),
                                    value,
                                    p.time_unix_nano,
                                    stale(p.flags),
                                );
                            }
                        }
                        metric::Data::Summary(s) => {
                            for p in &s.data_points {
                                let value = Value::Summary {
                                    quantiles: p
                                        .quantile_values
                                        .iter()
                                        .map(|q| (q.quantile, q.value))
                                        .collect(),
                                    sum: p.sum,
                                    count: p.count,
                                };
                                put(
                                    with(&base, tr, &p.attributes),
                                    value,
                                    p.time_unix_nano,
                                    stale(p.flags),
                                );
                            }
                        }
                    }
                }
            }
            if let Some(labels) = tr.target_info(resource) {
                self.target_info.insert(
                    labels,
                    Entry {
                        value: Value::Number(1.0),
                        timestamp_ms: latest,
                        updated: now,
                    },
                );
            }
        }
    }

    /// Forgets series not updated for `expiration`.
    pub fn expire(&mut self, expiration: Duration) {
        let now = Instant::now();
        for family in self.families.values_mut() {
            family
                .series
                .retain(|_, e| now.duration_since(e.updated) < expiration);
        }
        self.families.retain(|_, f| !f.series.is_empty());
        self.target_info
            .retain(|_, e| now.duration_since(e.updated) < expiration);
    }
}

/// A delta added to what was held. Histograms with other bounds than before start over.
fn accumulate(held: &Value, delta: Value) -> Value {
    match (held, delta) {
        (Value::Number(a), Value::Number(b)) => Value::Number(a + b),
        (
            Value::Histogram {
                buckets: a,
                sum: sa,
                count: ca,
            },
            Value::Histogram {
                buckets: b,
                sum: sb,
                count: cb,
            },
        ) if a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.0 == y.0) => Value::Histogram {
            buckets: a.iter().zip(&b).map(|(x, y)| (x.0, x.1 + y.1)).collect(),
            sum: sa + sb,
            count: ca + cb,
        },
        (_, other) => other,
    }
}
