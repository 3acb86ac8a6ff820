//! How components read their config sections: every problem reported in one run, each at
//! its key, and the OTel Collector's keys that cannot mean anything for sluice accepted with a
//! warning that says why, instead of refused.

use std::sync::{Arc, Mutex};

use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, Node, Pos, Value};

/// A key of the upstream component that has no effect in sluice (a Go runtime or library
/// knob), and why. `path` is relative to the component's section, dotted, with `*` standing
/// for any one key (`protocols.*.read_buffer_size`) or every element of a list.
#[derive(Clone, Copy, Debug)]
pub struct NoEffect {
    pub path: &'static str,
    pub why: &'static str,
}

impl NoEffect {
    pub const fn new(path: &'static str, why: &'static str) -> Self {
        NoEffect { path, why }
    }
}

/// Warnings found while building, shown when sluice starts and by `sluice validate`.
#[derive(Clone, Default)]
pub struct ConfigWarnings(Arc<Mutex<Vec<Diagnostic>>>);

impl ConfigWarnings {
    pub fn push(&self, warning: Diagnostic) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !all.contains(&warning) {
            all.push(warning);
        }
    }

    /// Every warning so far, in the order found.
    pub fn take(&self) -> Vec<Diagnostic> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Decodes a component's section, reporting every problem of it; keys listed in `no_effect`
/// are taken out first and each one present becomes a warning naming it and why.
pub fn decode_section<T: serde::de::DeserializeOwned>(
    config: &ComponentConfig,
    no_effect: &[NoEffect],
    warnings: &ConfigWarnings,
) -> Result<T, ConfigErrors> {
    if no_effect.is_empty() {
        return sluice_config::decode_all(&config.node, &config.path).map_err(ConfigErrors);
    }
    let mut node = config.node.clone();
    for key in no_effect {
        let segments: Vec<&str> = key.path.split('.').collect();
        strip(&mut node, &config.path, &segments, &mut |pos, path| {
            warnings.push(Diagnostic::new(
                Some(pos),
                path,
                format!("accepted, has no effect in sluice: {}", key.why),
            ));
        });
    }
    sluice_config::decode_all(&node, &config.path).map_err(ConfigErrors)
}

/// Removes the keys at `segments` below `node`, reporting each removed one.
fn strip(node: &mut Node, path: &str, segments: &[&str], found: &mut dyn FnMut(Pos, String)) {
    let (Some(first), rest) = (segments.first(), &segments[1.min(segments.len())..]) else {
        return;
    };
    // A list is crossed by `*` (`readers.*.producers`): every element is looked into.
    if let (Value::Seq(items), &"*") = (&mut node.value, first) {
        for (i, item) in items.iter_mut().enumerate() {
            strip(item, &format!("{path}[{i}]"), rest, found);
        }
        return;
    }
    let Value::Map(map) = &mut node.value else {
        return;
    };
    if rest.is_empty() {
        map.entries.retain(|(k, _)| {
            let hit = *first == "*" || k.name == *first;
            if hit {
                found(k.pos.clone(), format!("{path}.{}", k.name));
            }
            !hit
        });
        return;
    }
    for (k, v) in &mut map.entries {
        if *first == "*" || k.name == *first {
            strip(v, &format!("{path}.{}", k.name), rest, found);
        }
    }
}

/// A problem with the value of `key` (a dotted path inside the component's section), placed
/// at that key when the section has it, else at the section: one way for every component to
/// point an error at what is wrong.
pub fn problem(config: &ComponentConfig, key: &str, message: impl Into<String>) -> Diagnostic {
    let found = config.node.get_path(key.split('.'));
    let pos = found.map_or_else(|| config.node.pos.clone(), |n| n.pos.clone());
    let path = if key.is_empty() {
        config.path.clone()
    } else {
        format!("{}.{key}", config.path)
    };
    Diagnostic::new(Some(pos), path, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use sluice_config::{ComponentId, ComponentKind};

    fn section(text: &str) -> ComponentConfig {
        ComponentConfig {
            kind: ComponentKind::Receiver,
            id: ComponentId::new("otlp"),
            pos: Pos::new("c.yaml", 1, 1),
            path: "receivers.otlp".into(),
            node: sluice_config::parse_yaml("c.yaml", text).unwrap(),
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Protocols {
        protocols: std::collections::BTreeMap<String, Endpoint>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Endpoint {
        endpoint: String,
    }

    #[test]
    fn keys_without_effect_are_warned_about_and_the_rest_decoded() {
        let config = section(
            "protocols:\n  grpc:\n    endpoint: a\n    read_buffer_size: 1\n  http:\n    endpoint: b\n    read_buffer_size: 2\n",
        );
        let warnings = ConfigWarnings::default();
        let keys = [NoEffect::new("protocols.*.read_buffer_size", "a Go buffer")];
        let decoded: Protocols = decode_section(&config, &keys, &warnings).unwrap();
        assert_eq!(decoded.protocols.len(), 2);
        let warned = warnings.take();
        let paths: Vec<&str> = warned.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "receivers.otlp.protocols.grpc.read_buffer_size",
                "receivers.otlp.protocols.http.read_buffer_size"
            ]
        );
        assert_eq!(warned[0].pos.as_ref().map(|p| p.line), Some(4));
        assert!(warned[0].message.contains("a Go buffer"));
        // Not listed: still an error.
        let config = section("protocols:\n  grpc:\n    endpoint: a\n    write_buffer_size: 1\n");
        assert!(decode_section::<Protocols>(&config, &keys, &warnings).is_err());
    }

    #[test]
    fn a_problem_points_at_its_key() {
        let config = section("protocols:\n  grpc:\n    endpoint: a\n");
        let d = problem(&config, "protocols.grpc.endpoint", "bad");
        assert_eq!(d.path, "receivers.otlp.protocols.grpc.endpoint");
        assert_eq!(d.pos.map(|p| (p.line, p.col)), Some((3, 15)));
        let d = problem(&config, "protocols.http", "missing");
        assert_eq!(d.pos.map(|p| p.line), Some(1));
    }
}
