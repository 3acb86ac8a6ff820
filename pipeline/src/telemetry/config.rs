//! `service.telemetry` as the OTel Collector writes it: the collector's own resource, logs,
//! metrics (pull and periodic OTLP readers) and traces.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer};
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, ConfigErrors, Diagnostic, Node};

use super::metrics::PromOptions;
use crate::config_keys::{ConfigWarnings, NoEffect, decode_section};

pub const DEFAULT_METRICS_ADDRESS: &str = "localhost:8888";
pub const DEFAULT_HEALTH_ENDPOINT: &str = "localhost:13133";

/// Keys of `service.telemetry` that cannot mean anything for sluice, and why.
const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "traces",
        "sluice does not trace its own work, so there are no internal spans to level, sample, \
         propagate or export",
    ),
    NoEffect::new(
        "logs.development",
        "zap's development mode (panics on DPanic-level logs) is a Go logging library setting",
    ),
    NoEffect::new(
        "logs.disable_stacktrace",
        "sluice's log lines never carry stack traces",
    ),
    NoEffect::new(
        "logs.disable_zap_resource",
        "sluice does not repeat the resource on every log line; the OTLP log export \
         (`logs.processors`) carries it",
    ),
    NoEffect::new(
        "metrics.views",
        "sluice's own metrics have no histograms and no per-instrument aggregation to change; \
         every series is exported as it is",
    ),
    NoEffect::new(
        "metrics.readers.*.producers",
        "extra metric producers (OpenCensus bridges, Prometheus registries) are Go libraries",
    ),
    NoEffect::new(
        "metrics.readers.*.periodic.exporter.otlp.default_histogram_aggregation",
        "sluice's own metrics have no histograms",
    ),
    NoEffect::new(
        "resource.detectors",
        "the OTel Go SDK's resource detectors are not part of sluice; set the attributes \
         under `resource` instead",
    ),
    NoEffect::new(
        "resource.detection/development",
        "the OTel Go SDK's resource detectors are not part of sluice; set the attributes \
         under `resource` instead",
    ),
];

/// `service.telemetry`: the collector's own logs and metrics.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Attributes of sluice's own resource (its metrics and exported logs). Either a map
    /// (a `null` value removes an attribute, e.g. `service.instance.id: null`) or the newer
    /// `attributes: [{name, value, type}]` list. Defaults: `service.name: sluice`,
    /// `service.version`, `service.instance.id` (random per start).
    pub resource: ResourceConfig,
    pub logs: LogsTelemetry,
    pub metrics: MetricsTelemetry,
}

/// `service.telemetry.resource`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceConfig {
    /// Each attribute as written, `None` to remove it.
    pub attributes: Vec<(String, Option<serde_json::Value>)>,
    /// `schema_url` of the newer form.
    pub schema_url: Option<String>,
}

