//! The `kafka` receiver: consumes OTLP (protobuf or JSON) or plain log payloads from Kafka
//! topics (named, or matched by regular expressions), with the OTel Collector Kafka receiver's
//! keys. By default at least once: a message's offset is stored for commit only after the
//! pipeline acknowledged it and every earlier message of its partition, and a retryable refusal
//! is retried (with backoff) rather than skipped; `message_marking` and `error_backoff` give
//! the OTel Collector's other choices. Partitions proceed side by side, each with a bounded
//! number of messages in flight.

mod config;
mod decode;
#[cfg(test)]
mod tests;
mod topics;

pub use config::{InitialOffset, KafkaReceiverConfig, Marking};

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use sluice_config::{ComponentConfig, ConfigErrors};
use sluice_kafka_client::{Encoding, Problem};
use sluice_pipeline::consumer::DEFAULT_ADMISSION_WAIT;
use sluice_pipeline::exporter::{Backoff, RetrySettings};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, DeliveryError, DynConsumer, FactoryInfo, Lifecycle, Logs, Metrics,
    Receiver, ReceiverFactory, ReceiverOutputs, Signal, SignalKind, StartError, Traces, deliver,
};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use decode::Decoded;
use topics::TopicFilter;

pub use sluice_kafka_client::{ENCODING_HEADER, SIGNAL_HEADER};

pub struct KafkaReceiverFactory;

impl ReceiverFactory for KafkaReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "kafka",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "consumes OTLP (protobuf or JSON) or raw, text and JSON log payloads from Kafka topics",
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
        let (shared, cfg): (_, KafkaReceiverConfig) =
            sluice_kafka_client::decode(config, config::NO_EFFECT, &ctx.warnings)?;
        let at = |p: Problem| ConfigErrors::from(p.at(config));
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
        let resolved = cfg.resolve(&shared, &signals).map_err(at)?;
        for note in &resolved.notes {
            let mut warning = note.at(config);
            warning.message = format!("accepted with a difference: {}", warning.message);
            ctx.warnings.push(warning);
        }
        let mut routes = Vec::new();
        for r in &resolved.routes {
            routes.push(Route {
                filter: TopicFilter::new(r.signal, &r.topics).map_err(at)?,
                signal: r.signal,
                encoding: r.encoding,
            });
        }
        let name = config.id.to_string();
        let metrics = &ctx.telemetry.metrics;
        let labels = [("receiver", name.as_str())];
        Ok(Arc::new(KafkaReceiver {
            state: Arc::new(State {
                name: name.clone(),
                routes,
                traces: outputs.traces.map(|c| Sink::new(c, &name, ctx)),
                metrics: outputs.metrics.map(|c| Sink::new(c, &name, ctx)),
                logs: outputs.logs.map(|c| Sink::new(c, &name, ctx)),
                undecodable: metrics.counter(
                    "sluice_receiver_kafka_undecodable_messages",
                    "Kafka messages that could not be decoded",
                    &labels,
                ),
                refused: metrics.counter(
                    "sluice_receiver_kafka_refused_messages",
                    "Kafka messages skipped because the pipeline refused them",
                    &labels,
                ),
                delay: resolved.delay_metric.then(|| Delay {
                    sum_ms: metrics.counter(
                        "sluice_receiver_kafka_records_delay_milliseconds",
                        "Sum over received Kafka records of the time from their timestamp to their receipt",
                        &labels,
                    ),
                    records: metrics.counter(
                        "sluice_receiver_kafka_delayed_records",
                        "Kafka records counted in sluice_receiver_kafka_records_delay_milliseconds_total",
                        &labels,
                    ),
                }),
                dead_letter_topic: resolved.dead_letter.as_ref().map(|(t, _)| t.clone()),
                marking: resolved.marking,
                retry: resolved.retry,
                headers: resolved.headers,
                autocommit: resolved.autocommit,
            }),
            consumer_config: resolved.consumer,
            dead_letter_config: resolved.dead_letter.map(|(_, c)| c),
            max_in_flight: cfg.max_in_flight_per_partition,
            refresh: resolved.refresh,
            running: Mutex::new(None),
        }))
    }
}

