//! The `kafka` exporter: OTLP (protobuf or JSON) or raw log bodies to Kafka topics, with the
//! OTel Collector Kafka exporter's configuration. A batch is acknowledged only once librdkafka
//! reports every one of its messages delivered.

mod config;
pub mod messages;
#[cfg(test)]
mod tests;

pub use config::{Encoding, KafkaExporterConfig};
pub use messages::attributes_hash;
/// The Kafka client library, for end-to-end tests and tools that inspect topics.
#[doc(hidden)]
pub use rdkafka;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic};
use sluice_pipeline::exporter::{Export, HelperSettings, export_signals};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Lifecycle,
    Logs, Metrics, PerSignal, Signal, SignalKind, StartError, Traces, decode_config,
};
use tokio::time::Instant;

use messages::{Fitted, KafkaSignal, Partitioning, encode, fit};

pub use sluice_kafka_client::{ENCODING_HEADER, SIGNAL_HEADER};

/// Bytes kept free in a message for its key and headers.
const ENVELOPE_BYTES: usize = 512;

/// A message to produce: topic, key, payload.
type Outgoing = (String, Option<String>, Vec<u8>);

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
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: KafkaExporterConfig = decode_config(config)?;
        let at = |(key, message): (&str, String)| {
            ConfigErrors::from(Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.{key}", config.path),
                message,
            ))
        };
        cfg.validate(signals).map_err(at)?;
        let client = cfg.client_config().map_err(at)?;
        let name = config.id.to_string();
        let exporter = Arc::new(KafkaExporter::new(&name, &cfg, client, ctx));
        let settings = HelperSettings {
            queue: cfg.sending_queue.clone(),
            retry: cfg.retry_on_failure.clone(),
            // Longer than librdkafka's own message timeout, so its report (a retryable
            // failure) arrives before the helper gives up on the attempt.
            timeout: cfg.timeout.0 * 2 + StdDuration::from_secs(1),
            local_delivery: false,
        };
        let mut built = export_signals(&name, &settings, signals, exporter.clone(), ctx);
        // Last in shutdown order: the helpers drain into the producer before it is flushed.
        built.lifecycles.push(exporter);
        Ok(built)
    }
}

struct SignalTarget {
    topic: String,
    encoding: Encoding,
    partitioning: Partitioning,
    oversized: Counter,
}

/// One producer serving every signal.
pub struct KafkaExporter {
    name: String,
    client: ClientConfig,
    producer: Mutex<Option<FutureProducer>>,
    targets: PerSignal<SignalTarget>,
    topic_from_attribute: Option<String>,
    payload_limit: usize,
}

impl KafkaExporter {
    fn new(
        name: &str,
        cfg: &KafkaExporterConfig,
        client: ClientConfig,
        ctx: &BuildContext,
    ) -> Self {
        let targets = PerSignal::new(|signal| {
            let item = match signal {
                SignalKind::Traces => Traces::ITEM_NAME,
                SignalKind::Metrics => Metrics::ITEM_NAME,
                SignalKind::Logs => Logs::ITEM_NAME,
            };
            SignalTarget {
                topic: cfg.topic(signal),
                encoding: cfg.encoding(signal),
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
            }
        });
        KafkaExporter {
            name: name.to_string(),
            client,
            producer: Mutex::new(None),
            targets,
            topic_from_attribute: cfg.topic_from_attribute.clone(),
            payload_limit: cfg
                .producer
                .max_message_bytes
                .saturating_sub(ENVELOPE_BYTES)
                .max(1),
        }
    }

    /// The producer, created on first use: building the exporter (e.g. for `validate`)
    /// must not contact the brokers.
    fn producer(&self) -> Result<FutureProducer, String> {
        let mut slot = self
            .producer
            .lock()
            .map_err(|_| "producer lock poisoned".to_string())?;
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let p: FutureProducer = self
            .client
            .create()
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))?;
        *slot = Some(p.clone());
        Ok(p)
    }

    /// After a fatal error (e.g. the idempotent producer lost its sequence) the producer is
    /// unusable; the next attempt builds a new one.
    fn discard_if_fatal(&self, producer: &FutureProducer) -> bool {
        let Some((code, reason)) = producer.client().fatal_error() else {
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
        let target = self.targets.get(S::KIND);
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

#[async_trait]
impl<S: KafkaSignal> Export<S> for KafkaExporter {
    async fn export(&self, batch: &Batch<S>) -> Result<(), DeliveryError> {
        let target = self.targets.get(S::KIND);
        let (messages, oversized) = self.messages(batch)?;
        let producer = self.producer().map_err(DeliveryError::permanent)?;
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
        for (topic, key, payload) in &messages {
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: SIGNAL_HEADER,
                    value: Some(S::KIND.as_str()),
                })
                .insert(Header {
                    key: ENCODING_HEADER,
                    value: Some(target.encoding.as_str()),
                });
            let mut record = FutureRecord::<str, [u8]>::to(topic)
                .payload(payload.as_slice())
                .headers(headers);
            if let Some(k) = key {
                record = record.key(k.as_str());
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's local queue is full: wait for deliveries to make room
                        // (the helper's timeout bounds this).
                        record = back;
                        tokio::time::sleep(StdDuration::from_millis(20)).await;
                    }
                    Err((e, _)) => {
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
                Ok(Err((e, _))) if needs_new_producer(&e) => {
                    stale_producer = true;
                    DeliveryError::retryable(format!("message for `{topic}` not delivered: {e}"))
                }
                Ok(Err((e, _))) if is_permanent(&e) => {
                    DeliveryError::permanent(format!("Kafka refused a message for `{topic}`: {e}"))
                }
                Ok(Err((e, _))) => {
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
