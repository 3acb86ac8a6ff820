//! Pushing sluice's own telemetry over OTLP: the `periodic` metric readers and the log
//! processors of `service.telemetry`. The OTLP client itself is given by the binary (the
//! exporters crate has the HTTP, gRPC and TLS code), so this module only knows what to send
//! and when.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::config::{OtlpTarget, PeriodicReader, Temporality};
use super::metrics::{FamilySnapshot, MetricKind, MetricsRegistry, SCOPE_NAME, unix_nanos};

/// One OTLP export request of sluice's own telemetry.
#[derive(Clone, Debug)]
pub enum SelfExport {
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

/// Sends self-telemetry to one OTLP destination.
#[async_trait]
pub trait OtlpClient: Send + Sync {
    /// One attempt; an error says why, for the log.
    async fn export(&self, request: SelfExport) -> Result<(), String>;
}

/// Makes the client for an `exporter.otlp` section; an error says what is wrong with it.
pub type OtlpClientBuilder =
    Arc<dyn Fn(&OtlpTarget) -> Result<Arc<dyn OtlpClient>, String> + Send + Sync>;

/// `exporter.console`: each export as one OTLP/JSON line on stdout.
pub struct ConsoleClient;

#[async_trait]
impl OtlpClient for ConsoleClient {
    async fn export(&self, request: SelfExport) -> Result<(), String> {
        let line = match &request {
            SelfExport::Metrics(r) => serde_json::to_string(r),
            SelfExport::Logs(r) => serde_json::to_string(r),
        }
        .map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        // A closed stdout must not fail anything: this is a diagnostic copy.
        let _ = out
            .write_all(line.as_bytes())
            .and_then(|()| out.write_all(b"\n"));
        Ok(())
    }
}

/// The resource as OTLP attributes.
pub fn resource(attributes: &[(String, String)]) -> Resource {
    Resource {
        attributes: attributes
            .iter()
            .map(|(k, v)| string_attribute(k, v))
            .collect(),
        ..Resource::default()
    }
}

pub fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..KeyValue::default()
    }
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..InstrumentationScope::default()
    }
}

/// Turns registry snapshots into OTLP metrics, remembering what delta temporality needs.
pub struct MetricsEncoder {
    temporality: Temporality,
    started: u64,
    /// Per series: the value and time of the previous export (delta counters only).
    previous: HashMap<(String, Vec<(String, String)>), f64>,
    last_export: u64,
}

impl MetricsEncoder {
    pub fn new(temporality: Temporality, started: SystemTime) -> Self {
        let started = unix_nanos(started);
        MetricsEncoder {
            temporality,
            started,
            previous: HashMap::new(),
            last_export: started,
        }
    }

