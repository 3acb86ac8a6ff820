//! The simple parsers: timestamp, severity, trace context and scope name, each as a block a
//! complex parser embeds (`timestamp:`, `severity:`, `trace:`, `scope_name:`) and as an
//! operator of its own (`time_parser`, `severity_parser`, `trace_parser`,
//! `scope_name_parser`).

use std::collections::HashMap;

use serde::Deserialize;
use sluice_config::{Diagnostic, Node, Value as NodeValue};

use super::entry::{Entry, SEVERITY_NAMES, Value, format_float, severity_short_name};
use super::field::Field;
use super::time::{Layout, Zones};
use super::transform::node_value;
use super::{Transform, decode, problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// The field holding the time.
    parse_from: Option<Field>,
    /// `strptime` (default), `gotime` or `epoch`.
    #[serde(default)]
    layout_type: Option<String>,
    /// The layout; required.
    layout: Option<String>,
    /// Zone for times that carry no offset (default the local zone).
    #[serde(default)]
    location: Option<String>,
    /// Zone abbreviations (`PDT`) to IANA zones, for `%Z`.
    #[serde(default)]
    time_zone_locations: HashMap<String, String>,
    /// Remove `parse_from` once parsed (default false).
    #[serde(default)]
    drop_field: bool,
}

pub struct TimeSpec {
    parse_from: Field,
    layout: Layout,
    zones: Zones,
    drop_field: bool,
}

