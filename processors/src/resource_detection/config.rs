//! `processors: resource_detection:` — which detectors run, in which order, how long they may
//! take, how their findings meet the attributes a resource already has, and each detector's
//! own block, with the OTel Collector's keys.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer};
use sluice_config::{ComponentConfig, ConfigErrors, Duration};
use sluice_pipeline::config_keys::{ConfigWarnings, NoEffect, problem};

use super::attributes::{Attr, ResourceAttributes};
use super::detectors;

/// The processor's config section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceDetectionConfig {
    /// Detectors to run, in priority order: when two find the same key, the earlier one wins
    /// (default `[env]`).
    pub detectors: Vec<DetectorKind>,
    /// Whether detected values replace attributes the resource already has (default true).
    #[serde(rename = "override")]
    pub override_existing: bool,
    /// Longest time one attempt of a detector (and each request it makes) may take, and, with
    /// `retry.max_elapsed_time: 0`, all of detection (default 5s). Start-up waits no longer.
    pub timeout: Duration,
    /// Runs every detector again this often and applies what it finds (default 0: only once,
    /// at start).
    pub refresh_interval: Duration,
    /// Whether a detector that finds no metadata service (not on its platform) fails instead of
    /// finding nothing; a failure is retried, and stops start-up (default false).
    pub fail_on_missing_metadata: bool,
    /// How failed detector attempts are retried.
    pub retry: RetryConfig,
    /// Deprecated: only these attribute keys are kept from what the detectors found (default:
    /// all).
    pub attributes: Option<Vec<String>>,
    /// HTTP proxy for the calls to cloud APIs (EC2 `DescribeTags`/`DescribeInstances`, STS)
    /// (default none).
    pub proxy_url: Option<String>,
    /// Extra headers on the calls to cloud APIs (default none).
    pub headers: BTreeMap<String, String>,
    /// TLS of the calls to cloud APIs (default: the system's roots).
    pub tls: ClientTlsConfig,
    /// sluice: whether a detector that still fails after its retries stops the collector from
    /// starting (default false: it is logged and skipped).
    pub fail_on_error: bool,
    /// sluice: where the host's `/proc` and `/etc` are found (default `/`); a collector in a
    /// container that should describe the host sets it to where the host's root is mounted.
    pub root_path: String,

    /// `system` detector.
    pub system: SystemConfig,
    /// `env` detector.
    pub env: EnvConfig,
    /// `docker` detector.
    pub docker: AttributesOnly,
    /// `ec2` detector.
    pub ec2: Ec2Config,
    /// `ecs` detector.
    pub ecs: AttributesOnly,
    /// `eks` detector.
    pub eks: EksConfig,
    /// `lambda` detector.
    pub lambda: AttributesOnly,
    /// `elastic_beanstalk` detector (the block has no underscore, as upstream).
    pub elasticbeanstalk: AttributesOnly,
    /// `gcp` detector.
    pub gcp: GcpConfig,
    /// `azure` detector.
    pub azure: AzureConfig,
    /// `aks` detector.
    pub aks: AttributesOnly,
    /// `azurecontainerapps` detector.
    pub azurecontainerapps: AttributesOnly,
    /// `heroku` detector.
    pub heroku: AttributesOnly,
    /// `consul` detector.
    pub consul: ConsulConfig,
    /// `k8s_api` detector.
    pub k8s_api: K8sApiConfig,
    /// `k8snode` detector (the deprecated name of `k8s_api`).
    pub k8snode: K8sApiConfig,
    /// `kubeadm` detector.
    pub kubeadm: KubeadmConfig,
    /// `openshift` detector.
    pub openshift: OpenShiftConfig,
    /// `hetzner` detector.
    pub hetzner: AttributesOnly,
    /// `akamai` detector.
    pub akamai: AttributesOnly,
    /// `scaleway` detector.
    pub scaleway: AttributesOnly,
    /// `digitalocean` detector.
    pub digitalocean: AttributesOnly,
    /// `oraclecloud` detector.
    pub oraclecloud: AttributesOnly,
    /// `vultr` detector.
    pub vultr: WithFailFlag,
    /// `upcloud` detector.
    pub upcloud: WithFailFlag,
    /// `alibaba_ecs` detector.
    pub alibaba_ecs: WithFailFlag,
    /// `tencent_cvm` detector.
    pub tencent_cvm: WithFailFlag,
    /// `nova` detector.
    pub nova: NovaConfig,
    /// `ibmcloud_vpc` detector.
    pub ibmcloud_vpc: IbmCloudVpcConfig,
    /// `ibmcloud_classic` detector.
    pub ibmcloud_classic: AttributesOnly,
}

