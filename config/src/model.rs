//! The OTel Collector config schema: component sections, ids, pipelines, service.

use std::fmt;
use std::str::FromStr;

use crate::de::decode;
use crate::error::{ConfigErrors, Diagnostic, Pos};
use crate::node::{Key, Map, Node, Value, path_index, path_key};
use crate::suggest::suggest;
use crate::units::Duration;

/// A telemetry signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalKind {
    /// Spans.
    Traces,
    /// Metric data points.
    Metrics,
    /// Log records.
    Logs,
}

impl SignalKind {
    /// Every signal, in schema order.
    pub const ALL: [SignalKind; 3] = [SignalKind::Traces, SignalKind::Metrics, SignalKind::Logs];

    /// `traces`, `metrics` or `logs`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignalKind::Traces => "traces",
            SignalKind::Metrics => "metrics",
            SignalKind::Logs => "logs",
        }
    }
}

impl fmt::Display for SignalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignalKind {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        SignalKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                ParseIdError(format!(
                    "unknown signal `{s}`; expected traces, metrics or logs"
                ))
            })
    }
}

/// Why a component id, pipeline id or signal could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseIdError(pub String);

/// A component id: `type` or `type/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    /// The component type, e.g. `otlp`.
    pub type_name: String,
    /// The instance name after `/`, if any.
    pub name: Option<String>,
}

impl ComponentId {
    /// An id without a name.
    pub fn new(type_name: impl Into<String>) -> Self {
        ComponentId {
            type_name: type_name.into(),
            name: None,
        }
    }

    /// An id with a name.
    pub fn with_name(type_name: impl Into<String>, name: impl Into<String>) -> Self {
        ComponentId {
            type_name: type_name.into(),
            name: Some(name.into()),
        }
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{n}", self.type_name),
            None => f.write_str(&self.type_name),
        }
    }
}

fn check_name(full: &str, name: &str) -> Result<(), ParseIdError> {
    if name.is_empty() {
        return Err(ParseIdError(format!(
            "invalid id `{full}`: empty name after `/`"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '/')
    {
        return Err(ParseIdError(format!(
            "invalid id `{full}`: the name must not contain {c:?}"
        )));
    }
    Ok(())
}

impl FromStr for ComponentId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        let (type_name, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        if type_name.is_empty() {
            return Err(ParseIdError(format!("invalid id `{s}`: empty type")));
        }
        // The Collector's rule: a letter, then letters, digits or underscores, at most 63.
        let valid_type = type_name.len() <= 63
            && type_name.starts_with(|c: char| c.is_ascii_alphabetic())
            && type_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_type {
            return Err(ParseIdError(format!(
                "invalid id `{s}`: the type must start with a letter and contain only letters, digits and `_`"
            )));
        }
        if let Some(n) = name {
            check_name(s, n)?;
        }
        Ok(ComponentId {
            type_name: type_name.to_string(),
            name: name.map(str::to_string),
        })
    }
}

/// A pipeline id: `traces`, `metrics/name`, ...
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId {
    /// The signal the pipeline carries.
    pub signal: SignalKind,
    /// The name after `/`, if any.
    pub name: Option<String>,
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{n}", self.signal),
            None => write!(f, "{}", self.signal),
        }
    }
}

impl FromStr for PipelineId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, ParseIdError> {
        let (sig, name) = match s.split_once('/') {
            Some((t, n)) => (t, Some(n)),
            None => (s, None),
        };
        let signal = sig.parse::<SignalKind>()?;
        if let Some(n) = name {
            check_name(s, n)?;
        }
        Ok(PipelineId {
            signal,
            name: name.map(str::to_string),
        })
    }
}

/// Which top-level section a component lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    /// `receivers`
    Receiver,
    /// `processors`
    Processor,
    /// `exporters`
    Exporter,
    /// `connectors`
    Connector,
    /// `extensions`
    Extension,
}

