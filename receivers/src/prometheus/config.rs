//! `receivers: prometheus:` — the OTel Collector's keys around a Prometheus `config:` with
//! `global` and `scrape_configs`, decoded with Prometheus' own names and defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Node, Value};
use sluice_pipeline::config_keys::{ConfigWarnings, NoEffect};

use super::relabel::RelabelConfig;

/// Keys of the receiver itself that cannot change what is scraped or produced.
pub const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "api_server",
        "it serves Prometheus' debugging API about targets, which sluice does not have",
    ),
    NoEffect::new(
        "buffer_period",
        "an old buffering knob of the OTel Collector's receiver; sluice sends each scrape as it completes",
    ),
    NoEffect::new(
        "buffer_count",
        "an old buffering knob of the OTel Collector's receiver; sluice sends each scrape as it completes",
    ),
];

/// Keys of a scrape config (and `global`) with no effect in sluice, and why.
const SCRAPE_NO_EFFECT: &[(&str, &str)] = &[
    (
        "keep_dropped_targets",
        "it bounds what Prometheus' targets API lists; sluice has no such API",
    ),
    (
        "native_histogram_bucket_limit",
        "sluice scrapes the text formats, which carry no native histograms",
    ),
    (
        "native_histogram_min_bucket_factor",
        "sluice scrapes the text formats, which carry no native histograms",
    ),
    (
        "scrape_classic_histograms",
        "sluice scrapes the text formats, where histograms are always classic",
    ),
    (
        "always_scrape_classic_histograms",
        "sluice scrapes the text formats, where histograms are always classic",
    ),
    (
        "convert_classic_histograms_to_nhcb",
        "classic histograms already become OTLP explicit-bucket histograms, which is what NHCB describes",
    ),
    (
        "metric_name_validation_scheme",
        "metric names are kept as exposed; the text formats sluice reads carry legacy names",
    ),
    (
        "metric_name_escaping_scheme",
        "metric names are kept as exposed; the text formats sluice reads carry legacy names",
    ),
    (
        "proxy_connect_header",
        "headers for a CONNECT proxy are not supported by sluice's HTTP client; the proxy itself is used",
    ),
    ("evaluation_interval", "sluice evaluates no rules"),
    (
        "external_labels",
        "Prometheus adds them only when talking to other systems; the OTel Collector's receiver ignores them too",
    ),
    ("query_log_file", "sluice answers no PromQL queries"),
    ("rule_query_offset", "sluice evaluates no rules"),
];

