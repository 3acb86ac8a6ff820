//! Turning a batch into Kafka messages: grouping by topic and partition key, encoding, and
//! splitting anything larger than the message limit.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use sluice_pipeline::codec::{encode_json, encode_proto};
use sluice_pipeline::signal::{item_count, split_front};
use sluice_pipeline::{Logs, Metrics, Signal, Traces};

use sluice_kafka_client::Encoding;

/// What partitioning the configuration asks for, as it applies to one signal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Partitioning {
    pub by_trace_id: bool,
    pub by_resource_attributes: bool,
}

/// A record key.
pub type Key = Vec<u8>;

/// Signal-specific parts of producing.
pub trait KafkaSignal: Signal {
    /// Splits resources into groups that share a partition key (`None`: no key).
    fn keyed(
        resources: Vec<Self::Resource>,
        p: Partitioning,
    ) -> Vec<(Option<Key>, Vec<Self::Resource>)> {
        if p.by_resource_attributes {
            return group_in_order(resources.into_iter().map(|r| {
                let attributes = Self::resource(&r).map_or(&[][..], |res| &res.attributes);
                (Some(resource_key(attributes).to_vec()), r)
            }));
        }
        vec![(None, resources)]
    }

    /// `raw` encoding: one message per item. `None` for signals that have no raw form.
    fn raw(_resources: &[Self::Resource]) -> Option<Vec<Vec<u8>>> {
        None
    }
}

impl KafkaSignal for Metrics {}

impl KafkaSignal for Traces {
    fn keyed(
        resources: Vec<ResourceSpans>,
        p: Partitioning,
    ) -> Vec<(Option<Key>, Vec<ResourceSpans>)> {
        if !p.by_trace_id {
            return vec![(None, resources)];
        }
        let mut groups = Groups::default();
        for (r_index, mut resource) in resources.into_iter().enumerate() {
            let scopes = std::mem::take(&mut resource.scope_spans);
            for mut scope in scopes {
                let spans = std::mem::take(&mut scope.spans);
                for (key, spans) in
                    group_in_order(spans.into_iter().map(|s| (Some(hex(&s.trace_id)), s)))
                {
                    let target = groups.resource(key, r_index, || ResourceSpans {
                        scope_spans: Vec::new(),
                        ..resource.clone()
                    });
                    target.scope_spans.push(ScopeSpans {
                        spans,
                        ..scope.clone()
                    });
                }
            }
        }
        groups.out
    }
}

impl KafkaSignal for Logs {
    fn keyed(
        resources: Vec<ResourceLogs>,
        p: Partitioning,
    ) -> Vec<(Option<Key>, Vec<ResourceLogs>)> {
        if p.by_resource_attributes || !p.by_trace_id {
            return group_in_order(resources.into_iter().map(|r| {
                let key = p.by_resource_attributes.then(|| {
                    resource_key(
                        r.resource
                            .as_ref()
                            .map(|x| x.attributes.as_slice())
                            .unwrap_or(&[]),
                    )
                    .to_vec()
                });
                (key, r)
            }));
        }
        let mut groups = Groups::default();
        for (r_index, mut resource) in resources.into_iter().enumerate() {
            let scopes = std::mem::take(&mut resource.scope_logs);
            for mut scope in scopes {
                let records = std::mem::take(&mut scope.log_records);
                // A record without a trace id gets the empty key, as in the OTel Collector
                // (which hashes it like any other).
                let by_trace =
                    group_in_order(records.into_iter().map(|l| (Some(hex(&l.trace_id)), l)));
                for (key, log_records) in by_trace {
                    let target = groups.resource(key, r_index, || ResourceLogs {
                        scope_logs: Vec::new(),
                        ..resource.clone()
                    });
                    target.scope_logs.push(ScopeLogs {
                        log_records,
                        ..scope.clone()
                    });
                }
            }
        }
        groups.out
    }

    fn raw(resources: &[ResourceLogs]) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for record in resources
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records)
        {
            out.push(raw_body(record.body.as_ref()));
        }
        Some(out)
    }
}

/// A string body as its text, bytes as they are, anything else as OTLP/JSON of the value.
fn raw_body(body: Option<&AnyValue>) -> Vec<u8> {
    match body.and_then(|b| b.value.as_ref()) {
        None => Vec::new(),
        Some(any_value::Value::StringValue(s)) => s.as_bytes().to_vec(),
        Some(any_value::Value::BytesValue(b)) => b.clone(),
        Some(_) => serde_json::to_vec(&body).unwrap_or_default(),
    }
}

/// Keyed groups being built from items taken out of their resources.
struct Groups<R> {
    out: Vec<(Option<Key>, Vec<R>)>,
    /// Per group: the index of the source resource its last resource copies.
    last_source: Vec<usize>,
    index: std::collections::HashMap<Option<Key>, usize>,
}

