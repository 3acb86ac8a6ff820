//! The `host_metrics` receiver (formerly `hostmetrics`): CPU, memory, load, disks,
//! filesystems, network, paging, processes, NFS, temperature sensors and uptime of the host,
//! read from `/proc` and `/sys` (under `root_path`) every `collection_interval` and sent as one
//! batch per collection; and the host entity event to logs pipelines.

mod config;
mod cpu;
mod disk;
mod emit;
mod entity;
mod filesystem;
mod hardware;
mod load;
mod memory;
mod network;
mod nfs;
mod paging;
mod process;
mod processes;
mod system;
#[cfg(test)]
mod tests;

pub use config::{HostMetricsConfig, MatchType, Naming};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use procfs::{ExplicitSystemInfo, FromRead};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::config_keys::{ConfigWarnings, decode_section};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, DynConsumer, FactoryInfo, Lifecycle, Logs, Metrics, Receiver,
    ReceiverFactory, ReceiverOutputs, StartError,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::metric_keys::KeyChecker;
use config::{Filter, HostChecks, spec};
use emit::{Emitter, Plan};

pub struct HostMetricsReceiverFactory;

impl ReceiverFactory for HostMetricsReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "hostmetrics",
            aliases: &["host_metrics"],
            signals: &[SignalKind::Metrics, SignalKind::Logs],
            description: "CPU, memory, load, disk, filesystem, network, paging, process, NFS and sensor metrics of the host; the host entity event as logs",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        let cfg: HostMetricsConfig = decode_section(config, config::NO_EFFECT, &ctx.warnings)?;
        let scrapers = ScraperSet::from_config(&cfg, config, &ctx.warnings)?;
        if outputs.metrics.is_none() && outputs.logs.is_none() {
            return Err(Diagnostic::new(
                Some(config.pos.clone()),
                config.path.clone(),
                "hostmetrics produces metrics (and the host entity event as logs); use it in a metrics or logs pipeline",
            )
            .into());
        }
        let name = config.id.to_string();
        let accepted = ctx.telemetry.metrics.counter(
            "otelcol_receiver_accepted_metric_points",
            "Number of metric_points successfully pushed into the pipeline",
            &[("receiver", &name), ("transport", "")],
        );
        Ok(Arc::new(HostMetricsReceiver {
            name,
            interval: cfg.collection_interval.0,
            initial_delay: cfg.initial_delay.0,
            timeout: cfg.timeout.0,
            metadata_interval: cfg.metadata_collection_interval.0,
            scrapers: Arc::new(Mutex::new(scrapers)),
            metrics: outputs.metrics,
            logs: outputs.logs,
            accepted,
            running: Mutex::new(None),
        }))
    }
}

/// Why a scraper produced nothing (or not everything) this time.
#[derive(Debug)]
pub enum ScrapeError {
    Read(String),
    Parse(String),
    /// Some items (processes) could not be read; the others were reported.
    Partial(String),
    /// The collection's `timeout` passed before the scraper started.
    TimedOut,
}

impl ScrapeError {
    fn read(path: &Path, e: impl std::fmt::Display) -> Self {
        ScrapeError::Read(format!("{}: {e}", path.display()))
    }
    fn parse(what: &str, e: impl std::fmt::Display) -> Self {
        ScrapeError::Parse(format!("{what}: {e}"))
    }
}

impl std::fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrapeError::Read(m) => write!(f, "cannot read {m}"),
            ScrapeError::Parse(m) => write!(f, "cannot parse {m}"),
            ScrapeError::Partial(m) => f.write_str(m),
            ScrapeError::TimedOut => f.write_str("not started: the collection's timeout passed"),
        }
    }
}

/// What every scraper of one collection shares: where the host is and when it booted.
pub struct Ctx {
    pub root: PathBuf,
    pub now: u64,
    /// Boot time in nanoseconds since the epoch (0 when unknown).
    pub boot: u64,
    pub ticks_per_second: u64,
    pub page_size: u64,
    stat: Result<String, String>,
}

