//! Every key's effect on what the connector produces: exact counts and buckets, dimensions,
//! temporality and start times, resources, caches and expiration, exemplars, events,
//! sampling, the cardinality limit, config errors and warnings, and the connector's
//! acknowledgements and flushes.

use std::sync::Mutex;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::config_keys::ConfigWarnings;
use sluice_pipeline::proto::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use sluice_pipeline::proto::metrics::v1::{
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    exemplar, metric::Data, number_data_point,
};
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::proto::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};
use sluice_pipeline::{Ack, Batch, BuildContext, ConnectorFactory, Consumer, Lifecycle};

use super::aggregate::Aggregator;
use super::*;

const MS: u64 = 1_000_000;
const INSTANCE: &str = "instance-1";

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

fn resource_spans(attrs: Vec<KeyValue>, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: attrs,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> ResourceSpans {
    resource_spans(
        vec![kv("service.name", service), kv("host.name", "h1")],
        spans,
    )
}

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Connector,
        id: ComponentId::with_name("span_metrics", "t"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "connectors.span_metrics/t".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

fn settings(yaml: &str) -> Settings {
    config::load(&component(yaml), &ConfigWarnings::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn agg(yaml: &str) -> Aggregator {
    Aggregator::new(settings(yaml), INSTANCE.into())
}

fn errors(yaml: &str) -> String {
    match config::load(&component(yaml), &ConfigWarnings::default()) {
        Ok(_) => panic!("{yaml} passed"),
        Err(e) => e.to_string(),
    }
}

fn warnings(yaml: &str) -> Vec<String> {
    let w = ConfigWarnings::default();
    config::load(&component(yaml), &w).unwrap_or_else(|e| panic!("{e}"));
    w.take()
        .into_iter()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect()
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

fn keys(attrs: &[KeyValue]) -> Vec<&str> {
    attrs.iter().map(|a| a.key.as_str()).collect()
}

/// The metric named `<namespace>.<name>` (or bare `<name>`), given as `.name`.
fn metric<'a>(rm: &'a ResourceMetrics, suffix: &str) -> Option<&'a Metric> {
    rm.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name.ends_with(suffix) || Some(m.name.as_str()) == suffix.strip_prefix('.'))
}

fn sums(rm: &ResourceMetrics, suffix: &str) -> Vec<NumberDataPoint> {
    match metric(rm, suffix).and_then(|m| m.data.as_ref()) {
        Some(Data::Sum(s)) => s.data_points.clone(),
        other => panic!("{suffix} is not a sum: {other:?}"),
    }
}

fn calls(rm: &ResourceMetrics) -> Vec<NumberDataPoint> {
    sums(rm, ".calls")
}

fn durations(rm: &ResourceMetrics) -> Vec<HistogramDataPoint> {
    match metric(rm, ".duration").and_then(|m| m.data.as_ref()) {
        Some(Data::Histogram(h)) => h.data_points.clone(),
        other => panic!("duration is not a histogram: {other:?}"),
    }
}

fn int(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        _ => panic!("not an int"),
    }
}

const DELTA: &str = "aggregation_temporality: AGGREGATION_TEMPORALITY_DELTA\n";

#[test]
fn counts_and_buckets_match_the_spans_exactly() {
    let mut agg = agg(DELTA);
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
    assert_eq!(out.len(), 2, "one output resource per input resource");
    // The resource is the spans' resource, whole.
    assert_eq!(
        out[0].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", "api"), kv("host.name", "h1")]
    );
    assert_eq!(
        out[0].scope_metrics[0].scope.as_ref().unwrap().name,
        "spanmetricsconnector"
    );
    let names: Vec<&str> = out[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["traces.span.metrics.calls", "traces.span.metrics.duration"]
    );
    assert_eq!(metric(&out[0], ".duration").unwrap().unit, "ms");
    let c = calls(&out[0]);
    let h = durations(&out[0]);
    assert_eq!(c.len(), 3);
    for (c, h) in c.iter().zip(&h) {
        assert_eq!(c.attributes, h.attributes);
        assert_eq!(
            keys(&c.attributes),
            [
                "service.name",
                "span.name",
                "span.kind",
                "status.code",
                "collector.instance.id"
            ]
        );
        assert_eq!(
            str_attr(&c.attributes, "collector.instance.id").as_deref(),
            Some(INSTANCE)
        );
        assert_eq!(int(c) as u64, h.count);
    }
    let find = |name: &str, status: &str| {
        let i = c
            .iter()
            .position(|p| {
                str_attr(&p.attributes, "span.name").as_deref() == Some(name)
                    && str_attr(&p.attributes, "status.code").as_deref() == Some(status)
            })
            .unwrap();
        (int(&c[i]), h[i].clone())
    };
    let (n, unset) = find("GET /a", "STATUS_CODE_UNSET");
    assert_eq!(n, 3);
    // bounds: 2,4,6,8,10,50,100,200,400,800,1000,1400,2000,5000,10000,15000 (ms)
    assert_eq!(unset.explicit_bounds.len(), 16);
    assert_eq!(&unset.bucket_counts[..3], &[2, 1, 0]);
    let (n, error) = find("GET /a", "STATUS_CODE_ERROR");
    assert_eq!(n, 2);
    assert_eq!(error.bucket_counts[5], 1, "20ms is in (10, 50]");
    assert_eq!(error.bucket_counts[16], 1, "20s is above the last bound");
    assert_eq!(error.sum, Some(20_020.0));
    assert_eq!(find("query", "STATUS_CODE_UNSET").0, 1);
    assert_eq!(
        str_attr(&calls(&out[1])[0].attributes, "span.kind").as_deref(),
        Some("SPAN_KIND_INTERNAL")
    );
}

#[test]
fn cumulative_sums_start_at_zero_keep_counting_and_delta_resets() {
    let spans = || vec![traces("api", vec![span("op", 2, 0, MS, vec![])])];
    let mut cumulative = agg("{}");
    cumulative.add(&spans(), 5);
    let first = cumulative.flush(10);
    // As the OTel Collector: a new cumulative calls series reports 0 first, so a rate
    // computed downstream sees it start from zero; the histogram reports at once.
    assert_eq!(int(&calls(&first[0])[0]), 0);
    assert_eq!(durations(&first[0])[0].count, 1);
    cumulative.add(&spans(), 15);
    let second = cumulative.flush(20);
    assert_eq!(int(&calls(&second[0])[0]), 2);
    assert_eq!(durations(&second[0])[0].count, 2);
    assert_eq!(calls(&second[0])[0].start_time_unix_nano, 5);
    assert_eq!(calls(&second[0])[0].time_unix_nano, 20);
    let Some(Data::Sum(sum)) = &metric(&second[0], ".calls").unwrap().data else {
        panic!()
    };
    assert_eq!((sum.aggregation_temporality, sum.is_monotonic), (2, true));
    // A cumulative series is reported even when nothing new was counted.
    assert_eq!(int(&calls(&cumulative.flush(30)[0])[0]), 2);

    let mut delta = agg(DELTA);
    delta.add(&spans(), 5);
    let first = delta.flush(10);
    let Some(Data::Sum(sum)) = &metric(&first[0], ".calls").unwrap().data else {
        panic!()
    };
    assert_eq!(sum.aggregation_temporality, 1);
    assert_eq!(int(&calls(&first[0])[0]), 1);
    assert_eq!(calls(&first[0])[0].start_time_unix_nano, 5);
    delta.add(&spans(), 15);
    delta.add(&spans(), 16);
    let second = delta.flush(20);
    assert_eq!(
        (int(&calls(&second[0])[0]), durations(&second[0])[0].count),
        (2, 2)
    );
    // Delta points follow one another: each starts where the last ended.
    assert_eq!(calls(&second[0])[0].start_time_unix_nano, 10);
    assert_eq!(durations(&second[0])[0].start_time_unix_nano, 10);
    assert!(delta.flush(30).is_empty(), "nothing counted, nothing sent");
}

#[test]
fn metric_timestamp_cache_size_bounds_the_remembered_delta_starts() {
    let mut delta = agg(&format!("{DELTA}metric_timestamp_cache_size: 1\n"));
    let two = || {
        vec![traces(
            "api",
            vec![span("a", 2, 0, MS, vec![]), span("b", 2, 0, MS, vec![])],
        )]
    };
    delta.add(&two(), 5);
    delta.flush(10);
    delta.add(&two(), 15);
    let out = delta.flush(20);
    // Two series keys (a and b, each shared by its calls and duration points, as in the OTel
    // Collector) were flushed and one is remembered: the other starts where it was counted
    // again.
    let starts: Vec<u64> = calls(&out[0])
        .iter()
        .map(|p| p.start_time_unix_nano)
        .chain(durations(&out[0]).iter().map(|p| p.start_time_unix_nano))
        .collect();
    assert_eq!(starts.iter().filter(|s| **s == 10).count(), 2, "{starts:?}");
    assert_eq!(starts.iter().filter(|s| **s == 15).count(), 2, "{starts:?}");
    assert!(
        errors(&format!("{DELTA}metric_timestamp_cache_size: 0"))
            .contains("connectors.span_metrics/t.metric_timestamp_cache_size")
    );
    // Cumulative does not use it.
    settings("metric_timestamp_cache_size: 0");
}

#[test]
fn resources_are_told_apart_by_their_attributes_or_the_key_attributes() {
    let pod = |p: &str| {
        resource_spans(
            vec![kv("service.name", "api"), kv("k8s.pod.name", p)],
            vec![span("a", 2, 0, MS, vec![])],
        )
    };
    let mut all = agg(DELTA);
    all.add(&[pod("p1"), pod("p2")], 1);
    assert_eq!(all.flush(2).len(), 2);

    let mut keyed = agg(&format!(
        "{DELTA}resource_metrics_key_attributes: [service.name]\n"
    ));
    keyed.add(&[pod("p1"), pod("p2")], 1);
    let out = keyed.flush(2);
    assert_eq!(out.len(), 1);
    assert_eq!(int(&calls(&out[0])[0]), 2);
    // The resource written is the first one seen with that key, whole.
    assert_eq!(
        out[0].resource.as_ref().unwrap().attributes,
        vec![kv("service.name", "api"), kv("k8s.pod.name", "p1")]
    );
}

#[test]
fn spans_of_resources_without_a_service_are_not_counted() {
    let mut agg = agg(DELTA);
    let added = agg.add(
        &[resource_spans(
            vec![kv("host.name", "h")],
            vec![span("a", 2, 0, MS, vec![])],
        )],
        1,
    );
    assert_eq!(added.spans, 1);
    assert!(agg.flush(2).is_empty());
}

#[test]
fn dimensions_come_from_span_then_resource_then_default() {
    let mut agg = agg(&format!(
        r#"{DELTA}
dimensions:
  - name: http.method
    default: GET
  - name: host.name
  - name: missing
"#
    ));
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
    let out = agg.flush(2);
    type Dims = (Option<String>, Option<String>, Option<String>, i64);
    let dims: Vec<Dims> = calls(&out[0])
        .iter()
        .map(|p| {
            let a = &p.attributes;
            (
                str_attr(a, "http.method"),
                str_attr(a, "host.name"),
                str_attr(a, "missing"),
                int(p),
            )
        })
        .collect();
    assert_eq!(dims.len(), 3);
    assert!(dims.contains(&(Some("POST".into()), Some("h1".into()), None, 1)));
    assert!(dims.contains(&(Some("GET".into()), Some("h1".into()), None, 1)));
    assert!(dims.contains(&(Some("GET".into()), Some("override".into()), None, 1)));
}

#[test]
fn calls_and_histogram_dimensions_apply_to_their_metric_only_and_globs_add_every_match() {
    let mut agg = agg(&format!(
        r#"{DELTA}
dimensions:
  - glob: "k8s.*"
calls_dimensions:
  - name: http.route
histogram:
  dimensions:
    - name: http.method
"#
    ));
    agg.add(
        &[resource_spans(
            vec![
                kv("service.name", "api"),
                kv("k8s.pod.name", "p"),
                kv("k8s.namespace.name", "ns"),
                kv("host.name", "h"),
            ],
            vec![span(
                "a",
                2,
                0,
                MS,
                vec![kv("http.route", "/x"), kv("http.method", "GET")],
            )],
        )],
        1,
    );
    let out = agg.flush(2);
    let c = &calls(&out[0])[0].attributes;
    let h = &durations(&out[0])[0].attributes;
    assert_eq!(
        &keys(c)[5..],
        ["k8s.namespace.name", "k8s.pod.name", "http.route"]
    );
    assert_eq!(
        &keys(h)[5..],
        ["k8s.namespace.name", "k8s.pod.name", "http.method"]
    );
}

#[test]
fn exclude_dimensions_leaves_default_dimensions_out() {
    let mut agg = agg(&format!(
        "{DELTA}exclude_dimensions: [status.code, collector.instance.id]\n"
    ));
    agg.add(
        &[traces(
            "api",
            vec![span("a", 2, 0, MS, vec![]), span("a", 2, 2, MS, vec![])],
        )],
        1,
    );
    let out = agg.flush(2);
    let c = calls(&out[0]);
    assert_eq!(c.len(), 1, "the two statuses are one series now");
    assert_eq!(int(&c[0]), 2);
    assert_eq!(
        keys(&c[0].attributes),
        ["service.name", "span.name", "span.kind"]
    );
}

#[test]
fn histogram_disable_unit_buckets_and_namespace() {
    let mut off = agg(&format!("{DELTA}histogram: {{disable: true}}\n"));
    off.add(&[traces("api", vec![span("a", 2, 0, MS, vec![])])], 1);
    let out = off.flush(2);
    assert!(metric(&out[0], ".duration").is_none());
    assert_eq!(int(&calls(&out[0])[0]), 1);

    let mut s = agg(&format!(
        "{DELTA}namespace: red\nhistogram:\n  unit: s\n  explicit:\n    buckets: [100ms, 1s]\n"
    ));
    s.add(
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
    let out = s.flush(2);
    let names: Vec<&str> = out[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["red.calls", "red.duration"]);
    assert_eq!(metric(&out[0], ".duration").unwrap().unit, "s");
    let h = &durations(&out[0])[0];
    assert_eq!(h.explicit_bounds, vec![0.1, 1.0]);
    assert_eq!(h.bucket_counts, vec![1, 1, 1]);
    assert!((h.sum.unwrap() - 4.05).abs() < 1e-9);

    // The default bounds follow the unit; an empty namespace gives bare names.
    let mut bare = agg(&format!("{DELTA}namespace: ''\nhistogram: {{unit: s}}\n"));
    bare.add(&[traces("api", vec![span("a", 2, 0, MS, vec![])])], 1);
    let out = bare.flush(2);
    assert_eq!(out[0].scope_metrics[0].metrics[0].name, "calls");
    assert_eq!(durations(&out[0])[0].explicit_bounds[0], 0.002);
}

#[test]
fn exponential_histograms_hold_every_duration() {
    let mut agg = agg(&format!(
        "{DELTA}histogram:\n  exponential:\n    max_size: 10\n"
    ));
    agg.add(
        &[traces(
            "api",
            (1..=50)
                .map(|i| span("a", 2, 0, i * i * MS, vec![]))
                .collect(),
        )],
        1,
    );
    let out = agg.flush(2);
    let Some(Data::ExponentialHistogram(h)) = &metric(&out[0], ".duration").unwrap().data else {
        panic!("not exponential")
    };
    let p: &ExponentialHistogramDataPoint = &h.data_points[0];
    assert_eq!(p.count, 50);
    let buckets = p.positive.as_ref().unwrap();
    assert!(buckets.bucket_counts.len() <= 10);
    assert_eq!(buckets.bucket_counts.iter().sum::<u64>(), 50);
    assert_eq!((p.min, p.max), (Some(1.0), Some(2500.0)));
    // The exponential section alone (no value) turns it on with 160 buckets.
    let mut default = agg_from("histogram:\n  exponential:\n");
    default.add(&[traces("api", vec![span("a", 2, 0, MS, vec![])])], 1);
    assert!(matches!(
        metric(&default.flush(2)[0], ".duration").unwrap().data,
        Some(Data::ExponentialHistogram(_))
    ));
}

fn agg_from(yaml: &str) -> Aggregator {
    agg(yaml)
}

#[test]
fn exemplars_carry_trace_and_span_ids_for_one_flush() {
    let traced = |trace: u8| Span {
        trace_id: vec![trace; 16],
        span_id: vec![7; 8],
        ..span("a", 2, 0, 3 * MS, vec![])
    };
    let mut agg = agg("exemplars:\n  enabled: true\n  max_per_data_point: 2\n");
    agg.add(
        &[traces(
            "api",
            vec![traced(1), traced(2), traced(3), traced(0)],
        )],
        1,
    );
    let out = agg.flush(5);
    let h = &durations(&out[0])[0];
    assert_eq!(h.exemplars.len(), 2, "capped at max_per_data_point");
    assert_eq!(h.exemplars[0].trace_id, vec![1; 16]);
    assert_eq!(h.exemplars[0].span_id, vec![7; 8]);
    assert_eq!(h.exemplars[0].time_unix_nano, 5);
    assert_eq!(h.exemplars[0].value, Some(exemplar::Value::AsDouble(3.0)));
    assert_eq!(calls(&out[0])[0].exemplars.len(), 2);
    // Exemplars belong to the spans of one interval.
    assert!(durations(&agg.flush(6)[0])[0].exemplars.is_empty());

    let mut off = self::agg("{}");
    off.add(&[traces("api", vec![traced(1)])], 1);
    assert!(durations(&off.flush(2)[0])[0].exemplars.is_empty());
}

#[test]
fn events_are_counted_with_their_dimensions() {
    let mut agg = agg(&format!(
        "{DELTA}events:\n  enabled: true\n  dimensions:\n    - name: exception.type\n    - name: host.name\n"
    ));
    let event = |t: &str| Event {
        name: "exception".into(),
        attributes: vec![kv("exception.type", t), kv("host.name", "from-event")],
        ..Default::default()
    };
    let mut s = span("a", 2, 2, MS, vec![]);
    s.events = vec![event("IOError"), event("IOError"), event("Timeout")];
    agg.add(&[traces("api", vec![s])], 1);
    let out = agg.flush(2);
    let e = sums(&out[0], ".events");
    let got: Vec<(Option<String>, Option<String>, i64)> = e
        .iter()
        .map(|p| {
            (
                str_attr(&p.attributes, "exception.type"),
                str_attr(&p.attributes, "host.name"),
                int(p),
            )
        })
        .collect();
    assert_eq!(got.len(), 2);
    assert!(got.contains(&(Some("IOError".into()), Some("from-event".into()), 2)));
    assert!(got.contains(&(Some("Timeout".into()), Some("from-event".into()), 1)));
    assert!(errors("events: {enabled: true}").contains("no dimensions configured for events"));
}

#[test]
fn listed_instrumentation_scopes_become_dimensions() {
    let mut agg = agg(&format!(
        "{DELTA}include_instrumentation_scope: [io.opentelemetry.http]\n"
    ));
    let with_scope = |name: &str| ResourceSpans {
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.into(),
                version: "1.2".into(),
                ..Default::default()
            }),
            spans: vec![span("a", 2, 0, MS, vec![])],
            ..Default::default()
        }],
        ..traces("api", vec![])
    };
    agg.add(
        &[with_scope("io.opentelemetry.http"), with_scope("other")],
        1,
    );
    let out = agg.flush(2);
    let points = calls(&out[0]);
    assert_eq!(points.len(), 2);
    let scoped: Vec<(Option<String>, Option<String>)> = points
        .iter()
        .map(|p| {
            (
                str_attr(&p.attributes, "span.instrumentation.scope.name"),
                str_attr(&p.attributes, "span.instrumentation.scope.version"),
            )
        })
        .collect();
    assert!(scoped.contains(&(Some("io.opentelemetry.http".into()), Some("1.2".into()))));
    assert!(scoped.contains(&(None, None)));
}