/// Top-level Prometheus sections with no effect on scraping.
const GLOBAL_SECTIONS_NO_EFFECT: &[(&str, &str)] = &[
    (
        "storage",
        "sluice stores nothing; scraped data goes down the pipeline",
    ),
    ("tracing", "it traces Prometheus' own work"),
    (
        "otlp",
        "it configures Prometheus' OTLP ingestion, not scraping",
    ),
    ("runtime", "a Go runtime knob"),
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusReceiverConfig {
    /// The Prometheus configuration: `global` and `scrape_configs` (required).
    #[serde(default)]
    pub config: Option<PromConfig>,
    /// Trim unit and `_total` suffixes from metric names (default false).
    #[serde(default)]
    pub trim_metric_suffixes: bool,
    /// Also report `scrape_body_size_bytes`, `scrape_sample_limit` and
    /// `scrape_timeout_seconds` per target (default false).
    #[serde(default)]
    pub report_extra_scrape_metrics: bool,
    /// Start every cumulative series at the value of `start_time_metric_regex`'s metric
    /// (default false). Older releases' key, still accepted.
    #[serde(default)]
    pub use_start_time_metric: bool,
    /// The metric `use_start_time_metric` reads (default `process_start_time_seconds`).
    #[serde(default)]
    pub start_time_metric_regex: Option<String>,
    /// The OpenTelemetry Operator's target allocator: refused with an explanation.
    #[serde(default)]
    pub target_allocator: Option<IgnoredAny>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromConfig {
    /// Defaults for every scrape config.
    #[serde(default)]
    pub global: Global,
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Globs of files holding more `scrape_configs`.
    #[serde(default)]
    pub scrape_config_files: Vec<String>,
    #[serde(default)]
    pub rule_files: Option<IgnoredAny>,
    #[serde(default)]
    pub remote_write: Option<IgnoredAny>,
    #[serde(default)]
    pub remote_read: Option<IgnoredAny>,
    #[serde(default)]
    pub alerting: Option<IgnoredAny>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// How often to scrape (default 1m).
    #[serde(default)]
    pub scrape_interval: Option<PromDuration>,
    /// How long a scrape may take (default 10s, at most the interval).
    #[serde(default)]
    pub scrape_timeout: Option<PromDuration>,
    #[serde(default)]
    pub scrape_protocols: Option<Vec<String>>,
    #[serde(default)]
    pub body_size_limit: Option<SizeLimit>,
    #[serde(default)]
    pub sample_limit: Option<u64>,
    #[serde(default)]
    pub label_limit: Option<u64>,
    #[serde(default)]
    pub label_name_length_limit: Option<u64>,
    #[serde(default)]
    pub label_value_length_limit: Option<u64>,
    #[serde(default)]
    pub target_limit: Option<u64>,
    #[serde(default)]
    pub scrape_failure_log_file: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    /// `host:port` addresses.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels every target of the group gets.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Files (globs) of target groups, JSON (`.json`) or YAML (`.yml`, `.yaml`).
    pub files: Vec<String>,
    /// Re-read at least this often (default 5m); changes are also picked up within seconds.
    #[serde(default)]
    pub refresh_interval: Option<PromDuration>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSdConfig {
    /// URL answering a JSON list of target groups.
    pub url: String,
    /// How often to ask (default 1m).
    #[serde(default)]
    pub refresh_interval: Option<PromDuration>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// TLS towards the discovery URL, independent of the scrape config's `tls_config`.
    #[serde(default)]
    pub tls_config: TlsConfig,
    #[serde(default)]
    pub http_headers: Option<BTreeMap<String, HeaderValues>>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default)]
    pub no_proxy: Option<String>,
    #[serde(default)]
    pub proxy_from_environment: bool,
    /// Follow redirects (default true).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// Allow HTTP/2 (default true).
    #[serde(default)]
    pub enable_http2: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub username_file: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme (default `Bearer`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub credentials: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM text of the CA (instead of `ca_file`).
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub cert_file: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub key_file: Option<String>,
    /// The name to check the certificate against (default: the target's host).
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// `TLS12` or `TLS13`.
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
}

/// `http_headers.<name>`: values written as they are, secret values, or values read from files.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderValues {
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `job` label and `service.name` of every target.
    pub job_name: String,
    #[serde(default)]
    pub scrape_interval: Option<PromDuration>,
    #[serde(default)]
    pub scrape_timeout: Option<PromDuration>,
    /// Formats to ask for, in order: `OpenMetricsText1.0.0`, `OpenMetricsText0.0.1`,
    /// `PrometheusText0.0.4` (`PrometheusProto` and `PrometheusText1.0.0` are skipped).
    #[serde(default)]
    pub scrape_protocols: Option<Vec<String>>,
    /// The format assumed when a target sends no usable `Content-Type`.
    #[serde(default)]
    pub fallback_scrape_protocol: Option<String>,
    /// Default `/metrics`.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// `http` (default) or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// URL query parameters.
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    /// Keep the target's labels on conflict instead of renaming them `exported_*` (default false).
    #[serde(default)]
    pub honor_labels: bool,
    /// Use the timestamps the target exposes (default true).
    #[serde(default)]
    pub honor_timestamps: Option<bool>,
    /// Also mark series with explicit timestamps stale when they disappear (default false).
    #[serde(default)]
    pub track_timestamps_staleness: bool,
    /// Ask for gzip (default true).
    #[serde(default)]
    pub enable_compression: Option<bool>,
    #[serde(default)]
    pub static_configs: Vec<TargetGroup>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    pub http_sd_configs: Vec<HttpSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub authorization: Option<Authorization>,
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub bearer_token_file: Option<String>,
    #[serde(default)]
    pub oauth2: Option<IgnoredAny>,
    #[serde(default)]
    pub tls_config: TlsConfig,
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default)]
    pub no_proxy: Option<String>,
    #[serde(default)]
    pub proxy_from_environment: bool,
    /// Follow redirects (default true).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// Allow HTTP/2 (default true).
    #[serde(default)]
    pub enable_http2: Option<bool>,
    #[serde(default)]
    pub http_headers: Option<BTreeMap<String, HeaderValues>>,
    /// Fail a scrape with more samples than this after relabelling (0: no limit).
    #[serde(default)]
    pub sample_limit: Option<u64>,
    /// Fail a scrape with a series of more labels than this (0: no limit).
    #[serde(default)]
    pub label_limit: Option<u64>,
    #[serde(default)]
    pub label_name_length_limit: Option<u64>,
    #[serde(default)]
    pub label_value_length_limit: Option<u64>,
    /// Fail every target of the job when relabelling leaves more targets than this.
    #[serde(default)]
    pub target_limit: Option<u64>,
    /// Fail a scrape whose uncompressed body is larger (default: 64 MiB in sluice).
    #[serde(default)]
    pub body_size_limit: Option<SizeLimit>,
    /// Append a line per failed scrape to this file.
    #[serde(default)]
    pub scrape_failure_log_file: Option<String>,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

