//! Both processors driven through their factories, as a pipeline builds them: each action on
//! each signal, `include`/`exclude`, and the acknowledgement flowing through.

use std::sync::Mutex;

use super::items::AttributeItems;
use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, metric,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sha2::{Digest, Sha256};
use sluice_config::{ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::Ack;

pub(super) fn component(type_name: &str, yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Processor,
        id: ComponentId::with_name(type_name, "x"),
        pos: Pos::new("test.yaml", 1, 1),
        path: format!("processors.{type_name}/x"),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

fn av(v: any_value::Value) -> AnyValue {
    AnyValue { value: Some(v) }
}
fn s(v: &str) -> AnyValue {
    av(any_value::Value::StringValue(v.into()))
}
fn int(v: i64) -> AnyValue {
    av(any_value::Value::IntValue(v))
}
fn dbl(v: f64) -> AnyValue {
    av(any_value::Value::DoubleValue(v))
}
fn boolean(v: bool) -> AnyValue {
    av(any_value::Value::BoolValue(v))
}
fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}
fn sha(text: &str) -> AnyValue {
    sha_bytes(text.as_bytes())
}
fn sha_bytes(bytes: &[u8]) -> AnyValue {
    s(&hex::encode(Sha256::digest(bytes)))
}

/// Records what reaches the next stage and acknowledges it.
struct Capture<S: Signal> {
    got: Mutex<Vec<(Vec<S::Resource>, usize)>>,
}

#[async_trait]
impl<S: Signal> Consumer<S> for Capture<S> {
    async fn consume(&self, batch: Batch<S>) {
        self.got
            .lock()
            .unwrap()
            .push((batch.resources().to_vec(), batch.bytes()));
        batch.settle(&Ok(()));
    }
}

fn build<S: Signal + SignalConsumer>(
    factory: &dyn ProcessorFactory,
    yaml: &str,
) -> Result<(DynConsumer<S>, Arc<Capture<S>>), ConfigErrors> {
    let capture = Arc::new(Capture::<S> {
        got: Mutex::new(Vec::new()),
    });
    let c = component(factory.info().type_name, yaml);
    let built = factory.build(&c, S::to_any(capture.clone()), &BuildContext::default())?;
    let consumer = S::from_any(built.consumer).unwrap();
    Ok((consumer, capture))
}

/// Sends `input` through a processor built from `yaml` and returns what came out, after
/// checking the sender's acknowledgement resolved successfully.
async fn run<S: Signal + SignalConsumer>(
    factory: &dyn ProcessorFactory,
    yaml: &str,
    input: Vec<S::Resource>,
) -> Vec<S::Resource> {
    let (consumer, capture) = build::<S>(factory, yaml).unwrap();
    let (ack, waiter) = Ack::new();
    consumer
        .consume(Batch::from_resources(input).with_ack(ack))
        .await;
    assert_eq!(waiter.await, Ok(()));
    let mut got = capture.got.lock().unwrap();
    assert_eq!(got.len(), 1, "one batch in, one batch out");
    got.remove(0).0
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![kv("service.name", s(service))],
        ..Default::default()
    })
}

