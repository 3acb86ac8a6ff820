//! `sluice-loadgen`: an OTLP load generator (gRPC, HTTP protobuf, HTTP JSON; traces, metrics,
//! logs) that builds its requests once and then only sends bytes, so the collector under test,
//! not the generator, is what runs out of CPU first.
//!
//! [`run`] drives one load run and returns a [`Report`]; [`decode_rate`] measures how fast
//! sluice's own protobuf decoder takes the same requests on one core; [`sink`] is an OTLP
//! endpoint that answers OK without decoding, to measure the generator alone.

mod client;
mod config;
mod decode;
mod error;
mod payload;
mod report;
mod sink;

pub use client::grpc_code_name;
pub use config::{Compression, Config, Encoding, Protocol, Shape, SignalArg, Stop};
pub use decode::{DecodeReport, decode_rate};
pub use error::{LoadgenError, parse_duration};
pub use payload::{Data, PayloadInfo, generate};
pub use report::{Latency, Refused, Report, process_cpu_secs};
pub use sink::{Sink, sink};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;

use client::{Answer, Connection, Target};
use payload::Prepared;

/// The requests of a run: full-size variants sent in turn, and a smaller last one when an
/// item count does not divide into whole requests.
struct Requests {
    variants: Vec<Prepared>,
    tail: Option<Prepared>,
}

impl Requests {
    fn build(config: &Config) -> Result<Requests, LoadgenError> {
        let grpc = config.protocol == Protocol::Grpc;
        let encoding = config.protocol.encoding();
        let build = |items: usize, variant: u64| {
            payload::prepare(
                config.signal,
                &config.shape,
                items,
                variant,
                encoding,
                config.compression,
                grpc,
            )
        };
        let variants = (0..config.variants as u64)
            .map(|v| build(config.items_per_request, v))
            .collect::<Result<Vec<_>, _>>()?;
        let tail = match config.stop {
            Stop::Items(total) => {
                let rest = (total % config.items_per_request as u64) as usize;
                (rest > 0)
                    .then(|| build(rest, config.variants as u64))
                    .transpose()?
            }
            Stop::After(_) => None,
        };
        Ok(Requests { variants, tail })
    }
}

/// The schedule every stream draws its next request from.
struct Plan {
    next: AtomicU64,
    /// Requests to send in all (item-count runs).
    total: Option<u64>,
    start: Instant,
    measure_from: Instant,
    deadline: Option<Instant>,
    /// Time between request starts for a fixed rate.
    interval: Option<Duration>,
}

/// What one stream counted.
struct Tally {
    requests: u64,
    items_sent: u64,
    requests_accepted: u64,
    items_accepted: u64,
    refused: BTreeMap<String, Refused>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            requests: 0,
            items_sent: 0,
            requests_accepted: 0,
            items_accepted: 0,
            refused: BTreeMap::new(),
            // 1 µs to 10 min at 3 significant digits; values above are clamped.
            latency: {
                #[allow(
                    clippy::expect_used,
                    reason = "constant bounds, valid by hdrhistogram's rules"
                )]
                Histogram::new_with_bounds(1, 600_000_000, 3)
                    .expect("constant histogram bounds are valid")
            },
        }
    }

    fn refuse(&mut self, label: String, items: u64) {
        let r = self.refused.entry(label).or_default();
        r.requests += 1;
        r.items += items;
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.items_sent += other.items_sent;
        self.requests_accepted += other.requests_accepted;
        self.items_accepted += other.items_accepted;
        for (label, r) in other.refused {
            let mine = self.refused.entry(label).or_default();
            mine.requests += r.requests;
            mine.items += r.items;
        }
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }
}

