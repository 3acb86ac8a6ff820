//! The Prometheus text exposition format (0.0.4) and OpenMetrics text (1.0): metadata lines,
//! samples, timestamps and exemplars. A malformed line fails the whole scrape, as in
//! Prometheus.

use std::collections::HashMap;

use super::relabel::Labels;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    #[default]
    Unknown,
}

impl MetricType {
    fn parse(word: &str) -> MetricType {
        match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Metadata {
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    /// Sorted, without `__name__`.
    pub labels: Labels,
    pub value: f64,
    /// Milliseconds since the epoch, when the exposition gave one.
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar>,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// By family name.
    pub metadata: HashMap<String, Metadata>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

impl Format {
    /// The format a response's `Content-Type` names; Prometheus' text format when unsure.
    pub fn from_content_type(content_type: &str) -> Format {
        if content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/openmetrics-text")
        {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

pub fn parse(body: &str, format: Format) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    for (index, line) in body.lines().enumerate() {
        let fail = |message: String| ParseError {
            line: index + 1,
            message,
        };
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if comment == "EOF" && format == Format::OpenMetrics {
                break;
            }
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            let (Some(name), rest) = (parts.next(), parts.next().unwrap_or("")) else {
                continue;
            };
            if !matches!(keyword, "TYPE" | "HELP" | "UNIT") {
                continue;
            }
            let entry = out.metadata.entry(name.to_string()).or_default();
            match keyword {
                "TYPE" => entry.kind = MetricType::parse(rest.trim()),
                "HELP" => entry.help = unescape_help(rest),
                _ => entry.unit = rest.trim().to_string(),
            }
            continue;
        }
        out.samples.push(sample(line, format).map_err(fail)?);
    }
    Ok(out)
}

fn unescape_help(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn sample(line: &str, format: Format) -> Result<Sample, String> {
    let bytes = line.as_bytes();
    let name_end = bytes
        .iter()
        .position(|&b| b == b'{' || b == b' ' || b == b'\t')
        .unwrap_or(bytes.len());
    let name = &line[..name_end];
    if name.is_empty() || !valid_metric_name(name) {
        return Err(format!("invalid metric name in `{}`", shorten(line)));
    }
    let mut rest = &line[name_end..];
    let mut labels = Labels::new();
    if rest.starts_with('{') {
        let (parsed, after) = label_set(rest)?;
        labels = parsed;
        rest = after;
    }
    let (value_part, exemplar_part) = match rest.find(" # ") {
        Some(i) if format == Format::OpenMetrics => (&rest[..i], Some(&rest[i + 3..])),
        _ => (rest, None),
    };
    let mut fields = value_part.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("no value in `{}`", shorten(line)))
        .and_then(parse_value)?;
    let timestamp_ms = match fields.next() {
        None => None,
        Some(ts) => Some(parse_timestamp(ts, format)?),
    };
    if fields.next().is_some() {
        return Err(format!(
            "unexpected text after the timestamp in `{}`",
            shorten(line)
        ));
    }
    let exemplar = match exemplar_part {
        Some(text) => Some(exemplar(text.trim())?),
        None => None,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
        exemplar,
    })
}

fn exemplar(text: &str) -> Result<Exemplar, String> {
    if !text.starts_with('{') {
        return Err(format!("invalid exemplar `{}`", shorten(text)));
    }
    let (labels, rest) = label_set(text)?;
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or("exemplar without a value")
        .map_err(str::to_string)
        .and_then(parse_value)?;
    let timestamp_ms = match fields.next() {
        Some(ts) => Some(parse_timestamp(ts, Format::OpenMetrics)?),
        None => None,
    };
    Ok(Exemplar {
        labels,
        value,
        timestamp_ms,
    })
}

fn shorten(line: &str) -> &str {
    match line.char_indices().nth(120) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

pub fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `{a="x",b="y"}` at the start of `text`: the sorted labels and the text after `}`.
fn label_set(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    let mut rest = &text[1..];
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix('}') {
            labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if labels.windows(2).any(|w| w[0].0 == w[1].0) {
                return Err("a label appears twice".into());
            }
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without `=`")?;
        let name = rest[..eq].trim();
        if !super::relabel::valid_label_name(name) {
            return Err(format!("invalid label name `{}`", shorten(name)));
        }
        rest = rest[eq + 1..].trim_start();
        let Some(quoted) = rest.strip_prefix('"') else {
            return Err(format!("label `{name}`: value not in quotes"));
        };
        let (value, after) = quoted_value(quoted)?;
        labels.push((name.to_string(), value));
        rest = after.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected `,` or `}` after a label".into());
        }
    }
}

/// The value of a quoted label (after the opening quote) and the text after its closing one.
fn quoted_value(text: &str) -> Result<(String, &str), String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut plain = true;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => break,
            b'\\' => {
                plain = false;
                i += 2;
            }
            _ => i += 1,
        }
    }
    if i >= bytes.len() {
        return Err("unterminated label value".into());
    }
    let raw = &text[..i];
    let value = if plain {
        raw.to_string()
    } else {
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('\\') => out.push('\\'),
                    Some('"') => out.push('"'),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    Ok((value, &text[i + 1..]))
}

pub fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" | "+inf" | "inf" => return Ok(f64::INFINITY),
        "-Inf" | "-inf" => return Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => return Ok(f64::NAN),
        _ => {}
    }
    text.parse::<f64>()
        .map_err(|_| format!("invalid value `{}`", shorten(text)))
}

