//! Exact counts and bucket counts, dimensions, temporality, the cardinality limit, config
//! errors, and the connector's acknowledgements and flushes.

use std::sync::Mutex;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::proto::common::v1::{AnyValue, KeyValue, any_value::Value};
use sluice_pipeline::proto::metrics::v1::{
    HistogramDataPoint, NumberDataPoint, ResourceMetrics, metric::Data, number_data_point,
};
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sluice_pipeline::{Ack, Batch, BuildContext, ConnectorFactory, Consumer, Lifecycle};

use super::aggregate::Aggregator;
use super::*;

const MS: u64 = 1_000_000;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn span(name: &str, kind: i32, status: i32, duration_ns: u64, attrs: Vec<KeyValue>) -> Span {
    Span {
        name: name.into(),
        kind,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 1_000 + duration_ns,
        status: Some(Status {
            code: status,
            ..Default::default()
        }),
        attributes: attrs,
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service), kv("host.name", "h1")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Connector,
        id: ComponentId::with_name("spanmetrics", "t"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "connectors.spanmetrics/t".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

fn cfg(yaml: &str) -> SpanMetricsConfig {
    config::load(&component(yaml)).unwrap()
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match &a.value {
            Some(AnyValue {
                value: Some(Value::StringValue(s)),
            }) => Some(s.clone()),
            _ => None,
        })
}

/// (service, span name, kind, status) → (calls point, duration point)
type Row = (
    String,
    String,
    String,
    String,
    NumberDataPoint,
    HistogramDataPoint,
);

fn rows(out: &[ResourceMetrics]) -> Vec<Row> {
    let mut rows = Vec::new();
    for rm in out {
        let scope = &rm.scope_metrics[0];
        let Some(Data::Sum(calls)) = &scope.metrics[0].data else {
            panic!("calls is not a sum")
        };
        let Some(Data::Histogram(hist)) = &scope.metrics[1].data else {
            panic!("duration is not a histogram")
        };
        for (c, h) in calls.data_points.iter().zip(&hist.data_points) {
            assert_eq!(c.attributes, h.attributes);
            let a = &c.attributes;
            rows.push((
                str_attr(a, "service.name").unwrap_or_default(),
                str_attr(a, "span.name").unwrap_or_default(),
                str_attr(a, "span.kind").unwrap_or_default(),
                str_attr(a, "status.code").unwrap_or_default(),
                c.clone(),
                h.clone(),
            ));
        }
    }
    rows
}

fn int(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        _ => panic!("not an int"),
    }
}

#[test]
fn counts_and_buckets_match_the_spans_exactly() {
    let mut agg = Aggregator::new(cfg("{}"), 10);
    // Durations on bucket bounds land in that bucket (upper-inclusive), just above in the next.
    let spans = vec![
        span("GET /a", 2, 0, 2 * MS, vec![]),
        span("GET /a", 2, 0, 2 * MS + 1, vec![]),
        span("GET /a", 2, 0, 0, vec![]),
        span("GET /a", 2, 2, 20 * MS, vec![]),
        span("GET /a", 2, 2, 20_000 * MS, vec![]),
        span("query", 3, 0, 5 * MS, vec![]),
    ];
    let added = agg.add(
        &[
            traces("api", spans),
            traces("db", vec![span("scan", 1, 1, MS, vec![])]),
        ],
        20,
    );
    assert_eq!((added.spans, added.overflowed), (7, 0));
    let out = agg.flush(30);
    assert_eq!(out.len(), 2, "one resource per service");
    assert_eq!(
        out[0].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", "api")]
    );
    let names = &out[0].scope_metrics[0].metrics;
    assert_eq!(names[0].name, "traces.span.metrics.calls");
    assert_eq!(names[1].name, "traces.span.metrics.duration");
    assert_eq!(names[1].unit, "ms");
    let rows = rows(&out);
    let got: Vec<(&str, &str, &str, &str, i64, u64)> = rows
        .iter()
        .map(|r| (&r.0[..], &r.1[..], &r.2[..], &r.3[..], int(&r.4), r.5.count))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "api",
                "GET /a",
                "SPAN_KIND_SERVER",
                "STATUS_CODE_UNSET",
                3,
                3
            ),
            (
                "api",
                "GET /a",
                "SPAN_KIND_SERVER",
                "STATUS_CODE_ERROR",
                2,
                2
            ),
            (
                "api",
                "query",
                "SPAN_KIND_CLIENT",
                "STATUS_CODE_UNSET",
                1,
                1
            ),
            ("db", "scan", "SPAN_KIND_INTERNAL", "STATUS_CODE_OK", 1, 1),
        ]
    );
    // bounds: 2,4,6,8,10,50,100,200,400,800,1000,1400,2000,5000,10000,15000 (ms)
    let unset = &rows[0].5;
    assert_eq!(unset.explicit_bounds.len(), 16);
    assert_eq!(&unset.bucket_counts[..3], &[2, 1, 0]);
    assert_eq!(unset.bucket_counts.iter().sum::<u64>(), 3);
    let error = &rows[1].5;
    assert_eq!(error.bucket_counts[5], 1, "20ms is in (10, 50]");
    assert_eq!(error.bucket_counts[16], 1, "20s is above the last bound");
    assert_eq!(error.sum, Some(20_020.0));
    assert_eq!(rows[0].4.start_time_unix_nano, 20);
    assert_eq!(rows[0].4.time_unix_nano, 30);
}