#[test]
fn sampled_spans_count_for_what_they_stand_for() {
    let sampled = |state: &str| Span {
        trace_state: state.into(),
        ..span("a", 2, 0, MS, vec![])
    };
    let mut agg = agg(&format!("{DELTA}enable_metrics_sampling_method: true\n"));
    agg.add(
        &[traces(
            "api",
            vec![sampled("ot=th:c"), sampled("ot=th:8"), sampled("")],
        )],
        1,
    );
    let out = agg.flush(2);
    let got: Vec<(Option<String>, i64)> = calls(&out[0])
        .iter()
        .map(|p| (str_attr(&p.attributes, "sampling.method"), int(p)))
        .collect();
    // th:c keeps 1 in 4, th:8 1 in 2: 4 + 2 spans extrapolated, 1 counted.
    assert!(got.contains(&(Some("extrapolated".into()), 6)), "{got:?}");
    assert!(got.contains(&(Some("counted".into()), 1)), "{got:?}");
    let extrapolated = durations(&out[0])
        .into_iter()
        .find(|p| str_attr(&p.attributes, "sampling.method").as_deref() == Some("extrapolated"))
        .unwrap();
    assert_eq!(extrapolated.count, 6);

    // Without the attribute the counts are still adjusted, in one series.
    let mut plain = self::agg(DELTA);
    plain.add(&[traces("api", vec![sampled("ot=th:8"), sampled("")])], 1);
    let out = plain.flush(2);
    assert_eq!(calls(&out[0]).len(), 1);
    assert_eq!(int(&calls(&out[0])[0]), 3);
}

