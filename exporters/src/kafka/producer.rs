//! The exporter's librdkafka producer, with the OTel Collector's default partitioner: a keyed
//! record goes to the partition sarama's hash partitioner picks (FNV-1a 32 of the key, as a
//! signed number modulo the partition count, made positive), so records land where the
//! Collector's exporter puts them. librdkafka's `FutureProducer` cannot take a partitioner of
//! one's own, so this is the same thing on a `ThreadedProducer`: each record's delivery
//! report completes a future.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Partitioner, Producer, ProducerContext, ThreadedProducer,
};
use tokio::sync::oneshot;

/// Where a record went (partition, offset), or why it did not.
pub type DeliveryReport = Result<(i32, i64), KafkaError>;

/// FNV-1a, 32 bits.
pub fn fnv1a_32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The partition sarama's default hash partitioner (and franz-go's `SaramaCompatHasher` over
/// FNV-1a, the OTel Collector's default) gives `key` among `partitions`.
pub fn sarama_partition(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    // The hash read as a signed 32-bit number, Go's truncating remainder, then its absolute
    // value: not Kafka's (masking the sign bit) nor librdkafka's `fnv1a` (unsigned).
    let p = (fnv1a_32(key) as i32) % partitions;
    p.abs()
}

/// `record_partitioner.sticky_key.hasher: sarama_compat` for keyed records. librdkafka keeps
/// keyless records on a sticky partition itself, as franz-go's sticky-key partitioner does.
pub struct SaramaCompat;

impl Partitioner for SaramaCompat {
    fn partition(
        &self,
        _topic: &str,
        key: Option<&[u8]>,
        partition_cnt: i32,
        _is_partition_available: impl Fn(i32) -> bool,
    ) -> i32 {
        sarama_partition(key.unwrap_or_default(), partition_cnt)
    }
}

/// The producer's context: delivery reports to their futures, and the partitioner.
pub struct ExportContext {
    partitioner: Option<SaramaCompat>,
}

impl ClientContext for ExportContext {}

impl ProducerContext<SaramaCompat> for ExportContext {
    type DeliveryOpaque = Box<oneshot::Sender<DeliveryReport>>;

    fn delivery(&self, result: &DeliveryResult<'_>, report: Self::DeliveryOpaque) {
        let outcome = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.clone()),
        };
        let _ = report.send(outcome);
    }

    fn get_custom_partitioner(&self) -> Option<&SaramaCompat> {
        self.partitioner.as_ref()
    }
}

/// A librdkafka producer whose sends return their delivery report as a future.
pub struct KafkaProducer {
    inner: ThreadedProducer<ExportContext, SaramaCompat>,
}

impl KafkaProducer {
    /// `sarama_compat`: partition keyed records as sarama does; otherwise librdkafka's
    /// `partitioner` property decides.
    pub fn create(config: &ClientConfig, sarama_compat: bool) -> KafkaResult<KafkaProducer> {
        let context = ExportContext {
            partitioner: sarama_compat.then_some(SaramaCompat),
        };
        let mut config = config.clone();
        if sarama_compat {
            // A topic-level property makes librdkafka create the default topic configuration
            // the partitioner is installed on; this one is also what keeps keyless records on
            // the sticky partitioner.
            config.set("partitioner", "consistent_random");
        }
        Ok(KafkaProducer {
            inner: config.create_with_context(context)?,
        })
    }

    /// Queues one record. `QueueFull` comes back as an error for the caller to wait on.
    pub fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<oneshot::Receiver<DeliveryReport>, KafkaError> {
        let (tx, rx) = oneshot::channel();
        let mut record = BaseRecord::<[u8], [u8], _>::with_opaque_to(topic, Box::new(tx))
            .payload(payload)
            .headers(headers);
        if let Some(k) = key {
            record = record.key(k);
        }
        self.inner.send(record).map(|()| rx).map_err(|(e, _)| e)
    }

    /// A fatal error of the producer (e.g. of the idempotent producer), if it had one.
    pub fn fatal_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.inner.client().fatal_error()
    }

    /// Waits up to `wait` for every queued record to be delivered or to fail.
    pub fn flush(&self, wait: Duration) -> KafkaResult<()> {
        self.inner.flush(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn sarama_takes_the_absolute_value_of_the_signed_remainder() {
        // "a" hashes to 0xe40c292c, -468965076 as an i32: -468965076 % 7 = -6, so 6.
        // librdkafka's unsigned `fnv1a` partitioner would say 3826002220 % 7 = 5, Kafka's
        // sign-masking one 1678518572 % 7 = 3.
        assert_eq!(sarama_partition(b"a", 7), 6);
        for key in [&b""[..], b"b", b"trace-0001", b"\x00\xff"] {
            for n in 1..12 {
                let signed = fnv1a_32(key) as i32;
                let want = (signed % n).abs();
                assert_eq!(sarama_partition(key, n), want);
                assert!((0..n).contains(&want));
            }
        }
    }
}
