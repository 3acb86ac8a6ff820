//! The AWS detectors against metadata services and APIs played on 127.0.0.1, answering as
//! the real ones do.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::metadata_server::{Answer, MetadataServer, Seen};
use super::*;
use crate::resource_detection::aws::sigv4::{self, Credentials, Signable};

pub const IDENTITY_DOCUMENT: &str = r#"{
  "accountId" : "123456789012",
  "architecture" : "x86_64",
  "availabilityZone" : "us-west-2b",
  "billingProducts" : null,
  "devpayProductCodes" : null,
  "marketplaceProductCodes" : null,
  "imageId" : "ami-5fb8c835",
  "instanceId" : "i-0123456789abcdef0",
  "instanceType" : "t2.micro",
  "kernelId" : null,
  "pendingTime" : "2016-11-19T16:32:11Z",
  "privateIp" : "10.158.112.84",
  "ramdiskId" : null,
  "region" : "us-west-2",
  "version" : "2017-09-30"
}"#;

pub const ROLE_SECRET: &str = "roleSecretKey/EXAMPLE+1";

/// How the played instance metadata service behaves.
#[derive(Default)]
pub struct Imds {
    /// Tokens handed out and still valid.
    pub tokens: Mutex<HashSet<String>>,
    pub issued: AtomicUsize,
    /// Answer token requests without the TTL header (a broken proxy in between).
    pub no_ttl_header: AtomicBool,
    /// Refuse token requests with 403, and serve IMDSv1 (no token needed).
    pub v1_only: AtomicBool,
    /// Server errors still to answer `instance-id` with.
    pub failing_probes: AtomicUsize,
    /// Expire every token after this many metadata reads (0: never).
    pub expire_after: AtomicUsize,
    pub reads: AtomicUsize,
    /// Tags in metadata enabled (`InstanceMetadataTags=enabled`).
    pub tags_enabled: AtomicBool,
}

impl Imds {
    pub fn answer(&self, req: &Seen) -> Answer {
        const TTL: &str = "X-aws-ec2-metadata-token-ttl-seconds";
        if req.route() == "/latest/api/token" {
            if req.method != "PUT" {
                return Answer::new(405, "Method Not Allowed");
            }
            if req.header("X-Forwarded-For").is_some() || self.v1_only.load(Ordering::SeqCst) {
                return Answer::new(403, "Forbidden");
            }
            let Some(ttl) = req.header(TTL).and_then(|t| t.parse::<u32>().ok()) else {
                return Answer::new(400, "Bad Request");
            };
            if !(1..=21600).contains(&ttl) {
                return Answer::new(400, "Bad Request");
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst);
            let token = format!("AQAEAJT-token-{n}==");
            self.tokens.lock().unwrap().insert(token.clone());
            let answer = Answer::text(token);
            return if self.no_ttl_header.load(Ordering::SeqCst) {
                answer
            } else {
                answer.header("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", &ttl.to_string())
            };
        }
        if req.method != "GET" {
            return Answer::new(405, "Method Not Allowed");
        }
        if !self.v1_only.load(Ordering::SeqCst) {
            let valid = req
                .header("X-aws-ec2-metadata-token")
                .is_some_and(|t| self.tokens.lock().unwrap().contains(t));
            if !valid {
                return Answer::new(401, "Unauthorized");
            }
            let reads = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
            let expire = self.expire_after.load(Ordering::SeqCst);
            if expire > 0 && reads.is_multiple_of(expire) {
                self.tokens.lock().unwrap().clear();
            }
        }
        match req.route() {
            "/latest/meta-data/instance-id" => {
                if self
                    .failing_probes
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Answer::new(500, "Internal Server Error");
                }
                Answer::text("i-0123456789abcdef0")
            }
            "/latest/dynamic/instance-identity/document" => {
                Answer::new(200, IDENTITY_DOCUMENT).header("Content-Type", "application/json")
            }
            "/latest/meta-data/hostname" => {
                Answer::text("ip-10-158-112-84.us-west-2.compute.internal")
            }
            "/latest/meta-data/tags/instance" if self.tags_enabled.load(Ordering::SeqCst) => {
                Answer::text("Name\nteam\ncost-center")
            }
            "/latest/meta-data/tags/instance/Name" if self.tags_enabled.load(Ordering::SeqCst) => {
                Answer::text("web-1")
            }
            "/latest/meta-data/tags/instance/team" if self.tags_enabled.load(Ordering::SeqCst) => {
                Answer::text("payments")
            }
            "/latest/meta-data/iam/security-credentials/" => Answer::text("web-role"),
            "/latest/meta-data/iam/security-credentials/web-role" => {
                Answer::json(serde_json::json!({
                    "Code": "Success",
                    "LastUpdated": "2026-01-01T00:00:00Z",
                    "Type": "AWS-HMAC",
                    "AccessKeyId": "ASIAROLEEXAMPLE",
                    "SecretAccessKey": ROLE_SECRET,
                    "Token": "role-session-token",
                    "Expiration": "2099-01-01T00:00:00Z"
                }))
            }
            _ => Answer::not_found(),
        }
    }
}

