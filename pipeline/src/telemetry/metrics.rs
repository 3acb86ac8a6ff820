use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// A monotonically increasing count. Cheap to clone and to bump from hot paths.
#[derive(Clone, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Default)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
}

struct Labelled {
    labels: Vec<(String, String)>,
    series: Series,
}

struct Family {
    help: String,
    /// By the rendered label text, so the exposition is in a stable order.
    series: BTreeMap<String, Labelled>,
}

/// What kind of instrument a family is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up; exposed with a `_total` suffix.
    Counter,
    Gauge,
}

/// One family as it reads at one moment, for pushing over OTLP.
#[derive(Clone, Debug, PartialEq)]
pub struct FamilySnapshot {
    /// The OTel instrument name, without any Prometheus suffix.
    pub name: String,
    pub help: String,
    /// UCUM unit (`s`, `By`), empty when the name says what is counted.
    pub unit: &'static str,
    pub kind: MetricKind,
    pub points: Vec<(Vec<(String, String)>, f64)>,
}

/// How the Prometheus exposition is written (the OTel Collector's `pull.exporter.prometheus`
/// options).
#[derive(Clone, Debug, PartialEq)]
pub struct PromOptions {
    /// Counters without their `_total` suffix.
    pub without_type_suffix: bool,
    /// Names without their unit suffix (`_seconds`, `_bytes`).
    pub without_units: bool,
    /// No `otel_scope_*` labels and no `otel_scope_info` series.
    pub without_scope_info: bool,
    /// Labels added to every series (resource attributes as constant labels).
    pub constant_labels: Vec<(String, String)>,
    /// The `target_info` series: the resource's attributes, when the resource has any.
    pub target_info: Vec<(String, String)>,
}

/// sluice's own exposition: `_total` on counters, units in names, no scope labels.
impl Default for PromOptions {
    fn default() -> Self {
        PromOptions {
            without_type_suffix: false,
            without_units: false,
            without_scope_info: true,
            constant_labels: Vec::new(),
            target_info: Vec::new(),
        }
    }
}

/// The instrumentation scope sluice's own metrics are reported under.
pub const SCOPE_NAME: &str = "sluice";

/// Registry of the collector's own metrics, rendered in the Prometheus text format or read as
/// a snapshot for OTLP.
pub struct MetricsRegistry {
    families: Mutex<BTreeMap<String, (MetricKind, Family)>>,
    started: Instant,
    started_at: SystemTime,
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        MetricsRegistry {
            families: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
            started_at: SystemTime::now(),
        }
    }
}

/// A Prometheus label name for an attribute key: `service.name` → `service_name`.
pub fn label_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text<K: AsRef<str>, V: AsRef<str>>(labels: &[(K, V)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{}=\"{}\"", k.as_ref(), escape_label_value(v.as_ref()));
    }
    out.push('}');
    out
}

/// The process metrics every collector reports, as (name, help, unit, kind, value).
fn process_metrics(
    uptime: f64,
) -> Vec<(&'static str, &'static str, &'static str, MetricKind, f64)> {
    let mut out = vec![(
        "otelcol_process_uptime",
        "Uptime of the process",
        "s",
        MetricKind::Counter,
        uptime,
    )];
    if let Some(rss) = process_rss_bytes() {
        out.push((
            "otelcol_process_memory_rss",
            "Total physical memory (resident set size)",
            "By",
            MetricKind::Gauge,
            rss as f64,
        ));
    }
    if let Some(cpu) = process_cpu_seconds() {
        out.push((
            "otelcol_process_cpu_seconds",
            "Total CPU user and system time in seconds",
            "s",
            MetricKind::Counter,
            cpu,
        ));
    }
    out
}

/// The Prometheus suffix of a UCUM unit.
fn unit_suffix(unit: &str) -> &'static str {
    match unit {
        "s" => "_seconds",
        "By" => "_bytes",
        _ => "",
    }
}

