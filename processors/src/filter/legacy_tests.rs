//! The keys beyond the per-context OTTL lists: the legacy `spans`, `metrics` and `logs`
//! include/exclude blocks (each with include, exclude and both, strict and regexp), the
//! context-inferred `*_conditions`, the resource contexts, the checks that refuse settings the
//! OTel Collector refuses together, and the keys accepted with a warning.

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::Event};

use super::tests::{build, build_err, component, gauge, int_point, kv, log, s, span};
use super::*;

// ---- spans ----

fn span_with(name: &str, kind: i32, attrs: Vec<(&str, Value)>) -> Span {
    Span {
        kind,
        attributes: attrs.into_iter().map(|(k, v)| kv(k, v)).collect(),
        ..span(name)
    }
}

/// Resources: `api` (scope `lib` 1.0), `web` (scope `other` 2.0) and one without a service.
fn spans_data() -> Vec<ResourceSpans> {
    let res = |service: Option<&str>, env: &str| {
        let mut attributes = vec![kv("env", s(env))];
        if let Some(svc) = service {
            attributes.insert(0, kv("service.name", s(svc)));
        }
        Some(Resource {
            attributes,
            ..Default::default()
        })
    };
    let scope_spans = |scope: &str, version: &str, spans: Vec<Span>| ScopeSpans {
        scope: Some(InstrumentationScope {
            name: scope.into(),
            version: version.into(),
            ..Default::default()
        }),
        spans,
        ..Default::default()
    };
    vec![
        ResourceSpans {
            resource: res(Some("api"), "prod"),
            scope_spans: vec![scope_spans(
                "lib",
                "1.0",
                vec![
                    span_with(
                        "GET /health",
                        2,
                        vec![("http.status_code", Value::IntValue(200))],
                    ),
                    span_with(
                        "GET /users",
                        2,
                        vec![("http.status_code", Value::StringValue("200".into()))],
                    ),
                    span_with("SELECT", 3, vec![("db.system", s("pg"))]),
                ],
            )],
            ..Default::default()
        },
        ResourceSpans {
            resource: res(Some("web"), "dev"),
            scope_spans: vec![scope_spans(
                "other",
                "2.0",
                vec![
                    span_with("GET /health", 2, vec![]),
                    span_with("render", 1, vec![]),
                ],
            )],
            ..Default::default()
        },
        ResourceSpans {
            resource: res(None, "prod"),
            scope_spans: vec![scope_spans(
                "lib",
                "1.0",
                vec![span_with("orphan", 1, vec![])],
            )],
            ..Default::default()
        },
    ]
}

fn kept_spans(out: Option<Vec<ResourceSpans>>) -> Vec<String> {
    out.unwrap_or_default()
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.name.clone())
        .collect()
}

async fn spans_kept(yaml: &str) -> Vec<String> {
    let h = build::<Traces>(yaml);
    let (outcome, out) = h.send(spans_data()).await;
    assert_eq!(outcome, Ok(()), "{yaml}");
    kept_spans(out)
}

