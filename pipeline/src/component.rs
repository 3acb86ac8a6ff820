//! What a component type provides (its factory) and what a built component must do.

use std::sync::Arc;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use tokio::time::Instant;

use crate::consumer::{AnyConsumer, DynConsumer};
use crate::signal::{Logs, Metrics, Traces};
use crate::telemetry::Telemetry;

/// Names and capabilities of a component type, shown by `sluice components`.
#[derive(Clone, Debug)]
pub struct FactoryInfo {
    pub type_name: &'static str,
    /// Other names accepted in configs (the OTel Collector's spellings).
    pub aliases: &'static [&'static str],
    /// Signals a receiver, processor or exporter handles.
    pub signals: &'static [SignalKind],
    pub description: &'static str,
}

impl FactoryInfo {
    pub fn answers_to(&self, type_name: &str) -> bool {
        self.type_name == type_name || self.aliases.contains(&type_name)
    }
}

/// A failure while starting a component (binding a port, opening a file).
#[derive(Debug, thiserror::Error)]
#[error("{component}: {message}")]
pub struct StartError {
    pub component: String,
    pub message: String,
}

impl StartError {
    pub fn new(component: impl Into<String>, message: impl Into<String>) -> Self {
        StartError {
            component: component.into(),
            message: message.into(),
        }
    }
}

/// Start and stop hooks of a built component. `shutdown` must finish its work (flush, drain)
/// by `deadline` where it can; the runtime stops waiting at the deadline.
#[async_trait]
pub trait Lifecycle: Send + Sync {
    async fn start(&self) -> Result<(), StartError> {
        Ok(())
    }
    async fn shutdown(&self, _deadline: Instant) {}
    /// Hands on everything held so far and waits until the next stage has it (a processor) or
    /// it is delivered (an exporter), giving up at `deadline`. The component keeps running.
    /// For hosts that freeze the process between requests (AWS Lambda), where data left in a
    /// buffer would sit until the next request.
    async fn flush(&self, _deadline: Instant) {}
}

/// Everything a factory may use while building.
#[derive(Clone, Default)]
pub struct BuildContext {
    pub telemetry: Telemetry,
    /// Admission control every receiver consults before decoding a request.
    pub admission: crate::admission::Admission,
    /// `file_storage` extensions, for exporters with a persistent sending queue.
    pub storage: crate::storage::StorageExtensions,
    /// Where components note keys they accept but cannot act on.
    pub warnings: crate::config_keys::ConfigWarnings,
}

/// Where a receiver sends each signal: one consumer per signal that some pipeline takes from it.
#[derive(Clone, Default)]
pub struct ReceiverOutputs {
    pub traces: Option<DynConsumer<Traces>>,
    pub metrics: Option<DynConsumer<Metrics>>,
    pub logs: Option<DynConsumer<Logs>>,
}

impl ReceiverOutputs {
    pub fn set(&mut self, consumer: AnyConsumer) {
        match consumer {
            AnyConsumer::Traces(c) => self.traces = Some(c),
            AnyConsumer::Metrics(c) => self.metrics = Some(c),
            AnyConsumer::Logs(c) => self.logs = Some(c),
        }
    }
}

/// A built receiver: one instance per id, feeding every pipeline that lists it.
#[async_trait]
pub trait Receiver: Lifecycle {
    /// Addresses it will listen on, so `sluice validate` can check they can be bound.
    fn listen_addresses(&self) -> Vec<String> {
        Vec::new()
    }
}

pub trait ReceiverFactory: Send + Sync {
    fn info(&self) -> FactoryInfo;
    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors>;
}

/// A built processor or connector: the consumer to put in front of the next stage, and its
/// hooks if it keeps state (a batch buffer to flush, a timer).
pub struct BuiltStage {
    pub consumer: AnyConsumer,
    pub lifecycle: Option<Arc<dyn Lifecycle>>,
}

/// Processors are built once per pipeline, as in the OTel Collector.
pub trait ProcessorFactory: Send + Sync {
    fn info(&self) -> FactoryInfo;
    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors>;
}

/// A built exporter: one consumer per signal asked for, sharing one instance (one file, one
/// connection), and its hooks in shutdown order (they are started in reverse: what the others
/// write into starts first and stops last).
pub struct BuiltExporter {
    pub consumers: Vec<AnyConsumer>,
    pub lifecycles: Vec<Arc<dyn Lifecycle>>,
}

