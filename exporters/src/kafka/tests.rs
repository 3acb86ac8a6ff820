//! The exporter against librdkafka's in-process mock cluster, driven through its factory.

use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use sluice_config::{ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::codec::{decode_json, decode_proto};
use sluice_pipeline::consumer::SignalConsumer;
use sluice_pipeline::{AnyConsumer, DynConsumer, Outcome, deliver};

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Exporter,
        id: ComponentId::with_name("kafka", "t"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "exporters.kafka/t".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

/// The exporter for one signal, sending inline so a delivery's outcome is the broker's answer.
fn exporter<S: SignalConsumer>(brokers: &str, extra: &str, ctx: &BuildContext) -> DynConsumer<S> {
    let yaml = format!(
        "brokers: {brokers}\nsending_queue: {{enabled: false}}\nretry_on_failure: {{enabled: false}}\n{extra}"
    );
    let built =
        sluice_pipeline::build_exporter(&KafkaExporterFactory, &component(&yaml), &[S::KIND], ctx)
            .unwrap();
    let consumer: AnyConsumer = built.consumers.into_iter().next().unwrap();
    S::from_any(consumer).unwrap()
}

async fn send<S: Signal>(to: &DynConsumer<S>, resources: Vec<S::Resource>) -> Outcome {
    deliver(
        to,
        Batch::from_resources(resources),
        StdDuration::from_secs(30),
    )
    .await
}

/// Every message of `topic` from the start, until `n` arrived.
fn consume(brokers: &str, topic: &str, n: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{topic}-{}", fastrand_id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    // A cap so a bug fails the test instead of hanging it.
    for _ in 0..600 {
        if out.len() >= n {
            break;
        }
        if let Some(m) = consumer.poll(StdDuration::from_millis(100)) {
            out.push(m.unwrap().detach());
        }
    }
    assert_eq!(out.len(), n, "messages in {topic}");
    out
}

/// Messages of `topic` from the start up to the first whose (single) log body is `last`.
fn consume_until(brokers: &str, topic: &str, last: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-{topic}-{}", fastrand_id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    for _ in 0..600 {
        if let Some(m) = consumer.poll(StdDuration::from_millis(100)) {
            let m = m.unwrap().detach();
            let done = decode::<Logs>(&m)[0].scope_logs[0].log_records[0].body
                == Some(AnyValue {
                    value: Some(Value::StringValue(last.into())),
                });
            out.push(m);
            if done {
                return out;
            }
        }
    }
    panic!("`{last}` never arrived in {topic}");
}

fn fastrand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn header(m: &OwnedMessage, name: &str) -> String {
    let headers = m.headers().unwrap();
    let h = headers.iter().find(|h| h.key == name).unwrap();
    String::from_utf8(h.value.unwrap().to_vec()).unwrap()
}

fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![attr("service.name", service)],
        ..Default::default()
    })
}

fn span(trace: u8, id: u8) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        name: format!("op-{trace}-{id}"),
        start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(id),
        ..Default::default()
    }
}

