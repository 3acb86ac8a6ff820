//! `heroku`: the dyno, from the variables Heroku's dyno metadata sets.

use super::attributes::{Attr, on};
use super::detection::Found;
use super::host::Host;

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("heroku.app.id"),
    on("heroku.dyno.id"),
    on("heroku.release.commit"),
    on("heroku.release.creation_timestamp"),
    on("service.instance.id"),
    on("service.name"),
    on("service.version"),
];

/// Not on Heroku (neither `HEROKU_DYNO_ID` nor `HEROKU_APP_ID`) is `None`.
pub fn detect(host: &Host) -> Option<Found> {
    let dyno = host.var("HEROKU_DYNO_ID");
    let app = host.var("HEROKU_APP_ID");
    if dyno.is_none() && app.is_none() {
        return None;
    }
    let mut found = Found::default();
    found.string("cloud.provider", "heroku");
    if let Some(dyno) = dyno {
        found.string("heroku.dyno.id", dyno.clone());
        found.string("service.instance.id", dyno);
    }
    if let Some(app) = app {
        found.string("heroku.app.id", app);
    }
    for (var, key) in [
        ("HEROKU_APP_NAME", "service.name"),
        (
            "HEROKU_RELEASE_CREATED_AT",
            "heroku.release.creation_timestamp",
        ),
        ("HEROKU_RELEASE_VERSION", "service.version"),
        ("HEROKU_SLUG_COMMIT", "heroku.release.commit"),
    ] {
        if let Some(value) = host.var(var) {
            found.string(key, value);
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::host_with;

    #[test]
    fn dyno_metadata_maps_to_attributes() {
        let host = host_with(
            &[
                ("HEROKU_DYNO_ID", "1vac4117-c29f-4312-521e-ba4d8638c1ac"),
                ("HEROKU_APP_ID", "9daa2797-e49b-4624-932f-ec3f9688e3da"),
                ("HEROKU_APP_NAME", "example-app"),
                ("HEROKU_RELEASE_CREATED_AT", "2015-04-02T18:00:42Z"),
                ("HEROKU_RELEASE_VERSION", "v42"),
                (
                    "HEROKU_SLUG_COMMIT",
                    "2c3a0b24069af49b3de35b8e8c26765c1dba9ff0",
                ),
            ],
            None,
        );
        let found = detect(&host).unwrap();
        assert_eq!(found.get_str("cloud.provider"), Some("heroku"));
        assert_eq!(
            found.get_str("service.instance.id"),
            Some("1vac4117-c29f-4312-521e-ba4d8638c1ac")
        );
        assert_eq!(
            found.get_str("heroku.dyno.id"),
            Some("1vac4117-c29f-4312-521e-ba4d8638c1ac")
        );
        assert_eq!(
            found.get_str("heroku.app.id"),
            Some("9daa2797-e49b-4624-932f-ec3f9688e3da")
        );
        assert_eq!(found.get_str("service.name"), Some("example-app"));
        assert_eq!(
            found.get_str("heroku.release.creation_timestamp"),
            Some("2015-04-02T18:00:42Z")
        );
        assert_eq!(found.get_str("service.version"), Some("v42"));
        assert_eq!(
            found.get_str("heroku.release.commit"),
            Some("2c3a0b24069af49b3de35b8e8c26765c1dba9ff0")
        );
    }

    #[test]
    fn nothing_off_heroku() {
        assert!(detect(&host_with(&[("HEROKU_APP_NAME", "x")], None)).is_none());
    }
}
