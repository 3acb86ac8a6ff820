//! `dynatrace`: the host as the Dynatrace OneAgent knows it, from the enrichment file it
//! writes.

use super::detection::Found;
use super::host::Host;

const FILE: &str = "/var/lib/dynatrace/enrichment/dt_host_metadata.properties";

/// The keys taken from the file; anything else in it is left alone.
const KEYS: &[&str] = &["dt.entity.host", "host.name", "dt.smartscape.host"];

/// No file (no OneAgent) finds nothing.
pub fn detect(host: &Host) -> Result<Found, String> {
    let mut found = Found::default();
    let Some(text) = host.read(FILE)? else {
        return Ok(found);
    };
    for line in text.lines() {
        // Split at the first `=`: a value may hold more.
        let Some((key, value)) = line.split_once('=') else {
            if !line.trim().is_empty() {
                tracing::warn!(
                    line,
                    "dynatrace detector: skipping a line that is not key=value"
                );
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if !value.is_empty() && KEYS.contains(&key) {
            found.string(key, value);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::{FakeNames, Fixture, host_in};

    #[test]
    fn reads_the_known_keys_of_the_enrichment_file() {
        let fx = Fixture::new().file(
            FILE,
            "dt.entity.host=HOST-1234567890ABCDEF\nhost.name=web-01\ndt.smartscape.host=web-01.dt\nother=x=y\nnot a pair\ndt.entity.process_group=PG-1\n",
        );
        let found = detect(&host_in(&fx, FakeNames::none())).unwrap();
        assert_eq!(
            found.keys(),
            vec!["dt.entity.host", "host.name", "dt.smartscape.host"]
        );
        assert_eq!(
            found.get_str("dt.entity.host"),
            Some("HOST-1234567890ABCDEF")
        );
        assert!(
            detect(&host_in(&Fixture::new(), FakeNames::none()))
                .unwrap()
                .is_empty()
        );
    }
}