fn default_scheme() -> String {
    "http".into()
}

/// A Prometheus duration: `30s`, `1m30s`, `500ms`, `2h`, `1d`, `1w`, `1y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromDuration(pub Duration);

impl PromDuration {
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        if text == "0" {
            return Ok(Duration::ZERO);
        }
        let bad = || format!("invalid duration `{text}` (e.g. `15s`, `1m30s`, `500ms`, `1d`)");
        let mut rest = text;
        let mut total: u128 = 0;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u128 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let ms: u128 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "y" => 365 * 86_400_000,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total += n * ms;
        }
        Ok(Duration::from_millis(
            u64::try_from(total).map_err(|_| bad())?,
        ))
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PromDuration::parse(&text)
            .map(PromDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// A Prometheus byte size (`10MB`, `1GB`, `512KiB`; Prometheus' units are all powers of 2);
/// `0` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeLimit(pub u64);

impl SizeLimit {
    pub fn parse(text: &str) -> Result<u64, String> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let bad = || format!("invalid size `{text}` (e.g. `10MB`, `512KB`)");
        let n: u64 = text[..digits].parse().map_err(|_| bad())?;
        let unit = text[digits..].trim().to_ascii_uppercase();
        let shift = match unit.as_str() {
            "" | "B" => 0,
            "KB" | "KIB" | "K" => 10,
            "MB" | "MIB" | "M" => 20,
            "GB" | "GIB" | "G" => 30,
            "TB" | "TIB" | "T" => 40,
            "PB" | "PIB" | "P" => 50,
            _ => return Err(bad()),
        };
        n.checked_mul(1u64 << shift).ok_or_else(bad)
    }
}

impl<'de> Deserialize<'de> for SizeLimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SizeLimit::parse(&text)
            .map(SizeLimit)
            .map_err(serde::de::Error::custom)
    }
}

/// Service discovery mechanisms of Prometheus that sluice does not have.
const UNSUPPORTED_SD: &[&str] = &[
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "dns_sd_configs",
    "ec2_sd_configs",
    "eureka_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "ionos_sd_configs",
    "kubernetes_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "openstack_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
    "stackit_sd_configs",
];

/// Decodes the section: scrape-config keys without effect are warned about (they sit inside
/// lists, which `decode_section` does not walk), mechanisms sluice lacks are refused, then
/// the rest is decoded strictly.
pub fn decode(
    config: &ComponentConfig,
    warnings: &ConfigWarnings,
) -> Result<PrometheusReceiverConfig, ConfigErrors> {
    let mut section = config.clone();
    let mut errors = Vec::new();
    if let Some(prom) = section.node.get_mut_path(&["config"]) {
        let base = format!("{}.config", config.path);
        strip_keys(prom, &base, GLOBAL_SECTIONS_NO_EFFECT, warnings);
        if let Some(global) = prom.as_map_mut().and_then(|m| m.get_mut("global")) {
            strip_keys(
                global,
                &format!("{base}.global"),
                SCRAPE_NO_EFFECT,
                warnings,
            );
        }
        if let Some(Value::Seq(items)) = prom
            .as_map_mut()
            .and_then(|m| m.get_mut("scrape_configs"))
            .map(|n| &mut n.value)
        {
            for (i, item) in items.iter_mut().enumerate() {
                let path = format!("{base}.scrape_configs[{i}]");
                strip_keys(item, &path, SCRAPE_NO_EFFECT, warnings);
                if let Some(map) = item.as_map() {
                    for (key, _) in map.iter() {
                        if UNSUPPORTED_SD.contains(&key.name.as_str()) {
                            errors.push(Diagnostic::new(
                                Some(key.pos.clone()),
                                format!("{path}.{}", key.name),
                                format!(
                                    "`{}` is not supported by sluice; use static_configs, file_sd_configs or http_sd_configs",
                                    key.name
                                ),
                            ));
                        }
                    }
                }
                if let Some(map) = item.as_map_mut() {
                    map.entries
                        .retain(|(k, _)| !UNSUPPORTED_SD.contains(&k.name.as_str()));
                }
            }
        }
    }
    let decoded = sluice_pipeline::config_keys::decode_section::<PrometheusReceiverConfig>(
        &section, NO_EFFECT, warnings,
    );
    let cfg = match decoded {
        Ok(cfg) if errors.is_empty() => cfg,
        Ok(_) => return Err(ConfigErrors(errors)),
        Err(mut e) => {
            e.0.extend(errors);
            return Err(e);
        }
    };
    check(config, &cfg)?;
    Ok(cfg)
}

