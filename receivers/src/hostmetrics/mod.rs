//! The `hostmetrics` receiver: CPU, memory, load, disks, filesystems, network, paging,
//! processes and uptime of the host, read from `/proc` (under `root_path`) every
//! `collection_interval` and sent as one batch per collection.

mod config;
mod cpu;
mod disk;
mod emit;
mod filesystem;
mod load;
mod memory;
mod network;
mod paging;
mod process;
mod processes;
mod system;
#[cfg(test)]
mod tests;

pub use config::{HostMetricsConfig, MatchType, Naming};

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use procfs::{ExplicitSystemInfo, FromRead};
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, DynConsumer, FactoryInfo, Lifecycle, Metrics, Receiver, ReceiverFactory,
    ReceiverOutputs, StartError, decode_config,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use config::{Checker, Filter};
use emit::Emitter;

pub struct HostMetricsReceiverFactory;

impl ReceiverFactory for HostMetricsReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "hostmetrics",
            aliases: &[],
            signals: &[SignalKind::Metrics],
            description: "CPU, memory, load, disk, filesystem, network, paging and process metrics of the host",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        let cfg: HostMetricsConfig = decode_config(config)?;
        let scrapers = ScraperSet::from_config(&cfg, config)?;
        let Some(consumer) = outputs.metrics else {
            return Err(Diagnostic::new(
                Some(config.pos.clone()),
                config.path.clone(),
                "hostmetrics only produces metrics; use it in a metrics pipeline",
            )
            .into());
        };
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
            scrapers: Arc::new(Mutex::new(scrapers)),
            consumer,
            accepted,
            running: Mutex::new(None),
        }))
    }
}

/// Why a scraper produced nothing this time.
#[derive(Debug)]
pub enum ScrapeError {
    Read(String),
    Parse(String),
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
}

struct Scraper {
    name: &'static str,
    kind: Kind,
    enabled: HashSet<&'static str>,
    /// When a failure of this scraper was last logged, and how many went unlogged since.
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

/// How often one scraper's failures are logged; the count of the rest goes with the next line.
const LOG_EVERY: Duration = Duration::from_secs(300);

const SCOPE_PREFIX: &str = "sluice/receiver/hostmetrics/";

pub struct ScraperSet {
    root: PathBuf,
    naming: Naming,
    scrapers: Vec<Scraper>,
}

impl ScraperSet {
    pub fn from_config(
        cfg: &HostMetricsConfig,
        component: &ComponentConfig,
    ) -> Result<ScraperSet, ConfigErrors> {
        let mut check = Checker::new(component);
        cfg.check(&mut check);
        let s = &cfg.scrapers;
        let mut scrapers = Vec::new();
        let mut add = |name: &'static str, kind: Kind, enabled: HashSet<&'static str>| {
            scrapers.push(Scraper {
                name,
                kind,
                enabled,
                last_logged: None,
                unlogged: 0,
            })
        };
        if let Some(c) = &s.cpu {
            let on = check.metrics("cpu", &c.metrics, cpu::METRICS);
            add("cpu", Kind::Cpu(cpu::CpuScraper::default()), on);
        }
        if let Some(c) = &s.memory {
            let on = check.metrics("memory", &c.metrics, memory::METRICS);
            add("memory", Kind::Memory, on);
        }
        if let Some(c) = &s.load {
            let on = check.metrics("load", &c.metrics, load::METRICS);
            add("load", Kind::Load(c.cpu_average), on);
        }
        if let Some(c) = &s.disk {
            let on = check.metrics("disk", &c.metrics, disk::METRICS);
            let spec = |f: &Option<config::DeviceFilter>| {
                f.as_ref().map(|f| (f.devices.clone(), f.match_type))
            };
            let (inc, exc) = (spec(&c.include), spec(&c.exclude));
            let filter = check.filter(
                &["scrapers", "disk"],
                "devices",
                inc.as_ref().map(|(v, m)| (v.as_slice(), *m)),
                "include",
                exc.as_ref().map(|(v, m)| (v.as_slice(), *m)),
                "exclude",
            );
            add("disk", Kind::Disk(filter), on);
        }
        if let Some(c) = &s.filesystem {
            let on = check.metrics("filesystem", &c.metrics, filesystem::METRICS);
            let filters = filesystem::Filters::from_config(c, &mut check);
            add("filesystem", Kind::Filesystem(Box::new(filters)), on);
        }
        if let Some(c) = &s.network {
            let on = check.metrics("network", &c.metrics, network::METRICS);
            let spec = |f: &Option<config::InterfaceFilter>| {
                f.as_ref().map(|f| (f.interfaces.clone(), f.match_type))
            };
            let (inc, exc) = (spec(&c.include), spec(&c.exclude));
            let filter = check.filter(
                &["scrapers", "network"],
                "interfaces",
                inc.as_ref().map(|(v, m)| (v.as_slice(), *m)),
                "include",
                exc.as_ref().map(|(v, m)| (v.as_slice(), *m)),
                "exclude",
            );
            add("network", Kind::Network(filter), on);
        }
        if let Some(c) = &s.paging {
            let on = check.metrics("paging", &c.metrics, paging::METRICS);
            add("paging", Kind::Paging, on);
        }
        if let Some(c) = &s.processes {
            let on = check.metrics("processes", &c.metrics, processes::METRICS);
            add("processes", Kind::Processes, on);
        }
        if let Some(c) = &s.process {
            let on = check.metrics("process", &c.metrics, process::METRICS);
            let scraper = process::ProcessScraper::from_config(c, &mut check);
            add("process", Kind::Process(Box::new(scraper)), on);
        }
        if let Some(c) = &s.system {
            let on = check.metrics("system", &c.metrics, system::METRICS);
            add("system", Kind::System, on);
        }
        check.errors.into_result(ScraperSet {
            root: PathBuf::from(&cfg.root_path),
            naming: cfg.attribute_names,
            scrapers,
        })
    }

