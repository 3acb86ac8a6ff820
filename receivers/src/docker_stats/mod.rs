//! The `docker_stats` receiver: per-container metrics from the Docker Engine API, and container
//! lifecycle events as log records. Containers are found by a listing at start and then by the
//! daemon's event stream, so they are picked up and dropped without waiting for a poll; the
//! stream is re-opened with backoff when the daemon restarts.

mod config;
mod events;
mod metrics;
mod poll;
mod state;
#[cfg(test)]
mod tests;
mod watch;

pub use config::{ApiVersion, DockerStatsConfig, Naming};

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::Docker;
use sluice_config::{ComponentConfig, ConfigErrors};
use sluice_pipeline::config_keys::decode_section;
use sluice_pipeline::{
    BuildContext, DynConsumer, FactoryInfo, Lifecycle, Logs, Metrics, Receiver, ReceiverFactory,
    ReceiverOutputs, SignalKind, StartError,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use config::Settings;
use state::Containers;

pub struct DockerStatsReceiverFactory;

impl ReceiverFactory for DockerStatsReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "docker_stats",
            aliases: &[],
            signals: &[SignalKind::Metrics, SignalKind::Logs],
            description: "container metrics from the Docker Engine API, lifecycle events as logs",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        let cfg: DockerStatsConfig = decode_section(config, &[], &ctx.warnings)?;
        let settings = cfg.validate(config, &ctx.warnings)?;
        Ok(Arc::new(DockerStatsReceiver {
            shared: Arc::new(Shared {
                name: config.id.to_string(),
                settings,
                containers: Mutex::new(Containers::new()),
                client: Mutex::new(None),
                metrics: outputs.metrics,
                logs: outputs.logs,
            }),
            running: Mutex::new(None),
        }))
    }
}

/// What the watcher and the poller share.
pub(crate) struct Shared {
    name: String,
    settings: Settings,
    containers: Mutex<Containers>,
    /// The connection the watcher last made; `None` while the daemon is unreachable.
    client: Mutex<Option<Docker>>,
    metrics: Option<DynConsumer<Metrics>>,
    logs: Option<DynConsumer<Logs>>,
}

impl Shared {
    fn client(&self) -> Option<Docker> {
        self.client.lock().ok().and_then(|c| c.clone())
    }

    fn set_client(&self, client: Option<Docker>) {
        if let Ok(mut c) = self.client.lock() {
            *c = client;
        }
    }
}

/// The stop signal and the watcher and poller tasks of a started receiver.
type Running = (tokio::sync::watch::Sender<bool>, Vec<JoinHandle<()>>);

pub struct DockerStatsReceiver {
    shared: Arc<Shared>,
    running: Mutex<Option<Running>>,
}

impl Receiver for DockerStatsReceiver {}

#[async_trait]
impl Lifecycle for DockerStatsReceiver {
    /// Starts without waiting for the daemon: a collector that boots before Docker (or while
    /// it restarts) connects as soon as the socket answers.
    async fn start(&self) -> Result<(), StartError> {
        if self.shared.metrics.is_none() && self.shared.logs.is_none() {
            return Ok(());
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tasks = vec![
            tokio::spawn(watch::run(self.shared.clone(), stopped.clone())),
            tokio::spawn(poll::run(self.shared.clone(), stopped)),
        ];
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
        let aborts: Vec<_> = tasks.iter().map(|t| t.abort_handle()).collect();
        if tokio::time::timeout_at(deadline, futures::future::join_all(tasks))
            .await
            .is_err()
        {
            for abort in aborts {
                abort.abort();
            }
        }
        self.shared.set_client(None);
    }
}

/// A future that completes once shutdown is signalled.
pub(crate) async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
