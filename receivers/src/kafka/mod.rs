//! The `kafka` receiver: consumes OTLP (protobuf or JSON) or raw payloads from Kafka topics.
//! At least once: a message's offset is stored for commit only after the pipeline
//! acknowledged it and every earlier message of its partition; a retryable refusal is retried
//! (with backoff) rather than skipped. Partitions proceed side by side, each with a bounded
//! number of messages in flight.

mod config;
mod decode;
#[cfg(test)]
mod tests;

pub use config::{Encoding, KafkaReceiverConfig};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
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
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
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
            max_in_flight: cfg.max_in_flight_per_partition,
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
    max_in_flight: usize,
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
        let task = tokio::spawn(consume(
            self.shared.clone(),
            consumer,
            dead_letter,
            stopped,
            self.max_in_flight,
        ));
        tracing::info!(receiver = %name, ?topics, "consuming from Kafka");
        if let Ok(mut running) = self.running.lock() {
            *running = Some(Running { stop, task });
        }
        Ok(())
    }

    /// Stops taking messages; those in flight are finished (or left uncommitted, to be
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handled {
    /// Done with (delivered, or skipped for good): its offset may be committed.
    Done,
    /// Shutdown came first: leave it uncommitted.
    Abandoned,
}

/// A message whose handling ended.
struct Finished {
    topic: String,
    partition: i32,
    offset: i64,
    handled: Handled,
}

/// The messages of one partition in flight, by offset, and whether each is done. Only a done
/// prefix is committed, so a later message finishing first never lets an earlier one be lost.
type Window = BTreeMap<i64, bool>;

type PartitionKey = (String, i32);

/// Hands messages to the pipeline, each partition with at most `max_in_flight` at once, and
/// commits each partition in order. Messages of a full partition wait here while the other
/// partitions go on; once [`PARKED_LIMIT`] wait, no more are taken from the consumer until the
/// pipeline makes room. (Pausing the partition in librdkafka instead was tried: resuming it
/// against tansu skipped messages.)
struct Dispatcher {
    shared: Arc<Shared>,
    consumer: StreamConsumer,
    dead_letter: Option<FutureProducer>,
    stop: watch::Receiver<bool>,
    max_in_flight: usize,
    finished: mpsc::UnboundedSender<Finished>,
    windows: HashMap<PartitionKey, Window>,
    /// Messages received for a full partition, to hand over as it makes room.
    parked: HashMap<PartitionKey, std::collections::VecDeque<OwnedMessage>>,
    parked_count: usize,
    tasks: JoinSet<()>,
}

/// Messages held back for full partitions before the receiver stops taking more.
const PARKED_LIMIT: usize = 256;

impl Dispatcher {
    fn received(&mut self, message: OwnedMessage) {
        let key = (message.topic().to_string(), message.partition());
        let full = self
            .windows
            .get(&key)
            .is_some_and(|w| w.len() >= self.max_in_flight);
        let queue = self.parked.entry(key.clone()).or_default();
        if full || !queue.is_empty() {
            queue.push_back(message);
            self.parked_count += 1;
            return;
        }
        self.dispatch(key, message);
    }

    fn dispatch(&mut self, key: PartitionKey, message: OwnedMessage) {
        self.windows
            .entry(key)
            .or_default()
            .insert(message.offset(), false);
        let (shared, dead_letter, mut stop, finished) = (
            self.shared.clone(),
            self.dead_letter.clone(),
            self.stop.clone(),
            self.finished.clone(),
        );
        self.tasks.spawn(async move {
            let handled = handle(&shared, &message, dead_letter.as_ref(), &mut stop).await;
            let _ = finished.send(Finished {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                handled,
            });
        });
        while self.tasks.try_join_next().is_some() {}
    }

