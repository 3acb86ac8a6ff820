//! `container`: container runtime log lines as Kubernetes nodes write them. It tells the three
//! formats apart by themselves (Docker's JSON lines, CRI-O's and containerd's
//! `<time> <stream> <tag> <log>`), joins CRI partial lines (`P` tags) up to the final `F`,
//! takes the event time, moves the log text to the body and the stream to `log.iostream`,
//! and reads the pod's namespace, name, uid, container name and restart count from the
//! `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log` path.

use std::collections::HashMap;
use std::time::Instant;

use regex::Regex;
use serde::Deserialize;
use sluice_config::{Diagnostic, Node};

use super::embedded::{EMBEDDED_KEYS, Embedded};
use super::entry::{Entry, Map, Value};
use super::expr::Expr;
use super::field::Field;
use super::recombine::{Match, Recombiner, Settings};
use super::time::{Layout, Zones};
use super::{Common, OnError, Operator, Output, decode, fail, problem};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerConfig {
    /// `docker`, `crio` or `containerd`; detected per line when unset.
    #[serde(default)]
    format: Option<String>,
    /// Read Kubernetes metadata from `log.file.path` (default true; needs
    /// `include_file_path: true`).
    #[serde(default = "yes")]
    add_metadata_from_filepath: bool,
    /// Most bytes of a line joined from CRI partials (default 1MiB; 0 no limit).
    #[serde(default)]
    max_log_size: Option<sluice_config::ByteSize>,
    /// Default `body`.
    #[serde(default)]
    parse_from: Option<Field>,
    /// Default `attributes`.
    #[serde(default)]
    parse_to: Option<Field>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Docker,
    Crio,
    Containerd,
}

const CRIO: &str = r"^(?P<time>[^ Z]+) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) ?(?P<log>.*)$";
const CONTAINERD: &str =
    r"^(?P<time>[^ ^Z]+Z) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) ?(?P<log>.*)$";
const POD_PATH: &str = r"^.*(/|\\)(?P<namespace>[^_]+)_(?P<pod_name>[^_]+)_(?P<uid>[a-f0-9\-]+)(/|\\)(?P<container_name>[^\._]+)(/|\\)(?P<restart_count>\d+)\.log$";

/// Pods' metadata by log path, bounded (a node runs about a hundred pods).
const PATH_CACHE: usize = 512;

struct Container {
    id: String,
    condition: Option<Expr>,
    on_error: OnError,
    format: Option<Format>,
    add_metadata: bool,
    parse_from: Field,
    parse_to: Field,
    embedded: Embedded,
    crio: Regex,
    containerd: Regex,
    pod_path: Regex,
    docker_time: Layout,
    crio_time: Layout,
    utc: Zones,
    local: Zones,
    paths: HashMap<String, Option<[(String, String); 5]>>,
    partials: Recombiner,
}

impl Container {
    fn detect(&self, text: &str) -> Option<Format> {
        if text.starts_with('{') {
            Some(Format::Docker)
        } else if self.crio.is_match(text) {
            Some(Format::Crio)
        } else if self.containerd.is_match(text) {
            Some(Format::Containerd)
        } else {
            None
        }
    }

    fn parse(&mut self, entry: &mut Entry) -> Result<Format, String> {
        let text = match self.parse_from.get(entry) {
            Some(Value::Str(s)) => s,
            Some(_) => return Err("the value to parse is not a string".to_string()),
            None => return Err(format!("the entry has no {} to parse", self.parse_from)),
        };
        let format = match self.format {
            Some(f) => f,
            None => self
                .detect(text)
                .ok_or_else(|| "not a docker, cri-o or containerd log line".to_string())?,
        };
        let parsed = match format {
            Format::Docker => match serde_json::from_str::<serde_json::Value>(text) {
                Ok(json @ serde_json::Value::Object(_)) => Value::from_json(json),
                Ok(_) => return Err("the docker log line is not a JSON object".to_string()),
                Err(e) => return Err(format!("the docker log line is not JSON: {e}")),
            },
            Format::Crio | Format::Containerd => {
                let regex = if format == Format::Crio {
                    &self.crio
                } else {
                    &self.containerd
                };
                let captures = regex
                    .captures(text)
                    .ok_or_else(|| format!("not a {format:?} log line"))?;
                let mut map = Map::new();
                for name in ["time", "stream", "logtag", "log"] {
                    let value = captures.name(name).map_or("", |m| m.as_str());
                    map.insert(name.to_string(), Value::Str(value.to_string()));
                }
                Value::Map(map)
            }
        };
        self.parse_to.set(entry, parsed);
        let embedded = self.embedded.apply(entry);
        self.mappings(entry, format)?;
        embedded.map(|()| format)
    }

    /// The time, the body, `log.iostream` and the pod metadata.
    fn mappings(&mut self, entry: &mut Entry, format: Format) -> Result<(), String> {
        let time = entry
            .attributes
            .remove("time")
            .ok_or_else(|| "the log line has no time".to_string())?;
        let (layout, zones) = match format {
            Format::Crio => (&self.crio_time, &self.local),
            Format::Docker | Format::Containerd => (&self.docker_time, &self.utc),
        };
        entry.timestamp = layout.parse(&time, zones).map_err(|e| e.0)?;
        let log = entry
            .attributes
            .remove("log")
            .ok_or_else(|| "the log line has no log text".to_string())?;
        entry.body = log;
        let stream = entry
            .attributes
            .remove("stream")
            .ok_or_else(|| "the log line has no stream".to_string())?;
        entry.attributes.insert("log.iostream".to_string(), stream);
        if self.add_metadata {
            self.pod_metadata(entry)?;
        }
        Ok(())
    }

