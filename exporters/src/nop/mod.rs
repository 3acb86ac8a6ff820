//! `nop`: an exporter that accepts and discards everything, for measuring the pipeline alone.
//!
//! It bypasses the exporter helper on purpose: a queue, retries and a task per send would be
//! measured along with the pipeline. It still counts what it takes in
//! `otelcol_exporter_sent_*`, so a benchmark can read how much went through.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, SignalKind};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, Consumer, ExporterFactory, FactoryInfo, Logs, Metrics,
    Signal, SignalConsumer, Traces, decode_config,
};

/// `exporters: nop:`. It takes no settings; any key is an error.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NopExporterConfig {}

pub struct NopExporterFactory;

impl ExporterFactory for NopExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "nop",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "acknowledges and discards everything (for measuring the pipeline)",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        _settings: sluice_pipeline::exporter::HelperSettings,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let _: NopExporterConfig = decode_config(config)?;
        let name = config.id.to_string();
        let consumers = signals
            .iter()
            .map(|signal| match signal {
                SignalKind::Traces => discard::<Traces>(&name, ctx),
                SignalKind::Metrics => discard::<Metrics>(&name, ctx),
                SignalKind::Logs => discard::<Logs>(&name, ctx),
            })
            .collect();
        Ok(BuiltExporter {
            consumers,
            lifecycles: Vec::new(),
        })
    }
}

fn discard<S: SignalConsumer>(name: &str, ctx: &BuildContext) -> sluice_pipeline::AnyConsumer {
    let item = S::ITEM_NAME;
    let sent = ctx.telemetry.metrics.counter(
        &format!("otelcol_exporter_sent_{item}"),
        &format!("Number of {item} successfully sent to destination"),
        &[("exporter", name)],
    );
    S::to_any(Arc::new(Discard { sent }))
}

/// Consumes one signal: counts the items and acknowledges the batch as delivered.
struct Discard {
    sent: Counter,
}

#[async_trait]
impl<S: Signal> Consumer<S> for Discard {
    async fn consume(&self, batch: Batch<S>) {
        self.sent.add(batch.items() as u64);
        batch.settle(&Ok(()));
    }

    /// Discarded data is as gone as delivered data: nothing in front needs to wait for it.
    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        sluice_pipeline::AckPoint::Memory
    }
}
