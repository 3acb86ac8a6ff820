//! `k8s_api` (formerly `k8snode`): the node the collector runs on, and the cluster's id, from
//! the Kubernetes API.

use super::api::{KubeApi, text};
use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::config::K8sApiConfig;
use crate::resource_detection::detection::{Ctx, DetectResult, Found};

pub const ATTRIBUTES: &[Attr] = &[
    on("k8s.node.name"),
    on("k8s.node.uid"),
    on("k8s.cluster.uid"),
];

pub async fn detect(ctx: &Ctx, cfg: &K8sApiConfig) -> DetectResult {
    let node = ctx.host.var(&cfg.node_from_env_var).ok_or_else(|| {
        format!(
            "node name can't be found: set the environment variable {} to the node's name (the downward API's spec.nodeName)",
            cfg.node_from_env_var
        )
    })?;
    let api = match KubeApi::connect(ctx, cfg.auth_type, &cfg.context) {
        Ok(api) => api,
        Err(e) => return ctx.missing(e),
    };
    let answer = match api.get(ctx, &format!("/api/v1/nodes/{node}")).await {
        Ok(answer) => answer,
        Err(e) => return ctx.missing(format!("failed getting node {node}: {e}")),
    };
    let mut found = Found::default();
    found.non_empty("k8s.node.name", text(&answer, "/metadata/name"));
    found.non_empty("k8s.node.uid", text(&answer, "/metadata/uid"));
    if ctx.switches().on("k8s.cluster.uid") {
        // Without the `namespaces` permission the node attributes still count.
        match api.get(ctx, "/api/v1/namespaces/kube-system").await {
            Ok(ns) => found.non_empty("k8s.cluster.uid", text(&ns, "/metadata/uid")),
            Err(e) => tracing::warn!(error = %e, "k8s_api detector: no k8s.cluster.uid"),
        }
    }
    Ok(found)
}
