//! Validated actions and how they change one attribute list.

use regex::Regex;
use sha2::{Digest, Sha256};
use sluice_pipeline::metadata::ClientMetadata;
use sluice_pipeline::proto::common::v1::{AnyValue, KeyValue, any_value};

use super::value::{ConvertedType, convert, hash_input, string_value};

/// Where `insert`, `update` and `upsert` take the new value from.
#[derive(Clone, Debug)]
pub enum Source {
    Value(AnyValue),
    /// Another attribute of the same item (of the same resource, for `resource`).
    Attribute(String),
    /// A value the receiver kept of the request (`include_metadata`): a header or gRPC
    /// metadata key, lower-cased; several values are joined with `;`, as upstream.
    Context(String),
}

/// One action, checked and with its regexes compiled.
#[derive(Clone, Debug)]
pub enum Action {
    /// Adds the attribute when the key is absent.
    Insert { key: String, source: Source },
    /// Replaces the value when the key is present.
    Update { key: String, source: Source },
    /// Inserts or updates.
    Upsert { key: String, source: Source },
    /// Removes `key` and every key matching `pattern`.
    Delete {
        key: Option<String>,
        pattern: Option<Regex>,
    },
    /// Replaces values with the SHA-256 of their content, as lowercase hex (`""` for values
    /// with no hashable content).
    Hash {
        key: Option<String>,
        pattern: Option<Regex>,
    },
    /// Matches `key`'s string value against `regex` and upserts each named group.
    Extract { key: String, regex: Regex },
    /// Changes the value's type; values that do not convert are left as they are.
    Convert { key: String, to: ConvertedType },
}

/// Runs `actions` in order on `attrs`, with `context` the request's metadata (when the
/// receiver kept it); true when anything changed.
pub fn apply_all(
    actions: &[Action],
    attrs: &mut Vec<KeyValue>,
    context: Option<&ClientMetadata>,
) -> bool {
    let mut changed = false;
    for action in actions {
        changed |= apply(action, attrs, context);
    }
    changed
}

/// Whether any action reads the request's metadata.
pub fn reads_context(actions: &[Action]) -> bool {
    actions.iter().any(|a| {
        matches!(
            a,
            Action::Insert {
                source: Source::Context(_),
                ..
            } | Action::Update {
                source: Source::Context(_),
                ..
            } | Action::Upsert {
                source: Source::Context(_),
                ..
            }
        )
    })
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a KeyValue> {
    attrs.iter().find(|kv| kv.key == key)
}

fn resolve(
    source: &Source,
    attrs: &[KeyValue],
    context: Option<&ClientMetadata>,
) -> Option<AnyValue> {
    match source {
        Source::Value(v) => Some(v.clone()),
        // A missing source attribute means there is nothing to copy: the action does nothing
        // rather than writing an empty value.
        Source::Attribute(from) => get(attrs, from).map(|kv| kv.value.clone().unwrap_or_default()),
        Source::Context(key) => {
            let values = context?.get(key)?;
            if values.is_empty() {
                return None;
            }
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(values.join(";"))),
            })
        }
    }
}

/// Sets every entry under `key` (a malformed list may repeat a key; leaving a stale copy
/// would let a reader pick the old value). True when one existed.
fn set_existing(attrs: &mut [KeyValue], key: &str, value: &AnyValue) -> bool {
    let mut found = false;
    for kv in attrs.iter_mut().filter(|kv| kv.key == key) {
        kv.value = Some(value.clone());
        found = true;
    }
    found
}

fn upsert(attrs: &mut Vec<KeyValue>, key: &str, value: AnyValue) {
    if !set_existing(attrs, key, &value) {
        attrs.push(KeyValue {
            key: key.to_string(),
            value: Some(value),
            ..Default::default()
        });
    }
}

fn selects(kv: &KeyValue, key: &Option<String>, pattern: &Option<Regex>) -> bool {
    key.as_deref() == Some(kv.key.as_str()) || pattern.as_ref().is_some_and(|p| p.is_match(&kv.key))
}

fn apply(action: &Action, attrs: &mut Vec<KeyValue>, context: Option<&ClientMetadata>) -> bool {
    match action {
        Action::Insert { key, source } => {
            if get(attrs, key).is_some() {
                return false;
            }
            let Some(value) = resolve(source, attrs, context) else {
                return false;
            };
            attrs.push(KeyValue {
                key: key.clone(),
                value: Some(value),
                ..Default::default()
            });
            true
        }
        Action::Update { key, source } => {
            if get(attrs, key).is_none() {
                return false;
            }
            match resolve(source, attrs, context) {
                Some(value) => set_existing(attrs, key, &value),
                None => false,
            }
        }
        Action::Upsert { key, source } => match resolve(source, attrs, context) {
            Some(value) => {
                upsert(attrs, key, value);
                true
            }
            None => false,
        },
        Action::Delete { key, pattern } => {
            let before = attrs.len();
            attrs.retain(|kv| !selects(kv, key, pattern));
            attrs.len() != before
        }
        Action::Hash { key, pattern } => {
            let mut changed = false;
            for kv in attrs.iter_mut().filter(|kv| selects(kv, key, pattern)) {
                // What cannot be hashed becomes the empty string, as in the OTel Collector:
                // a hash action never lets the original value through.
                let hashed = match hash_input(kv.value.as_ref()) {
                    Some(input) => hex::encode(Sha256::digest(&input)),
                    None => String::new(),
                };
                kv.value = Some(string_value(hashed));
                changed = true;
            }
            changed
        }
        Action::Extract { key, regex } => {
            let Some(subject) = get(attrs, key).and_then(|kv| match &kv.value {
                Some(AnyValue {
                    value: Some(any_value::Value::StringValue(s)),
                }) => Some(s.clone()),
                _ => None,
            }) else {
                return false;
            };
            let Some(caps) = regex.captures(&subject) else {
                return false;
            };
            let mut changed = false;
            for name in regex.capture_names().flatten() {
                if let Some(m) = caps.name(name) {
                    upsert(attrs, name, string_value(m.as_str()));
                    changed = true;
                }
            }
            changed
        }
        Action::Convert { key, to } => {
            let mut changed = false;
            for kv in attrs.iter_mut().filter(|kv| kv.key == *key) {
                if let Some(v) = convert(kv.value.as_ref(), *to) {
                    kv.value = Some(v);
                    changed = true;
                }
            }
            changed
        }
    }
}