fn traces(service: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: resource(service),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn logs(service: &str, bodies: &[&str]) -> ResourceLogs {
    ResourceLogs {
        resource: resource(service),
        scope_logs: vec![ScopeLogs {
            log_records: bodies
                .iter()
                .map(|b| LogRecord {
                    body: Some(AnyValue {
                        value: Some(Value::StringValue(b.to_string())),
                    }),
                    severity_number: 9,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn metrics(service: &str) -> ResourceMetrics {
    ResourceMetrics {
        resource: resource(service),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "g".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: 1,
                        value: Some(number_data_point::Value::AsDouble(2.5)),
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn decode<S: Signal>(m: &OwnedMessage) -> Vec<S::Resource> {
    let payload = m.payload().unwrap();
    match header(m, ENCODING_HEADER).as_str() {
        "otlp_proto" => decode_proto::<S>(payload).unwrap(),
        "otlp_json" => decode_json::<S>(payload).unwrap(),
        other => panic!("{other}"),
    }
}

async fn round_trip<S: SignalConsumer>(cluster: &str, data: Vec<S::Resource>) {
    for encoding in ["otlp_proto", "otlp_json"] {
        let topic = format!("rt-{}-{encoding}", S::KIND.as_str());
        let ctx = BuildContext::default();
        let to = exporter::<S>(
            cluster,
            &format!("topic: {topic}\nencoding: {encoding}"),
            &ctx,
        );
        assert_eq!(send(&to, data.clone()).await, Ok(()));
        let got = consume(cluster, &topic, 1);
        assert_eq!(header(&got[0], SIGNAL_HEADER), S::KIND.as_str());
        assert_eq!(header(&got[0], ENCODING_HEADER), encoding);
        assert_eq!(got[0].key(), None);
        assert!(decode::<S>(&got[0]) == data, "{encoding}");
    }
}

#[tokio::test]
async fn every_signal_and_encoding_arrives_as_sent() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    round_trip::<Traces>(&b, vec![traces("a", vec![span(1, 1), span(2, 2)])]).await;
    round_trip::<Metrics>(&b, vec![metrics("a"), metrics("b")]).await;
    round_trip::<Logs>(&b, vec![logs("a", &["x", "y"])]).await;
}

#[tokio::test]
async fn default_topics_are_the_otel_ones() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Logs>(&b, "", &ctx);
    assert_eq!(send(&to, vec![logs("a", &["x"])]).await, Ok(()));
    consume(&b, "otlp_logs", 1);
    let shared = |yaml: &str| {
        sluice_kafka_client::decode::<KafkaExporterConfig>(
            &component(yaml),
            config::NO_EFFECT,
            &ctx.warnings,
        )
        .unwrap()
        .0
    };
    assert_eq!(
        shared("topic: all")
            .exporter_topic(SignalKind::Traces)
            .unwrap(),
        "all"
    );
    let defaults = shared("{}");
    assert_eq!(
        defaults.exporter_topic(SignalKind::Traces).unwrap(),
        "otlp_spans"
    );
    assert_eq!(
        defaults.exporter_topic(SignalKind::Metrics).unwrap(),
        "otlp_metrics"
    );
}

#[tokio::test]
async fn raw_logs_are_one_message_per_record() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Logs>(&b, "logs: {topic: raw, encoding: raw}", &ctx);
    assert_eq!(
        send(&to, vec![logs("a", &["one", "two"]), logs("b", &["three"])]).await,
        Ok(())
    );
    let mut bodies: Vec<Vec<u8>> = consume(&b, "raw", 3)
        .iter()
        .map(|m| m.payload().unwrap().to_vec())
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [b"one".to_vec(), b"three".to_vec(), b"two".to_vec()]
    );
    // `raw` makes no sense for traces: a configuration error.
    let err = sluice_pipeline::build_exporter(
        &KafkaExporterFactory,
        &component("encoding: raw"),
        &[SignalKind::Traces],
        &ctx,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("cannot be used for traces"),
        "{err}"
    );
}

#[tokio::test]
async fn a_batch_larger_than_a_message_is_split_and_an_item_too_large_is_refused() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Logs>(
        &b,
        "topic: split\nproducer: {max_message_bytes: 1000}",
        &ctx,
    );
    let body = "b".repeat(100);
    let bodies: Vec<&str> = (0..20).map(|_| body.as_str()).collect();
    let data = vec![logs("a", &bodies[..12]), logs("b", &bodies[12..])];
    assert_eq!(send(&to, data.clone()).await, Ok(()));
    // Read everything there is: at least 3 messages (20 × ~110 bytes over a ~500-byte limit).
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "split-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["split"]).unwrap();
    let mut records = 0;
    let mut messages = Vec::new();
    for _ in 0..600 {
        if records == 20 {
            break;
        }
        if let Some(m) = consumer.poll(StdDuration::from_millis(100)) {
            let m = m.unwrap().detach();
            assert!(m.payload().unwrap().len() <= 1000 - ENVELOPE_BYTES);
            records += decode::<Logs>(&m)
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.len())
                .sum::<usize>();
            messages.push(m);
        }
    }
    assert_eq!(records, 20);
    assert!(messages.len() >= 3, "{} messages", messages.len());
    // Resources survive the split: every message's records keep their service.
    let services: Vec<String> = messages
        .iter()
        .flat_map(decode::<Logs>)
        .map(|r| format!("{:?}", r.resource.unwrap().attributes[0].value))
        .collect();
    assert!(
        services.iter().any(|s| s.contains("\"a\""))
            && services.iter().any(|s| s.contains("\"b\""))
    );

    // One record that alone exceeds the limit: the others go out, that one is refused.
    let huge = "h".repeat(5000);
    let outcome = send(&to, vec![logs("c", &["small", &huge, "small2"])]).await;
    match outcome {
        Err(DeliveryError::Permanent { reason }) => assert!(reason.contains("1 log"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let oversized = ctx.telemetry.metrics.render();
    assert!(
        oversized
            .contains("sluice_exporter_kafka_oversized_log_records_total{exporter=\"kafka/t\"} 1"),
        "{oversized}"
    );
    let mut small = 0;
    for _ in 0..600 {
        if small == 2 {
            break;
        }
        if let Some(m) = consumer.poll(StdDuration::from_millis(100)) {
            let m = m.unwrap().detach();
            small += decode::<Logs>(&m)[0].scope_logs[0].log_records.len();
        }
    }
    assert_eq!(small, 2);
}

#[tokio::test]
async fn spans_of_a_trace_share_a_key_and_a_partition() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("by-trace", 8, 1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Traces>(&b, "topic: by-trace\npartition_traces_by_id: true", &ctx);
    let data = vec![
        traces("a", vec![span(1, 1), span(2, 2), span(1, 3)]),
        traces("b", vec![span(3, 4), span(2, 5)]),
        traces("c", vec![span(1, 6)]),
    ];
    assert_eq!(send(&to, data).await, Ok(()));
    let got = consume(&b, "by-trace", 3);
    let mut partition_of = std::collections::HashMap::new();
    let mut spans = 0;
    for m in &got {
        let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
        for r in decode::<Traces>(m) {
            for s in r.scope_spans.iter().flat_map(|s| &s.spans) {
                assert_eq!(key, messages_hex(&s.trace_id));
                spans += 1;
            }
        }
        assert!(
            partition_of.insert(key, m.partition()).is_none(),
            "one message per trace"
        );
    }
    assert_eq!(spans, 6);
    // Trace 1 spans two resources: both are in its message, each once.
    let trace1 = got
        .iter()
        .find(|m| m.key() == Some(messages_hex(&[1; 16]).as_bytes()))
        .unwrap();
    let resources = decode::<Traces>(trace1);
    assert_eq!(resources.len(), 2);
    assert_eq!(resources[0].scope_spans[0].spans.len(), 2);
}

fn messages_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn resource_attribute_keys_are_the_collectors_and_order_free() {
    let a = resource_key(&[attr("x", "1"), attr("y", "2")]);
    assert_eq!(a, resource_key(&[attr("y", "2"), attr("x", "1")]));
    assert_ne!(a, resource_key(&[attr("x", "1"), attr("y", "3")]));
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Metrics>(
        &b,
        "topic: by-res\npartition_metrics_by_resource_attributes: true",
        &ctx,
    );
    assert_eq!(
        send(&to, vec![metrics("a"), metrics("b"), metrics("a")]).await,
        Ok(())
    );
    let got = consume(&b, "by-res", 2);
    let mut keys: Vec<_> = got
        .iter()
        .map(|m| (m.key().unwrap().to_vec(), decode::<Metrics>(m).len()))
        .collect();
    keys.sort();
    let mut want = vec![
        (resource_key(&[attr("service.name", "a")]).to_vec(), 2),
        (resource_key(&[attr("service.name", "b")]).to_vec(), 1),
    ];
    want.sort();
    assert_eq!(keys, want);
}

#[tokio::test]
async fn topic_from_attribute_routes_each_resource() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Logs>(
        &b,
        "topic: fallback\ntopic_from_attribute: service.name",
        &ctx,
    );
    let mut unnamed = logs("x", &["n"]);
    unnamed.resource = None;
    assert_eq!(
        send(&to, vec![logs("svc-a", &["1"]), unnamed]).await,
        Ok(())
    );
    assert_eq!(decode::<Logs>(&consume(&b, "svc-a", 1)[0]).len(), 1);
    assert_eq!(decode::<Logs>(&consume(&b, "fallback", 1)[0]).len(), 1);
}

#[tokio::test]
async fn the_acknowledgement_waits_for_the_broker() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Logs>(&b, "topic: down\ntimeout: 1s", &ctx);
    // Connect once while the broker is up, then take it down: the message cannot be confirmed.
    assert_eq!(send(&to, vec![logs("a", &["first"])]).await, Ok(()));
    cluster.broker_down(1).unwrap();
    match send(&to, vec![logs("a", &["lost?"])]).await {
        Err(DeliveryError::Retryable { reason, .. }) => {
            assert!(reason.contains("not delivered"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    cluster.broker_up(1).unwrap();
    // As the helper would: attempts fail until the producer has reconnected, then succeed.
    let mut outcome = Err(DeliveryError::retryable("not tried"));
    for _ in 0..60 {
        outcome = send(&to, vec![logs("a", &["second"])]).await;
        if outcome.is_ok() {
            break;
        }
        assert!(
            matches!(outcome, Err(DeliveryError::Retryable { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(outcome, Ok(()));
    // The failed attempt is for the helper to retry; what was confirmed is there.
    let bodies: Vec<_> = consume_until(&b, "down", "second")
        .iter()
        .map(|m| {
            decode::<Logs>(m)[0].scope_logs[0].log_records[0]
                .body
                .clone()
        })
        .collect();
    assert!(bodies.contains(&Some(AnyValue {
        value: Some(Value::StringValue("second".into()))
    })));
}

#[test]
fn building_does_not_need_a_broker_and_bad_settings_are_config_errors() {
    let ctx = BuildContext::default();
    // Nothing listens there; building (what `validate` does) still succeeds.
    assert!(
        sluice_pipeline::build_exporter(
            &KafkaExporterFactory,
            &component("brokers: [127.0.0.1:1]"),
            &SignalKind::ALL,
            &ctx
        )
        .is_ok()
    );
    for (yaml, want) in [
        (
            "producer: {required_acks: 2, idempotent: false}",
            "required_acks",
        ),
        ("producer: {compression: brotli}", "compression"),
        (
            "auth: {sasl: {username: u, password: p, mechanism: GSSAPI}}",
            "mechanism",
        ),
        ("bogus: 1", "bogus"),
    ] {
        let err = sluice_pipeline::build_exporter(
            &KafkaExporterFactory,
            &component(yaml),
            &SignalKind::ALL,
            &ctx,
        )
        .err()
        .unwrap_or_else(|| panic!("{yaml} accepted"));
        assert!(err.to_string().contains(want), "{yaml}: {err}");
    }
    // A published config's `required_acks: 1` works as written: the producer is then not
    // idempotent.
    assert!(sluice_pipeline::build_exporter(&KafkaExporterFactory, &component("producer: {required_acks: 1, compression: zstd}\nauth: {sasl: {username: u, password: p, mechanism: SCRAM-SHA-512}}"), &SignalKind::ALL, &ctx)
        .is_ok());
}

/// The producer settings `yaml` gives, with the warnings of building it.
fn producer_settings(yaml: &str, timeout: &str) -> (ClientConfig, Vec<String>) {
    let ctx = BuildContext::default();
    let config = component(&format!("timeout: {timeout}\n{yaml}"));
    let (common, settings) =
        sluice_pipeline::exporter::take_common(&config, HelperSettings::default()).unwrap();
    let (shared, cfg): (_, KafkaExporterConfig) =
        sluice_kafka_client::decode(&common, config::NO_EFFECT, &ctx.warnings).unwrap();
    let resolved = cfg
        .resolve(&shared, &SignalKind::ALL, settings.timeout)
        .unwrap();
    let warnings = ctx.warnings.take().into_iter().map(|w| w.path).collect();
    (resolved.client, warnings)
}

#[test]
fn librdkafka_properties_pass_through() {
    let (client, _) = producer_settings(
        "librdkafka: {linger.ms: 7, socket.keepalive.enable: true, debug: msg}",
        "5s",
    );
    assert_eq!(client.get("linger.ms"), Some("7"));
    assert_eq!(client.get("socket.keepalive.enable"), Some("true"));
    assert_eq!(client.get("debug"), Some("msg"));
    // Defaults that matter for delivery: all replicas, idempotent, messages expire into retries.
    let (client, _) = producer_settings("", "9s");
    assert_eq!(client.get("acks"), Some("all"));
    assert_eq!(client.get("enable.idempotence"), Some("true"));
    assert_eq!(client.get("message.timeout.ms"), Some("9000"));
    assert_eq!(client.get("bootstrap.servers"), Some("localhost:9092"));
}

#[test]
fn producer_keys_become_librdkafka_properties() {
    let (client, warnings) = producer_settings(
        "client_id: agent\nproducer: {max_message_bytes: 2000000, required_acks: 1, compression: gzip, compression_params: {level: 9}, flush_max_messages: 500, allow_auto_topic_creation: false, linger: 50ms, max_broker_write_bytes: 104857600}\nrecord_partitioner: {sticky_key: {hasher: murmur2}}",
        "5s",
    );
    for (k, v) in [
        ("client.id", "agent"),
        ("acks", "1"),
        // The OTel Collector's producer is idempotent only with every replica acking too.
        ("enable.idempotence", "false"),
        ("compression.codec", "gzip"),
        ("compression.level", "9"),
        ("message.max.bytes", "2004096"),
        ("batch.num.messages", "500"),
        ("allow.auto.create.topics", "false"),
        ("linger.ms", "50"),
        ("partitioner", "murmur2_random"),
    ] {
        assert_eq!(client.get(k), Some(v), "{k}");
    }
    assert_eq!(
        warnings,
        ["exporters.kafka/t.producer.max_broker_write_bytes"]
    );
    // The OTel Collector's defaults, and its client id.
    let (client, _) = producer_settings("", "5s");
    for (k, v) in [
        ("client.id", "otel-collector"),
        ("linger.ms", "10"),
        ("batch.num.messages", "10000"),
        ("allow.auto.create.topics", "true"),
        ("compression.level", "-1"),
    ] {
        assert_eq!(client.get(k), Some(v), "{k}");
    }
    // The sarama-compatible partitioner is the producer's own, not a librdkafka property.
    assert_eq!(client.get("partitioner"), None);
    let (client, _) = producer_settings("record_partitioner: {round_robin: {}}", "5s");
    assert_eq!(client.get("partitioner"), Some("random"));
    // Sarama's "no limit".
    let (client, _) = producer_settings("producer: {flush_max_messages: 0}", "5s");
    assert_eq!(client.get("batch.num.messages"), Some("1000000"));
}

#[test]
fn keys_needing_an_extension_or_in_conflict_are_refused_clearly() {
    let ctx = BuildContext::default();
    for (yaml, key, says) in [
        (
            "include_metadata_keys: [tenant]\nsending_queue: {batch: {}}",
            "sending_queue.batch.partition.metadata_keys",
            "must be listed here",
        ),
        (
            "logs: {topic_from_metadata_key: tenant}\nsending_queue: {batch: {partition: {metadata_keys: [other]}}}",
            "sending_queue.batch.partition.metadata_keys",
            "must be listed here",
        ),
        (
            "partition_traces_by_id: true\ntraces: {message_key_from_metadata_key: k}",
            "traces.message_key_from_metadata_key",
            "cannot be combined",
        ),
        (
            "record_partitioner: {extension: kafkapartitioner}",
            "record_partitioner.extension",
            "extensions",
        ),
        (
            "record_partitioner: {round_robin: {}, least_backup: {}}",
            "record_partitioner",
            "at most one",
        ),
        (
            "record_partitioner: {sticky_key: {hasher: crc32}}",
            "record_partitioner.sticky_key.hasher",
            "murmur2",
        ),
        (
            "partition_logs_by_resource_attributes: true\npartition_logs_by_trace_id: true",
            "partition_logs_by_trace_id",
            "both",
        ),
        (
            "producer: {compression: snappy, compression_params: {level: 3}}",
            "producer.compression_params.level",
            "snappy",
        ),
        (
            "producer: {idempotent: true, required_acks: 1}",
            "producer.idempotent",
            "all",
        ),
        (
            "traces: {encoding: jaeger_proto}",
            "traces.encoding",
            "otlp_proto and otlp_json",
        ),
        ("logs: {encoding: text}", "logs.encoding", "raw"),
        ("logs: {topics: [a]}", "logs.topics", "receiver"),
    ] {
        let err = sluice_pipeline::build_exporter(
            &KafkaExporterFactory,
            &component(yaml),
            &SignalKind::ALL,
            &ctx,
        )
        .err()
        .unwrap_or_else(|| panic!("{yaml} accepted"));
        let text = err.to_string();
        assert!(
            text.contains(&format!("exporters.kafka/t.{key}")),
            "{yaml}: {text}"
        );
        assert!(text.contains(says), "{yaml}: {text}");
    }
}

#[tokio::test]
async fn keyed_records_land_where_sarama_puts_them() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("keyed", 7, 1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Traces>(&b, "topic: keyed\npartition_traces_by_id: true", &ctx);
    let data: Vec<ResourceSpans> = (1..=20u8)
        .map(|t| traces("svc", vec![span(t, t)]))
        .collect();
    assert_eq!(send(&to, data).await, Ok(()));
    let got = consume(&b, "keyed", 20);
    let mut partitions = std::collections::BTreeSet::new();
    for m in &got {
        let key = m.key().unwrap();
        // FNV-1a 32 of the key, read signed, Go's remainder, made positive: sarama's.
        let mut h: u32 = 0x811c_9dc5;
        for byte in key {
            h = (h ^ u32::from(*byte)).wrapping_mul(16_777_619);
        }
        let want = ((h as i32) % 7).abs();
        assert_eq!(m.partition(), want, "key {}", String::from_utf8_lossy(key));
        partitions.insert(m.partition());
    }
    assert!(
        partitions.len() > 1,
        "every trace on one partition: {partitions:?}"
    );
}

#[tokio::test]
async fn record_headers_and_the_signal_header_are_on_every_record() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    let ctx = BuildContext::default();
    let to = exporter::<Logs>(
        &b,
        "logs: {topic: hdr}\nsignal_header: true\nrecord_headers: {tenant: acme, region: eu}",
        &ctx,
    );
    assert_eq!(send(&to, vec![logs("a", &["x"])]).await, Ok(()));
    let m = &consume(&b, "hdr", 1)[0];
    assert_eq!(header(m, "tenant"), "acme");
    assert_eq!(header(m, "region"), "eu");
    assert_eq!(header(m, "otelcol.signal"), "logs");
    assert_eq!(header(m, SIGNAL_HEADER), "logs");
    // The list form of record_headers.
    let to = exporter::<Logs>(
        &b,
        "logs: {topic: hdr2}\nrecord_headers: [{key: a, value: '1'}, {key: b, value: '2'}]",
        &ctx,
    );
    assert_eq!(send(&to, vec![logs("a", &["x"])]).await, Ok(()));
    let m = &consume(&b, "hdr2", 1)[0];
    assert_eq!(header(m, "a"), "1");
    assert_eq!(header(m, "b"), "2");
    assert!(
        m.headers()
            .unwrap()
            .iter()
            .all(|h| h.key != "otelcol.signal")
    );
}
