//! The `filelog` receiver (alias `file_log`): tails files as the OTel Collector's filelog
//! receiver does, with its keys and attribute names, and with checkpoints that move only when
//! the pipeline acknowledged what was read.
//!
//! A thread per receiver polls the files ([`reader`]), cuts entries, runs the `operators`
//! and hands batches over a bounded channel (so reading pauses while the pipeline pushes
//! back). The delivery task sends each batch, retries what the pipeline refuses, and moves
//! each file's checkpoint only once every batch read before it was acknowledged
//! ([`checkpoint`]), saving it to the `storage` extension's directory.

mod checkpoint;
pub(crate) mod config;
pub(crate) mod emit;
pub(crate) mod encoding;
mod finder;
pub mod operators;
mod reader;
pub(crate) mod split;
#[cfg(test)]
mod tests;

pub use config::FilelogConfig;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::config_keys::{decode_section, problem};
use sluice_pipeline::exporter::{Backoff, RetrySettings};
use sluice_pipeline::storage::{CheckpointStore, FileStorage};
use sluice_pipeline::telemetry::{Counter, DEFAULT_LOG_INTERVAL, LogLimiter};
use sluice_pipeline::{
    Ack, Batch, BuildContext, DeliveryError, DynConsumer, FactoryInfo, Lifecycle, Logs, Receiver,
    ReceiverFactory, ReceiverOutputs, StartError,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use checkpoint::{Committer, FileRecord};
use config::{MaxLogSizeBehavior, RetryOnFailure, StartAt};
use emit::FileAttributeSet;
use encoding::FileEncoding;
use finder::Finder;
use operators::expr::ExprString;
use reader::{Handover, HeaderSettings, Reader, Settings};
use split::Splitter;

pub struct FilelogReceiverFactory;

impl ReceiverFactory for FilelogReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "filelog",
            aliases: &["file_log"],
            signals: &[SignalKind::Logs],
            description: "tails log files (rotation-safe, checkpoints move on acknowledgement) and parses them with stanza operators",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        Ok(build(config, outputs, ctx)?)
    }
}

/// Handed-over batches waiting for their acknowledgement at once; more wait in the reader.
const MAX_IN_FLIGHT: usize = 16;
/// Checkpoints are saved at most this often while data flows (and at shutdown).
const SAVE_INTERVAL: Duration = Duration::from_millis(250);
/// At shutdown, acknowledgements are waited for until the deadline; the final checkpoint
/// save gets this long after it, so what was acknowledged up to the deadline is saved even
/// when the wait took all the time.
const FINAL_SAVE_TIME: Duration = Duration::from_secs(5);

/// What a batch the pipeline refuses becomes.
#[derive(Clone, Debug)]
pub(crate) enum RetryPolicy {
    /// No `retry_on_failure` section: retry until delivered. The lines are still in the
    /// file, so waiting loses nothing, and moving past them would.
    UntilDelivered,
    /// `retry_on_failure` written, as upstream: retry only when enabled, up to
    /// `max_elapsed_time`, then move past the batch (counted as refused).
    Configured(RetryOnFailure),
}

/// What `build` prepares and `start` hands to the reading thread.
struct Prepared {
    settings: Settings,
    operators: operators::Operators,
}

/// What delivering a receiver's batches needs; the network log receivers share it.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) consumer: Option<DynConsumer<Logs>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) accepted: Counter,
    pub(crate) refused: Counter,
    pub(crate) log_limit: LogLimiter,
}

impl Shared {
    /// With the receiver counters every logs receiver reports, labelled by `transport`.
    pub(crate) fn new(
        name: &str,
        transport: &str,
        consumer: Option<DynConsumer<Logs>>,
        retry_on_failure: Option<RetryOnFailure>,
        metrics: &sluice_pipeline::telemetry::MetricsRegistry,
    ) -> Shared {
        let labels = [("receiver", name), ("transport", transport)];
        Shared {
            name: name.to_string(),
            consumer,
            retry: match retry_on_failure {
                Some(r) => RetryPolicy::Configured(r),
                None => RetryPolicy::UntilDelivered,
            },
            accepted: metrics.counter(
                "otelcol_receiver_accepted_log_records",
                "Number of log records successfully pushed into the pipeline",
                &labels,
            ),
            refused: metrics.counter(
                "otelcol_receiver_refused_log_records",
                "Number of log records that could not be pushed into the pipeline",
                &labels,
            ),
            log_limit: LogLimiter::new(DEFAULT_LOG_INTERVAL),
        }
    }
}

