//! Dropping log records.

use std::sync::Arc;

use sluice_pipeline::Logs;
use sluice_pipeline::proto::logs::v1::ResourceLogs;

use super::config::Program;
use super::eval::{EvalError, Item};
use super::{Plan, SignalFilter};

pub struct LogsFilter(pub Arc<Program>);

impl SignalFilter<Logs> for LogsFilter {
    fn plan(&self, resources: &[ResourceLogs]) -> Result<Option<Plan>, EvalError> {
        let records = &self.0.log_record;
        let mut plan = Plan::default();
        for rl in resources {
            for sl in &rl.scope_logs {
                for log in &sl.log_records {
                    let item = Item {
                        resource: rl.resource.as_ref(),
                        scope: sl.scope.as_ref(),
                        log: Some(log),
                        ..Item::default()
                    };
                    plan.outer(records.matches(&item)?);
                }
            }
        }
        Ok(plan.if_any())
    }

    fn apply(&self, plan: Plan, resources: &mut Vec<ResourceLogs>) -> u64 {
        let (mut outer, _) = plan.into_iters();
        let mut dropped = 0u64;
        resources.retain_mut(|rl| {
            let scopes_before = rl.scope_logs.len();
            rl.scope_logs.retain_mut(|sl| {
                let before = sl.log_records.len();
                sl.log_records.retain(|_| !outer.next().unwrap_or(false));
                let lost = before - sl.log_records.len();
                dropped += lost as u64;
                !(lost > 0 && sl.log_records.is_empty())
            });
            !(rl.scope_logs.len() < scopes_before && rl.scope_logs.is_empty())
        });
        dropped
    }
}