impl ComponentKind {
    /// Every kind, in schema order.
    pub const ALL: [ComponentKind; 5] = [
        ComponentKind::Receiver,
        ComponentKind::Processor,
        ComponentKind::Exporter,
        ComponentKind::Connector,
        ComponentKind::Extension,
    ];

    /// The section name: `receivers`, `processors`, ...
    pub fn as_str(&self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receivers",
            ComponentKind::Processor => "processors",
            ComponentKind::Exporter => "exporters",
            ComponentKind::Connector => "connectors",
            ComponentKind::Extension => "extensions",
        }
    }

    /// The singular noun for messages: `receiver`, `processor`, ...
    pub fn singular(&self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
            ComponentKind::Connector => "connector",
            ComponentKind::Extension => "extension",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One component's definition.
#[derive(Clone, Debug)]
pub struct ComponentConfig {
    /// The section it is defined in.
    pub kind: ComponentKind,
    /// Its id.
    pub id: ComponentId,
    /// Position of its key.
    pub pos: Pos,
    /// Key path, e.g. `exporters.file/out`.
    pub path: String,
    /// Its section; `Null` when written as `otlp:` with no value.
    pub node: Node,
}

/// A reference to a component from the `service` section.
#[derive(Clone, Debug)]
pub struct ComponentRef {
    /// The referenced id.
    pub id: ComponentId,
    /// Position of the reference.
    pub pos: Pos,
    /// Key path, e.g. `service.pipelines.traces.exporters[1]`.
    pub path: String,
}

/// One pipeline under `service.pipelines`.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Its id.
    pub id: PipelineId,
    /// Position of its key.
    pub pos: Pos,
    /// Key path, e.g. `service.pipelines.traces/2`.
    pub path: String,
    /// Receivers (or connectors acting as receivers), in order.
    pub receivers: Vec<ComponentRef>,
    /// Processors, in order.
    pub processors: Vec<ComponentRef>,
    /// Exporters (or connectors acting as exporters), in order.
    pub exporters: Vec<ComponentRef>,
}

/// The `service` section.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Extensions to start, in order.
    pub extensions: Vec<ComponentRef>,
    /// Pipelines in the order written.
    pub pipelines: Vec<PipelineConfig>,
    /// Raw `service.telemetry` section, or an empty map; the runtime decodes it.
    pub telemetry: Node,
    /// Key path of `telemetry`, for [`decode`].
    pub telemetry_path: String,
    /// `service.shutdown_timeout` (a sluice extension to the schema), default 30s.
    pub shutdown_timeout: Duration,
}

/// A structurally valid configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `receivers`, in order written.
    pub receivers: Vec<ComponentConfig>,
    /// `processors`, in order written.
    pub processors: Vec<ComponentConfig>,
    /// `exporters`, in order written.
    pub exporters: Vec<ComponentConfig>,
    /// `connectors`, in order written.
    pub connectors: Vec<ComponentConfig>,
    /// `extensions`, in order written.
    pub extensions: Vec<ComponentConfig>,
    /// `service`.
    pub service: ServiceConfig,
}

const TOP_KEYS: [&str; 6] = [
    "receivers",
    "processors",
    "exporters",
    "connectors",
    "extensions",
    "service",
];
const SERVICE_KEYS: [&str; 4] = ["extensions", "pipelines", "telemetry", "shutdown_timeout"];
const PIPELINE_KEYS: [&str; 3] = ["receivers", "processors", "exporters"];

/// Default for `service.shutdown_timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