pub trait ExporterFactory: Send + Sync {
    fn info(&self) -> FactoryInfo;
    /// The exporter-common settings (`sending_queue`, `retry_on_failure`, `timeout`) when its
    /// config does not set them.
    fn helper_defaults(&self) -> crate::exporter::HelperSettings {
        crate::exporter::HelperSettings::default()
    }
    /// Builds from the exporter's own keys (`config` without the common ones) and the common
    /// settings the runtime read for it.
    fn build(
        &self,
        config: &ComponentConfig,
        settings: crate::exporter::HelperSettings,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors>;
}

/// Builds an exporter from its whole section: the runtime reads the exporter-common keys,
/// the exporter its own.
pub fn build_exporter(
    factory: &dyn ExporterFactory,
    config: &ComponentConfig,
    signals: &[SignalKind],
    ctx: &BuildContext,
) -> Result<BuiltExporter, ConfigErrors> {
    let (own, settings) = crate::exporter::take_common(config, factory.helper_defaults())?;
    factory.build(&own, settings, signals, ctx)
}

/// Connectors: the exporter of one pipeline and the receiver of another.
pub trait ConnectorFactory: Send + Sync {
    fn info(&self) -> FactoryInfo;
    /// The (from, to) signal pairs it joins.
    fn pairs(&self) -> &'static [(SignalKind, SignalKind)];
    /// Builds the `from` side, sending into `output` (of the `to` signal).
    fn build(
        &self,
        config: &ComponentConfig,
        from: SignalKind,
        output: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors>;
}

/// Every component type the binary knows.
#[derive(Clone, Default)]
pub struct Registry {
    pub receivers: Vec<Arc<dyn ReceiverFactory>>,
    pub processors: Vec<Arc<dyn ProcessorFactory>>,
    pub exporters: Vec<Arc<dyn ExporterFactory>>,
    pub connectors: Vec<Arc<dyn ConnectorFactory>>,
}

impl Registry {
    pub fn receiver(&self, type_name: &str) -> Option<&Arc<dyn ReceiverFactory>> {
        self.receivers
            .iter()
            .find(|f| f.info().answers_to(type_name))
    }
    pub fn processor(&self, type_name: &str) -> Option<&Arc<dyn ProcessorFactory>> {
        self.processors
            .iter()
            .find(|f| f.info().answers_to(type_name))
    }
    pub fn exporter(&self, type_name: &str) -> Option<&Arc<dyn ExporterFactory>> {
        self.exporters
            .iter()
            .find(|f| f.info().answers_to(type_name))
    }
    pub fn connector(&self, type_name: &str) -> Option<&Arc<dyn ConnectorFactory>> {
        self.connectors
            .iter()
            .find(|f| f.info().answers_to(type_name))
    }
}

/// "unknown receiver type `otlpp`; known: otlp, ... (did you mean `otlp`?)".
pub fn unknown_type(config: &ComponentConfig, kind: &str, known: &[FactoryInfo]) -> Diagnostic {
    let mut names: Vec<&str> = known
        .iter()
        .flat_map(|i| std::iter::once(i.type_name).chain(i.aliases.iter().copied()))
        .collect();
    names.sort_unstable();
    let suggestion = sluice_config::suggest(&config.id.type_name, names.iter().copied());
    let mut listing: Vec<&str> = known.iter().map(|i| i.type_name).collect();
    listing.sort_unstable();
    Diagnostic::new(
        Some(config.pos.clone()),
        config.path.clone(),
        format!(
            "unknown {kind} type `{}`; known {kind} types: {}",
            config.id.type_name,
            if listing.is_empty() {
                "none".to_string()
            } else {
                listing.join(", ")
            }
        ),
    )
    .with_suggestion(suggestion)
}

/// Decodes a component's section into its config struct, reporting every problem of the
/// section, not only the first.
pub fn decode_config<T: serde::de::DeserializeOwned>(
    config: &ComponentConfig,
) -> Result<T, ConfigErrors> {
    sluice_config::decode_all(&config.node, &config.path).map_err(ConfigErrors)
}