    /// The request for `families` read at `now`.
    pub fn encode(
        &mut self,
        families: &[FamilySnapshot],
        resource_attributes: &[(String, String)],
        now: SystemTime,
    ) -> ExportMetricsServiceRequest {
        let now = unix_nanos(now);
        let delta = self.temporality != Temporality::Cumulative;
        let mut metrics = Vec::new();
        for family in families {
            let points = family.points.iter().map(|(labels, value)| {
                let mut value = *value;
                let mut start = self.started;
                if delta && family.kind == MetricKind::Counter {
                    let key = (family.name.clone(), labels.clone());
                    let before = self.previous.insert(key, value).unwrap_or(0.0);
                    value -= before;
                    start = self.last_export;
                }
                NumberDataPoint {
                    attributes: labels.iter().map(|(k, v)| string_attribute(k, v)).collect(),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(if family.unit == "s" || value.fract() != 0.0 {
                        number_data_point::Value::AsDouble(value)
                    } else {
                        number_data_point::Value::AsInt(value as i64)
                    }),
                    ..NumberDataPoint::default()
                }
            });
            let data = match family.kind {
                MetricKind::Counter => metric::Data::Sum(Sum {
                    data_points: points.collect(),
                    aggregation_temporality: if delta {
                        AggregationTemporality::Delta
                    } else {
                        AggregationTemporality::Cumulative
                    } as i32,
                    is_monotonic: true,
                }),
                MetricKind::Gauge => metric::Data::Gauge(Gauge {
                    data_points: points.collect(),
                }),
            };
            metrics.push(Metric {
                name: family.name.clone(),
                description: family.help.clone(),
                unit: family.unit.to_string(),
                data: Some(data),
                ..Metric::default()
            });
        }
        self.last_export = now;
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource(resource_attributes)),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

/// A running `periodic` reader: pushes every interval, and once more when stopped.
pub struct PeriodicPusher {
    stop: Arc<Notify>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl PeriodicPusher {
    pub fn start(
        reader: &PeriodicReader,
        client: Arc<dyn OtlpClient>,
        registry: Arc<MetricsRegistry>,
        resource_attributes: Vec<(String, String)>,
    ) -> PeriodicPusher {
        let temporality = reader
            .exporter
            .otlp
            .as_ref()
            .map_or(Temporality::Cumulative, |o| o.temporality_preference);
        let interval = reader.interval.0.max(Duration::from_millis(1));
        let timeout = reader.timeout.0;
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut encoder = MetricsEncoder::new(temporality, registry.started_at());
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate: wait a whole interval before the first push.
            ticks.tick().await;
            loop {
                let last = tokio::select! {
                    _ = ticks.tick() => false,
                    _ = stopped.notified() => true,
                };
                let request = encoder.encode(
                    &registry.snapshot(),
                    &resource_attributes,
                    SystemTime::now(),
                );
                let sent = if timeout.is_zero() {
                    client.export(SelfExport::Metrics(request)).await
                } else {
                    tokio::time::timeout(timeout, client.export(SelfExport::Metrics(request)))
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "cannot push sluice's own metrics");
                }
                if last {
                    return;
                }
            }
        });
        PeriodicPusher {
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Pushes what the metrics read now and stops, waiting at most `within`.
    pub async fn stop(&self, within: Duration) {
        self.stop.notify_one();
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && tokio::time::timeout(within, task).await.is_err()
        {
            tracing::warn!("the last push of sluice's own metrics did not finish in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_sums_and_deltas_subtract_the_previous_export() {
        let registry = MetricsRegistry::default();
        let c = registry.counter("otelcol_exporter_sent_spans", "h", &[("exporter", "x")]);
        c.add(5);
        let attrs = vec![("service.name".to_string(), "edge".to_string())];
        let mut cumulative = MetricsEncoder::new(Temporality::Cumulative, registry.started_at());
        let mut delta = MetricsEncoder::new(Temporality::Delta, registry.started_at());
        let value = |r: &ExportMetricsServiceRequest| {
            let m = r.resource_metrics[0].scope_metrics[0]
                .metrics
                .iter()
                .find(|m| m.name == "otelcol_exporter_sent_spans")
                .unwrap();
            match &m.data {
                Some(metric::Data::Sum(s)) => (
                    s.aggregation_temporality,
                    s.data_points[0].value,
                    s.data_points[0].attributes[0].key.clone(),
                ),
                other => panic!("{other:?}"),
            }
        };
        let now = SystemTime::now();
        let r = cumulative.encode(&registry.snapshot(), &attrs, now);
        assert_eq!(
            r.resource_metrics[0].resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
        assert_eq!(
            value(&r),
            (
                AggregationTemporality::Cumulative as i32,
                Some(number_data_point::Value::AsInt(5)),
                "exporter".to_string()
            )
        );
        delta.encode(&registry.snapshot(), &attrs, now);
        c.add(2);
        let r = delta.encode(&registry.snapshot(), &attrs, now);
        assert_eq!(value(&r).0, AggregationTemporality::Delta as i32);
        assert_eq!(value(&r).1, Some(number_data_point::Value::AsInt(2)));
        let r = cumulative.encode(&registry.snapshot(), &attrs, now);
        assert_eq!(value(&r).1, Some(number_data_point::Value::AsInt(7)));
    }
}
