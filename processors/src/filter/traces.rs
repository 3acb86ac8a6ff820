//! Dropping resources, scopes, spans and span events.

use std::sync::Arc;

use sluice_pipeline::Traces;
use sluice_pipeline::proto::trace::v1::ResourceSpans;

use super::eval::{EvalError, Item};
use super::program::Program;
use super::{Plan, SignalFilter};

pub struct TracesFilter(pub Arc<Program>);

impl SignalFilter<Traces> for TracesFilter {
    fn plan(&self, resources: &[ResourceSpans]) -> Result<Option<Plan>, EvalError> {
        let rules = &self.0.traces;
        let mut plan = Plan::default();
        for rs in resources {
            let item = Item {
                resource: rs.resource.as_ref(),
                ..Item::default()
            };
            if plan.resource(!rules.resource.is_empty() && rules.resource.matches(&item)?) {
                continue;
            }
            for ss in &rs.scope_spans {
                let item = Item {
                    scope: ss.scope.as_ref(),
                    ..item
                };
                if plan.scope(!rules.scope.is_empty() && rules.scope.matches(&item)?) {
                    continue;
                }
                for span in &ss.spans {
                    let item = Item {
                        span: Some(span),
                        ..item
                    };
                    // Events of a dropped span go with it; only survivors are looked at.
                    if plan.outer(!rules.item.is_empty() && rules.item.matches(&item)?) {
                        continue;
                    }
                    if !rules.inner.is_empty() {
                        for event in &span.events {
                            let item = Item {
                                event: Some(event),
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

    fn apply(&self, plan: Plan, resources: &mut Vec<ResourceSpans>) -> u64 {
        let has_events = !self.0.traces.inner.is_empty();
        let mut steps = plan.into_steps();
        let mut dropped = 0u64;
        resources.retain_mut(|rs| {
            if steps.resource() {
                dropped += rs
                    .scope_spans
                    .iter()
                    .map(|s| s.spans.len() as u64)
                    .sum::<u64>();
                return false;
            }
            let scopes_before = rs.scope_spans.len();
            rs.scope_spans.retain_mut(|ss| {
                if steps.scope() {
                    dropped += ss.spans.len() as u64;
                    return false;
                }
                let before = ss.spans.len();
                ss.spans.retain_mut(|span| {
                    if steps.outer() {
                        return false;
                    }
                    if has_events {
                        span.events.retain(|_| !steps.inner());
                    }
                    true
                });
                let lost = before - ss.spans.len();
                dropped += lost as u64;
                !(lost > 0 && ss.spans.is_empty())
            });
            !(rs.scope_spans.len() < scopes_before && rs.scope_spans.is_empty())
        });
        dropped
    }
}
