//! The `file` exporter: OTLP/JSON lines (one `TracesData`/`MetricsData`/`LogsData` object per
//! line, as the OTel file exporter writes them) or length-prefixed protobuf, optionally
//! compressed as one gzip or zstd stream, rotated by size, and split into one file per value
//! of a resource attribute.

mod config;
mod group;
mod rotation;
mod writer;

pub use config::{Compression, FileConfig, Format, GroupByConfig, RotationConfig};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, SignalKind};
use sluice_pipeline::codec::{encode_json, encode_proto, encoded_proto_len};
use sluice_pipeline::exporter::{Export, HelperSettings, export_signals};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Lifecycle,
    Logs, Metrics, Signal, StartError, Traces, decode_config,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use group::{Files, Template};
use rotation::Policy;
use writer::WriteError;

/// How often, at most, the warning about resources without the group_by attribute repeats.
const UNROUTED_WARNING_EVERY: StdDuration = StdDuration::from_secs(60);

pub struct FileExporterFactory;

impl ExporterFactory for FileExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "file",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "writes OTLP/JSON lines or length-prefixed OTLP protobuf to files, \
                          optionally gzip/zstd-compressed, rotated and grouped by resource",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        settings: HelperSettings,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: FileConfig = decode_config(config)?;
        config::validate(&cfg, config)?;
        let name = config.id.to_string();
        let sink = Arc::new(FileSink::new(&name, &cfg, signals, ctx));
        let mut built = export_signals(&name, &settings, signals, sink.clone(), ctx);
        // Shutdown order: the queues drain into the files, then they are ended and closed.
        built.lifecycles.push(sink);
        Ok(built)
    }
}

/// Where resources are written.
enum Route {
    /// Everything to one file.
    Single(PathBuf),
    /// Each resource to the file its attribute's value names.
    Grouped {
        template: Template,
        attribute: String,
        /// The file for resources without the attribute; `None` drops them (counted).
        fallback: Option<PathBuf>,
    },
}

/// Resources without the group_by attribute, which were not written.
struct Unrouted {
    items: HashMap<SignalKind, Counter>,
    last_warning: Mutex<Option<std::time::Instant>>,
}

/// The files, shared by the signals this exporter serves (one exporter used by several
/// pipelines of different signals writes them all into the same file).
pub struct FileSink {
    name: String,
    path: PathBuf,
    format: Format,
    flush_interval: StdDuration,
    /// `create_directory`: unset creates, `false` refuses a missing directory.
    create_directory: Option<bool>,
    directory_mode: u32,
    route: Route,
    files: Arc<Mutex<Files>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    unrouted: Unrouted,
}

impl FileSink {
    fn new(name: &str, cfg: &FileConfig, signals: &[SignalKind], ctx: &BuildContext) -> FileSink {
        let group = &cfg.group_by;
        let template = group.enabled.then(|| Template::new(&cfg.path)).flatten();
        let (route, max_open) = match template {
            Some(template) => (
                Route::Grouped {
                    fallback: group
                        .default_segment
                        .as_deref()
                        .map(|s| template.path_for(s)),
                    template,
                    attribute: group.resource_attribute.clone(),
                },
                group.max_open_files,
            ),
            None => (Route::Single(cfg.path.clone()), 1),
        };
        let metrics = &ctx.telemetry.metrics;
        // Only an exporter that can drop resources shows the counter.
        let drops = matches!(route, Route::Grouped { fallback: None, .. });
        let items = signals
            .iter()
            .filter(|_| drops)
            .map(|&kind| {
                let item = item_name(kind);
                let counter = metrics.counter(
                    &format!("sluice_exporter_file_unrouted_{item}"),
                    &format!(
                        "Number of {item} dropped by the file exporter's group_by because \
                         their resource lacks the attribute"
                    ),
                    &[("exporter", name)],
                );
                (kind, counter)
            })
            .collect();
        FileSink {
            name: name.to_string(),
            path: cfg.path.clone(),
            format: cfg.format,
            flush_interval: cfg.flush_interval.0,
            route,
            create_directory: cfg.create_directory,
            directory_mode: cfg.directory_mode(),
            files: Arc::new(Mutex::new(Files::new(
                cfg.compression,
                cfg.compression_params.level,
                cfg.append,
                cfg.rotation.as_ref().map(Policy::new),
                max_open,
            ))),
            flusher: Mutex::new(None),
            unrouted: Unrouted {
                items,
                last_warning: Mutex::new(None),
            },
        }
    }

