//! Loading: parse each source, expand env references, merge, apply `--set`.

use crate::error::{ConfigErrors, Diagnostic, Pos};
use crate::expand::expand_env;
use crate::merge::{merge, parse_set};
use crate::node::{Node, Value};
use crate::parse::parse_yaml;

/// One configuration source: a file's name (as shown in errors) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// Name used in positions, e.g. the path given to `--config`, or `<default>`.
    pub name: String,
    /// The YAML text.
    pub text: String,
}

impl Source {
    /// A source from a name and its text.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }

    /// Reads a config file; the path as given becomes the source name. Only a regular file
    /// of at most [`MAX_CONFIG_BYTES`] is read: `--config /dev/zero` or a FIFO nobody writes
    /// must fail at once with a clear message, not fill memory or hang.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self, Diagnostic> {
        use std::io::Read;
        let path = path.as_ref();
        let shown = path.display().to_string();
        let fail = |message: String| Diagnostic::new(None, "", format!("{shown}: {message}"));
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        if !meta.is_file() {
            let kind = if meta.is_dir() {
                "a directory"
            } else {
                "not a regular file (a device, FIFO or socket)"
            };
            return Err(fail(format!("cannot read: {kind}; give a YAML file")));
        }
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "is {} bytes; a config may be at most {MAX_CONFIG_BYTES} bytes",
                meta.len()
            )));
        }
        let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        // The size was checked, but the file may grow while it is read.
        let mut bytes = Vec::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "grew past {MAX_CONFIG_BYTES} bytes while being read"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "is not UTF-8 text (at byte {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Ok(Source { name: shown, text })
    }
}

