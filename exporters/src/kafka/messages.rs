//! Turning a batch into Kafka messages: grouping by topic and partition key, encoding, and
//! splitting anything larger than the message limit.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message as _;
use sluice_pipeline::codec::{encode_json, encode_proto};
use sluice_pipeline::signal::{item_count, split_front};
use sluice_pipeline::{Logs, Metrics, Signal, Traces};

use super::config::Encoding;

/// What partitioning the configuration asks for, as it applies to one signal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Partitioning {
    pub by_trace_id: bool,
    pub by_resource_attributes: bool,
}

/// Signal-specific parts of producing.
pub trait KafkaSignal: Signal {
    /// Splits resources into groups that share a partition key (`None`: no key).
    fn keyed(
        resources: Vec<Self::Resource>,
        p: Partitioning,
    ) -> Vec<(Option<String>, Vec<Self::Resource>)> {
        if p.by_resource_attributes {
            return group_in_order(resources.into_iter().map(|r| {
                let key = Self::resource(&r).map(|res| attributes_hash(&res.attributes));
                (Some(key.unwrap_or_else(|| attributes_hash(&[]))), r)
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
    ) -> Vec<(Option<String>, Vec<ResourceSpans>)> {
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
    ) -> Vec<(Option<String>, Vec<ResourceLogs>)> {
        if p.by_resource_attributes || !p.by_trace_id {
            return group_in_order(resources.into_iter().map(|r| {
                let key = p.by_resource_attributes.then(|| {
                    attributes_hash(
                        r.resource
                            .as_ref()
                            .map(|x| x.attributes.as_slice())
                            .unwrap_or(&[]),
                    )
                });
                (key, r)
            }));
        }
        let mut groups = Groups::default();
        for (r_index, mut resource) in resources.into_iter().enumerate() {
            let scopes = std::mem::take(&mut resource.scope_logs);
            for mut scope in scopes {
                let records = std::mem::take(&mut scope.log_records);
                let by_trace = group_in_order(
                    records
                        .into_iter()
                        .map(|l| ((!l.trace_id.is_empty()).then(|| hex(&l.trace_id)), l)),
                );
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
    out: Vec<(Option<String>, Vec<R>)>,
    /// Per group: the index of the source resource its last resource copies.
    last_source: Vec<usize>,
    index: std::collections::HashMap<Option<String>, usize>,
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
    fn resource(
        &mut self,
        key: Option<String>,
        source: usize,
        shell: impl FnOnce() -> R,
    ) -> &mut R {
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
fn group_in_order<R>(
    pairs: impl Iterator<Item = (Option<String>, R)>,
) -> Vec<(Option<String>, Vec<R>)> {
    let mut out: Vec<(Option<String>, Vec<R>)> = Vec::new();
    let mut index: std::collections::HashMap<Option<String>, usize> = Default::default();
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash of attributes that does not depend on their order or on the process (FNV-1a over
/// the sorted, protobuf-encoded key/value pairs), so the same resource always lands on the
/// same partition.
pub fn attributes_hash(attributes: &[KeyValue]) -> String {
    let mut sorted: Vec<&KeyValue> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for kv in sorted {
        feed(&kv.encode_to_vec());
    }
    format!("{hash:016x}")
}

/// Encodes resources in one of the OTLP encodings.
pub fn encode<S: Signal>(resources: &[S::Resource], encoding: Encoding) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match encoding {
        Encoding::OtlpJson => encode_json::<S>(resources, &mut out)
            .map_err(|e| format!("cannot encode OTLP/JSON: {e}"))?,
        Encoding::OtlpProto | Encoding::Raw => encode_proto::<S>(resources, &mut out),
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
