//! The `file` exporter: OTLP/JSON lines (one `TracesData`/`MetricsData`/`LogsData` object per
//! line, as the OTel file exporter writes them) or length-prefixed protobuf.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration, SignalKind};
use sluice_pipeline::codec::{encode_json, encode_proto, encoded_proto_len};
use sluice_pipeline::exporter::{
    Export, ExportHelper, HelperSettings, QueueSettings, RetrySettings,
};
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo,
    Lifecycle, Logs, Metrics, Signal, SignalConsumer, StartError, Traces, decode_config,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `exporters: file:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to; its directory is created if missing.
    pub path: PathBuf,
    /// `json` (default): one OTLP/JSON object per line; `proto`: each message preceded by its
    /// length as a 4-byte big-endian integer.
    #[serde(default)]
    pub format: Format,
    /// How often buffered writes reach the file (default 1s; 0 writes through on every batch).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: Duration,
    #[serde(default)]
    pub sending_queue: QueueSettings,
    #[serde(default)]
    pub retry_on_failure: RetrySettings,
    /// Limit on one write (default 5s).
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
}

fn default_flush_interval() -> Duration {
    Duration(StdDuration::from_secs(1))
}
fn default_timeout() -> Duration {
    Duration(StdDuration::from_secs(5))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Proto,
}

pub struct FileExporterFactory;

impl ExporterFactory for FileExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "file",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "writes OTLP/JSON lines or length-prefixed OTLP protobuf to a file",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: FileConfig = decode_config(config)?;
        if cfg.path.as_os_str().is_empty() {
            return Err(Diagnostic::new(
                Some(config.node.pos.clone()),
                format!("{}.path", config.path),
                "path must not be empty",
            )
            .into());
        }
        let name = config.id.to_string();
        let sink = Arc::new(FileSink {
            path: cfg.path.clone(),
            format: cfg.format,
            flush_interval: cfg.flush_interval.0,
            writer: Arc::new(Mutex::new(None)),
            flusher: Mutex::new(None),
            name: name.clone(),
        });
        let settings = HelperSettings {
            queue: cfg.sending_queue,
            retry: cfg.retry_on_failure,
            timeout: cfg.timeout.0,
        };
        let mut built = BuiltExporter {
            consumers: Vec::new(),
            lifecycles: Vec::new(),
        };
        for signal in signals {
            let (consumer, lifecycle) = match signal {
                SignalKind::Traces => helper::<Traces>(&name, &settings, &sink, ctx),
                SignalKind::Metrics => helper::<Metrics>(&name, &settings, &sink, ctx),
                SignalKind::Logs => helper::<Logs>(&name, &settings, &sink, ctx),
            };
            built.consumers.push(consumer);
            built.lifecycles.push(lifecycle);
        }
        // Shutdown order: the queues drain into the file, then it is flushed and closed.
        built.lifecycles.push(sink);
        Ok(built)
    }
}

fn helper<S: Signal + SignalConsumer>(
    name: &str,
    settings: &HelperSettings,
    sink: &Arc<FileSink>,
    ctx: &BuildContext,
) -> (AnyConsumer, Arc<dyn Lifecycle>) {
    let (consumer, lifecycle) =
        ExportHelper::<S>::new(name, settings.clone(), sink.clone(), ctx).parts();
    (S::to_any(consumer), lifecycle)
}

/// The open file, shared by the signals this exporter serves.
pub struct FileSink {
    name: String,
    path: PathBuf,
    format: Format,
    flush_interval: StdDuration,
    writer: Arc<Mutex<Option<BufWriter<File>>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

impl FileSink {
    fn write(&self, record: &[u8]) -> std::io::Result<()> {
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| std::io::Error::other("file writer poisoned"))?;
        let writer = guard
            .as_mut()
            .ok_or_else(|| std::io::Error::other("file is closed"))?;
        writer.write_all(record)?;
        if self.flush_interval.is_zero() {
            writer.flush()?;
        }
        Ok(())
    }
}

fn flush(writer: &Mutex<Option<BufWriter<File>>>, sync: bool) -> std::io::Result<()> {
    let mut guard = writer
        .lock()
        .map_err(|_| std::io::Error::other("file writer poisoned"))?;
    if let Some(writer) = guard.as_mut() {
        writer.flush()?;
        if sync {
            writer.get_ref().sync_data()?;
        }
    }
    Ok(())
}

#[async_trait]
impl<S: Signal> Export<S> for FileSink {
    async fn export(&self, batch: &Batch<S>) -> Result<(), DeliveryError> {
        let resources = batch.resources();
        let mut record = Vec::new();
        match self.format {
            Format::Json => {
                encode_json::<S>(resources, &mut record).map_err(|e| {
                    DeliveryError::permanent(format!("cannot encode as OTLP/JSON: {e}"))
                })?;
                record.push(b'\n');
            }
            Format::Proto => {
                let len = encoded_proto_len::<S>(resources);
                let prefix = u32::try_from(len).map_err(|_| {
                    DeliveryError::permanent(format!(
                        "batch of {len} bytes is too large for a 4-byte length prefix"
                    ))
                })?;
                record.reserve(len + 4);
                record.extend_from_slice(&prefix.to_be_bytes());
                encode_proto::<S>(resources, &mut record);
            }
        }
        self.write(&record).map_err(|e| {
            DeliveryError::retryable(format!("cannot write {}: {e}", self.path.display()))
        })
    }
}

#[async_trait]
impl Lifecycle for FileSink {
    async fn start(&self) -> Result<(), StartError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StartError::new(
                    &self.name,
                    format!("cannot create directory {}: {e}", dir.display()),
                )
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| {
                StartError::new(
                    &self.name,
                    format!("cannot open {}: {e}", self.path.display()),
                )
            })?;
        if let Ok(mut w) = self.writer.lock() {
            *w = Some(BufWriter::with_capacity(256 * 1024, file));
        }
        if !self.flush_interval.is_zero() {
            let writer = self.writer.clone();
            let every = self.flush_interval;
            let name = self.name.clone();
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if let Err(e) = flush(&writer, false) {
                        tracing::warn!(exporter = %name, error = %e, "cannot flush file");
                    }
                }
            });
            if let Ok(mut f) = self.flusher.lock() {
                *f = Some(task);
            }
        }
        Ok(())
    }

    async fn shutdown(&self, _deadline: Instant) {
        if let Some(task) = self.flusher.lock().ok().and_then(|mut f| f.take()) {
            task.abort();
        }
        if let Err(e) = flush(&self.writer, true) {
            tracing::error!(exporter = %self.name, error = %e, "cannot flush file at shutdown");
        }
        if let Ok(mut w) = self.writer.lock() {
            *w = None;
        }
    }
}