impl Default for ResourceDetectionConfig {
    fn default() -> Self {
        ResourceDetectionConfig {
            detectors: vec![DetectorKind::Env],
            override_existing: true,
            timeout: Duration(StdDuration::from_secs(5)),
            refresh_interval: Duration(StdDuration::ZERO),
            fail_on_missing_metadata: false,
            retry: RetryConfig::default(),
            attributes: None,
            proxy_url: None,
            headers: BTreeMap::new(),
            tls: ClientTlsConfig::default(),
            fail_on_error: false,
            root_path: "/".into(),
            system: SystemConfig::default(),
            env: EnvConfig::default(),
            docker: AttributesOnly::default(),
            ec2: Ec2Config::default(),
            ecs: AttributesOnly::default(),
            eks: EksConfig::default(),
            lambda: AttributesOnly::default(),
            elasticbeanstalk: AttributesOnly::default(),
            gcp: GcpConfig::default(),
            azure: AzureConfig::default(),
            aks: AttributesOnly::default(),
            azurecontainerapps: AttributesOnly::default(),
            heroku: AttributesOnly::default(),
            consul: ConsulConfig::default(),
            k8s_api: K8sApiConfig::default(),
            k8snode: K8sApiConfig::default(),
            kubeadm: KubeadmConfig::default(),
            openshift: OpenShiftConfig::default(),
            hetzner: AttributesOnly::default(),
            akamai: AttributesOnly::default(),
            scaleway: AttributesOnly::default(),
            digitalocean: AttributesOnly::default(),
            oraclecloud: AttributesOnly::default(),
            vultr: WithFailFlag::default(),
            upcloud: WithFailFlag::default(),
            alibaba_ecs: WithFailFlag::default(),
            tencent_cvm: WithFailFlag::default(),
            nova: NovaConfig::default(),
            ibmcloud_vpc: IbmCloudVpcConfig::default(),
            ibmcloud_classic: AttributesOnly::default(),
        }
    }
}

/// `retry:` — exponential back-off between attempts of a failing detector.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Whether failed attempts are retried (default true).
    pub enabled: bool,
    /// Wait before the first retry (default 1s).
    pub initial_interval: Duration,
    /// Each wait is spread by up to this fraction either way (default 0.5).
    pub randomization_factor: f64,
    /// Each wait is this many times the one before (default 2).
    pub multiplier: f64,
    /// Longest wait (default 30s).
    pub max_interval: Duration,
    /// All attempts together may take this long; 0 (the default) means `timeout` bounds them.
    pub max_elapsed_time: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(1),
            randomization_factor: 0.5,
            multiplier: 2.0,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration(StdDuration::ZERO),
        }
    }
}

/// `tls:` of an HTTPS client, with the OTel Collector's keys that act here.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// For the OpenShift API: plain HTTP instead of TLS (default false). Elsewhere the URL's
    /// scheme decides.
    pub insecure: bool,
    /// Accept any server certificate (default false). For testing only.
    pub insecure_skip_verify: bool,
    /// PEM file of the CAs to trust (default: the system's roots).
    pub ca_file: Option<String>,
    /// The same, inline.
    pub ca_pem: Option<String>,
    /// Trust the system's roots as well as `ca_file`/`ca_pem` (default false).
    pub include_system_ca_certs_pool: bool,
    /// PEM client certificate file; needs a key.
    pub cert_file: Option<String>,
    /// The same, inline.
    pub cert_pem: Option<String>,
    /// PEM client key file.
    pub key_file: Option<String>,
    /// The same, inline.
    pub key_pem: Option<String>,
}