impl Ctx {
    pub fn new(root: &Path) -> Ctx {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut ctx = Ctx {
            root: root.to_path_buf(),
            now,
            boot: 0,
            ticks_per_second: procfs::ticks_per_second(),
            page_size: procfs::page_size(),
            stat: Err(String::new()),
        };
        let path = ctx.path("proc/stat");
        ctx.stat = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()));
        ctx.boot = ctx.boot_time().unwrap_or(0);
        ctx
    }

    /// `btime` of `/proc/stat`, else now minus `/proc/uptime`.
    fn boot_time(&self) -> Option<u64> {
        if let Ok(stat) = &self.stat
            && let Some(secs) = stat
                .lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(secs.saturating_mul(1_000_000_000));
        }
        let uptime: procfs::Uptime = self.read("proc/uptime").ok()?;
        Some(self.now.saturating_sub(emit::secs_to_nanos(uptime.uptime)))
    }

    /// A path of the host (`rel` without a leading `/`) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    pub fn read<T: FromRead>(&self, rel: &str) -> Result<T, ScrapeError> {
        let path = self.path(rel);
        let text = std::fs::read(&path).map_err(|e| ScrapeError::read(&path, e))?;
        T::from_read(text.as_slice()).map_err(|e| ScrapeError::parse(rel, e))
    }

    pub fn read_string(&self, rel: &str) -> Result<String, ScrapeError> {
        let path = self.path(rel);
        std::fs::read_to_string(&path).map_err(|e| ScrapeError::read(&path, e))
    }

    pub fn stat_text(&self) -> Result<&str, ScrapeError> {
        self.stat
            .as_deref()
            .map_err(|e| ScrapeError::Read(e.clone()))
    }

    pub fn system_info(&self) -> ExplicitSystemInfo {
        ExplicitSystemInfo {
            boot_time_secs: self.boot / 1_000_000_000,
            ticks_per_second: self.ticks_per_second,
            page_size: self.page_size,
            is_little_endian: cfg!(target_endian = "little"),
        }
    }
}

enum Kind {
    Cpu(cpu::CpuScraper),
    Memory,
    Load(bool),
    Disk(Filter),
    Filesystem(Box<filesystem::Filters>),
    Network(Filter),
    Paging,
    Processes,
    Process(Box<process::ProcessScraper>),
    System,
    Nfs,
    Hardware(hardware::HardwareScraper),
}

struct Scraper {
    name: &'static str,
    kind: Kind,
    plan: Plan,
    /// When a failure of this scraper was last logged, and how many went unlogged since.
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
    /// What went wrong in the last collection, if anything.
    last_error: Option<String>,
}

/// How often one scraper's failures are logged; the count of the rest goes with the next line.
const LOG_EVERY: Duration = Duration::from_secs(300);

const SCOPE_PREFIX: &str = "sluice/receiver/hostmetrics/";

/// What one scraper produced in one collection.
pub enum Part {
    /// Metrics of the host, under the scraper's scope.
    Host(ScopeMetrics),
    /// One resource per process.
    Processes(Vec<ResourceMetrics>),
}

/// The host's scopes in one resource (its attributes are left to `resource_detection`),
/// then each process in its own.
pub fn assemble(parts: Vec<Part>) -> Vec<ResourceMetrics> {
    let mut host = Vec::new();
    let mut processes = Vec::new();
    for part in parts {
        match part {
            Part::Host(scope) => host.push(scope),
            Part::Processes(mut p) => processes.append(&mut p),
        }
    }
    let mut resources = Vec::with_capacity(processes.len() + 1);
    if !host.is_empty() {
        resources.push(ResourceMetrics {
            resource: Some(Resource::default()),
            scope_metrics: host,
            ..Default::default()
        });
    }
    resources.extend(processes);
    resources
}

pub struct ScraperSet {
    root: PathBuf,
    naming: Naming,
    scrapers: Vec<Scraper>,
}

