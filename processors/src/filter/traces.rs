//! Dropping spans and span events.

use std::sync::Arc;

use sluice_pipeline::Traces;
use sluice_pipeline::proto::trace::v1::ResourceSpans;

use super::config::Program;
use super::eval::{EvalError, Item};
use super::{Plan, SignalFilter};

pub struct TracesFilter(pub Arc<Program>);

impl SignalFilter<Traces> for TracesFilter {
    fn plan(&self, resources: &[ResourceSpans]) -> Result<Option<Plan>, EvalError> {
        let (spans, events) = (&self.0.span, &self.0.spanevent);
        let mut plan = Plan::default();
        for rs in resources {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    let item = Item {
                        resource: rs.resource.as_ref(),
                        scope: ss.scope.as_ref(),
                        span: Some(span),
                        ..Item::default()
                    };
                    let drop = !spans.is_empty() && spans.matches(&item)?;
                    plan.outer(drop);
                    // Events of a dropped span go with it; only survivors are looked at.
                    if !drop && !events.is_empty() {
                        for event in &span.events {
                            let item = Item {
                                event: Some(event),
                                ..item
                            };
                            plan.inner(events.matches(&item)?);
                        }
                    }
                }
            }
        }
        Ok(plan.if_any())
    }

    fn apply(&self, plan: Plan, resources: &mut Vec<ResourceSpans>) -> u64 {
        let has_events = !self.0.spanevent.is_empty();
        let (mut outer, mut inner) = plan.into_iters();
        let mut dropped = 0u64;
        resources.retain_mut(|rs| {
            let scopes_before = rs.scope_spans.len();
            rs.scope_spans.retain_mut(|ss| {
                let before = ss.spans.len();
                ss.spans.retain_mut(|span| {
                    if outer.next().unwrap_or(false) {
                        return false;
                    }
                    if has_events {
                        span.events.retain(|_| !inner.next().unwrap_or(false));
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
