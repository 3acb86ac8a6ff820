//! `lambda`: the AWS Lambda function a collector extension runs beside, from the variables
//! the Lambda runtime sets.

use super::attributes::{Attr, on};
use super::detection::Found;
use super::host::Host;

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    on("cloud.region"),
    on("faas.name"),
    on("faas.version"),
    on("faas.instance"),
    on("faas.max_memory"),
    on("aws.log.group.names"),
    on("aws.log.stream.names"),
];

/// Not on Lambda is `Ok(None)`, for the caller to turn into "missing".
pub fn detect(host: &Host) -> Result<Option<Found>, String> {
    let mut found = Found::default();
    // AWS_REGION and friends are set in many places besides Lambda; only the function name
    // says this is one.
    let Some(function) = host.var("AWS_LAMBDA_FUNCTION_NAME") else {
        return Ok(None);
    };
    found.string("cloud.provider", "aws");
    found.string("cloud.platform", "aws_lambda");
    if let Some(region) = host.var("AWS_REGION") {
        found.string("cloud.region", region);
    }
    found.string("faas.name", function);
    if let Some(version) = host.var("AWS_LAMBDA_FUNCTION_VERSION") {
        found.string("faas.version", version);
    }
    // The log stream names the instance: Lambda offers nothing closer to an instance id.
    if let Some(stream) = host.var("AWS_LAMBDA_LOG_STREAM_NAME") {
        found.string("faas.instance", stream.clone());
        found.strings("aws.log.stream.names", vec![stream]);
    }
    // As the OTel Collector reports it: the runtime's value, in MB, as a string.
    if let Some(memory) = host.var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") {
        found.string("faas.max_memory", memory);
    }
    if let Some(group) = host.var("AWS_LAMBDA_LOG_GROUP_NAME") {
        found.strings("aws.log.group.names", vec![group]);
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::host_with;

    #[test]
    fn every_variable_maps_to_its_attribute() {
        let host = host_with(
            &[
                ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
                ("AWS_REGION", "eu-west-1"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                (
                    "AWS_LAMBDA_LOG_STREAM_NAME",
                    "2026/11/25/[$LATEST]8f5e1b2c3d4e",
                ),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
                ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/orders"),
            ],
            None,
        );
        let found = detect(&host).unwrap().unwrap();
        assert_eq!(found.get_str("cloud.provider"), Some("aws"));
        assert_eq!(found.get_str("cloud.platform"), Some("aws_lambda"));
        assert_eq!(found.get_str("faas.name"), Some("orders"));
        assert_eq!(found.get_str("cloud.region"), Some("eu-west-1"));
        assert_eq!(found.get_str("faas.version"), Some("$LATEST"));
        assert_eq!(
            found.get_str("faas.instance"),
            Some("2026/11/25/[$LATEST]8f5e1b2c3d4e")
        );
        assert_eq!(found.get_str("faas.max_memory"), Some("512"));
        assert_eq!(
            found.get_strings("aws.log.group.names"),
            Some(vec!["/aws/lambda/orders"])
        );
        assert_eq!(
            found.get_strings("aws.log.stream.names"),
            Some(vec!["2026/11/25/[$LATEST]8f5e1b2c3d4e"])
        );
    }

    #[test]
    fn finds_nothing_without_a_function_name() {
        let host = host_with(
            &[
                ("AWS_REGION", "us-east-1"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ],
            None,
        );
        assert!(detect(&host).unwrap().is_none());
    }
}
