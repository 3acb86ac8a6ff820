//! sluice's own log, set up from `service.telemetry.logs`: level, console or JSON lines,
//! caller, initial fields, sampling, output paths, and export over OTLP. Writing a log line
//! can fail (stderr is a pipe whose reader died, a full disk); a log line is never worth more
//! than the data, so failures are reported once to `error_output_paths` and otherwise
//! dropped, never returned to the logging library (whose own report would panic on the same
//! closed stream inside whichever task logged).

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use sluice_pipeline::proto::collector::logs::v1::ExportLogsServiceRequest;
use sluice_pipeline::proto::common::v1::{AnyValue, any_value};
use sluice_pipeline::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use sluice_pipeline::telemetry::{
    ConsoleClient, LogEncoding, OtlpClient, OtlpClientBuilder, Sampler, SelfExport,
    TelemetryConfig, resource, scope, string_attribute, unix_nanos,
};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// One place a line goes.
enum Sink {
    Stdout,
    Stderr,
    File(std::fs::File),
}

impl Sink {
    fn open(path: &str) -> Result<Sink, String> {
        Ok(match path {
            "stdout" => Sink::Stdout,
            "stderr" => Sink::Stderr,
            other => {
                let file = other.strip_prefix("file://").unwrap_or(other);
                Sink::File(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(file)
                        .map_err(|e| format!("cannot open {file}: {e}"))?,
                )
            }
        })
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(buf).and_then(|()| out.flush())
            }
            Sink::Stderr => std::io::stderr().write_all(buf),
            Sink::File(f) => f.write_all(buf),
        }
    }
}

/// Every output path, and where the failure to write to one is reported.
struct Outputs {
    sinks: Vec<(String, Mutex<Sink>, Mutex<bool>)>,
    errors: Vec<Mutex<Sink>>,
}

impl Outputs {
    fn write(&self, buf: &[u8]) {
        for (name, sink, failing) in &self.sinks {
            let result = sink.lock().unwrap_or_else(|p| p.into_inner()).write(buf);
            let mut failing = failing.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => *failing = false,
                // Said once per outage, so a broken output cannot flood the error output.
                Err(e) if !*failing => {
                    *failing = true;
                    let note = format!("sluice: cannot write a log line to {name}: {e}\n");
                    for out in &self.errors {
                        let _ = out
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .write(note.as_bytes());
                    }
                }
                Err(_) => {}
            }
        }
    }
}

#[derive(Clone)]
struct LogWriter(Arc<Outputs>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

/// The console or JSON line of the logging library, with `initial_fields` added.
struct WithFields<F> {
    inner: F,
    json: bool,
    /// Rendered once: ` k=v` for the console, `,"k":v` for JSON.
    extra: String,
}

impl<S, N, F> FormatEvent<S, N> for WithFields<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if self.extra.is_empty() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        if self.json {
            match body.strip_suffix('}') {
                Some(open) => writeln!(writer, "{open}{}}}", self.extra),
                None => writeln!(writer, "{body}"),
            }
        } else {
            writeln!(writer, "{body}{}", self.extra)
        }
    }
}

fn render_fields(
    fields: &std::collections::BTreeMap<String, serde_json::Value>,
    json: bool,
) -> String {
    let mut out = String::new();
    for (k, v) in fields {
        if json {
            let key = serde_json::Value::String(k.clone());
            let _ = write!(out, ",{key}:{v}");
        } else {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let _ = write!(out, " {k}={text}");
        }
    }
    out
}

/// `logs.sampling`: lines of one call site and level past the tick's allowance are left out.
struct Sampling(Sampler);

impl<S: Subscriber> Layer<S> for Sampling {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        // The call site stands for zap's message: one statement, one kind of line.
        self.0.allow(std::ptr::from_ref(meta) as usize as u64)
    }
}

/// Collects an event's message and fields for OTLP.
#[derive(Default)]
struct Fields {
    message: String,
    attributes: Vec<(String, String)>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.attributes
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.attributes
                .push((field.name().to_string(), value.to_string()));
        }
    }
}

/// `logs.processors`: every line that passes the level also goes to the OTLP exporters.
struct OtlpLayer {
    queues: Vec<tokio::sync::mpsc::Sender<LogRecord>>,
    initial: Vec<(String, String)>,
}