/// A detector block with only `resource_attributes`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttributesOnly {
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

/// A detector block with `resource_attributes` and the deprecated per-detector
/// `fail_on_missing_metadata`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WithFailFlag {
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
    /// Deprecated: the top-level `fail_on_missing_metadata`, for this detector only.
    pub fail_on_missing_metadata: bool,
}

/// `system:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SystemConfig {
    /// Where `host.name` comes from, tried in order until one answers (default `[dns, os]`).
    pub hostname_sources: Vec<HostnameSource>,
    /// Which attributes the detector emits (default `host.name`, `os.type`).
    pub resource_attributes: ResourceAttributes,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            hostname_sources: vec![HostnameSource::Dns, HostnameSource::Os],
            resource_attributes: ResourceAttributes::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HostnameSource {
    /// The kernel's host name.
    Os,
    /// The fully qualified name: `/etc/hosts`, then the resolver's canonical name, then the
    /// reverse lookup of the host's addresses.
    Dns,
    /// The resolver's canonical name of the kernel's host name.
    Cname,
    /// The reverse lookup of the host's own addresses.
    Lookup,
}

/// `env:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EnvConfig {
    /// Only these keys of `OTEL_RESOURCE_ATTRIBUTES` are emitted (default: all).
    pub allow_list: Option<Vec<String>>,
}

/// `ec2:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Ec2Config {
    /// Regular expressions; the instance's tags whose key matches one become `ec2.tag.<key>`
    /// (default none).
    pub tags: Vec<String>,
    /// Read the tags from the instance metadata service instead of the EC2 API (default
    /// false).
    pub tags_from_imds: bool,
    /// Attempts of each metadata request that fails with a server error or no answer
    /// (default 3).
    pub max_attempts: u32,
    /// Longest wait between those attempts (default 20s; the metadata client waits at most
    /// 1s).
    pub max_backoff: Duration,
    /// Deprecated: the top-level `fail_on_missing_metadata`, for this detector only.
    pub fail_on_missing_metadata: bool,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

impl Default for Ec2Config {
    fn default() -> Self {
        Ec2Config {
            tags: Vec::new(),
            tags_from_imds: false,
            max_attempts: 3,
            max_backoff: Duration::from_secs(20),
            fail_on_missing_metadata: false,
            resource_attributes: ResourceAttributes::default(),
        }
    }
}

/// `eks:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EksConfig {
    /// Environment variable with the node's name, for when the instance metadata service is
    /// out of reach (default none).
    pub node_from_env_var: String,
    /// Attempts of the instance metadata reachability check (default 1).
    pub imds_check_max_retry: u32,
    /// Attempts of each metadata request (default 3).
    pub max_attempts: u32,
    /// Longest wait between those attempts (default 20s).
    pub max_backoff: Duration,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

impl Default for EksConfig {
    fn default() -> Self {
        EksConfig {
            node_from_env_var: String::new(),
            imds_check_max_retry: 1,
            max_attempts: 3,
            max_backoff: Duration::from_secs(20),
            resource_attributes: ResourceAttributes::default(),
        }
    }
}

/// `gcp:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GcpConfig {
    /// Regular expressions; the GCE instance's labels whose key matches one become
    /// `gcp.gce.instance.labels.<key>` (default none).
    pub labels: Vec<String>,
    /// On GKE, `host.type` from the Compute API (default false).
    pub gke_host_type: bool,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

/// `azure:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// Regular expressions; the VM's tags whose name matches one become `azure.tag.<name>`
    /// (default none).
    pub tags: Vec<String>,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

