//! The scrape response: Prometheus text 0.0.4, or OpenMetrics 1.0 when enabled and asked for.

use std::fmt::Write;

use super::accumulator::{Accumulator, Kind, Value};
use crate::otel_to_prometheus::format_float;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

pub struct Options<'a> {
    pub format: Format,
    pub send_timestamps: bool,
    pub const_labels: &'a [(String, String)],
    pub target_info_name: &'a str,
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn labels(
    out: &mut String,
    own: &[(String, String)],
    constant: &[(String, String)],
    extra: Option<(&str, &str)>,
) {
    let mut all: Vec<(&str, &str)> = own.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (k, v) in constant {
        if !all.iter().any(|(n, _)| n == k) {
            all.push((k, v));
        }
    }
    if let Some(e) = extra {
        all.push(e);
    }
    if all.is_empty() {
        return;
    }
    all.sort();
    out.push('{');
    for (i, (k, v)) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_label(v, out);
        out.push('"');
    }
    out.push('}');
}

/// One series of a family: the lines of its samples share the name, labels and timestamp.
struct Series<'a> {
    name: &'a str,
    own: &'a [(String, String)],
    ts: i64,
}

fn sample(
    out: &mut String,
    series: &Series<'_>,
    suffix: &str,
    opts: &Options<'_>,
    extra: Option<(&str, &str)>,
    value: f64,
) {
    let ts = series.ts;
    out.push_str(series.name);
    out.push_str(suffix);
    labels(out, series.own, opts.const_labels, extra);
    out.push(' ');
    out.push_str(&format_float(value));
    if opts.send_timestamps {
        match opts.format {
            Format::Text => {
                let _ = write!(out, " {ts}");
            }
            Format::OpenMetrics => {
                let _ = write!(out, " {}.{:03}", ts.div_euclid(1000), ts.rem_euclid(1000));
            }
        }
    }
    out.push('\n');
}

pub fn render(acc: &Accumulator, opts: &Options<'_>) -> String {
    let mut out = String::new();
    let om = opts.format == Format::OpenMetrics;
    for (name, family) in &acc.families {
        let Some(kind) = family.kind else { continue };
        // OpenMetrics names a counter's family without `_total`; its samples keep it.
        // A counter whose name lacks `_total` (suffixes turned off) cannot be an OpenMetrics
        // counter, whose samples must end in `_total`: as Prometheus' own encoder (which
        // upstream's exporter uses) it is written as `unknown` under its own name.
        let (family_name, value_suffix, om_unknown) = match (kind, om) {
            (Kind::Counter, true) => match name.strip_suffix("_total") {
                Some(base) => (base, "_total", false),
                None => (name.as_str(), "", true),
            },
            _ => (name.as_str(), "", false),
        };
        let type_word = match kind {
            Kind::Counter if om_unknown => "unknown",
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        };
        if !family.help.is_empty() {
            let _ = writeln!(out, "# HELP {family_name} {}", escape_help(&family.help));
        }
        let _ = writeln!(out, "# TYPE {family_name} {type_word}");
        for (own, entry) in &family.series {
            let series = Series {
                name: family_name,
                own,
                ts: entry.timestamp_ms,
            };
            // Histograms and summaries: their own lines, then `_sum` and `_count`.
            let (sum, count) = match &entry.value {
                Value::Number(v) => {
                    sample(&mut out, &series, value_suffix, opts, None, *v);
                    continue;
                }
                Value::Histogram {
                    buckets,
                    sum,
                    count,
                } => {
                    for (le, c) in buckets {
                        let le = format_float(*le);
                        sample(
                            &mut out,
                            &series,
                            "_bucket",
                            opts,
                            Some(("le", &le)),
                            *c as f64,
                        );
                    }
                    (*sum, *count)
                }
                Value::Summary {
                    quantiles,
                    sum,
                    count,
                } => {
                    for (q, v) in quantiles {
                        let q = format_float(*q);
                        sample(&mut out, &series, "", opts, Some(("quantile", &q)), *v);
                    }
                    (*sum, *count)
                }
            };
            sample(&mut out, &series, "_sum", opts, None, sum);
            sample(&mut out, &series, "_count", opts, None, count as f64);
        }
    }
    if !acc.target_info.is_empty() {
        let name = opts.target_info_name;
        let (family, suffix) = if om {
            (name.strip_suffix("_info").unwrap_or(name), "_info")
        } else {
            (name, "")
        };
        let _ = writeln!(out, "# HELP {family} Target metadata");
        let _ = writeln!(out, "# TYPE {family} {}", if om { "info" } else { "gauge" });
        for (own, entry) in &acc.target_info {
            sample(
                &mut out,
                &Series {
                    name: family,
                    own,
                    ts: entry.timestamp_ms,
                },
                suffix,
                opts,
                None,
                1.0,
            );
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}
