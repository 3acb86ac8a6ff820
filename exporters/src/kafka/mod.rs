//! The `kafka` exporter: OTLP (protobuf or JSON) or raw log bodies to Kafka topics, with the
//! OTel Collector Kafka exporter's configuration and partitioning (keyed records land on the
//! partitions the Collector's exporter picks). A batch is acknowledged only once librdkafka
//! reports every one of its messages delivered.

mod config;
pub mod messages;
pub mod producer;
#[cfg(test)]
mod tests;

pub use config::{KafkaExporterConfig, PartitionStrategy};
pub use messages::resource_key;
pub use producer::sarama_partition;
/// The Kafka client library, for end-to-end tests and tools that inspect topics.
#[doc(hidden)]
pub use rdkafka;
pub use sluice_kafka_client::Encoding;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use sluice_config::{ComponentConfig, ConfigErrors};
use sluice_kafka_client::Problem;
use sluice_pipeline::exporter::{Export, HelperSettings, export_signals};
use sluice_pipeline::metadata::ClientMetadata;
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Lifecycle,
    Logs, Metrics, PerSignal, Signal, SignalKind, StartError, Traces,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use messages::{Fitted, KafkaSignal, Key, Partitioning, encode, fit};
use producer::{DeliveryReport, KafkaProducer};

pub use sluice_kafka_client::{ENCODING_HEADER, SIGNAL_HEADER};

/// Bytes kept free in a message for its key and headers.
const ENVELOPE_BYTES: usize = 512;

/// A message to produce: topic, key, payload.
type Outgoing = (String, Option<Key>, Vec<u8>);

/// The header `signal_header` adds, as the OTel Collector names it.
const OTELCOL_SIGNAL_HEADER: &str = "otelcol.signal";

pub struct KafkaExporterFactory;

impl ExporterFactory for KafkaExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "kafka",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "sends OTLP (protobuf or JSON) or raw log bodies to Kafka topics",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        settings: HelperSettings,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let (shared, cfg): (_, KafkaExporterConfig) =
            sluice_kafka_client::decode(config, config::NO_EFFECT, &ctx.warnings)?;
        let at = |p: Problem| ConfigErrors::from(p.at(config));
        let resolved = cfg
            .resolve(&shared, signals, settings.timeout)
            .map_err(at)?;
        // Batches merged after the queue keep only the metadata they all share (see
        // `sending_queue.batch.partition`): a key read here must partition them, or merged
        // batches would lose it and go to the default topic, as upstream also refuses.
        if let Some(batch) = settings.queue.batch.as_ref() {
            let partitioned = &batch.partition.metadata_keys;
            let read = cfg
                .include_metadata_keys
                .iter()
                .map(|k| ("include_metadata_keys", k))
                .chain(
                    resolved
                        .targets
                        .iter()
                        .filter_map(|(_, t)| t.topic_from_metadata_key.as_ref())
                        .map(|k| ("topic_from_metadata_key", k)),
                );
            for (key, name) in read {
                if !partitioned.iter().any(|p| p.eq_ignore_ascii_case(name)) {
                    return Err(at(Problem::new(
                        "sending_queue.batch.partition.metadata_keys",
                        format!(
                            "`{name}` ({key}) must be listed here: batches merged after the queue \
                             keep only the metadata they all share"
                        ),
                    )));
                }
            }
        }
        let name = config.id.to_string();
        let exporter = Arc::new(KafkaExporter::new(&name, &cfg, resolved, ctx));
        let settings = HelperSettings {
            // Longer than librdkafka's own message timeout, so its report (a retryable
            // failure) arrives before the helper gives up on the attempt.
            timeout: settings.timeout * 2 + StdDuration::from_secs(1),
            ..settings
        };
        let mut built = export_signals(&name, &settings, signals, exporter.clone(), ctx);
        // Last in shutdown order: the helpers drain into the producer before it is flushed.
        built.lifecycles.push(exporter);
        Ok(built)
    }
}

struct SignalTarget {
    topic: String,
    topic_from_metadata_key: Option<String>,
    message_key_from_metadata_key: Option<String>,
    encoding: Encoding,
    partitioning: Partitioning,
    oversized: Counter,
}