/// Runs one load run against the configured receiver and reports what happened. Fails only
/// when the settings are invalid, the requests cannot be built, or the first connection
/// cannot be opened; refused requests are counted in the report.
pub async fn run(config: Config) -> Result<Report, LoadgenError> {
    config.validate()?;
    let requests = Arc::new(Requests::build(&config)?);
    let target = Arc::new(Target::new(&config).map_err(LoadgenError::Config)?);
    let first = client::connect(&target)
        .await
        .map_err(|reason| LoadgenError::Connect {
            endpoint: config.endpoint.clone(),
            reason,
        })?;

    // gRPC streams share a few connections; HTTP/1.1 streams open their own as they start.
    let mut shared = vec![first];
    if config.protocol == Protocol::Grpc {
        for _ in 1..config.connections.min(config.concurrency) {
            let c = client::connect(&target)
                .await
                .map_err(|reason| LoadgenError::Connect {
                    endpoint: config.endpoint.clone(),
                    reason,
                })?;
            shared.push(c);
        }
    }

    let total = match config.stop {
        Stop::Items(items) => Some(items.div_ceil(config.items_per_request as u64)),
        Stop::After(_) => None,
    };
    let interval = config
        .rate
        .map(|rate| Duration::from_secs_f64(config.items_per_request as f64 / rate));
    let start = Instant::now();
    let (measure_from, deadline) = match config.stop {
        Stop::After(d) => (start + config.warmup, Some(start + config.warmup + d)),
        Stop::Items(_) => (start, None),
    };
    let plan = Arc::new(Plan {
        next: AtomicU64::new(0),
        total,
        start,
        measure_from,
        deadline,
        interval,
    });
    // CPU time is read when counting starts, so the warm-up's share is left out.
    let cpu_at_start = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        process_cpu_secs()
    });

    let mut streams = Vec::with_capacity(config.concurrency);
    for i in 0..config.concurrency {
        let connection = if config.protocol == Protocol::Grpc {
            shared[i % shared.len()].share()
        } else if i == 0 {
            shared.pop()
        } else {
            None
        };
        let plan = plan.clone();
        let requests = requests.clone();
        let target = target.clone();
        let timeout = config.request_timeout;
        streams.push(tokio::spawn(stream(
            connection, plan, requests, target, timeout,
        )));
    }
    let mut tally = Tally::new();
    for s in streams {
        match s.await {
            Ok(t) => tally.merge(t),
            Err(e) => {
                return Err(LoadgenError::Task(e.to_string()));
            }
        }
    }
    let elapsed = Instant::now()
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let cpu_before = cpu_at_start.await.ok().flatten();
    let cpu_secs = match (cpu_before, process_cpu_secs()) {
        (Some(a), Some(b)) => (b - a).max(0.0),
        _ => 0.0,
    };
    let per_sec = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let full = &requests.variants[0];
    Ok(Report {
        protocol: config.protocol,
        signal: config.signal,
        item_name: config.signal.item_name(),
        compression: config.compression,
        items_per_request: config.items_per_request,
        shape: config.shape.clone(),
        concurrency: config.concurrency,
        target_rate: config.rate,
        payload: PayloadInfo {
            encoded_bytes: full.encoded_len,
            wire_bytes: full.body.len(),
        },
        elapsed_secs: elapsed,
        requests: tally.requests,
        items_sent: tally.items_sent,
        requests_accepted: tally.requests_accepted,
        items_accepted: tally.items_accepted,
        refused: tally.refused,
        items_per_sec: per_sec(tally.items_accepted),
        requests_per_sec: per_sec(tally.requests),
        latency: Latency::from_histogram(&tally.latency),
        cpu_secs,
        items_per_cpu_sec: if cpu_secs > 0.0 {
            tally.items_sent as f64 / cpu_secs
        } else {
            0.0
        },
    })
}

/// [`run`] on a runtime of its own with `threads` worker threads (1: a single-threaded
/// runtime, the cheapest when the generator is pinned to one core).
pub fn run_blocking(config: Config, threads: usize) -> Result<Report, LoadgenError> {
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .map_err(LoadgenError::Runtime)?;
    runtime.block_on(run(config))
}

/// One stream: takes the next request from the plan, sends it, counts the answer.
async fn stream(
    mut connection: Option<Connection>,
    plan: Arc<Plan>,
    requests: Arc<Requests>,
    target: Arc<Target>,
    timeout: Duration,
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let index = plan.next.fetch_add(1, Ordering::Relaxed);
        if plan.total.is_some_and(|total| index >= total) {
            break;
        }
        // At a fixed rate, every request due before the deadline is sent even when it starts
        // late, so the count is set by the schedule; otherwise the clock decides.
        match plan.interval {
            Some(interval) => {
                let due = plan.start + interval.mul_f64(index as f64);
                if plan.deadline.is_some_and(|d| due >= d) {
                    break;
                }
                tokio::time::sleep_until(due).await;
            }
            None => {
                if plan.deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
            }
        }
        let now = Instant::now();
        let last = plan.total.is_some_and(|total| index + 1 == total);
        let request = match (&requests.tail, last) {
            (Some(tail), true) => tail,
            _ => &requests.variants[index as usize % requests.variants.len()],
        };
        let counted = now >= plan.measure_from;
        let answer = match connection.as_mut() {
            Some(c) => {
                match tokio::time::timeout(timeout, client::send(c, &target, request.body.clone()))
                    .await
                {
                    Ok(Ok(answer)) => Ok(answer),
                    Ok(Err(e)) => Err(format!("error: {}", short(&e))),
                    Err(_) => Err("timeout".to_string()),
                }
            }
            None => match client::connect(&target).await {
                Ok(mut c) => {
                    let sent = tokio::time::timeout(
                        timeout,
                        client::send(&mut c, &target, request.body.clone()),
                    )
                    .await;
                    connection = Some(c);
                    match sent {
                        Ok(Ok(answer)) => Ok(answer),
                        Ok(Err(e)) => Err(format!("error: {}", short(&e))),
                        Err(_) => Err("timeout".to_string()),
                    }
                }
                Err(e) => {
                    // Nothing listens: don't spin on reconnects.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(format!("connect error: {}", short(&e)))
                }
            },
        };
        let latency = now.elapsed();
        let refused_http =
            target.protocol != Protocol::Grpc && matches!(answer, Ok(Answer::Refused(_)));
        if answer.is_err() || refused_http {
            // The connection may be broken, a request abandoned on it, or (HTTP) closed by a
            // server that refused without reading the body: start afresh.
            connection = None;
        }
        if !counted {
            continue;
        }
        tally.requests += 1;
        tally.items_sent += request.items;
        match answer {
            Ok(Answer::Accepted) => {
                tally.requests_accepted += 1;
                tally.items_accepted += request.items;
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                tally.latency.saturating_record(us);
            }
            Ok(Answer::Refused(label)) => tally.refuse(label, request.items),
            Err(label) => tally.refuse(label, request.items),
        }
    }
    tally
}

/// Error texts become report keys: keep them short and free of per-request detail.
fn short(e: &str) -> String {
    let mut s: String = e.chars().take(80).collect();
    if let Some(i) = s.find(" (") {
        s.truncate(i);
    }
    s
}