/// Which signal and encoding the messages of matching topics carry when they do not say.
#[derive(Clone, Debug)]
struct Route {
    filter: TopicFilter,
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

/// `telemetry.metrics.kafka_receiver_records_delay` as a sum and a count.
struct Delay {
    sum_ms: Counter,
    records: Counter,
}

/// What every message handler shares.
struct State {
    name: String,
    routes: Vec<Route>,
    traces: Option<Sink<Traces>>,
    metrics: Option<Sink<Metrics>>,
    logs: Option<Sink<Logs>>,
    undecodable: Counter,
    refused: Counter,
    delay: Option<Delay>,
    dead_letter_topic: Option<String>,
    marking: Marking,
    retry: RetrySettings,
    /// Header names copied to resource attributes `kafka.header.<name>`.
    headers: Vec<String>,
    autocommit: bool,
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub struct KafkaReceiver {
    state: Arc<State>,
    consumer_config: ClientConfig,
    dead_letter_config: Option<ClientConfig>,
    max_in_flight: usize,
    refresh: Duration,
    running: Mutex<Option<Running>>,
}

impl KafkaReceiver {
    /// Messages that could not be decoded.
    pub fn undecodable(&self) -> u64 {
        self.state.undecodable.get()
    }
}

impl Receiver for KafkaReceiver {}

/// What the consumer group did, reported from librdkafka's rebalance callbacks.
enum GroupEvent {
    Assigned(Vec<PartitionKey>),
    Revoked(Vec<PartitionKey>),
}

/// The consumer's context: passes rebalances on to the receiver, and commits marked offsets
/// before partitions go when the periodic commit is off (librdkafka does it itself when on).
struct GroupContext {
    events: mpsc::UnboundedSender<GroupEvent>,
    commit_on_revoke: bool,
}

impl ClientContext for GroupContext {}

fn partitions(list: &TopicPartitionList) -> Vec<PartitionKey> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            if self.commit_on_revoke {
                let _ = consumer.commit_consumer_state(CommitMode::Sync);
            }
            let _ = self.events.send(GroupEvent::Revoked(partitions(list)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let _ = self.events.send(GroupEvent::Assigned(partitions(list)));
        }
    }
}

type KafkaConsumer = StreamConsumer<GroupContext>;

#[async_trait]
impl Lifecycle for KafkaReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let name = &self.state.name;
        let (events_tx, events) = mpsc::unbounded_channel();
        let context = GroupContext {
            events: events_tx,
            commit_on_revoke: !self.state.autocommit,
        };
        let consumer: KafkaConsumer = self
            .consumer_config
            .create_with_context(context)
            .map_err(|e| StartError::new(name, format!("cannot create the Kafka consumer: {e}")))?;
        let consumer = Arc::new(consumer);
        let patterns = self.state.routes.iter().any(|r| r.filter.is_pattern());
        if !patterns {
            let topics = topics::subscription(self.state.routes.iter().map(|r| &r.filter), &[]);
            subscribe(name, &consumer, &topics).map_err(|e| {
                StartError::new(name, format!("cannot subscribe to {topics:?}: {e}"))
            })?;
            tracing::info!(receiver = %name, ?topics, "consuming from Kafka");
        } else {
            tracing::info!(receiver = %name, "consuming from Kafka topics matching regular expressions");
        }
        let dead_letter = match &self.dead_letter_config {
            Some(c) => Some(c.create::<FutureProducer>().map_err(|e| {
                StartError::new(name, format!("cannot create the dead-letter producer: {e}"))
            })?),
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume(
            self.state.clone(),
            consumer,
            events,
            dead_letter,
            stopped,
            self.max_in_flight,
            patterns.then_some(self.refresh),
        ));
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
            tracing::warn!(receiver = %self.state.name, "Kafka message still in flight at the shutdown deadline");
            abort.abort();
        }
    }
}

fn subscribe(name: &str, consumer: &KafkaConsumer, topics: &[String]) -> Result<(), String> {
    if topics.is_empty() {
        consumer.unsubscribe();
        tracing::warn!(receiver = %name, "no topic matches the receiver's topics yet");
        return Ok(());
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).map_err(|e| e.to_string())
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
    /// Done with (delivered, or skipped for good): it may be marked.
    Done,
    /// Shutdown came first: leave it unmarked.
    Abandoned,
    /// Failed and must not be marked: its partition stops at it until it is reassigned (or
    /// sluice restarts), so nothing after it is committed or handed over.
    Stall,
}

