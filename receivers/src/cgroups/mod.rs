//! The `cgroups` receiver: container metrics read straight from the cgroup filesystem, for
//! nodes without a Docker socket (containerd, CRI-O) or a DaemonSet that mounts the host.
//! Reads cgroup v2, v1, and hybrid hosts (v1 controllers plus a v2 `unified` hierarchy).

pub(crate) mod builder;
mod config;
mod layout;
mod metrics;
mod read;
#[cfg(test)]
pub(crate) mod tests;

pub use config::{CgroupVersion, CgroupsConfig};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant as StdInstant;

use async_trait::async_trait;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use sluice_config::{ComponentConfig, ConfigErrors};
use sluice_pipeline::config_keys::decode_section;
use sluice_pipeline::{
    Batch, BuildContext, DynConsumer, FactoryInfo, Lifecycle, Metrics, Receiver, ReceiverFactory,
    ReceiverOutputs, SignalKind, StartError,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use layout::{Identity, Layout};

pub struct CgroupsReceiverFactory;

impl ReceiverFactory for CgroupsReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "cgroups",
            aliases: &[],
            signals: &[SignalKind::Metrics],
            description: "container CPU, memory, disk and pids metrics read from cgroup v1/v2 trees",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        // sluice's own receiver: no OTel Collector keys to accept without effect.
        let cfg: CgroupsConfig = decode_section(config, &[], &ctx.warnings)?;
        let cfg = cfg.validate(config)?;
        Ok(Arc::new(CgroupsReceiver {
            name: config.id.to_string(),
            collector: Arc::new(Mutex::new(Collector::new(cfg.mount(), cfg.version))),
            config: cfg,
            output: outputs.metrics,
            running: Mutex::new(None),
        }))
    }
}

pub struct CgroupsReceiver {
    name: String,
    config: CgroupsConfig,
    collector: Arc<Mutex<Collector>>,
    output: Option<DynConsumer<Metrics>>,
    running: Mutex<Option<(watch::Sender<bool>, JoinHandle<()>)>>,
}

impl Receiver for CgroupsReceiver {}

#[async_trait]
impl Lifecycle for CgroupsReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let Some(output) = self.output.clone() else {
            return Ok(());
        };
        let mount = self.config.mount();
        let layout = Layout::detect(&mount, self.config.version);
        if layout.is_empty() {
            // A DaemonSet whose host mount is missing should say so at once, but a cgroup
            // tree can also appear later (a mount that is still being set up): keep trying.
            tracing::warn!(receiver = %self.name, path = %mount.display(), "no cgroup hierarchy found (yet)");
        } else {
            tracing::info!(receiver = %self.name, path = %mount.display(), v1 = ?layout.v1.keys().collect::<Vec<_>>(), v2 = ?layout.v2, "reading cgroups");
        }
        let (stop, mut stopped) = watch::channel(false);
        let collector = self.collector.clone();
        let period = self.config.collection_interval.0;
        let name = self.name.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => return,
                }
                let collector = collector.clone();
                // Many small file reads: kept off the async workers.
                let resources = tokio::task::spawn_blocking(move || {
                    collector
                        .lock()
                        .map(|mut c| c.collect())
                        .unwrap_or_default()
                })
                .await
                .unwrap_or_default();
                tracing::debug!(receiver = %name, containers = resources.len(), "cgroups collected");
                if !resources.is_empty() {
                    output.consume(Batch::from_resources(resources)).await;
                }
            }
        });
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

/// What the receiver remembers of a container between collections.
struct Seen {
    first_seen: u64,
    last_cpu: Option<(f64, StdInstant)>,
}

/// Walks and reads the tree; keeps what rates and start times need.
pub(crate) struct Collector {
    mount: PathBuf,
    version: CgroupVersion,
    seen: HashMap<Identity, Seen>,
}

impl Collector {
    pub(crate) fn new(mount: PathBuf, version: CgroupVersion) -> Self {
        Collector {
            mount,
            version,
            seen: HashMap::new(),
        }
    }

    pub(crate) fn collect(&mut self) -> Vec<ResourceMetrics> {
        self.collect_at(builder::now_nanos(), StdInstant::now())
    }

    fn collect_at(&mut self, now: u64, instant: StdInstant) -> Vec<ResourceMetrics> {
        // Detected on every collection: a hybrid host's `unified` mount or a DaemonSet's host
        // mount may appear after start.
        let layout = Layout::detect(&self.mount, self.version);
        let found = layout::discover(&layout);
        self.seen.retain(|identity, _| found.contains_key(identity));
        let mut resources = Vec::with_capacity(found.len());
        for (identity, dirs) in found {
            let stats = read::read(&dirs);
            if stats.is_empty() {
                continue;
            }
            let seen = self.seen.entry(identity.clone()).or_insert(Seen {
                first_seen: now,
                last_cpu: None,
            });
            let usage = match (stats.cpu_total_s, seen.last_cpu) {
                (Some(total), Some((last, at))) => {
                    let wall = instant.saturating_duration_since(at).as_secs_f64();
                    (wall > 0.0 && total >= last).then(|| (total - last) / wall)
                }
                _ => None,
            };
            seen.last_cpu = stats.cpu_total_s.map(|t| (t, instant));
            resources.push(metrics::resource_metrics(
                &identity,
                &stats,
                usage,
                now,
                seen.first_seen,
            ));
        }
        resources
    }
}
