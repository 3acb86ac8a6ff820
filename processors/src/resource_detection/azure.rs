//! `azure` (a VM) and `aks` (a node of an AKS cluster), from the Azure Instance Metadata
//! Service. The OTel Collector hard-codes its address; sluice reads
//! `SLUICE_AZURE_METADATA_ENDPOINT` first, so tests (and unusual networks) can move it.

use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::attributes::{Attr, off, on};
use super::config::AzureConfig;
use super::detection::{Ctx, DetectResult, Found};
use super::http::{Client, Request};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    on("cloud.region"),
    on("cloud.account.id"),
    off("cloud.availability_zone"),
    on("host.id"),
    on("host.name"),
    on("azure.vm.name"),
    on("azure.vm.size"),
    on("azure.vm.scaleset.name"),
    on("azure.resourcegroup.name"),
];

pub const AKS_ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    off("k8s.cluster.name"),
];

/// sluice's own override of the metadata service's base URL.
pub const ENDPOINT_VAR: &str = "SLUICE_AZURE_METADATA_ENDPOINT";
/// Exactly what the OTel Collector asks: the compute part, API version 2020-09-01.
const PATH: &str = "/metadata/instance/compute?api-version=2020-09-01&format=json";

/// The compute metadata, field names as the service sends them (and as Go's case-blind
/// decoder also accepted them).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Compute {
    location: String,
    name: String,
    #[serde(alias = "vmID")]
    vm_id: String,
    vm_size: String,
    #[serde(alias = "subscriptionID")]
    subscription_id: String,
    resource_group_name: String,
    vm_scale_set_name: String,
    zone: String,
    os_profile: OsProfile,
    tags_list: Vec<Tag>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OsProfile {
    computer_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Tag {
    name: String,
    value: String,
}

/// The compute metadata, or why there is none.
async fn compute(ctx: &Ctx) -> Result<Compute, String> {
    let base = ctx
        .host
        .var(ENDPOINT_VAR)
        .unwrap_or_else(|| ctx.endpoints.azure_imds.clone());
    let url = format!("{}{PATH}", base.trim_end_matches('/'));
    let request = Request::get(&url, ctx.request_timeout()).header("Metadata", "True");
    let answer = Client::default()
        .with_connect_timeout(Duration::from_secs(1))
        .send(request)
        .await
        .map_err(|e| format!("Azure instance metadata: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "Azure instance metadata: HTTP {} {}",
            answer.status,
            answer.text().chars().take(200).collect::<String>()
        ));
    }
    answer
        .json()
        .map_err(|e| format!("Azure instance metadata: {e}"))
}

pub async fn detect(ctx: &Ctx, cfg: &AzureConfig) -> DetectResult {
    // As upstream: no answer means not on Azure, not a failure.
    let compute = match compute(ctx).await {
        Ok(compute) => compute,
        Err(e) => return ctx.missing(e),
    };
    let mut found = Found::default();
    found.string("cloud.provider", "azure");
    found.string("cloud.platform", "azure_vm");
    found.string("host.name", &compute.os_profile.computer_name);
    found.string("cloud.region", &compute.location);
    found.string("host.id", &compute.vm_id);
    found.string("cloud.account.id", &compute.subscription_id);
    found.string("cloud.availability_zone", &compute.zone);
    found.string("azure.vm.name", &compute.name);
    found.string("azure.vm.size", &compute.vm_size);
    found.string("azure.vm.scaleset.name", &compute.vm_scale_set_name);
    found.string("azure.resourcegroup.name", &compute.resource_group_name);
    if !cfg.tags.is_empty() {
        let patterns: Vec<Regex> = cfg.tags.iter().filter_map(|p| Regex::new(p).ok()).collect();
        for tag in &compute.tags_list {
            if patterns.iter().any(|p| p.is_match(&tag.name)) {
                found.string(&format!("azure.tag.{}", tag.name), &tag.value);
            }
        }
    }
    Ok(found)
}

pub async fn detect_aks(ctx: &Ctx) -> DetectResult {
    if ctx.host.var("KUBERNETES_SERVICE_HOST").is_none() {
        return ctx.missing("KUBERNETES_SERVICE_HOST is not set: not on Kubernetes");
    }
    let compute = match compute(ctx).await {
        Ok(compute) => compute,
        Err(e) => return ctx.missing(e),
    };
    let mut found = Found::default();
    found.string("cloud.provider", "azure");
    found.string("cloud.platform", "azure_aks");
    found.string(
        "k8s.cluster.name",
        cluster_name(&compute.resource_group_name),
    );
    Ok(found)
}

/// AKS puts a cluster's nodes in the resource group `MC_<group>_<cluster>_<location>`: the
/// cluster's name when the group has that form, else the group's whole name (still unique).
fn cluster_name(resource_group: &str) -> String {
    let parts: Vec<&str> = resource_group.split('_').collect();
    if parts.len() == 4 && parts[0].eq_ignore_ascii_case("mc") {
        parts[2].to_string()
    } else {
        resource_group.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aks_cluster_names() {
        assert_eq!(cluster_name("MC_myrg_mycluster_eastus"), "mycluster");
        assert_eq!(cluster_name("mc_rg_c_westeurope"), "c");
        assert_eq!(
            cluster_name("MC_my_rg_my_cluster_eastus"),
            "MC_my_rg_my_cluster_eastus"
        );
        assert_eq!(cluster_name("custom-infra-rg"), "custom-infra-rg");
    }
}