    /// Splits a batch by destination file, keeping the resources' order within each file.
    /// Returns the groups (file, indices of its resources) and the number of items dropped.
    fn route<S: Signal>(&self, resources: &[S::Resource]) -> (Vec<(PathBuf, Vec<usize>)>, usize) {
        match &self.route {
            Route::Single(path) => (vec![(path.clone(), (0..resources.len()).collect())], 0),
            Route::Grouped {
                template,
                attribute,
                fallback,
            } => {
                let mut groups: Vec<(PathBuf, Vec<usize>)> = Vec::new();
                let mut index: HashMap<PathBuf, usize> = HashMap::new();
                let mut dropped = 0;
                for (i, resource) in resources.iter().enumerate() {
                    let path = match group::attribute_text(S::resource(resource), attribute) {
                        Some(value) => template.path_for(&value),
                        None => match fallback {
                            Some(path) => path.clone(),
                            None => {
                                dropped += S::resource_items(resource);
                                continue;
                            }
                        },
                    };
                    match index.get(&path) {
                        Some(&g) => groups[g].1.push(i),
                        None => {
                            index.insert(path.clone(), groups.len());
                            groups.push((path, vec![i]));
                        }
                    }
                }
                (groups, dropped)
            }
        }
    }

    fn count_unrouted<S: Signal>(&self, items: usize) {
        let Some(counter) = self.unrouted.items.get(&S::KIND) else {
            return;
        };
        counter.add(items as u64);
        let Ok(mut last) = self.unrouted.last_warning.lock() else {
            return;
        };
        let due = last.is_none_or(|at| at.elapsed() >= UNROUTED_WARNING_EVERY);
        if due {
            *last = Some(std::time::Instant::now());
            let attribute = match &self.route {
                Route::Grouped { attribute, .. } => attribute.as_str(),
                Route::Single(_) => "",
            };
            tracing::warn!(
                exporter = %self.name,
                attribute,
                dropped = items,
                dropped_total = counter.get(),
                item = S::ITEM_NAME,
                "resources without the group_by attribute are dropped (counted in \
                 sluice_exporter_file_unrouted_*); set group_by.default_segment to keep them"
            );
        }
    }

    /// One record: the resources as one JSON line, or one length-prefixed protobuf message.
    fn encode<S: Signal>(&self, resources: &[S::Resource]) -> Result<Vec<u8>, DeliveryError> {
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
        Ok(record)
    }

    /// Writes one record per file. Every file must be ready to take its record before any
    /// takes one, so that a failure, which the helper retries, cannot write a record twice.
    fn write(
        &self,
        files: &mut Files,
        records: &[(PathBuf, Vec<u8>)],
    ) -> Result<(), DeliveryError> {
        let retryable = |path: &Path, e: &dyn std::fmt::Display| {
            DeliveryError::retryable(format!("cannot write {}: {e}", path.display()))
        };
        for (path, record) in records {
            files
                .prepare(path, record.len() as u64)
                .map_err(|e| retryable(path, &e))?;
        }
        for (path, record) in records {
            let output = files
                .get_open(path)
                .ok_or_else(|| retryable(path, &"file was closed while in use"))?;
            match output.append(record) {
                Ok(()) => {}
                Err(WriteError::Io(e)) => return Err(retryable(path, &e)),
                Err(e @ WriteError::Encode(_)) => {
                    return Err(DeliveryError::permanent(format!(
                        "cannot write {}: {e}",
                        path.display()
                    )));
                }
            }
            if self.flush_interval.is_zero() {
                // A failure here keeps the record in memory and is reported to the next batch.
                let _ = output.flush();
            }
        }
        Ok(())
    }
}