struct Running {
    stop_reading: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    drain: watch::Sender<Option<Instant>>,
    delivery: tokio::task::JoinHandle<()>,
}

pub struct FilelogReceiver {
    shared: Arc<Shared>,
    storage: Option<FileStorage>,
    admission: sluice_pipeline::admission::Admission,
    prepared: Mutex<Option<Prepared>>,
    running: Mutex<Option<Running>>,
}

impl Receiver for FilelogReceiver {}

fn build(
    config: &ComponentConfig,
    outputs: ReceiverOutputs,
    ctx: &BuildContext,
) -> Result<Arc<FilelogReceiver>, ConfigErrors> {
    // `operators` and `header.metadata_operators` are read from the raw section, with their
    // positions; the typed config sees them only as present.
    let operators_node = config.node.get("operators").cloned();
    let header_operators_node = config
        .node
        .get_path(["header", "metadata_operators"])
        .cloned();
    let cfg: FilelogConfig = decode_section(config, config::NO_EFFECT, &ctx.warnings)?;
    let mut errors: Vec<Diagnostic> = cfg
        .problems()
        .into_iter()
        .map(|(key, message)| problem(config, key, message))
        .collect();
    let encoding = FileEncoding::from_name(&cfg.encoding)
        .map_err(|e| errors.push(problem(config, "encoding", e)))
        .ok();
    let raw = matches!(encoding, Some(FileEncoding::Nop));
    let splitter = Splitter::new(cfg.multiline.as_ref(), raw)
        .map_err(|e| errors.push(problem(config, "multiline", e)))
        .ok();
    let finder = Finder::new(
        &cfg.include,
        &cfg.exclude,
        cfg.exclude_older_than.map(|d| d.0),
        cfg.ordering_criteria.as_ref(),
    )
    .map_err(|problems| {
        for (key, message) in problems {
            errors.push(problem(config, key, message));
        }
    })
    .ok();
    let operators = operators::build(
        operators_node.as_ref(),
        &format!("{}.operators", config.path),
    )
    .map_err(|mut e| errors.append(&mut e))
    .ok();
    let header = match &cfg.header {
        Some(h) => {
            let pattern = regex::Regex::new(&h.pattern)
                .map_err(|e| {
                    errors.push(problem(
                        config,
                        "header.pattern",
                        format!("invalid regex: {e}"),
                    ))
                })
                .ok();
            let header_operators = operators::build(
                header_operators_node.as_ref(),
                &format!("{}.header.metadata_operators", config.path),
            )
            .map_err(|mut e| errors.append(&mut e))
            .ok();
            match (pattern, header_operators) {
                (Some(pattern), Some(operators)) => Some(HeaderSettings { pattern, operators }),
                _ => None,
            }
        }
        None => None,
    };
    let compile_map = |key: &str, map: &BTreeMap<String, String>, errors: &mut Vec<Diagnostic>| {
        let mut out = Vec::new();
        for (k, v) in map {
            match ExprString::compile(v) {
                Ok(e) => out.push((k.clone(), e)),
                Err(e) => errors.push(problem(config, &format!("{key}.{k}"), e.to_string())),
            }
        }
        out
    };
    let attributes = compile_map("attributes", &cfg.attributes, &mut errors);
    let resource = compile_map("resource", &cfg.resource, &mut errors);
    let storage = match &cfg.storage {
        Some(id) => match ctx.storage.get(id) {
            Some(s) => Some(s.clone()),
            None => {
                errors.push(problem(
                    config,
                    "storage",
                    format!(
                        "storage `{id}` is not a file_storage extension enabled in service.extensions"
                    ),
                ));
                None
            }
        },
        None => None,
    };
    let (Some(encoding), Some(splitter), Some(finder), Some(operators), true) =
        (encoding, splitter, finder, operators, errors.is_empty())
    else {
        return Err(ConfigErrors(errors));
    };
    let settings = Settings {
        finder,
        start_at_beginning: cfg.start_at == StartAt::Beginning,
        poll_interval: cfg.poll_interval.0,
        max_concurrent_files: cfg.max_concurrent_files,
        max_batches: cfg.max_batches,
        fingerprint_size: cfg.fingerprint_size.0 as usize,
        max_log_size: cfg.max_log_size.0 as usize,
        truncate_long_entries: cfg.max_log_size_behavior == MaxLogSizeBehavior::Truncate,
        encoding,
        splitter,
        keep_leading: cfg.preserve_leading_whitespaces,
        keep_trailing: cfg.preserve_trailing_whitespaces,
        force_flush: (!cfg.force_flush_period.0.is_zero()).then_some(cfg.force_flush_period.0),
        header,
        delete_after_read: cfg.delete_after_read,
        attribute_set: FileAttributeSet {
            name: cfg.include_file_name,
            path: cfg.include_file_path,
            name_resolved: cfg.include_file_name_resolved,
            path_resolved: cfg.include_file_path_resolved,
            owner_name: cfg.include_file_owner_name,
            owner_group_name: cfg.include_file_owner_group_name,
            permissions: cfg.include_file_permissions,
        },
        record_number: cfg.include_file_record_number,
        record_offset: cfg.include_file_record_offset,
        compression: cfg.compression,
        archive_polls: cfg.polls_to_archive,
        acquire_fs_lock: cfg.acquire_fs_lock,
        on_truncate: cfg.on_truncate(),
        cache_advise: cfg.file_cache_advise,
        attributes,
        resource,
    };
    let name = config.id.to_string();
    Ok(Arc::new(FilelogReceiver {
        shared: Arc::new(Shared::new(
            &name,
            "file",
            outputs.logs,
            cfg.retry_on_failure.clone(),
            &ctx.telemetry.metrics,
        )),
        storage,
        admission: ctx.admission.clone(),
        prepared: Mutex::new(Some(Prepared {
            settings,
            operators,
        })),
        running: Mutex::new(None),
    }))
}