impl<'de> Deserialize<'de> for ResourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map: BTreeMap<String, serde_json::Value> = match Option::deserialize(d)? {
            Some(m) => m,
            None => return Ok(ResourceConfig::default()),
        };
        let new_form = matches!(map.get("attributes"), Some(serde_json::Value::Array(_)))
            || map.contains_key("schema_url");
        if !new_form {
            let mut attributes = Vec::new();
            for (key, value) in map {
                match value {
                    serde_json::Value::Null => attributes.push((key, None)),
                    serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                        return Err(D::Error::custom(format!(
                            "resource `{key}`: a value must be a string, or null to remove it"
                        )));
                    }
                    v => attributes.push((key, Some(v))),
                }
            }
            return Ok(ResourceConfig {
                attributes,
                schema_url: None,
            });
        }
        let mut out = ResourceConfig::default();
        for (key, value) in map {
            match key.as_str() {
                "schema_url" => out.schema_url = value.as_str().map(str::to_string),
                "attributes" => {
                    let list: Vec<AttributeDecl> =
                        serde_json::from_value(value).map_err(D::Error::custom)?;
                    for a in list {
                        out.attributes.push((a.name, Some(a.value)));
                    }
                }
                // Taken out with a warning before decoding; anything else is unknown.
                "detectors" | "detection/development" => {}
                "attributes_list" => {
                    return Err(D::Error::custom(
                        "resource `attributes_list` is not supported (as in the OTel \
                         Collector); use `attributes`",
                    ));
                }
                other => {
                    return Err(D::Error::custom(format!(
                        "unknown key `{other}` in the `attributes` form of resource; known: \
                         attributes, schema_url"
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// One entry of `resource.attributes`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributeDecl {
    name: String,
    value: serde_json::Value,
    /// `string`, `bool`, `int`, `double` or their `_array` forms; the value's own type is
    /// used, so this only documents it.
    #[serde(default, rename = "type")]
    _kind: Option<String>,
}

/// `service.telemetry.logs`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTelemetry {
    /// `debug`, `info` (default), `warn`, `error` (`dpanic`, `panic`, `fatal` mean
    /// `error`); `RUST_LOG` overrides it.
    pub level: String,
    /// `console` (human-readable, default) or `json`.
    pub encoding: LogEncoding,
    /// Leave out the source file and line of each log line (default false: included).
    pub disable_caller: bool,
    /// Log only some of many identical lines (default: off in sluice, whose repeated
    /// warnings are already limited per cause; the Collector's defaults apply to an empty
    /// `sampling:`).
    pub sampling: Option<LogSampling>,
    /// Where log lines go: `stderr` (default), `stdout`, file paths or `file://` URLs.
    pub output_paths: Vec<String>,
    /// Where the logger reports that it cannot write a line (default `stderr`).
    pub error_output_paths: Vec<String>,
    /// Fields added to every log line.
    pub initial_fields: BTreeMap<String, serde_json::Value>,
    /// Also export sluice's own logs over OTLP (`batch` or `simple` processors).
    pub processors: Vec<LogProcessor>,
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        LogsTelemetry {
            level: "info".into(),
            encoding: LogEncoding::Console,
            disable_caller: false,
            sampling: None,
            output_paths: vec!["stderr".into()],
            error_output_paths: vec!["stderr".into()],
            initial_fields: BTreeMap::new(),
            processors: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    #[default]
    Console,
    Json,
}

/// `logs.sampling`: of the lines with the same message and level in each `tick`, the first
/// `initial` are written, then every `thereafter`-th.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSampling {
    /// Default true; false turns sampling off.
    pub enabled: bool,
    /// Default 10s.
    pub tick: sluice_config::Duration,
    /// Default 10.
    pub initial: u64,
    /// Default 100; 0 drops every line past `initial`.
    pub thereafter: u64,
}

impl Default for LogSampling {
    fn default() -> Self {
        LogSampling {
            enabled: true,
            tick: sluice_config::Duration(StdDuration::from_secs(10)),
            initial: 10,
            thereafter: 100,
        }
    }
}

/// One of `logs.processors`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogProcessor {
    /// Lines are gathered and sent every `schedule_delay`.
    #[serde(default)]
    pub batch: Option<BatchLogProcessor>,
    /// Every line is sent on its own.
    #[serde(default)]
    pub simple: Option<SimpleLogProcessor>,
}

/// `logs.processors[].batch`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchLogProcessor {
    /// Milliseconds between sends (default 1000).
    #[serde(default = "default_schedule_delay")]
    pub schedule_delay: Millis,
    /// Milliseconds one send may take (default 30000).
    #[serde(default = "default_export_timeout")]
    pub export_timeout: Millis,
    /// Lines held at most; more are dropped (default 2048).
    #[serde(default = "default_max_queue_size")]
    pub max_queue_size: usize,
    /// Lines per send at most (default 512).
    #[serde(default = "default_max_export_batch_size")]
    pub max_export_batch_size: usize,
    pub exporter: PushExporter,
}

fn default_schedule_delay() -> Millis {
    Millis(StdDuration::from_secs(1))
}
fn default_export_timeout() -> Millis {
    Millis(StdDuration::from_secs(30))
}
fn default_max_queue_size() -> usize {
    2048
}
fn default_max_export_batch_size() -> usize {
    512
}

/// `logs.processors[].simple`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleLogProcessor {
    pub exporter: PushExporter,
}

/// Where a processor or periodic reader sends: OTLP, or the console (stdout).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushExporter {
    #[serde(default)]
    pub otlp: Option<OtlpTarget>,
    /// `console: {}` writes each export as an OTLP/JSON line to stdout.
    #[serde(default)]
    pub console: Option<serde::de::IgnoredAny>,
}