/// One producer serving every signal.
pub struct KafkaExporter {
    name: String,
    client: ClientConfig,
    sarama_compat: bool,
    producer: Mutex<Option<Arc<KafkaProducer>>>,
    targets: PerSignal<Option<SignalTarget>>,
    topic_from_attribute: Option<String>,
    /// `record_headers`, then `signal_header`'s.
    headers: Vec<(String, String)>,
    /// `include_metadata_keys`.
    metadata_headers: Vec<String>,
    signal_header: bool,
    payload_limit: usize,
}

impl KafkaExporter {
    fn new(
        name: &str,
        cfg: &KafkaExporterConfig,
        resolved: config::Resolved,
        ctx: &BuildContext,
    ) -> Self {
        let targets = PerSignal::new(|signal| {
            let item = match signal {
                SignalKind::Traces => Traces::ITEM_NAME,
                SignalKind::Metrics => Metrics::ITEM_NAME,
                SignalKind::Logs => Logs::ITEM_NAME,
            };
            let (_, target) = resolved.targets.iter().find(|(s, _)| *s == signal)?;
            Some(SignalTarget {
                topic: target.topic.clone(),
                topic_from_metadata_key: target.topic_from_metadata_key.clone(),
                message_key_from_metadata_key: target.message_key_from_metadata_key.clone(),
                encoding: target.encoding,
                partitioning: match signal {
                    SignalKind::Traces => Partitioning {
                        by_trace_id: cfg.partition_traces_by_id,
                        by_resource_attributes: false,
                    },
                    SignalKind::Metrics => Partitioning {
                        by_trace_id: false,
                        by_resource_attributes: cfg.partition_metrics_by_resource_attributes,
                    },
                    SignalKind::Logs => Partitioning {
                        by_trace_id: cfg.partition_logs_by_trace_id,
                        by_resource_attributes: cfg.partition_logs_by_resource_attributes,
                    },
                },
                oversized: ctx.telemetry.metrics.counter(
                    &format!("sluice_exporter_kafka_oversized_{item}"),
                    &format!("Number of {item} dropped because one alone exceeds producer.max_message_bytes"),
                    &[("exporter", name)],
                ),
            })
        });
        KafkaExporter {
            name: name.to_string(),
            client: resolved.client,
            sarama_compat: resolved.strategy == PartitionStrategy::SaramaCompat,
            producer: Mutex::new(None),
            targets,
            topic_from_attribute: cfg.topic_from_attribute.clone().filter(|a| !a.is_empty()),
            headers: resolved.headers,
            metadata_headers: cfg
                .include_metadata_keys
                .iter()
                .filter(|k| !k.is_empty())
                .cloned()
                .collect(),
            signal_header: cfg.signal_header,
            payload_limit: cfg
                .producer
                .max_message_bytes
                .saturating_sub(ENVELOPE_BYTES)
                .max(1),
        }
    }

    /// The producer, created on first use: building the exporter (e.g. for `validate`)
    /// must not contact the brokers.
    fn producer(&self) -> Result<Arc<KafkaProducer>, String> {
        let mut slot = self
            .producer
            .lock()
            .map_err(|_| "producer lock poisoned".to_string())?;
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let p = Arc::new(
            KafkaProducer::create(&self.client, self.sarama_compat)
                .map_err(|e| format!("cannot create the Kafka producer: {e}"))?,
        );
        *slot = Some(p.clone());
        Ok(p)
    }

    /// After a fatal error (e.g. the idempotent producer lost its sequence) the producer is
    /// unusable; the next attempt builds a new one.
    fn discard_if_fatal(&self, producer: &KafkaProducer) -> bool {
        let Some((code, reason)) = producer.fatal_error() else {
            return false;
        };
        tracing::error!(exporter = %self.name, ?code, reason, "fatal Kafka producer error; rebuilding the producer");
        if let Ok(mut slot) = self.producer.lock() {
            *slot = None;
        }
        true
    }

    fn discard_producer(&self, why: &str) {
        tracing::warn!(exporter = %self.name, why, "rebuilding the Kafka producer");
        if let Ok(mut slot) = self.producer.lock() {
            *slot = None;
        }
    }