/// A message whose handling ended.
struct Finished {
    key: PartitionKey,
    offset: i64,
    handled: Handled,
}

type PartitionKey = (String, i32);

/// One assigned partition: its messages in the pipeline, the offsets not yet committed, and
/// messages waiting for room.
#[derive(Default)]
struct PartitionState {
    in_flight: usize,
    /// Offsets handed over and not committed yet, and whether each is marked. Only a marked
    /// prefix is committed, so a later message finishing first never lets an earlier one be
    /// lost.
    uncommitted: BTreeMap<i64, bool>,
    parked: VecDeque<OwnedMessage>,
    stalled: bool,
}

impl PartitionState {
    /// Whether `max_in_flight` messages were handed over since the oldest one not yet marked
    /// (or, marking before the pipeline, are still being handled).
    fn full(&self, max_in_flight: usize) -> bool {
        self.uncommitted.len().max(self.in_flight) >= max_in_flight
    }
}

/// Hands messages to the pipeline, each partition with at most `max_in_flight` at once, and
/// commits each partition in order. Messages of a full partition wait here while the other
/// partitions go on; once [`PARKED_LIMIT`] wait, no more are taken from the consumer until the
/// pipeline makes room. (Pausing the partition in librdkafka instead was tried: resuming it
/// against tansu skipped messages. A stalled partition is paused for good, never resumed: its
/// next owner starts over from the committed offset.)
struct Dispatcher {
    state: Arc<State>,
    consumer: Arc<KafkaConsumer>,
    dead_letter: Option<FutureProducer>,
    stop: watch::Receiver<bool>,
    max_in_flight: usize,
    finished: mpsc::UnboundedSender<Finished>,
    partitions: HashMap<PartitionKey, PartitionState>,
    /// Partitions paused because a message of theirs stalled; resumed if assigned anew.
    paused: HashSet<PartitionKey>,
    parked_count: usize,
    tasks: JoinSet<()>,
}

/// Messages held back for full partitions before the receiver stops taking more.
const PARKED_LIMIT: usize = 256;

