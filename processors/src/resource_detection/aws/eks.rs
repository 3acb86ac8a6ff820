//! `eks`: an EKS cluster (the API server's version says `-eks-`), and its node from the
//! instance metadata service, or, when that is out of reach (EKS Auto Mode, pods off the host
//! network), from the node's `providerID` and the EC2 API.

use super::imds::{IdentityDocument, Imds};
use super::{api, credentials};
use crate::resource_detection::attributes::{Attr, off, on};
use crate::resource_detection::config::{AuthType, EksConfig};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};
use crate::resource_detection::kubernetes::api::{KubeApi, text};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    off("cloud.account.id"),
    off("cloud.availability_zone"),
    off("cloud.region"),
    off("host.id"),
    off("host.image.id"),
    off("host.name"),
    off("host.type"),
    off("k8s.cluster.name"),
];

pub async fn detect(ctx: &Ctx, cfg: &EksConfig) -> DetectResult {
    if ctx.host.var("KUBERNETES_SERVICE_HOST").is_none() {
        return ctx.missing("KUBERNETES_SERVICE_HOST is not set: not on Kubernetes");
    }
    let kube = match KubeApi::connect(ctx, AuthType::ServiceAccount, "") {
        Ok(kube) => kube,
        Err(e) => return ctx.missing(format!("unable to identify the EKS environment: {e}")),
    };
    let version = match kube.get(ctx, "/version").await {
        Ok(v) => text(&v, "/gitVersion"),
        Err(e) => return ctx.missing(format!("unable to identify the EKS environment: {e}")),
    };
    if !version.contains("-eks-") {
        return ctx.missing(format!("Kubernetes {version} is not EKS"));
    }
    let mut found = Found::default();
    found.string("cloud.provider", "aws");
    found.string("cloud.platform", "aws_eks");
    let switches = ctx.switches();
    let node_attributes = [
        "cloud.account.id",
        "cloud.availability_zone",
        "cloud.region",
        "host.id",
        "host.image.id",
        "host.name",
        "host.type",
        "k8s.cluster.name",
    ];
    if !switches.any(&node_attributes) {
        return Ok(found);
    }
    let max_backoff = cfg.max_backoff.0;
    let reachable = match Imds::from_env(ctx, cfg.imds_check_max_retry, max_backoff) {
        Some(mut probe) => probe
            .get(ctx, "/latest/meta-data/instance-id")
            .await
            .is_ok(),
        None => false,
    };
    if reachable && let Some(mut imds) = Imds::from_env(ctx, cfg.max_attempts, max_backoff) {
        from_imds(ctx, &mut imds, &mut found).await?;
    } else {
        from_node(ctx, cfg, &kube, &mut found).await?;
    }
    Ok(found)
}

/// The node's attributes from the instance metadata service (and its cluster's name from the
/// EC2 API).
async fn from_imds(ctx: &Ctx, imds: &mut Imds, found: &mut Found) -> Result<(), String> {
    let doc: IdentityDocument = imds
        .get_json(ctx, "/latest/dynamic/instance-identity/document")
        .await
        .map_err(|e| format!("failed getting identity document: {e}"))?;
    let hostname = imds
        .get(ctx, "/latest/meta-data/hostname")
        .await
        .map_err(|e| format!("failed getting hostname: {e}"))?;
    found.string("cloud.account.id", &doc.account_id);
    found.string("cloud.availability_zone", &doc.availability_zone);
    found.string("cloud.region", &doc.region);
    found.string("host.id", &doc.instance_id);
    found.string("host.image.id", &doc.image_id);
    found.string("host.name", hostname.trim());
    found.string("host.type", &doc.instance_type);
    if ctx.switches().on("k8s.cluster.name") {
        let instance = async {
            let creds = credentials::find(ctx, Some(imds), &doc.region).await?;
            api::describe_instance(ctx, &creds, &doc.region, &doc.instance_id).await
        };
        match instance.await {
            Ok(instance) => {
                if let Some(name) = cluster_name(&instance.tags) {
                    found.string("k8s.cluster.name", name);
                }
            }
            Err(e) => tracing::warn!(error = %e, "eks detector: no k8s.cluster.name"),
        }
    }
    Ok(())
}

/// The node's attributes from its `providerID` (`aws:///<zone>/<instance>`) and the EC2 API.
async fn from_node(
    ctx: &Ctx,
    cfg: &EksConfig,
    kube: &KubeApi,
    found: &mut Found,
) -> Result<(), String> {
    if cfg.node_from_env_var.is_empty() {
        return Err("the instance metadata service is out of reach and eks.node_from_env_var is not set: no node attributes".into());
    }
    let node = ctx.host.var(&cfg.node_from_env_var).ok_or_else(|| {
        format!(
            "the instance metadata service is out of reach and {} (eks.node_from_env_var) is not set",
            cfg.node_from_env_var
        )
    })?;
    let answer = kube
        .get(ctx, &format!("/api/v1/nodes/{node}"))
        .await
        .map_err(|e| e.to_string())?;
    let provider_id = text(&answer, "/spec/providerID");
    let (zone, instance_id) = parse_provider_id(&provider_id)
        .ok_or_else(|| format!("node {node}: `{provider_id}` is not an AWS providerID"))?;
    // The zone's last letter off: `us-west-2a` is in `us-west-2`.
    let mut letters = zone.chars();
    letters.next_back();
    let region = letters.as_str().to_string();
    found.string("cloud.availability_zone", zone);
    found.string("cloud.region", &region);
    found.string("host.id", instance_id);
    let instance = async {
        let creds = credentials::find(ctx, None, &region).await?;
        api::describe_instance(ctx, &creds, &region, instance_id).await
    };
    match instance.await {
        Ok(instance) => {
            found.string("cloud.account.id", instance.owner_id);
            found.string("host.image.id", instance.image_id);
            found.string("host.type", instance.instance_type);
            found.string("host.name", instance.private_dns_name);
            if let Some(name) = cluster_name(&instance.tags) {
                found.string("k8s.cluster.name", name);
            }
        }
        Err(e) => tracing::warn!(error = %e, "eks detector: the EC2 API did not describe the node"),
    }
    Ok(())
}

/// `aws:///us-west-2a/i-049ca2df511bec762` to (`us-west-2a`, `i-049ca2df511bec762`).
fn parse_provider_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("aws:///")?;
    let (zone, instance) = rest.split_once('/')?;
    (zone.len() > 1 && instance.starts_with("i-")).then_some((zone, instance))
}

/// The cluster's name from the instance's tags, as EKS tags its nodes.
fn cluster_name(tags: &[(String, String)]) -> Option<String> {
    for (key, value) in tags {
        if key == "aws:eks:cluster-name" || key == "eks:cluster-name" {
            return Some(value.clone());
        }
    }
    tags.iter()
        .find_map(|(k, _)| k.strip_prefix("kubernetes.io/cluster/"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_and_cluster_tags() {
        assert_eq!(
            parse_provider_id("aws:///us-west-2a/i-049ca2df511bec762"),
            Some(("us-west-2a", "i-049ca2df511bec762"))
        );
        assert_eq!(parse_provider_id("gce://p/z/n"), None);
        assert_eq!(parse_provider_id("aws:///x"), None);
        let tags = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cluster_name(&tags(&[("Name", "n"), ("eks:cluster-name", "prod")])).as_deref(),
            Some("prod")
        );
        assert_eq!(
            cluster_name(&tags(&[("kubernetes.io/cluster/staging", "owned")])).as_deref(),
            Some("staging")
        );
        assert_eq!(cluster_name(&tags(&[("Name", "n")])), None);
    }
}
