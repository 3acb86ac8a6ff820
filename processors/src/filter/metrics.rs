//! Dropping metrics and data points.

use std::sync::Arc;

use sluice_pipeline::Metrics;
use sluice_pipeline::proto::metrics::v1::{Metric, ResourceMetrics, metric::Data};
use sluice_pipeline::signal::metric_points;

use super::config::Program;
use super::eval::{EvalError, Item, Point};
use super::{Plan, SignalFilter};

pub struct MetricsFilter(pub Arc<Program>);

fn points(metric: &Metric) -> Vec<Point<'_>> {
    match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.iter().map(Point::Number).collect(),
        Some(Data::Sum(s)) => s.data_points.iter().map(Point::Number).collect(),
        Some(Data::Histogram(h)) => h.data_points.iter().map(Point::Histogram).collect(),
        Some(Data::ExponentialHistogram(h)) => {
            h.data_points.iter().map(Point::Exponential).collect()
        }
        Some(Data::Summary(s)) => s.data_points.iter().map(Point::Summary).collect(),
        None => Vec::new(),
    }
}

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
        let (metrics, datapoints) = (&self.0.metric, &self.0.datapoint);
        let mut plan = Plan::default();
        for rm in resources {
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    let item = Item {
                        resource: rm.resource.as_ref(),
                        scope: sm.scope.as_ref(),
                        metric: Some(metric),
                        ..Item::default()
                    };
                    let drop = !metrics.is_empty() && metrics.matches(&item)?;
                    plan.outer(drop);
                    if !drop && !datapoints.is_empty() {
                        for point in points(metric) {
                            let item = Item {
                                point: Some(point),
                                ..item
                            };
                            plan.inner(datapoints.matches(&item)?);
                        }
                    }
                }
            }
        }
        Ok(plan.if_any())
    }

    fn apply(&self, plan: Plan, resources: &mut Vec<ResourceMetrics>) -> u64 {
        let has_points = !self.0.datapoint.is_empty();
        let (mut outer, mut inner) = plan.into_iters();
        let mut dropped = 0u64;
        resources.retain_mut(|rm| {
            let scopes_before = rm.scope_metrics.len();
            rm.scope_metrics.retain_mut(|sm| {
                let metrics_before = sm.metrics.len();
                sm.metrics.retain_mut(|metric| {
                    let before = metric_points(metric);
                    if outer.next().unwrap_or(false) {
                        dropped += before as u64;
                        return false;
                    }
                    if !has_points {
                        return true;
                    }
                    retain_points(&mut metric.data, || !inner.next().unwrap_or(false));
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
