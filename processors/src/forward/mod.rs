//! The `forward` connector: passes data unchanged from one pipeline into others of the same
//! signal (e.g. a shared pre-processing pipeline feeding several export pipelines).

use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, SignalKind};
use sluice_pipeline::{
    AnyConsumer, BuildContext, BuiltStage, ConnectorFactory, FactoryInfo, decode_config,
};

/// `connectors: forward:` takes no settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {}

pub struct ForwardConnectorFactory;

impl ConnectorFactory for ForwardConnectorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "forward",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "passes data from one pipeline to others of the same signal",
        }
    }

    fn pairs(&self) -> &'static [(SignalKind, SignalKind)] {
        &[
            (SignalKind::Traces, SignalKind::Traces),
            (SignalKind::Metrics, SignalKind::Metrics),
            (SignalKind::Logs, SignalKind::Logs),
        ]
    }

    fn build(
        &self,
        config: &ComponentConfig,
        _from: SignalKind,
        output: AnyConsumer,
        _ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let _: ForwardConfig = decode_config(config)?;
        // The downstream pipelines' fan-out is already the consumer this side needs.
        Ok(BuiltStage {
            consumer: output,
            lifecycle: None,
        })
    }
}