/// A duration written as milliseconds (the OTel SDK config's form); a duration string such as
/// `10s` is accepted too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Millis(pub StdDuration);

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("milliseconds, or a duration such as `10s`")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(StdDuration::from_millis(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Millis, E> {
                u64::try_from(v)
                    .map(|v| Millis(StdDuration::from_millis(v)))
                    .map_err(|_| E::custom("must not be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Millis, E> {
                if let Ok(n) = v.trim().parse::<u64>() {
                    return Ok(Millis(StdDuration::from_millis(n)));
                }
                v.parse::<sluice_config::Duration>()
                    .map(|d| Millis(d.0))
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// `exporter.otlp` of a periodic reader or log processor.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OtlpTarget {
    /// `grpc`, `http/protobuf` or `http/json` (`grpc/protobuf` is the older spelling).
    pub protocol: OtlpProtocol,
    /// e.g. `http://localhost:4318` or `https://host:4317`. For HTTP the signal's path
    /// (`/v1/metrics`, `/v1/logs`) is appended unless the URL has a path already.
    pub endpoint: String,
    /// A list of `{name, value}` or a map.
    #[serde(default)]
    pub headers: Headers,
    /// `k1=v1,k2=v2`, added to `headers`.
    #[serde(default)]
    pub headers_list: Option<String>,
    /// gRPC without TLS (for HTTP the URL's scheme decides). Default false.
    #[serde(default)]
    pub insecure: bool,
    /// CA file to verify the server with (default: the system's roots).
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// Client certificate file, for mTLS.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    /// Client key file, for mTLS.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// `gzip` or `none` (default).
    #[serde(default)]
    pub compression: PushCompression,
    /// Milliseconds one export may take (default 10000).
    #[serde(default = "default_push_timeout")]
    pub timeout: Millis,
    /// `cumulative` (default), `delta` or `low_memory` (delta for counters).
    #[serde(default)]
    pub temporality_preference: Temporality,
}

fn default_push_timeout() -> Millis {
    Millis(StdDuration::from_secs(10))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "grpc", alias = "grpc/protobuf")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushCompression {
    Gzip,
    #[default]
    #[serde(alias = "")]
    None,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Temporality {
    #[default]
    Cumulative,
    Delta,
    LowMemory,
}

/// Request headers: the OTel SDK config's list of `{name, value}`, or a map.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headers(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Pair {
            name: String,
            value: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<Pair>),
            Map(BTreeMap<String, String>),
        }
        Ok(match Option::<Form>::deserialize(d)? {
            None => Headers::default(),
            Some(Form::List(l)) => Headers(l.into_iter().map(|p| (p.name, p.value)).collect()),
            Some(Form::Map(m)) => Headers(m.into_iter().collect()),
        })
    }
}

impl OtlpTarget {
    /// Every header, `headers_list` included.
    pub fn all_headers(&self) -> Vec<(String, String)> {
        let mut out = self.headers.0.clone();
        for pair in self.headers_list.iter().flat_map(|l| l.split(',')) {
            if let Some((k, v)) = pair.split_once('=') {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        out
    }
}

/// `service.telemetry.metrics`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// `none` turns every reader off; `basic`, `normal` (default), `detailed` all report
    /// every series sluice has.
    pub level: MetricsLevel,
    /// Where Prometheus scrapes `/metrics` (the older collector key; `:8888` means every
    /// interface). Default `localhost:8888`, unless `readers` is set.
    pub address: Option<String>,
    /// Where the metrics go: `pull` (a Prometheus endpoint) and `periodic` (OTLP push)
    /// readers. Setting it replaces the default endpoint.
    pub readers: Vec<MetricReader>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    None,
    Basic,
    #[default]
    Normal,
    Detailed,
}

/// One of `metrics.readers`: exactly one of `pull` and `periodic`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricReader {
    #[serde(default)]
    pub pull: Option<PullReader>,
    #[serde(default)]
    pub periodic: Option<PeriodicReader>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullReader {
    pub exporter: PullExporter,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullExporter {
    pub prometheus: PrometheusEndpoint,
}

/// `pull.exporter.prometheus`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusEndpoint {
    /// Default `localhost`; empty means every interface.
    #[serde(default = "default_prometheus_host")]
    pub host: String,
    /// Default 8888.
    #[serde(default = "default_prometheus_port")]
    pub port: u16,
    /// Leave out the `otel_scope_*` labels and `otel_scope_info` (default true).
    #[serde(default)]
    pub without_scope_info: Option<bool>,
    /// Counters without `_total` (unset: sluice keeps `_total`).
    #[serde(default)]
    pub without_type_suffix: Option<bool>,
    /// Names without unit suffixes such as `_seconds` (unset: sluice keeps them).
    #[serde(default)]
    pub without_units: Option<bool>,
    /// Resource attributes copied as labels onto every series.
    #[serde(default)]
    pub with_resource_constant_labels: Option<IncludeExclude>,
    /// The newer SDK config's naming switch; its `...WithoutSuffixes` values mean
    /// `without_type_suffix` and `without_units`.
    #[serde(default)]
    pub translation_strategy: Option<TranslationStrategy>,
}

fn default_prometheus_host() -> String {
    "localhost".into()
}
fn default_prometheus_port() -> u16 {
    8888
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum TranslationStrategy {
    UnderscoreEscapingWithSuffixes,
    UnderscoreEscapingWithoutSuffixes,
    NoUTF8EscapingWithSuffixes,
    NoTranslation,
}

/// `included` / `excluded` attribute names; `*` matches any run of characters.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IncludeExclude {
    /// Default: every attribute.
    pub included: Option<Vec<String>>,
    pub excluded: Vec<String>,
}

impl IncludeExclude {
    pub fn keeps(&self, name: &str) -> bool {
        let included = self
            .included
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| glob(p, name)));
        included && !self.excluded.iter().any(|p| glob(p, name))
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.len() >= head.len()
                && text.starts_with(head)
                && (0..=text.len() - head.len()).any(|i| {
                    text.is_char_boundary(head.len() + i) && glob(tail, &text[head.len() + i..])
                })
        }
    }
}