#[tokio::test]
async fn legacy_spans_include_exclude_and_both_strict_and_regexp() {
    let cases: &[(&str, &[&str])] = &[
        // include, strict: only what matches stays.
        (
            "spans:\n  include:\n    match_type: strict\n    span_names: [GET /users, render]\n",
            &["GET /users", "render"],
        ),
        // exclude, regexp (unanchored): what matches goes.
        (
            "spans:\n  exclude:\n    match_type: regexp\n    span_names: [health]\n",
            &["GET /users", "SELECT", "render", "orphan"],
        ),
        // both: include first, then exclude.
        (
            "spans:\n  include:\n    match_type: strict\n    services: [api]\n  exclude:\n    match_type: regexp\n    span_names: ['^GET /h']\n",
            &["GET /users", "SELECT"],
        ),
        // include, regexp on services; the missing service is `<nil-service-name>`.
        (
            "spans:\n  include:\n    match_type: regexp\n    services: ['^nil', 'web']\n",
            &["GET /health", "render"],
        ),
        (
            "spans:\n  exclude:\n    match_type: strict\n    services: ['<nil-service-name>']\n",
            &[
                "GET /health",
                "GET /users",
                "SELECT",
                "GET /health",
                "render",
            ],
        ),
        (
            "spans:\n  exclude:\n    match_type: regexp\n    services: ['^<nil']\n",
            &[
                "GET /health",
                "GET /users",
                "SELECT",
                "GET /health",
                "render",
            ],
        ),
        // span kinds, by name.
        (
            "spans:\n  exclude:\n    match_type: strict\n    span_kinds: [SPAN_KIND_SERVER]\n",
            &["SELECT", "render", "orphan"],
        ),
        (
            "spans:\n  include:\n    match_type: regexp\n    span_kinds: ['CLIENT|INTERNAL']\n",
            &["SELECT", "render", "orphan"],
        ),
        // attributes, strict: typed (200 is not "200").
        (
            "spans:\n  exclude:\n    match_type: strict\n    attributes: [{key: http.status_code, value: 200}]\n",
            &["GET /users", "SELECT", "GET /health", "render", "orphan"],
        ),
        (
            "spans:\n  exclude:\n    match_type: strict\n    attributes: [{key: http.status_code, value: '200'}]\n",
            &["GET /health", "SELECT", "GET /health", "render", "orphan"],
        ),
        // attributes, regexp: on the text of any scalar.
        (
            "spans:\n  exclude:\n    match_type: regexp\n    attributes: [{key: http.status_code, value: '^2'}]\n",
            &["SELECT", "GET /health", "render", "orphan"],
        ),
        // attributes without value: the key must be there; every entry must match.
        (
            "spans:\n  include:\n    match_type: strict\n    attributes: [{key: db.system}]\n",
            &["SELECT"],
        ),
        (
            "spans:\n  include:\n    match_type: strict\n    attributes: [{key: db.system}, {key: nope}]\n",
            &[],
        ),
        // resources.
        (
            "spans:\n  exclude:\n    match_type: strict\n    resources: [{key: env, value: prod}]\n",
            &["GET /health", "render"],
        ),
        (
            "spans:\n  include:\n    match_type: regexp\n    resources: [{key: env, value: 'de'}]\n",
            &["GET /health", "render"],
        ),
        // libraries: name and, when given, version; every entry must match.
        (
            "spans:\n  include:\n    match_type: strict\n    libraries: [{name: lib, version: '1.0'}]\n",
            &["GET /health", "GET /users", "SELECT", "orphan"],
        ),
        (
            "spans:\n  exclude:\n    match_type: strict\n    libraries: [{name: lib, version: '2.0'}]\n",
            &[
                "GET /health",
                "GET /users",
                "SELECT",
                "GET /health",
                "render",
                "orphan",
            ],
        ),
        (
            "spans:\n  include:\n    match_type: regexp\n    libraries: [{name: '^o'}]\n",
            &["GET /health", "render"],
        ),
        (
            "spans:\n  include:\n    match_type: strict\n    libraries: [{name: lib}, {name: other}]\n",
            &[],
        ),
        // Every property of a block must match.
        (
            "spans:\n  exclude:\n    match_type: strict\n    services: [api, web]\n    span_names: [GET /health]\n",
            &["GET /users", "SELECT", "render", "orphan"],
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(spans_kept(yaml).await, *want, "{yaml}");
    }
}

#[tokio::test]
async fn a_health_check_exclude_drops_whole_containers_and_counts() {
    let h = build::<Traces>(
        "spans:\n  exclude:\n    match_type: strict\n    span_names: [GET /health, render]\n",
    );
    let (_, out) = h.send(spans_data()).await;
    let out = out.unwrap();
    // web had only those two spans: its resource went.
    assert_eq!(out.len(), 2);
    assert_eq!(h.filtered("otelcol_processor_filter_spans_filtered"), 3);
}

fn errors(yaml: &str) -> String {
    build_err(yaml).to_string()
}

#[test]
fn legacy_span_blocks_are_checked() {
    let e = errors("spans:\n  include:\n    span_names: [a]\n");
    assert!(
        e.contains("spans.include") && e.contains("match_type"),
        "{e}"
    );
    let e = errors("spans:\n  exclude:\n    match_type: strict\n    span_kinds: [Server]\n");
    assert!(
        e.contains("spans.exclude.span_kinds[0]") && e.contains("SPAN_KIND_SERVER"),
        "{e}"
    );
    let e = errors("spans:\n  exclude:\n    match_type: strict\n");
    assert!(e.contains("nothing to match on"), "{e}");
    let e = errors(
        "spans:\n  exclude:\n    match_type: regexp\n    attributes: [{key: a, value: 1}]\n",
    );
    assert!(e.contains("spans.exclude.attributes[0].value"), "{e}");
    let e = errors("spans:\n  exclude:\n    match_type: regexp\n    span_names: ['(']\n");
    assert!(
        e.contains("spans.exclude.span_names[0]") && e.contains("invalid regular"),
        "{e}"
    );
    let e = errors("spans:\n  exclude:\n    match_type: strict\n    log_bodies: [a]\n");
    assert!(e.contains("log_bodies"), "{e}");
}

// ---- logs ----

fn record(body: &str, severity: i32, text: &str, attrs: Vec<(&str, Value)>) -> LogRecord {
    LogRecord {
        severity_text: text.into(),
        attributes: attrs.into_iter().map(|(k, v)| kv(k, v)).collect(),
        ..log(body, severity)
    }
}

fn logs_data() -> Vec<ResourceLogs> {
    let no_body = LogRecord {
        severity_number: 0,
        ..Default::default()
    };
    vec![
        ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("api"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    record(
                        "debug detail",
                        5,
                        "DEBUG",
                        vec![("code", Value::IntValue(7))],
                    ),
                    record("started", 9, "INFO", vec![]),
                    record("disk full", 17, "ERROR", vec![("code", s("E1"))]),
                    no_body,
                ],
                ..Default::default()
            }],
            ..Default::default()
        },
        ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("batch"))],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![record("tick", 1, "TRACE", vec![])],
                ..Default::default()
            }],
            ..Default::default()
        },
    ]
}

