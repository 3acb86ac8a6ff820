//! The `kafka` receiver: consumes OTLP (protobuf or JSON) or raw payloads from Kafka topics.
//! At least once: a message's offset is stored for commit only after the pipeline
//! acknowledged it; a retryable refusal is retried (with backoff) rather than skipped.

mod config;
mod decode;
#[cfg(test)]
mod tests;

pub use config::{Encoding, KafkaReceiverConfig};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic};
use sluice_pipeline::consumer::DEFAULT_ADMISSION_WAIT;
use sluice_pipeline::exporter::{Backoff, RetrySettings};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, DeliveryError, DynConsumer, FactoryInfo, Lifecycle, Logs, Metrics,
    Receiver, ReceiverFactory, ReceiverOutputs, Signal, SignalKind, StartError, Traces,
    decode_config, deliver,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use decode::Decoded;

pub use sluice_kafka_client::{ENCODING_HEADER, SIGNAL_HEADER};

pub struct KafkaReceiverFactory;

impl ReceiverFactory for KafkaReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "kafka",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "consumes OTLP (protobuf or JSON) or raw log payloads from Kafka topics",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        Ok(self.build_kafka(config, outputs, ctx)?)
    }
}

impl KafkaReceiverFactory {
    /// [`ReceiverFactory::build`] with the concrete type, for tests that read its counters.
    pub fn build_kafka(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<KafkaReceiver>, ConfigErrors> {
        let cfg: KafkaReceiverConfig = decode_config(config)?;
        let at = |(key, message): (&str, String)| {
            ConfigErrors::from(Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.{key}", config.path),
                message,
            ))
        };
        let mut signals = Vec::new();
        if outputs.traces.is_some() {
            signals.push(SignalKind::Traces);
        }
        if outputs.metrics.is_some() {
            signals.push(SignalKind::Metrics);
        }
        if outputs.logs.is_some() {
            signals.push(SignalKind::Logs);
        }
        cfg.validate(&signals).map_err(at)?;
        let consumer = cfg.consumer_config().map_err(at)?;
        let dead_letter = match &cfg.dead_letter_topic {
            Some(topic) => Some((topic.clone(), cfg.dead_letter_config().map_err(at)?)),
            None => None,
        };
        let name = config.id.to_string();
        let routes = signals
            .iter()
            .map(|s| Route {
                topic: cfg.topic(*s),
                signal: *s,
                encoding: cfg.encoding(*s),
            })
            .collect();
        let metrics = &ctx.telemetry.metrics;
        Ok(Arc::new(KafkaReceiver {
            shared: Arc::new(Shared {
                name: name.clone(),
                routes,
                traces: outputs.traces.map(|c| Sink::new(c, &name, ctx)),
                metrics: outputs.metrics.map(|c| Sink::new(c, &name, ctx)),
                logs: outputs.logs.map(|c| Sink::new(c, &name, ctx)),
                undecodable: metrics.counter(
                    "sluice_receiver_kafka_undecodable_messages",
                    "Kafka messages skipped because they could not be decoded",
                    &[("receiver", &name)],
                ),
                refused: metrics.counter(
                    "sluice_receiver_kafka_refused_messages",
                    "Kafka messages skipped because the pipeline refused them permanently",
                    &[("receiver", &name)],
                ),
                dead_letter_topic: dead_letter.as_ref().map(|(t, _)| t.clone()),
            }),
            consumer_config: consumer,
            dead_letter_config: dead_letter.map(|(_, c)| c),
            running: Mutex::new(None),
        }))
    }
}

/// Which signal and encoding a topic carries when its messages do not say.
#[derive(Clone, Debug)]
struct Route {
    topic: String,
    signal: SignalKind,
    encoding: Encoding,
}

struct Sink<S: Signal> {
    consumer: DynConsumer<S>,
    accepted: Counter,
    refused: Counter,
}

impl<S: Signal> Sink<S> {
    fn new(consumer: DynConsumer<S>, receiver: &str, ctx: &BuildContext) -> Self {
        let metrics = &ctx.telemetry.metrics;
        let item = S::ITEM_NAME;
        let labels = [("receiver", receiver), ("transport", "kafka")];
        Sink {
            consumer,
            accepted: metrics.counter(
                &format!("otelcol_receiver_accepted_{item}"),
                &format!("Number of {item} successfully pushed into the pipeline"),
                &labels,
            ),
            refused: metrics.counter(
                &format!("otelcol_receiver_refused_{item}"),
                &format!("Number of {item} that could not be pushed into the pipeline"),
                &labels,
            ),
        }
    }
}

