//! `<detector>.resource_attributes.<name>.enabled`: which of its attributes a detector emits,
//! each with the OTel Collector's default.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::detection::Found;

/// An attribute a detector can emit, and whether it does unless configured otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub name: &'static str,
    pub default: bool,
}

/// An attribute emitted unless switched off.
pub const fn on(name: &'static str) -> Attr {
    Attr {
        name,
        default: true,
    }
}

/// An attribute emitted only when switched on.
pub const fn off(name: &'static str) -> Attr {
    Attr {
        name,
        default: false,
    }
}

/// One entry of `resource_attributes:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttributeSwitch {
    /// Whether the detector emits the attribute (default: the detector's own default).
    pub enabled: Option<bool>,
}

/// `resource_attributes:` of one detector, keyed by attribute name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ResourceAttributes(pub BTreeMap<String, AttributeSwitch>);

impl ResourceAttributes {
    /// Names that are not attributes of the detector whose table is `known`.
    pub fn unknown<'a>(&'a self, known: &[Attr]) -> Vec<&'a str> {
        self.0
            .keys()
            .filter(|name| !known.iter().any(|a| a.name == name.as_str()))
            .map(String::as_str)
            .collect()
    }
}

/// The resolved switches of one detector.
#[derive(Clone, Copy, Debug)]
pub struct Switches<'a> {
    table: &'static [Attr],
    configured: &'a ResourceAttributes,
}

impl<'a> Switches<'a> {
    pub fn new(table: &'static [Attr], configured: &'a ResourceAttributes) -> Self {
        Switches { table, configured }
    }

    /// Whether `name` is emitted. Names outside the table (tags, labels, node metadata under a
    /// prefix) have no switch and are always emitted.
    pub fn on(&self, name: &str) -> bool {
        let Some(attr) = self.table.iter().find(|a| a.name == name) else {
            return true;
        };
        self.configured
            .0
            .get(name)
            .and_then(|s| s.enabled)
            .unwrap_or(attr.default)
    }

    /// Whether any of `names` is emitted, for work that only some attributes need.
    pub fn any(&self, names: &[&str]) -> bool {
        names.iter().any(|n| self.on(n))
    }

    /// `found` without the attributes switched off.
    pub fn apply(&self, mut found: Found) -> Found {
        found.0.retain(|kv| self.on(&kv.key));
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &[Attr] = &[on("host.name"), off("host.id")];

    fn configured(pairs: &[(&str, Option<bool>)]) -> ResourceAttributes {
        ResourceAttributes(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), AttributeSwitch { enabled: *v }))
                .collect(),
        )
    }

    #[test]
    fn defaults_apply_until_configured() {
        let none = configured(&[]);
        let s = Switches::new(TABLE, &none);
        assert!(s.on("host.name"));
        assert!(!s.on("host.id"));
        assert!(
            s.on("ec2.tag.team"),
            "names outside the table have no switch"
        );

        let flipped = configured(&[("host.name", Some(false)), ("host.id", Some(true))]);
        let s = Switches::new(TABLE, &flipped);
        assert!(!s.on("host.name"));
        assert!(s.on("host.id"));

        // `host.id: {}` keeps the default.
        let empty = configured(&[("host.id", None)]);
        assert!(!Switches::new(TABLE, &empty).on("host.id"));
    }

    #[test]
    fn apply_drops_what_is_off_and_unknown_names_are_listed() {
        let mut found = Found::default();
        found.string("host.name", "a");
        found.string("host.id", "b");
        found.string("ec2.tag.x", "c");
        let none = configured(&[]);
        let kept = Switches::new(TABLE, &none).apply(found);
        assert_eq!(kept.keys(), vec!["host.name", "ec2.tag.x"]);
        let typo = configured(&[("host.nme", Some(true))]);
        assert_eq!(typo.unknown(TABLE), vec!["host.nme"]);
    }
}
