//! The `debug` exporter: writes what passes through to sluice's own log, for trying out a
//! pipeline or looking at live data.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use std::io::Write;
use std::sync::Mutex;

use sluice_config::{ComponentConfig, ConfigErrors, SignalKind};
use sluice_pipeline::codec::encode_json;
use sluice_pipeline::config_keys::problem;
use sluice_pipeline::exporter::{Export, HelperSettings, QueueSettings, export_signals};
use sluice_pipeline::proto::common::v1::{AnyValue, any_value};
use sluice_pipeline::telemetry::Sampler;
use sluice_pipeline::{
    Batch, BuildContext, BuiltExporter, DeliveryError, ExporterFactory, FactoryInfo, Logs, Metrics,
    Signal, Traces, decode_config,
};

/// `exporters: debug:` (and the older `logging:`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    /// `basic` (default; `normal` under the old name `logging`): one line per batch with
    /// counts; `normal`: one line per item; `detailed`: the whole batch as OTLP/JSON.
    pub verbosity: Option<Verbosity>,
    /// Of the lines this exporter writes each second, the first this many are written
    /// (default 2)...
    pub sampling_initial: Option<u64>,
    /// ...then every this-many-th (default 1: all; 500 under `logging`).
    pub sampling_thereafter: Option<u64>,
    /// Write through sluice's log (default true), with its level, format and outputs; false
    /// writes to `output_paths` instead.
    pub use_internal_logger: Option<bool>,
    /// With `use_internal_logger: false`: `stdout` (default), `stderr` or file paths.
    pub output_paths: Option<Vec<String>>,
    /// The `logging` exporter's level: `debug` means `verbosity: detailed`, `info`
    /// `normal`, `warn` and `error` `basic`.
    pub loglevel: Option<String>,
}

/// The settings once the old and new spellings are reconciled.
#[derive(Clone, Debug, PartialEq)]
struct Settings {
    verbosity: Verbosity,
    sampling_initial: u64,
    sampling_thereafter: u64,
    output: Option<Vec<String>>,
}

