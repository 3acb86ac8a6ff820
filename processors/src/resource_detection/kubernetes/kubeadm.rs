//! `kubeadm`: the cluster's name from kubeadm's `kube-system/kubeadm-config` config map, and its
//! id from the `kube-system` namespace.

use super::api::{KubeApi, text};
use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::config::KubeadmConfig;
use crate::resource_detection::detection::{Ctx, DetectResult, Found};

pub const ATTRIBUTES: &[Attr] = &[on("k8s.cluster.name"), on("k8s.cluster.uid")];

pub async fn detect(ctx: &Ctx, cfg: &KubeadmConfig) -> DetectResult {
    let api = match KubeApi::connect(ctx, cfg.auth_type, &cfg.context) {
        Ok(api) => api,
        Err(e) => return ctx.missing(e),
    };
    let switches = ctx.switches();
    let mut found = Found::default();
    if switches.on("k8s.cluster.name") {
        let map = match api
            .get(
                ctx,
                "/api/v1/namespaces/kube-system/configmaps/kubeadm-config",
            )
            .await
        {
            Ok(map) => map,
            Err(e) => {
                return ctx.missing(format!("failed getting the kubeadm-config config map: {e}"));
            }
        };
        found.non_empty("k8s.cluster.name", cluster_name(&map));
    }
    if switches.on("k8s.cluster.uid") {
        match api.get(ctx, "/api/v1/namespaces/kube-system").await {
            Ok(ns) => found.non_empty("k8s.cluster.uid", text(&ns, "/metadata/uid")),
            Err(e) => return ctx.missing(format!("failed getting the kube-system namespace: {e}")),
        }
    }
    Ok(found)
}

/// `data.clusterName`, else `clusterName:` of the `ClusterConfiguration` document kubeadm
/// stores there.
fn cluster_name(map: &serde_json::Value) -> String {
    let direct = text(map, "/data/clusterName");
    if !direct.is_empty() {
        return direct;
    }
    text(map, "/data/ClusterConfiguration")
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix("clusterName:")?;
            Some(
                value
                    .trim()
                    .trim_matches('"')
                    .trim_matches('\'')
                    .to_string(),
            )
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_name_from_either_place() {
        let direct = serde_json::json!({"data": {"clusterName": "alpha"}});
        assert_eq!(cluster_name(&direct), "alpha");
        let nested = serde_json::json!({"data": {"ClusterConfiguration":
            "apiServer: {}\napiVersion: kubeadm.k8s.io/v1beta3\nclusterName: \"beta\"\nkind: ClusterConfiguration\n"}});
        assert_eq!(cluster_name(&nested), "beta");
        assert_eq!(cluster_name(&serde_json::json!({})), "");
    }
}