/// `periodic`: push the metrics every `interval`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodicReader {
    /// Milliseconds between pushes (default 60000).
    #[serde(default = "default_interval")]
    pub interval: Millis,
    /// Milliseconds one push may take (default 30000).
    #[serde(default = "default_export_timeout")]
    pub timeout: Millis,
    pub exporter: PushExporter,
}

fn default_interval() -> Millis {
    Millis(StdDuration::from_secs(60))
}

/// A Prometheus endpoint to serve.
#[derive(Clone, Debug, PartialEq)]
pub struct PullEndpoint {
    pub address: String,
    /// Whether the user chose it: a chosen address that cannot be bound is an error; the
    /// default one being taken only earns a warning.
    pub configured: bool,
    pub options: PromOptions,
}

impl PrometheusEndpoint {
    fn options(&self, resource: &[(String, String)]) -> PromOptions {
        let strip = matches!(
            self.translation_strategy,
            Some(
                TranslationStrategy::UnderscoreEscapingWithoutSuffixes
                    | TranslationStrategy::NoTranslation
            )
        );
        PromOptions {
            without_type_suffix: self.without_type_suffix.unwrap_or(strip),
            without_units: self.without_units.unwrap_or(strip),
            without_scope_info: self.without_scope_info.unwrap_or(true),
            constant_labels: match &self.with_resource_constant_labels {
                Some(filter) => resource
                    .iter()
                    .filter(|(k, _)| filter.keeps(k))
                    .map(|(k, v)| (super::metrics::label_name(k), v.clone()))
                    .collect(),
                None => Vec::new(),
            },
            target_info: resource.to_vec(),
        }
    }
}