impl DebugConfig {
    /// `logging` is the exporter's name before v0.111, with its own defaults.
    fn settings(&self, config: &ComponentConfig) -> Result<Settings, ConfigErrors> {
        let old_name = config.id.type_name == "logging";
        let mut errors = Vec::new();
        let from_level = match self.loglevel.as_deref().map(str::to_ascii_lowercase) {
            None => None,
            Some(l) if self.verbosity.is_some() => {
                errors.push(problem(
                    config,
                    "loglevel",
                    format!("`loglevel: {l}` and `verbosity` cannot both be set; keep `verbosity`"),
                ));
                None
            }
            Some(l) => match l.as_str() {
                "debug" => Some(Verbosity::Detailed),
                "info" => Some(Verbosity::Normal),
                "warn" | "error" | "dpanic" | "panic" | "fatal" => Some(Verbosity::Basic),
                other => {
                    errors.push(problem(
                        config,
                        "loglevel",
                        format!("unknown level `{other}`; known: debug, info, warn, error"),
                    ));
                    None
                }
            },
        };
        let internal = self.use_internal_logger.unwrap_or(true);
        if internal && self.output_paths.is_some() {
            errors.push(problem(
                config,
                "output_paths",
                "output_paths needs `use_internal_logger: false` (the internal logger writes \
                 where service.telemetry.logs says)",
            ));
        }
        if self.output_paths.as_ref().is_some_and(Vec::is_empty) {
            errors.push(problem(
                config,
                "output_paths",
                "must name at least one output",
            ));
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let default_verbosity = if old_name {
            Verbosity::Normal
        } else {
            Verbosity::Basic
        };
        Ok(Settings {
            verbosity: self.verbosity.or(from_level).unwrap_or(default_verbosity),
            sampling_initial: self.sampling_initial.unwrap_or(2),
            sampling_thereafter: self
                .sampling_thereafter
                .unwrap_or(if old_name { 500 } else { 1 }),
            output: if internal {
                None
            } else {
                Some(
                    self.output_paths
                        .clone()
                        .unwrap_or_else(|| vec!["stdout".to_string()]),
                )
            },
        })
    }
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

    /// Logging is immediate: no queue, so the summary appears as the data passes, unless the
    /// config asks for one (as the OTel Collector's debug exporter allows).
    fn helper_defaults(&self) -> HelperSettings {
        HelperSettings {
            queue: QueueSettings {
                enabled: false,
                ..QueueSettings::default()
            },
            local_delivery: true,
            ..HelperSettings::default()
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        settings: HelperSettings,
        signals: &[SignalKind],
        ctx: &BuildContext,
    ) -> Result<BuiltExporter, ConfigErrors> {
        let cfg: DebugConfig = decode_config(config)?;
        let settings_of_mine = cfg.settings(config)?;
        if cfg.loglevel.is_some() {
            ctx.warnings.push(problem(
                config,
                "loglevel",
                "deprecated (the `logging` exporter's key): read as the matching `verbosity`",
            ));
        }
        let output = match &settings_of_mine.output {
            Some(paths) => Some(
                Output::open(paths)
                    .map_err(|e| ConfigErrors::from(problem(config, "output_paths", e)))?,
            ),
            None => None,
        };
        let exporter = Arc::new(DebugExporter {
            name: config.id.to_string(),
            verbosity: settings_of_mine.verbosity,
            sampler: Sampler::new(
                std::time::Duration::from_secs(1),
                settings_of_mine.sampling_initial,
                settings_of_mine.sampling_thereafter,
            ),
            output,
        });
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
    /// One key per kind of line (summary, item, batch dump), as zap samples per message.
    sampler: Sampler,
    /// Where lines go when not through sluice's log.
    output: Option<Output>,
}

/// `output_paths` of a debug exporter with its own logger.
struct Output(Vec<Mutex<Box<dyn Write + Send>>>);

impl Output {
    fn open(paths: &[String]) -> Result<Output, String> {
        let mut out = Vec::new();
        for path in paths {
            let writer: Box<dyn Write + Send> = match path.as_str() {
                "stdout" => Box::new(std::io::stdout()),
                "stderr" => Box::new(std::io::stderr()),
                file => {
                    let file = file.strip_prefix("file://").unwrap_or(file);
                    Box::new(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(file)
                            .map_err(|e| format!("cannot open {file}: {e}"))?,
                    )
                }
            };
            out.push(Mutex::new(writer));
        }
        Ok(Output(out))
    }

    /// A failed write is dropped: a debug line is never worth failing the data for.
    fn line(&self, text: &str) {
        for w in &self.0 {
            let mut w = w.lock().unwrap_or_else(|p| p.into_inner());
            let _ = w
                .write_all(text.as_bytes())
                .and_then(|()| w.write_all(b"\n"))
                .and_then(|()| w.flush());
        }
    }
}

/// Sampling keys: the kinds of line the exporter writes.
const SUMMARY: u64 = 1;
const ITEM: u64 = 2;
const DUMP: u64 = 3;

impl DebugExporter {
    fn write(&self, key: u64, text: &str) {
        if !self.sampler.allow(key) {
            return;
        }
        match &self.output {
            Some(out) => out.line(text),
            None => tracing::info!(exporter = %self.name, "{text}"),
        }
    }
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
        self.write(
            SUMMARY,
            &format!(
                "{signal}: {} {} in {} resources",
                batch.items(),
                S::ITEM_NAME,
                batch.resources().len()
            ),
        );
        match self.verbosity {
            Verbosity::Basic => {}
            Verbosity::Normal => {
                for line in S::describe(batch.resources()) {
                    self.write(ITEM, &line);
                }
            }
            Verbosity::Detailed => {
                let mut json = Vec::new();
                encode_json::<S>(batch.resources(), &mut json).map_err(|e| {
                    DeliveryError::permanent(format!("cannot encode as OTLP/JSON: {e}"))
                })?;
                self.write(DUMP, &String::from_utf8_lossy(&json));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_config::{ComponentId, ComponentKind, Pos};

    fn settings(type_name: &str, yaml: &str) -> Result<Settings, ConfigErrors> {
        let config = ComponentConfig {
            kind: ComponentKind::Exporter,
            id: ComponentId::new(type_name),
            pos: Pos::new("d.yaml", 1, 1),
            path: format!("exporters.{type_name}"),
            node: sluice_config::parse_yaml("d.yaml", yaml).unwrap(),
        };
        let cfg: DebugConfig = decode_config(&config)?;
        cfg.settings(&config)
    }

    #[test]
    fn the_old_logging_exporter_keeps_its_keys_and_defaults() {
        let s = settings("logging", "loglevel: debug\n").unwrap();
        assert_eq!(s.verbosity, Verbosity::Detailed);
        assert_eq!((s.sampling_initial, s.sampling_thereafter), (2, 500));
        assert_eq!(
            settings("logging", "{}\n").unwrap().verbosity,
            Verbosity::Normal
        );
        assert_eq!(
            settings("logging", "loglevel: warn\n").unwrap().verbosity,
            Verbosity::Basic
        );
        let d = settings("debug", "{}\n").unwrap();
        assert_eq!((d.verbosity, d.sampling_thereafter), (Verbosity::Basic, 1));
        assert!(settings("logging", "loglevel: info\nverbosity: basic\n").is_err());
    }

    #[test]
    fn output_paths_need_their_own_logger() {
        assert!(settings("debug", "output_paths: [stdout]\n").is_err());
        let s = settings("debug", "use_internal_logger: false\n").unwrap();
        assert_eq!(s.output, Some(vec!["stdout".to_string()]));
        assert!(settings("debug", "use_internal_logger: false\noutput_paths: []\n").is_err());
    }
}
