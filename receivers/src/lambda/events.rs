//! Telemetry API events (schema 2022-12-13) to OTLP logs, metrics and spans.

use std::collections::HashMap;

use serde_json::Value;
use sluice_pipeline::proto::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value};
use sluice_pipeline::proto::logs::v1::{LogRecord, SeverityNumber};
use sluice_pipeline::proto::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, metric,
    number_data_point,
};
use sluice_pipeline::proto::trace::v1::{Span, Status, span, status};

use super::runtime_api::Milestone;
use super::time::parse_rfc3339;

const NANOS_PER_MS: f64 = 1_000_000.0;
const BYTES_PER_MB: i64 = 1024 * 1024;
/// Buckets for durations in seconds, from the semantic conventions' advice for `faas.*`.
const SECONDS_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
const MEMORY_BOUNDS: &[f64] = &[
    16_777_216.0,
    33_554_432.0,
    67_108_864.0,
    134_217_728.0,
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
    2_147_483_648.0,
    4_294_967_296.0,
    10_737_418_240.0,
];

/// What one pushed batch turned into.
#[derive(Default)]
pub struct Mapped {
    pub logs: Vec<LogRecord>,
    pub metrics: Vec<Metric>,
    pub spans: Vec<Span>,
    /// Milestones to report once the data above is in the pipeline.
    pub milestones: Vec<(Milestone, String)>,
}

/// What must be remembered between pushes.
#[derive(Default)]
pub struct State {
    /// The invocation running now: text log lines carry no request id of their own.
    current_request: Option<String>,
    init_start: Option<u64>,
    /// An init happened and no invocation has been reported since.
    cold: bool,
    /// `platform.start` time and trace context per invocation, until its `runtimeDone`.
    starts: HashMap<String, (u64, Option<TraceContext>)>,
    /// From `initStart`; the resource picks them up.
    pub instance_id: Option<String>,
    pub max_memory_mb: Option<i64>,
    ids: IdSource,
}

#[derive(Clone, Debug, PartialEq)]
struct TraceContext {
    trace_id: Vec<u8>,
    parent_id: Vec<u8>,
    span_id: Option<Vec<u8>>,
    sampled: bool,
}

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn string(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn json_to_any(value: &Value) -> any_value::Value {
    match value {
        Value::Null => any_value::Value::StringValue(String::new()),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => any_value::Value::StringValue(s.clone()),
        Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|v| AnyValue {
                    value: Some(json_to_any(v)),
                })
                .collect(),
        }),
        Value::Object(map) => any_value::Value::KvlistValue(KeyValueList {
            values: map.iter().map(|(k, v)| kv(k, json_to_any(v))).collect(),
        }),
    }
}

fn severity(level: &str) -> (SeverityNumber, &'static str) {
    match level.to_ascii_uppercase().as_str() {
        "TRACE" => (SeverityNumber::Trace, "TRACE"),
        "DEBUG" => (SeverityNumber::Debug, "DEBUG"),
        "INFO" => (SeverityNumber::Info, "INFO"),
        "WARN" | "WARNING" => (SeverityNumber::Warn, "WARN"),
        "ERROR" => (SeverityNumber::Error, "ERROR"),
        "FATAL" | "CRITICAL" => (SeverityNumber::Fatal, "FATAL"),
        _ => (SeverityNumber::Unspecified, ""),
    }
}

fn ms(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
        .filter(|x| x.is_finite() && *x >= 0.0)
}

fn ms_to_nanos(ms: f64) -> u64 {
    (ms * NANOS_PER_MS) as u64
}

fn str_of<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record.get(key).and_then(Value::as_str)
}

/// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`.
fn parse_xray(value: &str) -> Option<TraceContext> {
    let mut root = None;
    let mut parent = None;
    let mut sampled = false;
    for part in value.split(';') {
        match part.trim().split_once('=') {
            Some(("Root", v)) => root = Some(v),
            Some(("Parent", v)) => parent = Some(v),
            Some(("Sampled", v)) => sampled = v == "1",
            _ => {}
        }
    }
    let mut pieces = root?.split('-');
    if pieces.next()? != "1" {
        return None;
    }
    let trace_id = hex(&format!("{}{}", pieces.next()?, pieces.next()?), 16)?;
    Some(TraceContext {
        trace_id,
        parent_id: parent.and_then(|p| hex(p, 8)).unwrap_or_default(),
        span_id: None,
        sampled,
    })
}

