//! `env`: the OTel SDK variables `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`.

use super::detection::{DetectResult, Found};
use super::host::Host;

pub fn detect(host: &Host) -> DetectResult {
    let mut found = Found::default();
    if let Some(list) = host.var("OTEL_RESOURCE_ATTRIBUTES") {
        // The SDK spec says to discard the whole variable on any decoding error, so one bad
        // pair cannot leave a half-applied, misleading resource.
        for (key, value) in parse_attributes(&list)? {
            found.string(&key, value);
        }
    }
    // OTEL_SERVICE_NAME takes precedence over a service.name in the list (SDK spec).
    if let Some(name) = host.var("OTEL_SERVICE_NAME") {
        found.string("service.name", name);
    }
    Ok(found)
}

/// Parses `k=v,k2=v2`: keys and values trimmed and percent-decoded; blank entries skipped.
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
        let key = percent_decode(key.trim())
            .map_err(|e| format!("OTEL_RESOURCE_ATTRIBUTES: key `{}`: {e}", key.trim()))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!(
                "OTEL_RESOURCE_ATTRIBUTES: `{}` has an empty key",
                entry.trim()
            ));
        }
        let value = percent_decode(value.trim())
            .map_err(|e| format!("OTEL_RESOURCE_ATTRIBUTES: value of `{key}`: {e}"))?;
        out.push((key.to_string(), value.trim().to_string()));
    }
    Ok(out)
}

/// `%XX` escapes to bytes, which must then form UTF-8. `+` stays `+`: this is not a form
/// encoding.
fn percent_decode(s: &str) -> Result<String, String> {
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

    #[test]
    fn reads_both_variables_decoded_and_trimmed() {
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
        let found = detect(&host).unwrap();
        assert_eq!(found.get_str("deployment.environment.name"), Some("prod"));
        assert_eq!(found.get_str("team"), Some("a,b=c"));
        assert_eq!(found.get_str("note"), Some("café+x"));
        // OTEL_SERVICE_NAME beats service.name from the list.
        assert_eq!(found.get_str("service.name"), Some("checkout"));
        assert_eq!(found.0.len(), 4);
    }

    #[test]
    fn service_name_alone_and_blank_entries() {
        let host = host_with(
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "a=1,, ,b="),
                ("OTEL_SERVICE_NAME", "svc"),
            ],
            None,
        );
        let found = detect(&host).unwrap();
        assert_eq!(found.get_str("a"), Some("1"));
        // An empty value is a value (the key was set on purpose).
        assert_eq!(found.get_str("b"), Some(""));
        assert_eq!(found.get_str("service.name"), Some("svc"));
    }

    #[test]
    fn finds_nothing_when_unset_or_blank() {
        assert!(detect(&host_with(&[], None)).unwrap().is_empty());
        let blank = host_with(
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "  "),
                ("OTEL_SERVICE_NAME", ""),
            ],
            None,
        );
        assert!(detect(&blank).unwrap().is_empty());
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
            let err = detect(&host).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
