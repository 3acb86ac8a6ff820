//! The `debug` exporter: writes what passes through to sluice's own log, for trying out a
//! pipeline or looking at live data.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use sluice_config::{ComponentConfig, ConfigErrors, SignalKind};
use sluice_pipeline::codec::encode_json;
use sluice_pipeline::exporter::{Export, HelperSettings, QueueSettings, export_signals};
use sluice_pipeline::proto::common::v1::{AnyValue, any_value};
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Logs, Metrics,
    Signal, Traces, decode_config,
};

/// `exporters: debug:`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// `basic` (default): one line per batch with counts; `normal`: one line per item;
    /// `detailed`: the whole batch as OTLP/JSON.
    pub verbosity: Verbosity,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

pub struct DebugExporterFactory;

impl ExporterFactory for DebugExporterFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "debug",
            aliases: &["logging"],
            signals: &SignalKind::ALL,
            description: "logs a summary or the content of every batch",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: DebugConfig = decode_config(config)?;
        let exporter = Arc::new(DebugExporter {
            name: config.id.to_string(),
            verbosity: cfg.verbosity,
        });
        // Logging is immediate: no queue, so the summary appears as the data passes.
        let settings = HelperSettings {
            queue: QueueSettings {
                enabled: false,
                ..QueueSettings::default()
            },
            local_delivery: true,
            ..HelperSettings::default()
        };
        Ok(export_signals(
            &exporter.name.clone(),
            &settings,
            signals,
            exporter,
            ctx,
        ))
    }
}

pub struct DebugExporter {
    name: String,
    verbosity: Verbosity,
}

/// One line per item at `normal` verbosity.
trait DescribeItems: Signal {
    fn describe(resources: &[Self::Resource]) -> Vec<String>;
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

impl DescribeItems for Traces {
    fn describe(resources: &[Self::Resource]) -> Vec<String> {
        resources
            .iter()
            .flat_map(|r| r.scope_spans.iter())
            .flat_map(|s| s.spans.iter())
            .map(|s| {
                format!(
                    "span {} trace_id={} span_id={}",
                    s.name,
                    hex::encode(&s.trace_id),
                    hex::encode(&s.span_id)
                )
            })
            .collect()
    }
}

impl DescribeItems for Metrics {
    fn describe(resources: &[Self::Resource]) -> Vec<String> {
        resources
            .iter()
            .flat_map(|r| r.scope_metrics.iter())
            .flat_map(|s| s.metrics.iter())
            .map(|m| {
                format!(
                    "metric {} unit={} points={}",
                    m.name,
                    m.unit,
                    sluice_pipeline::signal::metric_points(m)
                )
            })
            .collect()
    }
}

impl DescribeItems for Logs {
    fn describe(resources: &[Self::Resource]) -> Vec<String> {
        resources
            .iter()
            .flat_map(|r| r.scope_logs.iter())
            .flat_map(|s| s.log_records.iter())
            .map(|l| {
                format!(
                    "log {} {}",
                    if l.severity_text.is_empty() {
                        "-"
                    } else {
                        &l.severity_text
                    },
                    text(&l.body)
                )
            })
            .collect()
    }
}

#[async_trait]
impl<S: DescribeItems> Export<S> for DebugExporter {
    async fn export(&self, batch: &Batch<S>) -> Result<(), DeliveryError> {
        let signal = S::KIND.as_str();
        tracing::info!(
            exporter = %self.name,
            resources = batch.resources().len(),
            items = batch.items(),
            "{signal}: {} {}",
            batch.items(),
            S::ITEM_NAME
        );
        match self.verbosity {
            Verbosity::Basic => {}
            Verbosity::Normal => {
                for line in S::describe(batch.resources()) {
                    tracing::info!(exporter = %self.name, "{line}");
                }
            }
            Verbosity::Detailed => {
                let mut json = Vec::new();
                encode_json::<S>(batch.resources(), &mut json).map_err(|e| {
                    DeliveryError::permanent(format!("cannot encode as OTLP/JSON: {e}"))
                })?;
                tracing::info!(exporter = %self.name, "{}", String::from_utf8_lossy(&json));
            }
        }
        Ok(())
    }
}