fn parse_timestamp(text: &str, format: Format) -> Result<i64, String> {
    match format {
        Format::Text => text
            .parse::<i64>()
            .map_err(|_| format!("invalid timestamp `{}`", shorten(text))),
        Format::OpenMetrics => text
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite())
            .map(|s| (s * 1000.0).round() as i64)
            .ok_or_else(|| format!("invalid timestamp `{}`", shorten(text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format() {
        let body = "# HELP http_requests_total The total.\n# TYPE http_requests_total counter\nhttp_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\nhttp_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\n# A comment\nmetric_without_timestamp_and_labels 12.47\nsomething_weird{problem=\"division by zero\"} +Inf -3982045\nmsdos_file{path=\"C:\\\\DIR\\\\F.TXT\",note=\"a \\\"q\\\"\\nline\"} 1.458255915e9\n";
        let e = parse(body, Format::Text).unwrap();
        assert_eq!(e.samples.len(), 5);
        assert_eq!(e.metadata["http_requests_total"].kind, MetricType::Counter);
        assert_eq!(e.metadata["http_requests_total"].help, "The total.");
        let first = &e.samples[0];
        assert_eq!(
            first.labels,
            vec![
                ("code".into(), "200".into()),
                ("method".into(), "post".into())
            ]
        );
        assert_eq!(first.timestamp_ms, Some(1395066363000));
        assert_eq!(e.samples[3].value, f64::INFINITY);
        assert_eq!(e.samples[3].timestamp_ms, Some(-3982045));
        assert_eq!(e.samples[4].labels[0].1, "a \"q\"\nline");
        assert_eq!(e.samples[4].labels[1].1, "C:\\DIR\\F.TXT");
    }

    #[test]
    fn open_metrics_with_units_exemplars_and_created() {
        let body = "# TYPE rpc_seconds histogram\n# UNIT rpc_seconds seconds\n# HELP rpc_seconds RPC latency.\nrpc_seconds_bucket{le=\"0.1\"} 3 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\"} 0.05 1520879607.789\nrpc_seconds_bucket{le=\"+Inf\"} 5\nrpc_seconds_count 5\nrpc_seconds_sum 1.5\nrpc_seconds_created 1520430000.123\n# EOF\nignored 1\n";
        let e = parse(body, Format::OpenMetrics).unwrap();
        assert_eq!(e.samples.len(), 5);
        assert_eq!(e.metadata["rpc_seconds"].unit, "seconds");
        let ex = e.samples[0].exemplar.as_ref().unwrap();
        assert_eq!(ex.value, 0.05);
        assert_eq!(ex.timestamp_ms, Some(1520879607789));
        assert_eq!(ex.labels[0].0, "span_id");
    }

    #[test]
    fn malformed_lines_fail_with_their_line_number() {
        let err = parse("ok 1\nbad{a=\"x} 1\n", Format::Text).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(parse("x{a=\"1\",a=\"2\"} 1\n", Format::Text).is_err());
        assert!(parse("x abc\n", Format::Text).is_err());
        assert!(parse("9x 1\n", Format::Text).is_err());
    }
}