fn unknown_key(pos: &Pos, path: &str, name: &str, valid: &[&str]) -> Diagnostic {
    let sugg = suggest(name, valid.iter().copied());
    let msg = if sugg.is_some() {
        format!("unknown key `{name}`")
    } else {
        format!(
            "unknown key `{name}`, expected one of {}",
            valid
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Diagnostic::new(Some(pos.clone()), path, msg).with_suggestion(sugg)
}

/// A mapping section, `Null` counting as empty; anything else is reported.
fn section<'a>(node: &'a Node, path: &str, what: &str, errs: &mut ConfigErrors) -> Option<&'a Map> {
    match &node.value {
        Value::Map(m) => Some(m),
        Value::Null => None,
        _ => {
            errs.push(Diagnostic::new(
                Some(node.pos.clone()),
                path,
                format!("expected {what}, found a {}", node.kind_name()),
            ));
            None
        }
    }
}

/// A list of component references, `Null` counting as empty.
fn refs(node: &Node, path: &str, errs: &mut ConfigErrors) -> Vec<ComponentRef> {
    let items = match &node.value {
        Value::Seq(items) => items.as_slice(),
        Value::Null => &[],
        _ => {
            errs.push(Diagnostic::new(
                Some(node.pos.clone()),
                path,
                format!(
                    "expected a list of component ids, found a {}",
                    node.kind_name()
                ),
            ));
            return Vec::new();
        }
    };
    let mut out: Vec<ComponentRef> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let item_path = path_index(path, i);
        let Some(text) = item.as_str() else {
            errs.push(Diagnostic::new(
                Some(item.pos.clone()),
                item_path,
                format!("expected a component id, found a {}", item.kind_name()),
            ));
            continue;
        };
        match text.parse::<ComponentId>() {
            Ok(id) => {
                if out.iter().any(|r| r.id == id) {
                    errs.push(Diagnostic::new(
                        Some(item.pos.clone()),
                        item_path,
                        format!("`{id}` is listed more than once"),
                    ));
                    continue;
                }
                out.push(ComponentRef {
                    id,
                    pos: item.pos.clone(),
                    path: item_path,
                });
            }
            Err(e) => errs.push(Diagnostic::new(Some(item.pos.clone()), item_path, e.0)),
        }
    }
    out
}

/// Reports `r` unless it names one of `defined`.
fn check_defined(
    r: &ComponentRef,
    noun: &str,
    defined: &[&[ComponentConfig]],
    errs: &mut ConfigErrors,
) {
    let all = defined.iter().flat_map(|s| s.iter());
    if all.clone().any(|c| c.id == r.id) {
        return;
    }
    let names: Vec<String> = all.map(|c| c.id.to_string()).collect();
    // `otlp` listed while only `otlp/in` is defined is too far apart by edit distance
    // but almost certainly meant that one.
    let sugg = suggest(&r.id.to_string(), names.iter().map(String::as_str)).or_else(|| {
        defined
            .iter()
            .flat_map(|s| s.iter())
            .find(|c| c.id.type_name == r.id.type_name)
            .map(|c| c.id.to_string())
    });
    errs.push(
        Diagnostic::new(
            Some(r.pos.clone()),
            r.path.clone(),
            format!("{noun} `{}` is not defined", r.id),
        )
        .with_suggestion(sugg),
    );
}

fn components(kind: ComponentKind, node: &Node, errs: &mut ConfigErrors) -> Vec<ComponentConfig> {
    let path = kind.as_str();
    let Some(map) = section(node, path, "a map of component ids", errs) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map.iter() {
        let cpath = path_key(path, &k.name);
        match k.name.parse::<ComponentId>() {
            Ok(id) => out.push(ComponentConfig {
                kind,
                id,
                pos: k.pos.clone(),
                path: cpath,
                node: v.clone(),
            }),
            Err(e) => errs.push(Diagnostic::new(Some(k.pos.clone()), cpath, e.0)),
        }
    }
    out
}

impl Config {
    /// Structural validation of a loaded tree; every problem is collected and
    /// returned together. Component types are not checked here (the registry knows them).
    pub fn from_node(root: &Node) -> Result<Config, ConfigErrors> {
        let (config, errs) = Config::from_node_lenient(root);
        errs.into_result(config)
    }

