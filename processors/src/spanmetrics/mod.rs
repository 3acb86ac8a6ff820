//! The `span_metrics` connector (formerly `spanmetrics`; traces → metrics): a call counter,
//! a duration histogram and optionally a span event counter per service, span name, span kind
//! and status code (plus configured dimensions), named and shaped as the OTel Collector's
//! spanmetrics connector makes them, so request rate, error rate and latency (RED) exist for
//! every service without instrumenting for metrics.
//!
//! Spans are folded into an [`aggregate::Aggregator`] as they arrive and their batches are
//! acknowledged at once: the spans' job ends once they are counted. A ticker sends the
//! accumulated metrics downstream every `metrics_flush_interval` as a batch of its own, and
//! shutdown sends one last time.

mod aggregate;
mod config;
mod exponential;
mod sampling;

#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltStage, ConnectorFactory, Consumer, DynConsumer,
    FactoryInfo, Lifecycle, Metrics, StartError, Traces,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use aggregate::{COLLECTOR_INSTANCE_ID, OVERFLOW_ATTRIBUTE, SCOPE_NAME, SERIES_SAFETY_BOUND};
pub use config::{DurationUnit, Settings, SpanMetricsConfig, Temporality};

use aggregate::Aggregator;

/// This process's `service.instance.id`, the value of the `collector.instance.id`
/// dimension: a random UUID (version 4) made once per process, as the OTel Collector makes
/// one when its telemetry resource does not set it.
pub fn collector_instance_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        // The standard library seeds `RandomState` from the operating system's randomness.
        let random = || RandomState::new().build_hasher().finish();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&random().to_le_bytes());
        bytes[8..].copy_from_slice(&random().to_le_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex = hex::encode(bytes);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    })
}

pub struct SpanMetricsConnectorFactory;

impl ConnectorFactory for SpanMetricsConnectorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "span_metrics",
            aliases: &["spanmetrics"],
            signals: &[SignalKind::Traces],
            description: "counts spans and span events and records span durations as metrics (RED per service)",
        }
    }

    fn pairs(&self) -> &'static [(SignalKind, SignalKind)] {
        &[(SignalKind::Traces, SignalKind::Metrics)]
    }

    fn build(
        &self,
        config: &ComponentConfig,
        _from: SignalKind,
        output: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let settings = config::load(config, &ctx.warnings)?;
        let AnyConsumer::Metrics(output) = output else {
            return Err(Diagnostic::new(
                Some(config.pos.clone()),
                config.path.clone(),
                "spanmetrics produces metrics only",
            )
            .into());
        };
        let connector = Arc::new(SpanMetricsConnector::new(
            settings,
            output,
            &config.id.to_string(),
            ctx,
            Arc::new(system_now),
        ));
        Ok(BuiltStage {
            consumer: AnyConsumer::Traces(connector.clone()),
            lifecycle: Some(connector),
        })
    }
}

/// Nanoseconds since the Unix epoch; injectable so tests control timestamps.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub struct SpanMetricsConnector {
    state: Arc<Mutex<Aggregator>>,
    output: DynConsumer<Metrics>,
    clock: Clock,
    interval: std::time::Duration,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
    overflowed: Counter,
    name: String,
}

impl SpanMetricsConnector {
    pub fn new(
        settings: Settings,
        output: DynConsumer<Metrics>,
        name: &str,
        ctx: &BuildContext,
        clock: Clock,
    ) -> Self {
        let interval = settings.raw.metrics_flush_interval.0;
        let (stop, _) = watch::channel(false);
        SpanMetricsConnector {
            state: Arc::new(Mutex::new(Aggregator::new(
                settings,
                collector_instance_id().to_string(),
            ))),
            output,
            clock,
            interval,
            stop,
            task: Mutex::new(None),
            overflowed: ctx.telemetry.metrics.counter(
                "sluice_spanmetrics_overflow_spans",
                "Data points of spans counted in an overflow series because a cardinality limit was reached",
                &[("connector", name)],
            ),
            name: name.to_string(),
        }
    }

    /// Sends what has accumulated downstream as a new batch (nothing when there is nothing).
    pub async fn flush(&self) {
        flush_into(&self.state, &self.output, &self.clock, &self.name).await;
    }
}

async fn flush_into(
    state: &Mutex<Aggregator>,
    output: &DynConsumer<Metrics>,
    clock: &Clock,
    name: &str,
) {
    let now = clock();
    let resources = match state.lock() {
        Ok(mut agg) => agg.flush(now),
        Err(_) => {
            tracing::error!(connector = %name, "spanmetrics state is poisoned; nothing flushed");
            return;
        }
    };
    if resources.is_empty() {
        return;
    }
    output.consume(Batch::from_resources(resources)).await;
}

#[async_trait]
impl Consumer<Traces> for SpanMetricsConnector {
    async fn consume(&self, batch: Batch<Traces>) {
        let now = (self.clock)();
        let added = match self.state.lock() {
            Ok(mut agg) => agg.add(batch.resources(), now),
            Err(_) => {
                batch.settle(&Err(sluice_pipeline::DeliveryError::retryable(format!(
                    "{}: state is poisoned",
                    self.name
                ))));
                return;
            }
        };
        self.overflowed.add(added.overflowed);
        batch.settle(&Ok(()));
    }

    /// The data's job ends once it is counted (what it becomes is new data).
    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        sluice_pipeline::AckPoint::Memory
    }
}

#[async_trait]
impl Lifecycle for SpanMetricsConnector {
    async fn start(&self) -> Result<(), StartError> {
        let state = self.state.clone();
        let output = self.output.clone();
        let clock = self.clock.clone();
        let name = self.name.clone();
        let interval = self.interval;
        let mut stop = self.stop.subscribe();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => flush_into(&state, &output, &clock, &name).await,
                    _ = stop.changed() => break,
                }
            }
        });
        if let Ok(mut t) = self.task.lock() {
            *t = Some(task);
        }
        Ok(())
    }

    /// Stops the ticker and sends what accumulated since its last tick.
    async fn shutdown(&self, deadline: Instant) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        let _ = tokio::time::timeout_at(deadline, self.flush()).await;
    }
}