pub async fn imds_server(state: Arc<Imds>) -> MetadataServer {
    MetadataServer::start(move |req| state.answer(req)).await
}

fn ec2_host(imds: &MetadataServer, extra: &[(&str, &str)]) -> Host {
    let url = imds.url();
    let mut pairs = vec![("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str())];
    pairs.extend_from_slice(extra);
    host_with(&pairs, None)
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Whether `req` carries a valid SigV4 signature by `creds` for the EC2 service in `region`:
/// the played API recomputes it from what arrived on the wire.
pub fn signed_by(req: &Seen, creds: &Credentials, region: &str) -> bool {
    let query: Vec<(String, String)> = req
        .query()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let Some(date) = req.header("x-amz-date") else {
        return false;
    };
    // The signing time, back from the header.
    let when = parse_amz_date(date);
    let expected = sigv4::sign(
        &Signable {
            method: &req.method,
            host: req.header("host").unwrap_or_default(),
            path: req.route(),
            query: &query,
            region,
            service: "ec2",
        },
        creds,
        when,
    );
    let expected_auth = &expected
        .iter()
        .find(|(k, _)| *k == "authorization")
        .unwrap()
        .1;
    req.header("authorization") == Some(expected_auth.as_str())
        && req.header("x-amz-security-token") == creds.session_token.as_deref()
}

fn parse_amz_date(text: &str) -> std::time::SystemTime {
    // YYYYMMDDTHHMMSSZ; days counted from the epoch with the civil-to-days algorithm.
    let n = |a: usize, b: usize| text[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(4, 6), n(6, 8));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(9, 11) * 3600 + n(11, 13) * 60 + n(13, 15);
    std::time::UNIX_EPOCH + StdDuration::from_secs(secs as u64)
}

fn describe_tags_page(items: &[(&str, &str)], next: Option<&str>) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\n   <requestId>7a62c49f-347e-4fc4-9331-6e8eEXAMPLE</requestId>\n   <tagSet>\n",
    );
    for (k, v) in items {
        xml.push_str(&format!(
            "      <item>\n         <resourceId>i-0123456789abcdef0</resourceId>\n         <resourceType>instance</resourceType>\n         <key>{k}</key>\n         <value>{v}</value>\n      </item>\n"
        ));
    }
    xml.push_str("   </tagSet>\n");
    if let Some(token) = next {
        xml.push_str(&format!("   <nextToken>{token}</nextToken>\n"));
    }
    xml.push_str("</DescribeTagsResponse>");
    xml
}

fn ec2_cfg(tags: &[&str], from_imds: bool) -> ResourceDetectionConfig {
    let mut c = quick();
    c.ec2.tags = tags.iter().map(|t| t.to_string()).collect();
    c.ec2.tags_from_imds = from_imds;
    c
}

#[tokio::test]
async fn ec2_reads_the_instance_through_an_imdsv2_session() {
    let state = Arc::new(Imds::default());
    let imds = imds_server(state.clone()).await;
    let found = run_detector(
        DetectorKind::Ec2,
        quick(),
        ec2_host(&imds, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("cloud.provider"), Some("aws"));
    assert_eq!(found.get_str("cloud.platform"), Some("aws_ec2"));
    assert_eq!(found.get_str("cloud.region"), Some("us-west-2"));
    assert_eq!(found.get_str("cloud.account.id"), Some("123456789012"));
    assert_eq!(found.get_str("cloud.availability_zone"), Some("us-west-2b"));
    assert_eq!(found.get_str("host.id"), Some("i-0123456789abcdef0"));
    assert_eq!(found.get_str("host.image.id"), Some("ami-5fb8c835"));
    assert_eq!(found.get_str("host.type"), Some("t2.micro"));
    assert_eq!(
        found.get_str("host.name"),
        Some("ip-10-158-112-84.us-west-2.compute.internal")
    );
    let seen = imds.requests();
    // One session: one token, sent with every read, asked for with the SDK's TTL.
    assert_eq!(seen.iter().filter(|r| r.method == "PUT").count(), 1);
    assert_eq!(
        seen[0].header("X-aws-ec2-metadata-token-ttl-seconds"),
        Some("300")
    );
    assert!(
        seen.iter()
            .filter(|r| r.method == "GET")
            .all(|r| r.header("x-aws-ec2-metadata-token") == Some("AQAEAJT-token-0=="))
    );
}

#[tokio::test]
async fn ec2_switches_and_tags_from_instance_metadata() {
    let state = Arc::new(Imds::default());
    state.tags_enabled.store(true, Ordering::SeqCst);
    let imds = imds_server(state).await;
    let mut c = ec2_cfg(&["^Name$", "^te"], true);
    c.ec2.resource_attributes.0.insert(
        "host.name".into(),
        crate::resource_detection::attributes::AttributeSwitch {
            enabled: Some(false),
        },
    );
    let found = run_detector(
        DetectorKind::Ec2,
        c,
        ec2_host(&imds, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("ec2.tag.Name"), Some("web-1"));
    assert_eq!(found.get_str("ec2.tag.team"), Some("payments"));
    assert_eq!(found.get_str("ec2.tag.cost-center"), None);
    assert_eq!(found.get_str("host.name"), None);
    // Only the matching tags' values were read.
    assert_eq!(imds.count("/latest/meta-data/tags/instance/cost-center"), 0);
}

#[tokio::test]
async fn ec2_tags_in_metadata_switched_off_cost_only_the_tags() {
    let imds = imds_server(Arc::new(Imds::default())).await;
    let found = run_detector(
        DetectorKind::Ec2,
        ec2_cfg(&[".*"], true),
        ec2_host(&imds, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("host.id"), Some("i-0123456789abcdef0"));
    assert!(!found.keys().iter().any(|k| k.starts_with("ec2.tag.")));
}

#[tokio::test]
async fn ec2_tags_from_the_ec2_api_signed_with_the_instance_role() {
    let imds = imds_server(Arc::new(Imds::default())).await;
    let role = Credentials {
        access_key_id: "ASIAROLEEXAMPLE".into(),
        secret_access_key: ROLE_SECRET.into(),
        session_token: Some("role-session-token".into()),
    };
    let api = MetadataServer::start(move |req| {
        if !signed_by(req, &role, "us-west-2") {
            return Answer::new(
                401,
                "<Response><Errors><Error><Code>AuthFailure</Code><Message>bad signature</Message></Error></Errors></Response>",
            );
        }
        let q = req.query();
        if !q.contains("Action=DescribeTags") || !q.contains("Filter.1.Value.1=i-0123456789abcdef0")
        {
            return Answer::new(400, "<Response/>");
        }
        let page = if q.contains("NextToken=page2") {
            describe_tags_page(&[("team", "payments"), ("owner", "a&amp;b")], None)
        } else {
            describe_tags_page(&[("Name", "web-1"), ("cost-center", "42")], Some("page2"))
        };
        Answer::new(200, page).header("Content-Type", "text/xml;charset=UTF-8")
    })
    .await;
    let api_url = api.url();
    let found = run_detector(
        DetectorKind::Ec2,
        ec2_cfg(&["^Name$", "^team$", "^owner$"], false),
        ec2_host(&imds, &[("AWS_ENDPOINT_URL_EC2", api_url.as_str())]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("ec2.tag.Name"), Some("web-1"));
    assert_eq!(found.get_str("ec2.tag.team"), Some("payments"));
    assert_eq!(found.get_str("ec2.tag.owner"), Some("a&b"));
    assert_eq!(found.get_str("ec2.tag.cost-center"), None);
    assert_eq!(api.requests().len(), 2, "both pages were read");
}

#[tokio::test]
async fn ec2_api_refusal_keeps_the_instance_attributes() {
    let imds = imds_server(Arc::new(Imds::default())).await;
    let api = MetadataServer::start(|_| {
        Answer::new(403, "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>no ec2:DescribeTags</Message></Error></Errors></Response>")
    })
    .await;
    let api_url = api.url();
    let found = run_detector(
        DetectorKind::Ec2,
        ec2_cfg(&[".*"], false),
        ec2_host(
            &imds,
            &[
                ("AWS_ENDPOINT_URL_EC2", api_url.as_str()),
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ],
        ),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("host.id"), Some("i-0123456789abcdef0"));
    assert!(!found.keys().iter().any(|k| k.starts_with("ec2.tag.")));
    // Environment credentials came first: the role was not asked for.
    assert_eq!(imds.count("/latest/meta-data/iam/security-credentials/"), 0);
    assert!(
        api.requests()[0]
            .header("authorization")
            .unwrap()
            .contains("Credential=AKIDENV/")
    );
}

#[tokio::test]
async fn ec2_falls_back_to_imdsv1_when_tokens_are_refused() {
    let state = Arc::new(Imds::default());
    state.v1_only.store(true, Ordering::SeqCst);
    let imds = imds_server(state).await;
    let found = run_detector(
        DetectorKind::Ec2,
        quick(),
        ec2_host(&imds, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("host.id"), Some("i-0123456789abcdef0"));
    assert!(
        imds.requests()
            .iter()
            .filter(|r| r.method == "GET")
            .all(|r| r.header("x-aws-ec2-metadata-token").is_none())
    );
}

#[tokio::test]
async fn a_token_without_its_ttl_header_is_not_used_and_imdsv2_then_refuses() {
    let state = Arc::new(Imds::default());
    state.no_ttl_header.store(true, Ordering::SeqCst);
    let imds = imds_server(state).await;
    let found = run_detector(
        DetectorKind::Ec2,
        quick(),
        ec2_host(&imds, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert!(found.is_empty(), "{:?}", found.keys());
    // The read went out without the token, and the service said 401.
    let reads: Vec<_> = imds
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(!reads.is_empty());
    assert!(
        reads
            .iter()
            .all(|r| r.header("x-aws-ec2-metadata-token").is_none())
    );
}

#[tokio::test]
async fn an_expired_token_is_replaced_and_the_read_repeated() {
    let state = Arc::new(Imds::default());
    state.expire_after.store(2, Ordering::SeqCst);
    let imds = imds_server(state.clone()).await;
    let found = run_detector(
        DetectorKind::Ec2,
        quick(),
        ec2_host(&imds, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        found.get_str("host.name"),
        Some("ip-10-158-112-84.us-west-2.compute.internal")
    );
    assert!(state.issued.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn server_errors_are_retried_up_to_max_attempts() {
    let state = Arc::new(Imds::default());
    state.failing_probes.store(2, Ordering::SeqCst);
    let imds = imds_server(state.clone()).await;
    let found = run_detector(
        DetectorKind::Ec2,
        quick(),
        ec2_host(&imds, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("host.id"), Some("i-0123456789abcdef0"));
    assert_eq!(imds.count("/latest/meta-data/instance-id"), 3);

    // One attempt only: the first server error means no metadata.
    state.failing_probes.store(1, Ordering::SeqCst);
    let mut c = quick();
    c.ec2.max_attempts = 1;
    let found = run_detector(
        DetectorKind::Ec2,
        c,
        ec2_host(&imds, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert!(found.is_empty());
}

fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[tokio::test]
async fn off_ec2_nothing_is_found_unless_metadata_must_be_there() {
    let url = refused_url();
    let host = || host_with(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", url.as_str())], None);
    let found = run_detector(DetectorKind::Ec2, quick(), host(), Endpoints::default())
        .await
        .unwrap();
    assert!(found.is_empty());
    let mut strict = quick();
    strict.fail_on_missing_metadata = true;
    let err = run_detector(DetectorKind::Ec2, strict, host(), Endpoints::default())
        .await
        .unwrap_err();
    assert!(err.contains("metadata unavailable"), "{err}");
    // The SDK's switch turns the metadata service off entirely.
    let disabled = host_with(&[("AWS_EC2_METADATA_DISABLED", "true")], None);
    let found = run_detector(DetectorKind::Ec2, quick(), disabled, Endpoints::default())
        .await
        .unwrap();
    assert!(found.is_empty());
}

// ---- ECS ----

fn task_json(launch_type: &str) -> serde_json::Value {
    serde_json::json!({
        "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
        "TaskARN": "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c",
        "Family": "curltest",
        "Revision": "26",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "LaunchType": launch_type,
        "AvailabilityZone": "us-west-2d",
        "Containers": [
            {
                "DockerId": "own-container",
                "Name": "otel-collector",
                "Type": "NORMAL",
                "KnownStatus": "RUNNING",
                "LogDriver": "awslogs",
                "LogOptions": {"awslogs-group": "/ecs/collector", "awslogs-region": "us-west-2", "awslogs-stream": "ecs/collector/1"}
            },
            {
                "DockerId": "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66",
                "Name": "curl",
                "Type": "NORMAL",
                "KnownStatus": "RUNNING",
                "LogDriver": "awslogs",
                "LogOptions": {"awslogs-group": "/ecs/metadata", "awslogs-region": "us-west-2", "awslogs-stream": "ecs/curl/8f03e41243824aea923aca126495f665"}
            },
            {
                "DockerId": "pause",
                "Name": "~internal~ecs~pause",
                "Type": "CNI_PAUSE",
                "KnownStatus": "RUNNING"
            }
        ]
    })
}

async fn tmde(launch_type: &'static str) -> MetadataServer {
    MetadataServer::start(move |req| match req.route() {
        "/v4/abc/task" => Answer::json(task_json(launch_type)),
        "/v4/abc" => {
            Answer::json(serde_json::json!({"DockerId": "own-container", "Name": "otel-collector"}))
        }
        _ => Answer::new(404, "404 page not found"),
    })
    .await
}

#[tokio::test]
async fn ecs_reads_the_task_metadata_endpoint() {
    let server = tmde("FARGATE").await;
    let base = format!("{}/v4/abc", server.url());
    let host = host_with(&[("ECS_CONTAINER_METADATA_URI_V4", base.as_str())], None);
    let found = run_detector(DetectorKind::Ecs, quick(), host, Endpoints::default())
        .await
        .unwrap();
    assert_eq!(found.get_str("cloud.provider"), Some("aws"));
    assert_eq!(found.get_str("cloud.platform"), Some("aws_ecs"));
    assert_eq!(found.get_str("cloud.region"), Some("us-west-2"));
    assert_eq!(found.get_str("cloud.account.id"), Some("111122223333"));
    assert_eq!(found.get_str("cloud.availability_zone"), Some("us-west-2d"));
    assert_eq!(
        found.get_str("aws.ecs.cluster.arn"),
        Some("arn:aws:ecs:us-west-2:111122223333:cluster/default")
    );
    assert_eq!(
        found.get_str("aws.ecs.task.id"),
        Some("158d1c8083dd49d6b527399fd6414f5c")
    );
    assert_eq!(found.get_str("aws.ecs.task.family"), Some("curltest"));
    assert_eq!(found.get_str("aws.ecs.task.revision"), Some("26"));
    assert_eq!(found.get_str("aws.ecs.launchtype"), Some("fargate"));
    // The collector's own container's logs are not the data's.
    assert_eq!(
        found.get_strings("aws.log.group.names"),
        Some(vec!["/ecs/metadata"])
    );
    assert_eq!(
        found.get_strings("aws.log.group.arns"),
        Some(vec![
            "arn:aws:logs:us-west-2:111122223333:log-group:/ecs/metadata"
        ])
    );
    assert_eq!(
        found.get_strings("aws.log.stream.arns"),
        Some(vec![
            "arn:aws:logs:us-west-2:111122223333:log-group:/ecs/metadata:log-stream:ecs/curl/8f03e41243824aea923aca126495f665"
        ])
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.header("content-type") == Some("application/json"))
    );
}

#[tokio::test]
async fn ecs_outside_ecs_and_failing_endpoints() {
    let found = run_detector(
        DetectorKind::Ecs,
        quick(),
        host_with(&[], None),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert!(found.is_empty());
    let not_a_url = host_with(&[("ECS_CONTAINER_METADATA_URI_V4", "not a url")], None);
    assert!(
        run_detector(DetectorKind::Ecs, quick(), not_a_url, Endpoints::default())
            .await
            .unwrap()
            .is_empty()
    );
    // On ECS (the variable says so) a failing endpoint is an error.
    let server = MetadataServer::start(|_| Answer::new(500, "boom")).await;
    let base = format!("{}/v4/abc", server.url());
    let err = run_detector(
        DetectorKind::Ecs,
        quick(),
        host_with(&[("ECS_CONTAINER_METADATA_URI_V4", base.as_str())], None),
        Endpoints::default(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("500"), "{err}");
    // v3: the older variable, a cluster given by name.
    let v3 = MetadataServer::start(|req| match req.route() {
        "/v3/x/task" => Answer::json(serde_json::json!({
            "Cluster": "default",
            "TaskARN": "arn:aws:ecs:eu-west-1:999:task/5b3f1c2d",
            "Family": "f", "Revision": "1"
        })),
        "/v3/x" => Answer::json(serde_json::json!({"DockerId": "me"})),
        _ => Answer::not_found(),
    })
    .await;
    let base = format!("{}/v3/x", v3.url());
    let found = run_detector(
        DetectorKind::Ecs,
        quick(),
        host_with(&[("ECS_CONTAINER_METADATA_URI", base.as_str())], None),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        found.get_str("aws.ecs.cluster.arn"),
        Some("arn:aws:ecs:eu-west-1:999:cluster/default")
    );
    assert_eq!(found.get_str("aws.ecs.task.id"), Some("5b3f1c2d"));
    assert_eq!(found.get_str("aws.ecs.launchtype"), None);
    assert_eq!(found.get("aws.log.group.names"), None);
}

// ---- Lambda, Elastic Beanstalk: switches through the processor ----

#[tokio::test]
async fn lambda_switches() {
    let host = host_with(
        &[
            ("AWS_LAMBDA_FUNCTION_NAME", "orders"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ],
        None,
    );
    let mut c = quick();
    c.lambda.resource_attributes.0.insert(
        "faas.max_memory".into(),
        crate::resource_detection::attributes::AttributeSwitch {
            enabled: Some(false),
        },
    );
    let found = run_detector(DetectorKind::Lambda, c, host, Endpoints::default())
        .await
        .unwrap();
    assert_eq!(found.get_str("faas.name"), Some("orders"));
    assert_eq!(found.get("faas.max_memory"), None);
    let mut strict = quick();
    strict.fail_on_missing_metadata = true;
    assert!(
        run_detector(
            DetectorKind::Lambda,
            strict,
            host_with(&[], None),
            Endpoints::default()
        )
        .await
        .is_err()
    );
}
