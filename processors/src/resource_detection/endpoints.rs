//! Where each platform's metadata service answers. These are fixed addresses on the real
//! platforms; environment variables the platforms' own SDKs honour (and, for Azure, one of
//! sluice's) move the main ones, and tests move any of them.

use std::path::PathBuf;

/// Base URLs (no trailing slash) of the metadata services.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// EC2 instance metadata; `AWS_EC2_METADATA_SERVICE_ENDPOINT` overrides it.
    pub ec2_imds: String,
    /// The same over IPv6 (`AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6`).
    pub ec2_imds_ipv6: String,
    /// ECS and EKS Pod Identity container credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`).
    pub ecs_credentials: String,
    /// GCE metadata server host (`host[:port]`); `GCE_METADATA_HOST` overrides it.
    pub gce_metadata_host: String,
    /// Google Compute Engine API, for instance labels and GKE host types.
    pub gce_compute_api: String,
    /// Azure instance metadata; `SLUICE_AZURE_METADATA_ENDPOINT` overrides it.
    pub azure_imds: String,
    /// The Docker daemon's socket; `DOCKER_HOST` overrides it.
    pub docker_socket: PathBuf,
    pub hetzner: String,
    pub akamai: String,
    pub scaleway: String,
    pub digitalocean: String,
    pub oraclecloud: String,
    pub vultr: String,
    pub upcloud: String,
    pub nova: String,
    pub alibaba: String,
    pub tencent: String,
    /// IBM Cloud VPC metadata host (the scheme comes from `ibmcloud_vpc.protocol`).
    pub ibmcloud_vpc_host: String,
    pub ibmcloud_classic: String,
}

const LINK_LOCAL: &str = "http://169.254.169.254";

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            ec2_imds: LINK_LOCAL.into(),
            ec2_imds_ipv6: "http://[fd00:ec2::254]".into(),
            ecs_credentials: "http://169.254.170.2".into(),
            gce_metadata_host: "169.254.169.254".into(),
            gce_compute_api: "https://compute.googleapis.com".into(),
            azure_imds: LINK_LOCAL.into(),
            docker_socket: "/var/run/docker.sock".into(),
            hetzner: LINK_LOCAL.into(),
            akamai: LINK_LOCAL.into(),
            scaleway: "http://169.254.42.42".into(),
            digitalocean: LINK_LOCAL.into(),
            oraclecloud: LINK_LOCAL.into(),
            vultr: LINK_LOCAL.into(),
            upcloud: LINK_LOCAL.into(),
            nova: LINK_LOCAL.into(),
            alibaba: "http://100.100.100.200".into(),
            tencent: "http://metadata.tencentyun.com".into(),
            ibmcloud_vpc_host: "api.metadata.cloud.ibm.com".into(),
            ibmcloud_classic:
                "https://api.service.softlayer.com/rest/v3.1/SoftLayer_Resource_Metadata".into(),
        }
    }
}

#[cfg(test)]
impl Endpoints {
    /// Every service at `url`, for a test whose one server plays them all; anything the test
    /// does not serve answers 404 there instead of reaching out to the real address.
    pub fn all_at(url: &str) -> Endpoints {
        Endpoints {
            ec2_imds: url.into(),
            ec2_imds_ipv6: url.into(),
            ecs_credentials: url.into(),
            gce_metadata_host: url.trim_start_matches("http://").into(),
            gce_compute_api: url.into(),
            azure_imds: url.into(),
            docker_socket: "/nonexistent/sluice-test/docker.sock".into(),
            hetzner: url.into(),
            akamai: url.into(),
            scaleway: url.into(),
            digitalocean: url.into(),
            oraclecloud: url.into(),
            vultr: url.into(),
            upcloud: url.into(),
            nova: url.into(),
            alibaba: url.into(),
            tencent: url.into(),
            ibmcloud_vpc_host: url.trim_start_matches("http://").into(),
            ibmcloud_classic: url.into(),
        }
    }
}
