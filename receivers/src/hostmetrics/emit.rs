//! Building OTLP metrics from scraped values, under either naming, with the config's
//! per-metric switches and re-aggregation applied.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric, number_data_point,
};

use super::config::Naming;
use crate::metric_keys::{Aggregation, Regroup, regroup_points};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A monotonic cumulative sum.
    Counter,
    /// A non-monotonic cumulative sum.
    UpDown,
    Gauge,
}

/// A data point attribute of a metric: its name in the OTel Collector's output and in the
/// semantic conventions.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub collector: &'static str,
    pub semconv: &'static str,
}

/// One metric a scraper can emit, under both namings.
#[derive(Debug)]
pub struct MetricDef {
    pub semconv: &'static str,
    pub collector: &'static str,
    pub unit: &'static str,
    pub collector_unit: &'static str,
    pub description: &'static str,
    pub kind: Kind,
    pub default_on: bool,
    /// The data point attributes it may carry, which `attributes:` can narrow.
    pub attributes: &'static [Attr],
    /// Names the metric had in earlier releases of the OTel Collector, still accepted.
    pub former_names: &'static [&'static str],
    /// Why this host cannot produce it (a Windows-only metric), when it cannot.
    pub unavailable: Option<&'static str>,
}

impl MetricDef {
    pub const fn new(
        semconv: &'static str,
        collector: &'static str,
        unit: &'static str,
        collector_unit: &'static str,
        kind: Kind,
        default_on: bool,
        description: &'static str,
    ) -> Self {
        MetricDef {
            semconv,
            collector,
            unit,
            collector_unit,
            description,
            kind,
            default_on,
            attributes: &[],
            former_names: &[],
            unavailable: None,
        }
    }

    pub const fn attrs(mut self, attributes: &'static [Attr]) -> Self {
        self.attributes = attributes;
        self
    }

    pub const fn formerly(mut self, names: &'static [&'static str]) -> Self {
        self.former_names = names;
        self
    }

    pub const fn unavailable(mut self, why: &'static str) -> Self {
        self.unavailable = Some(why);
        self
    }

    /// Whether `name` (either naming, or a former name) is this metric.
    pub fn answers_to(&self, name: &str) -> bool {
        self.semconv == name || self.collector == name || self.former_names.contains(&name)
    }

    pub fn default_aggregation(&self) -> Aggregation {
        match self.kind {
            Kind::Gauge => Aggregation::Avg,
            Kind::Counter | Kind::UpDown => Aggregation::Sum,
        }
    }
}

pub const fn attr(collector: &'static str, semconv: &'static str) -> Attr {
    Attr { collector, semconv }
}

/// What the config asks of one scraper's metrics: which are on, and which are re-aggregated
/// over fewer attributes.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    enabled: HashSet<&'static str>,
    regroup: HashMap<&'static str, Regroup>,
}

impl Plan {
    pub fn new(enabled: HashSet<&'static str>, regroup: HashMap<&'static str, Regroup>) -> Self {
        Plan { enabled, regroup }
    }

    pub fn is_on(&self, def: &MetricDef) -> bool {
        self.enabled.contains(def.semconv)
    }
}

pub enum Num {
    Int(i64),
    Double(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<i64> for Num {
    fn from(v: i64) -> Self {
        Num::Int(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::Double(v)
    }
}

pub fn kv(key: &str, value: impl Into<AttrValue>) -> KeyValue {
    let value = match value.into() {
        AttrValue::Str(s) => any_value::Value::StringValue(s),
        AttrValue::Int(i) => any_value::Value::IntValue(i),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub enum AttrValue {
    Str(String),
    Int(i64),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Str(s.to_string())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Str(s)
    }
}

impl From<i64> for AttrValue {
    fn from(i: i64) -> Self {
        AttrValue::Int(i)
    }
}

/// Collects the metrics of one scrape of one scraper (or one process).
pub struct Emitter<'a> {
    pub naming: Naming,
    plan: &'a Plan,
    /// When the data points were taken.
    pub now: u64,
    /// Start of cumulative sums: boot time for the host, start time for a process.
    pub start: u64,
    /// Each metric with the key (semconv name) of the definition that opened it.
    metrics: Vec<(&'static str, Metric)>,
}

impl<'a> Emitter<'a> {
    pub fn new(naming: Naming, plan: &'a Plan, now: u64, start: u64) -> Self {
        Emitter {
            naming,
            plan,
            now,
            start,
            metrics: Vec::new(),
        }
    }

    pub fn on(&self, def: &MetricDef) -> bool {
        self.plan.is_on(def)
    }

    pub fn semconv(&self) -> bool {
        self.naming == Naming::Semconv
    }

    /// Picks the attribute key (or value) of the naming in use.
    pub fn pick(&self, semconv: &'static str, collector: &'static str) -> &'static str {
        match self.naming {
            Naming::Semconv => semconv,
            Naming::Collector => collector,
        }
    }

    /// Adds a data point to `def`'s metric, if that metric is enabled.
    pub fn point(&mut self, def: &MetricDef, attributes: Vec<KeyValue>, value: impl Into<Num>) {
        if !self.on(def) {
            return;
        }
        let (name, unit) = match self.naming {
            Naming::Semconv => (def.semconv, def.unit),
            Naming::Collector => (def.collector, def.collector_unit),
        };
        let point = NumberDataPoint {
            attributes,
            start_time_unix_nano: if def.kind == Kind::Gauge {
                0
            } else {
                self.start
            },
            time_unix_nano: self.now,
            value: Some(match value.into() {
                Num::Int(i) => number_data_point::Value::AsInt(i),
                Num::Double(d) => number_data_point::Value::AsDouble(d),
            }),
            ..Default::default()
        };
        // Under collector naming two definitions can share a name (slab states are states
        // of `system.memory.usage`): their points go to one metric.
        let index = match self.metrics.iter().position(|(_, m)| m.name == name) {
            Some(i) => i,
            None => {
                self.metrics.push((
                    def.semconv,
                    Metric {
                        name: name.to_string(),
                        description: def.description.to_string(),
                        unit: unit.to_string(),
                        data: Some(match def.kind {
                            Kind::Gauge => metric::Data::Gauge(Gauge::default()),
                            Kind::Counter | Kind::UpDown => metric::Data::Sum(Sum {
                                data_points: Vec::new(),
                                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                                is_monotonic: def.kind == Kind::Counter,
                            }),
                        }),
                        ..Default::default()
                    },
                ));
                self.metrics.len() - 1
            }
        };
        match &mut self.metrics[index].1.data {
            Some(metric::Data::Gauge(g)) => g.data_points.push(point),
            Some(metric::Data::Sum(s)) => s.data_points.push(point),
            _ => {}
        }
    }

    pub fn finish(self) -> Vec<Metric> {
        let plan = self.plan;
        self.metrics
            .into_iter()
            .map(|(key, mut m)| {
                if let Some(regroup) = plan.regroup.get(key) {
                    match &mut m.data {
                        Some(metric::Data::Gauge(g)) => regroup_points(&mut g.data_points, regroup),
                        Some(metric::Data::Sum(s)) => regroup_points(&mut s.data_points, regroup),
                        _ => {}
                    }
                }
                m
            })
            .collect()
    }
}

/// Nanoseconds since the epoch for whole and fractional seconds.
pub fn secs_to_nanos(secs: f64) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (secs * 1e9) as u64
    } else {
        0
    }
}