impl Dispatcher {
    fn received(&mut self, message: OwnedMessage) {
        if let Some(delay) = &self.state.delay
            && let Some(ms) = message.timestamp().to_millis()
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            delay.sum_ms.add(u64::try_from(now - ms).unwrap_or(0));
            delay.records.add(1);
        }
        let key = (message.topic().to_string(), message.partition());
        let partition = self.partitions.entry(key.clone()).or_default();
        if partition.stalled {
            // Not committed: the partition's next owner reads it again.
            return;
        }
        if partition.full(self.max_in_flight) || !partition.parked.is_empty() {
            partition.parked.push_back(message);
            self.parked_count += 1;
            return;
        }
        self.dispatch(key, message);
    }

    fn dispatch(&mut self, key: PartitionKey, message: OwnedMessage) {
        let offset = message.offset();
        let marked_now = !self.state.marking.after;
        let partition = self.partitions.entry(key.clone()).or_default();
        partition.in_flight += 1;
        // `message_marking.after: false`: marked as it is handed over, before the pipeline
        // has it (the OTel Collector's at-most-once default).
        partition.uncommitted.insert(offset, marked_now);
        if marked_now {
            self.commit_marked(&key);
        }
        let (state, dead_letter, mut stop, finished) = (
            self.state.clone(),
            self.dead_letter.clone(),
            self.stop.clone(),
            self.finished.clone(),
        );
        self.tasks.spawn(async move {
            let handled = handle(&state, &message, dead_letter.as_ref(), &mut stop).await;
            let _ = finished.send(Finished {
                key,
                offset,
                handled,
            });
        });
        while self.tasks.try_join_next().is_some() {}
    }

    /// Stores (and without the periodic commit, commits) the marked prefix of a partition.
    fn commit_marked(&mut self, key: &PartitionKey) {
        let Some(partition) = self.partitions.get_mut(key) else {
            return;
        };
        let mut last = None;
        while let Some(entry) = partition.uncommitted.first_entry() {
            if !*entry.get() {
                break;
            }
            last = Some(*entry.key());
            entry.remove();
        }
        if let Some(offset) = last {
            commit(&self.state, &self.consumer, &key.0, key.1, offset);
        }
    }

    /// Records a finished message, commits its partition up to the first unmarked message,
    /// and hands over what waited for the room.
    fn settle(&mut self, finished: Finished) {
        let key = finished.key;
        let Some(partition) = self.partitions.get_mut(&key) else {
            // Revoked meanwhile: its new owner decides.
            return;
        };
        partition.in_flight = partition.in_flight.saturating_sub(1);
        match finished.handled {
            Handled::Abandoned => return,
            Handled::Done => {
                if let Some(marked) = partition.uncommitted.get_mut(&finished.offset) {
                    *marked = true;
                }
                self.commit_marked(&key);
            }
            Handled::Stall => {
                self.stall(&key, finished.offset);
                return;
            }
        }
        loop {
            let Some(partition) = self.partitions.get_mut(&key) else {
                return;
            };
            if partition.full(self.max_in_flight) {
                return;
            }
            match partition.parked.pop_front() {
                Some(next) => {
                    self.parked_count -= 1;
                    self.dispatch(key.clone(), next);
                }
                None => return,
            }
        }
    }

    fn stall(&mut self, key: &PartitionKey, offset: i64) {
        let Some(partition) = self.partitions.get_mut(key) else {
            return;
        };
        partition.stalled = true;
        self.parked_count -= partition.parked.len();
        partition.parked.clear();
        let mut list = TopicPartitionList::new();
        list.add_partition(&key.0, key.1);
        if self.consumer.pause(&list).is_ok() {
            self.paused.insert(key.clone());
        }
        tracing::error!(
            receiver = %self.state.name,
            topic = %key.0,
            partition = key.1,
            offset,
            "a message failed and message_marking does not let it be skipped: the partition stops there until it is reassigned or sluice restarts"
        );
    }

    fn group_event(&mut self, event: GroupEvent) {
        match event {
            GroupEvent::Revoked(keys) => {
                for key in keys {
                    if let Some(p) = self.partitions.remove(&key) {
                        self.parked_count -= p.parked.len();
                    }
                }
            }
            GroupEvent::Assigned(keys) => {
                let mut list = TopicPartitionList::new();
                for key in keys {
                    if self.paused.remove(&key) {
                        list.add_partition(&key.0, key.1);
                    }
                }
                if list.count() > 0 {
                    // Assigned anew, it starts from its committed offset: the stalled
                    // message is tried again.
                    let _ = self.consumer.resume(&list);
                }
            }
        }
    }
}

