//! The physical limit of a decoding collector: how fast sluice's own protobuf decoder takes
//! the load generator's requests on one core.

use std::time::{Duration, Instant};

use serde::Serialize;
use sluice_pipeline::codec::decode_proto;
use sluice_pipeline::signal::item_count;
use sluice_pipeline::{Logs, Metrics, Signal, Traces};

use crate::config::{Shape, SignalArg};
use crate::error::LoadgenError;
use crate::payload::generate;

#[derive(Clone, Debug, Serialize)]
pub struct DecodeReport {
    pub signal: SignalArg,
    pub item_name: &'static str,
    pub items_per_request: usize,
    pub shape: Shape,
    pub request_bytes: usize,
    pub decodes: u64,
    pub elapsed_secs: f64,
    pub items_per_sec: f64,
    pub bytes_per_sec: f64,
}

impl std::fmt::Display for DecodeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} requests of {} bytes ({} {}) decoded in {:.2} s: {:.0} {}/s, {:.1} MiB/s",
            self.signal.name(),
            self.decodes,
            self.request_bytes,
            self.items_per_request,
            self.item_name,
            self.elapsed_secs,
            self.items_per_sec,
            self.item_name,
            self.bytes_per_sec / (1024.0 * 1024.0)
        )
    }
}

/// Decodes (and drops) one OTLP protobuf request of the given shape on this thread, over and
/// over for `duration`, with the same decoder sluice's receivers use.
pub fn decode_rate(
    signal: SignalArg,
    shape: &Shape,
    items_per_request: usize,
    duration: Duration,
) -> Result<DecodeReport, LoadgenError> {
    if items_per_request == 0 {
        return Err(LoadgenError::Config(
            "items per request must be at least 1".into(),
        ));
    }
    let bytes = generate(signal, shape, items_per_request, 0).encode_proto();
    let (decodes, elapsed) = match signal {
        SignalArg::Traces => spin::<Traces>(&bytes, duration)?,
        SignalArg::Metrics => spin::<Metrics>(&bytes, duration)?,
        SignalArg::Logs => spin::<Logs>(&bytes, duration)?,
    };
    let secs = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(DecodeReport {
        signal,
        item_name: signal.item_name(),
        items_per_request,
        shape: shape.clone(),
        request_bytes: bytes.len(),
        decodes,
        elapsed_secs: secs,
        items_per_sec: (decodes * items_per_request as u64) as f64 / secs,
        bytes_per_sec: (decodes * bytes.len() as u64) as f64 / secs,
    })
}

fn spin<S: Signal>(bytes: &[u8], duration: Duration) -> Result<(u64, Duration), LoadgenError> {
    let start = Instant::now();
    let mut decodes = 0u64;
    loop {
        // Checking the clock every few decodes keeps its cost out of the figure.
        for _ in 0..16 {
            let resources = decode_proto::<S>(std::hint::black_box(bytes))
                .map_err(|e| LoadgenError::Payload(e.to_string()))?;
            std::hint::black_box(item_count::<S>(&resources));
            decodes += 1;
        }
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return Ok((decodes, elapsed));
        }
    }
}
