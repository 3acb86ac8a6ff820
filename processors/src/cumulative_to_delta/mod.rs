//! The `cumulativetodelta` processor: cumulative monotonic sums, histograms and exponential
//! histograms become deltas between consecutive points of each stream. State per stream is
//! bounded (the least recently seen streams go first) and expires after `max_staleness`.

mod config;
mod state;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    AckPoint, AnyConsumer, Batch, BuildContext, BuiltStage, Consumer, DynConsumer, FactoryInfo,
    Metrics, ProcessorFactory,
};

pub use config::CumulativeToDeltaConfig;
use state::Tracker;

pub struct CumulativeToDeltaProcessorFactory;

impl ProcessorFactory for CumulativeToDeltaProcessorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "cumulativetodelta",
            aliases: &["cumulative_to_delta"],
            signals: &[SignalKind::Metrics],
            description: "turns cumulative sums and histograms into deltas",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let settings = config::decode(config, &ctx.warnings)?;
        let AnyConsumer::Metrics(next) = next else {
            return Err(Diagnostic::new(
                Some(config.pos.clone()),
                config.path.clone(),
                "cumulativetodelta only processes metrics; use it in a metrics pipeline",
            )
            .into());
        };
        let name = config.id.to_string();
        let dropped = ctx.telemetry.metrics.counter(
            "sluice_processor_cumulativetodelta_dropped_points",
            "Data points held back: first points of a stream, out-of-order points",
            &[("processor", &name)],
        );
        Ok(BuiltStage {
            consumer: AnyConsumer::Metrics(Arc::new(CumulativeToDelta {
                next,
                tracker: Mutex::new(Tracker::new(settings)),
                dropped,
            })),
            lifecycle: None,
        })
    }
}

pub struct CumulativeToDelta {
    next: DynConsumer<Metrics>,
    tracker: Mutex<Tracker>,
    dropped: Counter,
}

#[async_trait]
impl Consumer<Metrics> for CumulativeToDelta {
    async fn consume(&self, mut batch: Batch<Metrics>) {
        let dropped = {
            let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
            tracker.process(batch.resources_mut())
        };
        if dropped > 0 {
            self.dropped.add(dropped as u64);
        }
        batch.recount();
        self.next.consume(batch).await;
    }

    fn ack_point(&self) -> AckPoint {
        self.next.ack_point()
    }
}