fn hex(text: &str, bytes: usize) -> Option<Vec<u8>> {
    if text.len() != bytes * 2 {
        return None;
    }
    let out: Option<Vec<u8>> = (0..bytes)
        .map(|i| u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect();
    out.filter(|v| v.iter().any(|b| *b != 0))
}

fn trace_context(record: &Value) -> Option<TraceContext> {
    let tracing = record.get("tracing")?;
    if str_of(tracing, "type") != Some("X-Amzn-Trace-Id") {
        return None;
    }
    let mut ctx = parse_xray(str_of(tracing, "value")?)?;
    ctx.span_id = str_of(tracing, "spanId").and_then(|s| hex(s, 8));
    Some(ctx)
}

/// Span and trace ids for spans without a given context; uniqueness is what matters here.
#[derive(Default)]
struct IdSource(u64);

impl IdSource {
    fn next(&mut self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        if self.0 == 0 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            self.0 = h.finish() | 1;
        }
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).max(1)
    }
    fn span_id(&mut self) -> Vec<u8> {
        self.next().to_be_bytes().to_vec()
    }
    fn trace_id(&mut self) -> Vec<u8> {
        let mut id = self.span_id();
        id.extend(self.span_id());
        id
    }
}

fn histogram(
    name: &str,
    description: &str,
    unit: &str,
    value: f64,
    bounds: &[f64],
    time: u64,
    attributes: Vec<KeyValue>,
) -> Metric {
    let mut bucket_counts = vec![0u64; bounds.len() + 1];
    let index = bounds
        .iter()
        .position(|b| value <= *b)
        .unwrap_or(bounds.len());
    bucket_counts[index] = 1;
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes,
                time_unix_nano: time,
                count: 1,
                sum: Some(value),
                bucket_counts,
                explicit_bounds: bounds.to_vec(),
                min: Some(value),
                max: Some(value),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        ..Default::default()
    }
}