impl TimeSpec {
    pub fn build(config: TimeConfig, node: &Node, path: &str) -> Result<TimeSpec, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let Some(parse_from) = config.parse_from else {
            return Err(vec![problem(
                node,
                path,
                "",
                "missing required key `parse_from`",
            )]);
        };
        let layout_type = config.layout_type.as_deref().unwrap_or("strptime");
        let layout = match (&config.layout, layout_type) {
            (Some(layout), _) => Layout::compile(layout_type, layout)
                .map_err(|e| errors.push(problem(node, path, "layout", e.0)))
                .ok(),
            (None, _) => {
                errors.push(problem(node, path, "", "missing required key `layout`"));
                None
            }
        };
        let zones = Zones::new(config.location.as_deref(), &config.time_zone_locations)
            .map_err(|e| errors.push(problem(node, path, "location", e.0)))
            .ok();
        if config.drop_field && parse_from.is_root() {
            errors.push(problem(
                node,
                path,
                "drop_field",
                format!("`drop_field: true` cannot be used when `parse_from` is `{parse_from}`"),
            ));
        }
        match (layout, zones) {
            (Some(layout), Some(zones)) if errors.is_empty() => Ok(TimeSpec {
                parse_from,
                layout,
                zones,
                drop_field: config.drop_field,
            }),
            _ => Err(errors),
        }
    }

    pub fn parse(&self, entry: &mut Entry) -> Result<(), String> {
        let value = self
            .parse_from
            .get(entry)
            .ok_or_else(|| format!("the entry has no {} to parse a time from", self.parse_from))?;
        entry.timestamp = self.layout.parse(value, &self.zones).map_err(|e| e.0)?;
        if self.drop_field {
            self.parse_from.delete(entry);
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    /// The field holding the severity.
    parse_from: Option<Field>,
    /// `default` (common spellings), `none`, `otel`/`aliases`.
    #[serde(default)]
    preset: Option<String>,
    /// Extra values per level: a value, a list, `{min, max}` ranges, `2xx`..`5xx`.
    #[serde(default)]
    mapping: Option<serde::de::IgnoredAny>,
    /// Set the text to the level's short name (`ERROR`) instead of the value read.
    #[serde(default)]
    overwrite_text: bool,
    /// Remove `parse_from` once parsed (default false).
    #[serde(default)]
    drop_field: bool,
}

pub struct SeveritySpec {
    parse_from: Field,
    mapping: HashMap<String, i32>,
    overwrite_text: bool,
    drop_field: bool,
}

fn level_number(alias: &str) -> Option<i32> {
    SEVERITY_NAMES
        .iter()
        .position(|n| *n == alias.to_ascii_lowercase())
        .map(|i| i as i32)
}

fn preset(name: &str) -> Option<HashMap<String, i32>> {
    let mut map = HashMap::new();
    match name {
        "none" => {}
        "otel" | "aliases" | "default" | "" => {
            for (i, name) in SEVERITY_NAMES.iter().enumerate().skip(1) {
                map.insert((*name).to_string(), i as i32);
                map.insert(i.to_string(), i as i32);
            }
            if !matches!(name, "otel" | "aliases") {
                for (alias, base) in [
                    ("warning", 13),
                    ("warning2", 14),
                    ("warning3", 15),
                    ("warning4", 16),
                    ("err", 17),
                    ("err2", 18),
                    ("err3", 19),
                    ("err4", 20),
                ] {
                    map.insert(alias.to_string(), base);
                }
            }
        }
        _ => return None,
    }
    Some(map)
}

/// The mapping's values for one level, as the lowercase texts they match.
fn mapping_values(node: &Node, out: &mut Vec<String>) -> Result<(), String> {
    match &node.value {
        NodeValue::Seq(items) => {
            for item in items {
                mapping_values(item, out)?;
            }
            Ok(())
        }
        NodeValue::Map(m) => {
            let bound = |key: &str| -> Result<i64, String> {
                match m.get(key).map(node_value) {
                    Some(Value::Int(i)) => Ok(i),
                    _ => Err("a range needs integer `min` and `max`".to_string()),
                }
            };
            let (min, max) = (bound("min")?, bound("max")?);
            let (low, high) = if min <= max { (min, max) } else { (max, min) };
            if high - low > 100_000 {
                return Err("a severity range may span at most 100000 values".to_string());
            }
            out.extend((low..=high).map(|i| i.to_string()));
            Ok(())
        }
        NodeValue::Null => Err("a mapping value must not be empty".to_string()),
        NodeValue::Scalar(_) => {
            let value = node_value(node);
            match value {
                Value::Str(s) => match s.as_str() {
                    "2xx" | "3xx" | "4xx" | "5xx" => {
                        let base = i64::from(s.as_bytes()[0] - b'0') * 100;
                        out.extend((base..base + 100).map(|i| i.to_string()));
                    }
                    _ => out.push(s.to_lowercase()),
                },
                Value::Int(i) => out.push(i.to_string()),
                Value::Float(f) => out.push(format_float(f)),
                Value::Bool(b) => out.push(b.to_string()),
                _ => return Err("unsupported mapping value".to_string()),
            }
            Ok(())
        }
    }
}

impl SeveritySpec {
    pub fn build(
        config: SeverityConfig,
        node: &Node,
        path: &str,
    ) -> Result<SeveritySpec, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let Some(parse_from) = config.parse_from else {
            return Err(vec![problem(
                node,
                path,
                "",
                "missing required key `parse_from`",
            )]);
        };
        let preset_name = config.preset.as_deref().unwrap_or("default");
        let mut mapping = preset(preset_name).unwrap_or_else(|| {
            errors.push(problem(
                node,
                path,
                "preset",
                format!("unknown preset `{preset_name}` (use default, none or otel)"),
            ));
            HashMap::new()
        });
        let _ = config.mapping;
        if let Some(m) = node.get("mapping").and_then(Node::as_map) {
            for (key, value) in m.iter() {
                let Some(level) = level_number(&key.name) else {
                    errors.push(problem(
                        node,
                        path,
                        "mapping",
                        format!("`{}` is not a severity level (trace, debug2, info, warn, error4, fatal...)", key.name),
                    ));
                    continue;
                };
                let mut values = Vec::new();
                match mapping_values(value, &mut values) {
                    Ok(()) => {
                        for v in values {
                            mapping.insert(v, level);
                        }
                    }
                    Err(e) => errors.push(problem(node, path, "mapping", e)),
                }
            }
        }
        if config.drop_field && parse_from.is_root() {
            errors.push(problem(
                node,
                path,
                "drop_field",
                format!("`drop_field: true` cannot be used when `parse_from` is `{parse_from}`"),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SeveritySpec {
            parse_from,
            mapping,
            overwrite_text: config.overwrite_text,
            drop_field: config.drop_field,
        })
    }

    pub fn parse(&self, entry: &mut Entry) -> Result<(), String> {
        let value = self.parse_from.get(entry).ok_or_else(|| {
            format!(
                "the entry has no {} to parse a severity from",
                self.parse_from
            )
        })?;
        let (key, text) = match value {
            Value::Str(s) => (s.to_lowercase(), s.clone()),
            Value::Bytes(b) => {
                let s = String::from_utf8_lossy(b).into_owned();
                (s.to_lowercase(), s)
            }
            Value::Int(i) => (i.to_string(), i.to_string()),
            Value::Float(f) if f.fract() == 0.0 => (format_float(*f), format_float(*f)),
            Value::Float(_) => return Err("a severity number must be a whole number".to_string()),
            _ => return Err("this type of value cannot be a severity".to_string()),
        };
        let number = self.mapping.get(&key).copied().unwrap_or(0);
        entry.severity = number;
        entry.severity_text = if self.overwrite_text && number != 0 {
            severity_short_name(number)
        } else {
            text
        };
        if self.drop_field {
            self.parse_from.delete(entry);
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ParseFrom {
    /// The field holding the value (hex for trace ids).
    parse_from: Option<Field>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    /// Default `body.trace_id`.
    #[serde(default)]
    trace_id: Option<ParseFrom>,
    /// Default `body.span_id`.
    #[serde(default)]
    span_id: Option<ParseFrom>,
    /// Default `body.trace_flags`.
    #[serde(default)]
    trace_flags: Option<ParseFrom>,
}

pub struct TraceSpec {
    trace_id: Field,
    span_id: Field,
    trace_flags: Field,
}

impl TraceSpec {
    pub fn build(config: TraceConfig) -> TraceSpec {
        let pick = |c: Option<ParseFrom>, default: &str| {
            c.and_then(|p| p.parse_from)
                .unwrap_or_else(|| Field::body_key(default))
        };
        TraceSpec {
            trace_id: pick(config.trace_id, "trace_id"),
            span_id: pick(config.span_id, "span_id"),
            trace_flags: pick(config.trace_flags, "trace_flags"),
        }
    }

    pub fn parse(&self, entry: &mut Entry) -> Result<(), String> {
        let mut problems = Vec::new();
        let mut read = |field: &Field, what: &str, len: usize| -> Option<Vec<u8>> {
            let text = field.get(entry)?.to_text();
            match decode_hex(&text) {
                Some(bytes) if bytes.len() == len => Some(bytes),
                _ => {
                    problems.push(format!("{what} `{text}` is not {len} bytes of hex"));
                    None
                }
            }
        };
        let trace_id = read(&self.trace_id, "trace_id", 16);
        let span_id = read(&self.span_id, "span_id", 8);
        let flags = read(&self.trace_flags, "trace_flags", 1);
        if let Some(t) = trace_id {
            entry.trace_id = t;
        }
        if let Some(s) = span_id {
            entry.span_id = s;
        }
        if let Some(f) = flags {
            entry.trace_flags = f;
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeNameConfig {
    /// The field holding the scope (logger) name.
    parse_from: Option<Field>,
}

pub struct ScopeNameSpec {
    parse_from: Field,
}

impl ScopeNameSpec {
    pub fn build(
        config: ScopeNameConfig,
        node: &Node,
        path: &str,
    ) -> Result<ScopeNameSpec, Vec<Diagnostic>> {
        match config.parse_from {
            Some(parse_from) => Ok(ScopeNameSpec { parse_from }),
            None => Err(vec![problem(
                node,
                path,
                "",
                "missing required key `parse_from`",
            )]),
        }
    }

    pub fn parse(&self, entry: &mut Entry) -> Result<(), String> {
        match self.parse_from.get(entry) {
            Some(Value::Str(s)) => {
                entry.scope_name = s.clone();
                Ok(())
            }
            Some(_) => Err(format!("{} is not a string", self.parse_from)),
            None => Err(format!("the entry has no {}", self.parse_from)),
        }
    }
}

/// The embedded blocks of a complex parser, applied after its own parsing, each on its own:
/// one failing does not stop the others.
#[derive(Default)]
pub struct Embedded {
    pub time: Option<TimeSpec>,
    pub severity: Option<SeveritySpec>,
    pub trace: Option<TraceSpec>,
    pub scope_name: Option<ScopeNameSpec>,
}

impl Embedded {
    /// Reads the `timestamp`, `severity`, `trace` and `scope_name` blocks of `node`.
    pub fn build(node: &Node, path: &str) -> Result<Embedded, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut embedded = Embedded::default();
        if let Some(n) = node.get("timestamp").filter(|n| !n.is_null()) {
            let p = format!("{path}.timestamp");
            match decode::<TimeConfig>(n, &p).and_then(|c| TimeSpec::build(c, n, &p)) {
                Ok(t) => embedded.time = Some(t),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if let Some(n) = node.get("severity").filter(|n| !n.is_null()) {
            let p = format!("{path}.severity");
            match decode::<SeverityConfig>(n, &p).and_then(|c| SeveritySpec::build(c, n, &p)) {
                Ok(s) => embedded.severity = Some(s),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if let Some(n) = node.get("trace") {
            let p = format!("{path}.trace");
            let config = if n.is_null() {
                Ok(TraceConfig::default())
            } else {
                decode::<TraceConfig>(n, &p)
            };
            match config {
                Ok(c) => embedded.trace = Some(TraceSpec::build(c)),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if let Some(n) = node.get("scope_name").filter(|n| !n.is_null()) {
            let p = format!("{path}.scope_name");
            match decode::<ScopeNameConfig>(n, &p).and_then(|c| ScopeNameSpec::build(c, n, &p)) {
                Ok(s) => embedded.scope_name = Some(s),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(embedded)
        } else {
            Err(errors)
        }
    }

    pub fn apply(&self, entry: &mut Entry) -> Result<(), String> {
        let results = [
            self.time
                .as_ref()
                .map(|t| t.parse(entry).map_err(|e| format!("time parser: {e}"))),
            self.severity
                .as_ref()
                .map(|s| s.parse(entry).map_err(|e| format!("severity parser: {e}"))),
            self.trace
                .as_ref()
                .map(|t| t.parse(entry).map_err(|e| format!("trace parser: {e}"))),
            self.scope_name.as_ref().map(|s| {
                s.parse(entry)
                    .map_err(|e| format!("scope_name parser: {e}"))
            }),
        ];
        match results.into_iter().flatten().find_map(Result::err) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The keys of the embedded blocks, which complex parsers take out before decoding their own.
pub const EMBEDDED_KEYS: &[&str] = &["timestamp", "severity", "trace", "scope_name"];

struct TimeParser(TimeSpec);

impl Transform for TimeParser {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        self.0.parse(entry)
    }
}

pub fn time_parser(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let config: TimeConfig = decode(node, path)?;
    Ok(Box::new(TimeParser(TimeSpec::build(config, node, path)?)))
}

struct SeverityParser(SeveritySpec);

impl Transform for SeverityParser {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        self.0.parse(entry)
    }
}

pub fn severity_parser(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let config: SeverityConfig = decode(node, path)?;
    Ok(Box::new(SeverityParser(SeveritySpec::build(
        config, node, path,
    )?)))
}

struct TraceParser(TraceSpec);

impl Transform for TraceParser {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        self.0.parse(entry)
    }
}

pub fn trace_parser(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let config: TraceConfig = if node.is_null() {
        TraceConfig::default()
    } else {
        decode(node, path)?
    };
    Ok(Box::new(TraceParser(TraceSpec::build(config))))
}

struct ScopeNameParser(ScopeNameSpec);

impl Transform for ScopeNameParser {
    fn apply(&mut self, entry: &mut Entry) -> Result<(), String> {
        self.0.parse(entry)
    }
}

pub fn scope_name_parser(node: &Node, path: &str) -> Result<Box<dyn Transform>, Vec<Diagnostic>> {
    let config: ScopeNameConfig = decode(node, path)?;
    Ok(Box::new(ScopeNameParser(ScopeNameSpec::build(
        config, node, path,
    )?)))
}
