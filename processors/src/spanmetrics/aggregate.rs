//! Turning spans into call counts and duration histograms, and those into OTLP metrics.
//!
//! Kept free of timers and clocks (callers pass `now`) so it can be tested exactly.

use std::collections::HashMap;

use sluice_pipeline::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use sluice_pipeline::proto::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::proto::trace::v1::{ResourceSpans, Span, span::SpanKind, status::StatusCode};

use super::config::{SpanMetricsConfig, Temporality};

/// What makes two spans land in the same series. Dimension values are kept in their debug
/// form so any attribute type (string, int, array...) can be compared and hashed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    service: String,
    name: String,
    kind: i32,
    status: i32,
    dims: Vec<Option<String>>,
}

struct Series {
    attributes: Vec<KeyValue>,
    calls: u64,
    sum: f64,
    buckets: Vec<u64>,
    /// When the series began counting: first seen (cumulative) or last flushed (delta).
    start: u64,
}

impl Series {
    fn new(attributes: Vec<KeyValue>, buckets: usize, start: u64) -> Self {
        Series {
            attributes,
            calls: 0,
            sum: 0.0,
            buckets: vec![0; buckets],
            start,
        }
    }
}

pub struct Aggregator {
    cfg: SpanMetricsConfig,
    /// Bucket bounds in the histogram's unit.
    bounds: Vec<f64>,
    series: HashMap<SeriesKey, Series>,
    /// Spans whose series did not fit under the cardinality limit, so totals stay exact.
    overflow: Option<Series>,
    /// Start of the current delta interval.
    interval_start: u64,
}

/// What one `add` did, for self-metrics.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Added {
    pub spans: u64,
    pub overflowed: u64,
}

pub const OVERFLOW_ATTRIBUTE: &str = "otel.metric.overflow";
pub const SCOPE_NAME: &str = "sluice/spanmetrics";

impl Aggregator {
    pub fn new(cfg: SpanMetricsConfig, now: u64) -> Self {
        let unit = cfg.histogram.unit;
        let bounds = cfg
            .histogram
            .explicit
            .buckets
            .iter()
            .map(|d| unit.from_nanos(u64::try_from(d.0.as_nanos()).unwrap_or(u64::MAX)))
            .collect();
        Aggregator {
            cfg,
            bounds,
            series: HashMap::new(),
            overflow: None,
            interval_start: now,
        }
    }

    pub fn add(&mut self, resources: &[ResourceSpans], now: u64) -> Added {
        let mut added = Added::default();
        for rs in resources {
            let resource_attrs: &[KeyValue] =
                rs.resource.as_ref().map_or(&[], |r| &r.attributes[..]);
            let service = find(resource_attrs, "service.name")
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in rs.scope_spans.iter().flat_map(|s| s.spans.iter()) {
                added.spans += 1;
                if !self.record(&service, resource_attrs, span, now) {
                    added.overflowed += 1;
                }
            }
        }
        added
    }

    /// Counts one span; false when it went to the overflow series.
    fn record(&mut self, service: &str, resource: &[KeyValue], span: &Span, now: u64) -> bool {
        let status = span.status.as_ref().map_or(0, |s| s.code);
        let dim_values: Vec<Option<AnyValue>> = self
            .cfg
            .dimensions
            .iter()
            .map(|d| {
                find(&span.attributes, &d.name)
                    .or_else(|| find(resource, &d.name))
                    .cloned()
                    .or_else(|| {
                        d.default.as_ref().map(|s| AnyValue {
                            value: Some(Value::StringValue(s.clone())),
                        })
                    })
            })
            .collect();
        let key = SeriesKey {
            service: service.to_string(),
            name: span.name.clone(),
            kind: span.kind,
            status,
            dims: dim_values
                .iter()
                .map(|v| v.as_ref().map(|v| format!("{:?}", v.value)))
                .collect(),
        };
        let duration = self.cfg.histogram.unit.from_nanos(
            span.end_time_unix_nano
                .saturating_sub(span.start_time_unix_nano),
        );
        let buckets = self.bounds.len() + 1;
        let limit = self.cfg.aggregation_cardinality_limit;
        let in_limit = self.series.contains_key(&key) || self.series.len() < limit;
        let series = if in_limit {
            let attributes = || {
                let mut attrs = vec![
                    string_kv("service.name", service),
                    string_kv("span.name", &span.name),
                    string_kv("span.kind", kind_name(span.kind)),
                    string_kv("status.code", status_name(status)),
                ];
                for (d, v) in self.cfg.dimensions.iter().zip(dim_values) {
                    if let Some(value) = v {
                        attrs.push(KeyValue {
                            key: d.name.clone(),
                            value: Some(value),
                            ..Default::default()
                        });
                    }
                }
                attrs
            };
            let start = self.interval_start_for(now);
            self.series
                .entry(key)
                .or_insert_with(|| Series::new(attributes(), buckets, start))
        } else {
            let start = self.interval_start_for(now);
            self.overflow.get_or_insert_with(|| {
                Series::new(
                    vec![KeyValue {
                        key: OVERFLOW_ATTRIBUTE.into(),
                        value: Some(AnyValue {
                            value: Some(Value::BoolValue(true)),
                        }),
                        ..Default::default()
                    }],
                    buckets,
                    start,
                )
            })
        };
        series.calls += 1;
        series.sum += duration;
        // OTLP explicit buckets are upper-inclusive: bucket i holds (bounds[i-1], bounds[i]].
        let index = self.bounds.partition_point(|b| *b < duration);
        if let Some(b) = series.buckets.get_mut(index) {
            *b += 1;
        }
        in_limit
    }