impl ScraperSet {
    pub fn from_config(
        cfg: &HostMetricsConfig,
        component: &ComponentConfig,
        warnings: &ConfigWarnings,
    ) -> Result<ScraperSet, ConfigErrors> {
        let mut check = KeyChecker::new(component, warnings);
        cfg.check(&mut check);
        let naming = cfg.attribute_names;
        let s = &cfg.scrapers;
        let mut scrapers = Vec::new();
        let mut add = |name: &'static str, kind: Kind, plan: Plan| {
            scrapers.push(Scraper {
                name,
                kind,
                plan,
                last_logged: None,
                unlogged: 0,
                last_error: None,
            })
        };
        if let Some(c) = &s.cpu {
            let plan = check.metrics("cpu", &c.metrics, cpu::METRICS, naming);
            add("cpu", Kind::Cpu(cpu::CpuScraper::default()), plan);
        }
        if let Some(c) = &s.memory {
            let plan = check.metrics("memory", &c.metrics, memory::METRICS, naming);
            add("memory", Kind::Memory, plan);
        }
        if let Some(c) = &s.load {
            let plan = check.metrics("load", &c.metrics, load::METRICS, naming);
            add("load", Kind::Load(c.cpu_average), plan);
        }
        if let Some(c) = &s.disk {
            let plan = check.metrics("disk", &c.metrics, disk::METRICS, naming);
            let filter = check.filter(
                &["scrapers", "disk"],
                "devices",
                ("include", spec(&c.include)),
                ("exclude", spec(&c.exclude)),
            );
            add("disk", Kind::Disk(filter), plan);
        }
        if let Some(c) = &s.filesystem {
            let plan = check.metrics("filesystem", &c.metrics, filesystem::METRICS, naming);
            let filters = filesystem::Filters::from_config(c, &mut check);
            add("filesystem", Kind::Filesystem(Box::new(filters)), plan);
        }
        if let Some(c) = &s.network {
            let plan = check.metrics("network", &c.metrics, network::METRICS, naming);
            let filter = check.filter(
                &["scrapers", "network"],
                "interfaces",
                ("include", spec(&c.include)),
                ("exclude", spec(&c.exclude)),
            );
            add("network", Kind::Network(filter), plan);
        }
        if let Some(c) = &s.paging {
            let plan = check.metrics("paging", &c.metrics, paging::METRICS, naming);
            add("paging", Kind::Paging, plan);
        }
        if let Some(c) = &s.processes {
            let plan = check.metrics("processes", &c.metrics, processes::METRICS, naming);
            add("processes", Kind::Processes, plan);
        }
        if let Some(c) = &s.process {
            let plan = check.metrics("process", &c.metrics, process::METRICS, naming);
            let scraper = process::ProcessScraper::from_config(c, &mut check, naming);
            add("process", Kind::Process(Box::new(scraper)), plan);
        }
        if let Some(c) = &s.system {
            let plan = check.metrics("system", &c.metrics, system::METRICS, naming);
            add("system", Kind::System, plan);
        }
        if let Some(c) = &s.nfs {
            let plan = check.metrics("nfs", &c.metrics, nfs::METRICS, naming);
            add("nfs", Kind::Nfs, plan);
        }
        if let Some(c) = &s.hardware {
            let plan = check.metrics("hardware", &c.metrics, hardware::METRICS, naming);
            let scraper = hardware::HardwareScraper::from_config(c, &mut check);
            add("hardware", Kind::Hardware(scraper), plan);
        }
        check.errors.into_result(ScraperSet {
            root: PathBuf::from(cfg.root()),
            naming,
            scrapers,
        })
    }

    /// One collection, all of it (tests and callers without a deadline).
    pub fn scrape(&mut self) -> Vec<ResourceMetrics> {
        let mut parts = Vec::new();
        self.scrape_parts(None, &mut |p| parts.push(p));
        assemble(parts)
    }

    /// One collection, each scraper's output handed to `emit` as soon as it is ready, so
    /// that what finished before a timeout can be sent. Scrapers not started by `deadline`
    /// are skipped. A failing scraper is logged and skipped; the others still report.
    pub fn scrape_parts(
        &mut self,
        deadline: Option<std::time::Instant>,
        emit: &mut dyn FnMut(Part),
    ) {
        let ctx = Ctx::new(&self.root);
        for scraper in &mut self.scrapers {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                scraper.failed(ScrapeError::TimedOut);
                continue;
            }
            let mut out = Emitter::new(self.naming, &scraper.plan, ctx.now, ctx.boot);
            let result = match &mut scraper.kind {
                Kind::Cpu(s) => s.scrape(&ctx, &mut out),
                Kind::Memory => memory::scrape(&ctx, &mut out),
                Kind::Load(cpu_average) => load::scrape(&ctx, *cpu_average, &mut out),
                Kind::Disk(filter) => disk::scrape(&ctx, filter, &mut out),
                Kind::Filesystem(filters) => filesystem::scrape(&ctx, filters, &mut out),
                Kind::Network(filter) => network::scrape(&ctx, filter, &mut out),
                Kind::Paging => paging::scrape(&ctx, &mut out),
                Kind::Processes => processes::scrape(&ctx, &mut out),
                Kind::Process(s) => match s.scrape(&ctx, self.naming, &scraper.plan) {
                    Ok((resources, partial)) => {
                        if !resources.is_empty() {
                            emit(Part::Processes(resources));
                        }
                        partial.map_or(Ok(()), Err)
                    }
                    Err(e) => Err(e),
                },
                Kind::System => system::scrape(&ctx, &mut out),
                Kind::Nfs => nfs::scrape(&ctx, &mut out),
                Kind::Hardware(s) => s.scrape(&ctx, &mut out),
            };
            let metrics = out.finish();
            match result {
                Ok(()) => scraper.last_error = None,
                Err(e) => scraper.failed(e),
            }
            if !metrics.is_empty() {
                emit(Part::Host(ScopeMetrics {
                    scope: Some(scope(scraper.name)),
                    metrics,
                    ..Default::default()
                }));
            }
        }
    }

    /// Each scraper's problem in the last collection.
    #[cfg(test)]
    pub fn last_errors(&self) -> Vec<(&'static str, String)> {
        self.scrapers
            .iter()
            .filter_map(|s| Some((s.name, s.last_error.clone()?)))
            .collect()
    }
}