#[test]
fn the_cardinality_limit_keeps_totals_exact_in_an_overflow_series() {
    let mut agg = agg(&format!("{DELTA}aggregation_cardinality_limit: 2\n"));
    let spans: Vec<Span> = (0..5)
        .map(|i| span(&format!("op{i}"), 2, 0, MS, vec![]))
        .collect();
    let added = agg.add(&[traces("api", spans.clone()), traces("api", spans)], 1);
    // Per span: its calls point and its duration point (3 of 5 names overflow, twice).
    assert_eq!((added.spans, added.overflowed), (10, 12));
    let out = agg.flush(2);
    let c = calls(&out[0]);
    assert_eq!(c.len(), 3);
    assert_eq!(c.iter().map(int).sum::<i64>(), 10);
    let overflow = c
        .iter()
        .find(|p| p.attributes.iter().any(|a| a.key == OVERFLOW_ATTRIBUTE))
        .unwrap();
    assert_eq!(int(overflow), 6);
    assert_eq!(overflow.attributes.len(), 1);
    assert_eq!(durations(&out[0]).iter().map(|p| p.count).sum::<u64>(), 10);

    // The default, 0, sets no limit.
    let mut unlimited = self::agg(DELTA);
    let many: Vec<Span> = (0..3000)
        .map(|i| span(&format!("op{i}"), 2, 0, MS, vec![]))
        .collect();
    assert_eq!(unlimited.add(&[traces("api", many)], 1).overflowed, 0);
    assert_eq!(calls(&unlimited.flush(2)[0]).len(), 3000);
}

