//! `k8s`: the pod a sidecar collector runs in, from environment variables that the pod spec
//! fills through the downward API.

use super::detection::{DetectResult, Found};
use super::host::Host;

/// Each attribute with the variables that may carry it, most explicit first: the
/// conventional downward-API names, then the OpenTelemetry Operator's injected ones.
const SOURCES: &[(&str, &[&str])] = &[
    (
        "k8s.pod.name",
        &["K8S_POD_NAME", "OTEL_RESOURCE_ATTRIBUTES_POD_NAME"],
    ),
    (
        "k8s.pod.uid",
        &["K8S_POD_UID", "OTEL_RESOURCE_ATTRIBUTES_POD_UID"],
    ),
    ("k8s.namespace.name", &["K8S_NAMESPACE"]),
    (
        "k8s.node.name",
        &["K8S_NODE_NAME", "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME"],
    ),
];

/// Mounted into every pod that has a service account token: the pod's namespace, for pods
/// whose spec does not set `K8S_NAMESPACE`.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

pub fn detect(host: &Host) -> DetectResult {
    let mut found = Found::default();
    for (key, vars) in SOURCES {
        if let Some(value) = vars.iter().find_map(|v| host.var(v)) {
            found.string(key, value);
        }
    }
    // Only inside a pod, recognised by the variables above: a stray file under the root of
    // a non-Kubernetes machine must not make one up.
    if !found.is_empty() && found.get("k8s.namespace.name").is_none() {
        match host.read_line(NAMESPACE_FILE) {
            Ok(Some(ns)) => found.string("k8s.namespace.name", ns),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "k8s detector: no k8s.namespace.name"),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource_detection::tests::{FakeNames, Fixture, host_with, host_with_root};

    #[test]
    fn downward_api_variables() {
        let host = host_with(
            &[
                ("K8S_POD_NAME", "api-7d9f"),
                ("K8S_POD_UID", "0f2c7e1a-1111-2222-3333-444455556666"),
                ("K8S_NAMESPACE", "shop"),
                ("K8S_NODE_NAME", "node-3"),
            ],
            None,
        );
        let found = detect(&host).unwrap();
        assert_eq!(found.get_str("k8s.pod.name"), Some("api-7d9f"));
        assert_eq!(
            found.get_str("k8s.pod.uid"),
            Some("0f2c7e1a-1111-2222-3333-444455556666")
        );
        assert_eq!(found.get_str("k8s.namespace.name"), Some("shop"));
        assert_eq!(found.get_str("k8s.node.name"), Some("node-3"));
    }

    #[test]
    fn operator_variables_and_the_namespace_file() {
        let fx = Fixture::new().file(NAMESPACE_FILE, "payments\n");
        let host = host_with_root(
            &[
                ("OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "worker-0"),
                ("OTEL_RESOURCE_ATTRIBUTES_POD_UID", "uid-9"),
                ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "node-1"),
            ],
            &fx,
            FakeNames::none(),
        );
        let found = detect(&host).unwrap();
        assert_eq!(found.get_str("k8s.pod.name"), Some("worker-0"));
        assert_eq!(found.get_str("k8s.pod.uid"), Some("uid-9"));
        assert_eq!(found.get_str("k8s.node.name"), Some("node-1"));
        assert_eq!(found.get_str("k8s.namespace.name"), Some("payments"));
    }

    #[test]
    fn the_explicit_family_wins_over_the_operators() {
        let host = host_with(
            &[
                ("K8S_POD_NAME", "explicit"),
                ("OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "operator"),
                ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "node-op"),
                ("K8S_NODE_NAME", " "),
            ],
            None,
        );
        let found = detect(&host).unwrap();
        assert_eq!(found.get_str("k8s.pod.name"), Some("explicit"));
        // A blank variable counts as unset, so the other family answers.
        assert_eq!(found.get_str("k8s.node.name"), Some("node-op"));
    }

    #[test]
    fn finds_nothing_outside_a_pod() {
        // The namespace file alone does not make a pod.
        let fx = Fixture::new().file(NAMESPACE_FILE, "default\n");
        let host = host_with_root(&[("KUBERNETES_SERVICE_HOST", "")], &fx, FakeNames::none());
        assert!(detect(&host).unwrap().is_empty());
        assert!(detect(&host_with(&[], None)).unwrap().is_empty());
    }
}
