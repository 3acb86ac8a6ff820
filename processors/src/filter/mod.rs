//! The `filter` processor: drops resources, scopes, spans, span events, metrics, data points
//! and log records for which any of the configured conditions holds, as the OTel Collector's
//! does. OTTL conditions (in every form the Collector accepts) and the legacy include/exclude
//! blocks are compiled into the same conditions and run by the same evaluator.
//!
//! Conditions are parsed and checked against their context when the config is built, so a
//! typo fails `sluice validate` instead of the first batch. Each batch is first read to decide
//! what goes (a [`Plan`]) and copied for editing only when something does, so batches that
//! pass untouched are never cloned even when shared by a fan-out.

mod config;
mod eval;
mod exprlang;
mod legacy;
mod lexer;
mod logs;
mod metrics;
mod parser;
mod paths;
mod program;
mod traces;

#[cfg(test)]
mod legacy_tests;
#[cfg(test)]
mod parse_tests;
#[cfg(test)]
mod tests;

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{
    AnyConsumer, Batch, BuildContext, BuiltStage, Consumer, DeliveryError, DynConsumer,
    FactoryInfo, Logs, Metrics, ProcessorFactory, Signal, SignalConsumer, Traces, WrapConsumer,
};

pub use config::FilterConfig;
use eval::EvalError;
pub use program::ErrorMode;
use program::Program;

pub struct FilterProcessorFactory;

impl ProcessorFactory for FilterProcessorFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "filter",
            aliases: &[],
            signals: &SignalKind::ALL,
            description: "drops resources, scopes, spans, span events, metrics, data points and log records matching OTTL conditions or include/exclude blocks",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        next: AnyConsumer,
        ctx: &BuildContext,
    ) -> Result<BuiltStage, ConfigErrors> {
        let program = Arc::new(config::build(config, &ctx.warnings)?);
        let builder = Builder {
            program,
            name: config.id.to_string(),
            ctx: ctx.clone(),
            path: config.path.clone(),
            pos: config.pos.clone(),
        };
        Ok(BuiltStage {
            consumer: next.wrap(&builder)?,
            lifecycle: None,
        })
    }
}

/// Which parts of one signal a batch loses, decided before anything is copied: one flag per
/// resource, per scope of the resources kept, per outer item (span, metric, log record) of
/// the scopes kept and per inner item (span event, data point) of the outer items kept, each
/// in document order.
#[derive(Default)]
pub struct Plan {
    resources: Vec<bool>,
    scopes: Vec<bool>,
    outer: Vec<bool>,
    inner: Vec<bool>,
    any: bool,
}

impl Plan {
    fn mark(list: &mut Vec<bool>, any: &mut bool, drop: bool) -> bool {
        list.push(drop);
        *any |= drop;
        drop
    }

    /// Notes whether a resource goes; returns the same flag.
    fn resource(&mut self, drop: bool) -> bool {
        Self::mark(&mut self.resources, &mut self.any, drop)
    }

    fn scope(&mut self, drop: bool) -> bool {
        Self::mark(&mut self.scopes, &mut self.any, drop)
    }

    fn outer(&mut self, drop: bool) -> bool {
        Self::mark(&mut self.outer, &mut self.any, drop)
    }

    fn inner(&mut self, drop: bool) -> bool {
        Self::mark(&mut self.inner, &mut self.any, drop)
    }

    fn if_any(self) -> Option<Plan> {
        self.any.then_some(self)
    }

    fn into_steps(self) -> Steps {
        Steps {
            resources: self.resources.into_iter(),
            scopes: self.scopes.into_iter(),
            outer: self.outer.into_iter(),
            inner: self.inner.into_iter(),
        }
    }
}

/// A plan read back in the same order it was made.
struct Steps {
    resources: std::vec::IntoIter<bool>,
    scopes: std::vec::IntoIter<bool>,
    outer: std::vec::IntoIter<bool>,
    inner: std::vec::IntoIter<bool>,
}

impl Steps {
    fn resource(&mut self) -> bool {
        self.resources.next().unwrap_or(false)
    }

    fn scope(&mut self) -> bool {
        self.scopes.next().unwrap_or(false)
    }

    fn outer(&mut self) -> bool {
        self.outer.next().unwrap_or(false)
    }

