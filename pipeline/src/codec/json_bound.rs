//! An upper bound on what decoding an OTLP/JSON document allocates, read from its text before
//! anything is decoded, so a receiver can reserve it first (as it reserves the scan's estimate
//! for protobuf). JSON amplifies too: `{}` is an empty span, three bytes with its comma for a
//! 264-byte struct.
//!
//! One pass over the text, without parsing it: every object may be a message as large as the
//! largest one at its depth (OTLP/JSON nests an object per message, so an object's depth is its
//! message's), charged as an element of a growing `Vec` ([`super::scan`]'s `3n + 1` elements per
//! `Vec`, here four per element); every string that is a value may be a string or bytes field,
//! no longer than its text; every array element may be a number in a repeated field. What the
//! text cannot be decoded into is charged all the same, which only makes the bound higher.

use crate::signal::SignalKind;

use super::SLOW_PATH_LIMIT;
use super::scan::largest_struct_at;

/// What an allocation is charged beyond its bytes (the scan's `BYTES_ALLOCATION`).
const ALLOCATION: usize = 24;

/// A string in an array may be an element of a `Vec<String>` (`EntityRef` keys).
const STRING_ELEMENT: usize = 3 * size_of::<String>();

/// A number in an array may be an element of a `Vec<u64>` or `Vec<f64>`.
const NUMBER_ELEMENT: usize = 3 * 8;

/// What the generic JSON tree that small documents may be decoded through takes besides the
/// decoded structs: per non-empty object its map (B-tree nodes of 11 entries of a `String` key
/// and a 32-byte value, charged twice, and per key its entry again for maps of more than one
/// node), per key or string its allocation, per array element a 32-byte value.
const TREE_OBJECT: usize = 2 * (11 * (24 + 32) + 64);
const TREE_KEY: usize = 2 * (24 + 32);
const TREE_ELEMENT: usize = 3 * 32;

/// Allocations that live only while one value is decoded (a key read as a `String`, a copy of
/// an escaped string): one at a time, so charged once, for the longest string.
const TRANSIENT: usize = 4096;

/// Nesting deeper than this is refused by the JSON decoder (serde_json's recursion limit);
/// the bound still counts it, as array elements.
const TRACKED_DEPTH: usize = 128;

/// What decoding an OTLP/JSON document takes at most.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonBound {
    /// The decoded structs, and what decoding straight into them holds on the way.
    pub decoded: usize,
    /// Besides, the generic JSON tree, for a document that has to be decoded through one
    /// (0 for documents too large to be).
    pub tree: usize,
}