    /// Resources grouped by destination topic (`topic_from_attribute`).
    fn by_topic<S: Signal>(
        &self,
        default: &str,
        resources: Vec<S::Resource>,
    ) -> Vec<(String, Vec<S::Resource>)> {
        let Some(attribute) = &self.topic_from_attribute else {
            return vec![(default.to_string(), resources)];
        };
        let mut out: Vec<(String, Vec<S::Resource>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for r in resources {
            let topic = S::resource(&r)
                .and_then(|res| res.attributes.iter().find(|kv| &kv.key == attribute))
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s),
                    ) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| default.to_string());
            match index.get(&topic) {
                Some(&i) => out[i].1.push(r),
                None => {
                    index.insert(topic.clone(), out.len());
                    out.push((topic, vec![r]));
                }
            }
        }
        out
    }

    /// Every message a batch becomes, as (topic, key, payload), and the sizes of items that
    /// fit in no message.
    fn messages<S: KafkaSignal>(
        &self,
        batch: &Batch<S>,
    ) -> Result<(Vec<Outgoing>, Vec<usize>), DeliveryError> {
        let target = self.target::<S>()?;
        let plain = target.encoding != Encoding::Raw
            && self.topic_from_attribute.is_none()
            && !target.partitioning.by_trace_id
            && !target.partitioning.by_resource_attributes;
        if plain {
            // The common case needs neither a copy of the data nor more than one encode.
            let payload = encode::<S>(batch.resources(), target.encoding)
                .map_err(DeliveryError::permanent)?;
            if payload.len() <= self.payload_limit {
                return Ok((vec![(target.topic.clone(), None, payload)], Vec::new()));
            }
        }
        let mut out = Vec::new();
        let mut oversized = Vec::new();
        for (topic, resources) in self.by_topic::<S>(&target.topic, batch.resources().to_vec()) {
            for (key, group) in S::keyed(resources, target.partitioning) {
                let mut fitted = Fitted::default();
                match (target.encoding, S::raw(&group)) {
                    (Encoding::Raw, Some(bodies)) => {
                        for body in bodies {
                            if body.len() > self.payload_limit {
                                fitted.oversized.push(body.len());
                            } else {
                                fitted.payloads.push(body);
                            }
                        }
                    }
                    _ => fit::<S>(group, target.encoding, self.payload_limit, &mut fitted),
                }
                if let Some(e) = fitted.failed {
                    return Err(DeliveryError::permanent(e));
                }
                oversized.extend(fitted.oversized);
                out.extend(
                    fitted
                        .payloads
                        .into_iter()
                        .map(|p| (topic.clone(), key.clone(), p)),
                );
            }
        }
        Ok((out, oversized))
    }
}

/// Kafka errors that retrying the same message cannot fix.
fn is_permanent(e: &KafkaError) -> bool {
    let code = match e {
        KafkaError::MessageProduction(code) => *code,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopic
    )
}

impl KafkaExporter {
    fn target<S: Signal>(&self) -> Result<&SignalTarget, DeliveryError> {
        self.targets.get(S::KIND).as_ref().ok_or_else(|| {
            DeliveryError::permanent(format!(
                "the exporter was not built for {}",
                S::KIND.as_str()
            ))
        })
    }

    /// The headers of every message of a signal: sluice's own (what the `kafka` receiver
    /// reads), `record_headers`, and `otelcol.signal` if asked for.
    fn headers(
        &self,
        signal: SignalKind,
        encoding: &str,
        metadata: Option<&ClientMetadata>,
    ) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(3 + self.headers.len())
            .insert(Header {
                key: SIGNAL_HEADER,
                value: Some(signal.as_str()),
            })
            .insert(Header {
                key: ENCODING_HEADER,
                value: Some(encoding),
            });
        for (key, value) in &self.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        if self.signal_header {
            headers = headers.insert(Header {
                key: OTELCOL_SIGNAL_HEADER,
                value: Some(signal.as_str()),
            });
        }
        if let Some(metadata) = metadata {
            for key in &self.metadata_headers {
                for value in metadata.get(key).unwrap_or_default() {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value),
                    });
                }
            }
        }
        headers
    }
}