fn item_name(kind: SignalKind) -> &'static str {
    match kind {
        SignalKind::Traces => Traces::ITEM_NAME,
        SignalKind::Metrics => Metrics::ITEM_NAME,
        SignalKind::Logs => Logs::ITEM_NAME,
    }
}

fn lock(files: &Mutex<Files>) -> Result<std::sync::MutexGuard<'_, Files>, DeliveryError> {
    files
        .lock()
        .map_err(|_| DeliveryError::permanent("file exporter state is poisoned"))
}

#[async_trait]
impl<S: Signal> Export<S> for FileSink {
    async fn export(&self, batch: &Batch<S>) -> Result<(), DeliveryError> {
        let resources = batch.resources();
        let (groups, dropped) = self.route::<S>(resources);
        if dropped > 0 {
            self.count_unrouted::<S>(dropped);
        }
        let mut records = Vec::with_capacity(groups.len());
        for (path, indices) in groups {
            let record = if indices.len() == resources.len() {
                self.encode::<S>(resources)?
            } else {
                let subset: Vec<S::Resource> =
                    indices.iter().map(|&i| resources[i].clone()).collect();
                self.encode::<S>(&subset)?
            };
            records.push((path, record));
        }
        if records.is_empty() {
            return Ok(());
        }
        let mut files = lock(&self.files)?;
        files.begin_batch();
        let result = self.write(&mut files, &records);
        files.end_batch();
        result
    }
}

#[async_trait]
impl Lifecycle for FileSink {
    async fn start(&self) -> Result<(), StartError> {
        let fail = |what: String| StartError::new(&self.name, what);
        // A `*` in the directory part makes one directory per group, created on first use.
        if let Some(dir) = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.to_string_lossy().contains('*'))
        {
            if self.create_directory == Some(false) {
                if !dir.is_dir() {
                    return Err(fail(format!(
                        "directory {} does not exist (set `create_directory: true` to create it)",
                        dir.display()
                    )));
                }
            } else {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(self.directory_mode)
                    .create(dir)
                    .map_err(|e| fail(format!("cannot create directory {}: {e}", dir.display())))?;
            }
        }
        if let Route::Single(path) = &self.route {
            let mut files = self
                .files
                .lock()
                .map_err(|_| fail("file exporter state is poisoned".into()))?;
            files.begin_batch();
            let opened = files.get(path).map(|_| ());
            files.end_batch();
            opened.map_err(|e| fail(format!("cannot open {}: {e}", path.display())))?;
        }
        if !self.flush_interval.is_zero() {
            let files = self.files.clone();
            let every = self.flush_interval;
            let task = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Ok(mut files) = files.lock() {
                        // Each file logs its own failures, once per outage.
                        let _ = files.flush_all();
                    }
                }
            });
            if let Ok(mut f) = self.flusher.lock() {
                *f = Some(task);
            }
        }
        Ok(())
    }

    /// Pushes buffered writes (and compressor state) to the files now, for callers that must
    /// not leave data in memory, such as a Lambda extension before its environment freezes.
    async fn flush(&self, _deadline: Instant) {
        if let Ok(mut files) = self.files.lock() {
            // Each file logs its own failures, once per outage.
            let _ = files.flush_all();
        }
    }

    async fn shutdown(&self, _deadline: Instant) {
        if let Some(task) = self.flusher.lock().ok().and_then(|mut f| f.take()) {
            task.abort();
        }
        let Ok(mut files) = self.files.lock() else {
            tracing::error!(exporter = %self.name, "file exporter state is poisoned; files not closed");
            return;
        };
        for (path, lost, error) in files.close_all(true) {
            tracing::error!(
                exporter = %self.name,
                path = %path.display(),
                error = %error,
                lost_bytes = lost,
                "cannot finish file at shutdown"
            );
        }
    }
}

#[cfg(test)]
mod tests;
