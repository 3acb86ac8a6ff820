//! The `attributes` processor (edits span, log-record and data-point attributes, optionally
//! only on items selected by `include`/`exclude`) and the `resource` processor (the same
//! actions on resource attributes).

mod actions;
mod config;
mod items;
mod matching;
mod value;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, SignalKind};
use sluice_pipeline::metadata::ClientMetadata;
use sluice_pipeline::proto::common::v1::KeyValue;
use sluice_pipeline::proto::resource::v1::Resource;
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltStage, Consumer, DynConsumer, FactoryInfo, Logs,
    Metrics, ProcessorFactory, Signal, SignalConsumer, Traces, WrapConsumer,
};

use actions::{Action, apply_all, reads_context};
use items::AttributeItems;
use matching::Selector;

pub use config::{ActionConfig, AttributesConfig, MatchConfig, ResourceConfig};

pub struct AttributesProcessorFactory;

impl ProcessorFactory for AttributesProcessorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "attributes",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "inserts, updates, deletes, hashes, extracts and converts span, \
                          log-record and data-point attributes",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let mut settings = config::attributes_settings(config, &ctx.warnings)?;
        settings.check_signal(next.signal(), &ctx.warnings)?;
        let shared = Arc::new(Shared {
            actions: settings.actions,
            selector: settings.selector,
        });
        // Item access differs per signal (`AttributeItems`), which `WrapConsumer` cannot ask
        // for, so the three arms name the signal and share one generic processor.
        let consumer = match next {
            AnyConsumer::Traces(next) => AnyConsumer::Traces(wrap::<Traces>(next, &shared)),
            AnyConsumer::Metrics(next) => AnyConsumer::Metrics(wrap::<Metrics>(next, &shared)),
            AnyConsumer::Logs(next) => AnyConsumer::Logs(wrap::<Logs>(next, &shared)),
        };
        Ok(BuiltStage {
            consumer,
            lifecycle: None,
        })
    }
}

struct Shared {
    actions: Vec<Action>,
    selector: Selector,
}

fn wrap<S: AttributeItems + SignalConsumer>(
    next: DynConsumer<S>,
    shared: &Arc<Shared>,
) -> DynConsumer<S> {
    Arc::new(AttributesProcessor {
        next,
        shared: shared.clone(),
    })
}

pub struct AttributesProcessor<S: Signal> {
    next: DynConsumer<S>,
    shared: Arc<Shared>,
}

impl<S: AttributeItems> AttributesProcessor<S> {
    /// Applies the actions to every selected item; true when anything changed.
    fn process(&self, resources: &mut [S::Resource], context: Option<&ClientMetadata>) -> bool {
        let Shared { actions, selector } = &*self.shared;
        let mut changed = false;
        S::for_each_item(resources, &mut |ctx, attrs| {
            if selector.selects(ctx, attrs) {
                changed |= apply_all(actions, attrs, context);
            }
        });
        changed
    }
}

#[async_trait]
impl<S: AttributeItems> Consumer<S> for AttributesProcessor<S> {
    async fn consume(&self, mut batch: Batch<S>) {
        // Copied out only when an action reads it: the resources are borrowed mutably below.
        let context = reads_context(&self.shared.actions)
            .then(|| batch.metadata().cloned())
            .flatten();
        if self.process(batch.resources_mut(), context.as_ref()) {
            // Sizes changed (a hash is longer than most values): queues measure bytes.
            batch.recount();
        }
        self.next.consume(batch).await;
    }

    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        self.next.ack_point()
    }
}

pub struct ResourceProcessorFactory;

impl ProcessorFactory for ResourceProcessorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "resource",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "inserts, updates, deletes, hashes, extracts and converts resource \
                          attributes",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let actions = Arc::new(config::resource_actions(config, &ctx.warnings)?);
        let consumer = next.wrap(&ResourceWrapper { actions })?;
        Ok(BuiltStage {
            consumer,
            lifecycle: None,
        })
    }
}

struct ResourceWrapper {
    actions: Arc<Vec<Action>>,
}

impl WrapConsumer for ResourceWrapper {
    type Error = ConfigErrors;
    fn wrap<S: Signal + SignalConsumer>(
        &self,
        next: DynConsumer<S>,
    ) -> Result<DynConsumer<S>, ConfigErrors> {
        Ok(Arc::new(ResourceProcessor {
            next,
            actions: self.actions.clone(),
        }))
    }
}

pub struct ResourceProcessor<S: Signal> {
    next: DynConsumer<S>,
    actions: Arc<Vec<Action>>,
}

impl<S: Signal> ResourceProcessor<S> {
    fn process(&self, resources: &mut [S::Resource], context: Option<&ClientMetadata>) -> bool {
        let mut changed = false;
        for r in resources {
            let slot = S::resource_mut(r);
            match slot {
                Some(resource) => {
                    changed |= apply_all(&self.actions, &mut resource.attributes, context)
                }
                None => {
                    // Data sent without a resource still gets inserted attributes; the
                    // resource is only created when an action added something.
                    let mut attributes: Vec<KeyValue> = Vec::new();
                    if apply_all(&self.actions, &mut attributes, context) {
                        *slot = Some(Resource {
                            attributes,
                            ..Default::default()
                        });
                        changed = true;
                    }
                }
            }
        }
        changed
    }
}

#[async_trait]
impl<S: Signal> Consumer<S> for ResourceProcessor<S> {
    async fn consume(&self, mut batch: Batch<S>) {
        let context = reads_context(&self.actions)
            .then(|| batch.metadata().cloned())
            .flatten();
        if self.process(batch.resources_mut(), context.as_ref()) {
            batch.recount();
        }
        self.next.consume(batch).await;
    }

    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        self.next.ack_point()
    }
}