impl<R> Default for Groups<R> {
    fn default() -> Self {
        Groups {
            out: Vec::new(),
            last_source: Vec::new(),
            index: Default::default(),
        }
    }
}

impl<R> Groups<R> {
    /// The resource to add a scope to in `key`'s group: the last one if it copies the same
    /// source resource, so a resource is not repeated per scope.
    fn resource(&mut self, key: Option<Key>, source: usize, shell: impl FnOnce() -> R) -> &mut R {
        let position = match self.index.get(&key) {
            Some(&p) => p,
            None => {
                self.index.insert(key.clone(), self.out.len());
                self.out.push((key, Vec::new()));
                self.last_source.push(usize::MAX);
                self.out.len() - 1
            }
        };
        let group = &mut self.out[position].1;
        if self.last_source[position] != source || group.is_empty() {
            group.push(shell());
            self.last_source[position] = source;
        }
        let last = group.len() - 1;
        &mut group[last]
    }
}

/// Groups (key, resource) pairs by key, keeping first-seen order.
fn group_in_order<R>(pairs: impl Iterator<Item = (Option<Key>, R)>) -> Vec<(Option<Key>, Vec<R>)> {
    let mut out: Vec<(Option<Key>, Vec<R>)> = Vec::new();
    let mut index: std::collections::HashMap<Option<Key>, usize> = Default::default();
    for (key, resource) in pairs {
        match index.get(&key) {
            Some(&i) => out[i].1.push(resource),
            None => {
                index.insert(key.clone(), out.len());
                out.push((key, vec![resource]));
            }
        }
    }
    out
}

/// The trace id as the OTel Collector keys by it: lowercase hex, empty for no id.
fn hex(bytes: &[u8]) -> Key {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.into_bytes()
}

/// The record key the OTel Collector gives a resource's data when partitioning by resource
/// attributes (its `pdatautil.MapHash`): two xxHash64 sums over a byte form of the attributes
/// sorted by key, so the same resource lands on the same partition whichever collector, or
/// sluice, produced it.
pub fn resource_key(attributes: &[KeyValue]) -> [u8; 16] {
    if attributes.is_empty() {
        return [0; 16];
    }
    let mut buf = Vec::with_capacity(256);
    write_map(&mut buf, attributes);
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&xxh64(&buf).to_le_bytes());
    buf.push(0xf3);
    key[8..].copy_from_slice(&xxh64(&buf).to_le_bytes());
    key
}

fn write_map(buf: &mut Vec<u8>, map: &[KeyValue]) {
    let mut keys: Vec<&str> = map.iter().map(|kv| kv.key.as_str()).collect();
    keys.sort_unstable();
    for key in keys {
        // Like pcommon's `Get`, a repeated key stands for its first value each time.
        let value = map
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref());
        buf.push(0xf4);
        buf.extend_from_slice(key.as_bytes());
        write_value(buf, value);
    }
}

fn write_value(buf: &mut Vec<u8>, value: Option<&AnyValue>) {
    match value.and_then(|v| v.value.as_ref()) {
        None => buf.push(0xf5),
        Some(any_value::Value::StringValue(s)) => {
            buf.push(0xf7);
            buf.extend_from_slice(s.as_bytes());
        }
        Some(any_value::Value::BoolValue(b)) => buf.push(if *b { 0xf8 } else { 0xf9 }),
        Some(any_value::Value::IntValue(i)) => {
            buf.push(0xfa);
            buf.extend_from_slice(&i.to_le_bytes());
        }
        Some(any_value::Value::DoubleValue(d)) => {
            buf.push(0xfb);
            buf.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Some(any_value::Value::KvlistValue(list)) => {
            buf.push(0xfc);
            write_map(buf, &list.values);
            buf.push(0xfd);
        }
        Some(any_value::Value::ArrayValue(array)) => {
            buf.push(0xfe);
            for v in &array.values {
                write_value(buf, Some(v));
            }
            buf.push(0xff);
        }
        Some(any_value::Value::BytesValue(b)) => {
            buf.push(0xf6);
            buf.extend_from_slice(b);
        }
        // A profiles dictionary index means nothing outside profiles: the empty value.
        Some(any_value::Value::StringValueStrindex(_)) => buf.push(0xf5),
    }
}

const PRIME_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME_3: u64 = 0x1656_67B1_9E37_79F9;
const PRIME_4: u64 = 0x85EB_CA77_C2B2_AE63;
const PRIME_5: u64 = 0x27D4_EB2F_1656_67C5;

fn xxh_round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(PRIME_2))
        .rotate_left(31)
        .wrapping_mul(PRIME_1)
}

fn xxh_merge(acc: u64, lane: u64) -> u64 {
    (acc ^ xxh_round(0, lane))
        .wrapping_mul(PRIME_1)
        .wrapping_add(PRIME_4)
}

fn read_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(b)
}

