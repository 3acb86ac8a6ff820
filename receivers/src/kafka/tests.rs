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
    assert!(build("encoding: raw", true).unwrap().contains("logs only"));
    assert!(
        build("initial_offset: oldest", false)
            .unwrap()
            .contains("initial_offset")
    );
    assert!(build("group_id: ''", false).unwrap().contains("group_id"));
    let cfg: KafkaReceiverConfig = decode_config(&component("{}")).unwrap();
    assert_eq!(cfg.group_id, "otel-collector");
    assert_eq!(cfg.topic(SignalKind::Metrics), "otlp_metrics");
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