struct Shared {
    name: String,
    routes: Vec<Route>,
    traces: Option<Sink<Traces>>,
    metrics: Option<Sink<Metrics>>,
    logs: Option<Sink<Logs>>,
    undecodable: Counter,
    refused: Counter,
    dead_letter_topic: Option<String>,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub struct KafkaReceiver {
    shared: Arc<Shared>,
    consumer_config: ClientConfig,
    dead_letter_config: Option<ClientConfig>,
    running: Mutex<Option<Running>>,
}

impl KafkaReceiver {
    /// Messages skipped because they could not be decoded.
    pub fn undecodable(&self) -> u64 {
        self.shared.undecodable.get()
    }
}

impl Receiver for KafkaReceiver {}

#[async_trait]
impl Lifecycle for KafkaReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let name = &self.shared.name;
        let consumer: StreamConsumer = self
            .consumer_config
            .create()
            .map_err(|e| StartError::new(name, format!("cannot create the Kafka consumer: {e}")))?;
        let mut topics: Vec<&str> = self
            .shared
            .routes
            .iter()
            .map(|r| r.topic.as_str())
            .collect();
        topics.sort_unstable();
        topics.dedup();
        consumer
            .subscribe(&topics)
            .map_err(|e| StartError::new(name, format!("cannot subscribe to {topics:?}: {e}")))?;
        let dead_letter = match &self.dead_letter_config {
            Some(c) => Some(c.create::<FutureProducer>().map_err(|e| {
                StartError::new(name, format!("cannot create the dead-letter producer: {e}"))
            })?),
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume(self.shared.clone(), consumer, dead_letter, stopped));
        tracing::info!(receiver = %name, ?topics, "consuming from Kafka");
        if let Ok(mut running) = self.running.lock() {
            *running = Some(Running { stop, task });
        }
        Ok(())
    }

    /// Stops taking messages; the one in flight is finished (or left uncommitted, to be
    /// consumed again) and the stored offsets are committed as the consumer closes.
    async fn shutdown(&self, deadline: Instant) {
        let Some(running) = self.running.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let _ = running.stop.send(true);
        let abort = running.task.abort_handle();
        if tokio::time::timeout_at(deadline, running.task)
            .await
            .is_err()
        {
            tracing::warn!(receiver = %self.shared.name, "Kafka message still in flight at the shutdown deadline");
            abort.abort();
        }
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// What became of one message.
enum Handled {
    /// Done with (delivered, or skipped for good): its offset may be committed.
    Done,
    /// Shutdown came first: leave it uncommitted.
    Abandoned,
}

async fn consume(
    shared: Arc<Shared>,
    consumer: StreamConsumer,
    dead_letter: Option<FutureProducer>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let message = tokio::select! {
            _ = stopped(&mut stop) => break,
            m = consumer.recv() => m,
        };
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                // librdkafka recovers from broker errors on its own; these are reports.
                tracing::warn!(receiver = %shared.name, error = %e, "Kafka consumer error");
                continue;
            }
        };
        match handle(&shared, &message, dead_letter.as_ref(), &mut stop).await {
            Handled::Done => commit(&shared.name, &consumer, &message),
            Handled::Abandoned => break,
        }
    }
    // Closing commits the stored offsets and leaves the group; it may block on the network.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}

fn commit(name: &str, consumer: &StreamConsumer, message: &BorrowedMessage<'_>) {
    if let Err(e) = consumer.store_offset_from_message(message) {
        // The partition was revoked meanwhile: its new owner consumes the message again.
        tracing::debug!(receiver = %name, error = %e, "offset not stored");
        return;
    }
    let mut list = TopicPartitionList::new();
    if list
        .add_partition_offset(
            message.topic(),
            message.partition(),
            Offset::Offset(message.offset() + 1),
        )
        .is_ok()
    {
        // Committing now rather than at the next automatic commit narrows what a crash replays.
        let _ = consumer.commit(&list, CommitMode::Async);
    }
}

fn header<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value)
}

async fn handle(
    shared: &Shared,
    message: &BorrowedMessage<'_>,
    dead_letter: Option<&FutureProducer>,
    stop: &mut watch::Receiver<bool>,
) -> Handled {
    let payload = message.payload().unwrap_or_default();
    let decoded = route(shared, message).and_then(|(signal, encoding)| {
        decode::decode(signal, encoding, payload, message.timestamp().to_millis())
    });
    let decoded = match decoded {
        Ok(d) => d,
        Err(reason) => {
            shared.undecodable.add(1);
            tracing::warn!(
                receiver = %shared.name,
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                bytes = payload.len(),
                %reason,
                "skipping a Kafka message that cannot be decoded"
            );
            if let (Some(producer), Some(topic)) = (dead_letter, &shared.dead_letter_topic) {
                dead_letter_copy(shared, producer, topic, message, &reason).await;
            }
            return Handled::Done;
        }
    };
    let bytes = payload.len();
    match decoded {
        Decoded::Traces(r) => to_pipeline(shared, shared.traces.as_ref(), r, bytes, stop).await,
        Decoded::Metrics(r) => to_pipeline(shared, shared.metrics.as_ref(), r, bytes, stop).await,
        Decoded::Logs(r) => to_pipeline(shared, shared.logs.as_ref(), r, bytes, stop).await,
    }
}

