//! Small helpers that assemble OTLP metric messages; shared by the container receivers
//! (`cgroups` and `docker_stats`) so both shape their output the same way.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(crate) fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

// Only lifecycle records (docker_stats) carry integer attributes.
#[cfg_attr(not(feature = "docker"), allow(dead_code))]
pub(crate) fn int_kv(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

pub(crate) fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Double(f64),
}

impl Num {
    /// Counters from the kernel are u64; beyond i64 they are clamped rather than wrapped
    /// negative, which a backend would read as a reset.
    pub(crate) fn uint(value: u64) -> Num {
        Num::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

pub(crate) type Point = (Vec<KeyValue>, Num);

/// The metrics of one resource at one collection time.
pub(crate) struct MetricSet {
    now: u64,
    start: u64,
    metrics: Vec<Metric>,
}

enum Kind {
    Gauge,
    Sum { monotonic: bool },
}

impl MetricSet {
    /// `start` is when the cumulative series began (the container's or cgroup's start).
    pub(crate) fn new(now: u64, start: u64) -> Self {
        MetricSet {
            now,
            start,
            metrics: Vec::new(),
        }
    }

    /// A monotonic cumulative sum (an OTel counter).
    pub(crate) fn counter(&mut self, name: &str, unit: &str, desc: &str, points: Vec<Point>) {
        self.push(name, unit, desc, Kind::Sum { monotonic: true }, points);
    }

    /// A non-monotonic cumulative sum (an OTel up-down counter).
    pub(crate) fn updown(&mut self, name: &str, unit: &str, desc: &str, points: Vec<Point>) {
        self.push(name, unit, desc, Kind::Sum { monotonic: false }, points);
    }

    pub(crate) fn gauge(&mut self, name: &str, unit: &str, desc: &str, points: Vec<Point>) {
        self.push(name, unit, desc, Kind::Gauge, points);
    }

    fn push(&mut self, name: &str, unit: &str, desc: &str, kind: Kind, points: Vec<Point>) {
        if points.is_empty() {
            return;
        }
        let start = match kind {
            Kind::Gauge => 0,
            Kind::Sum { .. } => self.start,
        };
        let data_points = points
            .into_iter()
            .map(|(attributes, value)| NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: self.now,
                value: Some(match value {
                    Num::Int(i) => number_data_point::Value::AsInt(i),
                    Num::Double(f) => number_data_point::Value::AsDouble(f),
                }),
                ..Default::default()
            })
            .collect();
        let data = match kind {
            Kind::Gauge => metric::Data::Gauge(Gauge { data_points }),
            Kind::Sum { monotonic } => metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: monotonic,
            }),
        };
        self.metrics.push(Metric {
            name: name.to_string(),
            description: desc.to_string(),
            unit: unit.to_string(),
            data: Some(data),
            ..Default::default()
        });
    }

    pub(crate) fn into_resource(
        self,
        attributes: Vec<KeyValue>,
        scope_name: &str,
    ) -> ResourceMetrics {
        ResourceMetrics {
            resource: Some(Resource {
                attributes,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope(scope_name)),
                metrics: self.metrics,
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

/// One point with no attributes.
pub(crate) fn single(value: Num) -> Vec<Point> {
    vec![(Vec::new(), value)]
}

/// One point with no attributes, or none when the value is unknown.
pub(crate) fn maybe(value: Option<Num>) -> Vec<Point> {
    value.map(single).unwrap_or_default()
}