    /// Like [`Config::from_node`], but also returns what could be understood despite the
    /// problems (invalid entries left out), so that later checks (component types, component
    /// sections) can report their problems in the same run instead of one layer at a time.
    pub fn from_node_lenient(root: &Node) -> (Config, ConfigErrors) {
        let mut errs = ConfigErrors::default();
        let empty = Map::default();
        let top = match &root.value {
            Value::Map(m) => m,
            Value::Null => &empty,
            _ => {
                errs.push(Diagnostic::new(
                    Some(root.pos.clone()),
                    "",
                    format!(
                        "the configuration must be a map, found a {}",
                        root.kind_name()
                    ),
                ));
                let nothing = Config {
                    receivers: Vec::new(),
                    processors: Vec::new(),
                    exporters: Vec::new(),
                    connectors: Vec::new(),
                    extensions: Vec::new(),
                    service: ServiceConfig {
                        extensions: Vec::new(),
                        pipelines: Vec::new(),
                        telemetry: Node::empty_map(root.pos.clone()),
                        telemetry_path: "service.telemetry".to_string(),
                        shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
                    },
                };
                return (nothing, errs);
            }
        };
        for (k, _) in top.iter() {
            if !TOP_KEYS.contains(&k.name.as_str()) {
                errs.push(unknown_key(&k.pos, &k.name, &k.name, &TOP_KEYS));
            }
        }
        let null = Node::new(Value::Null, root.pos.clone());
        let sect = |kind: ComponentKind, errs: &mut ConfigErrors| {
            components(kind, top.get(kind.as_str()).unwrap_or(&null), errs)
        };
        let receivers = sect(ComponentKind::Receiver, &mut errs);
        let processors = sect(ComponentKind::Processor, &mut errs);
        let exporters = sect(ComponentKind::Exporter, &mut errs);
        let connectors = sect(ComponentKind::Connector, &mut errs);
        let extensions = sect(ComponentKind::Extension, &mut errs);

        let mut service = ServiceConfig {
            extensions: Vec::new(),
            pipelines: Vec::new(),
            telemetry: Node::empty_map(root.pos.clone()),
            telemetry_path: "service.telemetry".to_string(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        };
        let (service_pos, service_map) = match top.get_entry("service") {
            Some((k, v)) => (k.pos.clone(), section(v, "service", "a map", &mut errs)),
            None => (root.pos.clone(), None),
        };
        let service_map = service_map.unwrap_or(&empty);
        for (k, _) in service_map.iter() {
            if !SERVICE_KEYS.contains(&k.name.as_str()) {
                errs.push(unknown_key(
                    &k.pos,
                    &path_key("service", &k.name),
                    &k.name,
                    &SERVICE_KEYS,
                ));
            }
        }
        if let Some(ext) = service_map.get("extensions") {
            service.extensions = refs(ext, "service.extensions", &mut errs);
            for r in &service.extensions {
                check_defined(r, "extension", &[&extensions], &mut errs);
            }
        }
        if let Some(t) = service_map.get("telemetry") {
            match &t.value {
                Value::Null => service.telemetry = Node::empty_map(t.pos.clone()),
                Value::Map(_) => service.telemetry = t.clone(),
                _ => errs.push(Diagnostic::new(
                    Some(t.pos.clone()),
                    "service.telemetry",
                    format!("expected a map, found a {}", t.kind_name()),
                )),
            }
        }
        if let Some(t) = service_map.get("shutdown_timeout") {
            match decode::<Duration>(t, "service.shutdown_timeout") {
                Ok(d) => service.shutdown_timeout = d,
                Err(d) => errs.push(d),
            }
        }

        let mut pipelines = Vec::new();
        match service_map.get_entry("pipelines") {
            None => errs.push(Diagnostic::new(
                Some(service_pos),
                "service",
                "missing required key `pipelines`: at least one pipeline is needed",
            )),
            Some((pk, pnode)) => match &pnode.value {
                Value::Map(m) if !m.is_empty() => {
                    let defined = Defined {
                        receivers: &receivers,
                        processors: &processors,
                        exporters: &exporters,
                        connectors: &connectors,
                    };
                    for (k, v) in m.iter() {
                        if let Some(p) = pipeline(k, v, &defined, &mut errs) {
                            pipelines.push(p);
                        }
                    }
                }
                Value::Map(_) | Value::Null => errs.push(Diagnostic::new(
                    Some(pk.pos.clone()),
                    "service.pipelines",
                    "no pipelines defined",
                )),
                _ => {
                    section(pnode, "service.pipelines", "a map of pipelines", &mut errs);
                }
            },
        }

        let conn_as_receiver = |id: &ComponentId| {
            pipelines
                .iter()
                .any(|p: &PipelineConfig| p.receivers.iter().any(|r| &r.id == id))
        };
        let conn_as_exporter = |id: &ComponentId| {
            pipelines
                .iter()
                .any(|p: &PipelineConfig| p.exporters.iter().any(|r| &r.id == id))
        };
        // A connector joins two pipelines: an exporter end without a receiver end (or the
        // reverse) would silently drop or never produce data.
        for c in &connectors {
            let (as_r, as_e) = (conn_as_receiver(&c.id), conn_as_exporter(&c.id));
            if as_e && !as_r {
                errs.push(Diagnostic::new(
                    Some(c.pos.clone()),
                    c.path.clone(),
                    format!(
                        "connector `{}` is used as an exporter but not as a receiver in any pipeline",
                        c.id
                    ),
                ));
            } else if as_r && !as_e {
                errs.push(Diagnostic::new(
                    Some(c.pos.clone()),
                    c.path.clone(),
                    format!(
                        "connector `{}` is used as a receiver but not as an exporter in any pipeline",
                        c.id
                    ),
                ));
            }
        }
        service.pipelines = pipelines;

        let config = Config {
            receivers,
            processors,
            exporters,
            connectors,
            extensions,
            service,
        };
        (config, errs)
    }

    /// The components of one kind.
    pub fn components(&self, kind: ComponentKind) -> &[ComponentConfig] {
        match kind {
            ComponentKind::Receiver => &self.receivers,
            ComponentKind::Processor => &self.processors,
            ComponentKind::Exporter => &self.exporters,
            ComponentKind::Connector => &self.connectors,
            ComponentKind::Extension => &self.extensions,
        }
    }

    /// Looks up a component definition by kind and id.
    pub fn component(&self, kind: ComponentKind, id: &ComponentId) -> Option<&ComponentConfig> {
        self.components(kind).iter().find(|c| &c.id == id)
    }
}

/// The components a pipeline may refer to.
struct Defined<'a> {
    receivers: &'a [ComponentConfig],
    processors: &'a [ComponentConfig],
    exporters: &'a [ComponentConfig],
    connectors: &'a [ComponentConfig],
}