/// The largest config file sluice reads. Real collector configs are a few KiB; this leaves
/// room for generated ones while bounding what parsing one can cost.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Parses every source, expands env references in each, deep-merges them in order,
/// then applies each `--set` in order. All problems are reported together.
pub fn load(
    sources: &[Source],
    sets: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Node, ConfigErrors> {
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut merged: Option<Node> = None;
    for src in sources {
        let mut root = match parse_yaml(&src.name, &src.text) {
            Ok(n) => n,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        match root.value {
            Value::Map(_) => {}
            Value::Null => root = Node::empty_map(root.pos),
            _ => {
                errors.push(Diagnostic::new(
                    Some(root.pos.clone()),
                    "",
                    format!(
                        "the configuration must be a map at the top level, found a {}",
                        root.kind_name()
                    ),
                ));
                continue;
            }
        }
        expand_env(&mut root, "", env, &mut errors);
        match &mut merged {
            None => merged = Some(root),
            Some(m) => merge(m, root),
        }
    }
    let mut root = merged.unwrap_or_else(|| Node::empty_map(Pos::new("<empty>", 1, 1)));
    for (i, set) in sets.iter().enumerate() {
        match parse_set(i + 1, set) {
            Ok((mut overlay, _)) => {
                expand_env(&mut overlay, "", env, &mut errors);
                merge(&mut root, overlay);
            }
            Err(d) => errors.push(d),
        }
    }
    if errors.is_empty() {
        Ok(root)
    } else {
        Err(ConfigErrors(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::to_yaml;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn merges_sources_then_sets() {
        let a = Source::new(
            "base.yaml",
            "exporters:\n  file/out:\n    path: /a\n    rotation:\n      max_megabytes: 10\n      max_backups: 3\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [file/out, debug]\n",
        );
        let b = Source::new(
            "prod.yaml",
            "exporters:\n  file/out:\n    rotation:\n      max_megabytes: 50\nservice:\n  pipelines:\n    traces:\n      exporters: [file/out]\n",
        );
        let sets = vec![
            "exporters.file/out.path=/tmp/x".to_string(),
            "exporters::file/out::rotation::max_backups=7".to_string(),
            "service.pipelines.traces.processors=[batch, memory_limiter]".to_string(),
        ];
        let root = load(&[a, b], &sets, &no_env).unwrap();
        let out = root.get_path(["exporters", "file/out"]).unwrap();
        let path = out.as_map().unwrap().get("path").unwrap();
        assert_eq!(path.as_str(), Some("/tmp/x"));
        assert_eq!((&*path.pos.file, path.pos.line), ("--set", 1));
        let rot = out
            .as_map()
            .unwrap()
            .get("rotation")
            .unwrap()
            .as_map()
            .unwrap();
        assert_eq!(rot.get("max_megabytes").unwrap().as_str(), Some("50"));
        assert_eq!(&*rot.get("max_megabytes").unwrap().pos.file, "prod.yaml");
        assert_eq!(rot.get("max_backups").unwrap().as_str(), Some("7"));
        let traces = root.get_path(["service", "pipelines", "traces"]).unwrap();
        let exporters = traces
            .as_map()
            .unwrap()
            .get("exporters")
            .unwrap()
            .as_seq()
            .unwrap();
        assert_eq!(exporters.len(), 1, "lists are replaced, not appended");
        let procs = traces
            .as_map()
            .unwrap()
            .get("processors")
            .unwrap()
            .as_seq()
            .unwrap();
        assert_eq!(procs.len(), 2);
        // receivers from the first file survive the deep merge
        assert!(traces.as_map().unwrap().contains_key("receivers"));
    }

    #[test]
    fn env_errors_from_every_source_reported_together() {
        let env: HashMap<&str, &str> = [("PORT", "4317")].into();
        let env = move |k: &str| env.get(k).map(|v| v.to_string());
        let a = Source::new("a.yaml", "x:\n  port: ${env:PORT}\n  host: ${env:HOST}\n");
        let b = Source::new("b.yaml", "y: ${file:/etc/secret}\nz: $${HOST}\n");
        let errs = load(&[a, b], &["w=${MISSING_TOO}".to_string()], &env).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs}");
        let text = errs.to_string();
        assert!(
            text.contains("a.yaml:3:9: x.host: environment variable `HOST`"),
            "{text}"
        );
        assert!(
            text.contains("b.yaml:1:4: y: unsupported config provider `file`"),
            "{text}"
        );
        assert!(
            text.contains("--set:1:1: w: environment variable `MISSING_TOO`"),
            "{text}"
        );
    }

    #[test]
    fn rejects_non_map_root_and_bad_set() {
        let errs = load(
            &[
                Source::new("l.yaml", "- a\n- b\n"),
                Source::new("bad.yaml", "a: [\n"),
            ],
            &["nothing".to_string()],
            &no_env,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs}");
        assert!(errs.0[0].message.contains("must be a map"));
        assert_eq!(&*errs.0[1].pos.as_ref().unwrap().file, "bad.yaml");
        assert_eq!(&*errs.0[2].pos.as_ref().unwrap().file, "--set");
    }

    #[test]
    fn empty_inputs() {
        let root = load(&[Source::new("e.yaml", "")], &[], &no_env).unwrap();
        assert!(root.as_map().unwrap().is_empty());
        let root = load(&[], &["a.b=1".to_string()], &no_env).unwrap();
        assert_eq!(root.get_path(["a", "b"]).unwrap().as_str(), Some("1"));
    }

    #[test]
    fn to_yaml_round_trip() {
        let env = |k: &str| (k == "WEIRD").then(|| "a: b # $x".to_string());
        let text = "\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: localhost:4317
      http:
processors:
  batch:
    timeout: 5s
    send_batch_size: 8192
  attributes/x:
    actions:
      - key: env
        value: \"true\"
        action: insert
      - key: n
        value: 0x10
        action: upsert
exporters:
  file/out:
    path: './data/out.json'
    note: ${WEIRD}
    empty: ''
    list: [[1, 2], {}, [], ~]
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch, attributes/x]
      exporters: [file/out]
";
        let first = load(&[Source::new("c.yaml", text)], &[], &env).unwrap();
        let printed = to_yaml(&first);
        let second = load(&[Source::new("printed.yaml", &printed)], &[], &no_env).unwrap();
        assert!(first.same_as(&second), "{printed}");
        assert_eq!(to_yaml(&second), printed);
        // a quoted "true" must stay quoted, a hex number must stay plain
        assert!(printed.contains("value: \"true\""), "{printed}");
        assert!(printed.contains("value: 0x10"), "{printed}");
        assert!(printed.contains("note: \"a: b # $$x\""), "{printed}");
    }
}
