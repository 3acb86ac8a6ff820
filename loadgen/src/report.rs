//! What a run measured, as text for people and JSON for scripts.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::{Compression, Protocol, Shape, SignalArg};
use crate::payload::PayloadInfo;

/// Requests and items refused with one status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub requests: u64,
    pub items: u64,
}

/// Request latency in microseconds, from writing the request to reading the whole answer.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// The outcome of one run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub protocol: Protocol,
    pub signal: SignalArg,
    /// `spans`, `metric_points` or `log_records`.
    pub item_name: &'static str,
    pub compression: Compression,
    pub items_per_request: usize,
    pub shape: Shape,
    pub concurrency: usize,
    /// Target items/s, if a fixed rate was asked for.
    pub target_rate: Option<f64>,
    pub payload: PayloadInfo,
    /// Time measured over (after the warm-up), in seconds.
    pub elapsed_secs: f64,
    /// Requests that got an answer or failed (the counted ones).
    pub requests: u64,
    /// Items in those requests.
    pub items_sent: u64,
    pub requests_accepted: u64,
    pub items_accepted: u64,
    /// Refusals by status: `http 413`, `grpc RESOURCE_EXHAUSTED`, `error: ...`, `timeout`.
    pub refused: BTreeMap<String, Refused>,
    /// Accepted items per second.
    pub items_per_sec: f64,
    /// Answered requests per second.
    pub requests_per_sec: f64,
    /// Latency of accepted requests.
    pub latency: Latency,
    /// CPU time the load generator itself used over the run (user + system), in seconds.
    pub cpu_secs: f64,
    /// Items sent per second of the generator's own CPU time: how fast one core of it goes.
    pub items_per_cpu_sec: f64,
}

impl Report {
    pub fn items_refused(&self) -> u64 {
        self.refused.values().map(|r| r.items).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let item = self.item_name;
        writeln!(
            f,
            "{} {}, {} {item}/request, {} attributes of {} bytes, {} resource(s), \
             concurrency {}, compression {}",
            self.protocol.name(),
            self.signal.name(),
            self.items_per_request,
            self.shape.attributes,
            self.shape.value_size,
            self.shape.resources,
            self.concurrency,
            self.compression.name(),
        )?;
        writeln!(
            f,
            "request size: {} bytes encoded, {} bytes on the wire",
            self.payload.encoded_bytes, self.payload.wire_bytes
        )?;
        writeln!(
            f,
            "elapsed {:.2} s: {} requests, {} {item} sent, {} accepted, {} refused",
            self.elapsed_secs,
            self.requests,
            self.items_sent,
            self.items_accepted,
            self.items_refused()
        )?;
        for (status, r) in &self.refused {
            writeln!(
                f,
                "  refused {status}: {} requests, {} {item}",
                r.requests, r.items
            )?;
        }
        writeln!(
            f,
            "throughput: {:.0} {item}/s, {:.0} requests/s{}",
            self.items_per_sec,
            self.requests_per_sec,
            match self.target_rate {
                Some(rate) => format!(" (target {rate:.0} {item}/s)"),
                None => String::new(),
            }
        )?;
        writeln!(
            f,
            "latency: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            self.latency.p50_us as f64 / 1000.0,
            self.latency.p99_us as f64 / 1000.0,
            self.latency.p999_us as f64 / 1000.0,
            self.latency.max_us as f64 / 1000.0
        )?;
        write!(
            f,
            "load generator CPU: {:.2} s ({:.0} {item} per CPU second)",
            self.cpu_secs, self.items_per_cpu_sec
        )
    }
}

/// CPU time (user + system) this process has used, in seconds, from `/proc/self/stat`.
/// The kernel reports it in USER_HZ ticks, which is 100 on every Linux architecture sluice
/// targets. `None` where `/proc` is missing.
pub fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are fixed.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}