fn pipeline(
    k: &Key,
    v: &Node,
    defined: &Defined<'_>,
    errs: &mut ConfigErrors,
) -> Option<PipelineConfig> {
    let path = path_key("service.pipelines", &k.name);
    let id = match k.name.parse::<PipelineId>() {
        Ok(id) => Some(id),
        Err(e) => {
            let signal = k.name.split('/').next().unwrap_or_default();
            let sugg = if signal.parse::<SignalKind>().is_err() {
                suggest(signal, SignalKind::ALL.iter().map(|s| s.as_str()))
            } else {
                None
            };
            errs.push(
                Diagnostic::new(Some(k.pos.clone()), path.clone(), e.0).with_suggestion(sugg),
            );
            None
        }
    };
    let map = section(
        v,
        &path,
        "a map with receivers, processors and exporters",
        errs,
    );
    let empty = Map::default();
    let map = map.unwrap_or(&empty);
    for (ek, _) in map.iter() {
        if !PIPELINE_KEYS.contains(&ek.name.as_str()) {
            errs.push(unknown_key(
                &ek.pos,
                &path_key(&path, &ek.name),
                &ek.name,
                &PIPELINE_KEYS,
            ));
        }
    }
    // Also says whether anything at all was written, so that a list holding only
    // invalid ids is not reported a second time as missing.
    let list = |key: &str, errs: &mut ConfigErrors| match map.get(key) {
        Some(n) => {
            let written = !n.is_null() && n.as_seq().is_none_or(|s| !s.is_empty());
            (refs(n, &path_key(&path, key), errs), written)
        }
        None => (Vec::new(), false),
    };
    let (receivers, any_receivers) = list("receivers", errs);
    let (processors, _) = list("processors", errs);
    let (exporters, any_exporters) = list("exporters", errs);
    for r in &receivers {
        check_defined(
            r,
            "receiver",
            &[defined.receivers, defined.connectors],
            errs,
        );
    }
    for r in &processors {
        check_defined(r, "processor", &[defined.processors], errs);
    }
    for r in &exporters {
        check_defined(
            r,
            "exporter",
            &[defined.exporters, defined.connectors],
            errs,
        );
    }
    if !any_receivers {
        errs.push(Diagnostic::new(
            Some(k.pos.clone()),
            path.clone(),
            format!("pipeline `{}` has no receivers", k.name),
        ));
    }
    if !any_exporters {
        errs.push(Diagnostic::new(
            Some(k.pos.clone()),
            path.clone(),
            format!("pipeline `{}` has no exporters", k.name),
        ));
    }
    Some(PipelineConfig {
        id: id?,
        pos: k.pos.clone(),
        path,
        receivers,
        processors,
        exporters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_yaml;

    fn cfg(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_node(&parse_yaml("c.yaml", text).unwrap())
    }

    #[test]
    fn ids() {
        let id: ComponentId = "otlp/in".parse().unwrap();
        assert_eq!(id, ComponentId::with_name("otlp", "in"));
        assert_eq!(id.to_string(), "otlp/in");
        assert_eq!(
            "batch".parse::<ComponentId>().unwrap(),
            ComponentId::new("batch")
        );
        for bad in ["", "/x", "otlp/", "9abc", "a-b", "x/y/z", "a/b c"] {
            assert!(bad.parse::<ComponentId>().is_err(), "{bad}");
        }
        let p: PipelineId = "traces/2".parse().unwrap();
        assert_eq!(p.signal, SignalKind::Traces);
        assert_eq!(p.to_string(), "traces/2");
        assert!("trace".parse::<PipelineId>().is_err());
        assert_eq!(
            SignalKind::ALL.map(|s| s.to_string()),
            ["traces", "metrics", "logs"]
        );
    }

    #[test]
    fn valid_config() {
        let c = cfg("\
receivers:
  otlp:
processors:
  batch:
    timeout: 1s
exporters:
  file/out:
    path: x
connectors:
  count:
extensions:
  health_check:
service:
  extensions: [health_check]
  shutdown_timeout: 10s
  telemetry:
    logs: {level: debug}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file/out, count]
    metrics/counts:
      receivers: [count]
      exporters: [file/out]
")
        .unwrap();
        assert_eq!(c.receivers[0].id, ComponentId::new("otlp"));
        assert!(c.receivers[0].node.is_null());
        assert_eq!(c.exporters[0].path, "exporters.file/out");
        assert_eq!(c.service.pipelines.len(), 2);
        let t = &c.service.pipelines[0];
        assert_eq!(t.exporters[1].path, "service.pipelines.traces.exporters[1]");
        assert_eq!(t.exporters[1].pos.line, 22);
        assert_eq!(c.service.pipelines[1].id.name.as_deref(), Some("counts"));
        assert_eq!(c.service.shutdown_timeout, Duration::from_secs(10));
        assert!(c.service.telemetry.as_map().unwrap().contains_key("logs"));
        assert_eq!(c.service.extensions[0].id, ComponentId::new("health_check"));
        assert!(
            c.component(ComponentKind::Processor, &ComponentId::new("batch"))
                .is_some()
        );
    }

    #[test]
    fn defaults_without_optional_sections() {
        let c = cfg("receivers: {otlp: }\nexporters: {debug: }\nservice:\n  pipelines:\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n").unwrap();
        assert_eq!(c.service.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert!(c.service.telemetry.as_map().unwrap().is_empty());
        assert_eq!(c.service.telemetry_path, "service.telemetry");
    }

    #[test]
    fn many_errors_at_once() {
        let errs = cfg("\
receivers:
  otlp:
  bad/:
exporters:
  debug:
exportrs:
  x:
service:
  extensions: [zpages]
  pipelnes: {}
  pipelines:
    traces:
      receivers: [otlpp]
      processors: [batch]
    trace/2:
      receivers: [otlp]
      exporters: [debug]
    logs:
      receivers: [otlp, otlp]
      exporters: [debug]
      extra: [x]
")
        .unwrap_err();
        let text = errs.to_string();
        let has = |needle: &str| {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        };
        has("c.yaml:3:3: receivers.bad/: invalid id `bad/`: empty name after `/`");
        has("c.yaml:6:1: exportrs: unknown key `exportrs` (did you mean `exporters`?)");
        has("c.yaml:9:16: service.extensions[0]: extension `zpages` is not defined");
        has("c.yaml:10:3: service.pipelnes: unknown key `pipelnes` (did you mean `pipelines`?)");
        has(
            "c.yaml:13:19: service.pipelines.traces.receivers[0]: receiver `otlpp` is not defined (did you mean `otlp`?)",
        );
        has(
            "c.yaml:14:20: service.pipelines.traces.processors[0]: processor `batch` is not defined\n",
        );
        has("c.yaml:12:5: service.pipelines.traces: pipeline `traces` has no exporters");
        has("c.yaml:15:5: service.pipelines.trace/2: unknown signal `trace`");
        has("(did you mean `traces`?)");
        has("service.pipelines.logs.receivers[1]: `otlp` is listed more than once");
        has("service.pipelines.logs.extra: unknown key `extra`");
        assert_eq!(errs.len(), 10, "{text}");
    }

    #[test]
    fn suggests_named_instance_of_same_type() {
        let e = cfg("receivers: {otlp/in: }\nexporters: {debug: }\nservice:\n  pipelines:\n    logs: {receivers: [otlp], exporters: [debug]}\n").unwrap_err();
        assert_eq!(e.0[0].suggestion.as_deref(), Some("otlp/in"), "{e}");
    }

    #[test]
    fn pipelines_missing_or_empty() {
        let e = cfg("receivers: {otlp: }\n").unwrap_err();
        assert!(
            e.to_string().contains("missing required key `pipelines`"),
            "{e}"
        );
        let e = cfg("service:\n  pipelines: {}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "c.yaml:2:3: service.pipelines: no pipelines defined"
        );
        let e = cfg("service:\n  pipelines:\n    traces:\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e}");
        let e = cfg(
            "service:\n  pipelines:\n    metrics:\n      receivers: otlp\n      exporters: [[x]]\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e}");
        assert!(
            e.to_string().contains("expected a list of component ids"),
            "{e}"
        );
        let e = cfg("service:\n  shutdown_timeout: 10\n  pipelines:\n    logs: {receivers: [r], exporters: [e]}\nreceivers: {r: }\nexporters: {e: }\n").unwrap_err();
        assert_eq!(e.0[0].path, "service.shutdown_timeout");
    }

    #[test]
    fn connector_must_be_used_on_both_ends() {
        let e = cfg("\
receivers: {otlp: }
exporters: {debug: }
connectors: {forward: }
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [forward]
")
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("connector `forward` is used as an exporter but not as a receiver"),
            "{e}"
        );
    }
}