/// `consul:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ConsulConfig {
    /// The agent (`host:port` or a URL; default `CONSUL_HTTP_ADDR`, else `127.0.0.1:8500`).
    pub address: String,
    /// Datacenter to ask about (default: the agent's).
    pub datacenter: String,
    /// ACL token (default `CONSUL_HTTP_TOKEN`).
    pub token: String,
    /// File holding the ACL token (default `CONSUL_HTTP_TOKEN_FILE`).
    pub token_file: String,
    /// Consul Enterprise namespace (default none).
    pub namespace: String,
    /// Node metadata keys copied as attributes (the values here are ignored; default none).
    pub meta: BTreeMap<String, serde::de::IgnoredAny>,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

/// How to reach the Kubernetes API.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum AuthType {
    /// No credentials, no certificate verification.
    #[serde(rename = "none")]
    None,
    /// The pod's service account token and CA.
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// A kubeconfig file (`KUBECONFIG`, else `~/.kube/config`).
    #[serde(rename = "kubeConfig")]
    KubeConfig,
    /// Accepted by the OTel Collector but not implemented there either.
    #[serde(rename = "tls")]
    Tls,
}

/// `k8s_api:` / `k8snode:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct K8sApiConfig {
    /// How to authenticate (default `serviceAccount`).
    pub auth_type: AuthType,
    /// With `kubeConfig`, the context to use instead of the current one.
    pub context: String,
    /// Environment variable with the node's name (default `K8S_NODE_NAME`).
    pub node_from_env_var: String,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

impl Default for K8sApiConfig {
    fn default() -> Self {
        K8sApiConfig {
            auth_type: AuthType::ServiceAccount,
            context: String::new(),
            node_from_env_var: "K8S_NODE_NAME".into(),
            resource_attributes: ResourceAttributes::default(),
        }
    }
}

/// `kubeadm:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubeadmConfig {
    /// How to authenticate (default `serviceAccount`).
    pub auth_type: AuthType,
    /// With `kubeConfig`, the context to use instead of the current one.
    pub context: String,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

/// `openshift:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenShiftConfig {
    /// The API server (default `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`).
    pub address: String,
    /// Bearer token (default: the service account's).
    pub token: String,
    /// TLS to the API server (default CA: the service account's `ca.crt`).
    pub tls: ClientTlsConfig,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

/// `nova:`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NovaConfig {
    /// Regular expressions; `meta` keys of `meta_data.json` that match one become
    /// `openstack.nova.meta.<key>` (default none).
    pub labels: Vec<String>,
    /// Deprecated: the top-level `fail_on_missing_metadata`, for this detector only.
    pub fail_on_missing_metadata: bool,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

/// `ibmcloud_vpc:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IbmCloudVpcConfig {
    /// `http` or `https`, as the instance's metadata service is set up (default `http`).
    pub protocol: String,
    /// Which attributes the detector emits.
    pub resource_attributes: ResourceAttributes,
}

impl Default for IbmCloudVpcConfig {
    fn default() -> Self {
        IbmCloudVpcConfig {
            protocol: "http".into(),
            resource_attributes: ResourceAttributes::default(),
        }
    }
}

/// One source of resource attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    Env,
    System,
    Docker,
    /// sluice: the container's id from its cgroup.
    Container,
    /// sluice: the pod, from downward-API variables.
    K8s,
    Lambda,
    Ec2,
    Ecs,
    Eks,
    ElasticBeanstalk,
    Gcp,
    Azure,
    Aks,
    AzureContainerApps,
    Heroku,
    Consul,
    K8sApi,
    /// The deprecated name of `k8s_api`, with its own config block.
    K8sNode,
    Kubeadm,
    OpenShift,
    Dynatrace,
    Hetzner,
    Akamai,
    Scaleway,
    DigitalOcean,
    OracleCloud,
    Vultr,
    Upcloud,
    Nova,
    AlibabaEcs,
    TencentCvm,
    IbmCloudVpc,
    IbmCloudClassic,
}

