use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

enum Series {
    Counter(Counter),
    Gauge(Gauge),
}

struct Family {
    help: String,
    series: BTreeMap<String, Series>,
}

/// Registry of the collector's own metrics, rendered in the Prometheus text format.
pub struct MetricsRegistry {
    families: Mutex<BTreeMap<String, Family>>,
    started: Instant,
}

impl Default for MetricsRegistry {
    fn default() -> Self {
        MetricsRegistry {
            families: Mutex::new(BTreeMap::new()),
            started: Instant::now(),
        }
    }
}

fn label_text(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let escaped = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{k}=\"{escaped}\"");
    }
    out.push('}');
    out
}

impl MetricsRegistry {
    /// A counter series; asking twice for the same name and labels returns the same counter.
    /// Counters are exposed with the `_total` suffix, as the OTel Collector's Prometheus
    /// endpoint does (`otelcol_receiver_accepted_spans_total`).
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Counter {
        let key = label_text(labels);
        let Ok(mut families) = self.families.lock() else {
            return Counter::default();
        };
        let family = families
            .entry(format!("{name}_total"))
            .or_insert_with(|| Family {
                help: help.to_string(),
                series: BTreeMap::new(),
            });
        match family
            .series
            .entry(key)
            .or_insert_with(|| Series::Counter(Counter::default()))
        {
            Series::Counter(c) => c.clone(),
            Series::Gauge(_) => Counter::default(),
        }
    }

    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> Gauge {
        let key = label_text(labels);
        let Ok(mut families) = self.families.lock() else {
            return Gauge::default();
        };
        let family = families.entry(name.to_string()).or_insert_with(|| Family {
            help: help.to_string(),
            series: BTreeMap::new(),
        });
        match family
            .series
            .entry(key)
            .or_insert_with(|| Series::Gauge(Gauge::default()))
        {
            Series::Gauge(g) => g.clone(),
            Series::Counter(_) => Gauge::default(),
        }
    }

    /// The Prometheus text exposition of every series plus process metrics.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(families) = self.families.lock() {
            for (name, family) in families.iter() {
                let kind = match family.series.values().next() {
                    Some(Series::Counter(_)) => "counter",
                    _ => "gauge",
                };
                let _ = writeln!(out, "# HELP {name} {}", family.help);
                let _ = writeln!(out, "# TYPE {name} {kind}");
                for (labels, series) in &family.series {
                    let value = match series {
                        Series::Counter(c) => c.get() as i128,
                        Series::Gauge(g) => g.get() as i128,
                    };
                    let _ = writeln!(out, "{name}{labels} {value}");
                }
            }
        }
        self.render_process(&mut out);
        out
    }

    fn render_process(&self, out: &mut String) {
        let uptime = self.started.elapsed().as_secs_f64();
        let _ = writeln!(
            out,
            "# HELP otelcol_process_uptime_seconds_total Uptime of the process"
        );
        let _ = writeln!(out, "# TYPE otelcol_process_uptime_seconds_total counter");
        let _ = writeln!(out, "otelcol_process_uptime_seconds_total {uptime:.3}");
        if let Some(rss) = process_rss_bytes() {
            let _ = writeln!(
                out,
                "# HELP otelcol_process_memory_rss_bytes Total physical memory (resident set size)"
            );
            let _ = writeln!(out, "# TYPE otelcol_process_memory_rss_bytes gauge");
            let _ = writeln!(out, "otelcol_process_memory_rss_bytes {rss}");
        }
        if let Some(cpu) = process_cpu_seconds() {
            let _ = writeln!(
                out,
                "# HELP otelcol_process_cpu_seconds_total Total CPU user and system time in seconds"
            );
            let _ = writeln!(out, "# TYPE otelcol_process_cpu_seconds_total counter");
            let _ = writeln!(out, "otelcol_process_cpu_seconds_total {cpu:.3}");
        }
    }
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
    }
}
