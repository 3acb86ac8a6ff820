//! Client metadata: what a receiver knew about the request a batch came from (its headers,
//! with `include_metadata`), carried with the data as the OTel Collector's `client.Info` is,
//! so that later components can act on it: the `batch` processor's `metadata_keys`, an
//! exporter's `sending_queue.batch.partition.metadata_keys`, the `attributes` processor's
//! `from_context`, the Kafka exporter's metadata keys.

use std::sync::Arc;

/// Keys (lower-cased header names) and their values, in the order they were first seen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientMetadata {
    entries: Vec<(String, Vec<String>)>,
}

impl ClientMetadata {
    /// Adds a value under `key` (compared without regard to case).
    pub fn add(&mut self, key: &str, value: impl Into<String>) {
        let key = key.to_ascii_lowercase();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value),
            None => self.entries.push((key, vec![value])),
        }
    }

    /// The values under `key`, if any (compared without regard to case).
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Only the given keys, in that order: what a partition by `keys` keeps of a request's
    /// metadata once requests of the partition are merged.
    pub fn restricted_to(&self, keys: &[String]) -> ClientMetadata {
        let mut out = ClientMetadata::default();
        for key in keys {
            if let Some(values) = self.get(key) {
                out.entries
                    .push((key.to_ascii_lowercase(), values.to_vec()));
            }
        }
        out
    }

    /// The values of `keys`, which identify a partition (an unset key differs from an empty
    /// value, as in the OTel Collector).
    pub fn partition_key(
        metadata: Option<&ClientMetadata>,
        keys: &[String],
    ) -> Vec<Option<Vec<String>>> {
        keys.iter()
            .map(|k| metadata.and_then(|m| m.get(k)).map(<[String]>::to_vec))
            .collect()
    }
}

/// Shared metadata as batches carry it.
pub type SharedMetadata = Arc<ClientMetadata>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_case_insensitive_and_partitions_tell_unset_from_empty() {
        let mut m = ClientMetadata::default();
        m.add("X-Tenant", "a");
        m.add("x-tenant", "b");
        m.add("Authorization", "");
        assert_eq!(
            m.get("X-TENANT"),
            Some(&["a".to_string(), "b".to_string()][..])
        );
        let keys = vec!["x-tenant".to_string(), "missing".to_string()];
        assert_eq!(
            ClientMetadata::partition_key(Some(&m), &keys),
            vec![Some(vec!["a".into(), "b".into()]), None]
        );
        let only = m.restricted_to(&keys);
        assert_eq!(only.iter().count(), 1);
        assert_eq!(
            ClientMetadata::partition_key(Some(&m), &["authorization".into()]),
            vec![Some(vec![String::new()])]
        );
    }
}