    fn inner(&mut self) -> bool {
        self.inner.next().unwrap_or(false)
    }
}

/// The per-signal part: deciding and then removing.
pub trait SignalFilter<S: Signal>: Send + Sync + 'static {
    /// What goes; `None` when nothing does. `Err` only under `error_mode: propagate`.
    fn plan(&self, resources: &[S::Resource]) -> Result<Option<Plan>, EvalError>;
    /// Removes what `plan` chose from the same data, and scopes and resources it left empty;
    /// returns the items removed (spans, data points, log records).
    fn apply(&self, plan: Plan, resources: &mut Vec<S::Resource>) -> u64;
}

struct Builder {
    program: Arc<Program>,
    name: String,
    ctx: BuildContext,
    path: String,
    pos: sluice_config::Pos,
}

impl Builder {
    fn stage<S, F>(
        &self,
        filter: F,
        next: DynConsumer<S>,
        metric: &str,
        what: &str,
    ) -> DynConsumer<S>
    where
        S: Signal,
        F: SignalFilter<S>,
    {
        Arc::new(FilterStage {
            filter,
            next,
            filtered: self.ctx.telemetry.metrics.counter(
                metric,
                &format!("Number of {what} dropped by the filter processor"),
                &[("filter", &self.name)],
            ),
            name: self.name.clone(),
            signal: PhantomData,
        })
    }
}

impl WrapConsumer for Builder {
    type Error = ConfigErrors;

    fn wrap<S: Signal + SignalConsumer>(
        &self,
        next: DynConsumer<S>,
    ) -> Result<DynConsumer<S>, ConfigErrors> {
        let p = &self.program;
        // A signal without conditions passes straight through: no stage, no cost.
        let wrapped = match S::to_any(next) {
            AnyConsumer::Traces(next) if !p.traces.is_empty() => {
                AnyConsumer::Traces(self.stage::<Traces, _>(
                    traces::TracesFilter(p.clone()),
                    next,
                    "otelcol_processor_filter_spans_filtered",
                    "spans",
                ))
            }
            AnyConsumer::Metrics(next) if !p.metrics.is_empty() => {
                AnyConsumer::Metrics(self.stage::<Metrics, _>(
                    metrics::MetricsFilter(p.clone()),
                    next,
                    "otelcol_processor_filter_datapoints_filtered",
                    "data points",
                ))
            }
            AnyConsumer::Logs(next) if !p.logs.is_empty() => {
                AnyConsumer::Logs(self.stage::<Logs, _>(
                    logs::LogsFilter(p.clone()),
                    next,
                    "otelcol_processor_filter_logs_filtered",
                    "log records",
                ))
            }
            other => other,
        };
        S::from_any(wrapped).ok_or_else(|| {
            Diagnostic::new(
                Some(self.pos.clone()),
                self.path.clone(),
                "internal error: the filter stage changed signal",
            )
            .into()
        })
    }
}

struct FilterStage<S: Signal, F: SignalFilter<S>> {
    filter: F,
    next: DynConsumer<S>,
    filtered: Counter,
    name: String,
    signal: PhantomData<fn() -> S>,
}

#[async_trait]
impl<S: Signal, F: SignalFilter<S>> Consumer<S> for FilterStage<S, F> {
    async fn consume(&self, mut batch: Batch<S>) {
        let plan = match self.filter.plan(batch.resources()) {
            Ok(Some(plan)) => plan,
            Ok(None) => return self.next.consume(batch).await,
            Err(e) => {
                tracing::warn!(processor = %self.name, error = %e, "filter condition failed; rejecting the batch (error_mode: propagate)");
                batch.settle(&Err(DeliveryError::permanent(format!(
                    "{}: condition failed: {e}",
                    self.name
                ))));
                return;
            }
        };
        let dropped = self.filter.apply(plan, batch.resources_mut());
        batch.recount();
        self.filtered.add(dropped);
        if batch.items() == 0 {
            // Filtered away entirely: that is the sender's data handled, not lost.
            batch.settle(&Ok(()));
            return;
        }
        self.next.consume(batch).await;
    }

    fn ack_point(&self) -> sluice_pipeline::AckPoint {
        self.next.ack_point()
    }
}
