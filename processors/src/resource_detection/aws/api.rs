//! The EC2 query API calls the AWS detectors make: `DescribeTags` (the instance's tags) and
//! `DescribeInstances` (what EKS needs when the metadata service is out of reach).

use std::time::SystemTime;

use super::sigv4::{self, Credentials, Signable};
use crate::resource_detection::detection::Ctx;
use crate::resource_detection::host::Host;
use crate::resource_detection::http::Request;
use crate::resource_detection::xml;

const EC2_VERSION: &str = "2016-11-15";

/// Where a service's API answers in `region`: `AWS_ENDPOINT_URL_<SERVICE>`, else
/// `AWS_ENDPOINT_URL`, else the regional endpoint, as the AWS SDK resolves them.
pub fn endpoint(host: &Host, env_suffix: &str, service: &str, region: &str) -> String {
    if let Some(url) = host
        .var(&format!("AWS_ENDPOINT_URL_{env_suffix}"))
        .or_else(|| host.var("AWS_ENDPOINT_URL"))
    {
        return url.trim_end_matches('/').to_string();
    }
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{domain}")
}

/// `Code: Message` of an AWS query API error document, else the text itself.
pub fn error_of(text: &str) -> String {
    match (xml::first(text, "Code"), xml::first(text, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text.chars().take(300).collect(),
    }
}

/// One signed GET of the EC2 API.
async fn call(
    ctx: &Ctx,
    credentials: &Credentials,
    region: &str,
    params: Vec<(String, String)>,
) -> Result<String, String> {
    let base = endpoint(&ctx.host, "EC2", "ec2", region);
    let uri: http::Uri = base
        .parse()
        .map_err(|e| format!("EC2 endpoint `{base}`: {e}"))?;
    let host_header = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or_else(|| format!("EC2 endpoint `{base}` has no host"))?;
    let path = match uri.path() {
        "" => "/",
        p => p,
    };
    let signable = Signable {
        method: "GET",
        host: &host_header,
        path,
        query: &params,
        region,
        service: "ec2",
    };
    let mut request = Request::get(
        format!(
            "{}{path}?{}",
            base.trim_end_matches(uri.path()),
            sigv4::canonical_query(&params)
        ),
        ctx.request_timeout(),
    );
    for (name, value) in sigv4::sign(&signable, credentials, SystemTime::now()) {
        request = request.header(name, value);
    }
    let answer = ctx
        .api_client()?
        .send(request)
        .await
        .map_err(|e| format!("EC2 API: {e}"))?;
    let text = answer.text();
    if !answer.is_ok() {
        return Err(format!(
            "EC2 API: HTTP {}: {}",
            answer.status,
            error_of(&text)
        ));
    }
    Ok(text)
}

/// `(key, value)` of every tag of the instance, all pages.
pub async fn describe_tags(
    ctx: &Ctx,
    credentials: &Credentials,
    region: &str,
    instance_id: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut tags = Vec::new();
    let mut next: Option<String> = None;
    // Bounded: an instance has at most 50 tags, a page holds up to 1000.
    for _ in 0..20 {
        let mut params = vec![
            ("Action".to_string(), "DescribeTags".to_string()),
            ("Version".to_string(), EC2_VERSION.to_string()),
            ("Filter.1.Name".to_string(), "resource-id".to_string()),
            ("Filter.1.Value.1".to_string(), instance_id.to_string()),
        ];
        if let Some(token) = &next {
            params.push(("NextToken".to_string(), token.clone()));
        }
        let doc = call(ctx, credentials, region, params).await?;
        for set in xml::all(&doc, "tagSet") {
            tags.extend(items(set));
        }
        next = xml::first(&doc, "nextToken").filter(|t| !t.is_empty());
        if next.is_none() {
            break;
        }
    }
    Ok(tags)
}

/// `key`/`value` of each `<item>` of a `<tagSet>`.
fn items(tag_set: &str) -> Vec<(String, String)> {
    xml::all(tag_set, "item")
        .into_iter()
        .filter_map(|item| {
            let key = xml::first(item, "key")?;
            Some((key, xml::first(item, "value").unwrap_or_default()))
        })
        .collect()
}

/// What `DescribeInstances` says about one instance.
#[derive(Debug, Default, PartialEq)]
pub struct Instance {
    pub owner_id: String,
    pub image_id: String,
    pub instance_type: String,
    pub private_dns_name: String,
    pub tags: Vec<(String, String)>,
}

pub async fn describe_instance(
    ctx: &Ctx,
    credentials: &Credentials,
    region: &str,
    instance_id: &str,
) -> Result<Instance, String> {
    let params = vec![
        ("Action".to_string(), "DescribeInstances".to_string()),
        ("Version".to_string(), EC2_VERSION.to_string()),
        ("InstanceId.1".to_string(), instance_id.to_string()),
    ];
    let doc = call(ctx, credentials, region, params).await?;
    parse_instance(&doc).ok_or_else(|| format!("EC2 API: no instance {instance_id} in the answer"))
}

fn parse_instance(doc: &str) -> Option<Instance> {
    let reservation = xml::all(doc, "reservationSet").first().copied()?;
    let instances = xml::all(reservation, "instancesSet").first().copied()?;
    Some(Instance {
        owner_id: xml::first(reservation, "ownerId").unwrap_or_default(),
        image_id: xml::first(instances, "imageId").unwrap_or_default(),
        instance_type: xml::first(instances, "instanceType").unwrap_or_default(),
        private_dns_name: xml::first(instances, "privateDnsName").unwrap_or_default(),
        tags: xml::all(instances, "tagSet")
            .first()
            .map(|set| items(set))
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_describe_instances() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
  <reservationSet>
    <item>
      <reservationId>r-1234567890abcdef0</reservationId>
      <ownerId>123456789012</ownerId>
      <groupSet/>
      <instancesSet>
        <item>
          <instanceId>i-1234567890abcdef0</instanceId>
          <imageId>ami-bff32ccc</imageId>
          <privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName>
          <instanceType>t2.micro</instanceType>
          <tagSet>
            <item><key>eks:cluster-name</key><value>prod</value></item>
            <item><key>Name</key><value>node &amp; more</value></item>
          </tagSet>
          <networkInterfaceSet><item><privateDnsName>other</privateDnsName></item></networkInterfaceSet>
        </item>
      </instancesSet>
    </item>
  </reservationSet>
</DescribeInstancesResponse>"#;
        let instance = parse_instance(doc).unwrap();
        assert_eq!(instance.owner_id, "123456789012");
        assert_eq!(instance.image_id, "ami-bff32ccc");
        assert_eq!(instance.instance_type, "t2.micro");
        assert_eq!(
            instance.private_dns_name,
            "ip-192-168-1-88.eu-west-1.compute.internal"
        );
        assert_eq!(
            instance.tags,
            vec![
                ("eks:cluster-name".to_string(), "prod".to_string()),
                ("Name".to_string(), "node & more".to_string())
            ]
        );
        assert_eq!(parse_instance("<DescribeInstancesResponse/>"), None);
    }

    #[test]
    fn error_documents_read_as_code_and_message() {
        let doc = "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>x</RequestID></Response>";
        assert_eq!(
            error_of(doc),
            "UnauthorizedOperation: You are not authorized to perform this operation."
        );
    }
}