/// Matches the cluster's topics against the patterns, off the async threads (a metadata
/// request blocks).
async fn matching_topics(
    state: &State,
    consumer: &Arc<KafkaConsumer>,
) -> Result<Vec<String>, String> {
    let c = consumer.clone();
    let metadata = tokio::task::spawn_blocking(move || {
        c.fetch_metadata(None, Duration::from_secs(30)).map(|m| {
            m.topics()
                .iter()
                .map(|t| t.name().to_string())
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(topics::subscription(
        state.routes.iter().map(|r| &r.filter),
        &metadata,
    ))
}

async fn consume(
    state: Arc<State>,
    consumer: Arc<KafkaConsumer>,
    mut events: mpsc::UnboundedReceiver<GroupEvent>,
    dead_letter: Option<FutureProducer>,
    mut stop: watch::Receiver<bool>,
    max_in_flight: usize,
    refresh: Option<Duration>,
) {
    let (finished_tx, mut finished_rx) = mpsc::unbounded_channel::<Finished>();
    let mut d = Dispatcher {
        state,
        consumer,
        dead_letter,
        stop: stop.clone(),
        max_in_flight,
        finished: finished_tx,
        partitions: HashMap::new(),
        paused: HashSet::new(),
        parked_count: 0,
        tasks: JoinSet::new(),
    };
    // With regular-expression topics, the subscription follows the cluster's topics: looked at
    // now, then every `metadata.refresh_interval` (sooner again after a failed look).
    let mut subscribed: Option<Vec<String>> = None;
    let next_look = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(next_look);
    loop {
        let message = tokio::select! {
            _ = stopped(&mut stop) => break,
            Some(f) = finished_rx.recv() => {
                d.settle(f);
                continue;
            }
            Some(e) = events.recv() => {
                d.group_event(e);
                continue;
            }
            _ = &mut next_look, if refresh.is_some() => {
                let every = refresh.unwrap_or(Duration::from_secs(600));
                let wait = match matching_topics(&d.state, &d.consumer).await {
                    Ok(topics) => {
                        if subscribed.as_ref() != Some(&topics) {
                            match subscribe(&d.state.name, &d.consumer, &topics) {
                                Ok(()) => {
                                    tracing::info!(receiver = %d.state.name, ?topics, "consuming from Kafka");
                                    subscribed = Some(topics);
                                }
                                Err(e) => tracing::warn!(receiver = %d.state.name, error = %e, ?topics, "cannot subscribe"),
                            }
                        }
                        every
                    }
                    Err(e) => {
                        tracing::warn!(receiver = %d.state.name, error = %e, "cannot list the cluster's topics");
                        every.min(Duration::from_secs(5))
                    }
                };
                next_look.as_mut().reset(Instant::now() + wait);
                continue;
            }
            m = d.consumer.recv(), if d.parked_count < PARKED_LIMIT => m.map(|m| m.detach()),
        };
        match message {
            Ok(m) => d.received(m),
            // librdkafka recovers from broker errors on its own; these are reports.
            Err(e) => tracing::warn!(receiver = %d.state.name, error = %e, "Kafka consumer error"),
        }
    }
    // Messages still in flight see the stop and end unmarked, to be consumed again.
    while d.tasks.join_next().await.is_some() {}
    // What finished before the stop is committed; nothing new is handed over.
    for p in d.partitions.values_mut() {
        p.parked.clear();
    }
    d.parked_count = 0;
    while let Ok(f) = finished_rx.try_recv() {
        d.settle(f);
    }
    let (consumer, autocommit) = (d.consumer, d.state.autocommit);
    drop(d.tasks);
    // Closing commits the stored offsets (itself, or here without the periodic commit) and
    // leaves the group; it may block on the network.
    let _ = tokio::task::spawn_blocking(move || {
        if !autocommit {
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
        }
        drop(consumer)
    })
    .await;
}

/// Marks a partition consumed up to and including `offset`.
fn commit(state: &State, consumer: &KafkaConsumer, topic: &str, partition: i32, offset: i64) {
    // Stored offsets are what the commits (periodic, on revocation, on close) send.
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        // The partition was revoked meanwhile: its new owner consumes the message again.
        tracing::debug!(receiver = %state.name, error = %e, "offset not stored");
        return;
    }
    if state.autocommit {
        return;
    }
    let mut list = TopicPartitionList::new();
    if list
        .add_partition_offset(topic, partition, Offset::Offset(offset + 1))
        .is_ok()
    {
        let _ = consumer.commit(&list, CommitMode::Async);
    }
}

fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a [u8]> {
    let headers = message.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value)
}

/// `header_extraction`: the named headers present on the message, as resource attributes.
fn header_attributes(state: &State, message: &OwnedMessage) -> Vec<(String, String)> {
    state
        .headers
        .iter()
        .filter_map(|name| {
            // The first header of the name; one without a value reads as empty, as in Go.
            let found = message.headers()?.iter().find(|h| h.key == name)?;
            Some((
                format!("kafka.header.{name}"),
                String::from_utf8_lossy(found.value.unwrap_or_default()).into_owned(),
            ))
        })
        .collect()
}

/// Whether a message that failed may be skipped (marked) rather than stop its partition.
fn may_skip(marking: &Marking, permanent: bool) -> bool {
    !marking.after
        || if permanent {
            marking.on_permanent_error
        } else {
            marking.on_error
        }
}

async fn handle(
    state: &State,
    message: &OwnedMessage,
    dead_letter: Option<&FutureProducer>,
    stop: &mut watch::Receiver<bool>,
) -> Handled {
    let payload = message.payload().unwrap_or_default();
    let decoded = route(state, message).and_then(|(signal, encoding)| {
        decode::decode(signal, encoding, payload, message.timestamp().to_millis())
    });
    let mut decoded = match decoded {
        Ok(d) => d,
        Err(reason) => {
            state.undecodable.add(1);
            if let (Some(producer), Some(topic)) = (dead_letter, &state.dead_letter_topic) {
                tracing::warn!(
                    receiver = %state.name,
                    topic = message.topic(),
                    partition = message.partition(),
                    offset = message.offset(),
                    bytes = payload.len(),
                    %reason,
                    "copying a Kafka message that cannot be decoded to the dead-letter topic"
                );
                dead_letter_copy(state, producer, topic, message, &reason).await;
                return Handled::Done;
            }
            tracing::warn!(
                receiver = %state.name,
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                bytes = payload.len(),
                %reason,
                "a Kafka message cannot be decoded"
            );
            return if may_skip(&state.marking, true) {
                Handled::Done
            } else {
                Handled::Stall
            };
        }
    };
    decoded.put_resource_attributes(&header_attributes(state, message));
    match decoded {
        Decoded::Traces(b) => to_pipeline(state, state.traces.as_ref(), b, stop).await,
        Decoded::Metrics(b) => to_pipeline(state, state.metrics.as_ref(), b, stop).await,
        Decoded::Logs(b) => to_pipeline(state, state.logs.as_ref(), b, stop).await,
    }
}

/// The message's signal and encoding: from its headers, else from the topic it came from.
fn route(state: &State, message: &OwnedMessage) -> Result<(SignalKind, Encoding), String> {
    let by_topic: Vec<&Route> = state
        .routes
        .iter()
        .filter(|r| r.filter.matches(message.topic()))
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
    // The route of the topic the message came from, else any of its signal (a topic shared
    // by signals that differ in encoding is read with the matching one).
    let Some(configured) = by_topic
        .iter()
        .copied()
        .chain(state.routes.iter())
        .find(|r| r.signal == signal)
        .map(|r| r.encoding)
    else {
        return Err(format!(
            "a {} message, but no pipeline takes {} from this receiver",
            signal.as_str(),
            signal.as_str()
        ));
    };
    let encoding = match header(message, ENCODING_HEADER) {
        Some(value) => Encoding::from_header(value, signal)
            .map_err(|e| format!("{ENCODING_HEADER} header: {e}"))?,
        None => configured,
    };
    Ok((signal, encoding))
}

async fn dead_letter_copy(
    state: &State,
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
        tracing::warn!(receiver = %state.name, error = %e, topic, "cannot copy the message to the dead-letter topic");
    }
}

/// Delivers until the pipeline takes the data, refuses it for good, or `error_backoff` gives
/// up; what then happens to the message is `message_marking`'s call.
async fn to_pipeline<S: Signal>(
    state: &State,
    sink: Option<&Sink<S>>,
    batch: Batch<S>,
    stop: &mut watch::Receiver<bool>,
) -> Handled {
    let Some(sink) = sink else {
        // `route` only lets through signals that have a pipeline.
        return Handled::Done;
    };
    let items = batch.items() as u64;
    let mut backoff = Backoff::new(&state.retry);
    loop {
        let outcome = tokio::select! {
            _ = stopped(stop) => return Handled::Abandoned,
            o = deliver(&sink.consumer, batch.fork(), DEFAULT_ADMISSION_WAIT) => o,
        };
        let (error, permanent) = match outcome {
            Ok(()) => {
                sink.accepted.add(items);
                return Handled::Done;
            }
            Err(DeliveryError::Permanent { reason }) => (reason, true),
            Err(e) => {
                let hint = match &e {
                    DeliveryError::Throttled { retry_after, .. } => Some(*retry_after),
                    DeliveryError::Retryable { retry_after, .. } => *retry_after,
                    DeliveryError::Permanent { .. } => None,
                };
                if let Some(wait) = backoff.next(hint) {
                    tracing::debug!(receiver = %state.name, error = %e, ?wait, "pipeline busy; retrying the Kafka message");
                    tokio::select! {
                        _ = stopped(stop) => return Handled::Abandoned,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
                (e.to_string(), false)
            }
        };
        sink.refused.add(items);
        if may_skip(&state.marking, permanent) {
            state.refused.add(1);
            tracing::warn!(receiver = %state.name, reason = %error, items, permanent, "the pipeline refused a Kafka message; skipping it as message_marking says");
            return Handled::Done;
        }
        tracing::warn!(receiver = %state.name, reason = %error, items, permanent, "the pipeline refused a Kafka message; message_marking keeps it unmarked");
        return Handled::Stall;
    }
}
