//! `sluice-loadgen`: OTLP load generator. See `sluice-loadgen help` and BENCHMARKS.md.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sluice_loadgen::{
    Compression, Config, Protocol, Shape, SignalArg, Stop, decode_rate, parse_duration,
    run_blocking, sink,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice-loadgen",
    version,
    about = "OTLP load generator: sends pre-built OTLP requests and reports throughput and latency"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send OTLP load to a receiver and report what it accepted.
    Run(RunArgs),
    /// Decode the same requests with sluice's protobuf decoder on this thread: the limit of
    /// a decoding collector on one core.
    DecodeRate(DecodeArgs),
    /// Serve an OTLP endpoint that answers OK without decoding (measures the generator alone).
    Sink(SinkArgs),
}

/// How each request looks.
#[derive(Args, Clone)]
struct ShapeArgs {
    /// Signal to send.
    #[arg(long, value_enum, default_value = "traces")]
    signal: SignalArg,
    /// Items (spans, metric data points, log records) per request.
    #[arg(long, default_value_t = 100)]
    items_per_request: usize,
    /// Attributes on every item.
    #[arg(long, default_value_t = 10)]
    attributes: usize,
    /// Length of every attribute value, in bytes.
    #[arg(long, default_value_t = 16)]
    value_size: usize,
    /// Resources per request (items are spread evenly over them).
    #[arg(long, default_value_t = 1)]
    resources: usize,
    /// Data points per metric (metrics only).
    #[arg(long, default_value_t = 10)]
    points_per_metric: usize,
    /// Length of each log record's body, in bytes (logs only).
    #[arg(long, default_value_t = 100)]
    body_size: usize,
}

impl ShapeArgs {
    fn shape(&self) -> Shape {
        Shape {
            attributes: self.attributes,
            value_size: self.value_size,
            resources: self.resources,
            points_per_metric: self.points_per_metric,
            body_size: self.body_size,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Receiver address, `host:port` (default: 127.0.0.1:4317 for gRPC, :4318 for HTTP).
    #[arg(long)]
    endpoint: Option<String>,
    /// Transport and encoding.
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,
    /// Request path (default `/v1/<signal>` for HTTP, the OTLP service method for gRPC).
    #[arg(long)]
    path: Option<String>,
    #[command(flatten)]
    shape: ShapeArgs,
    /// Fixed rate in items per second over all streams; without it, send as fast as the
    /// receiver answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Requests in flight at once: gRPC streams, or HTTP/1.1 connections.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// gRPC connections the streams are spread over.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to send (e.g. 10s, 500ms, 2m); ignored with --items.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Send exactly this many items, then stop (instead of --duration).
    #[arg(long)]
    items: Option<u64>,
    /// Send for this long first without counting (duration runs).
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    warmup: Duration,
    /// Body compression.
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    /// Distinct pre-built requests (different trace and span ids) sent in turn.
    #[arg(long, default_value_t = 16)]
    variants: usize,
    /// Give up on a request after this long (counted as refused: timeout).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    request_timeout: Duration,
    /// Runtime worker threads (1: single-threaded, best when pinned to one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct DecodeArgs {
    #[command(flatten)]
    shape: ShapeArgs,
    /// How long to decode.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    duration: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4317")]
    listen: String,
    /// Stop after this long (default: run until killed).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::DecodeRate(args) => {
            match decode_rate(
                args.shape.signal,
                &args.shape.shape(),
                args.shape.items_per_request,
                args.duration,
            ) {
                Ok(report) => {
                    print(&report, args.json);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            }
        }
        Command::Sink(args) => serve_sink(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let default_port = if args.protocol == Protocol::Grpc {
        4317
    } else {
        4318
    };
    let config = Config {
        endpoint: args
            .endpoint
            .unwrap_or_else(|| format!("127.0.0.1:{default_port}")),
        protocol: args.protocol,
        signal: args.shape.signal,
        path: args.path,
        items_per_request: args.shape.items_per_request,
        shape: args.shape.shape(),
        rate: args.rate,
        concurrency: args.concurrency,
        connections: args.connections,
        stop: match args.items {
            Some(n) => Stop::Items(n),
            None => Stop::After(args.duration),
        },
        warmup: args.warmup,
        compression: args.compression,
        variants: args.variants,
        request_timeout: args.request_timeout,
    };
    match run_blocking(config, args.threads) {
        Ok(report) => {
            print(&report, args.json);
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn serve_sink(args: SinkArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    runtime.block_on(async {
        let sink = match sink(&args.listen).await {
            Ok(s) => s,
            Err(e) => return fail(&e),
        };
        eprintln!("sink listening on {}", sink.address);
        match args.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        eprintln!("sink answered {} requests", sink.requests());
        ExitCode::SUCCESS
    })
}

fn print<R: serde::Serialize + std::fmt::Display>(report: &R, json: bool) {
    if json {
        match serde_json::to_string(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("cannot write the report as JSON: {e}"),
        }
    } else {
        println!("{report}");
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("sluice-loadgen: {e}");
    ExitCode::FAILURE
}