    /// One collection: every scraper's metrics, the host's in one resource (its attributes are
    /// left to `resource_detection`), each process in its own. A failing scraper is logged and
    /// skipped; the others still report.
    pub fn scrape(&mut self) -> Vec<ResourceMetrics> {
        let ctx = Ctx::new(&self.root);
        let mut host = Vec::new();
        let mut processes = Vec::new();
        for scraper in &mut self.scrapers {
            let mut out = Emitter::new(self.naming, &scraper.enabled, ctx.now, ctx.boot);
            let result = match &mut scraper.kind {
                Kind::Cpu(s) => s.scrape(&ctx, &mut out),
                Kind::Memory => memory::scrape(&ctx, &mut out),
                Kind::Load(cpu_average) => load::scrape(&ctx, *cpu_average, &mut out),
                Kind::Disk(filter) => disk::scrape(&ctx, filter, &mut out),
                Kind::Filesystem(filters) => filesystem::scrape(&ctx, filters, &mut out),
                Kind::Network(filter) => network::scrape(&ctx, filter, &mut out),
                Kind::Paging => paging::scrape(&ctx, &mut out),
                Kind::Processes => processes::scrape(&ctx, &mut out),
                Kind::Process(s) => s
                    .scrape(&ctx, self.naming, &scraper.enabled)
                    .map(|resources| processes = resources),
                Kind::System => system::scrape(&ctx, &mut out),
            };
            let metrics = out.finish();
            if let Err(e) = result {
                scraper.failed(&e);
            }
            if !metrics.is_empty() {
                host.push(ScopeMetrics {
                    scope: Some(scope(scraper.name)),
                    metrics,
                    ..Default::default()
                });
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
}

pub(crate) fn scope(scraper: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: format!("{SCOPE_PREFIX}{scraper}"),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

impl Scraper {
    fn failed(&mut self, error: &ScrapeError) {
        let due = self.last_logged.is_none_or(|at| at.elapsed() >= LOG_EVERY);
        if due {
            tracing::warn!(scraper = self.name, error = %error, suppressed = self.unlogged, "hostmetrics scraper failed");
            self.last_logged = Some(std::time::Instant::now());
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
    }
}

pub struct HostMetricsReceiver {
    name: String,
    interval: Duration,
    initial_delay: Duration,
    scrapers: Arc<Mutex<ScraperSet>>,
    consumer: DynConsumer<Metrics>,
    accepted: Counter,
    running: Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

#[async_trait]
impl Lifecycle for HostMetricsReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(collect_loop(
            self.name.clone(),
            self.interval,
            self.initial_delay,
            self.scrapers.clone(),
            self.consumer.clone(),
            self.accepted.clone(),
            stopped,
        ));
        if let Ok(mut running) = self.running.lock() {
            *running = Some((stop, task));
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        let Some((stop, task)) = self.running.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        let _ = stop.send(true);
        let abort = task.abort_handle();
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            abort.abort();
        }
    }
}

impl Receiver for HostMetricsReceiver {}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

async fn collect_loop(
    name: String,
    interval: Duration,
    initial_delay: Duration,
    scrapers: Arc<Mutex<ScraperSet>>,
    consumer: DynConsumer<Metrics>,
    accepted: Counter,
    stopped: watch::Receiver<bool>,
) {
    let run = async {
        tokio::time::sleep(initial_delay).await;
        let mut ticker = tokio::time::interval(interval);
        // A scrape that overran (a slow /proc, a blocked pipeline) is not made up for in a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let set = scrapers.clone();
            // /proc reads block; they must not hold up the runtime's workers.
            let scraped = tokio::task::spawn_blocking(move || match set.lock() {
                Ok(mut set) => set.scrape(),
                Err(_) => Vec::new(),
            })
            .await;
            let resources = match scraped {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(receiver = %name, error = %e, "hostmetrics collection failed");
                    continue;
                }
            };
            if resources.is_empty() {
                continue;
            }
            let batch = Batch::<Metrics>::from_resources(resources);
            let points = batch.items() as u64;
            consumer.consume(batch).await;
            accepted.add(points);
        }
    };
    tokio::select! {
        _ = run => {}
        _ = until_stopped(stopped) => {}
    }
}