async fn logs_kept(yaml: &str) -> Vec<String> {
    let h = build::<Logs>(yaml);
    let (outcome, out) = h.send(logs_data()).await;
    assert_eq!(outcome, Ok(()), "{yaml}");
    out.unwrap_or_default()
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records)
        .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(Value::StringValue(b)) => b.clone(),
            _ => "<none>".into(),
        })
        .collect()
}

#[tokio::test]
async fn legacy_logs_include_exclude_and_both_strict_and_regexp() {
    let cases: &[(&str, &[&str])] = &[
        // Drop debug logs: keep INFO and above; records without severity go too.
        (
            "logs:\n  include:\n    severity_number:\n      min: INFO\n",
            &["started", "disk full"],
        ),
        (
            "logs:\n  include:\n    severity_number:\n      min: info\n      match_undefined: true\n",
            &["started", "disk full", "<none>"],
        ),
        (
            "logs:\n  exclude:\n    severity_number:\n      min: WARN\n",
            &["debug detail", "started", "<none>", "tick"],
        ),
        (
            "logs:\n  include:\n    severity_number:\n      min: 17\n",
            &["disk full"],
        ),
        // bodies and severity texts.
        (
            "logs:\n  exclude:\n    match_type: strict\n    bodies: [tick, started]\n",
            &["debug detail", "disk full", "<none>"],
        ),
        (
            "logs:\n  include:\n    match_type: regexp\n    bodies: ['^d']\n",
            &["debug detail", "disk full"],
        ),
        (
            "logs:\n  exclude:\n    match_type: regexp\n    log_bodies: ['^$']\n",
            &["debug detail", "started", "disk full", "tick"],
        ),
        (
            "logs:\n  exclude:\n    match_type: strict\n    severity_texts: [DEBUG, TRACE]\n",
            &["started", "disk full", "<none>"],
        ),
        (
            "logs:\n  include:\n    match_type: regexp\n    severity_texts: ['^(INFO|ERROR)$']\n",
            &["started", "disk full"],
        ),
        // record and resource attributes.
        (
            "logs:\n  exclude:\n    match_type: strict\n    record_attributes: [{key: code, value: 7}]\n",
            &["started", "disk full", "<none>", "tick"],
        ),
        (
            "logs:\n  include:\n    match_type: regexp\n    record_attributes: [{key: code, value: '^E'}]\n",
            &["disk full"],
        ),
        (
            "logs:\n  exclude:\n    match_type: strict\n    resource_attributes: [{key: service.name, value: batch}]\n",
            &["debug detail", "started", "disk full", "<none>"],
        ),
        // both.
        (
            "logs:\n  include:\n    match_type: strict\n    resource_attributes: [{key: service.name, value: api}]\n  exclude:\n    match_type: regexp\n    bodies: [detail]\n",
            &["started", "disk full", "<none>"],
        ),
        // A block with nothing to match on is not applied.
        (
            "logs:\n  include:\n    match_type: strict\n",
            &["debug detail", "started", "disk full", "<none>", "tick"],
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(logs_kept(yaml).await, *want, "{yaml}");
    }
    let e = errors("logs:\n  include:\n    severity_number:\n      min: VERBOSE\n");
    assert!(
        e.contains("logs.include.severity_number.min")
            && e.contains("'VERBOSE' is not a valid severity"),
        "{e}"
    );
    let e = errors("logs:\n  include:\n    bodies: [a]\n");
    assert!(e.contains("match_type"), "{e}");
}

// ---- metrics ----

fn metrics_data() -> Vec<ResourceMetrics> {
    let res = |host: &str, metrics: Vec<Metric>| ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv("host.name", s(host))],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    };
    vec![
        res(
            "db1",
            vec![
                gauge(
                    "system.cpu.time",
                    vec![int_point(1, vec![kv("state", s("idle"))])],
                ),
                gauge(
                    "system.memory.usage",
                    vec![
                        int_point(2, vec![kv("state", s("used"))]),
                        int_point(3, vec![kv("state", s("free"))]),
                    ],
                ),
                gauge(
                    "http.requests",
                    vec![int_point(4, vec![kv("code", Value::IntValue(200))])],
                ),
            ],
        ),
        res(
            "web1",
            vec![gauge("system.cpu.time", vec![int_point(5, vec![])])],
        ),
    ]
}