    fn pod_metadata(&mut self, entry: &mut Entry) -> Result<(), String> {
        let Some(Value::Str(path)) = entry.attributes.get("log.file.path") else {
            return Err(
                "no `log.file.path` attribute to read pod metadata from (set `include_file_path: true`, or `add_metadata_from_filepath: false`)"
                    .to_string(),
            );
        };
        if !self.paths.contains_key(path) {
            if self.paths.len() >= PATH_CACHE {
                self.paths.clear();
            }
            let found = self.pod_path.captures(path).map(|c| {
                let get = |n: &str| c.name(n).map_or(String::new(), |m| m.as_str().to_string());
                [
                    ("k8s.namespace.name".to_string(), get("namespace")),
                    ("k8s.pod.name".to_string(), get("pod_name")),
                    ("k8s.pod.uid".to_string(), get("uid")),
                    ("k8s.container.name".to_string(), get("container_name")),
                    (
                        "k8s.container.restart_count".to_string(),
                        get("restart_count"),
                    ),
                ]
            });
            self.paths.insert(path.clone(), found);
        }
        match self.paths.get(path) {
            Some(Some(metadata)) => {
                for (key, value) in metadata {
                    entry
                        .resource
                        .insert(key.clone(), Value::Str(value.clone()));
                }
                Ok(())
            }
            _ => Err(format!("`{path}` is not a Kubernetes pod log path")),
        }
    }
}

impl Operator for Container {
    fn process(&mut self, mut entry: Entry, out: &mut Output) {
        if let Some(condition) = &self.condition {
            match condition.eval_bool(&entry) {
                Ok(true) => {}
                Ok(false) => return out.send(0, entry),
                Err(e) => return fail(&self.id, self.on_error, &e.0, entry, out),
            }
        }
        match self.parse(&mut entry) {
            Ok(Format::Docker) => out.send(0, entry),
            Ok(Format::Crio | Format::Containerd) => self.partials.add(entry, out),
            Err(e) => fail(&self.id, self.on_error, &e, entry, out),
        }
    }

    fn flush(&mut self, now: Instant, all: bool, out: &mut Output) {
        self.partials.flush_due(now, all, out);
    }

    fn held(&self, visit: &mut dyn FnMut(&Entry)) {
        self.partials.held(visit);
    }

    fn holds(&self) -> bool {
        true
    }
}

pub(super) fn build(
    node: &Node,
    path: &str,
    common: &mut Common,
) -> Result<Box<dyn Operator>, Vec<Diagnostic>> {
    let mut own = node.clone();
    if let Some(m) = own.as_map_mut() {
        m.entries
            .retain(|(k, _)| !EMBEDDED_KEYS.contains(&k.name.as_str()) && k.name != "drop_field");
    }
    let config: ContainerConfig = decode(&own, path)?;
    let embedded = Embedded::build(node, path)?;
    let format = match config.format.as_deref() {
        None | Some("") => None,
        Some("docker") => Some(Format::Docker),
        Some("crio") => Some(Format::Crio),
        Some("containerd") => Some(Format::Containerd),
        Some(other) => {
            return Err(vec![problem(
                node,
                path,
                "format",
                format!("`{other}` is not `docker`, `crio` or `containerd`"),
            )]);
        }
    };
    // The patterns, layouts and expression below are sluice's own constants, compiled by the
    // operator's tests: a failure here is a bug in sluice, not in a config.
    #[allow(
        clippy::expect_used,
        reason = "built-in patterns, compiled by the tests"
    )]
    let compile = |pattern: &str| Regex::new(pattern).expect("the built-in patterns compile");
    #[allow(
        clippy::expect_used,
        reason = "built-in layouts, compiled by the tests"
    )]
    let layout = |l: &str| Layout::compile("gotime", l).expect("the built-in layouts compile");
    #[allow(
        clippy::expect_used,
        reason = "a built-in expression, compiled by the tests"
    )]
    let settings = Settings {
        combine_field: Field::body(),
        combine_with: String::new(),
        matcher: Match::Last,
        expr: Expr::compile("attributes.logtag == 'F'").expect("the built-in expression compiles"),
        max_batch_size: 1000,
        max_unmatched_batch_size: 100,
        keep_newest: true,
        force_flush_period: super::DEFAULT_FORCE_FLUSH,
        source_identifier: Field::attribute("log.file.path"),
        max_sources: 1000,
        max_log_size: config.max_log_size.map_or(1024 * 1024, |b| b.0 as usize),
    };
    Ok(Box::new(Container {
        id: common.id.clone(),
        condition: common.condition.take(),
        on_error: common.on_error,
        format,
        add_metadata: config.add_metadata_from_filepath,
        parse_from: config.parse_from.unwrap_or_else(Field::body),
        parse_to: config.parse_to.unwrap_or_else(Field::attributes),
        embedded,
        crio: compile(CRIO),
        containerd: compile(CONTAINERD),
        pod_path: compile(POD_PATH),
        docker_time: layout("2006-01-02T15:04:05.999Z"),
        crio_time: layout("2006-01-02T15:04:05.999999999Z07:00"),
        utc: Zones::utc(),
        local: Zones::new(None, &HashMap::new()).unwrap_or_else(|_| Zones::utc()),
        paths: HashMap::new(),
        partials: Recombiner::new(common.id.clone(), common.on_error, settings),
    }))
}