/// Loads the saved checkpoint (if any), keyed as the reader and committer will key it, and
/// whether there was one (a restart: `start_at` no longer applies).
fn restore(store: &CheckpointStore, name: &str) -> (BTreeMap<u32, FileRecord>, bool) {
    let (records, resumed) = match store.load() {
        Ok(Some(bytes)) => match checkpoint::load(&bytes) {
            Ok(records) => (records, true),
            Err(e) => {
                tracing::warn!(receiver = %name, path = %store.path().display(), error = %e, "the saved checkpoint cannot be read; starting without it (start_at decides where reading starts)");
                (Vec::new(), false)
            }
        },
        Ok(None) => (Vec::new(), false),
        Err(e) => {
            tracing::warn!(receiver = %name, error = %e, "cannot read the saved checkpoint; starting without it");
            (Vec::new(), false)
        }
    };
    let records = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| (i as u32, r))
        .collect();
    (records, resumed)
}

#[async_trait]
impl Lifecycle for FilelogReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let name = self.shared.name.clone();
        let Some(prepared) = self.prepared.lock().ok().and_then(|mut p| p.take()) else {
            return Ok(());
        };
        if self.shared.consumer.is_none() {
            tracing::warn!(receiver = %name, "no logs pipeline takes from this receiver; it reads nothing");
            return Ok(());
        }
        let store = match &self.storage {
            Some(storage) => {
                let storage = storage.clone();
                let component = name.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    CheckpointStore::open(&storage, &component, "offsets")
                })
                .await
                .map_err(|e| {
                    StartError::new(&name, format!("cannot open the checkpoint store: {e}"))
                })?
                .map_err(|e| {
                    StartError::new(&name, format!("cannot open the checkpoint store: {e}"))
                })?;
                Some(Arc::new(opened))
            }
            None => None,
        };
        let (restored, resumed) = match &store {
            Some(store) => {
                let (restored, resumed) = restore(store, &name);
                if resumed {
                    tracing::info!(receiver = %name, files = restored.len(), path = %store.path().display(), "checkpoint loaded; start_at does not apply to a restart");
                }
                (restored, resumed)
            }
            None => (BTreeMap::new(), false),
        };
        let (tx, rx) = mpsc::channel::<Handover>(2);
        let stop_reading = Arc::new(AtomicBool::new(false));
        let reader = Reader::new(
            prepared.settings,
            prepared.operators,
            &restored,
            resumed,
            tx,
            stop_reading.clone(),
            self.admission.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("filelog {name}"))
            .spawn(move || reader.run())
            .map_err(|e| StartError::new(&name, format!("cannot start the reading thread: {e}")))?;
        let (drain, draining) = watch::channel(None);
        let mut committer = Committer::new(restored);
        if store.is_some() && !resumed {
            // Saved even with nothing in it, so the next start knows it is a restart: files
            // that appear while sluice is down are then read whole, whatever start_at says.
            committer.touch();
        }
        let delivery = tokio::spawn(deliver(self.shared.clone(), rx, committer, store, draining));
        if let Ok(mut running) = self.running.lock() {
            *running = Some(Running {
                stop_reading,
                reader: Some(thread),
                drain,
                delivery,
            });
        }
        Ok(())
    }

    /// Stops reading, waits (to `deadline`) for the acknowledgements of what was handed
    /// over so the checkpoint includes it, and saves the checkpoint. What is still held
    /// (partial lines, entries an operator keeps) was never committed and is read again.
    async fn shutdown(&self, deadline: Instant) {
        let Some(mut running) = self.running.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        // The reader stops first. The delivery task closes the hand-over channel as soon as
        // it sees the deadline, so a reader waiting to hand over (the pipeline full) is
        // released at once instead of holding the shutdown until the deadline.
        running.stop_reading.store(true, Ordering::SeqCst);
        let _ = running.drain.send(Some(deadline));
        if let Some(thread) = running.reader.take() {
            let joined = tokio::task::spawn_blocking(move || thread.join());
            if tokio::time::timeout_at(deadline, joined).await.is_err() {
                tracing::warn!(receiver = %self.shared.name, "the reading thread did not stop by the shutdown deadline");
            }
        }
        // Acknowledgements are waited for until the deadline; the final save has its own
        // time after it, whatever the waits above took.
        let abort = running.delivery.abort_handle();
        if tokio::time::timeout_at(deadline + FINAL_SAVE_TIME, running.delivery)
            .await
            .is_err()
        {
            tracing::warn!(receiver = %self.shared.name, "the final checkpoint could not be saved in time; reading resumes from the last one saved");
            abort.abort();
        }
    }
}

