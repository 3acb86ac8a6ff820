//! `openshift`: the cluster's cloud and name, from OpenShift's `infrastructures/cluster`.

use super::api::{KubeApi, SERVICE_ACCOUNT_DIR, text};
use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::config::OpenShiftConfig;
use crate::resource_detection::detection::{Ctx, DetectResult, Found};
use crate::resource_detection::http::Client;
use crate::resource_detection::tls;

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    on("cloud.region"),
    on("k8s.cluster.name"),
];

fn api(ctx: &Ctx, cfg: &OpenShiftConfig) -> Result<KubeApi, String> {
    let address = if cfg.address.is_empty() {
        KubeApi::in_cluster_address(ctx).map_err(|e| e.to_string())?
    } else {
        cfg.address.clone()
    };
    let token = if cfg.token.is_empty() {
        KubeApi::service_account_token(ctx).map_err(|e| e.to_string())?
    } else {
        Some(cfg.token.clone())
    };
    let mut client = Client::default();
    // `tls.insecure` means no TLS at all; otherwise the service account's CA unless one is
    // configured.
    if !cfg.tls.insecure && address.starts_with("https://") {
        let default_ca = if cfg.tls.ca_file.is_none() && cfg.tls.ca_pem.is_none() {
            ctx.host
                .read_own(&format!("{SERVICE_ACCOUNT_DIR}/ca.crt"))?
                .map(String::into_bytes)
        } else {
            None
        };
        let options = tls::options_from(&cfg.tls, default_ca)?;
        client = client.with_tls(tls::client_config(&options)?);
    }
    Ok(KubeApi::with(address, client, token))
}

pub async fn detect(ctx: &Ctx, cfg: &OpenShiftConfig) -> DetectResult {
    let api = match api(ctx, cfg) {
        Ok(api) => api,
        Err(e) => return ctx.missing(e),
    };
    let infra = match api
        .get(
            ctx,
            "/apis/config.openshift.io/v1/infrastructures/cluster/status",
        )
        .await
    {
        Ok(infra) => infra,
        Err(e) => return ctx.missing(format!("OpenShift infrastructure: {e}")),
    };
    let status = |p: &str| text(&infra, &format!("/status{p}"));
    let (provider, platform, region) =
        match status("/platformStatus/type").to_ascii_lowercase().as_str() {
            "aws" => ("aws", "aws_openshift", status("/platformStatus/aws/region")),
            "azure" => (
                "azure",
                "azure_openshift",
                status("/platformStatus/azure/cloudName"),
            ),
            "gcp" => ("gcp", "gcp_openshift", status("/platformStatus/gcp/region")),
            "ibmcloud" => (
                "ibm_cloud",
                "ibm_cloud_openshift",
                status("/platformStatus/ibmcloud/location"),
            ),
            "openstack" => ("", "", status("/platformStatus/openstack/cloudName")),
            _ => ("", "", String::new()),
        };
    let mut found = Found::default();
    found.non_empty("k8s.cluster.name", status("/infrastructureName"));
    found.non_empty("cloud.provider", provider);
    found.non_empty("cloud.platform", platform);
    found.non_empty("cloud.region", region.to_ascii_lowercase());
    Ok(found)
}
