//! GCP, Azure, Docker, Consul and the smaller clouds' detectors against their metadata
//! services played on 127.0.0.1 (or a Unix socket), answering as the real ones do.

use std::collections::BTreeMap;

use super::metadata_server::{Answer, MetadataServer, Seen};
use super::*;
use crate::resource_detection::detection::Found;

fn switch_on(attrs: &mut crate::resource_detection::attributes::ResourceAttributes, name: &str) {
    attrs.0.insert(
        name.into(),
        crate::resource_detection::attributes::AttributeSwitch {
            enabled: Some(true),
        },
    );
}

// ---- GCP ----

/// A GCE metadata server holding `values` (suffix after `computeMetadata/v1/` to body). Like
/// the real one it refuses requests without `Metadata-Flavor: Google` and marks its answers
/// with it.
async fn gce(values: BTreeMap<&'static str, String>) -> MetadataServer {
    MetadataServer::start(move |req| {
        if req.route() == "/" {
            return Answer::text("computeMetadata/\n").header("Metadata-Flavor", "Google");
        }
        if req.header("Metadata-Flavor") != Some("Google") {
            return Answer::new(403, "Missing required header: Metadata-Flavor")
                .header("Metadata-Flavor", "Google");
        }
        let suffix = req.route().trim_start_matches("/computeMetadata/v1/");
        match values.get(suffix) {
            Some(v) => Answer::text(v.clone()).header("Metadata-Flavor", "Google"),
            None => Answer::not_found().header("Metadata-Flavor", "Google"),
        }
    })
    .await
}