impl MetricsRegistry {
    /// The series of `name` and `labels`, made by `make` when new; `None` when the name
    /// belongs to a family of the other kind.
    fn series(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        kind: MetricKind,
        make: impl FnOnce() -> Series,
    ) -> Option<Series> {
        let key = label_text(labels);
        let mut families = self.families.lock().ok()?;
        let (family_kind, family) = families.entry(name.to_string()).or_insert_with(|| {
            (
                kind,
                Family {
                    help: help.to_string(),
                    series: BTreeMap::new(),
                },
            )
        });
        if *family_kind != kind {
            return None;
        }
        let entry = family.series.entry(key).or_insert_with(|| Labelled {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            series: make(),
        });
        Some(entry.series.clone())
    }

    /// A counter series; asking twice for the same name and labels returns the same counter.
    /// Counters are exposed with the `_total` suffix, as the OTel Collector's Prometheus
    /// endpoint does (`otelcol_receiver_accepted_spans_total`).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        match self.series(name, help, labels, MetricKind::Counter, || {
            Series::Counter(Counter::default())
        }) {
            Some(Series::Counter(c)) => c,
            _ => Counter::default(),
        }
    }

    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        match self.series(name, help, labels, MetricKind::Gauge, || {
            Series::Gauge(Gauge::default())
        }) {
            Some(Series::Gauge(g)) => g,
            _ => Gauge::default(),
        }
    }

    /// When the registry was made: the start time of every cumulative series.
    pub fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// Every series as it reads now, process metrics included.
    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        let mut out = Vec::new();
        if let Ok(families) = self.families.lock() {
            for (name, (kind, family)) in families.iter() {
                out.push(FamilySnapshot {
                    name: name.clone(),
                    help: family.help.clone(),
                    unit: "",
                    kind: *kind,
                    points: family
                        .series
                        .values()
                        .map(|l| {
                            let value = match &l.series {
                                Series::Counter(c) => c.get() as f64,
                                Series::Gauge(g) => g.get() as f64,
                            };
                            (l.labels.clone(), value)
                        })
                        .collect(),
                });
            }
        }
        for (name, help, unit, kind, value) in process_metrics(self.started.elapsed().as_secs_f64())
        {
            out.push(FamilySnapshot {
                name: name.to_string(),
                help: help.to_string(),
                unit,
                kind,
                points: vec![(Vec::new(), value)],
            });
        }
        out
    }

    /// The Prometheus text exposition of every series plus process metrics, as sluice's
    /// default endpoint writes it.
    pub fn render(&self) -> String {
        self.render_with(&PromOptions::default())
    }

    /// The Prometheus text exposition, written per `options`.
    pub fn render_with(&self, options: &PromOptions) -> String {
        let mut out = String::new();
        let scope: Vec<(String, String)> = if options.without_scope_info {
            Vec::new()
        } else {
            vec![
                ("otel_scope_name".to_string(), SCOPE_NAME.to_string()),
                (
                    "otel_scope_version".to_string(),
                    env!("CARGO_PKG_VERSION").to_string(),
                ),
            ]
        };
        if !options.target_info.is_empty() {
            let _ = writeln!(out, "# HELP target_info Target metadata");
            let _ = writeln!(out, "# TYPE target_info gauge");
            let labels: Vec<(String, String)> = options
                .target_info
                .iter()
                .map(|(k, v)| (label_name(k), v.clone()))
                .collect();
            let _ = writeln!(out, "target_info{} 1", label_text(&labels));
        }
        if !options.without_scope_info {
            let _ = writeln!(out, "# HELP otel_scope_info Instrumentation Scope metadata");
            let _ = writeln!(out, "# TYPE otel_scope_info gauge");
            let _ = writeln!(out, "otel_scope_info{} 1", label_text(&scope));
        }
        for family in self.snapshot() {
            let mut name = family.name.clone();
            let unit = unit_suffix(family.unit);
            if !options.without_units && !name.ends_with(unit) {
                name.push_str(unit);
            }
            let kind = match family.kind {
                MetricKind::Counter => {
                    if !options.without_type_suffix {
                        name.push_str("_total");
                    }
                    "counter"
                }
                MetricKind::Gauge => "gauge",
            };
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in &family.points {
                let all: Vec<(String, String)> = labels
                    .iter()
                    .cloned()
                    .chain(options.constant_labels.iter().cloned())
                    .chain(scope.iter().cloned())
                    .collect();
                let labels = label_text(&all);
                if value.fract() == 0.0 && value.abs() < 9.0e15 {
                    let _ = writeln!(out, "{name}{labels} {}", *value as i64);
                } else {
                    let _ = writeln!(out, "{name}{labels} {value:.3}");
                }
            }
        }
        out
    }
}