#[test]
fn cumulative_keeps_counting_and_delta_resets() {
    let spans = || vec![traces("api", vec![span("op", 2, 0, MS, vec![])])];
    let mut cumulative = Aggregator::new(cfg("{}"), 0);
    cumulative.add(&spans(), 5);
    assert_eq!(int(&rows(&cumulative.flush(10))[0].4), 1);
    cumulative.add(&spans(), 15);
    let second = rows(&cumulative.flush(20));
    assert_eq!(int(&second[0].4), 2);
    assert_eq!(second[0].4.start_time_unix_nano, 5);
    // A cumulative series is reported even when nothing new was counted.
    assert_eq!(int(&rows(&cumulative.flush(30))[0].4), 2);

    let mut delta = Aggregator::new(
        cfg("aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA"),
        0,
    );
    delta.add(&spans(), 5);
    let first = delta.flush(10);
    let Some(Data::Sum(sum)) = &first[0].scope_metrics[0].metrics[0].data else {
        panic!()
    };
    assert_eq!(sum.aggregation_temporality, 1);
    assert_eq!(int(&rows(&first)[0].4), 1);
    assert_eq!(rows(&first)[0].4.start_time_unix_nano, 0);
    delta.add(&spans(), 15);
    delta.add(&spans(), 16);
    let second = rows(&delta.flush(20));
    assert_eq!((int(&second[0].4), second[0].5.count), (2, 2));
    assert_eq!(second[0].4.start_time_unix_nano, 10);
    assert!(delta.flush(30).is_empty(), "nothing counted, nothing sent");
}

