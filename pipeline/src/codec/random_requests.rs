//! Random OTLP export requests of every signal, for property-style tests of the scan's
//! estimate and of cutting requests.

use fastrand::Rng;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar, metric, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};

fn text(rng: &mut Rng, most: usize) -> String {
    let len = rng.usize(..=most);
    (0..len)
        .map(|_| {
            if rng.u8(..20) == 0 {
                'é'
            } else {
                rng.alphanumeric()
            }
        })
        .collect()
}

fn id(rng: &mut Rng, width: usize) -> Vec<u8> {
    if rng.bool() {
        Vec::new()
    } else {
        (0..width).map(|_| rng.u8(..)).collect()
    }
}

fn value(rng: &mut Rng, depth: u32) -> AnyValue {
    use any_value::Value;
    let value = match rng.u8(..if depth > 2 { 6 } else { 8 }) {
        0 => None,
        1 => Some(Value::StringValue(text(rng, 200))),
        2 => Some(Value::IntValue(rng.i64(..))),
        3 => Some(Value::BoolValue(rng.bool())),
        4 => Some(Value::DoubleValue(rng.f64())),
        5 => Some(Value::BytesValue(text(rng, 30).into_bytes())),
        6 => Some(Value::ArrayValue(ArrayValue {
            values: (0..rng.usize(..5)).map(|_| value(rng, depth + 1)).collect(),
        })),
        _ => Some(Value::KvlistValue(KeyValueList {
            values: attributes(rng, depth + 1),
        })),
    };
    AnyValue { value }
}

fn attributes(rng: &mut Rng, depth: u32) -> Vec<KeyValue> {
    (0..rng.usize(..6))
        .map(|_| KeyValue {
            key: text(rng, 20),
            value: rng.bool().then(|| value(rng, depth)),
            ..Default::default()
        })
        .collect()
}

fn resource(rng: &mut Rng) -> Option<Resource> {
    rng.bool().then(|| Resource {
        attributes: attributes(rng, 0),
        dropped_attributes_count: rng.u32(..3),
        ..Default::default()
    })
}

fn scope(rng: &mut Rng) -> Option<InstrumentationScope> {
    rng.bool().then(|| InstrumentationScope {
        name: text(rng, 20),
        version: text(rng, 5),
        attributes: attributes(rng, 0),
        dropped_attributes_count: 0,
    })
}

/// Up to `most` of something, sometimes many more (so requests get over caps).
fn count(rng: &mut Rng, most: usize) -> usize {
    if rng.u8(..10) == 0 {
        rng.usize(..most * 20)
    } else {
        rng.usize(..=most)
    }
}

fn span(rng: &mut Rng) -> Span {
    Span {
        trace_id: id(rng, 16),
        span_id: id(rng, 8),
        trace_state: text(rng, 10),
        parent_span_id: id(rng, 8),
        flags: rng.u32(..),
        name: text(rng, 40),
        kind: rng.i32(0..6),
        start_time_unix_nano: rng.u64(..),
        end_time_unix_nano: rng.u64(..),
        attributes: attributes(rng, 0),
        dropped_attributes_count: 0,
        events: (0..rng.usize(..3))
            .map(|_| span::Event {
                time_unix_nano: rng.u64(..),
                name: text(rng, 10),
                attributes: attributes(rng, 0),
                dropped_attributes_count: 0,
            })
            .collect(),
        dropped_events_count: 0,
        links: (0..rng.usize(..3))
            .map(|_| span::Link {
                trace_id: id(rng, 16),
                span_id: id(rng, 8),
                trace_state: String::new(),
                attributes: attributes(rng, 0),
                dropped_attributes_count: 0,
                flags: 1,
            })
            .collect(),
        dropped_links_count: 0,
        status: rng.bool().then(|| Status {
            message: text(rng, 10),
            code: rng.i32(0..3),
        }),
    }
}

