//! The `resource_detection` processor (alias `resourcedetection`): finds out where the
//! collector runs (environment, host, container, pod, cloud platform) at start-up, within a
//! bounded time, and adds what it found to the resource of everything that passes.

mod attributes;
mod aws;
mod azure;
mod azure_container_apps;
mod clouds;
mod config;
mod consul;
mod container;
mod detection;
mod detectors;
mod docker;
mod dynatrace;
mod elastic_beanstalk;
mod endpoints;
mod env;
mod gcp;
mod heroku;
mod host;
mod http;
mod k8s;
mod kubernetes;
mod lambda;
mod system;
#[cfg(test)]
mod tests;
mod tls;
mod xml;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, SignalKind};
use sluice_pipeline::config_keys::decode_section;
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltStage, Consumer, DynConsumer, FactoryInfo, Lifecycle,
    ProcessorFactory, Signal, SignalConsumer, StartError, WrapConsumer,
};

pub use config::{DetectorKind, HostnameSource, ResourceDetectionConfig, SystemConfig};
use detection::{Detection, stamp, would_change};
use endpoints::Endpoints;
use host::Host;

pub struct ResourceDetectionProcessorFactory;

impl ProcessorFactory for ResourceDetectionProcessorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "resource_detection",
            aliases: &["resourcedetection"],
            signals: &SignalKind::ALL,
            description: "adds attributes of the environment, host, container, pod or cloud platform to resources",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let cfg: ResourceDetectionConfig =
            decode_section(config, config::NO_EFFECT, &ctx.warnings)?;
        let cfg = cfg.validate(config, &ctx.warnings)?;
        let host = Host::real(cfg.root_path.clone());
        let detection = shared_detection(&config.id.to_string(), cfg, host);
        Ok(stage(detection, next))
    }
}

fn stage(detection: Arc<Detection>, next: AnyConsumer) -> BuiltStage {
    let wrapper = Wrapper(detection.clone());
    let Ok(consumer) = next.wrap(&wrapper);
    // Detection runs at start rather than at build: `sluice validate` builds components too
    // and should not read the host or ask a metadata service, and start completes before any
    // receiver accepts data, so no batch passes before the attributes are known. Start waits
    // at most the detection budget (`timeout`, or `retry.max_elapsed_time`).
    BuiltStage {
        consumer,
        lifecycle: Some(Arc::new(Starter(detection))),
    }
}

/// One detection per processor id (and config), shared by every pipeline that lists the
/// processor, as the OTel Collector does: the pipelines see one answer, found once.
fn shared_detection(id: &str, cfg: ResourceDetectionConfig, host: Host) -> Arc<Detection> {
    static SHARED: LazyLock<Mutex<HashMap<String, Weak<Detection>>>> =
        LazyLock::new(Default::default);
    let key = format!("{id}\n{cfg:?}");
    let Ok(mut shared) = SHARED.lock() else {
        return Arc::new(Detection::new(id, cfg, host, Endpoints::default()));
    };
    if let Some(existing) = shared.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    // Entries of stopped services (after a reload) would otherwise pile up.
    shared.retain(|_, d| d.strong_count() > 0);
    let detection = Arc::new(Detection::new(id, cfg, host, Endpoints::default()));
    shared.insert(key, Arc::downgrade(&detection));
    detection
}

struct Wrapper(Arc<Detection>);

impl WrapConsumer for Wrapper {
    type Error = std::convert::Infallible;
    fn wrap<S: Signal + SignalConsumer>(
        &self,
        next: DynConsumer<S>,
    ) -> Result<DynConsumer<S>, Self::Error> {
        Ok(Arc::new(ResourceDetectionProcessor {
            detection: self.0.clone(),
            next,
        }))
    }
}

struct Starter(Arc<Detection>);

#[async_trait]
impl Lifecycle for Starter {
    async fn start(&self) -> Result<(), StartError> {
        self.0
            .start()
            .await
            .map_err(|e| StartError::new(self.0.name.clone(), e))
    }

    async fn shutdown(&self, _deadline: tokio::time::Instant) {
        self.0.stop();
    }
}

pub struct ResourceDetectionProcessor<S: Signal> {
    detection: Arc<Detection>,
    next: DynConsumer<S>,
}

#[async_trait]
impl<S: Signal> Consumer<S> for ResourceDetectionProcessor<S> {
    async fn consume(&self, mut batch: Batch<S>) {
        let attrs = self.detection.attributes().await;
        let override_existing = self.detection.cfg.override_existing;
        let changes = batch
            .resources()
            .iter()
            .any(|r| would_change(S::resource(r), &attrs, override_existing));
        if changes {
            for r in batch.resources_mut() {
                stamp(S::resource_mut(r), &attrs, override_existing);
            }
            // Queues downstream are measured in bytes; the added attributes count.
            batch.recount();
        }
        // The batch, acknowledgements included, always goes on.
        self.next.consume(batch).await;
    }

    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        self.next.ack_point()
    }
}