#[test]
fn series_and_resources_expire_when_nothing_new_comes() {
    let s = 1_000_000_000u64;
    let mut agg = agg("series_expiration: 10s\nmetrics_expiration: 20s\n");
    agg.add(
        &[
            traces("api", vec![span("a", 2, 0, MS, vec![])]),
            traces("db", vec![span("q", 2, 0, MS, vec![])]),
        ],
        0,
    );
    agg.flush(s);
    // Only "api"/"b" keeps coming.
    agg.add(&[traces("api", vec![span("b", 2, 0, MS, vec![])])], 5 * s);
    let out = agg.flush(10 * s);
    assert_eq!(out.len(), 2, "expired series are sent a last time");
    agg.add(&[traces("api", vec![span("b", 2, 0, MS, vec![])])], 12 * s);
    let out = agg.flush(15 * s);
    assert_eq!(
        out.len(),
        1,
        "db had nothing new for 10s: its only series went"
    );
    let names: Vec<String> = calls(&out[0])
        .iter()
        .filter_map(|p| str_attr(&p.attributes, "span.name"))
        .collect();
    assert_eq!(names, ["b"]);
    assert!(agg.flush(40 * s).len() == 1);
    assert!(agg.flush(41 * s).is_empty(), "api expired after 20s");
}