impl DetectorKind {
    pub const ALL: &'static [DetectorKind] = &[
        DetectorKind::Env,
        DetectorKind::System,
        DetectorKind::Docker,
        DetectorKind::Container,
        DetectorKind::K8s,
        DetectorKind::Lambda,
        DetectorKind::Ec2,
        DetectorKind::Ecs,
        DetectorKind::Eks,
        DetectorKind::ElasticBeanstalk,
        DetectorKind::Gcp,
        DetectorKind::Azure,
        DetectorKind::Aks,
        DetectorKind::AzureContainerApps,
        DetectorKind::Heroku,
        DetectorKind::Consul,
        DetectorKind::K8sApi,
        DetectorKind::K8sNode,
        DetectorKind::Kubeadm,
        DetectorKind::OpenShift,
        DetectorKind::Dynatrace,
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
    ];

    /// Every accepted name, for error messages and suggestions.
    const NAMES: &'static [&'static str] = &[
        "env",
        "system",
        "docker",
        "container",
        "k8s",
        "lambda",
        "ec2",
        "ecs",
        "eks",
        "elastic_beanstalk",
        "gcp",
        "azure",
        "aks",
        "azurecontainerapps",
        "heroku",
        "consul",
        "k8s_api",
        "k8snode",
        "kubeadm",
        "openshift",
        "dynatrace",
        "hetzner",
        "akamai",
        "scaleway",
        "digitalocean",
        "oraclecloud",
        "vultr",
        "upcloud",
        "nova",
        "alibaba_ecs",
        "tencent_cvm",
        "ibmcloud_vpc",
        "ibmcloud_classic",
    ];

    pub fn name(self) -> &'static str {
        let at = DetectorKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default();
        DetectorKind::NAMES[at]
    }

    /// The key of the detector's config block, when it has one.
    pub fn block(self) -> Option<&'static str> {
        match self {
            DetectorKind::Env => Some("env"),
            DetectorKind::System => Some("system"),
            DetectorKind::Docker => Some("docker"),
            DetectorKind::Container | DetectorKind::K8s | DetectorKind::Dynatrace => None,
            DetectorKind::ElasticBeanstalk => Some("elasticbeanstalk"),
            other => Some(other.name()),
        }
    }

    /// The attributes the detector emits, with their defaults (empty: no switches).
    pub fn attributes(self) -> &'static [Attr] {
        detectors::attributes(self)
    }

    /// Its `resource_attributes:` in `cfg`, for detectors that have the block.
    pub fn configured(self, cfg: &ResourceDetectionConfig) -> Option<&ResourceAttributes> {
        Some(match self {
            DetectorKind::System => &cfg.system.resource_attributes,
            DetectorKind::Docker => &cfg.docker.resource_attributes,
            DetectorKind::Lambda => &cfg.lambda.resource_attributes,
            DetectorKind::Ec2 => &cfg.ec2.resource_attributes,
            DetectorKind::Ecs => &cfg.ecs.resource_attributes,
            DetectorKind::Eks => &cfg.eks.resource_attributes,
            DetectorKind::ElasticBeanstalk => &cfg.elasticbeanstalk.resource_attributes,
            DetectorKind::Gcp => &cfg.gcp.resource_attributes,
            DetectorKind::Azure => &cfg.azure.resource_attributes,
            DetectorKind::Aks => &cfg.aks.resource_attributes,
            DetectorKind::AzureContainerApps => &cfg.azurecontainerapps.resource_attributes,
            DetectorKind::Heroku => &cfg.heroku.resource_attributes,
            DetectorKind::Consul => &cfg.consul.resource_attributes,
            DetectorKind::K8sApi => &cfg.k8s_api.resource_attributes,
            DetectorKind::K8sNode => &cfg.k8snode.resource_attributes,
            DetectorKind::Kubeadm => &cfg.kubeadm.resource_attributes,
            DetectorKind::OpenShift => &cfg.openshift.resource_attributes,
            DetectorKind::Hetzner => &cfg.hetzner.resource_attributes,
            DetectorKind::Akamai => &cfg.akamai.resource_attributes,
            DetectorKind::Scaleway => &cfg.scaleway.resource_attributes,
            DetectorKind::DigitalOcean => &cfg.digitalocean.resource_attributes,
            DetectorKind::OracleCloud => &cfg.oraclecloud.resource_attributes,
            DetectorKind::Vultr => &cfg.vultr.resource_attributes,
            DetectorKind::Upcloud => &cfg.upcloud.resource_attributes,
            DetectorKind::AlibabaEcs => &cfg.alibaba_ecs.resource_attributes,
            DetectorKind::TencentCvm => &cfg.tencent_cvm.resource_attributes,
            DetectorKind::Nova => &cfg.nova.resource_attributes,
            DetectorKind::IbmCloudVpc => &cfg.ibmcloud_vpc.resource_attributes,
            DetectorKind::IbmCloudClassic => &cfg.ibmcloud_classic.resource_attributes,
            DetectorKind::Env
            | DetectorKind::Container
            | DetectorKind::K8s
            | DetectorKind::Dynatrace => return None,
        })
    }

    /// Whether the detector's deprecated per-detector `fail_on_missing_metadata` is set.
    pub fn own_fail_flag(self, cfg: &ResourceDetectionConfig) -> bool {
        match self {
            DetectorKind::Ec2 => cfg.ec2.fail_on_missing_metadata,
            DetectorKind::Vultr => cfg.vultr.fail_on_missing_metadata,
            DetectorKind::Upcloud => cfg.upcloud.fail_on_missing_metadata,
            DetectorKind::AlibabaEcs => cfg.alibaba_ecs.fail_on_missing_metadata,
            DetectorKind::TencentCvm => cfg.tencent_cvm.fail_on_missing_metadata,
            DetectorKind::Nova => cfg.nova.fail_on_missing_metadata,
            _ => false,
        }
    }
}

