//! `env`: `OTEL_RESOURCE_ATTRIBUTES` (or the long-deprecated `OTEL_RESOURCE`), as the OTel
//! Collector reads it: `OTEL_SERVICE_NAME` is the SDKs' business, not the collector's.

use super::config::EnvConfig;
use super::detection::{DetectResult, Found};
use super::host::Host;

pub fn detect(host: &Host, cfg: &EnvConfig) -> DetectResult {
    let mut found = Found::default();
    let list = match host.var("OTEL_RESOURCE_ATTRIBUTES") {
        Some(list) => list,
        None => match host.var("OTEL_RESOURCE") {
            Some(list) => {
                tracing::warn!(
                    "env detector: OTEL_RESOURCE is deprecated; set OTEL_RESOURCE_ATTRIBUTES instead"
                );
                list
            }
            None => return Ok(found),
        },
    };
    // One bad pair discards the whole variable, so a half-applied, misleading resource
    // cannot happen.
    for (key, value) in parse_attributes(&list)? {
        let allowed = cfg
            .allow_list
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&key));
        if allowed {
            found.string(&key, value);
        }
    }
    Ok(found)
}

/// Parses `k=v,k2=v2`: keys and values trimmed, values URL-query-decoded (`%XX`, and `+` for
/// a space, as the OTel Collector decodes them); blank entries skipped.
pub fn parse_attributes(list: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for entry in list.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = entry.split_once('=') else {
            return Err(format!(
                "OTEL_RESOURCE_ATTRIBUTES: `{}` is not key=value",
                entry.trim()
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!(
                "OTEL_RESOURCE_ATTRIBUTES: `{}` has an empty key",
                entry.trim()
            ));
        }
        let value = query_unescape(value.trim())
            .map_err(|e| format!("OTEL_RESOURCE_ATTRIBUTES: value of `{key}`: {e}"))?;
        out.push((key.to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// `%XX` escapes to bytes, which must then form UTF-8, and `+` to a space.
fn query_unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_digit(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_digit(*b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(format!("invalid percent escape at byte {i}"));
            };
            out.push((hi << 4) | lo);
            i += 3;
        } else if bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes do not form UTF-8".to_string())
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::host_with;

    fn all() -> EnvConfig {
        EnvConfig::default()
    }

    #[test]
    fn reads_the_list_decoded_and_trimmed_and_not_otel_service_name() {
        let host = host_with(
            &[
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    " deployment.environment.name = prod , team=a%2Cb%3Dc ,note=caf%C3%A9+x,service.name=from-list",
                ),
                ("OTEL_SERVICE_NAME", "  checkout "),
            ],
            None,
        );
        let found = detect(&host, &all()).unwrap();
        assert_eq!(found.get_str("deployment.environment.name"), Some("prod"));
        assert_eq!(found.get_str("team"), Some("a,b=c"));
        assert_eq!(found.get_str("note"), Some("café x"));
        // The collector's own OTEL_SERVICE_NAME names the collector, not the data it carries.
        assert_eq!(found.get_str("service.name"), Some("from-list"));
        assert_eq!(found.0.len(), 4);
    }

    #[test]
    fn allow_list_keeps_only_the_listed_keys() {
        let host = host_with(&[("OTEL_RESOURCE_ATTRIBUTES", "a=1,b=2,c=3")], None);
        let cfg = EnvConfig {
            allow_list: Some(vec!["a".into(), "c".into(), "z".into()]),
        };
        let found = detect(&host, &cfg).unwrap();
        assert_eq!(found.keys(), vec!["a", "c"]);
        let none = EnvConfig {
            allow_list: Some(vec![]),
        };
        assert!(detect(&host, &none).unwrap().is_empty());
    }

    #[test]
    fn the_deprecated_variable_is_read_only_without_the_current_one() {
        let old = host_with(&[("OTEL_RESOURCE", "legacy=yes")], None);
        assert_eq!(detect(&old, &all()).unwrap().get_str("legacy"), Some("yes"));
        let both = host_with(
            &[
                ("OTEL_RESOURCE", "legacy=yes"),
                ("OTEL_RESOURCE_ATTRIBUTES", "new=1"),
            ],
            None,
        );
        assert_eq!(detect(&both, &all()).unwrap().keys(), vec!["new"]);
    }

    #[test]
    fn blank_entries_and_empty_values() {
        let host = host_with(&[("OTEL_RESOURCE_ATTRIBUTES", "a=1,, ,b=")], None);
        let found = detect(&host, &all()).unwrap();
        assert_eq!(found.get_str("a"), Some("1"));
        // An empty value is a value (the key was set on purpose).
        assert_eq!(found.get_str("b"), Some(""));
    }

    #[test]
    fn finds_nothing_when_unset_or_blank() {
        assert!(detect(&host_with(&[], None), &all()).unwrap().is_empty());
        let blank = host_with(&[("OTEL_RESOURCE_ATTRIBUTES", "  ")], None);
        assert!(detect(&blank, &all()).unwrap().is_empty());
    }

    #[test]
    fn a_malformed_list_is_an_error_naming_the_entry() {
        for (bad, needle) in [
            ("a=1,novalue", "novalue"),
            ("=x", "empty key"),
            ("a=%zz", "percent"),
            ("a=%C3", "UTF-8"),
            ("a=%4", "percent"),
        ] {
            let host = host_with(&[("OTEL_RESOURCE_ATTRIBUTES", bad)], None);
            let err = detect(&host, &all()).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