#[async_trait]
impl<S: KafkaSignal> Export<S> for KafkaExporter {
    async fn export(&self, batch: &Batch<S>) -> Result<(), DeliveryError> {
        let target = self.target::<S>()?;
        let (mut messages, oversized) = self.messages(batch)?;
        // What the request's metadata says wins over the attribute and the configured topic,
        // as upstream.
        let metadata = batch.metadata();
        let first = |key: &Option<String>| {
            key.as_deref()
                .and_then(|k| metadata?.get(k)?.first().cloned())
        };
        if let Some(topic) = first(&target.topic_from_metadata_key) {
            for (t, _, _) in &mut messages {
                t.clone_from(&topic);
            }
        }
        if let Some(key) = first(&target.message_key_from_metadata_key) {
            for (_, k, _) in &mut messages {
                *k = Some(key.clone().into_bytes());
            }
        }
        let producer = self.producer().map_err(DeliveryError::permanent)?;
        let encoding = target.encoding.name();
        let mut pending: Vec<oneshot::Receiver<DeliveryReport>> =
            Vec::with_capacity(messages.len());
        for (topic, key, payload) in &messages {
            loop {
                let headers = self.headers(S::KIND, &encoding, metadata);
                match producer.send(topic, key.as_deref(), payload, headers) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                        // librdkafka's local queue is full: wait for deliveries to make room
                        // (the helper's timeout bounds this).
                        tokio::time::sleep(StdDuration::from_millis(20)).await;
                    }
                    Err(e) => {
                        self.discard_if_fatal(&producer);
                        return Err(if is_permanent(&e) {
                            DeliveryError::permanent(format!(
                                "Kafka refused a message for `{topic}`: {e}"
                            ))
                        } else {
                            DeliveryError::retryable(format!(
                                "cannot queue a message for `{topic}`: {e}"
                            ))
                        });
                    }
                }
            }
        }
        let mut first_error: Option<DeliveryError> = None;
        // Every message is already queued; awaiting the reports one by one waits no longer
        // than the slowest of them.
        let mut stale_producer = false;
        for (delivery, (topic, _, _)) in pending.into_iter().zip(&messages) {
            let error = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) if needs_new_producer(&e) => {
                    stale_producer = true;
                    DeliveryError::retryable(format!("message for `{topic}` not delivered: {e}"))
                }
                Ok(Err(e)) if is_permanent(&e) => {
                    DeliveryError::permanent(format!("Kafka refused a message for `{topic}`: {e}"))
                }
                Ok(Err(e)) => {
                    DeliveryError::retryable(format!("message for `{topic}` not delivered: {e}"))
                }
                Err(_) => {
                    DeliveryError::retryable("the producer went away before reporting delivery")
                }
            };
            // A retryable failure wins: the whole batch is sent again.
            if first_error
                .as_ref()
                .is_none_or(|f| f.is_permanent() && !error.is_permanent())
            {
                first_error = Some(error);
            }
        }
        if !self.discard_if_fatal(&producer) && stale_producer {
            self.discard_producer("the broker no longer knows this producer's id or epoch");
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if !oversized.is_empty() {
            target.oversized.add(oversized.len() as u64);
            tracing::warn!(
                exporter = %self.name,
                items = oversized.len(),
                sizes = ?oversized,
                limit = self.payload_limit,
                "{} too large for one Kafka message dropped",
                S::ITEM_NAME
            );
            return Err(DeliveryError::permanent(format!(
                "{} {} larger than the {}-byte message limit (encoded sizes {:?})",
                oversized.len(),
                S::ITEM_NAME,
                self.payload_limit,
                oversized
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl Lifecycle for KafkaExporter {
    async fn start(&self) -> Result<(), StartError> {
        self.producer()
            .map(|_| ())
            .map_err(|e| StartError::new(&self.name, e))
    }

    /// Waits for librdkafka to hand over what it still holds (exports already wait for their
    /// own delivery reports; this covers messages of attempts that were given up on).
    async fn flush(&self, deadline: Instant) {
        let Some(producer) = self.producer.lock().ok().and_then(|p| p.clone()) else {
            return;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        let _ = tokio::task::spawn_blocking(move || producer.flush(wait)).await;
    }

    async fn shutdown(&self, deadline: Instant) {
        let Some(producer) = self.producer.lock().ok().and_then(|mut p| p.take()) else {
            return;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        let flushed = tokio::task::spawn_blocking(move || producer.flush(wait)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!(exporter = %self.name, "Kafka producer not flushed by the shutdown deadline");
        }
    }
}

/// Delivery errors that only a new producer (a new id and epoch) can clear. librdkafka reports
/// them per message rather than as fatal errors, e.g. after a broker lost its producer state on
/// a restart: retrying with the same producer would fail forever.
fn needs_new_producer(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::InvalidProducerIdMapping
        )
    )
}
