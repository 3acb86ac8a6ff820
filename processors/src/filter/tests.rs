//! Evaluation in every context, and the processor as the service builds it: config errors,
//! what is dropped, empty containers, acknowledgements, error modes and the self-metrics.

use std::sync::Mutex;

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span::Event};
use sluice_config::{ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::{Ack, Outcome};

use super::eval::{Item, Point, eval};
use super::parser::parse;
use super::paths::Context;
use super::*;

// ---- data builders ----

pub(super) fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub(super) fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

pub(super) fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", s(service))],
        ..Default::default()
    })
}

pub(super) fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        version: "1.0".into(),
        ..Default::default()
    })
}

pub(super) fn span(name: &str) -> Span {
    Span {
        name: name.into(),
        ..Default::default()
    }
}

pub(super) fn log(body: &str, severity: i32) -> LogRecord {
    LogRecord {
        body: Some(AnyValue {
            value: Some(s(body)),
        }),
        severity_number: severity,
        ..Default::default()
    }
}

pub(super) fn int_point(v: i64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        value: Some(number_data_point::Value::AsInt(v)),
        ..Default::default()
    }
}

pub(super) fn double_point(v: f64) -> NumberDataPoint {
    NumberDataPoint {
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

pub(super) fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// (scope name, its spans)
pub(super) type ScopeSpec<'a> = (&'a str, Vec<Span>);

/// Resources given as (service name, scopes).
pub(super) fn traces(resources: Vec<(&str, Vec<ScopeSpec<'_>>)>) -> Vec<ResourceSpans> {
    resources
        .into_iter()
        .map(|(svc, scopes)| ResourceSpans {
            resource: resource(svc),
            scope_spans: scopes
                .into_iter()
                .map(|(sc, spans)| ScopeSpans {
                    scope: scope(sc),
                    spans,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect()
}

pub(super) fn span_names(data: &[ResourceSpans]) -> Vec<Vec<Vec<String>>> {
    data.iter()
        .map(|r| {
            r.scope_spans
                .iter()
                .map(|s| s.spans.iter().map(|x| x.name.clone()).collect())
                .collect()
        })
        .collect()
}

// ---- evaluation ----

fn holds(src: &str, ctx: Context, item: &Item<'_>) -> bool {
    let expr = parse(src, ctx).unwrap_or_else(|e| panic!("{src}: {e}"));
    eval(&expr, item).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn rich_span() -> Span {
    Span {
        name: "GET /users".into(),
        kind: 2,
        status: Some(Status {
            code: 2,
            message: "boom".into(),
        }),
        trace_id: vec![0xab; 16],
        attributes: vec![
            kv("http.route", s("/users")),
            kv("http.status_code", Value::IntValue(503)),
            kv("ratio", Value::DoubleValue(0.5)),
            kv("sampled", Value::BoolValue(true)),
            kv(
                "tags",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(s("a")),
                    }],
                }),
            ),
            kv(
                "nested",
                Value::KvlistValue(KeyValueList {
                    values: vec![kv("inner", s("deep"))],
                }),
            ),
            kv("blob", Value::BytesValue(vec![1, 2])),
        ],
        events: vec![Event {
            name: "exception".into(),
            attributes: vec![kv("exception.type", s("IOError"))],
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn span_context_reads_every_kind_of_path() {
    let r = resource("checkout");
    let sc = scope("otel.http");
    let sp = rich_span();
    let item = Item {
        resource: r.as_ref(),
        scope: sc.as_ref(),
        span: Some(&sp),
        ..Item::default()
    };
    let yes = [
        r#"name == "GET /users""#,
        "kind == SPAN_KIND_SERVER",
        "status.code == STATUS_CODE_ERROR",
        r#"status.message == "boom""#,
        r#"attributes["http.route"] == "/users""#,
        r#"attributes["http.status_code"] >= 500"#,
        r#"attributes["http.status_code"] == 503.0"#,
        r#"attributes["ratio"] < 1"#,
        r#"attributes["sampled"] == true"#,
        r#"attributes["sampled"] > false"#,
        r#"attributes["missing"] == nil"#,
        r#"attributes["http.route"] != nil"#,
        r#"attributes["tags"][0] == "a""#,
        r#"attributes["nested"]["inner"] == "deep""#,
        r#"attributes["blob"] == 0x0102"#,
        r#"resource.attributes["service.name"] == "checkout""#,
        r#"instrumentation_scope.name == "otel.http""#,
        r#"instrumentation_scope.version == "1.0""#,
        r#"trace_id.string == "abababababababababababababababab""#,
        r#"name > "GET /a" and name < "GET /z""#,
        r#"IsMatch(name, "^GET ")"#,
        r#"IsMatch(attributes["http.status_code"], "^5\\d\\d$")"#,
        r#"not IsMatch(attributes["missing"], ".*")"#,
        r#"(kind == 1 or kind == 2) and not (status.code == STATUS_CODE_OK)"#,
        "true",
        "1 == 1.0",
    ];
    for c in yes {
        assert!(holds(c, Context::Span, &item), "should hold: {c}");
    }
    let no = [
        r#"name == "GET /orders""#,
        "kind == SPAN_KIND_CLIENT",
        r#"attributes["missing"] == "x""#,
        r#"attributes["missing"] > 1"#,
        r#"attributes["http.route"] == nil"#,
        // Incompatible types compare as unequal, not as an error.
        r#"attributes["http.status_code"] == "503""#,
        r#"attributes["http.route"] > 1"#,
        r#"attributes["nested"] < 1"#,
        r#"attributes["tags"]["x"] == "a""#,
        r#"name["x"] == "y""#.replace("name", "attributes[\"http.route\"]").as_str(),
        "false",
        r#"nil != nil"#,
    ]
    .map(String::from);
    for c in no {
        assert!(!holds(&c, Context::Span, &item), "should not hold: {c}");
    }
    assert!(holds(
        r#"attributes["http.status_code"] != "503""#,
        Context::Span,
        &item
    ));
}

#[test]
fn spanevent_context_reads_the_event_and_its_span() {
    let sp = rich_span();
    let item = Item {
        span: Some(&sp),
        event: sp.events.first(),
        ..Item::default()
    };
    assert!(holds(r#"name == "exception""#, Context::SpanEvent, &item));
    assert!(holds(
        r#"attributes["exception.type"] == "IOError""#,
        Context::SpanEvent,
        &item
    ));
    assert!(holds(
        r#"span.name == "GET /users""#,
        Context::SpanEvent,
        &item
    ));
    assert!(holds(
        r#"span.attributes["http.route"] == "/users""#,
        Context::SpanEvent,
        &item
    ));
    assert!(holds(
        "span.kind == SPAN_KIND_SERVER",
        Context::SpanEvent,
        &item
    ));
    assert!(!holds(
        r#"attributes["http.route"] == "/users""#,
        Context::SpanEvent,
        &item
    ));
}

#[test]
fn metric_and_datapoint_contexts() {
    let m = Metric {
        name: "http.server.duration".into(),
        data: Some(Data::Sum(Sum {
            data_points: vec![int_point(7, vec![kv("host", s("a"))])],
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    };
    let item = Item {
        metric: Some(&m),
        ..Item::default()
    };
    for c in [
        r#"name == "http.server.duration""#,
        r#"metric.name == "http.server.duration""#,
        "metric.type == METRIC_DATA_TYPE_SUM",
        "type != METRIC_DATA_TYPE_GAUGE",
        "aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE",
        "is_monotonic == true",
        r#"IsMatch(name, "^http\\.")"#,
    ] {
        assert!(holds(c, Context::Metric, &item), "{c}");
    }
    let Some(Data::Sum(sum)) = &m.data else {
        unreachable!()
    };
    let point = Item {
        metric: Some(&m),
        point: Some(Point::Number(&sum.data_points[0])),
        ..Item::default()
    };
    for c in [
        "value_int == 7",
        "value_int > 6.5",
        "value_double == nil",
        r#"attributes["host"] == "a""#,
        r#"metric.name == "http.server.duration" and metric.type == METRIC_DATA_TYPE_SUM"#,
    ] {
        assert!(holds(c, Context::DataPoint, &point), "{c}");
    }
    let dp = double_point(0.25);
    let dpi = Item {
        metric: Some(&m),
        point: Some(Point::Number(&dp)),
        ..Item::default()
    };
    assert!(holds("value_double < 0.5", Context::DataPoint, &dpi));
    // value_int of a double point is missing, not zero.
    assert!(!holds("value_int == 0", Context::DataPoint, &dpi));
    let hp = HistogramDataPoint {
        count: 3,
        sum: Some(1.5),
        ..Default::default()
    };
    let hi = Item {
        point: Some(Point::Histogram(&hp)),
        ..Item::default()
    };
    assert!(holds(
        "count == 3 and sum == 1.5 and value_double == nil",
        Context::DataPoint,
        &hi
    ));
}

#[test]
fn log_context() {
    let r = resource("api");
    let mut l = log("user logged in password=hunter2", 13);
    l.severity_text = "WARN".into();
    l.attributes = vec![kv("level", s("warn"))];
    let item = Item {
        resource: r.as_ref(),
        log: Some(&l),
        ..Item::default()
    };
    for c in [
        "severity_number >= SEVERITY_NUMBER_WARN",
        "severity_number < SEVERITY_NUMBER_ERROR",
        r#"severity_text == "WARN""#,
        r#"IsMatch(body, "password=")"#,
        r#"attributes["level"] == "warn""#,
        r#"resource.attributes["service.name"] == "api""#,
        r#"body != nil"#,
    ] {
        assert!(holds(c, Context::Log, &item), "{c}");
    }
    let empty = LogRecord::default();
    let e = Item {
        log: Some(&empty),
        ..Item::default()
    };
    assert!(holds("body == nil", Context::Log, &e));
    assert!(!holds(r#"IsMatch(body, ".*")"#, Context::Log, &e));
}

#[test]
fn evaluation_errors_are_errors_not_false() {
    let sp = rich_span();
    let item = Item {
        span: Some(&sp),
        ..Item::default()
    };
    let expr = parse(r#"IsMatch(attributes["nested"], "x")"#, Context::Span).unwrap();
    let e = eval(&expr, &item).unwrap_err();
    assert!(e.0.contains("IsMatch: the target is a map"), "{e}");
    // `and`/`or` short-circuit: a decided result never reaches the failing side.
    let expr = parse(
        r#"true or IsMatch(attributes["nested"], "x")"#,
        Context::Span,
    )
    .unwrap();
    assert_eq!(eval(&expr, &item), Ok(true));
}

// ---- the processor ----

pub(super) fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Processor,
        id: ComponentId::with_name("filter", "t"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "processors.filter/t".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

/// Records what reaches the next stage and acknowledges it.
pub(super) struct Sink<S: Signal>(pub(super) Mutex<Vec<Vec<S::Resource>>>);

#[async_trait]
impl<S: Signal> Consumer<S> for Sink<S> {
    async fn consume(&self, batch: Batch<S>) {
        self.0.lock().unwrap().push(batch.resources().to_vec());
        batch.settle(&Ok(()));
    }
}

pub(super) struct Harness<S: Signal> {
    consumer: DynConsumer<S>,
    sink: Arc<Sink<S>>,
    pub(super) ctx: BuildContext,
}

pub(super) fn build<S: Signal + SignalConsumer>(yaml: &str) -> Harness<S> {
    let sink = Arc::new(Sink::<S>(Mutex::new(Vec::new())));
    let ctx = BuildContext::default();
    let built = FilterProcessorFactory
        .build(&component(yaml), S::to_any(sink.clone()), &ctx)
        .unwrap_or_else(|e| panic!("{e}"));
    let consumer = S::from_any(built.consumer).unwrap();
    Harness {
        consumer,
        sink,
        ctx,
    }
}

impl<S: Signal> Harness<S> {
    /// Sends one batch; returns its acknowledgement's outcome and what was forwarded.
    pub(super) async fn send(&self, data: Vec<S::Resource>) -> (Outcome, Option<Vec<S::Resource>>) {
        let (ack, waiter) = Ack::new();
        let before = self.sink.0.lock().unwrap().len();
        self.consumer
            .consume(Batch::from_resources(data).with_ack(ack))
            .await;
        let outcome = waiter.await;
        let sent = self.sink.0.lock().unwrap();
        let forwarded = (sent.len() > before).then(|| sent[sent.len() - 1].clone());
        (outcome, forwarded)
    }

    pub(super) fn filtered(&self, metric: &str) -> u64 {
        self.ctx
            .telemetry
            .metrics
            .counter(metric, "", &[("filter", "filter/t")])
            .get()
    }
}

#[tokio::test]
async fn drops_matching_spans_and_empty_scopes_and_resources() {
    let h = build::<Traces>(
        r#"
traces:
  span:
    - 'name == "health"'
    - 'resource.attributes["service.name"] == "noisy"'
"#,
    );
    let data = traces(vec![
        (
            "a",
            vec![
                ("s1", vec![span("health"), span("work")]),
                ("s2", vec![span("health")]),
            ],
        ),
        ("noisy", vec![("s3", vec![span("x"), span("y")])]),
        ("b", vec![("s4", vec![span("other")])]),
    ]);
    let (outcome, out) = h.send(data).await;
    assert_eq!(outcome, Ok(()));
    let out = out.expect("forwarded");
    assert_eq!(
        span_names(&out),
        vec![
            vec![vec!["work".to_string()]],
            vec![vec!["other".to_string()]]
        ]
    );
    // Headers of what survives are untouched.
    assert_eq!(out[0].scope_spans[0].scope, scope("s1"));
    assert_eq!(out[1].resource, resource("b"));
    assert_eq!(h.filtered("otelcol_processor_filter_spans_filtered"), 4);
}

#[tokio::test]
async fn a_batch_filtered_away_is_not_forwarded_but_acknowledged_as_success() {
    let h = build::<Traces>("traces:\n  span: ['true']\n");
    let (outcome, out) = h
        .send(traces(vec![("a", vec![("s", vec![span("x")])])]))
        .await;
    assert_eq!(outcome, Ok(()));
    assert!(out.is_none());
    assert_eq!(h.filtered("otelcol_processor_filter_spans_filtered"), 1);
}

#[tokio::test]
async fn untouched_batches_pass_unchanged_and_containers_that_were_already_empty_stay() {
    let h = build::<Traces>("traces:\n  span: ['name == \"nothing\"']\n");
    let mut data = traces(vec![("a", vec![("s", vec![span("x")]), ("empty", vec![])])]);
    data.push(ResourceSpans::default());
    let (outcome, out) = h.send(data.clone()).await;
    assert_eq!(outcome, Ok(()));
    assert_eq!(out, Some(data));
    assert_eq!(h.filtered("otelcol_processor_filter_spans_filtered"), 0);
}

#[tokio::test]
async fn span_events_are_dropped_from_kept_spans() {
    let h = build::<Traces>(
        r#"
traces:
  span: ['name == "drop me"']
  spanevent:
    - 'name == "debug" and span.name == "keep"'
"#,
    );
    let mut keep = span("keep");
    keep.events = vec![
        Event {
            name: "debug".into(),
            ..Default::default()
        },
        Event {
            name: "exception".into(),
            ..Default::default()
        },
    ];
    let mut other = span("other");
    other.events = vec![Event {
        name: "debug".into(),
        ..Default::default()
    }];
    let data = traces(vec![("a", vec![("s", vec![span("drop me"), keep, other])])]);
    let (outcome, out) = h.send(data).await;
    assert_eq!(outcome, Ok(()));
    let out = out.unwrap();
    let spans = &out[0].scope_spans[0].spans;
    assert_eq!(spans.len(), 2);
    let events: Vec<&str> = spans[0].events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, vec!["exception"]);
    assert_eq!(spans[1].events.len(), 1);
    // Events are not spans: only the dropped span is counted.
    assert_eq!(h.filtered("otelcol_processor_filter_spans_filtered"), 1);
}

#[tokio::test]
async fn metrics_and_data_points_are_dropped_and_emptied_metrics_removed() {
    let h = build::<Metrics>(
        r#"
metrics:
  metric:
    - 'name == "drop.metric"'
  datapoint:
    - 'attributes["host"] == "b"'
    - 'metric.name == "all.points" and value_int < 10'
"#,
    );
    let data = vec![ResourceMetrics {
        resource: resource("m"),
        scope_metrics: vec![
            ScopeMetrics {
                scope: scope("s1"),
                metrics: vec![
                    gauge(
                        "drop.metric",
                        vec![int_point(1, vec![]), int_point(2, vec![])],
                    ),
                    gauge(
                        "mixed",
                        vec![
                            int_point(1, vec![kv("host", s("a"))]),
                            int_point(2, vec![kv("host", s("b"))]),
                        ],
                    ),
                ],
                ..Default::default()
            },
            ScopeMetrics {
                scope: scope("s2"),
                metrics: vec![
                    gauge(
                        "all.points",
                        vec![int_point(1, vec![]), int_point(5, vec![])],
                    ),
                    Metric {
                        name: "hist".into(),
                        data: Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                attributes: vec![kv("host", s("b"))],
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
        ],
        ..Default::default()
    }];
    let (outcome, out) = h.send(data).await;
    assert_eq!(outcome, Ok(()));
    let out = out.unwrap();
    // s2 lost both its metrics (one by its points, the histogram by its only point): gone.
    assert_eq!(out[0].scope_metrics.len(), 1);
    let metrics = &out[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].name, "mixed");
    let Some(Data::Gauge(g)) = &metrics[0].data else {
        panic!("gauge expected")
    };
    assert_eq!(g.data_points.len(), 1);
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsInt(1))
    );
    // 2 (dropped metric) + 1 (host b) + 2 (all.points) + 1 (histogram point).
    assert_eq!(
        h.filtered("otelcol_processor_filter_datapoints_filtered"),
        6
    );
}

#[tokio::test]
async fn log_records_are_dropped() {
    let h = build::<Logs>(
        r#"
logs:
  log_record:
    - 'severity_number < SEVERITY_NUMBER_WARN'
    - 'IsMatch(body, "^healthcheck")'
"#,
    );
    let data = vec![
        ResourceLogs {
            resource: resource("a"),
            scope_logs: vec![ScopeLogs {
                scope: scope("s"),
                log_records: vec![
                    log("debug noise", 5),
                    log("disk full", 17),
                    log("healthcheck ok", 13),
                ],
                ..Default::default()
            }],
            ..Default::default()
        },
        ResourceLogs {
            resource: resource("b"),
            scope_logs: vec![ScopeLogs {
                log_records: vec![log("info", 9)],
                ..Default::default()
            }],
            ..Default::default()
        },
    ];
    let (outcome, out) = h.send(data).await;
    assert_eq!(outcome, Ok(()));
    let out = out.unwrap();
    assert_eq!(out.len(), 1);
    let bodies: Vec<_> = out[0].scope_logs[0]
        .log_records
        .iter()
        .map(|l| l.body.clone())
        .collect();
    assert_eq!(
        bodies,
        vec![Some(AnyValue {
            value: Some(s("disk full"))
        })]
    );
    assert_eq!(h.filtered("otelcol_processor_filter_logs_filtered"), 3);
}

#[tokio::test]
async fn signals_without_conditions_pass_through() {
    let h = build::<Logs>("traces:\n  span: ['true']\n");
    let data = vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![log("x", 1)],
            ..Default::default()
        }],
        ..Default::default()
    }];
    let (outcome, out) = h.send(data.clone()).await;
    assert_eq!((outcome, out), (Ok(()), Some(data)));
    // An empty section (`filter:` with nothing) builds too.
    let h = build::<Metrics>("");
    let (outcome, out) = h.send(vec![]).await;
    assert_eq!((outcome, out), (Ok(()), Some(vec![])));
}

fn failing_logs() -> Vec<ResourceLogs> {
    let mut bad = log("x", 1);
    bad.attributes = vec![kv("m", Value::KvlistValue(KeyValueList { values: vec![] }))];
    vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![bad, log("drop", 1), log("keep", 1)],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

const FAILING: &str = r#"
  log_record:
    - 'IsMatch(attributes["m"], "x")'
    - 'body == "drop"'
"#;

#[tokio::test]
async fn error_mode_propagate_fails_the_batch_permanently() {
    for yaml in [
        format!("error_mode: propagate\nlogs:{FAILING}"),
        format!("error_mode: PROPAGATE\nlogs:{FAILING}"),
    ] {
        let h = build::<Logs>(&yaml);
        let (outcome, out) = h.send(failing_logs()).await;
        match outcome {
            Err(DeliveryError::Permanent { reason }) => {
                assert!(
                    reason.contains("filter/t") && reason.contains("IsMatch"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(out.is_none());
    }
}

#[tokio::test]
async fn error_modes_ignore_and_silent_treat_the_failure_as_false() {
    // No `error_mode` is `ignore`, the OTel Collector's default since v0.153.
    for mode in [
        "",
        "error_mode: ignore\n",
        "error_mode: silent\n",
        "error_mode: Ignore\n",
    ] {
        let h = build::<Logs>(&format!("{mode}logs:{FAILING}"));
        let (outcome, out) = h.send(failing_logs()).await;
        assert_eq!(outcome, Ok(()), "{mode}");
        // The failing record is kept, the other conditions still apply to it and the rest.
        let out = out.unwrap();
        assert_eq!(out[0].scope_logs[0].log_records.len(), 2, "{mode}");
        assert_eq!(h.filtered("otelcol_processor_filter_logs_filtered"), 1);
    }
}

pub(super) fn build_err(yaml: &str) -> ConfigErrors {
    let sink = Arc::new(Sink::<Logs>(Mutex::new(Vec::new())));
    match FilterProcessorFactory.build(
        &component(yaml),
        AnyConsumer::Logs(sink),
        &BuildContext::default(),
    ) {
        Ok(_) => panic!("should fail"),
        Err(e) => e,
    }
}

#[test]
fn every_bad_condition_is_reported_with_its_path_and_place() {
    let errs = build_err(
        r#"traces:
  span:
    - name == "ok"
    - name == "x" and
  spanevent:
    - 'severity_number == 1'
logs:
  log_record:
    - body ==
"#,
    );
    type Seen = (String, Option<(usize, usize)>, String);
    let got: Vec<Seen> = errs
        .iter()
        .map(|d| {
            (
                d.path.clone(),
                d.pos.as_ref().map(|p| (p.line, p.col)),
                d.message.clone(),
            )
        })
        .collect();
    assert_eq!(got.len(), 3, "{errs}");
    assert_eq!(got[0].0, "processors.filter/t.traces.span[1]");
    // Plain scalar: the position is the failing place itself (col 7 + 16 - 1).
    assert_eq!(got[0].1, Some((4, 22)));
    assert_eq!(
        got[0].2,
        "column 16: expected a condition after 'and', found the end of the condition"
    );
    assert_eq!(got[1].0, "processors.filter/t.traces.spanevent[0]");
    // Quoted scalar: the position is the scalar, the message has the column.
    assert_eq!(got[1].1, Some((6, 7)));
    assert!(
        got[1]
            .2
            .starts_with("column 1: unknown path 'severity_number' in a spanevent condition")
    );
    assert_eq!(got[2].0, "processors.filter/t.logs.log_record[0]");
    assert_eq!(got[2].1, Some((9, 14)));
    assert_eq!(got[2].2, "column 8: expected a value after '=='");
}

#[test]
fn unknown_keys_and_error_modes_are_config_errors() {
    let e = build_err("traces:\n  spans: ['true']\n");
    assert!(e.to_string().contains("spans"), "{e}");
    let e = build_err("error_mode: loud\n");
    assert!(e.to_string().contains("loud"), "{e}");
    let e = build_err("spans:\n  include: {}\n");
    assert!(e.to_string().contains("spans"), "{e}");
}

/// Records where the data it receives lives.
struct PtrSink(Mutex<Vec<usize>>);

#[async_trait]
impl Consumer<Traces> for PtrSink {
    async fn consume(&self, batch: Batch<Traces>) {
        self.0
            .lock()
            .unwrap()
            .push(batch.resources().as_ptr() as usize);
        batch.settle(&Ok(()));
    }
}

#[tokio::test]
async fn a_shared_batch_is_copied_only_when_something_is_dropped() {
    let sink = Arc::new(PtrSink(Mutex::new(Vec::new())));
    let built = FilterProcessorFactory
        .build(
            &component("traces:\n  span: ['name == \"drop\"']\n"),
            AnyConsumer::Traces(sink.clone()),
            &BuildContext::default(),
        )
        .unwrap();
    let AnyConsumer::Traces(filter) = built.consumer else {
        panic!("traces consumer expected")
    };
    let original =
        Batch::<Traces>::from_resources(traces(vec![("a", vec![("s", vec![span("x")])])]));
    let shared_with_another_branch = original.fork();
    let at = original.resources().as_ptr() as usize;
    filter.consume(original).await;
    let changed = Batch::<Traces>::from_resources(traces(vec![(
        "a",
        vec![("s", vec![span("x"), span("drop")])],
    )]));
    let other = changed.fork();
    filter.consume(changed).await;
    let seen = sink.0.lock().unwrap().clone();
    assert_eq!(seen[0], at);
    assert_ne!(seen[1], other.resources().as_ptr() as usize);
    // The other branch still sees the data as it was.
    assert_eq!(other.items(), 2);
    assert_eq!(shared_with_another_branch.items(), 1);
}

#[test]
fn the_readme_example_builds_for_every_signal() {
    let yaml = r#"
error_mode: ignore
traces:
  span:
    - 'attributes["http.route"] == "/health"'
    - 'kind == SPAN_KIND_INTERNAL and resource.attributes["service.name"] == "cron"'
  spanevent:
    - 'name == "debug" and span.name != "checkout"'
metrics:
  metric:
    - 'name == "http.client.duration" and type == METRIC_DATA_TYPE_HISTOGRAM'
  datapoint:
    - 'metric.name == "queue.size" and value_int == 0'
logs:
  log_record:
    - 'severity_number < SEVERITY_NUMBER_WARN'
    - 'IsMatch(body, "^GET /healthz")'
"#;
    build::<Traces>(yaml);
    build::<Metrics>(yaml);
    build::<Logs>(yaml);
}