#[test]
fn the_resource_cache_keeps_the_most_recent_resources() {
    let mut agg = agg("resource_metrics_cache_size: 1\n");
    agg.add(&[traces("a", vec![span("x", 2, 0, MS, vec![])])], 1);
    agg.add(&[traces("b", vec![span("x", 2, 0, MS, vec![])])], 2);
    // The pushed-out resource is sent once more, then forgotten.
    assert_eq!(agg.flush(3).len(), 2);
    let out = agg.flush(4);
    assert_eq!(out.len(), 1);
    assert_eq!(
        str_attr(
            &out[0].resource.as_ref().unwrap().attributes,
            "service.name"
        )
        .as_deref(),
        Some("b")
    );
    assert!(errors("resource_metrics_cache_size: 0").contains("resource_metrics_cache_size"));
}

#[test]
fn unknown_temporality_is_cumulative_with_a_warning_and_deprecated_keys_warn() {
    let w = warnings("aggregation_temporality: DELTA\ndimensions_cache_size: 100\n");
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("dimensions_cache_size") && w[0].contains("aggregation_cardinality_limit")
    );
    assert!(w[1].contains("aggregation_temporality") && w[1].contains("cumulative"));
    assert_eq!(
        settings("aggregation_temporality: DELTA").temporality,
        Temporality::Cumulative
    );
    assert!(warnings("add_resource_attributes: true").is_empty());
}