/// Resolves at the shutdown deadline (never before shutdown starts): an acknowledgement is
/// waited for until then, so the checkpoint can include it.
async fn until_deadline(draining: &mut watch::Receiver<Option<Instant>>) {
    let deadline = wait_deadline(draining).await;
    tokio::time::sleep_until(deadline).await;
}

async fn wait_deadline(draining: &mut watch::Receiver<Option<Instant>>) -> Instant {
    loop {
        if let Some(deadline) = *draining.borrow() {
            return deadline;
        }
        if draining.changed().await.is_err() {
            return Instant::now();
        }
    }
}

/// Sends batches, tracks their acknowledgements, moves and saves the checkpoints.
async fn deliver(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Handover>,
    mut committer: Committer,
    store: Option<Arc<CheckpointStore>>,
    mut draining: watch::Receiver<Option<Instant>>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, bool)>();
    let mut tasks = JoinSet::new();
    let mut in_flight = 0usize;
    let mut last_save = Instant::now();
    let mut reading = true;
    let mut deadline: Option<Instant> = None;
    loop {
        let save_at = last_save + SAVE_INTERVAL;
        tokio::select! {
            biased;
            Some((seq, accounted)) = done_rx.recv() => {
                in_flight -= 1;
                if accounted {
                    committer.complete(seq);
                }
            }
            handover = rx.recv(), if reading && in_flight < MAX_IN_FLIGHT => match handover {
                Some(h) => {
                    let seq = committer.submit(h.updates, h.marks, h.batch.is_some());
                    if let Some(batch) = h.batch {
                        in_flight += 1;
                        tasks.spawn(send(shared.clone(), batch, seq, done_tx.clone(), draining.clone()));
                    }
                }
                None => reading = false,
            },
            d = wait_deadline(&mut draining), if deadline.is_none() => {
                deadline = Some(d);
                // No more hand-overs: a reader blocked handing one over is released. Those
                // already in the channel are still received and sent.
                rx.close();
            }
            _ = tokio::time::sleep_until(save_at), if committer.is_dirty() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or(save_at)), if deadline.is_some() => {}
        }
        while tasks.try_join_next().is_some() {}
        for (path, record) in committer.advance() {
            delete_file(&shared.name, path, record).await;
        }
        if committer.is_dirty() && (last_save.elapsed() >= SAVE_INTERVAL || deadline.is_some()) {
            save(&shared.name, store.as_ref(), &mut committer).await;
            last_save = Instant::now();
        }
        if let Some(d) = deadline
            && ((in_flight == 0 && !reading) || Instant::now() >= d)
        {
            if in_flight > 0 {
                tracing::warn!(receiver = %shared.name, batches = in_flight, "batches still unacknowledged at the shutdown deadline; they will be read again");
            }
            break;
        }
        if !reading && in_flight == 0 && deadline.is_none() {
            // The reader stopped on its own (its thread ended): wait for the shutdown.
            deadline = Some(wait_deadline(&mut draining).await);
        }
    }
    for (path, record) in committer.advance() {
        delete_file(&shared.name, path, record).await;
    }
    save(&shared.name, store.as_ref(), &mut committer).await;
    tasks.abort_all();
}

