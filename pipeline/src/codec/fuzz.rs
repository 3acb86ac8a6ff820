//! A short fuzz run of the decoders, part of every `cargo test`: valid random requests of
//! every signal, damaged the ways real damage happens (flipped bits, lost and repeated bytes,
//! cuts, spliced-in varints and lengths, deep nesting), go through the protobuf scan, `prost`
//! decoding, cutting and the OTLP/JSON decoder. Nothing may panic, and the scan's promise
//! must hold: whatever it accepts decodes, and cuts into pieces that it accepts again.
//!
//! `SLUICE_FUZZ_ITERATIONS` sets the rounds per signal (default 500: seconds in a debug build);
//! `SLUICE_FUZZ_SEED` picks the run (default a fixed seed, so the suite is the same on every
//! machine; set a new one to explore). The seed is printed first, so even a crash that aborts
//! the process can be replayed.

use fastrand::Rng;
use prost::Message;

use super::random_requests;
use super::{cut_request, decode_json, decode_proto, encode_json, json_decoded_bound, scan};
use crate::signal::{Logs, Metrics, Signal, SignalKind, Traces};

fn iterations() -> usize {
    std::env::var("SLUICE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

fn seed() -> u64 {
    std::env::var("SLUICE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_c0de)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Damages `bytes` in one to four ways.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..=4) {
        let len = bytes.len();
        let at = rng.usize(..=len);
        match rng.u8(..9) {
            0 if len > 0 => {
                let i = rng.usize(..len);
                bytes[i] ^= 1 << rng.u8(..8);
            }
            1 if len > 0 => {
                let i = rng.usize(..len);
                bytes[i] = rng.u8(..);
            }
            2 => bytes.truncate(at),
            3 if at < len => {
                let end = (at + rng.usize(1..=16)).min(len);
                bytes.drain(at..end);
            }
            4 if at < len => {
                // A run of bytes repeated, as a retransmission or a copy bug makes.
                let end = (at + rng.usize(1..=32)).min(len);
                let run: Vec<u8> = bytes[at..end].to_vec();
                bytes.splice(at..at, run);
            }
            5 => {
                // A length or tag with an extreme value.
                let mut v = Vec::new();
                let value = match rng.u8(..4) {
                    0 => u64::MAX,
                    1 => u32::MAX as u64,
                    2 => rng.u64(..1 << 20),
                    _ => 0,
                };
                varint(value, &mut v);
                bytes.splice(at..at, v);
            }
            6 => {
                // A field of a random number and wire type.
                let mut v = Vec::new();
                varint(rng.u64(..1 << 32) << 3 | rng.u64(..8), &mut v);
                bytes.splice(at..at, v);
            }
            7 => {
                // A nested message chain deeper than decoders allow.
                // Each 0x0a opens field 1 (length-delimited) of the message before it.
                let chain = vec![0x0a; rng.usize(1..200)];
                bytes.splice(at..at, chain);
            }
            _ => {
                let extra: Vec<u8> = (0..rng.usize(1..8)).map(|_| rng.u8(..)).collect();
                bytes.splice(at..at, extra);
            }
        }
    }
}

fn check_protobuf<S: Signal>(bytes: &[u8], rng: &mut Rng) {
    let scanned = scan(S::KIND, bytes);
    let decoded = decode_proto::<S>(bytes);
    let Ok(scanned) = scanned else { return };
    let resources = match decoded {
        Ok(r) => r,
        Err(e) => panic!("the scan accepted bytes that do not decode: {e}"),
    };
    assert_eq!(scanned.resources, resources.len());
    let max_items = rng.usize(1..64);
    let max_bytes = rng.usize(1..=bytes.len().max(1));
    let Some(pieces) = cut_request(S::KIND, bytes, max_items, max_bytes) else {
        panic!("bytes the scan accepted could not be cut");
    };
    let mut items = 0;
    for piece in &pieces {
        match scan(S::KIND, piece) {
            Ok(s) => items += s.items,
            Err(e) => panic!("a piece of an accepted request does not scan: {e}"),
        }
    }
    assert_eq!(items, scanned.items, "cutting lost or added items");
}

fn check_json<S: Signal>(json: &[u8]) {
    let _ = json_decoded_bound(S::KIND, json);
    if let Ok(resources) = decode_json::<S>(json) {
        // What the JSON decoder accepts encodes again, and that encoding decodes to the same.
        let mut again = Vec::new();
        if encode_json::<S>(&resources, &mut again).is_ok() {
            match decode_json::<S>(&again) {
                Ok(back) => assert_eq!(back.len(), resources.len(), "resources changed"),
                Err(e) => panic!("sluice's own OTLP/JSON does not decode: {e}"),
            }
        }
    }
}

fn run<S: Signal>(make: impl Fn(&mut Rng) -> Vec<u8>) {
    let seed = seed();
    eprintln!("{:?} decoders: SLUICE_FUZZ_SEED={seed}", S::KIND);
    let mut rng = Rng::with_seed(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..iterations() {
            let valid = make(&mut rng);
            check_protobuf::<S>(&valid, &mut rng);
            let mut damaged = valid.clone();
            mutate(&mut rng, &mut damaged);
            check_protobuf::<S>(&damaged, &mut rng);

            let Ok(resources) = decode_proto::<S>(&valid) else {
                continue;
            };
            let mut json = Vec::new();
            if encode_json::<S>(&resources, &mut json).is_err() {
                continue;
            }
            check_json::<S>(&json);
            mutate(&mut rng, &mut json);
            check_json::<S>(&json);
        }
    }));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!(
            "{:?} decoders failed (replay with SLUICE_FUZZ_SEED={seed}): {message}",
            S::KIND
        );
    }
}

#[test]
fn traces_decoders_survive_damaged_requests() {
    run::<Traces>(|rng| random_requests::traces(rng).encode_to_vec());
}

#[test]
fn metrics_decoders_survive_damaged_requests() {
    run::<Metrics>(|rng| random_requests::metrics(rng).encode_to_vec());
}

#[test]
fn logs_decoders_survive_damaged_requests() {
    run::<Logs>(|rng| random_requests::logs(rng).encode_to_vec());
}

/// JSON nested far deeper than any OTLP document is refused, not a stack overflow.
#[test]
fn deeply_nested_json_is_refused() {
    for depth in [64, 1_000, 100_000] {
        let mut json =
            String::from("{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":");
        for _ in 0..depth {
            json.push_str("{\"arrayValue\":{\"values\":[");
        }
        for _ in 0..depth {
            json.push_str("]}}");
        }
        json.push_str("}]}]}]}");
        let _ = json_decoded_bound(SignalKind::Logs, json.as_bytes());
        let decoded = decode_json::<Logs>(json.as_bytes());
        if depth >= 1_000 {
            assert!(decoded.is_err(), "{depth} levels were accepted");
        }
    }
}
