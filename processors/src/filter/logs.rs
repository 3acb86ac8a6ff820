//! Dropping resources, scopes and log records.

use std::sync::Arc;

use sluice_pipeline::Logs;
use sluice_pipeline::proto::logs::v1::ResourceLogs;

use super::eval::{EvalError, Item};
use super::program::Program;
use super::{Plan, SignalFilter};

pub struct LogsFilter(pub Arc<Program>);

impl SignalFilter<Logs> for LogsFilter {
    fn plan(&self, resources: &[ResourceLogs]) -> Result<Option<Plan>, EvalError> {
        let rules = &self.0.logs;
        let mut plan = Plan::default();
        for rl in resources {
            let item = Item {
                resource: rl.resource.as_ref(),
                ..Item::default()
            };
            if plan.resource(!rules.resource.is_empty() && rules.resource.matches(&item)?) {
                continue;
            }
            for sl in &rl.scope_logs {
                let item = Item {
                    scope: sl.scope.as_ref(),
                    ..item
                };
                if plan.scope(!rules.scope.is_empty() && rules.scope.matches(&item)?) {
                    continue;
                }
                if rules.item.is_empty() {
                    continue;
                }
                for log in &sl.log_records {
                    let item = Item {
                        log: Some(log),
                        ..item
                    };
                    plan.outer(rules.item.matches(&item)?);
                }
            }
        }
        Ok(plan.if_any())
    }

    fn apply(&self, plan: Plan, resources: &mut Vec<ResourceLogs>) -> u64 {
        let has_records = !self.0.logs.item.is_empty();
        let mut steps = plan.into_steps();
        let mut dropped = 0u64;
        resources.retain_mut(|rl| {
            if steps.resource() {
                dropped += rl
                    .scope_logs
                    .iter()
                    .map(|s| s.log_records.len() as u64)
                    .sum::<u64>();
                return false;
            }
            let scopes_before = rl.scope_logs.len();
            rl.scope_logs.retain_mut(|sl| {
                if steps.scope() {
                    dropped += sl.log_records.len() as u64;
                    return false;
                }
                if !has_records {
                    return true;
                }
                let before = sl.log_records.len();
                sl.log_records.retain(|_| !steps.outer());
                let lost = before - sl.log_records.len();
                dropped += lost as u64;
                !(lost > 0 && sl.log_records.is_empty())
            });
            !(rl.scope_logs.len() < scopes_before && rl.scope_logs.is_empty())
        });
        dropped
    }
}
