//! Container lifecycle events as OTel log records, so a threshold rule or an alert pipeline can
//! act on a container that died or was OOM-killed.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::cgroups::builder::{int_kv, scope, string_kv};

use super::metrics::SCOPE;

/// The container actions the receiver follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Start,
    Die,
    Stop,
    Oom,
    Destroy,
    Restart,
}

impl Action {
    pub(crate) fn parse(action: &str) -> Option<Action> {
        Some(match action {
            "start" => Action::Start,
            "die" => Action::Die,
            "stop" => Action::Stop,
            "oom" => Action::Oom,
            "destroy" => Action::Destroy,
            "restart" => Action::Restart,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Die => "die",
            Action::Stop => "stop",
            Action::Oom => "oom",
            Action::Destroy => "destroy",
            Action::Restart => "restart",
        }
    }
}

/// `event.name` of every lifecycle record; `docker.container.action` tells them apart.
pub(crate) const EVENT_NAME: &str = "docker.container.lifecycle";

/// One event about a watched container, as a log record under the container's resource.
pub(crate) fn lifecycle_record(
    action: Action,
    container_name: &str,
    event_attributes: &HashMap<String, String>,
    resource: Vec<KeyValue>,
    time_nanos: u64,
    observed_nanos: u64,
) -> ResourceLogs {
    let exit_code = event_attributes
        .get("exitCode")
        .and_then(|c| c.parse::<i64>().ok());
    let (severity, message) = match action {
        Action::Start => (
            SeverityNumber::Info,
            format!("container {container_name} started"),
        ),
        Action::Stop => (
            SeverityNumber::Info,
            format!("container {container_name} stopped"),
        ),
        Action::Restart => (
            SeverityNumber::Info,
            format!("container {container_name} restarted"),
        ),
        Action::Destroy => (
            SeverityNumber::Info,
            format!("container {container_name} removed"),
        ),
        Action::Die => {
            let severity = if exit_code == Some(0) {
                SeverityNumber::Info
            } else {
                SeverityNumber::Warn
            };
            let code = exit_code.map_or_else(|| "unknown".to_string(), |c| c.to_string());
            (
                severity,
                format!("container {container_name} died with exit code {code}"),
            )
        }
        Action::Oom => (
            SeverityNumber::Error,
            format!("container {container_name} was OOM-killed"),
        ),
    };
    let mut attributes = vec![
        string_kv("event.name", EVENT_NAME),
        string_kv("docker.container.action", action.name()),
    ];
    if let Some(code) = exit_code {
        attributes.push(int_kv("process.exit.code", code));
    }
    if let Some(signal) = event_attributes.get("signal") {
        attributes.push(string_kv("docker.container.signal", signal));
    }
    let record = LogRecord {
        time_unix_nano: time_nanos,
        observed_time_unix_nano: observed_nanos,
        severity_number: severity as i32,
        severity_text: severity_text(severity).to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(message)),
        }),
        attributes,
        event_name: EVENT_NAME.to_string(),
        ..Default::default()
    };
    ResourceLogs {
        resource: Some(Resource {
            attributes: resource,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(scope(SCOPE)),
            log_records: vec![record],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn severity_text(severity: SeverityNumber) -> &'static str {
    match severity {
        SeverityNumber::Error => "ERROR",
        SeverityNumber::Warn => "WARN",
        _ => "INFO",
    }
}