impl TelemetryConfig {
    /// Decodes `service.telemetry`, reporting every problem of it at once and warning about
    /// keys that have no effect in sluice.
    pub fn decode(
        node: &Node,
        path: &str,
        warnings: &ConfigWarnings,
    ) -> Result<TelemetryConfig, ConfigErrors> {
        let section = section(node, path);
        let cfg: TelemetryConfig = decode_section(&section, NO_EFFECT, warnings)?;
        let mut errors = Vec::new();
        for (i, reader) in cfg.metrics.readers.iter().enumerate() {
            let key = format!("metrics.readers.{i}");
            match (&reader.pull, &reader.periodic) {
                (Some(_), Some(_)) | (None, None) => errors.push(at(
                    &section,
                    &key,
                    "a reader has exactly one of `pull` and `periodic`",
                )),
                (None, Some(p)) => match (&p.exporter.otlp, &p.exporter.console) {
                    (Some(_), Some(_)) | (None, None) => errors.push(at(
                        &section,
                        &format!("{key}.periodic.exporter"),
                        "an exporter has exactly one of `otlp` and `console`",
                    )),
                    _ => {}
                },
                _ => {}
            }
            if let Some(pull) = &reader.pull
                && pull.exporter.prometheus.translation_strategy
                    == Some(TranslationStrategy::NoUTF8EscapingWithSuffixes)
            {
                warnings.push(at(
                    &section,
                    &format!("{key}.pull.exporter.prometheus.translation_strategy"),
                    "accepted: sluice's metric and label names need no escaping, so this is \
                     the same as UnderscoreEscapingWithSuffixes",
                ));
            }
        }
        for (i, p) in cfg.logs.processors.iter().enumerate() {
            let key = format!("logs.processors.{i}");
            let exporter = match (&p.batch, &p.simple) {
                (Some(b), None) => &b.exporter,
                (None, Some(s)) => &s.exporter,
                _ => {
                    errors.push(at(
                        &section,
                        &key,
                        "a processor has exactly one of `batch` and `simple`",
                    ));
                    continue;
                }
            };
            if exporter.otlp.is_some() == exporter.console.is_some() {
                errors.push(at(
                    &section,
                    &key,
                    "an exporter has exactly one of `otlp` and `console`",
                ));
            }
        }
        if cfg.logs.output_paths.is_empty() {
            errors.push(at(
                &section,
                "logs.output_paths",
                "needs at least one of stdout, stderr or a file path",
            ));
        }
        if let Some(s) = &cfg.logs.sampling
            && s.enabled
            && s.tick.0.is_zero()
        {
            errors.push(at(&section, "logs.sampling.tick", "must be above 0"));
        }
        if !matches!(
            cfg.logs.level.to_ascii_lowercase().as_str(),
            "debug" | "info" | "warn" | "error" | "dpanic" | "panic" | "fatal"
        ) && !cfg.logs.level.contains('=')
        {
            errors.push(at(
                &section,
                "logs.level",
                format!(
                    "unknown level `{}`; known: debug, info, warn, error, dpanic, panic, fatal",
                    cfg.logs.level
                ),
            ));
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The resource attributes of sluice's own telemetry: the defaults, with the configured
    /// ones added, replaced or (null) removed.
    pub fn resource_attributes(&self, instance_id: &str) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = vec![
            ("service.name".into(), "sluice".into()),
            ("service.version".into(), env!("CARGO_PKG_VERSION").into()),
            ("service.instance.id".into(), instance_id.into()),
        ];
        for (key, value) in &self.resource.attributes {
            out.retain(|(k, _)| k != key);
            if let Some(v) = value {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.push((key.clone(), text));
            }
        }
        out
    }

    /// The Prometheus endpoints to serve, none with `level: none`.
    pub fn pull_endpoints(&self, resource: &[(String, String)]) -> Vec<PullEndpoint> {
        if self.metrics.level == MetricsLevel::None {
            return Vec::new();
        }
        if self.metrics.readers.is_empty() {
            return vec![match &self.metrics.address {
                Some(a) => PullEndpoint {
                    address: a.clone(),
                    configured: true,
                    options: PromOptions::default(),
                },
                None => PullEndpoint {
                    address: DEFAULT_METRICS_ADDRESS.into(),
                    configured: false,
                    options: PromOptions::default(),
                },
            }];
        }
        let mut out: Vec<PullEndpoint> = self
            .metrics
            .readers
            .iter()
            .filter_map(|r| r.pull.as_ref())
            .map(|p| {
                let p = &p.exporter.prometheus;
                let host = if p.host.contains(':') && !p.host.starts_with('[') {
                    format!("[{}]", p.host)
                } else {
                    p.host.clone()
                };
                PullEndpoint {
                    address: format!("{host}:{}", p.port),
                    configured: true,
                    options: p.options(resource),
                }
            })
            .collect();
        // Both forms written: the older address is served too, as it was before readers.
        if let Some(a) = &self.metrics.address {
            out.push(PullEndpoint {
                address: a.clone(),
                configured: true,
                options: PromOptions::default(),
            });
        }
        out
    }

    /// The periodic readers, none with `level: none`.
    pub fn periodic_readers(&self) -> Vec<&PeriodicReader> {
        if self.metrics.level == MetricsLevel::None {
            return Vec::new();
        }
        self.metrics
            .readers
            .iter()
            .filter_map(|r| r.periodic.as_ref())
            .collect()
    }
}

/// `service.telemetry` as a section of its own, so the component tools apply to it.
fn section(node: &Node, path: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Extension,
        id: ComponentId::new("telemetry"),
        pos: node.pos.clone(),
        path: path.to_string(),
        node: node.clone(),
    }
}