fn spans(service: &str, items: &[(&str, Vec<KeyValue>)]) -> ResourceSpans {
    ResourceSpans {
        resource: resource(service),
        scope_spans: vec![ScopeSpans {
            spans: items
                .iter()
                .map(|(name, attrs)| Span {
                    name: name.to_string(),
                    attributes: attrs.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn logs(service: &str, items: &[(&str, &str, Vec<KeyValue>)]) -> ResourceLogs {
    ResourceLogs {
        resource: resource(service),
        scope_logs: vec![ScopeLogs {
            log_records: items
                .iter()
                .map(|(body, severity, attrs)| LogRecord {
                    body: Some(s(body)),
                    severity_text: severity.to_string(),
                    attributes: attrs.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// One metric of every type, each with one data point carrying `attrs`.
fn every_metric_type(prefix: &str, attrs: &[KeyValue]) -> Vec<Metric> {
    use metric::Data;
    let a = attrs.to_vec();
    let data = [
        (
            "gauge",
            Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: a.clone(),
                    ..Default::default()
                }],
            }),
        ),
        (
            "sum",
            Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    attributes: a.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ),
        (
            "histogram",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: a.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ),
        (
            "exponential_histogram",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: a.clone(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ),
        (
            "summary",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: a.clone(),
                    ..Default::default()
                }],
            }),
        ),
    ];
    data.into_iter()
        .map(|(name, d)| Metric {
            name: format!("{prefix}{name}"),
            data: Some(d),
            ..Default::default()
        })
        .collect()
}

fn metrics(service: &str, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: resource(service),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Every item's attributes, in order.
fn item_attrs<S: AttributeItems>(resources: &[S::Resource]) -> Vec<Vec<KeyValue>> {
    let mut copy = resources.to_vec();
    let mut out = Vec::new();
    S::for_each_item(&mut copy, &mut |_, attrs| out.push(attrs.clone()));
    out
}

/// Runs an `attributes` config on one span, one log record and one data point of each metric
/// type, all starting with `input`, and checks each ends with `expected`.
async fn on_every_signal(yaml: &str, input: Vec<KeyValue>, expected: Vec<KeyValue>) {
    let f = AttributesProcessorFactory;
    let out = run::<Traces>(&f, yaml, vec![spans("svc", &[("span", input.clone())])]).await;
    assert_eq!(item_attrs::<Traces>(&out), vec![expected.clone()], "traces");
    let out = run::<Logs>(&f, yaml, vec![logs("svc", &[("b", "INFO", input.clone())])]).await;
    assert_eq!(item_attrs::<Logs>(&out), vec![expected.clone()], "logs");
    let out = run::<Metrics>(
        &f,
        yaml,
        vec![metrics("svc", every_metric_type("", &input))],
    )
    .await;
    assert_eq!(item_attrs::<Metrics>(&out), vec![expected; 5], "metrics");
}

/// Runs a `resource` config on data of each signal whose resource starts with `input`.
async fn on_every_resource(yaml: &str, input: Vec<KeyValue>, expected: Vec<KeyValue>) {
    let f = ResourceProcessorFactory;
    let res = Some(Resource {
        attributes: input,
        ..Default::default()
    });
    let want = Some(Resource {
        attributes: expected,
        ..Default::default()
    });
    let mut t = spans("svc", &[("span", vec![])]);
    t.resource = res.clone();
    let out = run::<Traces>(&f, yaml, vec![t]).await;
    assert_eq!(out[0].resource, want, "traces");
    let mut l = logs("svc", &[("b", "INFO", vec![])]);
    l.resource = res.clone();
    let out = run::<Logs>(&f, yaml, vec![l]).await;
    assert_eq!(out[0].resource, want, "logs");
    let mut m = metrics("svc", every_metric_type("", &[]));
    m.resource = res;
    let out = run::<Metrics>(&f, yaml, vec![m]).await;
    assert_eq!(out[0].resource, want, "metrics");
}

// ---- each action on each signal (attributes processor) ----

#[tokio::test]
async fn insert_adds_missing_keys_only() {
    let yaml = "
actions:
  - {key: env, value: prod, action: insert}
  - {key: a, value: changed, action: insert}
";
    on_every_signal(
        yaml,
        vec![kv("a", s("1"))],
        vec![kv("a", s("1")), kv("env", s("prod"))],
    )
    .await;
}

#[tokio::test]
async fn update_changes_existing_keys_only() {
    let yaml = "
actions:
  - {key: a, value: 2, action: update}
  - {key: missing, value: x, action: update}
";
    on_every_signal(
        yaml,
        vec![kv("a", s("1")), kv("b", s("keep"))],
        vec![kv("a", int(2)), kv("b", s("keep"))],
    )
    .await;
}

#[tokio::test]
async fn upsert_updates_or_inserts() {
    let yaml = "
actions:
  - {key: a, value: 2.5, action: upsert}
  - {key: new, value: true, action: upsert}
";
    on_every_signal(
        yaml,
        vec![kv("a", s("1"))],
        vec![kv("a", dbl(2.5)), kv("new", boolean(true))],
    )
    .await;
}

#[tokio::test]
async fn from_attribute_copies_and_skips_when_the_source_is_missing() {
    let yaml = "
actions:
  - {key: copy, from_attribute: src, action: insert}
  - {key: src2, from_attribute: src, action: update}
  - {key: up, from_attribute: src, action: upsert}
  - {key: never, from_attribute: absent, action: upsert}
";
    on_every_signal(
        yaml,
        vec![kv("src", int(7)), kv("src2", s("old"))],
        vec![
            kv("src", int(7)),
            kv("src2", int(7)),
            kv("copy", int(7)),
            kv("up", int(7)),
        ],
    )
    .await;
}

#[tokio::test]
async fn delete_by_key_and_by_pattern_keeps_the_order_of_the_rest() {
    let yaml = r#"
actions:
  - {key: password, action: delete}
  - {pattern: "^tmp\\.", action: delete}
"#;
    on_every_signal(
        yaml,
        vec![
            kv("a", s("1")),
            kv("tmp.x", s("2")),
            kv("password", s("p")),
            kv("b", s("3")),
            kv("tmp.y", s("4")),
        ],
        vec![kv("a", s("1")), kv("b", s("3"))],
    )
    .await;
}

#[tokio::test]
async fn hash_replaces_values_with_sha256_hex() {
    let yaml = r#"
actions:
  - {key: user.email, action: hash}
  - {pattern: "^card\\.", action: hash}
"#;
    on_every_signal(
        yaml,
        vec![
            kv("user.email", s("a@b.c")),
            kv("card.number", int(4111)),
            kv("card.valid", boolean(true)),
            kv("other", s("x")),
        ],
        vec![
            kv("user.email", sha("a@b.c")),
            kv("card.number", sha_bytes(&4111i64.to_le_bytes())),
            kv("card.valid", sha_bytes(&[1])),
            kv("other", s("x")),
        ],
    )
    .await;
    // As the OTel Collector: a double hashes its IEEE bits, and what has no hashable content
    // (bytes, lists, maps, the empty string) becomes "".
    on_every_signal(
        "actions: [{pattern: '^v', action: hash}]",
        vec![
            kv("v.double", dbl(1.5)),
            kv("v.bytes", av(any_value::Value::BytesValue(vec![1, 2]))),
            kv("v.empty", s("")),
            kv("v.false", boolean(false)),
        ],
        vec![
            kv("v.double", sha_bytes(&1.5f64.to_bits().to_le_bytes())),
            kv("v.bytes", s("")),
            kv("v.empty", s("")),
            kv("v.false", sha_bytes(&[0])),
        ],
    )
    .await;
    // A known digest, so the encoding is the standard lowercase hex of SHA-256.
    assert_eq!(
        sha("abc"),
        s("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
}

#[tokio::test]
async fn extract_upserts_named_groups_and_ignores_non_matches() {
    let yaml = r#"
actions:
  - key: http.url
    pattern: '^(?P<http.scheme>[a-z]+)://(?P<http.host>[^/]+)(?P<http.path>/.*)?$'
    action: extract
"#;
    on_every_signal(
        yaml,
        vec![
            kv("http.url", s("https://example.com")),
            kv("http.host", s("old")),
        ],
        // `http.path` did not participate in the match, so it is not added.
        vec![
            kv("http.url", s("https://example.com")),
            kv("http.host", s("example.com")),
            kv("http.scheme", s("https")),
        ],
    )
    .await;
    let unchanged = vec![kv("http.url", s("not a url")), kv("n", int(1))];
    on_every_signal(yaml, unchanged.clone(), unchanged).await;
    // Only string values are matched.
    on_every_signal(
        yaml,
        vec![kv("http.url", int(5))],
        vec![kv("http.url", int(5))],
    )
    .await;
}

#[tokio::test]
async fn convert_to_int_double_and_string() {
    let yaml = "
actions:
  - {key: i1, action: convert, converted_type: int}
  - {key: i2, action: convert, converted_type: int}
  - {key: i3, action: convert, converted_type: int}
  - {key: bad, action: convert, converted_type: int}
  - {key: d1, action: convert, converted_type: double}
  - {key: d2, action: convert, converted_type: double}
  - {key: s1, action: convert, converted_type: string}
  - {key: s2, action: convert, converted_type: string}
  - {key: s3, action: convert, converted_type: string}
";
    on_every_signal(
        yaml,
        vec![
            kv("i1", s("42")),
            kv("i2", dbl(3.9)),
            kv("i3", boolean(true)),
            kv("bad", s("forty")),
            kv("d1", s("1.25")),
            kv("d2", int(3)),
            kv("s1", int(200)),
            kv("s2", dbl(0.5)),
            kv("s3", boolean(false)),
        ],
        vec![
            kv("i1", int(42)),
            kv("i2", int(3)),
            kv("i3", int(1)),
            kv("bad", s("forty")),
            kv("d1", dbl(1.25)),
            kv("d2", dbl(3.0)),
            kv("s1", s("200")),
            kv("s2", s("0.5")),
            kv("s3", s("false")),
        ],
    )
    .await;
}

#[tokio::test]
async fn values_keep_their_yaml_type() {
    let yaml = r#"
actions:
  - {key: int, value: 1, action: insert}
  - {key: neg, value: -2, action: insert}
  - {key: double, value: 1.5, action: insert}
  - {key: bool, value: false, action: insert}
  - {key: quoted, value: "1", action: insert}
  - {key: list, value: [a, 1], action: insert}
  - {key: map, value: {k: v}, action: insert}
"#;
    on_every_signal(
        yaml,
        vec![],
        vec![
            kv("int", int(1)),
            kv("neg", int(-2)),
            kv("double", dbl(1.5)),
            kv("bool", boolean(false)),
            kv("quoted", s("1")),
            kv(
                "list",
                av(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![s("a"), int(1)],
                })),
            ),
            kv(
                "map",
                av(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![kv("k", s("v"))],
                })),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn actions_run_in_order_on_each_others_results() {
    let yaml = "
actions:
  - {key: a, value: '5', action: upsert}
  - {key: a, action: convert, converted_type: int}
  - {key: b, from_attribute: a, action: insert}
  - {key: a, action: delete}
";
    on_every_signal(yaml, vec![], vec![kv("b", int(5))]).await;
}

// ---- each action on each signal (resource processor) ----

#[tokio::test]
async fn resource_insert_update_upsert() {
    let yaml = "
attributes:
  - {key: deployment.environment, value: prod, action: insert}
  - {key: service.name, value: renamed, action: update}
  - {key: host.name, from_attribute: service.name, action: upsert}
  - {key: service.name, value: ignored, action: insert}
";
    on_every_resource(
        yaml,
        vec![kv("service.name", s("svc"))],
        vec![
            kv("service.name", s("renamed")),
            kv("deployment.environment", s("prod")),
            kv("host.name", s("renamed")),
        ],
    )
    .await;
}

#[tokio::test]
async fn resource_delete_and_hash() {
    let yaml = r#"
attributes:
  - {pattern: "^k8s\\.pod\\.", action: delete}
  - {key: host.ip, action: delete}
  - {key: user.id, action: hash}
"#;
    on_every_resource(
        yaml,
        vec![
            kv("k8s.pod.name", s("p")),
            kv("host.ip", s("10.0.0.1")),
            kv("k8s.pod.uid", s("u")),
            kv("user.id", s("u1")),
            kv("keep", s("k")),
        ],
        vec![kv("user.id", sha("u1")), kv("keep", s("k"))],
    )
    .await;
}

#[tokio::test]
async fn resource_extract_and_convert() {
    let yaml = r#"
actions:
  - {key: image, pattern: '^(?P<container.image.name>[^:]+):(?P<container.image.tag>.+)$', action: extract}
  - {key: pid, action: convert, converted_type: int}
"#;
    on_every_resource(
        yaml,
        vec![kv("image", s("nginx:1.27")), kv("pid", s("123"))],
        vec![
            kv("image", s("nginx:1.27")),
            kv("pid", int(123)),
            kv("container.image.name", s("nginx")),
            kv("container.image.tag", s("1.27")),
        ],
    )
    .await;
}

#[tokio::test]
async fn resource_is_created_only_when_an_action_adds_to_it() {
    let f = ResourceProcessorFactory;
    let mut no_resource = spans("svc", &[("s", vec![])]);
    no_resource.resource = None;
    let yaml = "attributes: [{key: env, value: prod, action: upsert}]";
    let out = run::<Traces>(&f, yaml, vec![no_resource.clone()]).await;
    assert_eq!(
        out[0].resource.as_ref().map(|r| r.attributes.clone()),
        Some(vec![kv("env", s("prod"))])
    );
    let yaml = "attributes: [{key: env, action: delete}]";
    let out = run::<Traces>(&f, yaml, vec![no_resource]).await;
    assert_eq!(out[0].resource, None);
}

#[tokio::test]
async fn resource_processor_leaves_item_attributes_alone() {
    let f = ResourceProcessorFactory;
    let yaml = "attributes: [{key: a, action: delete}]";
    let input = vec![logs("svc", &[("b", "INFO", vec![kv("a", s("1"))])])];
    let out = run::<Logs>(&f, yaml, input).await;
    assert_eq!(item_attrs::<Logs>(&out), vec![vec![kv("a", s("1"))]]);
}

// ---- include / exclude ----

const TAG: &str = "actions: [{key: tagged, value: true, action: insert}]\n";

fn tagged(attrs: &[KeyValue]) -> bool {
    attrs.iter().any(|kv| kv.key == "tagged")
}

async fn traces_tagged(filter: &str, input: Vec<ResourceSpans>) -> Vec<bool> {
    let out = run::<Traces>(
        &AttributesProcessorFactory,
        &format!("{TAG}{filter}"),
        input,
    )
    .await;
    item_attrs::<Traces>(&out)
        .iter()
        .map(|a| tagged(a))
        .collect()
}

async fn logs_tagged(filter: &str, input: Vec<ResourceLogs>) -> Vec<bool> {
    let out = run::<Logs>(
        &AttributesProcessorFactory,
        &format!("{TAG}{filter}"),
        input,
    )
    .await;
    item_attrs::<Logs>(&out).iter().map(|a| tagged(a)).collect()
}

async fn metrics_tagged(filter: &str, input: Vec<ResourceMetrics>) -> Vec<bool> {
    let out = run::<Metrics>(
        &AttributesProcessorFactory,
        &format!("{TAG}{filter}"),
        input,
    )
    .await;
    item_attrs::<Metrics>(&out)
        .iter()
        .map(|a| tagged(a))
        .collect()
}

fn two_services() -> Vec<ResourceSpans> {
    vec![
        spans("checkout", &[("GET /cart", vec![]), ("health", vec![])]),
        spans(
            "billing",
            &[("GET /invoice", vec![]), ("POST /pay", vec![])],
        ),
    ]
}

#[tokio::test]
async fn include_services_strict() {
    let f = "include: {match_type: strict, services: [billing]}";
    assert_eq!(
        traces_tagged(f, two_services()).await,
        [false, false, true, true]
    );
}

#[tokio::test]
async fn include_services_regexp_is_unanchored() {
    let f = "include: {match_type: regexp, services: [ill]}";
    assert_eq!(
        traces_tagged(f, two_services()).await,
        [false, false, true, true]
    );
}

#[tokio::test]
async fn include_span_names_strict_and_regexp() {
    let f = "include: {match_type: strict, span_names: [health, 'POST /pay']}";
    assert_eq!(
        traces_tagged(f, two_services()).await,
        [false, true, false, true]
    );
    let f = "include: {match_type: regexp, span_names: ['^GET ']}";
    assert_eq!(
        traces_tagged(f, two_services()).await,
        [true, false, true, false]
    );
}

#[tokio::test]
async fn exclude_strict_and_regexp() {
    let f = "exclude: {match_type: strict, span_names: [health]}";
    assert_eq!(
        traces_tagged(f, two_services()).await,
        [true, false, true, true]
    );
    let f = "exclude: {match_type: regexp, services: ['^check']}";
    assert_eq!(
        traces_tagged(f, two_services()).await,
        [false, false, true, true]
    );
}

#[tokio::test]
async fn include_and_exclude_together() {
    let f = "
include: {match_type: regexp, span_names: ['^GET ']}
exclude: {match_type: strict, services: [checkout]}
";
    assert_eq!(
        traces_tagged(f, two_services()).await,
        [false, false, true, false]
    );
}

#[tokio::test]
async fn every_property_of_a_block_must_match() {
    let f = "include: {match_type: strict, services: [checkout], span_names: ['GET /invoice']}";
    assert_eq!(
        traces_tagged(f, two_services()).await,
        [false, false, false, false]
    );
}

fn with_status() -> Vec<ResourceSpans> {
    vec![spans(
        "svc",
        &[
            ("a", vec![kv("http.status_code", int(500))]),
            ("b", vec![kv("http.status_code", s("500"))]),
            ("c", vec![kv("http.status_code", int(200))]),
            ("d", vec![]),
        ],
    )]
}

#[tokio::test]
async fn attributes_strict_compares_value_and_type() {
    let f = "include: {match_type: strict, attributes: [{key: http.status_code, value: 500}]}";
    assert_eq!(
        traces_tagged(f, with_status()).await,
        [true, false, false, false]
    );
    let f = "include: {match_type: strict, attributes: [{key: http.status_code, value: '500'}]}";
    assert_eq!(
        traces_tagged(f, with_status()).await,
        [false, true, false, false]
    );
}

#[tokio::test]
async fn attributes_without_value_match_on_presence() {
    let f = "include: {match_type: strict, attributes: [{key: http.status_code}]}";
    assert_eq!(
        traces_tagged(f, with_status()).await,
        [true, true, true, false]
    );
}

#[tokio::test]
async fn attributes_regexp_matches_the_text_form() {
    let f =
        r#"include: {match_type: regexp, attributes: [{key: http.status_code, value: '^5\d\d$'}]}"#;
    assert_eq!(
        traces_tagged(f, with_status()).await,
        [true, true, false, false]
    );
    // A number written as the pattern is read as its text.
    let f = "exclude: {match_type: regexp, attributes: [{key: http.status_code, value: 200}]}";
    assert_eq!(
        traces_tagged(f, with_status()).await,
        [true, true, false, true]
    );
}

#[tokio::test]
async fn all_listed_attributes_must_match() {
    let input = vec![spans(
        "svc",
        &[
            ("a", vec![kv("x", s("1")), kv("y", s("2"))]),
            ("b", vec![kv("x", s("1"))]),
        ],
    )];
    let f = "include: {match_type: strict, attributes: [{key: x, value: '1'}, {key: y}]}";
    assert_eq!(traces_tagged(f, input).await, [true, false]);
}

#[tokio::test]
async fn resources_strict_and_regexp() {
    let mut other = spans("svc2", &[("s", vec![])]);
    if let Some(r) = other.resource.as_mut() {
        r.attributes
            .push(kv("k8s.namespace.name", s("kube-system")));
    }
    let input = vec![spans("svc1", &[("s", vec![])]), other];
    let f =
        "include: {match_type: strict, resources: [{key: k8s.namespace.name, value: kube-system}]}";
    assert_eq!(traces_tagged(f, input.clone()).await, [false, true]);
    let f = "exclude: {match_type: regexp, resources: [{key: service.name, value: '1$'}]}";
    assert_eq!(traces_tagged(f, input).await, [false, true]);
}

fn some_logs() -> Vec<ResourceLogs> {
    vec![
        logs(
            "api",
            &[
                ("user logged in", "INFO", vec![]),
                ("disk full", "ERROR", vec![]),
            ],
        ),
        logs("worker", &[("job done", "INFO", vec![kv("job", s("x"))])]),
    ]
}

#[tokio::test]
async fn logs_match_on_bodies_severity_services_and_attributes() {
    let f = "include: {match_type: strict, log_bodies: ['disk full']}";
    assert_eq!(logs_tagged(f, some_logs()).await, [false, true, false]);
    let f = "include: {match_type: regexp, log_bodies: ['^user ', 'done$']}";
    assert_eq!(logs_tagged(f, some_logs()).await, [true, false, true]);
    let f = "exclude: {match_type: strict, log_severity_texts: [INFO]}";
    assert_eq!(logs_tagged(f, some_logs()).await, [false, true, false]);
    let f = "include: {match_type: regexp, log_severity_texts: ['^ERR']}";
    assert_eq!(logs_tagged(f, some_logs()).await, [false, true, false]);
    let f = "include: {match_type: strict, resources: [{key: service.name, value: worker}], attributes: [{key: job}]}";
    assert_eq!(logs_tagged(f, some_logs()).await, [false, false, true]);
    // Attributes without a value need no match type.
    let f = "include: {attributes: [{key: job}]}";
    assert_eq!(logs_tagged(f, some_logs()).await, [false, false, true]);
}

#[tokio::test]
async fn logs_match_on_a_minimum_severity_number() {
    let input = || {
        let mut l = logs(
            "api",
            &[
                ("debug", "DEBUG", vec![]),
                ("info", "INFO", vec![]),
                ("error", "ERROR", vec![]),
                ("none", "", vec![]),
            ],
        );
        for (record, n) in l.scope_logs[0].log_records.iter_mut().zip([5, 9, 17, 0]) {
            record.severity_number = n;
        }
        vec![l]
    };
    let f = "include: {log_severity_number: {min: 9}}";
    assert_eq!(logs_tagged(f, input()).await, [false, true, true, false]);
    let f = "include: {log_severity_number: {min: INFO, match_undefined: true}}";
    assert_eq!(logs_tagged(f, input()).await, [false, true, true, true]);
    let f = "exclude: {log_severity_number: {min: 17}}";
    assert_eq!(logs_tagged(f, input()).await, [true, true, false, true]);
    // Unset min: every record with a severity.
    let f = "include: {log_severity_number: {}}";
    assert_eq!(logs_tagged(f, input()).await, [true, true, true, false]);
}

#[tokio::test]
async fn metrics_match_on_names_for_every_point_type() {
    let input = || {
        vec![metrics("svc", {
            let mut m = every_metric_type("http.", &[kv("route", s("/a"))]);
            m.extend(every_metric_type("db.", &[kv("route", s("/b"))]));
            m
        })]
    };
    let f = "include: {match_type: strict, metric_names: [http.gauge, db.summary]}";
    let mut want = vec![false; 10];
    want[0] = true;
    want[9] = true;
    assert_eq!(metrics_tagged(f, input()).await, want);
    let f = r#"include: {match_type: regexp, metric_names: ['^http\.']}"#;
    let want: Vec<bool> = (0..10).map(|i| i < 5).collect();
    assert_eq!(metrics_tagged(f, input()).await, want);
    // As the OTel Collector, metrics are selected by their names only: `resources` is
    // accepted and left out (with a warning), so this include selects everything.
    let f = "include: {match_type: strict, resources: [{key: nope}]}";
    assert_eq!(metrics_tagged(f, input()).await, vec![true; 10]);
}

// ---- the batch around the edits ----

#[tokio::test]
async fn items_and_resources_keep_their_order() {
    let input = two_services();
    let out = run::<Traces>(&AttributesProcessorFactory, TAG, input.clone()).await;
    let names = |r: &[ResourceSpans]| -> Vec<String> {
        r.iter()
            .flat_map(|rs| rs.scope_spans.iter().flat_map(|s| s.spans.iter()))
            .map(|s| s.name.clone())
            .collect()
    };
    assert_eq!(names(&out), names(&input));
    assert_eq!(out[0].resource, input[0].resource);
    assert_eq!(out[1].resource, input[1].resource);
}

#[tokio::test]
async fn edited_batch_is_resized_and_a_shared_copy_is_untouched() {
    let (consumer, capture) = build::<Logs>(
        &AttributesProcessorFactory,
        "actions: [{key: a, action: hash}]",
    )
    .unwrap();
    let batch =
        Batch::<Logs>::from_resources(vec![logs("svc", &[("b", "INFO", vec![kv("a", s("x"))])])]);
    let before = batch.bytes();
    let other_branch = batch.fork();
    consumer.consume(batch).await;
    let (data, bytes) = capture.got.lock().unwrap().remove(0);
    assert_eq!(bytes, Batch::<Logs>::from_resources(data).bytes());
    assert!(
        bytes > before,
        "a 64-character hash replaced a 1-character value"
    );
    assert_eq!(
        item_attrs::<Logs>(other_branch.resources()),
        vec![vec![kv("a", s("x"))]]
    );
}

#[tokio::test]
async fn a_failure_downstream_reaches_the_sender() {
    struct Refuse;
    #[async_trait]
    impl Consumer<Traces> for Refuse {
        async fn consume(&self, batch: Batch<Traces>) {
            batch.settle(&Err(sluice_pipeline::DeliveryError::permanent("no")));
        }
    }
    let c = component("attributes", TAG);
    let built = AttributesProcessorFactory
        .build(
            &c,
            AnyConsumer::Traces(Arc::new(Refuse)),
            &BuildContext::default(),
        )
        .unwrap();
    let AnyConsumer::Traces(consumer) = built.consumer else {
        panic!("wrong signal");
    };
    let (ack, waiter) = Ack::new();
    consumer
        .consume(Batch::from_resources(two_services()).with_ack(ack))
        .await;
    assert!(waiter.await.is_err());
}

fn kinds_and_scopes() -> Vec<ResourceSpans> {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    let scope = |name: &str, version: &str, kinds: &[SpanKind]| ScopeSpans {
        scope: Some(InstrumentationScope {
            name: name.into(),
            version: version.into(),
            ..Default::default()
        }),
        spans: kinds
            .iter()
            .map(|k| Span {
                kind: *k as i32,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    vec![ResourceSpans {
        resource: resource("svc"),
        scope_spans: vec![
            scope("io.http", "1.2.0", &[SpanKind::Server, SpanKind::Client]),
            scope("io.db", "0.9.1", &[SpanKind::Internal, SpanKind::Producer]),
        ],
        ..Default::default()
    }]
}

#[tokio::test]
async fn span_kinds_accept_both_spellings_and_regexp() {
    let f = "include: {match_type: strict, span_kinds: [Server, SPAN_KIND_PRODUCER]}";
    assert_eq!(
        traces_tagged(f, kinds_and_scopes()).await,
        [true, false, false, true]
    );
    let f = "exclude: {match_type: regexp, span_kinds: ['^C']}";
    assert_eq!(
        traces_tagged(f, kinds_and_scopes()).await,
        [true, false, true, true]
    );
}

#[tokio::test]
async fn libraries_match_scope_name_and_optional_version() {
    let f = "include: {match_type: strict, libraries: [{name: io.db}]}";
    assert_eq!(
        traces_tagged(f, kinds_and_scopes()).await,
        [false, false, true, true]
    );
    // Every entry must match, as the OTel Collector checks them: one scope cannot be both.
    let f = "include: {match_type: strict, libraries: [{name: io.db, version: 1.0.0}, {name: io.http, version: 1.2.0}]}";
    assert_eq!(
        traces_tagged(f, kinds_and_scopes()).await,
        [false, false, false, false]
    );
    let f = "include: {match_type: regexp, libraries: [{name: '^io\\.'}, {name: http}]}";
    assert_eq!(
        traces_tagged(f, kinds_and_scopes()).await,
        [true, true, false, false]
    );
    let f = r#"exclude: {match_type: regexp, libraries: [{name: '^io\.', version: '^0\.'}]}"#;
    assert_eq!(
        traces_tagged(f, kinds_and_scopes()).await,
        [true, true, false, false]
    );
    let input = some_logs();
    let f = "include: {match_type: strict, libraries: [{name: ''}]}";
    assert_eq!(logs_tagged(f, input).await, [true, true, true]);
}

/// `from_context` reads what the receiver kept of the request (`include_metadata`): a header
/// by `metadata.<name>` or its bare name, several values joined with `;`; nothing is written
/// when the request did not carry it.
#[tokio::test]
async fn from_context_copies_request_metadata() {
    let yaml = "actions:\n  - {key: tenant, action: upsert, from_context: metadata.X-Tenant}\n  - {key: route, action: insert, from_context: x-route}\n  - {key: missing, action: insert, from_context: metadata.absent}\n";
    let (consumer, capture) = build::<Traces>(&AttributesProcessorFactory, yaml).unwrap();
    let mut metadata = sluice_pipeline::metadata::ClientMetadata::default();
    metadata.add("x-tenant", "acme");
    metadata.add("X-Route", "a");
    metadata.add("x-route", "b");
    let (ack, waiter) = Ack::new();
    consumer
        .consume(
            Batch::from_resources(vec![spans("svc", &[("op", vec![])])])
                .with_ack(ack)
                .with_metadata(Arc::new(metadata)),
        )
        .await;
    assert_eq!(waiter.await, Ok(()));
    {
        let got = capture.got.lock().unwrap();
        let attrs = &got[0].0[0].scope_spans[0].spans[0].attributes;
        assert_eq!(attrs, &vec![kv("tenant", s("acme")), kv("route", s("a;b"))]);
    }

    // A request without metadata: the actions write nothing.
    let (ack, waiter) = Ack::new();
    consumer
        .consume(Batch::from_resources(vec![spans("svc", &[("op", vec![])])]).with_ack(ack))
        .await;
    assert_eq!(waiter.await, Ok(()));
    let got = capture.got.lock().unwrap();
    assert!(got[1].0[0].scope_spans[0].spans[0].attributes.is_empty());
}
