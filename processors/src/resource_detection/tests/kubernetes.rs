//! The detectors that ask the Kubernetes API (`k8s_api`, `kubeadm`, `openshift`, `eks`)
//! against an API server played over TLS on 127.0.0.1, with a service account mounted from a
//! fixture.

use std::sync::Arc;

use super::aws::{Imds, ROLE_SECRET, imds_server, signed_by};
use super::metadata_server::{Answer, CA_PEM, MetadataServer, Seen};
use super::*;
use crate::resource_detection::aws::sigv4::Credentials;
use crate::resource_detection::kubernetes::api::SERVICE_ACCOUNT_DIR;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.test-service-account-token";

/// The pod's service account, as Kubernetes mounts it.
fn service_account() -> Fixture {
    Fixture::new()
        .file(&format!("{SERVICE_ACCOUNT_DIR}/token"), TOKEN)
        .file(
            &format!("{SERVICE_ACCOUNT_DIR}/ca.crt"),
            std::str::from_utf8(CA_PEM).unwrap(),
        )
        .file(&format!("{SERVICE_ACCOUNT_DIR}/namespace"), "observability")
}

fn authorized(req: &Seen) -> bool {
    req.header("authorization") == Some(&format!("Bearer {TOKEN}"))
}

fn unauthorized() -> Answer {
    Answer::new(
        401,
        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
    )
    .header("Content-Type", "application/json")
}

fn node(provider_id: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": "ip-192-168-1-88.eu-west-1.compute.internal", "uid": "2a1b8f6e-4c7d-4f2a-9b1e-7c3d5e6f7a8b"},
        "spec": {"providerID": provider_id}
    })
}

