//! What the connector emits: alert events as log records (ARCHITECTURE.md §9) and the forecast band
//! as gauges.

use sluice_pipeline::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use sluice_pipeline::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use sluice_pipeline::proto::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};

use super::model::{Event, Side};
use super::series::{Finding, ResourceFindings};

pub const SCOPE_NAME: &str = "sluice/anomaly";
pub const EVENT_NAME: &str = "sluice.alert";

/// The input's metrics in the order [`super::series::Detector`] numbers them.
fn metrics_of(rm: &ResourceMetrics) -> Vec<&Metric> {
    rm.scope_metrics
        .iter()
        .flat_map(|s| s.metrics.iter())
        .collect()
}

fn point_of(metric: &Metric, index: usize) -> Option<&NumberDataPoint> {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.get(index),
        Some(Data::Sum(s)) => s.data_points.get(index),
        _ => None,
    }
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: SCOPE_NAME.into(),
        ..Default::default()
    })
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// One log record per firing or resolution, grouped under the series' resource.
pub fn events(
    input: &[ResourceMetrics],
    found: &[ResourceFindings],
    rule: &str,
    observed: u64,
) -> Vec<ResourceLogs> {
    let mut out = Vec::new();
    for rf in found {
        let Some(rm) = input.get(rf.resource) else {
            continue;
        };
        let metrics = metrics_of(rm);
        let records: Vec<LogRecord> = rf
            .findings
            .iter()
            .filter_map(|f| {
                let event = f.evaluation.event?;
                let metric = metrics.get(f.metric)?;
                let point = point_of(metric, f.point)?;
                Some(record(metric, point, f, event, rule, observed))
            })
            .collect();
        if records.is_empty() {
            continue;
        }
        out.push(ResourceLogs {
            resource: rm.resource.clone(),
            scope_logs: vec![ScopeLogs {
                scope: scope(),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    out
}

fn record(
    metric: &Metric,
    point: &NumberDataPoint,
    f: &Finding,
    event: Event,
    rule: &str,
    observed: u64,
) -> LogRecord {
    let e = &f.evaluation;
    let (state, side) = match event {
        Event::Firing(side) => ("firing", side),
        Event::Resolved(side) => ("resolved", side),
    };
    let name = if f.rate {
        format!("{} rate", metric.name)
    } else {
        metric.name.clone()
    };
    let range = format!(
        "{}–{} (expected {})",
        number(e.lower),
        number(e.upper),
        number(e.expected)
    );
    let body = match event {
        Event::Firing(Side::Above) => {
            format!(
                "{name} {} is above its expected range {range}",
                number(e.value)
            )
        }
        Event::Firing(Side::Below) => {
            format!(
                "{name} {} is below its expected range {range}",
                number(e.value)
            )
        }
        Event::Resolved(_) => format!(
            "{name} {} is back within its expected range {range}",
            number(e.value)
        ),
    };
    let mut attributes = vec![
        kv("event.name", Value::StringValue(EVENT_NAME.into())),
        kv("alert.rule", Value::StringValue(rule.into())),
        kv("alert.state", Value::StringValue(state.into())),
        kv("alert.value", Value::DoubleValue(e.value)),
        kv("alert.threshold", Value::DoubleValue(e.edge(side))),
        kv(
            "anomaly.direction",
            Value::StringValue(
                match side {
                    Side::Above => "above",
                    Side::Below => "below",
                }
                .into(),
            ),
        ),
        kv("anomaly.expected", Value::DoubleValue(e.expected)),
        kv("anomaly.lower", Value::DoubleValue(e.lower)),
        kv("anomaly.upper", Value::DoubleValue(e.upper)),
        kv("alert.metric", Value::StringValue(metric.name.clone())),
    ];
    attributes.extend(point.attributes.iter().cloned());
    // Resolutions are INFO, as the threshold connector's are, so WARN+ filters see firings.
    let (severity, severity_text) = match event {
        Event::Firing(_) => (SeverityNumber::Warn, "WARN"),
        Event::Resolved(_) => (SeverityNumber::Info, "INFO"),
    };
    LogRecord {
        time_unix_nano: point.time_unix_nano,
        observed_time_unix_nano: observed,
        severity_number: severity as i32,
        severity_text: severity_text.into(),
        event_name: EVENT_NAME.into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(body)),
        }),
        attributes,
        ..Default::default()
    }
}

/// `<metric>.forecast`, `.lower` and `.upper` gauges for every point judged after warm-up,
/// with the point's attributes and time under the series' resource.
pub fn forecasts(input: &[ResourceMetrics], found: &[ResourceFindings]) -> Vec<ResourceMetrics> {
    let mut out = Vec::new();
    for rf in found {
        let Some(rm) = input.get(rf.resource) else {
            continue;
        };
        let metrics = metrics_of(rm);
        // (input metric index, its three gauges), in input order.
        let mut gauges: Vec<(usize, [Metric; 3])> = Vec::new();
        for f in rf.findings.iter().filter(|f| f.evaluation.warm) {
            let (Some(metric), Some(point)) = (
                metrics.get(f.metric),
                metrics.get(f.metric).and_then(|m| point_of(m, f.point)),
            ) else {
                continue;
            };
            if gauges.last().is_none_or(|(m, _)| *m != f.metric) {
                let unit = if f.rate && !metric.unit.is_empty() {
                    format!("{}/s", metric.unit)
                } else {
                    metric.unit.clone()
                };
                let gauge = |suffix: &str, what: &str| Metric {
                    name: format!("{}.{suffix}", metric.name),
                    unit: unit.clone(),
                    description: format!("{what} of {} by the anomaly connector", metric.name),
                    data: Some(Data::Gauge(Gauge {
                        data_points: Vec::new(),
                    })),
                    ..Default::default()
                };
                gauges.push((
                    f.metric,
                    [
                        gauge("forecast", "Expected value"),
                        gauge("lower", "Lower edge of the expected range"),
                        gauge("upper", "Upper edge of the expected range"),
                    ],
                ));
            }
            let Some((_, three)) = gauges.last_mut() else {
                continue;
            };
            let e = &f.evaluation;
            for (metric, value) in three.iter_mut().zip([e.expected, e.lower, e.upper]) {
                if let Some(Data::Gauge(g)) = &mut metric.data {
                    g.data_points.push(NumberDataPoint {
                        attributes: point.attributes.clone(),
                        time_unix_nano: point.time_unix_nano,
                        value: Some(number_data_point::Value::AsDouble(value)),
                        ..Default::default()
                    });
                }
            }
        }
        if gauges.is_empty() {
            continue;
        }
        out.push(ResourceMetrics {
            resource: rm.resource.clone(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: gauges.into_iter().flat_map(|(_, g)| g).collect(),
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    out
}

/// A number as a person would write it: integers plainly, others to a few decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let digits = if v.abs() >= 100.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        4
    };
    let text = format!("{v:.digits$}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}