    fn interval_start_for(&self, now: u64) -> u64 {
        match self.cfg.aggregation_temporality {
            Temporality::Cumulative => now,
            Temporality::Delta => self.interval_start,
        }
    }

    /// The metrics to send now: every series (cumulative) or those counted since the last
    /// flush, which are then forgotten (delta). One resource per `service.name`.
    pub fn flush(&mut self, now: u64) -> Vec<ResourceMetrics> {
        let delta = self.cfg.aggregation_temporality == Temporality::Delta;
        let mut by_service: Vec<(String, Vec<&Series>)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut keys: Vec<&SeriesKey> = self.series.keys().collect();
        // Stable output order makes files and tests reproducible.
        keys.sort_by(|a, b| {
            (&a.service, &a.name, a.kind, a.status, &a.dims)
                .cmp(&(&b.service, &b.name, b.kind, b.status, &b.dims))
        });
        for key in keys {
            let Some(series) = self.series.get(key) else {
                continue;
            };
            let slot = *index.entry(key.service.as_str()).or_insert_with(|| {
                by_service.push((key.service.clone(), Vec::new()));
                by_service.len() - 1
            });
            if let Some((_, list)) = by_service.get_mut(slot) {
                list.push(series);
            }
        }
        let mut out: Vec<ResourceMetrics> = by_service
            .iter()
            .map(|(service, series)| {
                self.resource_metrics(
                    Some(Resource {
                        attributes: vec![string_kv("service.name", service)],
                        ..Default::default()
                    }),
                    series,
                    now,
                )
            })
            .collect();
        if let Some(overflow) = &self.overflow {
            out.push(self.resource_metrics(None, &[overflow], now));
        }
        if delta {
            self.series.clear();
            self.overflow = None;
            self.interval_start = now;
        }
        out
    }

    fn resource_metrics(
        &self,
        resource: Option<Resource>,
        series: &[&Series],
        now: u64,
    ) -> ResourceMetrics {
        let temporality = match self.cfg.aggregation_temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as i32;
        let ns = &self.cfg.namespace;
        let prefix = if ns.is_empty() {
            String::new()
        } else {
            format!("{ns}.")
        };
        let calls = Metric {
            name: format!("{prefix}calls"),
            unit: "{call}".into(),
            description: "Number of spans, per service, span name, kind and status".into(),
            data: Some(Data::Sum(Sum {
                data_points: series
                    .iter()
                    .map(|s| NumberDataPoint {
                        attributes: s.attributes.clone(),
                        start_time_unix_nano: s.start,
                        time_unix_nano: now,
                        value: Some(number_data_point::Value::AsInt(
                            i64::try_from(s.calls).unwrap_or(i64::MAX),
                        )),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: temporality,
                is_monotonic: true,
            })),
            ..Default::default()
        };
        let duration = Metric {
            name: format!("{prefix}duration"),
            unit: self.cfg.histogram.unit.symbol().into(),
            description: "Duration of spans, per service, span name, kind and status".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: series
                    .iter()
                    .map(|s| HistogramDataPoint {
                        attributes: s.attributes.clone(),
                        start_time_unix_nano: s.start,
                        time_unix_nano: now,
                        count: s.calls,
                        sum: Some(s.sum),
                        bucket_counts: s.buckets.clone(),
                        explicit_bounds: self.bounds.clone(),
                        ..Default::default()
                    })
                    .collect(),
                aggregation_temporality: temporality,
            })),
            ..Default::default()
        };
        ResourceMetrics {
            resource,
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.into(),
                    ..Default::default()
                }),
                metrics: vec![calls, duration],
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn kind_name(kind: i32) -> &'static str {
    SpanKind::try_from(kind).map_or("SPAN_KIND_UNSPECIFIED", |k| k.as_str_name())
}

fn status_name(code: i32) -> &'static str {
    StatusCode::try_from(code).map_or("STATUS_CODE_UNSET", |c| c.as_str_name())
}