/// The message's signal and encoding: from its headers, else from its topic.
fn route(shared: &Shared, message: &BorrowedMessage<'_>) -> Result<(SignalKind, Encoding), String> {
    let by_topic: Vec<&Route> = shared
        .routes
        .iter()
        .filter(|r| r.topic == message.topic())
        .collect();
    let signal = match header(message, SIGNAL_HEADER) {
        Some(b"traces") => SignalKind::Traces,
        Some(b"metrics") => SignalKind::Metrics,
        Some(b"logs") => SignalKind::Logs,
        Some(other) => {
            return Err(format!(
                "unknown {SIGNAL_HEADER} header `{}`",
                String::from_utf8_lossy(other)
            ));
        }
        None => match by_topic.as_slice() {
            [only] => only.signal,
            _ => {
                return Err(format!(
                    "topic `{}` carries several signals and the message has no {SIGNAL_HEADER} header",
                    message.topic()
                ));
            }
        },
    };
    let configured = by_topic
        .iter()
        .find(|r| r.signal == signal)
        .map(|r| r.encoding);
    if configured.is_none() {
        return Err(format!(
            "a {} message, but no pipeline takes {} from this receiver",
            signal.as_str(),
            signal.as_str()
        ));
    }
    let encoding = match header(message, ENCODING_HEADER) {
        Some(value) => Encoding::from_header(value).ok_or_else(|| {
            format!(
                "unknown {ENCODING_HEADER} header `{}`",
                String::from_utf8_lossy(value)
            )
        })?,
        None => configured.unwrap_or_default(),
    };
    Ok((signal, encoding))
}

async fn dead_letter_copy(
    shared: &Shared,
    producer: &FutureProducer,
    topic: &str,
    message: &BorrowedMessage<'_>,
    reason: &str,
) {
    let mut headers = OwnedHeaders::new();
    if let Some(h) = message.headers() {
        for header in h.iter() {
            headers = headers.insert(header);
        }
    }
    headers = headers.insert(rdkafka::message::Header {
        key: "sluice.error",
        value: Some(reason),
    });
    let mut record = FutureRecord::<[u8], [u8]>::to(topic)
        .payload(message.payload().unwrap_or_default())
        .headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Err((e, _)) = producer.send(record, Duration::from_secs(5)).await {
        tracing::warn!(receiver = %shared.name, error = %e, topic, "cannot copy the message to the dead-letter topic");
    }
}

/// Delivers until the pipeline takes the data or refuses it for good; retryable refusals are
/// retried with backoff for as long as the receiver runs.
async fn to_pipeline<S: Signal>(
    shared: &Shared,
    sink: Option<&Sink<S>>,
    resources: Vec<S::Resource>,
    bytes: usize,
    stop: &mut watch::Receiver<bool>,
) -> Handled {
    let Some(sink) = sink else {
        // `route` only lets through signals that have a pipeline.
        return Handled::Done;
    };
    let batch = Batch::<S>::new(resources, bytes);
    let items = batch.items() as u64;
    // No overall budget: skipping would lose the message, so it waits for the pipeline.
    let mut backoff = Backoff::new(&RetrySettings {
        initial_interval: sluice_config::Duration(Duration::from_millis(100)),
        max_interval: sluice_config::Duration(Duration::from_secs(5)),
        max_elapsed_time: sluice_config::Duration(Duration::ZERO),
        ..RetrySettings::default()
    });
    loop {
        let outcome = tokio::select! {
            _ = stopped(stop) => return Handled::Abandoned,
            o = deliver(&sink.consumer, batch.fork(), DEFAULT_ADMISSION_WAIT) => o,
        };
        match outcome {
            Ok(()) => {
                sink.accepted.add(items);
                return Handled::Done;
            }
            Err(DeliveryError::Permanent { reason }) => {
                sink.refused.add(items);
                shared.refused.add(1);
                tracing::warn!(receiver = %shared.name, %reason, items, "the pipeline refused a Kafka message for good; skipping it");
                return Handled::Done;
            }
            Err(e) => {
                let hint = match &e {
                    DeliveryError::Throttled { retry_after, .. } => Some(*retry_after),
                    DeliveryError::Retryable { retry_after, .. } => *retry_after,
                    DeliveryError::Permanent { .. } => None,
                };
                let wait = backoff.next(hint).unwrap_or(Duration::from_secs(5));
                tracing::debug!(receiver = %shared.name, error = %e, ?wait, "pipeline busy; retrying the Kafka message");
                tokio::select! {
                    _ = stopped(stop) => return Handled::Abandoned,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
