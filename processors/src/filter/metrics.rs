//! Dropping resources, scopes, metrics and data points.

use std::sync::Arc;

use sluice_pipeline::Metrics;
use sluice_pipeline::proto::metrics::v1::{ResourceMetrics, metric::Data};
use sluice_pipeline::signal::metric_points;

use super::eval::{EvalError, Item, points};
use super::program::Program;
use super::{Plan, SignalFilter};

pub struct MetricsFilter(pub Arc<Program>);

/// Keeps the points for which `keep` (called once per point, in order) says so.
fn retain_points(data: &mut Option<Data>, mut keep: impl FnMut() -> bool) {
    match data {
        Some(Data::Gauge(g)) => g.data_points.retain(|_| keep()),
        Some(Data::Sum(s)) => s.data_points.retain(|_| keep()),
        Some(Data::Histogram(h)) => h.data_points.retain(|_| keep()),
        Some(Data::ExponentialHistogram(h)) => h.data_points.retain(|_| keep()),
        Some(Data::Summary(s)) => s.data_points.retain(|_| keep()),
        None => {}
    }
}

impl SignalFilter<Metrics> for MetricsFilter {
    fn plan(&self, resources: &[ResourceMetrics]) -> Result<Option<Plan>, EvalError> {
        let rules = &self.0.metrics;
        let mut plan = Plan::default();
        for rm in resources {
            let item = Item {
                resource: rm.resource.as_ref(),
                ..Item::default()
            };
            if plan.resource(!rules.resource.is_empty() && rules.resource.matches(&item)?) {
                continue;
            }
            for sm in &rm.scope_metrics {
                let item = Item {
                    scope: sm.scope.as_ref(),
                    ..item
                };
                if plan.scope(!rules.scope.is_empty() && rules.scope.matches(&item)?) {
                    continue;
                }
                for metric in &sm.metrics {
                    let item = Item {
                        metric: Some(metric),
                        ..item
                    };
                    if plan.outer(!rules.item.is_empty() && rules.item.matches(&item)?) {
                        continue;
                    }
                    if !rules.inner.is_empty() {
                        for point in points(metric) {
                            let item = Item {
                                point: Some(point),
                                ..item
                            };
                            plan.inner(rules.inner.matches(&item)?);
                        }
                    }
                }
            }
        }
        Ok(plan.if_any())
    }

    fn apply(&self, plan: Plan, resources: &mut Vec<ResourceMetrics>) -> u64 {
        let has_points = !self.0.metrics.inner.is_empty();
        let mut steps = plan.into_steps();
        let mut dropped = 0u64;
        resources.retain_mut(|rm| {
            if steps.resource() {
                dropped += rm
                    .scope_metrics
                    .iter()
                    .flat_map(|s| &s.metrics)
                    .map(|m| metric_points(m) as u64)
                    .sum::<u64>();
                return false;
            }
            let scopes_before = rm.scope_metrics.len();
            rm.scope_metrics.retain_mut(|sm| {
                if steps.scope() {
                    dropped += sm
                        .metrics
                        .iter()
                        .map(|m| metric_points(m) as u64)
                        .sum::<u64>();
                    return false;
                }
                let metrics_before = sm.metrics.len();
                sm.metrics.retain_mut(|metric| {
                    let before = metric_points(metric);
                    if steps.outer() {
                        dropped += before as u64;
                        return false;
                    }
                    if !has_points {
                        return true;
                    }
                    retain_points(&mut metric.data, || !steps.inner());
                    let after = metric_points(metric);
                    dropped += (before - after) as u64;
                    // A metric left without points says nothing; it goes too.
                    !(after < before && after == 0)
                });
                !(sm.metrics.len() < metrics_before && sm.metrics.is_empty())
            });
            !(rm.scope_metrics.len() < scopes_before && rm.scope_metrics.is_empty())
        });
        dropped
    }
}
