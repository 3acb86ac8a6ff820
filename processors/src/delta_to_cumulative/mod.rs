//! The `deltatocumulative` processor: delta sums, histograms and exponential histograms are
//! added up per stream into cumulative ones. At most `max_streams` streams are tracked (points
//! of new streams past that are dropped and counted), and a stream not seen for `max_stale`
//! is forgotten.

mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Duration, SignalKind};
use sluice_pipeline::config_keys::{decode_section, problem};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    AckPoint, AnyConsumer, Batch, BuildContext, BuiltStage, Consumer, DynConsumer, FactoryInfo,
    Metrics, ProcessorFactory,
};

use state::Accumulator;

/// `processors: deltatocumulative:`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaToCumulativeConfig {
    /// Forget a stream not seen for this long (default 5m; must be above 0).
    #[serde(default)]
    pub max_stale: Option<Duration>,
    /// Streams tracked at most (default: no limit); points of new streams past it are dropped.
    #[serde(default)]
    pub max_streams: Option<i64>,
}

pub struct DeltaToCumulativeProcessorFactory;

impl ProcessorFactory for DeltaToCumulativeProcessorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "deltatocumulative",
            aliases: &["delta_to_cumulative"],
            signals: &[SignalKind::Metrics],
            description: "adds up delta sums and histograms into cumulative ones",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let cfg: DeltaToCumulativeConfig = decode_section(config, &[], &ctx.warnings)?;
        let max_stale = cfg
            .max_stale
            .map(|d| d.0)
            .unwrap_or(std::time::Duration::from_secs(300));
        if max_stale.is_zero() {
            return Err(
                problem(config, "max_stale", "max_stale must be a positive duration").into(),
            );
        }
        let max_streams = match cfg.max_streams {
            Some(n) if n < 0 => {
                return Err(problem(
                    config,
                    "max_streams",
                    format!("max_streams must be a positive number (got {n})"),
                )
                .into());
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let AnyConsumer::Metrics(next) = next else {
            return Err(Diagnostic::new(
                Some(config.pos.clone()),
                config.path.clone(),
                "deltatocumulative only processes metrics; use it in a metrics pipeline",
            )
            .into());
        };
        let name = config.id.to_string();
        let dropped = ctx.telemetry.metrics.counter(
            "sluice_processor_deltatocumulative_dropped_points",
            "Data points dropped: out of order, or of new streams past max_streams",
            &[("processor", &name)],
        );
        Ok(BuiltStage {
            consumer: AnyConsumer::Metrics(Arc::new(DeltaToCumulative {
                next,
                state: Mutex::new(Accumulator::new(max_stale, max_streams)),
                dropped,
                name,
            })),
            lifecycle: None,
        })
    }
}

pub struct DeltaToCumulative {
    next: DynConsumer<Metrics>,
    state: Mutex<Accumulator>,
    dropped: Counter,
    name: String,
}

#[async_trait]
impl Consumer<Metrics> for DeltaToCumulative {
    async fn consume(&self, mut batch: Batch<Metrics>) {
        let (dropped, over_limit) = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state.process(batch.resources_mut())
        };
        if dropped > 0 {
            self.dropped.add(dropped as u64);
        }
        if over_limit {
            tracing::warn!(processor = %self.name, "max_streams reached: points of new streams are dropped until old ones go stale");
        }
        batch.recount();
        self.next.consume(batch).await;
    }

    fn ack_point(&self) -> AckPoint {
        self.next.ack_point()
    }
}
