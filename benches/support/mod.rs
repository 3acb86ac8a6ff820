//! Payloads and settings shared by the criterion benches.
#![allow(dead_code)]

use criterion::Throughput;
use sluice_loadgen::{Data, Shape, SignalArg, generate};

/// Items per request in every bench: the OTel testbed's usual 100 spans (or data points, or
/// log records), each with 10 attributes of 16-byte values.
pub const ITEMS: usize = 100;

pub fn payload(signal: SignalArg) -> Data {
    generate(signal, &Shape::default(), ITEMS, 0)
}

/// Throughput per iteration: items by default, bytes with `SLUICE_BENCH_THROUGHPUT=bytes`
/// (criterion reports one unit per benchmark).
pub fn throughput(items: usize, bytes: usize) -> Throughput {
    if std::env::var("SLUICE_BENCH_THROUGHPUT").is_ok_and(|v| v == "bytes") {
        Throughput::Bytes(bytes as u64)
    } else {
        Throughput::Elements(items as u64)
    }
}