pub(crate) fn scope(scraper: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: format!("{SCOPE_PREFIX}{scraper}"),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

impl Scraper {
    fn failed(&mut self, error: ScrapeError) {
        let due = self.last_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            tracing::warn!(scraper = self.name, error = %error, suppressed = self.unlogged, "hostmetrics scraper failed");
            self.last_logged = Some(std::time::Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
        self.last_error = Some(error.to_string());
    }
}

pub struct HostMetricsReceiver {
    name: String,
    interval: Duration,
    initial_delay: Duration,
    timeout: Duration,
    metadata_interval: Duration,
    scrapers: Arc<Mutex<ScraperSet>>,
    metrics: Option<DynConsumer<Metrics>>,
    logs: Option<DynConsumer<Logs>>,
    accepted: Counter,
    running: Mutex<Option<Running>>,
}

/// The collection tasks of a started receiver and the switch that stops them.
type Running = (watch::Sender<bool>, Vec<JoinHandle<()>>);

#[async_trait]
impl Lifecycle for HostMetricsReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(consumer) = self.metrics.clone() {
            tasks.push(tokio::spawn(collect_loop(
                Collection {
                    name: self.name.clone(),
                    interval: self.interval,
                    initial_delay: self.initial_delay,
                    timeout: self.timeout,
                    scrapers: self.scrapers.clone(),
                    consumer,
                    accepted: self.accepted.clone(),
                },
                stopped.clone(),
            )));
        }
        if let Some(logs) = self.logs.clone() {
            tasks.push(tokio::spawn(entity::event_loop(
                logs,
                self.metadata_interval,
                stopped,
            )));
        }
        if let Ok(mut running) = self.running.lock() {
            *running = Some((stop, tasks));
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let Some((stop, tasks)) = self.running.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let _ = stop.send(true);
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Receiver for HostMetricsReceiver {}

pub(crate) async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

/// What the collection loop needs.
struct Collection {
    name: String,
    interval: Duration,
    initial_delay: Duration,
    timeout: Duration,
    scrapers: Arc<Mutex<ScraperSet>>,
    consumer: DynConsumer<Metrics>,
    accepted: Counter,
}

async fn collect_loop(c: Collection, stopped: watch::Receiver<bool>) {
    let run = async {
        tokio::time::sleep(c.initial_delay).await;
        let mut ticker = tokio::time::interval(c.interval);
        // A scrape that overran (a slow /proc, a blocked pipeline) is not made up for in a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_overrun_logged: Option<std::time::Instant> = None;
        loop {
            ticker.tick().await;
            let (parts, overran) = collect_once(&c).await;
            if overran && last_overrun_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY) {
                tracing::warn!(receiver = %c.name, timeout = ?c.timeout, "hostmetrics collection did not finish within its timeout; sending what finished");
                last_overrun_logged = Some(std::time::Instant::now());
            }
            let resources = assemble(parts);
            if resources.is_empty() {
                continue;
            }
            let batch = Batch::<Metrics>::from_resources(resources);
            let points = batch.items() as u64;
            c.consumer.consume(batch).await;
            c.accepted.add(points);
        }
    };
    tokio::select! {
        _ = run => {}
        _ = until_stopped(stopped) => {}
    }
}

/// One collection on a blocking thread (the reads block), bounded by `timeout` when set:
/// the parts that arrived by then, and whether it overran.
async fn collect_once(c: &Collection) -> (Vec<Part>, bool) {
    let deadline = (!c.timeout.is_zero()).then(|| std::time::Instant::now() + c.timeout);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let set = c.scrapers.clone();
    let name = c.name.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut set = match set.try_lock() {
            Ok(set) => set,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // The previous collection is still stuck in a read (a hung network mount): it
            // keeps the scrapers, and this one is skipped rather than queued behind it.
            Err(TryLockError::WouldBlock) => {
                tracing::debug!(receiver = %name, "previous hostmetrics collection still running; skipped");
                return;
            }
        };
        set.scrape_parts(deadline, &mut |part| {
            let _ = tx.send(part);
        });
    });
    let mut parts = Vec::new();
    let mut overran = false;
    loop {
        let next = match deadline {
            None => rx.recv().await,
            Some(d) => match tokio::time::timeout_at(Instant::from_std(d), rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    overran = true;
                    None
                }
            },
        };
        match next {
            Some(part) => parts.push(part),
            None => break,
        }
    }
    if !overran && let Err(e) = task.await {
        tracing::warn!(receiver = %c.name, error = %e, "hostmetrics collection failed");
    }
    (parts, overran)
}
