//! `lambda`: the AWS Lambda function a collector extension runs beside, from the variables
//! the Lambda runtime sets.

use super::detection::{DetectResult, Found};
use super::host::Host;

const BYTES_PER_MB: i64 = 1024 * 1024;

pub fn detect(host: &Host) -> DetectResult {
    let mut found = Found::default();
    // AWS_REGION and friends are set in many places besides Lambda; only the function name
    // says this is one.
    let Some(function) = host.var("AWS_LAMBDA_FUNCTION_NAME") else {
        return Ok(found);
    };
    found.string("cloud.provider", "aws");
    found.string("cloud.platform", "aws_lambda");
    found.string("faas.name", function);
    if let Some(region) = host.var("AWS_REGION") {
        found.string("cloud.region", region);
    }
    if let Some(version) = host.var("AWS_LAMBDA_FUNCTION_VERSION") {
        found.string("faas.version", version);
    }
    if let Some(stream) = host.var("AWS_LAMBDA_LOG_STREAM_NAME") {
        found.string("faas.instance", stream);
    }
    if let Some(memory) = host.var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") {
        // The runtime gives MB; semantic conventions want bytes.
        match memory
            .parse::<i64>()
            .ok()
            .filter(|mb| *mb >= 0)
            .and_then(|mb| mb.checked_mul(BYTES_PER_MB))
        {
            Some(bytes) => found.int("faas.max_memory", bytes),
            None => tracing::warn!(
                value = %memory,
                "lambda detector: AWS_LAMBDA_FUNCTION_MEMORY_SIZE is not a size in MB; no faas.max_memory"
            ),
        }
    }
    if let Some(group) = host.var("AWS_LAMBDA_LOG_GROUP_NAME") {
        found.strings("aws.log.group.names", vec![group]);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::host_with;
    use sluice_pipeline::proto::common::v1::any_value::Value;

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
        let found = detect(&host).unwrap();
        assert_eq!(found.get_str("cloud.provider"), Some("aws"));
        assert_eq!(found.get_str("cloud.platform"), Some("aws_lambda"));
        assert_eq!(found.get_str("faas.name"), Some("orders"));
        assert_eq!(found.get_str("cloud.region"), Some("eu-west-1"));
        assert_eq!(found.get_str("faas.version"), Some("$LATEST"));
        assert_eq!(
            found.get_str("faas.instance"),
            Some("2026/11/25/[$LATEST]8f5e1b2c3d4e")
        );
        assert_eq!(
            found.get("faas.max_memory"),
            Some(&Value::IntValue(512 * 1_048_576))
        );
        let Some(Value::ArrayValue(groups)) = found.get("aws.log.group.names") else {
            panic!("aws.log.group.names is not an array");
        };
        assert_eq!(groups.values.len(), 1);
        assert_eq!(
            groups.values[0].value,
            Some(Value::StringValue("/aws/lambda/orders".into()))
        );
    }

    #[test]
    fn a_bad_memory_size_costs_only_its_attribute() {
        for bad in ["lots", "-1", "99999999999999999999"] {
            let host = host_with(
                &[
                    ("AWS_LAMBDA_FUNCTION_NAME", "f"),
                    ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", bad),
                ],
                None,
            );
            let found = detect(&host).unwrap();
            assert_eq!(found.get("faas.max_memory"), None, "{bad}");
            assert_eq!(found.get_str("faas.name"), Some("f"));
        }
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
        assert!(detect(&host).unwrap().is_empty());
    }
}
