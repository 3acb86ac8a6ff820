//! The host entity event: a log record that says "this host exists", sent to logs pipelines
//! at start and every `metadata_collection_interval`, in the OTel Collector's entity-event
//! form, so a backend that keeps an inventory of entities learns of the host (its identity
//! comes from the resource, e.g. `resource_detection`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use sluice_pipeline::{Batch, DynConsumer, Logs};
use tokio::sync::watch;

use super::{SCOPE_PREFIX, until_stopped};

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// One `entity_state` event of the host; `interval` (when not zero) tells the backend how
/// often to expect it.
pub fn host_state(now: u64, interval: Duration) -> ResourceLogs {
    let mut attributes = vec![
        kv(
            "otel.entity.event.type",
            any_value::Value::StringValue("entity_state".into()),
        ),
        kv(
            "otel.entity.type",
            any_value::Value::StringValue("host".into()),
        ),
    ];
    if !interval.is_zero() {
        let millis = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        attributes.push(kv(
            "otel.entity.interval",
            any_value::Value::IntValue(millis),
        ));
    }
    ResourceLogs {
        resource: Some(Resource::default()),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: format!("{SCOPE_PREFIX}entity"),
                version: env!("CARGO_PKG_VERSION").to_string(),
                // The marker by which consumers tell entity events from ordinary logs.
                attributes: vec![kv(
                    "otel.entity.event_as_log",
                    any_value::Value::BoolValue(true),
                )],
                ..Default::default()
            }),
            log_records: vec![LogRecord {
                time_unix_nano: now,
                observed_time_unix_nano: now,
                attributes,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Sends the event at once, then every `interval` (0: only once) until stopped. A failed
/// delivery is not retried: the next event carries the same state.
pub async fn event_loop(
    logs: DynConsumer<Logs>,
    interval: Duration,
    stopped: watch::Receiver<bool>,
) {
    let run = async {
        loop {
            let event = host_state(now_nanos(), interval);
            logs.consume(Batch::from_resources(vec![event])).await;
            if interval.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(interval).await;
        }
    };
    tokio::select! {
        _ = run => {}
        _ = until_stopped(stopped) => {}
    }
}