/// xxHash64 with seed 0, from its specification (the hash Go's `cespare/xxhash` computes).
pub fn xxh64(input: &[u8]) -> u64 {
    let mut rest = input;
    let mut hash = if input.len() >= 32 {
        let mut lanes = [
            PRIME_1.wrapping_add(PRIME_2),
            PRIME_2,
            0,
            0u64.wrapping_sub(PRIME_1),
        ];
        while rest.len() >= 32 {
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = xxh_round(*lane, read_u64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let [v1, v2, v3, v4] = lanes;
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        for v in lanes {
            h = xxh_merge(h, v);
        }
        h
    } else {
        PRIME_5
    };
    hash = hash.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        hash ^= xxh_round(0, read_u64(rest));
        hash = hash
            .rotate_left(27)
            .wrapping_mul(PRIME_1)
            .wrapping_add(PRIME_4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&rest[..4]);
        hash ^= u64::from(u32::from_le_bytes(b)).wrapping_mul(PRIME_1);
        hash = hash
            .rotate_left(23)
            .wrapping_mul(PRIME_2)
            .wrapping_add(PRIME_3);
        rest = &rest[4..];
    }
    for b in rest {
        hash ^= u64::from(*b).wrapping_mul(PRIME_5);
        hash = hash.rotate_left(11).wrapping_mul(PRIME_1);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(PRIME_2);
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(PRIME_3);
    hash ^ (hash >> 32)
}

/// Encodes resources in one of the OTLP encodings.
pub fn encode<S: Signal>(resources: &[S::Resource], encoding: Encoding) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match encoding {
        Encoding::OtlpJson => encode_json::<S>(resources, &mut out)
            .map_err(|e| format!("cannot encode OTLP/JSON: {e}"))?,
        // `raw` comes here only for what has no raw form, which configuration refuses.
        Encoding::OtlpProto | Encoding::Raw => encode_proto::<S>(resources, &mut out),
        Encoding::Text(_) | Encoding::Json => {
            return Err(format!("`{}` is a receiver encoding", encoding.name()));
        }
    }
    Ok(out)
}

/// The result of fitting resources into messages.
#[derive(Default)]
pub struct Fitted {
    pub payloads: Vec<Vec<u8>>,
    /// Encoded sizes of single items too large for one message.
    pub oversized: Vec<usize>,
    /// Why some data could not be encoded at all.
    pub failed: Option<String>,
}

/// Encodes `resources` into payloads of at most `limit` bytes, halving (by resource, scope,
/// then items) whatever does not fit.
pub fn fit<S: Signal>(
    resources: Vec<S::Resource>,
    encoding: Encoding,
    limit: usize,
    out: &mut Fitted,
) {
    let payload = match encode::<S>(&resources, encoding) {
        Ok(p) => p,
        Err(e) => {
            out.failed = Some(e);
            return;
        }
    };
    if payload.len() <= limit {
        out.payloads.push(payload);
        return;
    }
    let items = item_count::<S>(&resources);
    if items <= 1 {
        out.oversized.push(payload.len());
        return;
    }
    let mut rest = resources;
    let front = split_front::<S>(&mut rest, items / 2);
    fit::<S>(front, encoding, limit, out);
    fit::<S>(rest, encoding, limit, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_matches_the_reference_implementation() {
        assert_eq!(xxh64(b""), 0xef46_db37_51d8_e999);
        assert_eq!(xxh64(&[42]), 0x0a9e_dece_beb0_3ae4);
        assert_eq!(xxh64(b"Hello, world!\0"), 0x7b06_c531_ea43_e89f);
        let hundred: Vec<u8> = (0..100).collect();
        assert_eq!(xxh64(&hundred), 0x6ac1_e580_3216_6597);
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    #[test]
    fn the_resource_key_is_the_collectors_map_hash() {
        assert_eq!(resource_key(&[]), [0; 16]);
        let a = [
            kv("service.name", any_value::Value::StringValue("api".into())),
            kv("pid", any_value::Value::IntValue(7)),
        ];
        // The bytes MapHash feeds xxHash64: keys sorted, each prefixed, values typed.
        let mut want = vec![0xf4];
        want.extend_from_slice(b"pid");
        want.push(0xfa);
        want.extend_from_slice(&7i64.to_le_bytes());
        want.push(0xf4);
        want.extend_from_slice(b"service.name");
        want.push(0xf7);
        want.extend_from_slice(b"api");
        let mut buf = Vec::new();
        write_map(&mut buf, &a);
        assert_eq!(buf, want);
        let key = resource_key(&a);
        assert_eq!(key[..8], xxh64(&want).to_le_bytes());
        want.push(0xf3);
        assert_eq!(key[8..], xxh64(&want).to_le_bytes());
        // Order does not matter; values do.
        let reversed = [a[1].clone(), a[0].clone()];
        assert_eq!(resource_key(&reversed), key);
        let other = [a[0].clone(), kv("pid", any_value::Value::IntValue(8))];
        assert_ne!(resource_key(&other), key);
    }
}