trait NodePath {
    fn get_mut_path(&mut self, keys: &[&str]) -> Option<&mut Node>;
}

impl NodePath for Node {
    fn get_mut_path(&mut self, keys: &[&str]) -> Option<&mut Node> {
        let mut node = self;
        for key in keys {
            node = node.as_map_mut()?.get_mut(key)?;
        }
        Some(node)
    }
}

fn strip_keys(node: &mut Node, path: &str, keys: &[(&str, &str)], warnings: &ConfigWarnings) {
    let Some(map) = node.as_map_mut() else {
        return;
    };
    map.entries.retain(|(k, _)| {
        let Some((_, why)) = keys.iter().find(|(name, _)| *name == k.name) else {
            return true;
        };
        warnings.push(Diagnostic::new(
            Some(k.pos.clone()),
            format!("{path}.{}", k.name),
            format!("accepted, has no effect in sluice: {why}"),
        ));
        false
    });
}

/// What Prometheus (and the OTel Collector) refuse when loading.
fn check(component: &ComponentConfig, cfg: &PrometheusReceiverConfig) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let at =
        |key: &str, message: String| sluice_pipeline::config_keys::problem(component, key, message);
    if cfg.target_allocator.is_some() {
        errors.push(at(
            "target_allocator",
            "the OpenTelemetry Operator's target allocator is not supported by sluice; list targets in static_configs, file_sd_configs or http_sd_configs".into(),
        ));
    }
    let Some(prom) = &cfg.config else {
        if cfg.target_allocator.is_none() {
            errors.push(at(
                "config",
                "set `config.scrape_configs`: no Prometheus scrape_configs set".into(),
            ));
        }
        return ConfigErrors::result(errors);
    };
    for (key, present) in [
        ("remote_write", prom.remote_write.is_some()),
        ("remote_read", prom.remote_read.is_some()),
        ("rule_files", prom.rule_files.is_some()),
        ("alerting", prom.alerting.is_some()),
    ] {
        if present {
            errors.push(at(
                &format!("config.{key}"),
                format!("`{key}` is not supported by the prometheus receiver (nor by the OTel Collector's)"),
            ));
        }
    }
    if prom.scrape_configs.is_empty() && prom.scrape_config_files.is_empty() {
        errors.push(at(
            "config.scrape_configs",
            "no Prometheus scrape_configs set".into(),
        ));
    }
    if let Some(regex) = &cfg.start_time_metric_regex
        && let Err(e) = regex::Regex::new(regex)
    {
        errors.push(at("start_time_metric_regex", format!("invalid regex: {e}")));
    }
    let mut jobs = std::collections::HashSet::new();
    for (i, sc) in prom.scrape_configs.iter().enumerate() {
        let key = format!("config.scrape_configs.{i}");
        check_scrape_config(sc, &prom.global, &mut |field: &str, message: String| {
            let path = if field.is_empty() {
                key.clone()
            } else {
                format!("{key}.{field}")
            };
            errors.push(Diagnostic::new(
                Some(component.node.pos.clone()),
                format!(
                    "{}.config.scrape_configs[{i}]{}{}",
                    component.path,
                    if field.is_empty() { "" } else { "." },
                    field
                ),
                message,
            ));
            let _ = path;
        });
        if !jobs.insert(sc.job_name.clone()) {
            errors.push(at(
                &format!("config.scrape_configs.{i}.job_name"),
                format!("job name `{}` is used twice", sc.job_name),
            ));
        }
    }
    ConfigErrors::result(errors)
}

trait ErrorsResult {
    fn result(errors: Vec<Diagnostic>) -> Result<(), ConfigErrors>;
}

