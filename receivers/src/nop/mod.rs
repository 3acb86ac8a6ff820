//! `nop`: a receiver that produces nothing, for configs and benchmarks.
//!
//! A pipeline needs at least one receiver; `nop` fills that place when the data comes from
//! elsewhere (a connector) or when only the rest of the pipeline is being measured.

use std::sync::Arc;

use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, SignalKind};
use sluice_pipeline::{
    BuildContext, FactoryInfo, Lifecycle, Receiver, ReceiverFactory, ReceiverOutputs, decode_config,
};

/// `receivers: nop:`. It takes no settings; any key is an error.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NopReceiverConfig {}

pub struct NopReceiverFactory;

impl ReceiverFactory for NopReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "nop",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "produces nothing (a placeholder receiver)",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        _outputs: ReceiverOutputs,
        _ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        let _: NopReceiverConfig = decode_config(config)?;
        Ok(Arc::new(NopReceiver))
    }
}

/// Holds no outputs: nothing is ever sent, so the pipelines it feeds stay idle.
pub struct NopReceiver;

impl Lifecycle for NopReceiver {}

impl Receiver for NopReceiver {}
