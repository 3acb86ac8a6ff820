//! `elastic_beanstalk`: the Beanstalk environment, from the X-Ray daemon's configuration file
//! that every Beanstalk instance with X-Ray enabled carries.

use serde::Deserialize;

use super::attributes::{Attr, on};
use super::detection::Found;
use super::host::Host;

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    on("deployment.environment"),
    on("service.instance.id"),
    on("service.version"),
];

const CONF: &str = "/var/elasticbeanstalk/xray/environment.conf";

#[derive(Deserialize)]
struct EnvironmentConf {
    #[serde(default)]
    deployment_id: Option<serde_json::Number>,
    #[serde(default)]
    version_label: Option<String>,
    #[serde(default)]
    environment_name: Option<String>,
}

/// Not on Beanstalk (no file) is `Ok(None)`; a file that is not the JSON expected is an error.
pub fn detect(host: &Host) -> Result<Option<Found>, String> {
    let Some(text) = host.read(CONF)? else {
        return Ok(None);
    };
    let conf: EnvironmentConf =
        serde_json::from_str(&text).map_err(|e| format!("{CONF} is not the JSON expected: {e}"))?;
    let mut found = Found::default();
    found.string("cloud.provider", "aws");
    found.string("cloud.platform", "aws_elastic_beanstalk");
    if let Some(env) = conf.environment_name {
        found.string("deployment.environment", env);
    }
    if let Some(id) = conf.deployment_id {
        found.string("service.instance.id", id.to_string());
    }
    if let Some(version) = conf.version_label {
        found.string("service.version", version);
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::{FakeNames, Fixture, host_in};

    #[test]
    fn reads_the_xray_environment_file() {
        let fx = Fixture::new().file(
            CONF,
            r#"{"deployment_id": 23, "version_label": "env-version-1234", "environment_name": "BETA"}"#,
        );
        let found = detect(&host_in(&fx, FakeNames::none())).unwrap().unwrap();
        assert_eq!(found.get_str("cloud.provider"), Some("aws"));
        assert_eq!(
            found.get_str("cloud.platform"),
            Some("aws_elastic_beanstalk")
        );
        assert_eq!(found.get_str("deployment.environment"), Some("BETA"));
        assert_eq!(found.get_str("service.instance.id"), Some("23"));
        assert_eq!(found.get_str("service.version"), Some("env-version-1234"));
    }

    #[test]
    fn no_file_is_not_beanstalk_and_a_bad_file_is_an_error() {
        assert!(
            detect(&host_in(&Fixture::new(), FakeNames::none()))
                .unwrap()
                .is_none()
        );
        let fx = Fixture::new().file(CONF, "deployment_id=23");
        let err = detect(&host_in(&fx, FakeNames::none())).unwrap_err();
        assert!(err.contains("environment.conf"), "{err}");
    }
}