/// At least the most heap memory decoding `json`, an OTLP/JSON export request of `signal`,
/// holds at once (decoding fails for text that is not one; the bound is then meaningless
/// but finite).
pub fn json_decoded_bound(signal: SignalKind, json: &[u8]) -> JsonBound {
    let mut bound = 0usize;
    let mut tree = 0usize;
    // Open objects; and per open container (objects and arrays), one bit: whether it is an
    // array.
    let mut objects = 0usize;
    let mut containers = 0usize;
    let mut arrays: u128 = 0;
    let in_array = |containers: usize, arrays: u128| {
        containers > TRACKED_DEPTH || (containers > 0 && arrays >> (containers - 1) & 1 == 1)
    };
    let mut longest = 0;
    let mut at = 0;
    while at < json.len() {
        match json[at] {
            b'{' => {
                let charge = 4 * largest_struct_at(signal, objects) + 2 * ALLOCATION;
                bound = bound.saturating_add(charge);
                let empty = json[at + 1..]
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b'}');
                if !empty {
                    tree = tree.saturating_add(TREE_OBJECT);
                }
                objects += 1;
                if containers < TRACKED_DEPTH {
                    arrays &= !(1 << containers);
                }
                containers += 1;
            }
            b'[' => {
                bound = bound.saturating_add(NUMBER_ELEMENT);
                tree = tree.saturating_add(TREE_ELEMENT);
                if containers < TRACKED_DEPTH {
                    arrays |= 1 << containers;
                }
                containers += 1;
            }
            b'}' => {
                objects = objects.saturating_sub(1);
                containers = containers.saturating_sub(1);
            }
            b']' => containers = containers.saturating_sub(1),
            b',' => {
                bound = bound.saturating_add(NUMBER_ELEMENT);
                tree = tree.saturating_add(TREE_ELEMENT);
            }
            b'"' => {
                let start = at + 1;
                at = start;
                while at < json.len() && json[at] != b'"' {
                    // An escape takes the next byte with it, quotes included.
                    at += if json[at] == b'\\' { 2 } else { 1 };
                }
                let len = at.min(json.len()) - start;
                longest = longest.max(len);
                let mut next = at + 1;
                while next < json.len() && json[next].is_ascii_whitespace() {
                    next += 1;
                }
                let is_key = json.get(next) == Some(&b':');
                // Keys name fields: the decoder matches them, it keeps none.
                let mut charge = if is_key { 0 } else { len + ALLOCATION };
                if !is_key && in_array(containers, arrays) {
                    charge += STRING_ELEMENT;
                }
                bound = bound.saturating_add(charge);
                let in_tree = len + ALLOCATION + if is_key { TREE_KEY } else { 0 };
                tree = tree.saturating_add(in_tree);
            }
            _ => {}
        }
        at += 1;
    }
    JsonBound {
        decoded: bound.saturating_add(2 * longest + TRANSIENT),
        tree: if json.len() <= SLOW_PATH_LIMIT {
            tree
        } else {
            0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::scan::tests::counting;
    use crate::codec::{decode_json, encode_json, random_requests};
    use crate::signal::{Logs, Metrics, Signal, Traces};

    /// Decodes `json` and checks the bound against what that held at most; returns both.
    fn assert_bounds<S: Signal>(json: &[u8]) -> (usize, usize) {
        let bound = json_decoded_bound(S::KIND, json);
        let (decoded, _, peak) = counting::measure(|| decode_json::<S>(json));
        decoded.expect("valid OTLP/JSON");
        let (typed, whole) = (bound.decoded, bound.decoded + bound.tree);
        assert!(
            whole >= peak,
            "bound {whole} < peak {peak}, {} bytes",
            json.len()
        );
        // Decoded straight into the structs (no NaN, nothing omitted), the first part is
        // enough on its own.
        let typed_path = !crate::codec::nonfinite_decode::mentions_non_finite(json)
            && serde_json::from_slice::<S::Request>(json).is_ok();
        if typed_path {
            assert!(
                typed >= peak,
                "bound {typed} < peak {peak}, {} bytes",
                json.len()
            );
        }
        (typed, peak)
    }

    fn empty_spans(n: usize) -> Vec<u8> {
        let spans = vec!["{}"; n].join(",");
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#).into_bytes()
    }

    #[test]
    fn empty_objects_are_charged_as_the_structs_they_decode_to() {
        // Under and over the size up to which the generic tree may be used.
        for n in [1, 5, 1000, 300_000, 400_000] {
            let json = empty_spans(n);
            let (bound, _) = assert_bounds::<Traces>(&json);
            assert!(bound > 250 * n, "{bound} for {n} spans");
        }
    }

    #[test]
    fn the_bound_holds_for_random_requests_and_the_slow_path() {
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..40 {
            let mut json = Vec::new();
            let traces = random_requests::traces(&mut rng).resource_spans;
            encode_json::<Traces>(&traces, &mut json).unwrap();
            assert_bounds::<Traces>(&json);
            json.clear();
            let logs = random_requests::logs(&mut rng).resource_logs;
            encode_json::<Logs>(&logs, &mut json).unwrap();
            assert_bounds::<Logs>(&json);
            json.clear();
            let metrics = random_requests::metrics(&mut rng).resource_metrics;
            encode_json::<Metrics>(&metrics, &mut json).unwrap();
            assert_bounds::<Metrics>(&json);
        }
        // Documents that take the generic tree: NaN, and an array value without its list.
        let nan = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":
            {"dataPoints":[{"asDouble":"NaN","attributes":[{"key":"k","value":{"stringValue":"v"}}]}]}}]}]}]}"#;
        assert_bounds::<Metrics>(nan.as_bytes());
        let omitted = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"arrayValue":{}},
            "attributes":[{"value":{"kvlistValue":{"values":[{"value":{"arrayValue":{}}}]}}}]}]}]}]}"#;
        assert_bounds::<Logs>(omitted.as_bytes());
    }
}