/// An API server with a node, the kube-system namespace, kubeadm's config map, OpenShift's
/// infrastructure, and `/version` as `git_version`.
async fn api_server(git_version: &'static str) -> MetadataServer {
    MetadataServer::start_tls(move |req| {
        if !authorized(req) {
            return unauthorized();
        }
        let body = match req.route() {
            "/version" => serde_json::json!({"major": "1", "minor": "30", "gitVersion": git_version, "platform": "linux/amd64"}),
            "/api/v1/nodes/ip-192-168-1-88.eu-west-1.compute.internal" => {
                node("aws:///eu-west-1a/i-049ca2df511bec762")
            }
            "/api/v1/namespaces/kube-system" => serde_json::json!({
                "kind": "Namespace", "metadata": {"name": "kube-system", "uid": "9c0d1e2f-3a4b-5c6d-7e8f-901234567890"}
            }),
            "/api/v1/namespaces/kube-system/configmaps/kubeadm-config" => serde_json::json!({
                "kind": "ConfigMap",
                "data": {"ClusterConfiguration": "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta3\nclusterName: homelab\nkind: ClusterConfiguration\n"}
            }),
            "/apis/config.openshift.io/v1/infrastructures/cluster/status" => serde_json::json!({
                "apiVersion": "config.openshift.io/v1", "kind": "Infrastructure",
                "status": {
                    "infrastructureName": "ocp-prod-x7k2q",
                    "platformStatus": {"type": "AWS", "aws": {"region": "US-EAST-2"}}
                }
            }),
            _ => return Answer::new(404, r#"{"kind":"Status","message":"not found","code":404}"#),
        };
        Answer::json(body)
    })
    .await
}

fn in_cluster(server: &MetadataServer, sa: &Fixture, extra: &[(&str, &str)]) -> Host {
    let port = server.host_port().rsplit(':').next().unwrap().to_string();
    let mut pairs = vec![
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1".to_string()),
        ("KUBERNETES_SERVICE_PORT", port),
    ];
    pairs.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    host_with(&pairs, None).with_own_root(sa.path())
}

#[tokio::test]
async fn k8s_api_reads_the_node_and_the_cluster_id() {
    let server = api_server("v1.30.4").await;
    let sa = service_account();
    let host = in_cluster(
        &server,
        &sa,
        &[(
            "K8S_NODE_NAME",
            "ip-192-168-1-88.eu-west-1.compute.internal",
        )],
    );
    let found = run_detector(DetectorKind::K8sApi, quick(), host, Endpoints::default())
        .await
        .unwrap();
    assert_eq!(
        found.get_str("k8s.node.name"),
        Some("ip-192-168-1-88.eu-west-1.compute.internal")
    );
    assert_eq!(
        found.get_str("k8s.node.uid"),
        Some("2a1b8f6e-4c7d-4f2a-9b1e-7c3d5e6f7a8b")
    );
    assert_eq!(
        found.get_str("k8s.cluster.uid"),
        Some("9c0d1e2f-3a4b-5c6d-7e8f-901234567890")
    );

    // The deprecated name reads its own block.
    let mut c = quick();
    c.k8snode.node_from_env_var = "MY_NODE".into();
    let host = in_cluster(
        &server,
        &sa,
        &[("MY_NODE", "ip-192-168-1-88.eu-west-1.compute.internal")],
    );
    let found = run_detector(DetectorKind::K8sNode, c, host, Endpoints::default())
        .await
        .unwrap();
    assert!(found.get_str("k8s.node.uid").is_some());
}

#[tokio::test]
async fn k8s_api_needs_the_node_variable_and_a_trusted_server() {
    let server = api_server("v1.30.4").await;
    let sa = service_account();
    let err = run_detector(
        DetectorKind::K8sApi,
        quick(),
        in_cluster(&server, &sa, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("K8S_NODE_NAME"), "{err}");
    // A CA that did not sign the server's certificate: no answer, so nothing found.
    let untrusted = Fixture::new()
        .file(&format!("{SERVICE_ACCOUNT_DIR}/token"), TOKEN)
        .file(
            &format!("{SERVICE_ACCOUNT_DIR}/ca.crt"),
            std::str::from_utf8(include_bytes!("../testdata/client.pem")).unwrap(),
        );
    let found = run_detector(
        DetectorKind::K8sApi,
        quick(),
        in_cluster(&server, &untrusted, &[("K8S_NODE_NAME", "n")]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert!(found.is_empty());
    assert!(
        server.requests().is_empty(),
        "no request passed the handshake"
    );
}

#[tokio::test]
async fn kubeadm_reads_the_cluster_name_from_its_config_map() {
    let server = api_server("v1.30.4").await;
    let sa = service_account();
    let found = run_detector(
        DetectorKind::Kubeadm,
        quick(),
        in_cluster(&server, &sa, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("k8s.cluster.name"), Some("homelab"));
    assert_eq!(
        found.get_str("k8s.cluster.uid"),
        Some("9c0d1e2f-3a4b-5c6d-7e8f-901234567890")
    );
}

#[tokio::test]
async fn kubeconfig_auth_reads_server_ca_and_token_from_the_file() {
    use base64::Engine;
    let server = api_server("v1.30.4").await;
    let ca = base64::engine::general_purpose::STANDARD.encode(CA_PEM);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: other\ncontexts:\n- name: other\n  context: {{cluster: nowhere, user: u}}\n- name: test\n  context:\n    cluster: local\n    user: admin\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\n",
        server.url()
    );
    let fx = Fixture::new().file("/home/u/.kube/config", &kubeconfig);
    let host = host_with(&[("HOME", "/home/u")], None).with_own_root(fx.path());
    let mut c = quick();
    c.kubeadm.auth_type = config::AuthType::KubeConfig;
    c.kubeadm.context = "test".into();
    let found = run_detector(DetectorKind::Kubeadm, c, host, Endpoints::default())
        .await
        .unwrap();
    assert_eq!(found.get_str("k8s.cluster.name"), Some("homelab"));
}

#[tokio::test]
async fn openshift_reads_the_infrastructure() {
    let server = api_server("v1.30.4").await;
    let sa = service_account();
    let found = run_detector(
        DetectorKind::OpenShift,
        quick(),
        in_cluster(&server, &sa, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("cloud.provider"), Some("aws"));
    assert_eq!(found.get_str("cloud.platform"), Some("aws_openshift"));
    assert_eq!(found.get_str("cloud.region"), Some("us-east-2"));
    assert_eq!(found.get_str("k8s.cluster.name"), Some("ocp-prod-x7k2q"));

    // A configured address and token; the CA inline.
    let mut c = quick();
    c.openshift.address = server.url();
    c.openshift.token = TOKEN.into();
    c.openshift.tls.ca_pem = Some(String::from_utf8(CA_PEM.to_vec()).unwrap());
    let found = run_detector(
        DetectorKind::OpenShift,
        c,
        host_with(&[], None),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("k8s.cluster.name"), Some("ocp-prod-x7k2q"));
}

fn eks_cfg() -> ResourceDetectionConfig {
    let mut c = quick();
    for name in [
        "cloud.account.id",
        "cloud.availability_zone",
        "cloud.region",
        "host.id",
        "host.image.id",
        "host.name",
        "host.type",
        "k8s.cluster.name",
    ] {
        c.eks.resource_attributes.0.insert(
            name.into(),
            crate::resource_detection::attributes::AttributeSwitch {
                enabled: Some(true),
            },
        );
    }
    c
}

fn describe_instances(req: &Seen, creds: &Credentials, region: &str) -> Answer {
    if !signed_by(req, creds, region) || !req.query().contains("Action=DescribeInstances") {
        return Answer::new(
            401,
            "<Response><Errors><Error><Code>AuthFailure</Code><Message>x</Message></Error></Errors></Response>",
        );
    }
    Answer::new(
        200,
        r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><reservationSet><item><reservationId>r-1</reservationId><ownerId>123456789012</ownerId><instancesSet><item><instanceId>i-049ca2df511bec762</instanceId><imageId>ami-0eks</imageId><privateDnsName>ip-192-168-1-88.eu-west-1.compute.internal</privateDnsName><instanceType>m5.large</instanceType><tagSet><item><key>aws:eks:cluster-name</key><value>prod-eks</value></item></tagSet></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#,
    )
}

#[tokio::test]
async fn eks_from_instance_metadata_with_the_cluster_name_from_the_ec2_api() {
    let server = api_server("v1.30.4-eks-a737599").await;
    let sa = service_account();
    let imds = imds_server(Arc::new(Imds::default())).await;
    let role = Credentials {
        access_key_id: "ASIAROLEEXAMPLE".into(),
        secret_access_key: ROLE_SECRET.into(),
        session_token: Some("role-session-token".into()),
    };
    let api = MetadataServer::start(move |req| describe_instances(req, &role, "us-west-2")).await;
    let (imds_url, api_url) = (imds.url(), api.url());
    let host = in_cluster(
        &server,
        &sa,
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds_url.as_str()),
            ("AWS_ENDPOINT_URL_EC2", api_url.as_str()),
        ],
    );
    let found = run_detector(
        DetectorKind::Eks,
        eks_cfg(),
        host.clone(),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("cloud.platform"), Some("aws_eks"));
    assert_eq!(found.get_str("cloud.account.id"), Some("123456789012"));
    assert_eq!(found.get_str("host.id"), Some("i-0123456789abcdef0"));
    assert_eq!(found.get_str("k8s.cluster.name"), Some("prod-eks"));

    // By default only the provider and platform, and no metadata read at all.
    let before = imds.requests().len();
    let found = run_detector(DetectorKind::Eks, quick(), host, Endpoints::default())
        .await
        .unwrap();
    assert_eq!(found.keys(), vec!["cloud.provider", "cloud.platform"]);
    assert_eq!(imds.requests().len(), before);
}

#[tokio::test]
async fn eks_without_instance_metadata_uses_the_node_and_the_ec2_api() {
    let server = api_server("v1.30.4-eks-a737599").await;
    let sa = service_account();
    let creds = Credentials {
        access_key_id: "AKIDPODIDENTITY".into(),
        secret_access_key: "pod-secret".into(),
        session_token: None,
    };
    let api = MetadataServer::start(move |req| describe_instances(req, &creds, "eu-west-1")).await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let api_url = api.url();
    let host = in_cluster(
        &server,
        &sa,
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", refused.as_str()),
            ("AWS_ENDPOINT_URL_EC2", api_url.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIDPODIDENTITY"),
            ("AWS_SECRET_ACCESS_KEY", "pod-secret"),
            (
                "K8S_NODE_NAME",
                "ip-192-168-1-88.eu-west-1.compute.internal",
            ),
        ],
    );
    let mut c = eks_cfg();
    c.eks.node_from_env_var = "K8S_NODE_NAME".into();
    let found = run_detector(DetectorKind::Eks, c, host, Endpoints::default())
        .await
        .unwrap();
    assert_eq!(found.get_str("cloud.availability_zone"), Some("eu-west-1a"));
    assert_eq!(found.get_str("cloud.region"), Some("eu-west-1"));
    assert_eq!(found.get_str("host.id"), Some("i-049ca2df511bec762"));
    assert_eq!(found.get_str("cloud.account.id"), Some("123456789012"));
    assert_eq!(found.get_str("host.type"), Some("m5.large"));
    assert_eq!(
        found.get_str("host.name"),
        Some("ip-192-168-1-88.eu-west-1.compute.internal")
    );
    assert_eq!(found.get_str("k8s.cluster.name"), Some("prod-eks"));
}

#[tokio::test]
async fn eks_is_not_claimed_for_other_kubernetes_or_none() {
    let server = api_server("v1.30.4+k3s1").await;
    let sa = service_account();
    let found = run_detector(
        DetectorKind::Eks,
        quick(),
        in_cluster(&server, &sa, &[]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert!(found.is_empty());
    let found = run_detector(
        DetectorKind::Eks,
        quick(),
        host_with(&[], None),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert!(found.is_empty());
}
