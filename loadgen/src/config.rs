//! What a load run does: the transport, the data's shape, the pace and when to stop.

use std::time::Duration;

use serde::Serialize;

use crate::error::LoadgenError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// OTLP/gRPC (HTTP/2 without TLS).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (HTTP/1.1 keep-alive).
    HttpProto,
    /// OTLP/HTTP with JSON bodies (HTTP/1.1 keep-alive).
    HttpJson,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProto => "http-proto",
            Protocol::HttpJson => "http-json",
        }
    }

    pub fn encoding(self) -> Encoding {
        match self {
            Protocol::Grpc | Protocol::HttpProto => Encoding::Proto,
            Protocol::HttpJson => Encoding::Json,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Proto,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SignalArg {
    Traces,
    Metrics,
    Logs,
}

impl SignalArg {
    pub fn name(self) -> &'static str {
        match self {
            SignalArg::Traces => "traces",
            SignalArg::Metrics => "metrics",
            SignalArg::Logs => "logs",
        }
    }

    /// The word the report and the collector's metrics use for one item.
    pub fn item_name(self) -> &'static str {
        match self {
            SignalArg::Traces => "spans",
            SignalArg::Metrics => "metric_points",
            SignalArg::Logs => "log_records",
        }
    }

    pub fn http_path(self) -> &'static str {
        match self {
            SignalArg::Traces => "/v1/traces",
            SignalArg::Metrics => "/v1/metrics",
            SignalArg::Logs => "/v1/logs",
        }
    }

    pub fn grpc_path(self) -> &'static str {
        match self {
            SignalArg::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            SignalArg::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            SignalArg::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn name(self) -> &'static str {
        self.header().unwrap_or("none")
    }

    /// The `Content-Encoding` / `grpc-encoding` value, if any.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// How each item looks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shape {
    /// Attributes on every span, data point or log record.
    pub attributes: usize,
    /// Length of every attribute's string value, in bytes.
    pub value_size: usize,
    /// Resources per request; the items are spread evenly over them.
    pub resources: usize,
    /// Data points per metric (metrics only).
    pub points_per_metric: usize,
    /// Length of a log record's string body, in bytes (logs only).
    pub body_size: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            attributes: 10,
            value_size: 16,
            resources: 1,
            points_per_metric: 10,
            body_size: 100,
        }
    }
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this long (requests in flight at the end still complete and count).
    After(Duration),
    /// After this many items have been sent (the last request may be smaller).
    Items(u64),
}

/// One load run.
#[derive(Clone, Debug)]
pub struct Config {
    /// `host:port` of the OTLP receiver (an `http://` prefix is accepted).
    pub endpoint: String,
    pub protocol: Protocol,
    pub signal: SignalArg,
    /// Overrides the request path (`/v1/traces`, ... or the gRPC method path).
    pub path: Option<String>,
    pub items_per_request: usize,
    pub shape: Shape,
    /// Items per second over all streams; `None` sends as fast as the receiver answers.
    pub rate: Option<f64>,
    /// Requests in flight at once (one stream each for gRPC, one connection each for HTTP).
    pub concurrency: usize,
    /// gRPC connections the streams are spread over (HTTP uses one per stream).
    pub connections: usize,
    pub stop: Stop,
    /// Requests started in this first stretch are sent but not counted (duration runs only).
    pub warmup: Duration,
    pub compression: Compression,
    /// Distinct pre-built requests (different trace/span ids) sent in turn.
    pub variants: usize,
    /// Give up on a request after this long (counted as refused, `timeout`).
    pub request_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "127.0.0.1:4317".into(),
            protocol: Protocol::Grpc,
            signal: SignalArg::Traces,
            path: None,
            items_per_request: 100,
            shape: Shape::default(),
            rate: None,
            concurrency: 8,
            connections: 1,
            stop: Stop::After(Duration::from_secs(10)),
            warmup: Duration::ZERO,
            compression: Compression::None,
            variants: 16,
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), LoadgenError> {
        let bad = |m: &str| Err(LoadgenError::Config(m.to_string()));
        if self.items_per_request == 0 {
            return bad("items per request must be at least 1");
        }
        if self.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        if self.connections == 0 {
            return bad("connections must be at least 1");
        }
        if self.variants == 0 {
            return bad("variants must be at least 1");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return bad("rate must be a positive number of items per second");
        }
        if self.stop == Stop::Items(0) {
            return bad("the item count must be at least 1");
        }
        Ok(())
    }

    /// `host:port` without a scheme.
    pub fn authority(&self) -> &str {
        let e = self.endpoint.trim_end_matches('/');
        e.strip_prefix("http://").unwrap_or(e)
    }

    pub fn request_path(&self) -> &str {
        match &self.path {
            Some(p) => p,
            None if self.protocol == Protocol::Grpc => self.signal.grpc_path(),
            None => self.signal.http_path(),
        }
    }
}