async fn save(name: &str, store: Option<&Arc<CheckpointStore>>, committer: &mut Committer) {
    let bytes = committer.snapshot();
    let Some(store) = store.cloned() else { return };
    let result = tokio::task::spawn_blocking(move || store.save(&bytes)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(receiver = %name, error = %e, "cannot save the checkpoint; it is tried again with the next change")
        }
        Err(e) => tracing::warn!(receiver = %name, error = %e, "cannot save the checkpoint"),
    }
}

/// `delete_after_read`: removes a file whose content is all delivered, unless another file
/// now stands at its path.
async fn delete_file(name: &str, path: std::path::PathBuf, record: FileRecord) {
    let name = name.to_string();
    let _ = tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(&path) else { return };
        if record.inode.is_some_and(|i| i != meta.ino()) {
            return;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(receiver = %name, path = %path.display(), "deleted a file read and delivered whole (delete_after_read)"),
            Err(e) => tracing::warn!(receiver = %name, path = %path.display(), error = %e, "cannot delete a read file"),
        }
    })
    .await;
}

/// Delivers one batch until the pipeline takes it, refuses it for good, or the retry policy
/// gives up; reports whether it is accounted for (false: abandoned at shutdown).
async fn send(
    shared: Arc<Shared>,
    batch: Batch<Logs>,
    seq: u64,
    done: mpsc::UnboundedSender<(u64, bool)>,
    mut draining: watch::Receiver<Option<Instant>>,
) {
    let accounted = attempt_until_done(&shared, &batch, &mut draining).await;
    let _ = done.send((seq, accounted));
}

pub(crate) async fn attempt_until_done(
    shared: &Shared,
    batch: &Batch<Logs>,
    draining: &mut watch::Receiver<Option<Instant>>,
) -> bool {
    let Some(consumer) = &shared.consumer else {
        return true;
    };
    let items = batch.items() as u64;
    let mut backoff: Option<Backoff> = None;
    loop {
        let (ack, waiter) = Ack::new();
        let attempt = batch.fork().with_ack(ack);
        let outcome = tokio::select! {
            outcome = async {
                consumer.consume(attempt).await;
                waiter.await
            } => outcome,
            _ = until_deadline(draining) => return false,
        };
        let error = match outcome {
            Ok(()) => {
                shared.accepted.add(items);
                return true;
            }
            Err(DeliveryError::Permanent { reason }) => {
                shared.refused.add(items);
                if let Some(suppressed) = shared.log_limit.allow("refused_for_good") {
                    tracing::warn!(receiver = %shared.name, %reason, items, suppressed, "the pipeline refused log records for good; moving past them");
                }
                return true;
            }
            Err(e) => e,
        };
        if draining.borrow().is_some() {
            return false;
        }
        let hint = match &error {
            DeliveryError::Throttled { retry_after, .. } => Some(*retry_after),
            DeliveryError::Retryable { retry_after, .. } => *retry_after,
            DeliveryError::Permanent { .. } => None,
        };
        let throttled = matches!(error, DeliveryError::Throttled { .. });
        let wait = match (&shared.retry, throttled) {
            // Backpressure is never a failure: wait it out whatever the policy.
            (_, true) => Some(hint.unwrap_or(Duration::from_secs(1))),
            (RetryPolicy::UntilDelivered, false) => backoff
                .get_or_insert_with(|| {
                    Backoff::new(&RetrySettings {
                        enabled: true,
                        initial_interval: sluice_config::Duration::from_secs(1),
                        max_interval: sluice_config::Duration::from_secs(30),
                        max_elapsed_time: sluice_config::Duration(Duration::ZERO),
                        ..RetrySettings::default()
                    })
                })
                .next(hint),
            (RetryPolicy::Configured(r), false) => {
                if r.enabled {
                    backoff
                        .get_or_insert_with(|| {
                            Backoff::new(&RetrySettings {
                                enabled: true,
                                initial_interval: r.initial_interval,
                                max_interval: r.max_interval,
                                max_elapsed_time: r.max_elapsed_time,
                                ..RetrySettings::default()
                            })
                        })
                        .next(hint)
                } else {
                    None
                }
            }
        };
        let Some(wait) = wait else {
            shared.refused.add(items);
            if let Some(suppressed) = shared.log_limit.allow("gave_up") {
                tracing::warn!(receiver = %shared.name, error = %error, items, suppressed, "giving up on log records the pipeline did not take (retry_on_failure); moving past them");
            }
            return true;
        };
        tracing::debug!(receiver = %shared.name, error = %error, ?wait, "the pipeline did not take a batch; retrying");
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wait_deadline(draining) => return false,
        }
    }
}