impl ErrorsResult for ConfigErrors {
    fn result(errors: Vec<Diagnostic>) -> Result<(), ConfigErrors> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// Checks one scrape config as Prometheus does at load time.
pub fn check_scrape_config(sc: &ScrapeConfig, global: &Global, fail: &mut dyn FnMut(&str, String)) {
    if sc.job_name.is_empty() {
        fail("job_name", "job_name must not be empty".into());
    }
    if sc.scheme != "http" && sc.scheme != "https" {
        fail(
            "scheme",
            format!("scheme must be http or https, not `{}`", sc.scheme),
        );
    }
    let (interval, timeout) = intervals(sc, global);
    if interval.is_zero() {
        fail("scrape_interval", "scrape_interval must be above 0".into());
    }
    if timeout > interval {
        fail(
            "scrape_timeout",
            format!("scrape_timeout ({timeout:?}) is greater than scrape_interval ({interval:?})"),
        );
    }
    for (list, rules) in [
        ("relabel_configs", &sc.relabel_configs),
        ("metric_relabel_configs", &sc.metric_relabel_configs),
    ] {
        for (i, rule) in rules.iter().enumerate() {
            if let Err(e) = rule.compile() {
                fail(&format!("{list}[{i}]"), e);
            }
        }
    }
    for (i, rule) in sc.metric_relabel_configs.iter().enumerate() {
        if rule.target_label.as_deref() == Some("__name__") {
            fail(
                &format!("metric_relabel_configs[{i}].target_label"),
                "renaming metrics (`target_label: __name__`) is refused, as by the OTel Collector: it breaks the metric's type and metadata".into(),
            );
        }
    }
    let auths = [
        sc.basic_auth.is_some(),
        sc.authorization.is_some(),
        sc.bearer_token.is_some() || sc.bearer_token_file.is_some(),
        sc.oauth2.is_some(),
    ];
    if auths.iter().filter(|a| **a).count() > 1 {
        fail(
            "",
            "at most one of basic_auth, authorization, bearer_token(_file) and oauth2 may be set"
                .into(),
        );
    }
    if sc.oauth2.is_some() {
        fail(
            "oauth2",
            "oauth2 is not supported by sluice; use authorization with credentials_file".into(),
        );
    }
    if sc.bearer_token.is_some() && sc.bearer_token_file.is_some() {
        fail(
            "bearer_token",
            "set bearer_token or bearer_token_file, not both".into(),
        );
    }
    if let Some(protocols) = sc
        .scrape_protocols
        .as_ref()
        .or(global.scrape_protocols.as_ref())
    {
        for p in protocols {
            if !KNOWN_PROTOCOLS.contains(&p.as_str()) {
                fail(
                    "scrape_protocols",
                    format!(
                        "unknown scrape protocol `{p}`; known: {}",
                        KNOWN_PROTOCOLS.join(", ")
                    ),
                );
            }
        }
    }
    if let Some(p) = &sc.fallback_scrape_protocol
        && !KNOWN_PROTOCOLS.contains(&p.as_str())
    {
        fail(
            "fallback_scrape_protocol",
            format!("unknown scrape protocol `{p}`"),
        );
    }
    let tls_configs = std::iter::once(("tls_config".to_string(), &sc.tls_config)).chain(
        sc.http_sd_configs
            .iter()
            .enumerate()
            .map(|(i, sd)| (format!("http_sd_configs[{i}].tls_config"), &sd.tls_config)),
    );
    for (at, tls) in tls_configs {
        for (key, v) in [
            ("min_version", &tls.min_version),
            ("max_version", &tls.max_version),
        ] {
            if let Some(v) = v
                && !matches!(v.as_str(), "TLS10" | "TLS11" | "TLS12" | "TLS13")
            {
                fail(
                    &format!("{at}.{key}"),
                    format!("unknown TLS version `{v}`; use TLS12 or TLS13"),
                );
            }
        }
    }
}

pub const KNOWN_PROTOCOLS: &[&str] = &[
    "PrometheusProto",
    "OpenMetricsText0.0.1",
    "OpenMetricsText1.0.0",
    "PrometheusText0.0.4",
    "PrometheusText1.0.0",
];

/// The effective interval and timeout of a scrape config.
pub fn intervals(sc: &ScrapeConfig, global: &Global) -> (Duration, Duration) {
    let global_interval = global
        .scrape_interval
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(60));
    let interval = sc.scrape_interval.map(|d| d.0).unwrap_or(global_interval);
    let global_timeout = global
        .scrape_timeout
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(10));
    // As in Prometheus: a job's timeout defaults to the global one, but never above its interval.
    let timeout = match sc.scrape_timeout {
        Some(t) => t.0,
        None => global_timeout.min(interval),
    };
    (interval, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations_and_sizes() {
        assert_eq!(
            PromDuration::parse("1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            PromDuration::parse("500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            PromDuration::parse("1d").unwrap(),
            Duration::from_secs(86400)
        );
        assert!(PromDuration::parse("1.5s").is_err());
        assert_eq!(SizeLimit::parse("10MB").unwrap(), 10 << 20);
        assert_eq!(SizeLimit::parse("0").unwrap(), 0);
        assert!(SizeLimit::parse("10XB").is_err());
    }
}
