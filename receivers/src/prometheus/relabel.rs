//! Prometheus relabelling (`relabel_configs`, `metric_relabel_configs`) with every action
//! Prometheus has, on a sorted label set.

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

/// A label set: sorted by name, names unique.
pub type Labels = Vec<(String, String)>;

pub fn get<'a>(labels: &'a Labels, name: &str) -> Option<&'a str> {
    labels
        .binary_search_by(|(n, _)| n.as_str().cmp(name))
        .ok()
        .map(|i| labels[i].1.as_str())
}

/// Sets `name` to `value`; an empty value removes the label, as in Prometheus.
pub fn set(labels: &mut Labels, name: &str, value: String) {
    match labels.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) if value.is_empty() => {
            labels.remove(i);
        }
        Ok(i) => labels[i].1 = value,
        Err(_) if value.is_empty() => {}
        Err(i) => labels.insert(i, (name.to_string(), value)),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

/// One `relabel_configs` entry as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` and matched against `regex`.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins the source values (default `;`).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// Matched against the joined value, anchored at both ends (default `(.*)`).
    #[serde(default)]
    pub regex: Option<String>,
    /// For `hashmod`: the modulus.
    #[serde(default)]
    pub modulus: Option<u64>,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`, compared by
    /// `keepequal`/`dropequal`.
    #[serde(default)]
    pub target_label: Option<String>,
    /// What `replace` writes (default `$1`); `$1`, `${name}` refer to regex groups.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// Default `replace`.
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}

fn default_replacement() -> String {
    "$1".into()
}

/// A checked relabel step.
#[derive(Clone, Debug)]
pub struct Rule {
    source: Vec<String>,
    separator: String,
    regex: Regex,
    modulus: u64,
    target: String,
    replacement: String,
    action: Action,
}

impl RelabelConfig {
    /// Checks the entry as Prometheus does when it loads a config.
    pub fn compile(&self) -> Result<Rule, String> {
        let pattern = self.regex.as_deref().unwrap_or("(.*)");
        let regex = Regex::new(&format!("^(?s:{pattern})$"))
            .map_err(|e| format!("invalid regex `{pattern}`: {e}"))?;
        let target = self.target_label.clone().unwrap_or_default();
        let needs_target = matches!(
            self.action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && target.is_empty() {
            return Err(format!(
                "relabel action `{}` needs `target_label`",
                action_name(self.action)
            ));
        }
        if self.action == Action::HashMod && self.modulus.unwrap_or(0) == 0 {
            return Err("relabel action `hashmod` needs a `modulus` above 0".into());
        }
        if matches!(
            self.action,
            Action::KeepEqual | Action::DropEqual | Action::Lowercase | Action::Uppercase
        ) && self.source_labels.is_empty()
        {
            return Err(format!(
                "relabel action `{}` needs `source_labels`",
                action_name(self.action)
            ));
        }
        if matches!(self.action, Action::LabelDrop | Action::LabelKeep)
            && (!self.source_labels.is_empty() || self.target_label.is_some())
        {
            return Err(format!(
                "relabel action `{}` takes only `regex`",
                action_name(self.action)
            ));
        }
        Ok(Rule {
            source: self.source_labels.clone(),
            separator: self.separator.clone(),
            regex,
            modulus: self.modulus.unwrap_or(0),
            target,
            replacement: self.replacement.clone(),
            action: self.action,
        })
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Replace => "replace",
        Action::Keep => "keep",
        Action::Drop => "drop",
        Action::KeepEqual => "keepequal",
        Action::DropEqual => "dropequal",
        Action::HashMod => "hashmod",
        Action::LabelMap => "labelmap",
        Action::LabelDrop => "labeldrop",
        Action::LabelKeep => "labelkeep",
        Action::Lowercase => "lowercase",
        Action::Uppercase => "uppercase",
    }
}

/// A valid Prometheus label name (legacy character set).
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Runs `rules` in order over `labels`; false when the set is dropped.
pub fn apply(rules: &[Rule], labels: &mut Labels) -> bool {
    rules.iter().all(|rule| rule.apply(labels))
}

impl Rule {
    fn joined(&self, labels: &Labels) -> String {
        let mut out = String::new();
        for (i, name) in self.source.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.separator);
            }
            out.push_str(get(labels, name).unwrap_or(""));
        }
        out
    }

    fn apply(&self, labels: &mut Labels) -> bool {
        match self.action {
            Action::Keep => self.regex.is_match(&self.joined(labels)),
            Action::Drop => !self.regex.is_match(&self.joined(labels)),
            Action::KeepEqual => self.joined(labels) == get(labels, &self.target).unwrap_or(""),
            Action::DropEqual => self.joined(labels) != get(labels, &self.target).unwrap_or(""),
            Action::Replace => {
                let value = self.joined(labels);
                let Some(caps) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                caps.expand(&self.target, &mut target);
                if !valid_label_name(&target) {
                    return true;
                }
                let mut out = String::new();
                caps.expand(&self.replacement, &mut out);
                set(labels, &target, out);
                true
            }
            Action::Lowercase => {
                let value = self.joined(labels).to_lowercase();
                set(labels, &self.target, value);
                true
            }
            Action::Uppercase => {
                let value = self.joined(labels).to_uppercase();
                set(labels, &self.target, value);
                true
            }
            Action::HashMod => {
                let digest = Md5::digest(self.joined(labels).as_bytes());
                // Prometheus folds the digest into a uint64 by shifting each byte into place;
                // shifts of 64 bits or more give 0 in Go, so only the last 8 bytes count.
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                let value = u64::from_be_bytes(tail) % self.modulus;
                set(labels, &self.target, value.to_string());
                true
            }
            Action::LabelMap => {
                let mut added = Vec::new();
                for (name, value) in labels.iter() {
                    if let Some(caps) = self.regex.captures(name) {
                        let mut new_name = String::new();
                        caps.expand(&self.replacement, &mut new_name);
                        added.push((new_name, value.clone()));
                    }
                }
                for (name, value) in added {
                    set(labels, &name, value);
                }
                true
            }
            Action::LabelDrop => {
                labels.retain(|(name, _)| !self.regex.is_match(name));
                true
            }
            Action::LabelKeep => {
                labels.retain(|(name, _)| self.regex.is_match(name));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut l: Labels = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        l.sort();
        l
    }

    fn rule(yaml: &str) -> Rule {
        let node = sluice_config::parse_yaml("t.yaml", yaml).unwrap();
        let config: RelabelConfig = sluice_config::decode(&node, "r").unwrap();
        config.compile().unwrap()
    }

    #[test]
    fn replace_writes_expanded_groups_and_removes_on_empty() {
        let mut l = labels(&[("__address__", "host:9100"), ("env", "prod")]);
        let r = rule(
            "source_labels: [__address__]\nregex: '([^:]+):\\d+'\ntarget_label: host\nreplacement: '${1}-x'\n",
        );
        assert!(apply(&[r], &mut l));
        assert_eq!(get(&l, "host"), Some("host-x"));
        let r = rule("source_labels: [missing]\ntarget_label: env\n");
        assert!(apply(&[r], &mut l));
        assert_eq!(
            get(&l, "env"),
            None,
            "an empty replacement removes the label"
        );
        // No match: nothing changes.
        let r =
            rule("source_labels: [host]\nregex: 'nomatch'\ntarget_label: host\nreplacement: x\n");
        apply(&[r], &mut l);
        assert_eq!(get(&l, "host"), Some("host-x"));
    }

    #[test]
    fn keep_and_drop_match_the_whole_value() {
        let l = labels(&[("__name__", "node_cpu_seconds_total"), ("mode", "idle")]);
        let keep = rule("source_labels: [__name__]\nregex: 'node_cpu.*'\naction: keep\n");
        assert!(apply(&[keep], &mut l.clone()));
        let keep_partial = rule("source_labels: [__name__]\nregex: 'cpu'\naction: keep\n");
        assert!(
            !apply(&[keep_partial], &mut l.clone()),
            "regexes are anchored"
        );
        let drop = rule(
            "source_labels: [__name__, mode]\nregex: 'node_cpu_seconds_total;idle'\naction: drop\n",
        );
        assert!(!apply(&[drop], &mut l.clone()));
    }

    #[test]
    fn keepequal_dropequal_compare_with_the_target() {
        let l = labels(&[("a", "1"), ("b", "1"), ("c", "2")]);
        let eq = rule("source_labels: [a]\ntarget_label: b\naction: keepequal\n");
        assert!(apply(&[eq], &mut l.clone()));
        let ne = rule("source_labels: [a]\ntarget_label: c\naction: keepequal\n");
        assert!(!apply(&[ne], &mut l.clone()));
        let drop = rule("source_labels: [a]\ntarget_label: b\naction: dropequal\n");
        assert!(!apply(&[drop], &mut l.clone()));
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Prometheus: md5("foo") folded to its last 8 bytes, modulo 1000.
        let mut l = labels(&[("a", "foo")]);
        let r = rule("source_labels: [a]\nmodulus: 1000\ntarget_label: shard\naction: hashmod\n");
        apply(&[r], &mut l);
        let digest = Md5::digest(b"foo");
        let want = u64::from_be_bytes(digest[8..16].try_into().unwrap()) % 1000;
        assert_eq!(get(&l, "shard"), Some(want.to_string().as_str()));
    }

    #[test]
    fn label_map_drop_keep_and_case() {
        let mut l = labels(&[
            ("__meta_x_team", "db"),
            ("__meta_x_zone", "a"),
            ("keep", "1"),
        ]);
        let map = rule("regex: '__meta_x_(.+)'\naction: labelmap\n");
        apply(&[map], &mut l);
        assert_eq!(get(&l, "team"), Some("db"));
        assert_eq!(get(&l, "zone"), Some("a"));
        let drop = rule("regex: '__meta_.*'\naction: labeldrop\n");
        apply(&[drop], &mut l);
        assert!(l.iter().all(|(n, _)| !n.starts_with("__meta")));
        let keep = rule("regex: 'team|keep'\naction: labelkeep\n");
        apply(&[keep], &mut l);
        assert_eq!(l.len(), 2);
        let up = rule("source_labels: [team]\ntarget_label: team_upper\naction: uppercase\n");
        let low =
            rule("source_labels: [team_upper]\ntarget_label: team_lower\naction: lowercase\n");
        apply(&[up, low], &mut l);
        assert_eq!(get(&l, "team_upper"), Some("DB"));
        assert_eq!(get(&l, "team_lower"), Some("db"));
    }

    #[test]
    fn bad_rules_are_refused() {
        let node =
            sluice_config::parse_yaml("t.yaml", "action: hashmod\ntarget_label: x\n").unwrap();
        let c: RelabelConfig = sluice_config::decode(&node, "r").unwrap();
        assert!(c.compile().unwrap_err().contains("modulus"));
        let node = sluice_config::parse_yaml("t.yaml", "regex: '('\n").unwrap();
        let c: RelabelConfig = sluice_config::decode(&node, "r").unwrap();
        assert!(c.compile().is_err());
    }
}