impl<S: Subscriber> Layer<S> for OtlpLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let (number, text) = match *meta.level() {
            tracing::Level::TRACE => (1, "TRACE"),
            tracing::Level::DEBUG => (5, "DEBUG"),
            tracing::Level::INFO => (9, "INFO"),
            tracing::Level::WARN => (13, "WARN"),
            tracing::Level::ERROR => (17, "ERROR"),
        };
        let now = unix_nanos(SystemTime::now());
        let mut attributes: Vec<_> = fields
            .attributes
            .iter()
            .chain(&self.initial)
            .map(|(k, v)| string_attribute(k, v))
            .collect();
        attributes.push(string_attribute("code.namespace", meta.target()));
        let record = LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: number,
            severity_text: text.to_string(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(fields.message)),
            }),
            attributes,
            ..LogRecord::default()
        };
        for queue in &self.queues {
            // A full queue drops the line, as the SDK's batch processor does: logging never
            // waits.
            let _ = queue.try_send(record.clone());
        }
    }
}

/// The thread that sends log lines over OTLP, and how to stop it.
struct Exporting {
    stop: tokio::sync::watch::Sender<bool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

static EXPORTING: OnceLock<Exporting> = OnceLock::new();

/// Sends what the exporters still hold and stops them, waiting at most `within`.
pub fn flush(within: Duration) {
    let Some(exporting) = EXPORTING.get() else {
        return;
    };
    let _ = exporting.stop.send(true);
    let thread = exporting.thread.lock().ok().and_then(|mut t| t.take());
    if let Some(thread) = thread {
        let deadline = std::time::Instant::now() + within;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One processor's settings once read.
struct Processor {
    client: Arc<dyn OtlpClient>,
    delay: Duration,
    timeout: Duration,
    batch: usize,
    queue: tokio::sync::mpsc::Receiver<LogRecord>,
}

fn start_exporting(processors: Vec<Processor>, resource_attributes: Vec<(String, String)>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let spawned = std::thread::Builder::new()
        .name("sluice-log-export".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let tasks = processors
                    .into_iter()
                    .map(|p| run_processor(p, resource_attributes.clone(), stopped.clone()));
                futures_join_all(tasks).await;
            });
        });
    if let Ok(thread) = spawned {
        let _ = EXPORTING.set(Exporting {
            stop,
            thread: Mutex::new(Some(thread)),
        });
    }
}

/// Waits for every future (the binary has no `futures` dependency of its own).
async fn futures_join_all(tasks: impl Iterator<Item = impl Future<Output = ()> + Send + 'static>) {
    let handles: Vec<_> = tasks.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

async fn run_processor(
    mut p: Processor,
    resource_attributes: Vec<(String, String)>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut held: Vec<LogRecord> = Vec::new();
    let mut last = false;
    loop {
        let due = tokio::time::sleep(p.delay);
        tokio::pin!(due);
        // Gather until the delay passes or a batch is full.
        while held.len() < p.batch && !last {
            tokio::select! {
                record = p.queue.recv() => match record {
                    Some(r) => held.push(r),
                    None => last = true,
                },
                _ = &mut due => break,
                _ = stopped.changed() => last = true,
            }
        }
        if last {
            while let Ok(r) = p.queue.try_recv() {
                held.push(r);
            }
        }
        while !held.is_empty() {
            let take = held.len().min(p.batch.max(1));
            let records: Vec<LogRecord> = held.drain(..take).collect();
            let request = ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(resource(&resource_attributes)),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(scope()),
                        log_records: records,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            };
            // A failure is not logged: that line would be exported too, failing again.
            let _ =
                tokio::time::timeout(p.timeout, p.client.export(SelfExport::Logs(request))).await;
            if !last && held.len() < p.batch {
                break;
            }
        }
        if last {
            return;
        }
    }
}