/// Nanoseconds since the Unix epoch.
pub fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Resident set size from /proc (Linux); None elsewhere.
pub fn process_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux configuration sluice targets.
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels_and_process_metrics() {
        let r = MetricsRegistry::default();
        let c = r.counter(
            "otelcol_receiver_accepted_spans",
            "Spans accepted",
            &[("receiver", "otlp"), ("transport", "grpc")],
        );
        c.add(3);
        r.counter(
            "otelcol_receiver_accepted_spans",
            "Spans accepted",
            &[("receiver", "otlp"), ("transport", "grpc")],
        )
        .add(2);
        r.gauge(
            "otelcol_exporter_queue_size",
            "Queue size",
            &[("exporter", "file")],
        )
        .set(7);
        let text = r.render();
        assert!(
            text.contains(
                "otelcol_receiver_accepted_spans_total{receiver=\"otlp\",transport=\"grpc\"} 5\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE otelcol_receiver_accepted_spans_total counter"));
        assert!(text.contains("otelcol_exporter_queue_size{exporter=\"file\"} 7\n"));
        assert!(text.contains("otelcol_process_memory_rss_bytes "));
        assert!(text.contains("otelcol_process_cpu_seconds_total "));
        assert!(text.contains("otelcol_process_uptime_seconds_total "));
        assert!(!text.contains("target_info"));
        assert!(!text.contains("otel_scope"));
    }

    #[test]
    fn prometheus_options_change_names_and_labels() {
        let r = MetricsRegistry::default();
        r.counter(
            "otelcol_exporter_sent_spans",
            "Sent",
            &[("exporter", "otlp")],
        )
        .add(4);
        let text = r.render_with(&PromOptions {
            without_type_suffix: true,
            without_units: true,
            without_scope_info: false,
            constant_labels: vec![("service_name".into(), "edge".into())],
            target_info: vec![("service.name".into(), "edge".into())],
        });
        assert!(
            text.contains(
                "otelcol_exporter_sent_spans{exporter=\"otlp\",service_name=\"edge\",otel_scope_name=\"sluice\""
            ),
            "{text}"
        );
        assert!(
            text.contains("target_info{service_name=\"edge\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("otel_scope_info{otel_scope_name=\"sluice\""),
            "{text}"
        );
        assert!(text.contains("otelcol_process_uptime{"), "{text}");
        assert!(!text.contains("_total"), "{text}");
    }

    #[test]
    fn a_snapshot_has_every_series_with_its_labels() {
        let r = MetricsRegistry::default();
        r.counter("c", "h", &[("a", "1")]).add(2);
        r.gauge("g", "h", &[]).set(-3);
        let snap = r.snapshot();
        let c = snap.iter().find(|f| f.name == "c").unwrap();
        assert_eq!(c.kind, MetricKind::Counter);
        assert_eq!(
            c.points,
            vec![(vec![("a".to_string(), "1".to_string())], 2.0)]
        );
        let g = snap.iter().find(|f| f.name == "g").unwrap();
        assert_eq!(g.points[0].1, -3.0);
        assert!(
            snap.iter()
                .any(|f| f.name == "otelcol_process_uptime" && f.unit == "s")
        );
    }
}
