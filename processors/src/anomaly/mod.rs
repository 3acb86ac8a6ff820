//! The `anomaly` connector (metrics → logs, and metrics → metrics for the forecast band):
//! learns a baseline per series as points stream in and emits an alert event when points
//! leave the expected band, and a resolution when they return. No training step; bounded
//! memory (a fixed-size state per series, a cap on series).
//!
//! The service builds one instance per output signal, each with its own state; both see the
//! same points in the same order and the model is deterministic, so the forecast gauges
//! describe exactly the band the events were judged against. Incoming batches are
//! acknowledged once evaluated: their job ends there, and what the connector emits is new
//! data, sent downstream as a batch of its own.

mod config;
mod model;
mod output;
mod series;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::telemetry::{Counter, Gauge};
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltStage, ConnectorFactory, Consumer, DeliveryError,
    DynConsumer, FactoryInfo, Logs, Metrics,
};

pub use config::AnomalyConfig;
pub use model::{Evaluation, Event, HUBER_K, MAD_TO_SIGMA, Model, Params, Side};
pub use output::{EVENT_NAME, SCOPE_NAME};

use series::Detector;

pub struct AnomalyConnectorFactory;

impl ConnectorFactory for AnomalyConnectorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "anomaly",
            aliases: &[],
            signals: &[SignalKind::Metrics],
            description: "learns a baseline per metric series and emits alert events (and optionally forecast gauges) when points leave the expected range",
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
        _from: SignalKind,
        output: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let cfg = config::load(config)?;
        let output = match output {
            AnyConsumer::Logs(c) => Output::Events(c),
            AnyConsumer::Metrics(c) if cfg.forecast => Output::Forecast(c),
            AnyConsumer::Metrics(_) => {
                let pos = config
                    .node
                    .get_path(["forecast"])
                    .map_or_else(|| config.pos.clone(), |n| n.pos.clone());
                return Err(Diagnostic::new(
                    Some(pos),
                    format!("{}.forecast", config.path),
                    "this connector feeds a metrics pipeline, which only gets the forecast gauges: set `forecast: true`",
                )
                .into());
            }
            AnyConsumer::Traces(_) => {
                return Err(Diagnostic::new(
                    Some(config.pos.clone()),
                    config.path.clone(),
                    "the anomaly connector produces logs and metrics only",
                )
                .into());
            }
        };
        let name = config.id.to_string();
        let connector = AnomalyConnector::new(&cfg, &name, output, ctx);
        Ok(BuiltStage {
            consumer: AnyConsumer::Metrics(Arc::new(connector)),
            lifecycle: None,
        })
    }
}

pub enum Output {
    Events(DynConsumer<Logs>),
    Forecast(DynConsumer<Metrics>),
}

pub struct AnomalyConnector {
    detector: Mutex<Detector>,
    output: Output,
    rule: String,
    name: String,
    refused: Counter,
    forgotten: Counter,
    series: Gauge,
    firing: Gauge,
}

impl AnomalyConnector {
    pub fn new(cfg: &AnomalyConfig, name: &str, output: Output, ctx: &BuildContext) -> Self {
        let signal = match output {
            Output::Events(_) => "logs",
            Output::Forecast(_) => "metrics",
        };
        let labels = [("connector", name), ("signal", signal)];
        AnomalyConnector {
            detector: Mutex::new(Detector::new(
                Params::from_config(cfg),
                cfg.metrics.clone(),
                cfg.max_series,
                u64::try_from(cfg.forget_after.0.as_nanos()).unwrap_or(u64::MAX),
            )),
            output,
            rule: if cfg.name.is_empty() {
                name.to_string()
            } else {
                cfg.name.clone()
            },
            name: name.to_string(),
            refused: ctx.telemetry.metrics.counter(
                "sluice_anomaly_series_dropped",
                "Data points of new series not evaluated because max_series series are tracked",
                &labels,
            ),
            forgotten: ctx.telemetry.metrics.counter(
                "sluice_anomaly_series_forgotten",
                "Series forgotten after forget_after without a point",
                &labels,
            ),
            series: ctx.telemetry.metrics.gauge(
                "sluice_anomaly_series",
                "Series the anomaly connector tracks",
                &labels,
            ),
            firing: ctx.telemetry.metrics.gauge(
                "sluice_anomaly_alerts_firing",
                "Series whose anomaly alert is firing now",
                &labels,
            ),
        }
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[async_trait]
impl Consumer<Metrics> for AnomalyConnector {
    async fn consume(&self, batch: Batch<Metrics>) {
        let input = batch.resources();
        let evaluated = match self.detector.lock() {
            Ok(mut detector) => {
                let (found, counts) = detector.process(input);
                self.series
                    .set(i64::try_from(detector.series_count()).unwrap_or(i64::MAX));
                let changed = counts.forgotten > 0
                    || found
                        .iter()
                        .flat_map(|r| r.findings.iter())
                        .any(|f| f.evaluation.event.is_some());
                if changed {
                    self.firing
                        .set(i64::try_from(detector.firing_count()).unwrap_or(i64::MAX));
                }
                Some((found, counts))
            }
            Err(_) => None,
        };
        let Some((found, counts)) = evaluated else {
            batch.settle(&Err(DeliveryError::retryable(format!(
                "{}: state is poisoned",
                self.name
            ))));
            return;
        };
        self.refused.add(counts.refused);
        self.forgotten.add(counts.forgotten);
        match &self.output {
            Output::Events(next) => {
                let logs = output::events(input, &found, &self.rule, now_nanos());
                batch.settle(&Ok(()));
                if !logs.is_empty() {
                    next.consume(Batch::from_resources(logs)).await;
                }
            }
            Output::Forecast(next) => {
                let metrics = output::forecasts(input, &found);
                batch.settle(&Ok(()));
                if !metrics.is_empty() {
                    next.consume(Batch::from_resources(metrics)).await;
                }
            }
        }
    }

    /// The data's job ends once it is counted (what it becomes is new data).
    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        sluice_pipeline::AckPoint::Memory
    }
}