/// Sets up the log from `config`. Problems (an output that cannot be opened, an OTLP
/// exporter that cannot be built) are returned as messages keyed by where they are.
pub fn init(
    config: &TelemetryConfig,
    otlp: Option<&OtlpClientBuilder>,
    instance_id: &str,
) -> Vec<(String, String)> {
    let logs = &config.logs;
    let mut problems = Vec::new();
    let mut open = |paths: &[String], key: &str| -> Vec<(String, Mutex<Sink>, Mutex<bool>)> {
        let mut out = Vec::new();
        for path in paths {
            match Sink::open(path) {
                Ok(s) => out.push((path.clone(), Mutex::new(s), Mutex::new(false))),
                Err(e) => problems.push((key.to_string(), e)),
            }
        }
        out
    };
    let mut sinks = open(&logs.output_paths, "logs.output_paths");
    let errors = open(&logs.error_output_paths, "logs.error_output_paths");
    if sinks.is_empty() {
        sinks.push(("stderr".into(), Mutex::new(Sink::Stderr), Mutex::new(false)));
    }
    let to_terminal = logs.output_paths.iter().all(|p| p == "stderr")
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = LogWriter(Arc::new(Outputs {
        sinks,
        errors: errors.into_iter().map(|(_, s, _)| s).collect(),
    }));
    let level = match logs.level.to_ascii_lowercase().as_str() {
        "dpanic" | "panic" | "fatal" => "error".to_string(),
        other => other.to_string(),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&level));
    let caller = !logs.disable_caller;
    let json = logs.encoding == LogEncoding::Json;
    let extra = render_fields(&logs.initial_fields, json);

    let sampling = logs
        .sampling
        .as_ref()
        .filter(|s| s.enabled)
        .map(|s| Sampling(Sampler::new(s.tick.0, s.initial, s.thereafter)));

    let resource_attributes = config.resource_attributes(instance_id);
    let mut queues = Vec::new();
    let mut processors = Vec::new();
    for (i, p) in logs.processors.iter().enumerate() {
        let (exporter, delay, timeout, batch, capacity) = match (&p.batch, &p.simple) {
            (Some(b), _) => (
                &b.exporter,
                b.schedule_delay.0,
                b.export_timeout.0,
                b.max_export_batch_size.max(1),
                b.max_queue_size.max(1),
            ),
            (None, Some(s)) => (
                &s.exporter,
                Duration::ZERO,
                Duration::from_secs(30),
                1,
                2048,
            ),
            (None, None) => continue,
        };
        let client: Result<Arc<dyn OtlpClient>, String> = match (&exporter.otlp, otlp) {
            (None, _) => Ok(Arc::new(ConsoleClient)),
            (Some(target), Some(build)) => build(target),
            (Some(_), None) => Err("this build of sluice has no OTLP client".into()),
        };
        match client {
            Ok(client) => {
                let (tx, rx) = tokio::sync::mpsc::channel(capacity);
                queues.push(tx);
                processors.push(Processor {
                    client,
                    delay,
                    timeout,
                    batch,
                    queue: rx,
                });
            }
            Err(e) => problems.push((format!("logs.processors.{i}"), e)),
        }
    }
    let initial: Vec<(String, String)> = logs
        .initial_fields
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    let otlp_layer = (!queues.is_empty()).then(|| OtlpLayer { queues, initial });
    if !processors.is_empty() {
        start_exporting(processors, resource_attributes);
    }

    let registry = tracing_subscriber::registry()
        .with(sampling)
        .with(filter)
        .with(otlp_layer);
    let _ = if json {
        let format = format::Format::default()
            .json()
            .with_file(caller)
            .with_line_number(caller);
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .event_format(WithFields {
                        inner: format,
                        json: true,
                        extra,
                    })
                    .with_writer(writer)
                    .log_internal_errors(false),
            )
            .try_init()
    } else {
        let format = format::Format::default()
            .with_file(caller)
            .with_line_number(caller)
            .with_ansi(to_terminal);
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(WithFields {
                        inner: format,
                        json: false,
                        extra,
                    })
                    .with_ansi(to_terminal)
                    .with_writer(writer)
                    .log_internal_errors(false),
            )
            .try_init()
    };
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_fields_render_for_both_encodings() {
        let mut fields = std::collections::BTreeMap::new();
        fields.insert("region".to_string(), serde_json::json!("eu-1"));
        fields.insert("shard".to_string(), serde_json::json!(3));
        assert_eq!(render_fields(&fields, false), " region=eu-1 shard=3");
        assert_eq!(
            render_fields(&fields, true),
            r#","region":"eu-1","shard":3"#
        );
    }
}
