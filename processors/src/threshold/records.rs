//! Alerts as OTel log records (ARCHITECTURE.md §9): `event.name=sluice.alert`, WARN for warning and
//! ERROR for critical alerts, INFO for resolutions (a resolution is good news; pagers that
//! filter on severity should not wake anyone for it; `alert.severity` still names the
//! severity that resolved).

use sluice_config::Duration;
use sluice_pipeline::proto::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use sluice_pipeline::proto::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use sluice_pipeline::proto::resource::v1::Resource;

use super::config::Severity;
use super::engine::{Alert, Condition, State, value_text};

pub const EVENT_NAME: &str = "sluice.alert";
const SCOPE_NAME: &str = "sluice/threshold";

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

/// Numbers as people read them in a message: 0.93, 1234.5, 3e-05.
pub fn number(v: f64) -> String {
    let a = v.abs();
    if v == v.trunc() && a < 1e15 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.3e}")
    }
}

/// Where the series lives, in words: "host web-1", "container api-7 {cpu=0}".
fn place(a: &Alert) -> String {
    let named = [
        ("container.name", "container"),
        ("k8s.pod.name", "pod"),
        ("host.name", "host"),
        ("service.name", "service"),
    ];
    let mut parts: Vec<String> = Vec::new();
    for (key, word) in named {
        if let Some(kv) = a.resource.iter().find(|kv| kv.key == key) {
            parts.push(format!("{word} {}", value_text(kv.value.as_ref())));
            break;
        }
    }
    if parts.is_empty() && !a.resource.is_empty() {
        parts.push(labels(&a.resource));
    }
    if !a.attributes.is_empty() {
        parts.push(labels(&a.attributes));
    }
    parts.join(" ")
}

fn labels(attrs: &[KeyValue]) -> String {
    let inner: Vec<String> = attrs
        .iter()
        .map(|kv| format!("{}={}", kv.key, value_text(kv.value.as_ref())))
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn body(a: &Alert) -> String {
    let place = place(a);
    let on = if place.is_empty() {
        String::new()
    } else {
        format!(" on {place}")
    };
    let value = a.value.map(number).unwrap_or_else(|| "?".into());
    let threshold = a.threshold.map(number).unwrap_or_else(|| "?".into());
    let hold = if a.hold.is_zero() {
        String::new()
    } else {
        format!(" for {}", Duration(a.hold))
    };
    let absent_for = a
        .absent_for
        .map(|d| Duration(d).to_string())
        .unwrap_or_default();
    let m = &a.metric;
    match (a.state, a.condition) {
        (State::Firing, Condition::Threshold(d)) => {
            let mut s = format!("{m} {value} {} {threshold}{hold}{on}", d.op());
            if let Some(from) = a.escalated_from {
                s.push_str(&format!(" (escalated from {})", from.as_str()));
            }
            if a.repeat {
                s.push_str(" (still firing)");
            }
            s
        }
        (State::Resolved, Condition::Threshold(d)) if a.expired => {
            format!(
                "resolved: {m} no longer reported{on} (was {} {threshold})",
                d.op()
            )
        }
        (State::Resolved, Condition::Threshold(d)) => {
            let back = match d {
                super::config::Direction::Above => "<",
                super::config::Direction::Below => ">",
            };
            format!("resolved: {m} {value} {back} {threshold}{on}")
        }
        (State::Firing, Condition::Absent) => {
            let mut s = format!("{m} absent for {absent_for}{on}");
            if a.repeat {
                s.push_str(" (still absent)");
            }
            s
        }
        (State::Resolved, Condition::Absent) if a.expired => {
            format!("resolved: {m} absent{on}; no longer tracked")
        }
        (State::Resolved, Condition::Absent) => format!("resolved: {m} reporting again{on}"),
    }
}

fn record(a: &Alert) -> LogRecord {
    let (number, severity) = match (a.state, a.severity) {
        (State::Resolved, _) => (SeverityNumber::Info, "INFO"),
        (State::Firing, Severity::Warning) => (SeverityNumber::Warn, "WARN"),
        (State::Firing, Severity::Critical) => (SeverityNumber::Error, "ERROR"),
    };
    let condition = match a.condition {
        Condition::Threshold(d) => d.as_str(),
        Condition::Absent => "absent",
    };
    let mut attributes = vec![
        text("event.name", EVENT_NAME),
        text("alert.rule", a.rule.clone()),
        text("alert.state", a.state.as_str()),
        text("alert.severity", a.severity.as_str()),
        text("alert.condition", condition),
        text("alert.metric", a.metric.clone()),
        text("alert.for", Duration(a.hold).to_string()),
    ];
    if let Some(v) = a.value {
        attributes.push(kv("alert.value", any_value::Value::DoubleValue(v)));
    }
    if let Some(t) = a.threshold {
        attributes.push(kv("alert.threshold", any_value::Value::DoubleValue(t)));
    }
    if let Some(d) = a.absent_for {
        attributes.push(text("alert.absent_for", Duration(d).to_string()));
    }
    if let Some(from) = a.escalated_from {
        attributes.push(text("alert.escalated_from", from.as_str()));
    }
    if a.repeat {
        attributes.push(kv("alert.repeat", any_value::Value::BoolValue(true)));
    }
    if a.expired {
        attributes.push(kv("alert.expired", any_value::Value::BoolValue(true)));
    }
    attributes.extend(a.attributes.iter().cloned());
    LogRecord {
        time_unix_nano: a.time,
        observed_time_unix_nano: a.observed,
        severity_number: number as i32,
        severity_text: severity.to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body(a))),
        }),
        attributes,
        event_name: EVENT_NAME.to_string(),
        ..Default::default()
    }
}

/// Log records grouped under their series' resources.
pub fn to_logs(alerts: &[Alert]) -> Vec<ResourceLogs> {
    let mut out: Vec<ResourceLogs> = Vec::new();
    for a in alerts {
        let rec = record(a);
        let existing = out.iter_mut().find(|rl| {
            rl.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]) == &a.resource[..]
        });
        match existing.and_then(|rl| rl.scope_logs.first_mut()) {
            Some(scope) => scope.log_records.push(rec),
            None => out.push(ResourceLogs {
                resource: Some(Resource {
                    attributes: a.resource.clone(),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: SCOPE_NAME.into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records: vec![rec],
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }
    out
}