async fn metrics_kept(yaml: &str) -> Vec<String> {
    let h = build::<Metrics>(yaml);
    let (outcome, out) = h.send(metrics_data()).await;
    assert_eq!(outcome, Ok(()), "{yaml}");
    out.unwrap_or_default()
        .iter()
        .flat_map(|r| {
            let host = match r.resource.as_ref().map(|x| &x.attributes[0]) {
                Some(a) => match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(h)) => h.clone(),
                    _ => String::new(),
                },
                None => String::new(),
            };
            r.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .map(move |m| format!("{host}/{}", m.name))
        })
        .collect()
}

#[tokio::test]
async fn legacy_metrics_include_exclude_and_both_strict_regexp_and_expr() {
    let cases: &[(&str, &[&str])] = &[
        (
            "metrics:\n  include:\n    match_type: strict\n    metric_names: [system.cpu.time]\n",
            &["db1/system.cpu.time", "web1/system.cpu.time"],
        ),
        (
            "metrics:\n  exclude:\n    match_type: regexp\n    metric_names: ['^system\\.']\n",
            &["db1/http.requests"],
        ),
        (
            "metrics:\n  include:\n    match_type: regexp\n    metric_names: [system]\n  exclude:\n    match_type: strict\n    metric_names: [system.memory.usage]\n",
            &["db1/system.cpu.time", "web1/system.cpu.time"],
        ),
        // resource_attributes decide for whole resources, apart from the names.
        (
            "metrics:\n  include:\n    match_type: strict\n    resource_attributes: [{key: host.name, value: web1}]\n",
            &["web1/system.cpu.time"],
        ),
        (
            "metrics:\n  exclude:\n    match_type: regexp\n    resource_attributes: [{key: host.name, value: '^db'}]\n",
            &["web1/system.cpu.time"],
        ),
        // The OTel Collector's quirk: in one exclude block they are ORed, not ANDed.
        (
            "metrics:\n  exclude:\n    match_type: strict\n    metric_names: [http.requests]\n    resource_attributes: [{key: host.name, value: web1}]\n",
            &["db1/system.cpu.time", "db1/system.memory.usage"],
        ),
        // expr: per data point; a metric matches when one of its points does.
        (
            "metrics:\n  exclude:\n    match_type: expr\n    expressions: ['MetricName == \"system.cpu.time\" && Label(\"state\") == \"idle\"']\n",
            &[
                "db1/system.memory.usage",
                "db1/http.requests",
                "web1/system.cpu.time",
            ],
        ),
        (
            "metrics:\n  include:\n    match_type: expr\n    expressions: ['Label(\"state\") == \"free\"', 'HasLabel(\"code\")']\n",
            &["db1/system.memory.usage", "db1/http.requests"],
        ),
        (
            "metrics:\n  exclude:\n    match_type: expr\n    expressions: ['MetricName matches \"^system\" and not (MetricType == \"Sum\")', 'Label(\"code\") == \"\"']\n",
            &[],
        ),
        (
            "metrics:\n  include:\n    match_type: expr\n    expressions: ['MetricName startsWith \"http\" || Label(\"state\") in [\"used\"]']\n",
            &["db1/system.memory.usage", "db1/http.requests"],
        ),
        // Label() of a non-string label is "" (the code label is an int).
        (
            "metrics:\n  include:\n    match_type: expr\n    expressions: ['Label(\"code\") == \"200\"']\n",
            &[],
        ),
        // names are not read with match_type: expr.
        (
            "metrics:\n  include:\n    match_type: expr\n    metric_names: [x]\n",
            &[
                "db1/system.cpu.time",
                "db1/system.memory.usage",
                "db1/http.requests",
                "web1/system.cpu.time",
            ],
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(metrics_kept(yaml).await, *want, "{yaml}");
    }
    let e = errors(
        "metrics:\n  include:\n    match_type: expr\n    expressions: ['len(MetricName) > 3']\n",
    );
    assert!(
        e.contains("metrics.include.expressions[0]")
            && e.contains("not supported")
            && e.contains("MetricName"),
        "{e}"
    );
    let e = errors("metrics:\n  include:\n    metric_names: [a]\n");
    assert!(
        e.contains("metrics.include") && e.contains("match_type"),
        "{e}"
    );
    let e = errors("metrics:\n  include:\n    match_type: regexp\n    metric_names: ['[']\n");
    assert!(e.contains("metrics.include.metric_names[0]"), "{e}");
}

// ---- OTTL: context-inferred conditions and resource contexts ----

#[tokio::test]
async fn trace_conditions_infer_their_context_from_their_paths() {
    let yaml = r#"
trace_conditions:
  - 'resource.attributes["service.name"] == "web"'
  - 'span.name == "SELECT"'
  - 'scope.name == "lib" and resource.attributes["env"] == "prod" and not IsString(resource.attributes["service.name"])'
"#;
    assert_eq!(spans_kept(yaml).await, ["GET /health", "GET /users"]);

    let h = build::<Traces>("trace_conditions:\n  - 'spanevent.name == \"debug\"'\n");
    let mut s1 = span("s");
    s1.events = vec![
        Event {
            name: "debug".into(),
            ..Default::default()
        },
        Event {
            name: "exception".into(),
            ..Default::default()
        },
    ];
    let data = super::tests::traces(vec![("a", vec![("lib", vec![s1])])]);
    let (_, out) = h.send(data).await;
    assert_eq!(out.unwrap()[0].scope_spans[0].spans[0].events.len(), 1);
}

#[tokio::test]
async fn condition_groups_have_a_context_and_an_error_mode() {
    let yaml = r#"
trace_conditions:
  - context: span
    conditions:
      - 'name == "SELECT"'
      - 'IsMatch(attributes["m"], "x")'
    error_mode: silent
  - context: RESOURCE
    conditions: ['attributes["env"] == "dev"']
error_mode: propagate
"#;
    assert_eq!(
        spans_kept(yaml).await,
        ["GET /health", "GET /users", "orphan"]
    );
}

#[tokio::test]
async fn metric_and_log_conditions_and_the_resource_lists() {
    assert_eq!(
        metrics_kept("metric_conditions:\n  - 'datapoint.attributes[\"state\"] == \"free\"'\n  - 'metric.name == \"http.requests\"'\n").await,
        ["db1/system.cpu.time", "db1/system.memory.usage", "web1/system.cpu.time"]
    );
    assert_eq!(
        metrics_kept("metrics:\n  resource:\n    - 'attributes[\"host.name\"] == \"db1\"'\n").await,
        ["web1/system.cpu.time"]
    );
    assert_eq!(
        metrics_kept("metrics:\n  metric:\n    - 'HasAttrOnDatapoint(\"state\", \"idle\")'\n")
            .await,
        [
            "db1/system.memory.usage",
            "db1/http.requests",
            "web1/system.cpu.time"
        ]
    );
    assert_eq!(
        logs_kept("log_conditions:\n  - 'log.severity_number < SEVERITY_NUMBER_INFO'\n").await,
        ["started", "disk full"]
    );
    assert_eq!(
        logs_kept("logs:\n  resource:\n    - 'attributes[\"service.name\"] == \"api\"'\n").await,
        ["tick"]
    );
    assert_eq!(
        spans_kept("traces:\n  resource:\n    - 'attributes[\"env\"] == \"prod\"'\n").await,
        ["GET /health", "render"]
    );
}

#[test]
fn conditions_that_cannot_be_placed_are_errors() {
    let e = errors("trace_conditions:\n  - 'name == \"x\"'\n");
    assert!(
        e.contains("trace_conditions[0]") && e.contains("cannot infer"),
        "{e}"
    );
    let e = errors("trace_conditions:\n  - 'metric.name == \"x\"'\n");
    assert!(
        e.contains("`metric.` paths cannot be used in `trace_conditions`"),
        "{e}"
    );
    let e = errors("log_conditions:\n  - context: span\n    conditions: ['true']\n");
    assert!(e.contains("log_conditions[0].context"), "{e}");
    let e = errors("log_conditions:\n  - 'log.body == \"x\"'\n  - conditions: ['true']\n");
    assert!(e.contains("mixes conditions and groups"), "{e}");
    let e = errors("metric_conditions:\n  - context: metric\n    conditions: ['value_int == 1']\n");
    assert!(
        e.contains("metric_conditions[0].conditions[0]") && e.contains("unknown path"),
        "{e}"
    );
    let e =
        errors("log_conditions:\n  - conditions: ['log.body == \"x\"']\n    error_mode: loud\n");
    assert!(e.contains("log_conditions[0].error_mode"), "{e}");
}

#[test]
fn settings_the_collector_refuses_together_are_refused() {
    for (yaml, needle) in [
        (
            "trace_conditions: ['span.name == \"x\"']\ntraces:\n  span: ['true']\n",
            "`traces.span`",
        ),
        (
            "metric_conditions: ['metric.name == \"x\"']\nmetrics:\n  include:\n    match_type: strict\n    metric_names: [a]\n",
            "`metrics.include`",
        ),
        (
            "log_conditions: ['log.body == \"x\"']\nlogs:\n  resource: ['true']\n",
            "`logs.resource`",
        ),
        (
            "spans:\n  exclude:\n    match_type: strict\n    span_names: [a]\ntraces:\n  spanevent: ['true']\n",
            "`traces.spanevent`",
        ),
        (
            "metrics:\n  datapoint: ['true']\n  exclude:\n    match_type: strict\n    metric_names: [a]\n",
            "`metrics.datapoint`",
        ),
        (
            "logs:\n  log_record: ['true']\n  include:\n    severity_number: {min: INFO}\n",
            "`logs.log_record`",
        ),
    ] {
        let e = errors(yaml);
        assert!(e.contains(needle), "{yaml}: {e}");
    }
    // A legacy span block and context-inferred trace conditions may be combined.
    build::<Traces>(
        "trace_conditions: ['span.name == \"x\"']\nspans:\n  exclude:\n    match_type: strict\n    span_names: [a]\n",
    );
}

#[test]
fn keys_without_effect_are_accepted_with_a_warning() {
    let yaml = r#"
spans:
  exclude:
    match_type: regexp
    regexp:
      cacheenabled: true
      cachemaxnumentries: 100
    span_names: [x]
metrics:
  regexp:
    cacheenabled: true
  include:
    match_type: regexp
    regexp: {cacheenabled: true}
    metric_names: [x]
profile_conditions: ['profile.duration_unix_nano > 1']
"#;
    let ctx = BuildContext::default();
    let sink = std::sync::Arc::new(super::tests::Sink::<Traces>(std::sync::Mutex::new(vec![])));
    FilterProcessorFactory
        .build(&component(yaml), AnyConsumer::Traces(sink), &ctx)
        .unwrap_or_else(|e| panic!("{e}"));
    let warned: Vec<String> = ctx.warnings.take().into_iter().map(|d| d.path).collect();
    for key in [
        "spans.exclude.regexp.cacheenabled",
        "spans.exclude.regexp.cachemaxnumentries",
        "metrics.include.regexp.cacheenabled",
        "metrics.regexp.cacheenabled",
        "profile_conditions",
    ] {
        assert!(
            warned
                .iter()
                .any(|w| w == &format!("processors.filter/t.{key}")),
            "{key}: {warned:?}"
        );
    }
    let e = errors(
        "spans:\n  exclude:\n    match_type: strict\n    span_names: [x]\n    regexp: {bogus: 1}\n",
    );
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn value_types_can_be_tested() {
    use super::eval::{Item, eval};
    use super::parser::parse;
    use super::paths::Context;
    let s = span_with(
        "x",
        1,
        vec![
            ("i", Value::IntValue(1)),
            ("d", Value::DoubleValue(1.5)),
            ("b", Value::BoolValue(true)),
        ],
    );
    let item = Item {
        span: Some(&s),
        ..Item::default()
    };
    for (cond, want) in [
        ("IsInt(attributes[\"i\"])", true),
        ("IsDouble(attributes[\"i\"])", false),
        ("IsDouble(attributes[\"d\"])", true),
        ("IsBool(attributes[\"b\"])", true),
        ("IsString(name)", true),
        ("IsMap(attributes)", true),
        ("IsList(attributes[\"i\"])", false),
        ("IsString(attributes[\"missing\"])", false),
    ] {
        let expr = parse(cond, Context::Span).unwrap_or_else(|e| panic!("{cond}: {e}"));
        assert_eq!(eval(&expr, &item), Ok(want), "{cond}");
    }
    assert!(
        parse("HasAttrOnDatapoint(\"a\", \"b\")", Context::Span)
            .unwrap_err()
            .to_string()
            .contains("only be used in metric conditions")
    );
}