#[test]
fn config_errors_name_the_key() {
    let p = "connectors.span_metrics/t";
    let cases = [
        (
            "histogram: {explicit: {buckets: [10ms, 2ms]}}",
            "histogram.explicit.buckets",
        ),
        ("metrics_flush_interval: 0s", "metrics_flush_interval"),
        ("dimensions: [{name: a}, {name: a}]", "dimensions[1].name"),
        ("dimensions: [{name: span.kind}]", "dimensions[0].name"),
        (
            "calls_dimensions: [{name: status.code}]",
            "calls_dimensions[0].name",
        ),
        (
            "histogram: {dimensions: [{name: a, glob: 'b*'}]}",
            "histogram.dimensions[0]",
        ),
        ("dimensions: [{default: x}]", "dimensions[0]"),
        ("dimensions: [{glob: 'a[b'}]", "dimensions[0].glob"),
        (
            "aggregation_cardinality_limit: -1",
            "aggregation_cardinality_limit",
        ),
        (
            "histogram: {explicit: {buckets: [1ms]}, exponential: {max_size: 10}}",
            "histogram",
        ),
        (
            "histogram: {exponential: {max_size: 1}}",
            "histogram.exponential.max_size",
        ),
    ];
    for (yaml, key) in cases {
        let text = errors(yaml);
        assert!(text.contains(&format!("{p}.{key}")), "{yaml}: {text}");
    }
    for yaml in ["histogram: {unit: us}", "bogus: 1", "exemplars: {bogus: 1}"] {
        errors(yaml);
    }
}