fn counter(
    name: &str,
    description: &str,
    unit: &str,
    value: i64,
    time: u64,
    attributes: Vec<KeyValue>,
) -> Metric {
    Metric {
        name: name.into(),
        description: description.into(),
        unit: unit.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                attributes,
                time_unix_nano: time,
                value: Some(number_data_point::Value::AsInt(value)),
                ..Default::default()
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

impl State {
    /// Maps one pushed batch (a JSON array of events). Events it does not understand are
    /// skipped: the Telemetry API adds types over time.
    pub fn map(&mut self, events: &[Value]) -> Mapped {
        let mut out = Mapped::default();
        for event in events {
            let Some(kind) = str_of(event, "type") else {
                continue;
            };
            let time = str_of(event, "time").and_then(parse_rfc3339).unwrap_or(0);
            let record = event.get("record").unwrap_or(&Value::Null);
            match kind {
                "function" | "extension" => out.logs.push(self.log(kind, time, record)),
                "platform.initStart" => {
                    self.init_start = Some(time);
                    self.cold = true;
                    if let Some(id) = str_of(record, "instanceId") {
                        self.instance_id = Some(id.to_string());
                    }
                    if let Some(mb) = record.get("instanceMaxMemory").and_then(Value::as_i64) {
                        self.max_memory_mb = Some(mb);
                    }
                }
                "platform.initRuntimeDone" => out.spans.push(self.init_span(time, record)),
                "platform.initReport" => {
                    if let Some(d) = ms(record.get("metrics").and_then(|m| m.get("durationMs"))) {
                        out.metrics.push(histogram(
                            "faas.init_duration",
                            "Measures the duration of the function's initialization",
                            "s",
                            d / 1000.0,
                            SECONDS_BOUNDS,
                            time,
                            Vec::new(),
                        ));
                    }
                }
                "platform.start" => {
                    if let Some(id) = str_of(record, "requestId") {
                        self.current_request = Some(id.to_string());
                        if self.starts.len() > 64 {
                            // Starts whose runtimeDone never came; keep the map bounded.
                            self.starts.clear();
                        }
                        self.starts
                            .insert(id.to_string(), (time, trace_context(record)));
                    }
                }
                "platform.runtimeDone" => {
                    if let Some(id) = str_of(record, "requestId") {
                        out.spans.extend(self.invocation_spans(id, time, record));
                        out.milestones
                            .push((Milestone::RuntimeDone, id.to_string()));
                    }
                }
                "platform.report" => {
                    if let Some(id) = str_of(record, "requestId") {
                        out.metrics.extend(self.report(id, time, record));
                        out.milestones.push((Milestone::Report, id.to_string()));
                    }
                }
                "platform.logsDropped" => {
                    let dropped = record
                        .get("droppedRecords")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let reason =
                        str_of(record, "reason").unwrap_or("the Telemetry API dropped records");
                    out.logs.push(LogRecord {
                        time_unix_nano: time,
                        observed_time_unix_nano: time,
                        severity_number: SeverityNumber::Warn as i32,
                        severity_text: "WARN".into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue(reason.into())),
                        }),
                        attributes: vec![
                            string("event.name", "aws.lambda.logs_dropped"),
                            kv(
                                "aws.lambda.dropped_records",
                                any_value::Value::IntValue(dropped),
                            ),
                            kv(
                                "aws.lambda.dropped_bytes",
                                any_value::Value::IntValue(
                                    record
                                        .get("droppedBytes")
                                        .and_then(Value::as_i64)
                                        .unwrap_or(0),
                                ),
                            ),
                        ],
                        ..Default::default()
                    });
                    out.metrics.push(counter(
                        "aws.lambda.logs_dropped",
                        "Log records the Telemetry API dropped because the extension could not keep up",
                        "{record}",
                        dropped.max(0),
                        time,
                        Vec::new(),
                    ));
                }
                _ => {}
            }
        }
        out
    }

    fn log(&self, kind: &str, time: u64, record: &Value) -> LogRecord {
        let mut log = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            attributes: vec![string("aws.lambda.log.source", kind)],
            ..Default::default()
        };
        let mut request_id = self.current_request.clone();
        match record {
            Value::String(line) => {
                log.body = Some(AnyValue {
                    value: Some(any_value::Value::StringValue(
                        line.trim_end_matches('\n').into(),
                    )),
                });
            }
            Value::Object(fields) => {
                for (key, value) in fields {
                    match (key.as_str(), value) {
                        ("level", Value::String(level)) => {
                            let (number, text) = severity(level);
                            log.severity_number = number as i32;
                            log.severity_text = if text.is_empty() {
                                level.clone()
                            } else {
                                text.into()
                            };
                        }
                        ("message", v) => {
                            log.body = Some(AnyValue {
                                value: Some(json_to_any(v)),
                            })
                        }
                        ("requestId", Value::String(id)) => request_id = Some(id.clone()),
                        ("timestamp", Value::String(ts)) => {
                            if let Some(t) = parse_rfc3339(ts) {
                                log.time_unix_nano = t;
                            }
                        }
                        (k, v) => log.attributes.push(kv(k, json_to_any(v))),
                    }
                }
            }
            other => {
                log.body = Some(AnyValue {
                    value: Some(json_to_any(other)),
                })
            }
        }
        if let Some(id) = request_id {
            log.attributes.push(string("faas.invocation_id", &id));
        }
        log
    }

    fn init_span(&mut self, time: u64, record: &Value) -> Span {
        let start = self.init_start.take().unwrap_or(time);
        let ok = matches!(str_of(record, "status"), None | Some("success"));
        let mut attributes = vec![kv("faas.coldstart", any_value::Value::BoolValue(true))];
        if let Some(t) = str_of(record, "initializationType") {
            attributes.push(string("aws.lambda.initialization_type", t));
        }
        Span {
            trace_id: self.ids.trace_id(),
            span_id: self.ids.span_id(),
            name: "init".into(),
            kind: span::SpanKind::Internal as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: time.max(start),
            attributes,
            status: Some(span_status(ok, record)),
            ..Default::default()
        }
    }

    fn invocation_spans(&mut self, id: &str, end: u64, record: &Value) -> Vec<Span> {
        let metrics = record.get("metrics");
        let (start, ctx) = match self.starts.remove(id) {
            Some(found) => found,
            None => {
                let duration = ms(metrics.and_then(|m| m.get("durationMs"))).unwrap_or(0.0);
                (end.saturating_sub(ms_to_nanos(duration)), None)
            }
        };
        let ctx = ctx.or_else(|| trace_context(record));
        let ok = matches!(str_of(record, "status"), None | Some("success"));
        let (trace_id, parent, span_id, flags) = match &ctx {
            Some(c) => (
                c.trace_id.clone(),
                c.parent_id.clone(),
                c.span_id.clone().unwrap_or_else(|| self.ids.span_id()),
                u32::from(c.sampled),
            ),
            None => (self.ids.trace_id(), Vec::new(), self.ids.span_id(), 0),
        };
        let mut attributes = vec![
            string("faas.invocation_id", id),
            kv("faas.coldstart", any_value::Value::BoolValue(self.cold)),
        ];
        if let Some(status) = str_of(record, "status") {
            attributes.push(string("aws.lambda.status", status));
        }
        let mut spans = vec![Span {
            trace_id: trace_id.clone(),
            span_id: span_id.clone(),
            parent_span_id: parent,
            flags,
            name: "invoke".into(),
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end.max(start),
            attributes,
            status: Some(span_status(ok, record)),
            ..Default::default()
        }];
        // The platform's own phases (responseLatency, responseDuration, ...) as children.
        for phase in record
            .get("spans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(name), Some(begin)) = (
                str_of(phase, "name"),
                str_of(phase, "start").and_then(parse_rfc3339),
            ) else {
                continue;
            };
            let duration = ms(phase.get("durationMs")).unwrap_or(0.0);
            spans.push(Span {
                trace_id: trace_id.clone(),
                span_id: self.ids.span_id(),
                parent_span_id: span_id.clone(),
                flags,
                name: name.into(),
                kind: span::SpanKind::Internal as i32,
                start_time_unix_nano: begin,
                end_time_unix_nano: begin.saturating_add(ms_to_nanos(duration)),
                ..Default::default()
            });
        }
        spans
    }

    fn report(&mut self, _id: &str, time: u64, record: &Value) -> Vec<Metric> {
        let m = record.get("metrics").unwrap_or(&Value::Null);
        let status = str_of(record, "status").unwrap_or("success");
        let cold = std::mem::take(&mut self.cold) || m.get("initDurationMs").is_some();
        let mut out = Vec::new();
        if let Some(d) = ms(m.get("durationMs")) {
            out.push(histogram(
                "faas.invoke_duration",
                "Measures the duration of the function's logic execution",
                "s",
                d / 1000.0,
                SECONDS_BOUNDS,
                time,
                Vec::new(),
            ));
        }
        if let Some(d) = ms(m.get("billedDurationMs")) {
            out.push(histogram(
                "aws.lambda.billed_duration",
                "Duration AWS bills for the invocation",
                "s",
                d / 1000.0,
                SECONDS_BOUNDS,
                time,
                Vec::new(),
            ));
        }
        if let Some(mb) = m
            .get("maxMemoryUsedMB")
            .and_then(Value::as_i64)
            .filter(|v| *v >= 0)
        {
            let bytes = mb.saturating_mul(BYTES_PER_MB) as f64;
            out.push(histogram(
                "faas.mem_usage",
                "Distribution of max memory usage per invocation",
                "By",
                bytes,
                MEMORY_BOUNDS,
                time,
                Vec::new(),
            ));
        }
        if let Some(mb) = m.get("memorySizeMB").and_then(Value::as_i64) {
            self.max_memory_mb.get_or_insert(mb);
        }
        let flag = |b: bool| i64::from(b);
        out.push(counter(
            "faas.invocations",
            "Number of successful invocations",
            "{invocation}",
            1,
            time,
            Vec::new(),
        ));
        out.push(counter(
            "faas.errors",
            "Number of invocation errors",
            "{error}",
            flag(matches!(status, "error" | "failure")),
            time,
            Vec::new(),
        ));
        out.push(counter(
            "faas.timeouts",
            "Number of invocation timeouts",
            "{timeout}",
            flag(status == "timeout"),
            time,
            Vec::new(),
        ));
        out.push(counter(
            "faas.coldstarts",
            "Number of invocation cold starts",
            "{coldstart}",
            flag(cold),
            time,
            Vec::new(),
        ));
        out
    }
}

fn span_status(ok: bool, record: &Value) -> Status {
    if ok {
        return Status::default();
    }
    Status {
        code: status::StatusCode::Error as i32,
        message: str_of(record, "errorType")
            .or_else(|| str_of(record, "status"))
            .unwrap_or_default()
            .into(),
    }
}