/// A problem at `key`, a dotted path in which a number picks a list element
/// (`metrics.readers.1.periodic`), placed at the deepest part of it the config has.
fn at(section: &ComponentConfig, key: &str, message: impl Into<String>) -> Diagnostic {
    let mut node = &section.node;
    let mut path = section.path.clone();
    for step in key.split('.') {
        let next = match (step.parse::<usize>(), &node.value) {
            (Ok(i), sluice_config::Value::Seq(items)) => {
                path = format!("{path}[{i}]");
                items.get(i)
            }
            _ => {
                path = format!("{path}.{step}");
                node.get(step)
            }
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    Diagnostic::new(Some(node.pos.clone()), path, message)
}

/// A problem in `service.telemetry`, for checks made after decoding.
pub fn telemetry_problem(node: &Node, path: &str, key: &str, message: &str) -> Diagnostic {
    at(&section(node, path), key, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(yaml: &str) -> (Result<TelemetryConfig, ConfigErrors>, Vec<Diagnostic>) {
        let node = sluice_config::parse_yaml("t.yaml", yaml).unwrap();
        let warnings = ConfigWarnings::default();
        let r = TelemetryConfig::decode(&node, "service.telemetry", &warnings);
        (r, warnings.take())
    }

    #[test]
    fn a_null_resource_value_removes_the_attribute() {
        let (cfg, _) = decode(
            "resource:\n  service.instance.id: null\n  deployment.environment: prod\n  service.name: edge\n",
        );
        let attrs = cfg.unwrap().resource_attributes("id-1");
        assert!(!attrs.iter().any(|(k, _)| k == "service.instance.id"));
        assert!(attrs.contains(&("deployment.environment".into(), "prod".into())));
        assert!(attrs.contains(&("service.name".into(), "edge".into())));
        let (cfg, _) = decode(
            "resource:\n  schema_url: https://x\n  attributes:\n    - {name: team, value: core, type: string}\n",
        );
        let attrs = cfg.unwrap().resource_attributes("id-1");
        assert!(attrs.contains(&("team".into(), "core".into())));
        assert!(attrs.contains(&("service.instance.id".into(), "id-1".into())));
    }

    #[test]
    fn readers_give_endpoints_and_pushers() {
        let (cfg, warnings) = decode(
            "metrics:\n  level: detailed\n  views: []\n  readers:\n    - pull:\n        exporter:\n          prometheus:\n            host: 0.0.0.0\n            port: 9999\n            without_type_suffix: true\n            with_resource_constant_labels:\n              included: [service.*]\n              excluded: [service.version]\n    - periodic:\n        interval: 5000\n        exporter:\n          otlp:\n            protocol: http/protobuf\n            endpoint: http://localhost:4318\n            headers:\n              - {name: api-key, value: k}\n            default_histogram_aggregation: explicit_bucket_histogram\n",
        );
        let cfg = cfg.unwrap();
        let resource = cfg.resource_attributes("i");
        let pull = cfg.pull_endpoints(&resource);
        assert_eq!(pull.len(), 1);
        assert_eq!(pull[0].address, "0.0.0.0:9999");
        assert!(pull[0].options.without_type_suffix);
        assert!(!pull[0].options.without_units);
        let labels: Vec<&str> = pull[0]
            .options
            .constant_labels
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(labels, ["service_name", "service_instance_id"]);
        let periodic = cfg.periodic_readers();
        assert_eq!(periodic[0].interval.0, StdDuration::from_secs(5));
        let otlp = periodic[0].exporter.otlp.as_ref().unwrap();
        assert_eq!(otlp.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(
            otlp.all_headers(),
            [("api-key".to_string(), "k".to_string())]
        );
        let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
        assert!(
            paths.contains(&"service.telemetry.metrics.views"),
            "{paths:?}"
        );
        assert!(
            paths.contains(
                &"service.telemetry.metrics.readers[1].periodic.exporter.otlp.default_histogram_aggregation"
            ),
            "{paths:?}"
        );
    }

    #[test]
    fn level_none_turns_every_reader_off_and_the_address_takes_go_form() {
        let (cfg, _) = decode("metrics:\n  level: none\n  address: \":8888\"\n");
        let cfg = cfg.unwrap();
        assert!(cfg.pull_endpoints(&[]).is_empty());
        let (cfg, _) = decode("metrics:\n  address: \":8888\"\n");
        assert_eq!(cfg.unwrap().pull_endpoints(&[])[0].address, ":8888");
        let (cfg, _) = decode("{}\n");
        let e = cfg.unwrap().pull_endpoints(&[]);
        assert_eq!(e[0].address, DEFAULT_METRICS_ADDRESS);
        assert!(!e[0].configured);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let (cfg, _) = decode(
            "logs:\n  level: loud\n  output_paths: []\nmetrics:\n  readers:\n    - {}\n  levle: none\n",
        );
        let text = cfg.unwrap_err().to_string();
        assert!(text.contains("levle"), "{text}");
        let (cfg, _) =
            decode("logs:\n  level: loud\n  output_paths: []\nmetrics:\n  readers:\n    - {}\n");
        let text = cfg.unwrap_err().to_string();
        assert!(text.contains("unknown level `loud`"), "{text}");
        assert!(text.contains("output_paths"), "{text}");
        assert!(
            text.contains("exactly one of `pull` and `periodic`"),
            "{text}"
        );
    }

    #[test]
    fn go_only_and_tracing_keys_are_warned_about() {
        let (cfg, warnings) = decode(
            "logs:\n  development: true\n  disable_stacktrace: true\n  sampling:\n    initial: 5\ntraces:\n  level: none\n  propagators: [tracecontext]\n",
        );
        let cfg = cfg.unwrap();
        assert_eq!(cfg.logs.sampling.unwrap().initial, 5);
        let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
        assert!(paths.contains(&"service.telemetry.traces"), "{paths:?}");
        assert!(
            paths.contains(&"service.telemetry.logs.development"),
            "{paths:?}"
        );
    }

    #[test]
    fn include_exclude_globs() {
        let f = IncludeExclude {
            included: Some(vec!["service.*".into()]),
            excluded: vec!["*.version".into()],
        };
        assert!(f.keeps("service.name"));
        assert!(!f.keeps("service.version"));
        assert!(!f.keeps("host.name"));
        assert!(IncludeExclude::default().keeps("anything"));
    }
}
