//! `${env:NAME}` references in scalar values.

use crate::error::Diagnostic;
use crate::node::{Node, Value, path_index, path_key};

/// Environment lookup: `Some(value)` when the variable is set.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands env references in every scalar value under `node` (keys are left alone),
/// recording one diagnostic per failing reference.
pub fn expand_env(node: &mut Node, path: &str, env: EnvLookup<'_>, errors: &mut Vec<Diagnostic>) {
    match &mut node.value {
        Value::Null => {}
        Value::Scalar(s) => {
            if !s.text.contains('$') {
                return;
            }
            let mut problems = Vec::new();
            let out = expand_str(&s.text, env, &mut problems);
            if problems.is_empty() {
                // An unquoted reference that expands to nothing reads like `key:` with no value.
                if out.is_empty() && !s.quoted {
                    node.value = Value::Null;
                } else {
                    s.text = out;
                }
            } else {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|m| Diagnostic::new(Some(node.pos.clone()), path, m)),
                );
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, &path_index(path, i), env, errors);
            }
        }
        Value::Map(m) => {
            for (k, v) in &mut m.entries {
                expand_env(v, &path_key(path, &k.name), env, errors);
            }
        }
    }
}

/// Expands one string; failures are appended to `problems` as messages.
pub fn expand_str(text: &str, env: EnvLookup<'_>, problems: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(body_and_rest) = after.strip_prefix('{') {
            match find_close(body_and_rest) {
                Some(end) => {
                    out.push_str(&resolve(&body_and_rest[..end], env, problems));
                    rest = &body_and_rest[end + 1..];
                }
                None => {
                    problems.push(format!(
                        "unterminated `${{` in `{text}` (write `$$` for a literal `$`)"
                    ));
                    out.push_str(&rest[at..]);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Index of the `}` closing a reference whose body starts `s`, allowing nested
/// references inside a default value.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1) == Some(&b'{') {
            depth += 1;
            i += 2;
            continue;
        }
        if b[i] == b'}' {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

fn resolve(body: &str, env: EnvLookup<'_>, problems: &mut Vec<String>) -> String {
    let spec = match body.find(':') {
        // `NAME:-default` has its first colon inside the `:-` operator: no provider.
        Some(i) if !body[i..].starts_with(":-") => {
            let provider = &body[..i];
            if provider != "env" {
                if provider.is_empty() {
                    problems.push(format!("invalid reference `${{{body}}}`"));
                } else {
                    problems.push(format!("unsupported config provider `{provider}`"));
                }
                return String::new();
            }
            &body[i + 1..]
        }
        _ => body,
    };
    let (name, default) = match spec.find(":-") {
        Some(i) => (&spec[..i], Some(&spec[i + 2..])),
        None => (spec, None),
    };
    if !valid_env_name(name) {
        problems.push(format!("invalid environment variable name `{name}`"));
        return String::new();
    }
    match (env(name), default) {
        (Some(v), _) if !v.is_empty() => v,
        (_, Some(d)) => expand_str(d, env, problems),
        (Some(v), None) => v,
        (None, None) => {
            problems.push(format!(
                "environment variable `{name}` is not set and has no default"
            ));
            String::new()
        }
    }
}

fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_yaml;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    fn exp(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
        let mut p = Vec::new();
        let out = expand_str(text, env, &mut p);
        if p.is_empty() { Ok(out) } else { Err(p) }
    }

    #[test]
    fn all_forms() {
        let env = env_of(&[("HOST", "example.com"), ("PORT", "4317"), ("EMPTY", "")]);
        assert_eq!(
            exp("${env:HOST}:${PORT}", &env).unwrap(),
            "example.com:4317"
        );
        assert_eq!(exp("${env:NOPE:-dflt}", &env).unwrap(), "dflt");
        assert_eq!(exp("${NOPE:-a:b}", &env).unwrap(), "a:b");
        assert_eq!(exp("${EMPTY:-used}", &env).unwrap(), "used");
        assert_eq!(exp("${env:EMPTY}", &env).unwrap(), "");
        assert_eq!(exp("${env:HOST:-unused}", &env).unwrap(), "example.com");
        assert_eq!(exp("${NOPE:-${env:HOST}}", &env).unwrap(), "example.com");
        assert_eq!(exp("cost $$5 and $x $", &env).unwrap(), "cost $5 and $x $");
        assert_eq!(exp("$${env:HOST}", &env).unwrap(), "${env:HOST}");
        assert_eq!(exp("ünï${PORT}cödé", &env).unwrap(), "ünï4317cödé");
    }

    #[test]
    fn failures() {
        let env = env_of(&[]);
        let e = exp("${env:MISSING} ${ALSO}", &env).unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[0].contains("`MISSING`") && e[1].contains("`ALSO`"));
        let e = exp("${file:/etc/x}", &env).unwrap_err();
        assert_eq!(e, vec!["unsupported config provider `file`".to_string()]);
        assert!(exp("${env:BAD-NAME}", &env).is_err());
        assert!(exp("${env:OPEN", &env).unwrap_err()[0].contains("unterminated"));
    }

    #[test]
    fn on_tree_with_positions() {
        let env = env_of(&[("PORT", "4317"), ("EMPTY", "")]);
        let mut n = parse_yaml(
            "c.yaml",
            "a:\n  port: ${env:PORT}\n  q: \"${PORT}\"\n  list: [x, \"${env:UNSET}\"]\n  e: ${EMPTY}\n${PORT}: k\n",
        )
        .unwrap();
        let mut errs = Vec::new();
        expand_env(&mut n, "", &env, &mut errs);
        assert_eq!(errs.len(), 1);
        let d = &errs[0];
        assert_eq!(d.path, "a.list[1]");
        assert_eq!(d.pos.as_ref().unwrap().line, 4);
        assert!(d.to_string().starts_with("c.yaml:4:"), "{d}");
        assert!(d.message.contains("UNSET"));
        let a = n.as_map().unwrap().get("a").unwrap().as_map().unwrap();
        let port = a.get("port").unwrap().as_scalar().unwrap();
        assert_eq!((port.text.as_str(), port.quoted), ("4317", false));
        let q = a.get("q").unwrap().as_scalar().unwrap();
        assert_eq!((q.text.as_str(), q.quoted), ("4317", true));
        assert!(a.get("e").unwrap().is_null());
        // keys are never expanded
        assert!(n.as_map().unwrap().contains_key("${PORT}"));
    }
}