fn gce_values() -> BTreeMap<&'static str, String> {
    [
        ("project/project-id", "my-project"),
        ("instance/id", "4520031799277581759"),
        ("instance/name", "my-vm"),
        (
            "instance/hostname",
            "my-vm.us-central1-a.c.my-project.internal",
        ),
        ("instance/zone", "projects/123456789012/zones/us-central1-a"),
        (
            "instance/machine-type",
            "projects/123456789012/machineTypes/e2-medium",
        ),
        (
            "instance/region",
            "projects/123456789012/regions/us-central1",
        ),
        (
            "instance/attributes/created-by",
            "projects/123456789012/zones/us-central1-a/instanceGroupManagers/web-mig",
        ),
        (
            "instance/service-accounts/default/token",
            r#"{"access_token":"ya29.test","expires_in":3599,"token_type":"Bearer"}"#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect()
}

fn gce_host(server: &MetadataServer, extra: &[(&str, &str)]) -> Host {
    let addr = server.host_port();
    let mut pairs = vec![("GCE_METADATA_HOST", addr.as_str())];
    pairs.extend_from_slice(extra);
    host_with(&pairs, None)
}

#[tokio::test]
async fn gcp_compute_engine_with_labels_from_the_compute_api() {
    let server = gce(gce_values()).await;
    let compute = MetadataServer::start(|req| {
        if req.header("authorization") != Some("Bearer ya29.test") {
            return Answer::new(401, r#"{"error":{"code":401}}"#);
        }
        if req.route() != "/compute/v1/projects/my-project/zones/us-central1-a/instances/my-vm" {
            return Answer::not_found();
        }
        Answer::json(serde_json::json!({
            "name": "my-vm",
            "machineType": "https://www.googleapis.com/compute/v1/projects/my-project/zones/us-central1-a/machineTypes/e2-medium",
            "labels": {"env": "prod", "team": "core", "other": "x"}
        }))
    })
    .await;
    let endpoints = Endpoints {
        gce_compute_api: compute.url(),
        ..Default::default()
    };
    let mut c = quick();
    c.gcp.labels = vec!["^env$".into(), "^te".into()];
    switch_on(&mut c.gcp.resource_attributes, "gcp.gce.instance.hostname");
    let found = run_detector(DetectorKind::Gcp, c, gce_host(&server, &[]), endpoints)
        .await
        .unwrap();
    assert_eq!(found.get_str("cloud.provider"), Some("gcp"));
    assert_eq!(found.get_str("cloud.platform"), Some("gcp_compute_engine"));
    assert_eq!(found.get_str("cloud.account.id"), Some("my-project"));
    assert_eq!(
        found.get_str("cloud.availability_zone"),
        Some("us-central1-a")
    );
    assert_eq!(found.get_str("cloud.region"), Some("us-central1"));
    assert_eq!(
        found.get_str("host.type"),
        Some("projects/123456789012/machineTypes/e2-medium")
    );
    assert_eq!(found.get_str("host.id"), Some("4520031799277581759"));
    assert_eq!(found.get_str("host.name"), Some("my-vm"));
    assert_eq!(
        found.get_str("gcp.gce.instance.hostname"),
        Some("my-vm.us-central1-a.c.my-project.internal")
    );
    // Off by default.
    assert_eq!(found.get_str("gcp.gce.instance.name"), None);
    assert_eq!(
        found.get_str("gcp.gce.instance_group_manager.name"),
        Some("web-mig")
    );
    assert_eq!(found.get_str("gcp.gce.instance.labels.env"), Some("prod"));
    assert_eq!(found.get_str("gcp.gce.instance.labels.team"), Some("core"));
    assert_eq!(found.get_str("gcp.gce.instance.labels.other"), None);
}

#[tokio::test]
async fn gcp_kubernetes_engine() {
    let mut values = gce_values();
    values.insert("instance/attributes/cluster-location", "us-central1".into());
    values.insert("instance/attributes/cluster-name", "prod-gke".into());
    let server = gce(values).await;
    let found = run_detector(
        DetectorKind::Gcp,
        quick(),
        gce_host(&server, &[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        found.get_str("cloud.platform"),
        Some("gcp_kubernetes_engine")
    );
    assert_eq!(found.get_str("cloud.region"), Some("us-central1"));
    assert_eq!(found.get_str("cloud.availability_zone"), None);
    assert_eq!(found.get_str("k8s.cluster.name"), Some("prod-gke"));
    assert_eq!(found.get_str("host.id"), Some("4520031799277581759"));
    assert_eq!(found.get_str("host.name"), Some("my-vm"));
    // Kubernetes but not GKE (no cluster-location): Compute Engine.
    let server = gce(gce_values()).await;
    let found = run_detector(
        DetectorKind::Gcp,
        quick(),
        gce_host(&server, &[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("cloud.platform"), Some("gcp_compute_engine"));
}

#[tokio::test]
async fn gcp_serverless_platforms_from_their_variables() {
    let server = gce(gce_values()).await;
    let run = |vars: Vec<(&'static str, &'static str)>| {
        let host = gce_host(&server, &vars);
        async move {
            run_detector(DetectorKind::Gcp, quick(), host, Endpoints::default())
                .await
                .unwrap()
        }
    };
    let run_service = run(vec![
        ("K_CONFIGURATION", "checkout"),
        ("K_SERVICE", "checkout"),
        ("K_REVISION", "checkout-00042-xyz"),
    ])
    .await;
    assert_eq!(run_service.get_str("cloud.platform"), Some("gcp_cloud_run"));
    assert_eq!(run_service.get_str("faas.name"), Some("checkout"));
    assert_eq!(
        run_service.get_str("faas.version"),
        Some("checkout-00042-xyz")
    );
    assert_eq!(
        run_service.get_str("faas.instance"),
        Some("4520031799277581759")
    );
    assert_eq!(run_service.get_str("faas.id"), Some("4520031799277581759"));
    assert_eq!(run_service.get_str("cloud.region"), Some("us-central1"));
    assert_eq!(run_service.get_str("host.id"), None);

    let job = run(vec![
        ("CLOUD_RUN_JOB", "nightly"),
        ("CLOUD_RUN_EXECUTION", "nightly-ajg89"),
        ("CLOUD_RUN_TASK_INDEX", "0"),
    ])
    .await;
    assert_eq!(job.get_str("cloud.platform"), Some("gcp_cloud_run"));
    assert_eq!(job.get_str("faas.name"), Some("nightly"));
    assert_eq!(
        job.get_str("gcp.cloud_run.job.execution"),
        Some("nightly-ajg89")
    );
    assert_eq!(job.get_str("gcp.cloud_run.job.task_index"), Some("0"));

    let function = run(vec![
        ("FUNCTION_TARGET", "Handle"),
        ("K_SERVICE", "handler"),
        ("K_REVISION", "3"),
    ])
    .await;
    assert_eq!(
        function.get_str("cloud.platform"),
        Some("gcp_cloud_functions")
    );
    assert_eq!(function.get_str("faas.name"), Some("handler"));

    let standard = run(vec![
        ("GAE_ENV", "standard"),
        ("GAE_SERVICE", "default"),
        ("GAE_VERSION", "20260101t000000"),
        ("GAE_INSTANCE", "00c61b117c"),
    ])
    .await;
    assert_eq!(standard.get_str("cloud.platform"), Some("gcp_app_engine"));
    assert_eq!(standard.get_str("faas.instance"), Some("00c61b117c"));
    assert_eq!(
        standard.get_str("cloud.availability_zone"),
        Some("us-central1-a")
    );
    assert_eq!(standard.get_str("cloud.region"), Some("us-central1"));

    let flex = run(vec![("GAE_SERVICE", "api"), ("GAE_VERSION", "v2")]).await;
    assert_eq!(flex.get_str("cloud.platform"), Some("gcp_app_engine"));
    assert_eq!(flex.get_str("faas.name"), Some("api"));
    assert_eq!(flex.get_str("cloud.region"), Some("us-central1"));
}

#[tokio::test]
async fn off_gcp_the_probe_finds_no_google_metadata_server() {
    // Something answers on the metadata address, but not as Google's server does.
    let impostor = MetadataServer::start(|_| Answer::new(200, "hello")).await;
    let endpoints = Endpoints {
        gce_metadata_host: impostor.host_port(),
        ..Default::default()
    };
    let found = run_detector(
        DetectorKind::Gcp,
        quick(),
        host_with(&[], None),
        endpoints.clone(),
    )
    .await
    .unwrap();
    assert!(found.is_empty());
    let mut strict = quick();
    strict.fail_on_missing_metadata = true;
    assert!(
        run_detector(DetectorKind::Gcp, strict, host_with(&[], None), endpoints)
            .await
            .is_err()
    );
    // Only the root was asked; no metadata was requested without the probe's yes.
    assert!(impostor.requests().iter().all(|r| r.route() == "/"));
}

// ---- Azure ----

fn azure_compute() -> serde_json::Value {
    serde_json::json!({
        "azEnvironment": "AzurePublicCloud",
        "location": "westeurope",
        "name": "examplevmname",
        "osProfile": {"adminUsername": "admin", "computerName": "examplevmcomputer"},
        "osType": "Linux",
        "resourceGroupName": "MC_shop-rg_shop-aks_westeurope",
        "subscriptionId": "8d10da13-8125-4ba9-a717-bf7490507b3d",
        "tagsList": [
            {"name": "Department", "value": "IT"},
            {"name": "Environment", "value": "Prod"}
        ],
        "vmId": "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
        "vmScaleSetName": "crpteste9vflji9",
        "vmSize": "Standard_A3",
        "zone": "1"
    })
}

/// Azure IMDS: `Metadata: true` or 400, `X-Forwarded-For` refused, the compute document.
async fn azure_imds() -> MetadataServer {
    MetadataServer::start(|req: &Seen| {
        if req.header("X-Forwarded-For").is_some() {
            return Answer::new(403, r#"{"error":"Forbidden"}"#);
        }
        if !req
            .header("Metadata")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Answer::new(
                400,
                r#"{"error": "Bad request. Required metadata header not specified"}"#,
            )
            .header("Content-Type", "application/json; charset=utf-8");
        }
        if req.path != "/metadata/instance/compute?api-version=2020-09-01&format=json" {
            return Answer::new(404, r#"{"error":"Not found"}"#);
        }
        Answer::json(azure_compute())
    })
    .await
}

#[tokio::test]
async fn azure_reads_the_compute_metadata_with_tags() {
    let server = azure_imds().await;
    let url = server.url();
    let mut c = quick();
    c.azure.tags = vec!["^Dep".into()];
    switch_on(&mut c.azure.resource_attributes, "cloud.availability_zone");
    let found = run_detector(
        DetectorKind::Azure,
        c,
        host_with(&[("SLUICE_AZURE_METADATA_ENDPOINT", url.as_str())], None),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("cloud.provider"), Some("azure"));
    assert_eq!(found.get_str("cloud.platform"), Some("azure_vm"));
    assert_eq!(found.get_str("cloud.region"), Some("westeurope"));
    assert_eq!(
        found.get_str("cloud.account.id"),
        Some("8d10da13-8125-4ba9-a717-bf7490507b3d")
    );
    assert_eq!(found.get_str("cloud.availability_zone"), Some("1"));
    assert_eq!(
        found.get_str("host.id"),
        Some("02aab8a4-74ef-476e-8182-f6d2ba4166a6")
    );
    assert_eq!(found.get_str("host.name"), Some("examplevmcomputer"));
    assert_eq!(found.get_str("azure.vm.name"), Some("examplevmname"));
    assert_eq!(found.get_str("azure.vm.size"), Some("Standard_A3"));
    assert_eq!(
        found.get_str("azure.vm.scaleset.name"),
        Some("crpteste9vflji9")
    );
    assert_eq!(
        found.get_str("azure.resourcegroup.name"),
        Some("MC_shop-rg_shop-aks_westeurope")
    );
    assert_eq!(found.get_str("azure.tag.Department"), Some("IT"));
    assert_eq!(found.get_str("azure.tag.Environment"), None);
}

#[tokio::test]
async fn aks_needs_kubernetes_and_parses_the_cluster_name() {
    let server = azure_imds().await;
    let url = server.url();
    let mut c = quick();
    switch_on(&mut c.aks.resource_attributes, "k8s.cluster.name");
    let found = run_detector(
        DetectorKind::Aks,
        c.clone(),
        host_with(
            &[
                ("SLUICE_AZURE_METADATA_ENDPOINT", url.as_str()),
                ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
            ],
            None,
        ),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("cloud.platform"), Some("azure_aks"));
    assert_eq!(found.get_str("k8s.cluster.name"), Some("shop-aks"));
    let found = run_detector(
        DetectorKind::Aks,
        c,
        host_with(&[("SLUICE_AZURE_METADATA_ENDPOINT", url.as_str())], None),
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert!(found.is_empty());
}

#[tokio::test]
async fn off_azure_nothing_is_found() {
    let not_azure = MetadataServer::start(|_| Answer::not_found()).await;
    let endpoints = Endpoints {
        azure_imds: not_azure.url(),
        ..Default::default()
    };
    let found = run_detector(
        DetectorKind::Azure,
        quick(),
        host_with(&[], None),
        endpoints,
    )
    .await
    .unwrap();
    assert!(found.is_empty());
}

// ---- Docker ----

#[tokio::test]
async fn docker_asks_the_daemon_over_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("docker.sock");
    let daemon = MetadataServer::start_unix(&socket, |req| match req.route() {
        "/info" => {
            Answer::json(serde_json::json!({"Name": "docker-host-1", "OSType": "linux", "ID": "x"}))
        }
        "/containers/c0ffee123456/json" => Answer::json(serde_json::json!({
            "Id": "c0ffee123456aaaa", "Name": "/otel-collector",
            "Image": "sha256:4a5b6c", "Config": {"Image": "otel/collector:1.0"}
        })),
        "/images/sha256:4a5b6c/json" => Answer::json(
            serde_json::json!({"RepoTags": ["otel/collector:1.0", "otel/collector:latest"]}),
        ),
        _ => Answer::new(404, r#"{"message":"page not found"}"#),
    })
    .await;
    let endpoints = Endpoints {
        docker_socket: socket.clone(),
        ..Default::default()
    };
    let mut c = quick();
    for name in [
        "container.name",
        "container.image.name",
        "container.image.tags",
    ] {
        switch_on(&mut c.docker.resource_attributes, name);
    }
    let host = host_with(&[], Some(Arc::new(FakeNames::named("c0ffee123456"))));
    let found = run_detector(DetectorKind::Docker, c, host, endpoints)
        .await
        .unwrap();
    assert_eq!(found.get_str("host.name"), Some("docker-host-1"));
    assert_eq!(found.get_str("os.type"), Some("linux"));
    assert_eq!(found.get_str("container.name"), Some("/otel-collector"));
    assert_eq!(found.get_str("container.image.name"), Some("sha256:4a5b6c"));
    assert_eq!(found.get_str("container.image.id"), None, "off by default");
    assert_eq!(
        found.get_strings("container.image.tags"),
        Some(vec!["otel/collector:1.0", "otel/collector:latest"])
    );
    drop(daemon);
    // DOCKER_HOST moves the socket; no daemon there means nothing found.
    let host = host_with(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")], None);
    let found = run_detector(DetectorKind::Docker, quick(), host, Endpoints::default())
        .await
        .unwrap();
    assert!(found.is_empty());
}

// ---- Consul ----

#[tokio::test]
async fn consul_reads_the_local_agent_with_token_and_datacenter() {
    let agent = MetadataServer::start(|req| {
        if req.header("X-Consul-Token") != Some("s3cr3t") {
            return Answer::new(403, "ACL not found");
        }
        if req.route() != "/v1/agent/self" || req.query() != "dc=dc2&ns=team" {
            return Answer::not_found();
        }
        Answer::json(serde_json::json!({
            "Config": {"Datacenter": "dc2", "NodeName": "node-7", "NodeID": "b6f3c1a0-1111-2222-3333-444455556666"},
            "Meta": {"rack": "r12", "secret": "hidden"}
        }))
    })
    .await;
    let fx = Fixture::new().file("/etc/consul/token", "s3cr3t\n");
    let mut c = quick();
    c.consul.address = agent.host_port();
    c.consul.datacenter = "dc2".into();
    c.consul.namespace = "team".into();
    c.consul.token_file = "/etc/consul/token".into();
    c.consul.meta.insert("rack".into(), serde::de::IgnoredAny);
    let host = host_with(&[], None).with_own_root(fx.path());
    let found = run_detector(DetectorKind::Consul, c, host, Endpoints::default())
        .await
        .unwrap();
    assert_eq!(found.get_str("host.name"), Some("node-7"));
    assert_eq!(found.get_str("cloud.region"), Some("dc2"));
    assert_eq!(
        found.get_str("host.id"),
        Some("b6f3c1a0-1111-2222-3333-444455556666")
    );
    assert_eq!(found.get_str("rack"), Some("r12"));
    assert_eq!(found.get_str("secret"), None);

    // The environment's address and token when the config has none.
    let url = agent.url();
    let mut c = quick();
    c.consul.datacenter = "dc2".into();
    c.consul.namespace = "team".into();
    let host = host_with(
        &[
            ("CONSUL_HTTP_ADDR", url.as_str()),
            ("CONSUL_HTTP_TOKEN", "s3cr3t"),
        ],
        None,
    );
    let found = run_detector(DetectorKind::Consul, c, host, Endpoints::default())
        .await
        .unwrap();
    assert_eq!(found.get_str("host.name"), Some("node-7"));
}

// ---- the smaller clouds ----

async fn one_cloud(
    kind: DetectorKind,
    handler: impl Fn(&Seen) -> Answer + Send + Sync + 'static,
) -> (Found, MetadataServer) {
    let server = MetadataServer::start(handler).await;
    let found = run_detector(
        kind,
        quick(),
        host_with(&[], None),
        Endpoints::all_at(&server.url()),
    )
    .await
    .unwrap();
    (found, server)
}

#[tokio::test]
async fn hetzner() {
    let (found, _s) = one_cloud(DetectorKind::Hetzner, |req| match req.route() {
        "/hetzner/v1/metadata/hostname" => Answer::text("srv-123"),
        "/hetzner/v1/metadata/instance-id" => Answer::text("987654321"),
        "/hetzner/v1/metadata/region" => Answer::text("eu-central"),
        "/hetzner/v1/metadata/availability-zone" => Answer::text("nbg1-dc3"),
        _ => Answer::not_found(),
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("hetzner"));
    assert_eq!(found.get_str("cloud.platform"), None, "off by default");
    assert_eq!(found.get_str("host.id"), Some("987654321"));
    assert_eq!(found.get_str("host.name"), Some("srv-123"));
    assert_eq!(found.get_str("cloud.region"), Some("eu-central"));
    assert_eq!(found.get_str("cloud.availability_zone"), Some("nbg1-dc3"));
}

#[tokio::test]
async fn akamai_uses_a_metadata_token() {
    let (found, server) = one_cloud(DetectorKind::Akamai, |req| {
        match (req.method.as_str(), req.route()) {
            ("PUT", "/v1/token")
                if req.header("X-Metadata-Token-Expiry-Seconds") == Some("3600") =>
            {
                Answer::text("tok-1")
            }
            ("GET", "/v1/instance") if req.header("X-Metadata-Token") == Some("tok-1") => {
                Answer::json(serde_json::json!({
                    "id": 1234, "label": "linode-1", "region": "us-ord", "type": "g6-nanode-1",
                    "host_uuid": "h", "tags": [], "account_euuid": "A1B2C3",
                    "image": {"id": "linode/ubuntu24.04", "label": "Ubuntu 24.04 LTS"}
                }))
            }
            ("GET", _) => Answer::new(401, r#"{"errors":[{"reason":"Unauthorized"}]}"#),
            _ => Answer::not_found(),
        }
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("akamai_cloud"));
    assert_eq!(
        found.get_str("cloud.platform"),
        Some("akamai_cloud_compute")
    );
    assert_eq!(found.get_str("cloud.account.id"), Some("A1B2C3"));
    assert_eq!(found.get_str("host.id"), Some("1234"));
    assert_eq!(found.get_str("host.image.name"), Some("Ubuntu 24.04 LTS"));
    assert_eq!(found.get_str("host.type"), Some("g6-nanode-1"));
    assert_eq!(server.count("/v1/token"), 1);
}

#[tokio::test]
async fn scaleway() {
    let (found, _s) = one_cloud(DetectorKind::Scaleway, |req| {
        if req.path != "/conf?format=json" {
            return Answer::not_found();
        }
        Answer::json(serde_json::json!({
            "id": "11111111-2222-3333-4444-555555555555", "name": "scw-box",
            "commercial_type": "DEV1-S", "organization": "org-1",
            "location": {"zone_id": "fr-par-1"},
            "image": {"id": "img-1", "name": "Ubuntu 24.04"}
        }))
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("scaleway_cloud"));
    assert_eq!(found.get_str("cloud.region"), Some("fr-par"));
    assert_eq!(found.get_str("cloud.availability_zone"), Some("fr-par-1"));
    assert_eq!(found.get_str("host.type"), Some("DEV1-S"));
}

#[tokio::test]
async fn digitalocean() {
    let (found, _s) = one_cloud(DetectorKind::DigitalOcean, |req| match req.route() {
        "/metadata/v1.json" => Answer::json(serde_json::json!({
            "droplet_id": 2756294, "hostname": "sample-droplet", "region": "nyc3"
        })),
        _ => Answer::not_found(),
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("digitalocean"));
    assert_eq!(found.get_str("host.id"), Some("2756294"));
    assert_eq!(found.get_str("host.name"), Some("sample-droplet"));
    assert_eq!(found.get_str("cloud.region"), Some("nyc3"));
}

#[tokio::test]
async fn oraclecloud_probes_then_reads() {
    let (found, server) = one_cloud(DetectorKind::OracleCloud, |req| {
        if req.header("Authorization") != Some("Bearer Oracle") {
            return Answer::new(401, "Unauthorized");
        }
        if req.route() != "/opc/v2/instance/" {
            return Answer::not_found();
        }
        Answer::json(serde_json::json!({
            "id": "ocid1.instance.oc1.phx.abc", "displayName": "oci-vm", "shape": "VM.Standard.E4.Flex",
            "canonicalRegionName": "us-phoenix-1", "availabilityDomain": "PHX-AD-1",
            "metadata": {"oke-cluster-display-name": "oke-prod", "realm": "oc1"}
        }))
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("oracle_cloud"));
    assert_eq!(found.get_str("cloud.region"), Some("us-phoenix-1"));
    assert_eq!(
        found.get_str("cloud.resource_id"),
        Some("ocid1.instance.oc1.phx.abc")
    );
    assert_eq!(found.get_str("k8s.cluster.name"), Some("oke-prod"));
    assert_eq!(found.get_str("oracle_cloud.realm"), Some("oc1"));
    assert_eq!(server.requests()[0].method, "HEAD");
}

#[tokio::test]
async fn vultr_tells_a_stranger_from_its_own_failure() {
    let (found, _s) = one_cloud(DetectorKind::Vultr, |req| match req.route() {
        "/v1.json" => Answer::json(serde_json::json!({
            "hostname": "vultr-guest", "instanceid": "12345", "instance-v2-id": "a7898453-dd6b-4e2b-a3a4-0d6b8d2b9c5c",
            "region": {"regioncode": "EWR"}
        })),
        _ => Answer::not_found(),
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("vultr"));
    assert_eq!(
        found.get_str("host.id"),
        Some("a7898453-dd6b-4e2b-a3a4-0d6b8d2b9c5c")
    );
    assert_eq!(found.get_str("cloud.region"), Some("ewr"));
    let (found, _s) = one_cloud(DetectorKind::Vultr, |_| Answer::new(403, "no")).await;
    assert!(found.is_empty());
    let server = MetadataServer::start(|_| Answer::new(503, "down")).await;
    let err = run_detector(
        DetectorKind::Vultr,
        quick(),
        host_with(&[], None),
        Endpoints::all_at(&server.url()),
    )
    .await
    .unwrap_err();
    assert!(err.contains("503"), "{err}");
}

#[tokio::test]
async fn upcloud() {
    let (found, _s) = one_cloud(DetectorKind::Upcloud, |req| match req.route() {
        "/metadata/v1.json" => Answer::json(serde_json::json!({
            "cloud_name": "upcloud", "hostname": "up-1", "instance_id": "00abcdef-1", "region": "fi-hel1"
        })),
        _ => Answer::not_found(),
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("upcloud"));
    assert_eq!(found.get_str("cloud.region"), Some("fi-hel1"));
    assert_eq!(found.get_str("host.id"), Some("00abcdef-1"));
}

#[tokio::test]
async fn nova_with_meta_labels() {
    let server = MetadataServer::start(|req| match req.route() {
        "/openstack/latest/meta_data.json" => Answer::json(serde_json::json!({
            "uuid": "d8e02d56-2648-49a3-bf97-6be8f1204f38", "hostname": "nova-1.novalocal",
            "name": "nova-1", "availability_zone": "nova", "project_id": "p-1",
            "meta": {"role": "web", "owner": "x"}
        })),
        "/latest/meta-data/instance-type" => Answer::text("m1.small"),
        _ => Answer::not_found(),
    })
    .await;
    let mut c = quick();
    c.nova.labels = vec!["^role$".into()];
    let found = run_detector(
        DetectorKind::Nova,
        c,
        host_with(&[], None),
        Endpoints::all_at(&server.url()),
    )
    .await
    .unwrap();
    assert_eq!(found.get_str("cloud.provider"), Some("openstack"));
    assert_eq!(found.get_str("cloud.platform"), Some("openstack_nova"));
    assert_eq!(found.get_str("host.type"), Some("m1.small"));
    assert_eq!(found.get_str("cloud.account.id"), Some("p-1"));
    assert_eq!(found.get_str("openstack.nova.meta.role"), Some("web"));
    assert_eq!(found.get_str("openstack.nova.meta.owner"), None);
}

#[tokio::test]
async fn alibaba_ecs_uses_its_metadata_token() {
    let (found, _s) = one_cloud(DetectorKind::AlibabaEcs, |req| {
        if req.route() == "/latest/api/token" {
            return if req.method == "PUT"
                && req.header("X-aliyun-ecs-metadata-token-ttl-seconds") == Some("21600")
            {
                Answer::text("ali-token")
            } else {
                Answer::new(400, "bad")
            };
        }
        if req.header("X-aliyun-ecs-metadata-token") != Some("ali-token") {
            return Answer::new(401, "Unauthorized");
        }
        let value = match req.route().trim_start_matches("/latest/meta-data/") {
            "hostname" => "iZbp1",
            "image-id" => "ubuntu_22_04_x64",
            "instance-id" => "i-bp1",
            "instance/instance-type" => "ecs.g6.large",
            "owner-account-id" => "1234567890",
            "region-id" => "cn-hangzhou",
            "zone-id" => "cn-hangzhou-i",
            _ => return Answer::not_found(),
        };
        Answer::text(value)
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("alibaba_cloud"));
    assert_eq!(found.get_str("cloud.platform"), Some("alibaba_cloud_ecs"));
    assert_eq!(found.get_str("cloud.region"), Some("cn-hangzhou"));
    assert_eq!(found.get_str("host.type"), Some("ecs.g6.large"));
}

#[tokio::test]
async fn tencent_cvm() {
    let (found, _s) = one_cloud(DetectorKind::TencentCvm, |req| {
        let value = match req.route().trim_start_matches("/latest/meta-data/") {
            "instance-name" => "cvm-1",
            "instance/image-id" => "img-1",
            "instance-id" => "ins-1",
            "instance/instance-type" => "S5.MEDIUM4",
            "app-id" => "1250000000",
            "placement/region" => "ap-guangzhou",
            "placement/zone" => "ap-guangzhou-3",
            _ => return Answer::not_found(),
        };
        Answer::text(value)
    })
    .await;
    assert_eq!(found.get_str("cloud.provider"), Some("tencent_cloud"));
    assert_eq!(found.get_str("cloud.account.id"), Some("1250000000"));
    assert_eq!(found.get_str("host.name"), Some("cvm-1"));
}

#[tokio::test]
async fn ibm_cloud_vpc_and_classic() {
    let (found, _s) = one_cloud(DetectorKind::IbmCloudVpc, |req| {
        match (req.method.as_str(), req.route()) {
            ("PUT", "/identity/v1/token") if req.header("Metadata-Flavor") == Some("ibm") => {
                Answer::json(serde_json::json!({"access_token": "ibm-tok", "expires_in": 300}))
            }
            ("GET", "/metadata/v1/instance")
                if req.header("Authorization") == Some("Bearer ibm-tok") =>
            {
                Answer::json(serde_json::json!({
                    "id": "0717_abc", "name": "vsi-1",
                    "crn": "crn:v1:bluemix:public:is:us-south-1:a/acct123::instance:0717_abc",
                    "profile": {"name": "bx2-2x8"}, "zone": {"name": "us-south-1"},
                    "image": {"id": "r006-img", "name": "ibm-ubuntu"}
                }))
            }
            _ => Answer::new(401, "no"),
        }
    })
    .await;
    assert_eq!(found.get_str("cloud.platform"), Some("ibm_cloud.vpc"));
    assert_eq!(found.get_str("cloud.region"), Some("us-south"));
    assert_eq!(found.get_str("cloud.account.id"), Some("acct123"));
    assert_eq!(found.get_str("host.type"), Some("bx2-2x8"));

    let (found, _s) = one_cloud(DetectorKind::IbmCloudClassic, |req| {
        let value = match req.route().trim_start_matches('/') {
            "getId.txt" => "12345",
            "getHostname.txt" => "sl-host",
            "getDatacenter.txt" => "dal13",
            "getAccountId.txt" => "987",
            "getGlobalIdentifier.txt" => "uuid-1",
            _ => return Answer::not_found(),
        };
        Answer::text(value)
    })
    .await;
    assert_eq!(found.get_str("cloud.platform"), Some("ibm_cloud.classic"));
    assert_eq!(found.get_str("cloud.availability_zone"), Some("dal13"));
    assert_eq!(found.get_str("cloud.resource_id"), Some("uuid-1"));
}

#[tokio::test]
async fn every_network_detector_finds_nothing_where_nothing_answers() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    for kind in [
        DetectorKind::Hetzner,
        DetectorKind::Akamai,
        DetectorKind::Scaleway,
        DetectorKind::DigitalOcean,
        DetectorKind::OracleCloud,
        DetectorKind::Vultr,
        DetectorKind::Upcloud,
        DetectorKind::Nova,
        DetectorKind::AlibabaEcs,
        DetectorKind::TencentCvm,
        DetectorKind::IbmCloudVpc,
        DetectorKind::IbmCloudClassic,
        DetectorKind::Azure,
        DetectorKind::Gcp,
        DetectorKind::Docker,
    ] {
        let found = run_detector(
            kind,
            quick(),
            host_with(&[], None),
            Endpoints::all_at(&refused),
        )
        .await
        .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(found.is_empty(), "{kind}: {:?}", found.keys());
        let mut strict = quick();
        strict.fail_on_missing_metadata = true;
        assert!(
            run_detector(
                kind,
                strict,
                host_with(&[], None),
                Endpoints::all_at(&refused)
            )
            .await
            .is_err(),
            "{kind} with fail_on_missing_metadata"
        );
    }
}

// ---- env-only platforms through the processor ----

#[tokio::test]
async fn heroku_and_container_apps_and_their_switches() {
    let host = host_with(
        &[
            ("HEROKU_DYNO_ID", "dyno-1"),
            ("HEROKU_APP_NAME", "shop"),
            ("CONTAINER_APP_NAME", "checkout"),
        ],
        None,
    );
    let mut c = quick();
    c.heroku.resource_attributes.0.insert(
        "service.name".into(),
        crate::resource_detection::attributes::AttributeSwitch {
            enabled: Some(false),
        },
    );
    let heroku = run_detector(DetectorKind::Heroku, c, host.clone(), Endpoints::default())
        .await
        .unwrap();
    assert_eq!(heroku.get_str("service.instance.id"), Some("dyno-1"));
    assert_eq!(heroku.get_str("service.name"), None);
    let apps = run_detector(
        DetectorKind::AzureContainerApps,
        quick(),
        host,
        Endpoints::default(),
    )
    .await
    .unwrap();
    assert_eq!(apps.get_str("service.name"), Some("checkout"));
}