pub fn traces(rng: &mut Rng) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: (0..rng.usize(..=3))
            .map(|_| ResourceSpans {
                resource: resource(rng),
                scope_spans: (0..rng.usize(..=3))
                    .map(|_| ScopeSpans {
                        scope: scope(rng),
                        spans: (0..count(rng, 10)).map(|_| span(rng)).collect(),
                        schema_url: text(rng, 10),
                    })
                    .collect(),
                schema_url: text(rng, 10),
            })
            .collect(),
    }
}

pub fn logs(rng: &mut Rng) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: (0..rng.usize(..=3))
            .map(|_| ResourceLogs {
                resource: resource(rng),
                scope_logs: (0..rng.usize(..=3))
                    .map(|_| ScopeLogs {
                        scope: scope(rng),
                        log_records: (0..count(rng, 10))
                            .map(|_| LogRecord {
                                time_unix_nano: rng.u64(..),
                                severity_number: rng.i32(0..25),
                                severity_text: text(rng, 5),
                                body: rng.bool().then(|| value(rng, 0)),
                                attributes: attributes(rng, 0),
                                trace_id: id(rng, 16),
                                span_id: id(rng, 8),
                                event_name: text(rng, 10),
                                ..Default::default()
                            })
                            .collect(),
                        schema_url: text(rng, 10),
                    })
                    .collect(),
                schema_url: text(rng, 10),
            })
            .collect(),
    }
}

fn exemplars(rng: &mut Rng) -> Vec<Exemplar> {
    (0..rng.usize(..3))
        .map(|_| Exemplar {
            filtered_attributes: attributes(rng, 1),
            time_unix_nano: rng.u64(..),
            span_id: id(rng, 8),
            trace_id: id(rng, 16),
            value: Some(exemplar::Value::AsDouble(rng.f64())),
        })
        .collect()
}

fn number_points(rng: &mut Rng) -> Vec<NumberDataPoint> {
    (0..rng.usize(..=5))
        .map(|_| NumberDataPoint {
            attributes: attributes(rng, 1),
            time_unix_nano: rng.u64(..),
            exemplars: exemplars(rng),
            value: Some(number_data_point::Value::AsInt(rng.i64(..))),
            ..Default::default()
        })
        .collect()
}

fn metric(rng: &mut Rng) -> Metric {
    let data = match rng.u8(..5) {
        0 => None,
        1 => Some(metric::Data::Gauge(Gauge {
            data_points: number_points(rng),
        })),
        2 => Some(metric::Data::Sum(Sum {
            data_points: number_points(rng),
            aggregation_temporality: 2,
            is_monotonic: rng.bool(),
        })),
        3 => Some(metric::Data::Histogram(Histogram {
            data_points: (0..rng.usize(..=4))
                .map(|_| {
                    let buckets = rng.usize(..20);
                    HistogramDataPoint {
                        attributes: attributes(rng, 1),
                        count: rng.u64(..),
                        bucket_counts: (0..=buckets).map(|_| rng.u64(..)).collect(),
                        explicit_bounds: (0..buckets).map(|b| b as f64).collect(),
                        exemplars: exemplars(rng),
                        ..Default::default()
                    }
                })
                .collect(),
            aggregation_temporality: 1,
        })),
        _ => Some(metric::Data::Summary(Summary {
            data_points: (0..rng.usize(..=4))
                .map(|_| SummaryDataPoint {
                    attributes: attributes(rng, 1),
                    quantile_values: (0..rng.usize(..4))
                        .map(|q| ValueAtQuantile {
                            quantile: q as f64 / 4.0,
                            value: rng.f64(),
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        })),
    };
    Metric {
        name: text(rng, 30),
        description: text(rng, 30),
        unit: text(rng, 3),
        metadata: attributes(rng, 1),
        data,
    }
}

pub fn metrics(rng: &mut Rng) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: (0..rng.usize(..=3))
            .map(|_| ResourceMetrics {
                resource: resource(rng),
                scope_metrics: (0..rng.usize(..=3))
                    .map(|_| ScopeMetrics {
                        scope: scope(rng),
                        metrics: (0..count(rng, 6)).map(|_| metric(rng)).collect(),
                        schema_url: text(rng, 10),
                    })
                    .collect(),
                schema_url: text(rng, 10),
            })
            .collect(),
    }
}