    /// Records a finished message, commits its partition up to the first message not done,
    /// and hands over what waited for the room.
    fn settle(&mut self, finished: Finished) {
        if finished.handled == Handled::Abandoned {
            return;
        }
        let key = (finished.topic, finished.partition);
        let Some(window) = self.windows.get_mut(&key) else {
            return;
        };
        if let Some(done) = window.get_mut(&finished.offset) {
            *done = true;
        }
        let mut last_done = None;
        while let Some(entry) = window.first_entry() {
            if !*entry.get() {
                break;
            }
            last_done = Some(*entry.key());
            entry.remove();
        }
        if let Some(offset) = last_done {
            commit(&self.shared.name, &self.consumer, &key.0, key.1, offset);
        }
        loop {
            let room = self
                .windows
                .get(&key)
                .is_none_or(|w| w.len() < self.max_in_flight);
            if !room {
                return;
            }
            match self.parked.get_mut(&key).and_then(|q| q.pop_front()) {
                Some(next) => {
                    self.parked_count -= 1;
                    self.dispatch(key.clone(), next);
                }
                None => return,
            }
        }
    }
}

async fn consume(
    shared: Arc<Shared>,
    consumer: StreamConsumer,
    dead_letter: Option<FutureProducer>,
    mut stop: watch::Receiver<bool>,
    max_in_flight: usize,
) {
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
    let mut d = Dispatcher {
        shared,
        consumer,
        dead_letter,
        stop: stop.clone(),
        max_in_flight,
        finished: finished_tx,
        windows: HashMap::new(),
        parked: HashMap::new(),
        parked_count: 0,
        tasks: JoinSet::new(),
    };
    loop {
        let message = tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(f) = finished_rx.recv() => {
                d.settle(f);
                continue;
            }
            m = d.consumer.recv(), if d.parked_count < PARKED_LIMIT => m.map(|m| m.detach()),
        };
        match message {
            Ok(m) => d.received(m),
            // librdkafka recovers from broker errors on its own; these are reports.
            Err(e) => tracing::warn!(receiver = %d.shared.name, error = %e, "Kafka consumer error"),
        }
    }
    // Messages still in flight see the stop and end uncommitted, to be consumed again.
    while d.tasks.join_next().await.is_some() {}
    // What finished before the stop is committed; nothing new is handed over.
    d.parked.clear();
    d.parked_count = 0;
    while let Ok(f) = finished_rx.try_recv() {
        d.settle(f);
    }
    let consumer = d.consumer;
    // Closing commits the stored offsets and leaves the group; it may block on the network.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}

/// Commits up to and including `offset`.
fn commit(name: &str, consumer: &StreamConsumer, topic: &str, partition: i32, offset: i64) {
    // Stored offsets are what the automatic commit (and the one on revocation) sends.
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        // The partition was revoked meanwhile: its new owner consumes the message again.
        tracing::debug!(receiver = %name, error = %e, "offset not stored");
        return;
    }
    let mut list = TopicPartitionList::new();
    if list
        .add_partition_offset(topic, partition, Offset::Offset(offset + 1))
        .is_ok()
    {
        // Committing now rather than at the next automatic commit narrows what a crash replays.
        let _ = consumer.commit(&list, CommitMode::Async);
    }
}

fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value)
}

async fn handle(
    shared: &Shared,
    message: &OwnedMessage,
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
    match decoded {
        Decoded::Traces(b) => to_pipeline(shared, shared.traces.as_ref(), b, stop).await,
        Decoded::Metrics(b) => to_pipeline(shared, shared.metrics.as_ref(), b, stop).await,
        Decoded::Logs(b) => to_pipeline(shared, shared.logs.as_ref(), b, stop).await,
    }
}

/// The message's signal and encoding: from its headers, else from its topic.
fn route(shared: &Shared, message: &OwnedMessage) -> Result<(SignalKind, Encoding), String> {
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
    message: &OwnedMessage,
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
    batch: Batch<S>,
    stop: &mut watch::Receiver<bool>,
) -> Handled {
    let Some(sink) = sink else {
        // `route` only lets through signals that have a pipeline.
        return Handled::Done;
    };
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
