//! The receiver against librdkafka's in-process mock cluster, driven through its factory.

use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Header;
use rdkafka::mocking::MockCluster;
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::codec::{encode_json, encode_proto};
use sluice_pipeline::{Consumer as PipelineConsumer, Outcome};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Receiver,
        id: ComponentId::with_name("kafka", "t"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "receivers.kafka/t".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

/// Passes on what it gets; refuses (retryably) the first `refuse` batches.
struct Collect<S: Signal> {
    tx: mpsc::UnboundedSender<Vec<S::Resource>>,
    refuse: AtomicUsize,
}

#[async_trait]
impl<S: Signal> PipelineConsumer<S> for Collect<S> {
    async fn consume(&self, mut batch: Batch<S>) {
        if self
            .refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            let outcome: Outcome = Err(DeliveryError::retryable("not now"));
            batch.settle(&outcome);
            return;
        }
        let _ = self.tx.send(batch.take_resources());
        batch.settle(&Ok(()));
    }
}

fn collect<S: Signal>(
    refuse: usize,
) -> (DynConsumer<S>, mpsc::UnboundedReceiver<Vec<S::Resource>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (
        Arc::new(Collect {
            tx,
            refuse: AtomicUsize::new(refuse),
        }),
        rx,
    )
}

async fn produce(brokers: &str, topic: &str, payload: &[u8], headers: &[(&str, &str)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let mut h = OwnedHeaders::new();
    for (k, v) in headers {
        h = h.insert(Header {
            key: k,
            value: Some(*v),
        });
    }
    producer
        .send(
            FutureRecord::<(), [u8]>::to(topic)
                .payload(payload)
                .headers(h),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
}

fn logs(body: &str) -> Vec<ResourceLogs> {
    vec![ResourceLogs {
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord {
                body: Some(AnyValue {
                    value: Some(Value::StringValue(body.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn traces() -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                trace_id: vec![7; 16],
                span_id: vec![1; 8],
                name: "op".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn proto<S: Signal>(r: &[S::Resource]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_proto::<S>(r, &mut out);
    out
}

fn json<S: Signal>(r: &[S::Resource]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_json::<S>(r, &mut out).unwrap();
    out
}

fn start_receiver(yaml: &str, outputs: ReceiverOutputs) -> Arc<KafkaReceiver> {
    KafkaReceiverFactory
        .build_kafka(&component(yaml), outputs, &BuildContext::default())
        .unwrap()
}

/// The group's committed offset of partition 0 of `topic`, once it reaches `want`.
fn committed_reaches(brokers: &str, group: &str, topic: &str, want: i64) {
    committed_reaches_at(brokers, group, topic, 0, want)
}

/// The group's committed offset of one partition of `topic`, if any.
fn committed(brokers: &str, group: &str, topic: &str, partition: i32) -> Option<Offset> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    consumer
        .committed_offsets(list, Duration::from_secs(5))
        .ok()
        .and_then(|l| l.find_partition(topic, partition).map(|p| p.offset()))
}

fn committed_reaches_at(brokers: &str, group: &str, topic: &str, partition: i32, want: i64) {
    let mut last = None;
    for _ in 0..300 {
        let got = committed(brokers, group, topic, partition);
        if got == Some(Offset::Offset(want)) {
            return;
        }
        last = got;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("committed offset of {topic}/{partition} is {last:?}, not {want}");
}

#[tokio::test]
async fn messages_of_each_signal_and_encoding_reach_their_pipeline() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    for t in ["otlp_spans", "otlp_logs", "text"] {
        cluster.create_topic(t, 1, 1).unwrap();
    }
    let (traces_out, mut traces_rx) = collect::<Traces>(0);
    let (logs_out, mut logs_rx) = collect::<Logs>(0);
    let receiver = start_receiver(
        &format!("brokers: {b}\ninitial_offset: earliest\ngroup_id: g1"),
        ReceiverOutputs {
            traces: Some(traces_out),
            metrics: None,
            logs: Some(logs_out),
        },
    );
    receiver.start().await.unwrap();
    // By topic alone (as the OTel Collector writes), then with the exporter's headers.
    produce(&b, "otlp_spans", &proto::<Traces>(&traces()), &[]).await;
    produce(
        &b,
        "otlp_spans",
        &json::<Traces>(&traces()),
        &[(ENCODING_HEADER, "otlp_json")],
    )
    .await;
    produce(
        &b,
        "otlp_logs",
        &json::<Logs>(&logs("j")),
        &[(SIGNAL_HEADER, "logs"), (ENCODING_HEADER, "otlp_json")],
    )
    .await;
    produce(&b, "otlp_logs", b"plain line", &[(ENCODING_HEADER, "text")]).await;
    assert!(traces_rx.recv().await.unwrap() == traces());
    assert!(traces_rx.recv().await.unwrap() == traces());
    assert!(logs_rx.recv().await.unwrap() == logs("j"));
    let text = logs_rx.recv().await.unwrap();
    let record = &text[0].scope_logs[0].log_records[0];
    assert_eq!(
        record.body,
        Some(AnyValue {
            value: Some(Value::StringValue("plain line".into()))
        })
    );
    assert!(record.time_unix_nano > 0);
    committed_reaches(&b, "g1", "otlp_spans", 2);
    committed_reaches(&b, "g1", "otlp_logs", 2);
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(receiver.undecodable(), 0);
}

#[tokio::test]
async fn an_undecodable_message_is_counted_skipped_and_dead_lettered() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    cluster.create_topic("in", 1, 1).unwrap();
    cluster.create_topic("dlq", 1, 1).unwrap();
    let (logs_out, mut logs_rx) = collect::<Logs>(0);
    let receiver = start_receiver(
        &format!(
            "brokers: {b}\ninitial_offset: earliest\ngroup_id: g2\nlogs: {{topic: in}}\ndead_letter_topic: dlq"
        ),
        ReceiverOutputs {
            logs: Some(logs_out),
            ..Default::default()
        },
    );
    receiver.start().await.unwrap();
    produce(&b, "in", b"\xff\xff\xffnot otlp", &[]).await;
    produce(
        &b,
        "in",
        &proto::<Logs>(&logs("ok")),
        &[(SIGNAL_HEADER, "traces")],
    )
    .await;
    produce(&b, "in", &proto::<Logs>(&logs("ok")), &[]).await;
    assert!(logs_rx.recv().await.unwrap() == logs("ok"));
    assert_eq!(receiver.undecodable(), 2);
    committed_reaches(&b, "g2", "in", 3);
    // The bad ones were copied, with the reason.
    let dlq: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    dlq.subscribe(&["dlq"]).unwrap();
    let mut copies = Vec::new();
    for _ in 0..600 {
        if copies.len() == 2 {
            break;
        }
        if let Some(m) = dlq.poll(Duration::from_millis(100)) {
            copies.push(m.unwrap().detach());
        }
    }
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0].payload().unwrap(), b"\xff\xff\xffnot otlp");
    let reason = copies[0]
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "sluice.error")
        .map(|h| String::from_utf8_lossy(h.value.unwrap()).into_owned())
        .unwrap();
    assert!(reason.contains("protobuf"), "{reason}");
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn a_refused_message_is_retried_not_skipped_and_committed_after_the_ack() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    cluster.create_topic("retry", 1, 1).unwrap();
    let (logs_out, mut logs_rx) = collect::<Logs>(3);
    let receiver = start_receiver(
        &format!("brokers: {b}\ninitial_offset: earliest\ngroup_id: g3\ntopic: retry"),
        ReceiverOutputs {
            logs: Some(logs_out),
            ..Default::default()
        },
    );
    receiver.start().await.unwrap();
    produce(&b, "retry", &proto::<Logs>(&logs("first")), &[]).await;
    produce(&b, "retry", &proto::<Logs>(&logs("second")), &[]).await;
    // Refused three times, then taken: nothing lost, order kept.
    assert!(logs_rx.recv().await.unwrap() == logs("first"));
    assert!(logs_rx.recv().await.unwrap() == logs("second"));
    committed_reaches(&b, "g3", "retry", 2);
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
}

#[test]
fn configuration_errors_are_reported_at_build() {
    let ctx = BuildContext::default();
    let (logs_out, _rx) = collect::<Logs>(0);
    let (traces_out, _rx2) = collect::<Traces>(0);
    let build = |yaml: &str, logs: bool| {
        KafkaReceiverFactory
            .build_kafka(
                &component(yaml),
                ReceiverOutputs {
                    traces: Some(traces_out.clone()),
                    logs: logs.then(|| logs_out.clone()),
                    metrics: None,
                },
                &ctx,
            )
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(
        build("brokers: [127.0.0.1:1]\nlogs: {encoding: raw}", true),
        None
    );
    for (yaml, says) in [
        ("encoding: raw", "cannot be used for traces"),
        ("initial_offset: oldest", "initial_offset"),
        ("group_id: ''", "group_id"),
        (
            "traces: {encoding: jaeger_proto}",
            "otlp_proto and otlp_json",
        ),
        ("logs: {encoding: azure_resource_logs}", "json"),
        ("traces: {topics: ['^(']}", "traces.topics"),
        ("logs: {topics: [a], exclude_topics: [b]}", "regex"),
        (
            "group_rebalance_strategies: [range, cooperative-sticky]",
            "cooperative",
        ),
        (
            "group_rebalance_strategy: my_balancer",
            "balancer extensions",
        ),
        ("heartbeat_interval: 20s", "session_timeout"),
        ("max_fetch_size: 10\nmin_fetch_size: 100", "max_fetch_size"),
        ("auth: {kerberos: {realm: R}}", "GSSAPI"),
        (
            "tls: {server_name_override: kafka}",
            "tls.server_name_override",
        ),
        ("bogus: 1", "bogus"),
    ] {
        let err = build(yaml, true).unwrap_or_else(|| panic!("{yaml} accepted"));
        assert!(err.contains(says), "{yaml}: {err}");
    }
}

/// The receiver's settings for `yaml`, built against no broker, with its warnings.
fn built(yaml: &str) -> (Arc<KafkaReceiver>, Vec<String>) {
    let ctx = BuildContext::default();
    let (logs_out, _rx) = collect::<Logs>(0);
    let receiver = KafkaReceiverFactory
        .build_kafka(
            &component(yaml),
            ReceiverOutputs {
                logs: Some(logs_out),
                ..Default::default()
            },
            &ctx,
        )
        .unwrap();
    let warnings = ctx
        .warnings
        .take()
        .into_iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    (receiver, warnings)
}

#[test]
fn consumer_keys_become_librdkafka_properties() {
    let (r, warnings) = built(
        "group_id: g\ngroup_instance_id: gateway-1\nclient_id: c\ninitial_offset: earliest\nsession_timeout: 30s\nheartbeat_interval: 5s\ngroup_rebalance_strategies: [range, roundrobin]\nmin_fetch_size: 10\nmax_fetch_size: 500000\nmax_partition_fetch_size: 4096\nmax_fetch_wait: 1s\nautocommit: {enable: false, interval: 2s}\nprotocol_version: 3.0.0\nuse_leader_epoch: false\npartition_processing: {independent: true}\nlibrdkafka: {fetch.wait.max.ms: '900'}",
    );
    let c = &r.consumer_config;
    for (k, v) in [
        ("group.id", "g"),
        ("group.instance.id", "gateway-1"),
        ("client.id", "c"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "30000"),
        ("heartbeat.interval.ms", "5000"),
        ("partition.assignment.strategy", "range,roundrobin"),
        ("fetch.min.bytes", "10"),
        ("fetch.max.bytes", "500000"),
        ("message.max.bytes", "500000"),
        ("max.partition.fetch.bytes", "4096"),
        // The pass-through map wins.
        ("fetch.wait.max.ms", "900"),
        ("enable.auto.commit", "false"),
        ("auto.commit.interval.ms", "2000"),
        ("enable.auto.offset.store", "false"),
        ("broker.version.fallback", "3.0.0"),
    ] {
        assert_eq!(c.get(k), Some(v), "{k}");
    }
    assert!(!r.state.autocommit);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("use_leader_epoch"), "{warnings:?}");
    assert!(warnings[1].contains("partition_processing"), "{warnings:?}");

    // The OTel Collector's defaults.
    let (r, warnings) = built("");
    let c = &r.consumer_config;
    for (k, v) in [
        ("group.id", "otel-collector"),
        ("client.id", "otel-collector"),
        ("auto.offset.reset", "latest"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "3000"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("fetch.min.bytes", "1"),
        ("fetch.max.bytes", "1048576"),
        ("max.partition.fetch.bytes", "1048576"),
        ("fetch.wait.max.ms", "250"),
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "1000"),
    ] {
        assert_eq!(c.get(k), Some(v), "{k}");
    }
    assert!(warnings.is_empty(), "{warnings:?}");
    // Sluice's default: at least once.
    assert_eq!(
        r.state.marking,
        Marking {
            after: true,
            on_error: false,
            on_permanent_error: true
        }
    );
    assert!(r.state.retry.enabled && r.state.retry.max_elapsed_time.0.is_zero());

    // The Sarama-era key for the per-partition fetch size, and `sticky` noted as cooperative.
    let (r, warnings) = built("default_fetch_size: 2048\ngroup_rebalance_strategy: sticky");
    assert_eq!(
        r.consumer_config.get("max.partition.fetch.bytes"),
        Some("2048")
    );
    assert_eq!(
        r.consumer_config.get("partition.assignment.strategy"),
        Some("cooperative-sticky")
    );
    assert!(warnings[0].contains("eager sticky"), "{warnings:?}");

    // Written, message_marking and error_backoff mean what they mean in the OTel Collector.
    let (r, _) = built("message_marking: {after: true, on_error: true}");
    assert_eq!(
        r.state.marking,
        Marking {
            after: true,
            on_error: true,
            on_permanent_error: true
        }
    );
    assert!(!r.state.retry.enabled);
    let (r, _) = built("message_marking: {}\nerror_backoff: {enabled: true, max_elapsed_time: 1m}");
    assert_eq!(
        r.state.marking,
        Marking {
            after: false,
            on_error: false,
            on_permanent_error: false
        }
    );
    assert!(r.state.retry.enabled);
    assert_eq!(r.state.retry.initial_interval.0, Duration::from_secs(5));
    assert_eq!(r.state.retry.max_elapsed_time.0, Duration::from_secs(60));
}

/// Keeps every batch unanswered, for the test to settle when and how it likes.
struct Hold {
    tx: mpsc::UnboundedSender<Batch<Logs>>,
}

#[async_trait]
impl PipelineConsumer<Logs> for Hold {
    async fn consume(&self, batch: Batch<Logs>) {
        let _ = self.tx.send(batch);
    }
}

fn body_of(batch: &Batch<Logs>) -> String {
    match &batch.resources()[0].scope_logs[0].log_records[0].body {
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        }) => s.clone(),
        other => panic!("unexpected body {other:?}"),
    }
}

async fn next_held(rx: &mut mpsc::UnboundedReceiver<Batch<Logs>>) -> Batch<Logs> {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("no batch reached the pipeline")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_proceed_side_by_side_and_commit_in_order() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    cluster.create_topic("wide", 2, 1).unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .create()
        .unwrap();
    for partition in 0..2 {
        for i in 0..3 {
            let payload = proto::<Logs>(&logs(&format!("p{partition}-{i}")));
            producer
                .send(
                    FutureRecord::<(), [u8]>::to("wide")
                        .partition(partition)
                        .payload(&payload),
                    Duration::from_secs(10),
                )
                .await
                .unwrap();
        }
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let receiver = start_receiver(
        &format!(
            "brokers: {b}\ninitial_offset: earliest\ngroup_id: g4\ntopic: wide\nmax_in_flight_per_partition: 2"
        ),
        ReceiverOutputs {
            logs: Some(Arc::new(Hold { tx })),
            ..Default::default()
        },
    );
    receiver.start().await.unwrap();

    // Two per partition in the pipeline at once, none acknowledged; the third of each waits.
    let mut held: HashMap<String, Batch<Logs>> = HashMap::new();
    for _ in 0..4 {
        let batch = next_held(&mut rx).await;
        held.insert(body_of(&batch), batch);
    }
    let mut names: Vec<&str> = held.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["p0-0", "p0-1", "p1-0", "p1-1"]);

    // Partition 1 is acknowledged in order, partition 0 only its later message.
    for name in ["p0-1", "p1-0", "p1-1"] {
        held.remove(name).unwrap().settle(&Ok(()));
    }
    let batch = next_held(&mut rx).await;
    assert_eq!(body_of(&batch), "p1-2", "partition 0 is still full");
    batch.settle(&Ok(()));
    let brokers = b.clone();
    tokio::task::spawn_blocking(move || committed_reaches_at(&brokers, "g4", "wide", 1, 3))
        .await
        .unwrap();
    // Partition 0 commits nothing past its unacknowledged first message.
    let brokers = b.clone();
    let p0 = tokio::task::spawn_blocking(move || committed(&brokers, "g4", "wide", 0))
        .await
        .unwrap();
    assert!(
        !matches!(p0, Some(Offset::Offset(n)) if n > 0),
        "partition 0 committed {p0:?} before its first message was acknowledged"
    );

    held.remove("p0-0").unwrap().settle(&Ok(()));
    let batch = next_held(&mut rx).await;
    assert_eq!(body_of(&batch), "p0-2");
    batch.settle(&Ok(()));
    let brokers = b.clone();
    tokio::task::spawn_blocking(move || committed_reaches_at(&brokers, "g4", "wide", 0, 3))
        .await
        .unwrap();
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
}

fn attribute(r: &ResourceLogs, key: &str) -> Option<String> {
    r.resource
        .as_ref()?
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
}

async fn next_logs(rx: &mut mpsc::UnboundedReceiver<Vec<ResourceLogs>>) -> Vec<ResourceLogs> {
    tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("nothing reached the pipeline")
        .unwrap()
}

fn log_body(r: &[ResourceLogs]) -> String {
    match &r[0].scope_logs[0].log_records[0].body {
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        }) => s.clone(),
        other => panic!("unexpected body {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regular_expression_topics_follow_the_cluster_and_leave_out_excluded_ones() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    for t in ["app-web", "app-skip", "other"] {
        cluster.create_topic(t, 1, 1).unwrap();
    }
    let (logs_out, mut rx) = collect::<Logs>(0);
    let receiver = start_receiver(
        &format!(
            "brokers: {b}\ninitial_offset: earliest\ngroup_id: re\nmetadata: {{refresh_interval: 500ms}}\nlogs: {{topics: ['^app-'], exclude_topics: ['skip$']}}"
        ),
        ReceiverOutputs {
            logs: Some(logs_out),
            ..Default::default()
        },
    );
    receiver.start().await.unwrap();
    for t in ["app-skip", "other", "app-web"] {
        produce(&b, t, &proto::<Logs>(&logs(t)), &[]).await;
    }
    assert_eq!(log_body(&next_logs(&mut rx).await), "app-web");
    // A topic created later is picked up at the next look at the cluster.
    cluster.create_topic("app-new", 1, 1).unwrap();
    produce(&b, "app-new", &proto::<Logs>(&logs("app-new")), &[]).await;
    assert_eq!(log_body(&next_logs(&mut rx).await), "app-new");
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
    // Neither the excluded nor the unmatched topic was consumed by the group.
    let brokers = b.clone();
    let untouched = tokio::task::spawn_blocking(move || {
        ["app-skip", "other"].map(|t| committed(&brokers, "re", t, 0))
    })
    .await
    .unwrap();
    for c in untouched {
        assert!(!matches!(c, Some(Offset::Offset(_))), "{c:?}");
    }
    assert!(
        rx.try_recv().is_err(),
        "an excluded topic reached the pipeline"
    );
}

#[tokio::test]
async fn chosen_headers_become_resource_attributes() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    cluster.create_topic("h", 1, 1).unwrap();
    let (logs_out, mut rx) = collect::<Logs>(0);
    let receiver = start_receiver(
        &format!(
            "brokers: {b}\ninitial_offset: earliest\ngroup_id: h\nlogs: {{topics: [h]}}\nheader_extraction: {{extract_headers: true, headers: [tenant, absent]}}"
        ),
        ReceiverOutputs {
            logs: Some(logs_out),
            ..Default::default()
        },
    );
    receiver.start().await.unwrap();
    produce(
        &b,
        "h",
        &proto::<Logs>(&logs("x")),
        &[("tenant", "acme"), ("other", "no")],
    )
    .await;
    let got = next_logs(&mut rx).await;
    assert_eq!(
        attribute(&got[0], "kafka.header.tenant").as_deref(),
        Some("acme")
    );
    assert_eq!(attribute(&got[0], "kafka.header.absent"), None);
    assert_eq!(attribute(&got[0], "kafka.header.other"), None);
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn json_and_text_logs_are_decoded_as_configured() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    cluster.create_topic("j", 1, 1).unwrap();
    let (logs_out, mut rx) = collect::<Logs>(0);
    let receiver = start_receiver(
        &format!(
            "brokers: {b}\ninitial_offset: earliest\ngroup_id: j\nlogs: {{topic: j, encoding: json}}"
        ),
        ReceiverOutputs {
            logs: Some(logs_out),
            ..Default::default()
        },
    );
    receiver.start().await.unwrap();
    produce(&b, "j", br#"{"level":"info","n":1}"#, &[]).await;
    // A message may say otherwise through the exporter's header.
    produce(&b, "j", b"\x82\xa0", &[(ENCODING_HEADER, "text_shift_jis")]).await;
    let json = next_logs(&mut rx).await;
    assert!(matches!(
        &json[0].scope_logs[0].log_records[0].body,
        Some(AnyValue { value: Some(Value::KvlistValue(m)) }) if m.values.len() == 2
    ));
    assert_eq!(log_body(&next_logs(&mut rx).await), "あ");
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
}

/// Runs a receiver on a fresh topic with `marking` settings; its pipeline refuses (retryably)
/// the first `refuse` batches. Produces `first`, `b`, `end`; returns the offset committed once
/// the receiver handled what it could, and what reached the pipeline.
async fn marking_case(
    group: &str,
    marking: &str,
    refuse: usize,
    first: &[u8],
    stalls: bool,
) -> (Option<Offset>, Vec<String>) {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    cluster.create_topic("m", 1, 1).unwrap();
    let (logs_out, mut rx) = collect::<Logs>(refuse);
    let receiver = start_receiver(
        &format!(
            "brokers: {b}\ninitial_offset: earliest\ngroup_id: {group}\nlogs: {{topic: m}}\n{marking}"
        ),
        ReceiverOutputs {
            logs: Some(logs_out),
            ..Default::default()
        },
    );
    receiver.start().await.unwrap();
    produce(&b, "m", first, &[]).await;
    produce(&b, "m", &proto::<Logs>(&logs("b")), &[]).await;
    produce(&b, "m", &proto::<Logs>(&logs("end")), &[]).await;
    let mut got = Vec::new();
    // `end` arrives unless the partition stops at the first message.
    if !stalls {
        loop {
            let body = log_body(&next_logs(&mut rx).await);
            got.push(body.clone());
            if body == "end" {
                break;
            }
        }
    } else {
        // Wait for the stall to be reached: the refusal (or the undecodable message) counted.
        for _ in 0..600 {
            if receiver.state.refused.get() + receiver.undecodable() > 0
                || receiver.state.logs.as_ref().unwrap().refused.get() > 0
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
    while let Ok(r) = rx.try_recv() {
        got.push(log_body(&r));
    }
    let brokers = b.clone();
    let group = group.to_string();
    let offset = tokio::task::spawn_blocking(move || committed(&brokers, &group, "m", 0))
        .await
        .unwrap();
    (offset, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_marking_decides_what_a_failure_does() {
    let a = proto::<Logs>(&logs("a"));
    // Sluice's default: retried until taken, nothing lost.
    let (offset, got) = marking_case("default", "", 2, &a, false).await;
    assert_eq!(got, ["a", "b", "end"]);
    assert_eq!(offset, Some(Offset::Offset(3)));
    // on_error: the refused message is skipped (marked) and the partition goes on.
    let (offset, got) = marking_case(
        "skip",
        "message_marking: {after: true, on_error: true}",
        1,
        &a,
        false,
    )
    .await;
    assert_eq!(got, ["b", "end"]);
    assert_eq!(offset, Some(Offset::Offset(3)));
    // Marked before the pipeline had it: skipped too.
    let (offset, got) =
        marking_case("before", "message_marking: {after: false}", 1, &a, false).await;
    assert_eq!(got, ["b", "end"]);
    assert_eq!(offset, Some(Offset::Offset(3)));
    // Not allowed to skip it: the partition stops at it, nothing after it is handed over or
    // committed, so its next owner starts with it again.
    let (offset, got) = marking_case("stop", "message_marking: {after: true}", 1, &a, true).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(
        !matches!(offset, Some(Offset::Offset(n)) if n > 0),
        "{offset:?}"
    );
    // error_backoff retries it until taken.
    let (offset, got) = marking_case(
        "backoff",
        "message_marking: {after: true}\nerror_backoff: {enabled: true, initial_interval: 10ms, max_interval: 20ms, max_elapsed_time: 1m}",
        2,
        &a,
        false,
    )
    .await;
    assert_eq!(got, ["a", "b", "end"]);
    assert_eq!(offset, Some(Offset::Offset(3)));
    // A message that can never be decoded: skipped unless on_permanent_error says no.
    let bad = b"\xff\xff not otlp";
    let (offset, got) = marking_case(
        "perm-skip",
        "message_marking: {after: true, on_error: true}",
        0,
        bad,
        false,
    )
    .await;
    assert_eq!(got, ["b", "end"]);
    assert_eq!(offset, Some(Offset::Offset(3)));
    let (offset, got) = marking_case(
        "perm-stop",
        "message_marking: {after: true, on_error: true, on_permanent_error: false}",
        0,
        bad,
        true,
    )
    .await;
    assert!(got.is_empty(), "{got:?}");
    assert!(
        !matches!(offset, Some(Offset::Offset(n)) if n > 0),
        "{offset:?}"
    );
}

#[tokio::test]
async fn without_the_periodic_commit_each_message_is_committed_when_marked() {
    let cluster = MockCluster::new(1).unwrap();
    let b = cluster.bootstrap_servers();
    cluster.create_topic("ac", 1, 1).unwrap();
    let (logs_out, mut rx) = collect::<Logs>(0);
    let receiver = start_receiver(
        &format!(
            "brokers: {b}\ninitial_offset: earliest\ngroup_id: ac\nlogs: {{topic: ac}}\nautocommit: {{enable: false}}"
        ),
        ReceiverOutputs {
            logs: Some(logs_out),
            ..Default::default()
        },
    );
    receiver.start().await.unwrap();
    produce(&b, "ac", &proto::<Logs>(&logs("one")), &[]).await;
    assert_eq!(log_body(&next_logs(&mut rx).await), "one");
    let brokers = b.clone();
    tokio::task::spawn_blocking(move || committed_reaches(&brokers, "ac", "ac", 1))
        .await
        .unwrap();
    receiver
        .shutdown(Instant::now() + Duration::from_secs(10))
        .await;
}
