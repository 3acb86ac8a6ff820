//! The `threshold` connector: evaluates alert rules on metrics and emits one log record per
//! alert state change (metrics → logs); as metrics → metrics it passes the metrics on
//! unchanged, so one connector can both alert and feed another metrics pipeline.
//!
//! Rules are evaluated on every batch against the data points' own timestamps; a background
//! ticker checks absence and `repeat_interval` on the collector's clock. The state machine
//! lives in [`engine`] and takes time as arguments, so it is tested without timers.

mod config;
mod engine;
mod glob;
mod records;
mod value;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltStage, ConnectorFactory, Consumer, DynConsumer,
    FactoryInfo, Lifecycle, Logs, Metrics, StartError,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use config::Compiled;
pub use config::{Severity, ThresholdConfig};
use engine::{Engine, SelfMetrics};
pub use records::EVENT_NAME;

pub struct ThresholdConnectorFactory;

impl ConnectorFactory for ThresholdConnectorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "threshold",
            aliases: &[],
            signals: &[SignalKind::Metrics, SignalKind::Logs],
            description: "alerts on metric thresholds and absence as log records (metrics→logs); passes metrics through (metrics→metrics)",
        }
    }

    fn pairs(&self) -> &'static [(SignalKind, SignalKind)] {
        &[
            (SignalKind::Metrics, SignalKind::Logs),
            (SignalKind::Metrics, SignalKind::Metrics),
        ]
    }

    fn build(
        &self,
        config: &ComponentConfig,
        from: SignalKind,
        output: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        // Checked for both pairs so a config error is reported whichever side is used.
        let compiled = Compiled::build(config)?;
        let wrong_signal = |what: &str| -> ConfigErrors {
            Diagnostic::new(
                Some(config.pos.clone()),
                config.path.clone(),
                format!("the threshold connector {what}"),
            )
            .into()
        };
        if from != SignalKind::Metrics {
            return Err(wrong_signal("only takes metrics"));
        }
        let next = match output {
            // The pass-through side: the downstream metrics pipelines take the batch as is.
            AnyConsumer::Metrics(_) => {
                return Ok(BuiltStage {
                    consumer: output,
                    lifecycle: None,
                });
            }
            AnyConsumer::Logs(next) => next,
            AnyConsumer::Traces(_) => return Err(wrong_signal("cannot produce traces")),
        };
        let name = config.id.to_string();
        let metrics = SelfMetrics::new(&ctx.telemetry.metrics, &name, &compiled.rules);
        let check_interval = compiled.check_interval;
        let stage = Arc::new(ThresholdStage {
            engine: Arc::new(Mutex::new(Engine::new(&name, compiled, metrics))),
            next,
            clock: Arc::new(system_now),
            check_interval,
            stop: Arc::new(Notify::new()),
            task: Mutex::new(None),
            name,
        });
        Ok(BuiltStage {
            consumer: AnyConsumer::Metrics(stage.clone()),
            lifecycle: Some(stage),
        })
    }
}

/// Unix nanoseconds now.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub struct ThresholdStage {
    engine: Arc<Mutex<Engine>>,
    next: DynConsumer<Logs>,
    clock: Clock,
    check_interval: std::time::Duration,
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
    name: String,
}

async fn send(next: &DynConsumer<Logs>, alerts: Vec<engine::Alert>) {
    if alerts.is_empty() {
        return;
    }
    // Alerts are new data: nobody upstream waits on them, so they carry no acknowledgement.
    next.consume(Batch::from_resources(records::to_logs(&alerts)))
        .await;
}

#[async_trait]
impl Consumer<Metrics> for ThresholdStage {
    async fn consume(&self, batch: Batch<Metrics>) {
        let now = (self.clock)();
        let alerts = match self.engine.lock() {
            Ok(mut engine) => engine.ingest(batch.resources(), now),
            Err(_) => {
                tracing::error!(connector = %self.name, "threshold state is poisoned; batch not evaluated");
                Vec::new()
            }
        };
        // Handing the alerts over first lets a full logs pipeline push back on the metrics.
        send(&self.next, alerts).await;
        batch.settle(&Ok(()));
    }

    /// The data's job ends once it is counted (what it becomes is new data).
    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        sluice_pipeline::AckPoint::Memory
    }
}

#[async_trait]
impl Lifecycle for ThresholdStage {
    async fn start(&self) -> Result<(), StartError> {
        let engine = self.engine.clone();
        let next = self.next.clone();
        let clock = self.clock.clone();
        let stop = self.stop.clone();
        let every = self.check_interval;
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = stop.notified() => return,
                }
                let alerts = match engine.lock() {
                    Ok(mut engine) => engine.tick(clock()),
                    Err(_) => return,
                };
                send(&next, alerts).await;
            }
        });
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
        Ok(())
    }

    async fn shutdown(&self, deadline: Instant) {
        self.stop.notify_one();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
    }
}