#[test]
fn the_connector_answers_to_both_type_names() {
    let info = SpanMetricsConnectorFactory.info();
    assert_eq!(info.type_name, "span_metrics");
    assert!(info.aliases.contains(&"spanmetrics"));
}

#[test]
fn the_collector_instance_id_is_one_uuid_per_process() {
    let id = collector_instance_id();
    assert_eq!(id, collector_instance_id());
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(parts[2].starts_with('4'), "version 4: {id}");
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
            &component(&format!("{DELTA}metrics_flush_interval: 1h")),
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
    assert_eq!(int(&calls(&sent[0][0])[0]), 1);
    assert_eq!(
        str_attr(&calls(&sent[0][0])[0].attributes, "collector.instance.id").as_deref(),
        Some(collector_instance_id())
    );
}

#[tokio::test]
async fn the_ticker_flushes_every_interval() {
    let sink = Arc::new(Sink(Mutex::new(vec![])));
    let clock_value = Arc::new(std::sync::atomic::AtomicU64::new(100));
    let c = clock_value.clone();
    let connector = SpanMetricsConnector::new(
        settings(&format!("{DELTA}metrics_flush_interval: 10ms")),
        sink.clone(),
        "span_metrics/t",
        &BuildContext::default(),
        Arc::new(move || c.load(std::sync::atomic::Ordering::SeqCst)),
    );
    connector.start().await.unwrap();
    clock_value.store(200, std::sync::atomic::Ordering::SeqCst);
    connector
        .consume(Batch::from_resources(vec![traces(
            "api",
            vec![span("a", 2, 0, MS, vec![])],
        )]))
        .await;
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
        assert_eq!(calls(&sent[0][0])[0].time_unix_nano, 200);
        assert_eq!(int(&calls(&sent[0][0])[0]), 1);
    }
    connector
        .shutdown(Instant::now() + std::time::Duration::from_secs(5))
        .await;
}