#[test]
fn dimensions_come_from_span_then_resource_then_default() {
    let mut agg = Aggregator::new(
        cfg(r#"
dimensions:
  - name: http.method
    default: GET
  - name: host.name
  - name: missing
"#),
        0,
    );
    agg.add(
        &[traces(
            "api",
            vec![
                span("a", 2, 0, MS, vec![kv("http.method", "POST")]),
                span("a", 2, 0, MS, vec![]),
                span("a", 2, 0, MS, vec![kv("host.name", "override")]),
            ],
        )],
        1,
    );
    let rows = rows(&agg.flush(2));
    type Dims = (Option<String>, Option<String>, Option<String>, i64);
    let dims: Vec<Dims> = rows
        .iter()
        .map(|r| {
            let a = &r.4.attributes;
            (
                str_attr(a, "http.method"),
                str_attr(a, "host.name"),
                str_attr(a, "missing"),
                int(&r.4),
            )
        })
        .collect();
    assert_eq!(dims.len(), 3);
    assert!(dims.contains(&(Some("POST".into()), Some("h1".into()), None, 1)));
    assert!(dims.contains(&(Some("GET".into()), Some("h1".into()), None, 1)));
    assert!(dims.contains(&(Some("GET".into()), Some("override".into()), None, 1)));
}

#[test]
fn seconds_unit_and_custom_buckets_and_namespace() {
    let mut agg = Aggregator::new(
        cfg(r#"
namespace: red
histogram:
  unit: s
  explicit:
    buckets: [100ms, 1s]
"#),
        0,
    );
    agg.add(
        &[traces(
            "api",
            vec![
                span("a", 2, 0, 50 * MS, vec![]),
                span("a", 2, 0, 1000 * MS, vec![]),
                span("a", 2, 0, 3000 * MS, vec![]),
            ],
        )],
        1,
    );
    let out = agg.flush(2);
    let metrics = &out[0].scope_metrics[0].metrics;
    assert_eq!(
        (metrics[0].name.as_str(), metrics[1].name.as_str()),
        ("red.calls", "red.duration")
    );
    assert_eq!(metrics[1].unit, "s");
    let h = &rows(&out)[0].5;
    assert_eq!(h.explicit_bounds, vec![0.1, 1.0]);
    assert_eq!(h.bucket_counts, vec![1, 1, 1]);
    assert!((h.sum.unwrap() - 4.05).abs() < 1e-9);
}

#[test]
fn the_cardinality_limit_keeps_totals_exact_in_an_overflow_series() {
    let mut agg = Aggregator::new(cfg("aggregation_cardinality_limit: 2"), 0);
    let spans: Vec<Span> = (0..5)
        .map(|i| span(&format!("op{i}"), 2, 0, MS, vec![]))
        .collect();
    let added = agg.add(&[traces("api", spans.clone()), traces("api", spans)], 1);
    assert_eq!((added.spans, added.overflowed), (10, 6));
    let out = agg.flush(2);
    let rows = rows(&out);
    assert_eq!(rows.len(), 3);
    let total: i64 = rows.iter().map(|r| int(&r.4)).sum();
    assert_eq!(total, 10);
    let overflow = rows.last().unwrap();
    assert_eq!(int(&overflow.4), 6);
    assert!(
        overflow
            .4
            .attributes
            .iter()
            .any(|a| a.key == OVERFLOW_ATTRIBUTE)
    );
    assert!(out.last().unwrap().resource.is_none());
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        (
            "histogram: {explicit: {buckets: [10ms, 2ms]}}",
            "connectors.spanmetrics/t.histogram.explicit.buckets",
        ),
        (
            "metrics_flush_interval: 0s",
            "connectors.spanmetrics/t.metrics_flush_interval",
        ),
        (
            "dimensions: [{name: a}, {name: a}]",
            "connectors.spanmetrics/t.dimensions[1].name",
        ),
        (
            "dimensions: [{name: span.kind}]",
            "connectors.spanmetrics/t.dimensions[0].name",
        ),
        (
            "aggregation_cardinality_limit: 0",
            "connectors.spanmetrics/t.aggregation_cardinality_limit",
        ),
    ];
    for (yaml, path) in cases {
        let errors = config::load(&component(yaml))
            .err()
            .unwrap_or_else(|| panic!("{yaml} passed"));
        let text = errors.to_string();
        assert!(text.contains(path), "{yaml}: {text}");
    }
    for yaml in [
        "histogram: {unit: us}",
        "aggregation_temporality: DELTA",
        "bogus: 1",
    ] {
        assert!(config::load(&component(yaml)).is_err(), "{yaml} passed");
    }
    assert_eq!(
        cfg("dimensions_cache_size: 7").aggregation_cardinality_limit,
        7
    );
}

struct Sink(Mutex<Vec<Vec<ResourceMetrics>>>);

#[async_trait]
impl Consumer<Metrics> for Sink {
    async fn consume(&self, batch: Batch<Metrics>) {
        self.0.lock().unwrap().push(batch.resources().to_vec());
        batch.settle(&Ok(()));
    }
}

#[tokio::test]
async fn acknowledges_on_arrival_and_flushes_on_shutdown() {
    let sink = Arc::new(Sink(Mutex::new(vec![])));
    let built = SpanMetricsConnectorFactory
        .build(
            &component("metrics_flush_interval: 1h"),
            SignalKind::Traces,
            AnyConsumer::Metrics(sink.clone()),
            &BuildContext::default(),
        )
        .unwrap();
    let AnyConsumer::Traces(input) = built.consumer else {
        panic!("not a traces consumer")
    };
    let lifecycle = built.lifecycle.unwrap();
    lifecycle.start().await.unwrap();
    let (ack, waiter) = Ack::new();
    input
        .consume(
            Batch::from_resources(vec![traces("api", vec![span("a", 2, 0, MS, vec![])])])
                .with_ack(ack),
        )
        .await;
    assert_eq!(waiter.await, Ok(()));
    assert!(
        sink.0.lock().unwrap().is_empty(),
        "nothing before the interval"
    );
    lifecycle
        .shutdown(Instant::now() + std::time::Duration::from_secs(5))
        .await;
    let sent = sink.0.lock().unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(int(&rows(&sent[0])[0].4), 1);
}

#[tokio::test]
async fn the_ticker_flushes_every_interval() {
    let sink = Arc::new(Sink(Mutex::new(vec![])));
    let clock_value = Arc::new(std::sync::atomic::AtomicU64::new(100));
    let c = clock_value.clone();
    let connector = SpanMetricsConnector::new(
        cfg("metrics_flush_interval: 10ms"),
        sink.clone(),
        "spanmetrics/t",
        &BuildContext::default(),
        Arc::new(move || c.load(std::sync::atomic::Ordering::SeqCst)),
    );
    connector.start().await.unwrap();
    connector
        .consume(Batch::from_resources(vec![traces(
            "api",
            vec![span("a", 2, 0, MS, vec![])],
        )]))
        .await;
    clock_value.store(200, std::sync::atomic::Ordering::SeqCst);
    // Waits for the tick, however slow the machine; the bound only stops a hang.
    for _ in 0..1000 {
        if !sink.0.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    {
        let sent = sink.0.lock().unwrap();
        assert!(!sent.is_empty());
        assert_eq!(rows(&sent[0])[0].4.time_unix_nano, 200);
        assert_eq!(int(&rows(&sent[0])[0].4), 1);
    }
    connector
        .shutdown(Instant::now() + std::time::Duration::from_secs(5))
        .await;
}