impl<'de> Deserialize<'de> for DetectorKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        // The OTel Collector trims detector names.
        let name = text.trim();
        DetectorKind::NAMES
            .iter()
            .position(|n| *n == name)
            .map(|at| DetectorKind::ALL[at])
            .ok_or_else(|| serde::de::Error::unknown_variant(name, DetectorKind::NAMES))
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Keys of the OTel Collector's HTTP client settings that mean nothing for the few API calls
/// this processor makes.
pub const NO_EFFECT: &[NoEffect] = &[
    NoEffect::new(
        "endpoint",
        "the detectors call fixed metadata endpoints; the OTel Collector does not use it either",
    ),
    NoEffect::new(
        "read_buffer_size",
        "a buffer size of Go's HTTP client; sluice sizes its own buffers",
    ),
    NoEffect::new(
        "write_buffer_size",
        "a buffer size of Go's HTTP client; sluice sizes its own buffers",
    ),
    NoEffect::new(
        "max_idle_conns",
        "a connection-pool knob of Go's HTTP client; detection makes a few requests at start and opens one connection per request",
    ),
    NoEffect::new(
        "max_idle_conns_per_host",
        "a connection-pool knob of Go's HTTP client; detection opens one connection per request",
    ),
    NoEffect::new(
        "max_conns_per_host",
        "a connection-pool knob of Go's HTTP client; detection opens one connection per request",
    ),
    NoEffect::new(
        "idle_conn_timeout",
        "a connection-pool knob of Go's HTTP client; no connection is kept idle",
    ),
    NoEffect::new(
        "disable_keep_alives",
        "no connection is kept alive between requests anyway",
    ),
    NoEffect::new(
        "http2_read_idle_timeout",
        "an HTTP/2 knob of Go's HTTP client; metadata and API calls use HTTP/1.1",
    ),
    NoEffect::new(
        "http2_ping_timeout",
        "an HTTP/2 knob of Go's HTTP client; metadata and API calls use HTTP/1.1",
    ),
    NoEffect::new(
        "force_attempt_http2",
        "an HTTP/2 knob of Go's HTTP client; metadata and API calls use HTTP/1.1",
    ),
    NoEffect::new("compression", "the API calls send no body to compress"),
    NoEffect::new(
        "compression_params",
        "the API calls send no body to compress",
    ),
    NoEffect::new(
        "cookies",
        "each API call stands alone; no cookie is ever sent back",
    ),
    NoEffect::new(
        "auth",
        "the AWS API calls are signed with AWS credentials; authenticator extensions have nothing to add",
    ),
    NoEffect::new(
        "middlewares",
        "HTTP client middleware extensions are not available in sluice",
    ),
    NoEffect::new(
        "tls.min_version",
        "TLS versions are those rustls supports (1.2 and 1.3)",
    ),
    NoEffect::new(
        "tls.max_version",
        "TLS versions are those rustls supports (1.2 and 1.3)",
    ),
    NoEffect::new(
        "tls.cipher_suites",
        "cipher suites are rustls's safe defaults",
    ),
    NoEffect::new(
        "tls.curve_preferences",
        "key exchange groups are rustls's safe defaults",
    ),
    NoEffect::new(
        "tls.reload_interval",
        "certificates are read at each detection, so a refreshed file is picked up anyway",
    ),
    NoEffect::new(
        "tls.server_name_override",
        "each API is verified against its own host name",
    ),
    NoEffect::new("tls.tpm", "keys held in a TPM are not supported"),
    NoEffect::new(
        "openshift.tls.min_version",
        "TLS versions are those rustls supports (1.2 and 1.3)",
    ),
    NoEffect::new(
        "openshift.tls.max_version",
        "TLS versions are those rustls supports (1.2 and 1.3)",
    ),
    NoEffect::new(
        "openshift.tls.cipher_suites",
        "cipher suites are rustls's safe defaults",
    ),
    NoEffect::new(
        "openshift.tls.curve_preferences",
        "key exchange groups are rustls's safe defaults",
    ),
    NoEffect::new(
        "openshift.tls.reload_interval",
        "certificates are read at each detection, so a refreshed file is picked up anyway",
    ),
    NoEffect::new(
        "openshift.tls.server_name_override",
        "the API server is verified against the host name of `address`",
    ),
    NoEffect::new("openshift.tls.tpm", "keys held in a TPM are not supported"),
];

impl ResourceDetectionConfig {
    /// Checks what serde cannot, notes deprecated forms as warnings, and drops repeated
    /// detectors: running one twice could only repeat what its first run found.
    pub fn validate(
        mut self,
        component: &ComponentConfig,
        warnings: &ConfigWarnings,
    ) -> Result<Self, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        if self.retry.enabled && self.timeout.0.is_zero() && self.retry.max_elapsed_time.0.is_zero()
        {
            errors.push(problem(
                component,
                "timeout",
                "timeout 0 with retry enabled and retry.max_elapsed_time 0 would let a detector hold start-up forever; set one of them",
            ));
        }
        if !self.retry.enabled && self.timeout.0.is_zero() {
            warnings.push(problem(
                component,
                "timeout",
                "timeout 0 (no limit) would let a detector hold start-up forever; 5s is used",
            ));
            self.timeout = Duration::from_secs(5);
        }
        let r = &self.retry;
        if r.multiplier < 1.0 || !r.multiplier.is_finite() {
            errors.push(problem(
                component,
                "retry.multiplier",
                "retry.multiplier must be at least 1",
            ));
        }
        if !(0.0..=1.0).contains(&r.randomization_factor) {
            errors.push(problem(
                component,
                "retry.randomization_factor",
                "retry.randomization_factor must be between 0 and 1",
            ));
        }
        if self.root_path.trim().is_empty() {
            errors.push(problem(
                component,
                "root_path",
                "root_path must not be empty (use `/` for this machine's own root)",
            ));
        }
        if self.attributes.is_some() {
            warnings.push(problem(
                component,
                "attributes",
                "deprecated: use each detector's `resource_attributes` instead; only the listed attribute keys are kept",
            ));
        }
        if let Some(proxy) = &self.proxy_url
            && let Err(e) = proxy_uri(proxy)
        {
            errors.push(problem(component, "proxy_url", e));
        }
        for (name, value) in &self.headers {
            if http::header::HeaderName::try_from(name.as_str()).is_err()
                || http::header::HeaderValue::try_from(value.as_str()).is_err()
            {
                errors.push(problem(
                    component,
                    &format!("headers.{name}"),
                    "not a valid HTTP header",
                ));
            }
        }
        for (key, patterns) in [
            ("ec2.tags", &self.ec2.tags),
            ("azure.tags", &self.azure.tags),
            ("gcp.labels", &self.gcp.labels),
            ("nova.labels", &self.nova.labels),
        ] {
            for (i, p) in patterns.iter().enumerate() {
                if let Err(e) = regex::Regex::new(p) {
                    errors.push(problem(
                        component,
                        &format!("{key}.{i}"),
                        format!("`{p}` is not a regular expression: {e}"),
                    ));
                }
            }
        }
        if !matches!(self.ibmcloud_vpc.protocol.as_str(), "http" | "https") {
            errors.push(problem(
                component,
                "ibmcloud_vpc.protocol",
                format!(
                    "invalid protocol `{}`: must be `http` or `https`",
                    self.ibmcloud_vpc.protocol
                ),
            ));
        }
        if self.ec2.max_attempts == 0 {
            errors.push(problem(
                component,
                "ec2.max_attempts",
                "ec2.max_attempts must be at least 1",
            ));
        }
        if self.eks.max_attempts == 0 {
            errors.push(problem(
                component,
                "eks.max_attempts",
                "eks.max_attempts must be at least 1",
            ));
        }
        for kind in DetectorKind::ALL {
            let (Some(block), Some(configured)) = (kind.block(), kind.configured(&self)) else {
                continue;
            };
            let table = kind.attributes();
            for name in configured.unknown(table) {
                let hint = sluice_config::suggest(name, table.iter().map(|a| a.name))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                let known: Vec<&str> = table.iter().map(|a| a.name).collect();
                errors.push(problem(
                    component,
                    &format!("{block}.resource_attributes.{name}"),
                    format!(
                        "`{name}` is not an attribute of the {kind} detector{hint} (it has: {})",
                        known.join(", ")
                    ),
                ));
            }
            if kind.own_fail_flag(&self) {
                warnings.push(problem(
                    component,
                    &format!("{block}.fail_on_missing_metadata"),
                    "deprecated: use the top-level `fail_on_missing_metadata`",
                ));
            }
        }
        if self.detectors.contains(&DetectorKind::K8sNode) {
            warnings.push(problem(
                component,
                "detectors",
                "the `k8snode` detector is deprecated: use `k8s_api`",
            ));
        }
        let mut seen = Vec::new();
        self.detectors.retain(|d| {
            let first = !seen.contains(d);
            seen.push(*d);
            first
        });
        errors.into_result(self)
    }

    /// Whether a detector's failure after its retries stops start-up.
    pub fn failure_stops_start(&self) -> bool {
        self.fail_on_error || self.fail_on_missing_metadata
    }

    /// Whether `kind` reports a missing metadata service as a failure.
    pub fn fails_on_missing(&self, kind: DetectorKind) -> bool {
        self.fail_on_missing_metadata || kind.own_fail_flag(self)
    }
}

/// `proxy_url` as a URI an HTTP client can use.
pub fn proxy_uri(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => Ok(uri),
        _ => Err(format!(
            "`{text}` is not an HTTP proxy URL (http://host:port)"
        )),
    }
}
