//! `gcp`: which Google Cloud platform the collector runs on (GKE, Cloud Functions, Cloud Run
//! services and jobs, App Engine standard and flexible, Compute Engine) and its attributes,
//! from the metadata server and the variables each platform sets, as Google's detector
//! tells them apart.

use std::time::Duration;

use regex::Regex;

use super::attributes::{Attr, off, on};
use super::config::GcpConfig;
use super::detection::{Ctx, DetectResult, Found};
use super::http::{Client, Request};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    on("cloud.account.id"),
    on("cloud.region"),
    on("cloud.availability_zone"),
    on("host.id"),
    on("host.name"),
    on("host.type"),
    on("k8s.cluster.name"),
    on("faas.name"),
    on("faas.version"),
    on("faas.instance"),
    on("faas.id"),
    on("gcp.cloud_run.job.execution"),
    on("gcp.cloud_run.job.task_index"),
    off("gcp.gce.instance.hostname"),
    off("gcp.gce.instance.name"),
    on("gcp.gce.instance_group_manager.name"),
    on("gcp.gce.instance_group_manager.zone"),
    on("gcp.gce.instance_group_manager.region"),
];

const LABEL_PREFIX: &str = "gcp.gce.instance.labels.";
const FLAVOR: &str = "Metadata-Flavor";

/// The metadata server.
struct Metadata {
    host: String,
    client: Client,
}

impl Metadata {
    /// The value at `computeMetadata/v1/<suffix>`, trimmed; `None` when the server says it is
    /// not defined (404). Server errors are retried once, as Google's client does.
    async fn get(&self, ctx: &Ctx, suffix: &str) -> Result<Option<String>, String> {
        let url = format!("http://{}/computeMetadata/v1/{suffix}", self.host);
        let mut last = String::new();
        for _ in 0..2 {
            let request = Request::get(&url, ctx.request_timeout()).header(FLAVOR, "Google");
            match self.client.send(request).await {
                Ok(answer) if answer.is_ok() => return Ok(Some(answer.text().trim().to_string())),
                Ok(answer) if answer.status == 404 => return Ok(None),
                Ok(answer) if answer.status >= 500 => {
                    last = format!("{suffix}: HTTP {}", answer.status);
                }
                Ok(answer) => {
                    return Err(format!(
                        "{suffix}: HTTP {} {}",
                        answer.status,
                        answer.text().trim()
                    ));
                }
                Err(e) => last = format!("{suffix}: {e}"),
            }
        }
        Err(last)
    }

    /// Like `get`, but the value must be there.
    async fn required(&self, ctx: &Ctx, suffix: &str) -> Result<String, String> {
        self.get(ctx, suffix)
            .await?
            .ok_or_else(|| format!("metadata {suffix} is not defined"))
    }
}

/// Whether a metadata server answers as Google's does: `GCE_METADATA_HOST` says so by being
/// set; otherwise its answer must carry `Metadata-Flavor: Google`, or the metadata server's
/// name must resolve to its address.
async fn on_gce(ctx: &Ctx, metadata: &Metadata, overridden: bool) -> bool {
    if overridden {
        return true;
    }
    let probe = async {
        let request = Request::get(format!("http://{}", metadata.host), ctx.request_timeout());
        matches!(
            metadata.client.send(request).await,
            Ok(answer) if answer.header(FLAVOR) == Some("Google")
        )
    };
    let dns = async {
        if metadata.host != "169.254.169.254" {
            return false;
        }
        let lookup = tokio::task::spawn_blocking(|| {
            dns_lookup::lookup_host("metadata.google.internal")
                .map(|addrs| {
                    addrs
                        .into_iter()
                        .any(|a| a.to_string() == "169.254.169.254")
                })
                .unwrap_or(false)
        });
        matches!(
            tokio::time::timeout(ctx.request_timeout(), lookup).await,
            Ok(Ok(true))
        )
    };
    let (probe, dns) = tokio::join!(probe, dns);
    probe || dns
}

/// Text after the last `/` (`projects/123/zones/us-central1-a` to `us-central1-a`).
fn last_segment(value: &str) -> &str {
    value.rsplit('/').next().unwrap_or(value)
}

/// A zone and its region (`us-central1-a`, `us-central1`): a zone has three `-` parts.
fn zone_and_region(zone: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = zone.split('-').collect();
    if parts.len() != 3 {
        return Err(format!("zone `{zone}` is not of the form region-zone"));
    }
    Ok((zone.to_string(), format!("{}-{}", parts[0], parts[1])))
}

pub async fn detect(ctx: &Ctx, cfg: &GcpConfig) -> DetectResult {
    let env_host = ctx.host.var("GCE_METADATA_HOST");
    let metadata = Metadata {
        host: env_host
            .clone()
            .unwrap_or_else(|| ctx.endpoints.gce_metadata_host.clone()),
        client: Client::default().with_connect_timeout(Duration::from_secs(1)),
    };
    if !on_gce(ctx, &metadata, env_host.is_some()).await {
        return ctx.missing("no GCE metadata server");
    }
    let mut found = Found::default();
    found.string("cloud.provider", "gcp");
    found.string(
        "cloud.account.id",
        metadata.required(ctx, "project/project-id").await?,
    );
    let var = |name: &str| ctx.host.var(name);
    let switches = ctx.switches();
    let on_k8s = var("KUBERNETES_SERVICE_HOST").is_some();
    let cluster_location = if on_k8s {
        metadata
            .get(ctx, "instance/attributes/cluster-location")
            .await?
    } else {
        None
    };
    if let Some(location) = cluster_location {
        found.string("cloud.platform", "gcp_kubernetes_engine");
        match location.matches('-').count() {
            1 => found.string("cloud.region", location),
            2 => found.string("cloud.availability_zone", location),
            _ => {
                return Err(format!(
                    "cluster-location `{location}` is neither a region nor a zone"
                ));
            }
        }
        found.string(
            "k8s.cluster.name",
            metadata
                .required(ctx, "instance/attributes/cluster-name")
                .await?,
        );
        found.string("host.id", metadata.required(ctx, "instance/id").await?);
        // Not available with workload identity on some GKE versions: the rest still counts.
        match metadata.get(ctx, "instance/name").await {
            Ok(Some(name)) => found.string("host.name", name),
            Ok(None) => {}
            Err(e) => tracing::info!(error = %e, "gcp detector: no host.name on GKE"),
        }
        if cfg.gke_host_type {
            match compute_instance(ctx, &metadata).await {
                Ok(instance) => {
                    let machine = instance
                        .get("machineType")
                        .and_then(|m| m.as_str())
                        .unwrap_or_default();
                    found.non_empty("host.type", last_segment(machine));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gcp detector: no host.type from the Compute API")
                }
            }
        }
        return Ok(found);
    }
    let faas = |found: &mut Found, name: Option<String>, version: Option<String>| {
        if let Some(name) = name {
            found.string("faas.name", name);
        }
        if let Some(version) = version {
            found.string("faas.version", version);
        }
    };
    let serverless = if var("FUNCTION_TARGET").is_some() {
        Some("gcp_cloud_functions")
    } else if var("K_CONFIGURATION").is_some() || var("CLOUD_RUN_JOB").is_some() {
        Some("gcp_cloud_run")
    } else {
        None
    };
    if let Some(platform) = serverless {
        found.string("cloud.platform", platform);
        faas(
            &mut found,
            var("K_SERVICE").or_else(|| var("CLOUD_RUN_JOB")),
            var("K_REVISION"),
        );
        let id = metadata.required(ctx, "instance/id").await?;
        found.string("faas.instance", &id);
        found.string("faas.id", id);
        let region = metadata.required(ctx, "instance/region").await?;
        found.string("cloud.region", last_segment(&region));
        if var("K_CONFIGURATION").is_none() && var("FUNCTION_TARGET").is_none() {
            for (env, key) in [
                ("CLOUD_RUN_EXECUTION", "gcp.cloud_run.job.execution"),
                ("CLOUD_RUN_TASK_INDEX", "gcp.cloud_run.job.task_index"),
            ] {
                if let Some(v) = var(env) {
                    found.string(key, v);
                }
            }
        }
        return Ok(found);
    }
    let standard = var("GAE_ENV").is_some_and(|v| v == "standard");
    if standard || var("GAE_SERVICE").is_some() {
        found.string("cloud.platform", "gcp_app_engine");
        faas(&mut found, var("GAE_SERVICE"), var("GAE_VERSION"));
        if let Some(instance) = var("GAE_INSTANCE") {
            found.string("faas.instance", &instance);
            found.string("faas.id", instance);
        }
        let zone = metadata.required(ctx, "instance/zone").await?;
        if standard {
            found.string("cloud.availability_zone", last_segment(&zone));
            let region = metadata.required(ctx, "instance/region").await?;
            found.string("cloud.region", last_segment(&region));
        } else {
            let (zone, region) = zone_and_region(last_segment(&zone))?;
            found.string("cloud.availability_zone", zone);
            found.string("cloud.region", region);
        }
        return Ok(found);
    }
    let Some(machine_type) = metadata.get(ctx, "instance/machine-type").await? else {
        // A metadata server, but no platform Google's detector knows.
        return Ok(found);
    };
    found.string("cloud.platform", "gcp_compute_engine");
    let zone = metadata.required(ctx, "instance/zone").await?;
    let (zone, region) = zone_and_region(last_segment(&zone))?;
    found.string("cloud.availability_zone", &zone);
    found.string("cloud.region", region);
    found.string("host.type", machine_type);
    found.string("host.id", metadata.required(ctx, "instance/id").await?);
    let name = metadata.required(ctx, "instance/name").await?;
    found.string("host.name", &name);
    found.string("gcp.gce.instance.name", &name);
    if switches.on("gcp.gce.instance.hostname") {
        found.string(
            "gcp.gce.instance.hostname",
            metadata.required(ctx, "instance/hostname").await?,
        );
    }
    if let Some(created_by) = metadata.get(ctx, "instance/attributes/created-by").await? {
        managed_instance_group(&mut found, &created_by);
    }
    if !cfg.labels.is_empty() {
        let patterns: Vec<Regex> = cfg
            .labels
            .iter()
            .filter_map(|p| Regex::new(p).ok())
            .collect();
        match compute_instance(ctx, &metadata).await {
            Ok(instance) => {
                if let Some(labels) = instance.get("labels").and_then(|l| l.as_object()) {
                    for (key, value) in labels {
                        if patterns.iter().any(|p| p.is_match(key)) {
                            found.string(
                                &format!("{LABEL_PREFIX}{key}"),
                                value.as_str().unwrap_or_default(),
                            );
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "gcp detector: cannot read the instance's labels"),
        }
    }
    Ok(found)
}

/// `projects/<n>/zones/<zone>/instanceGroupManagers/<name>` (or `regions/<region>`).
fn managed_instance_group(found: &mut Found, created_by: &str) {
    let parts: Vec<&str> = created_by.split('/').collect();
    let Some(at) = parts.iter().position(|p| *p == "instanceGroupManagers") else {
        return;
    };
    let (Some(name), Some(kind), Some(location)) = (
        parts.get(at + 1),
        at.checked_sub(2).and_then(|i| parts.get(i)),
        at.checked_sub(1).and_then(|i| parts.get(i)),
    ) else {
        return;
    };
    found.string("gcp.gce.instance_group_manager.name", *name);
    match *kind {
        "zones" => found.string("gcp.gce.instance_group_manager.zone", *location),
        "regions" => found.string("gcp.gce.instance_group_manager.region", *location),
        _ => {}
    }
}

/// The instance as the Compute API describes it, with the default service account's token.
async fn compute_instance(ctx: &Ctx, metadata: &Metadata) -> Result<serde_json::Value, String> {
    let token_text = metadata
        .required(ctx, "instance/service-accounts/default/token")
        .await?;
    let token: serde_json::Value =
        serde_json::from_str(&token_text).map_err(|e| format!("access token: {e}"))?;
    let token = token
        .get("access_token")
        .and_then(|t| t.as_str())
        .ok_or("access token: no access_token")?;
    let project = metadata.required(ctx, "project/project-id").await?;
    let zone = metadata.required(ctx, "instance/zone").await?;
    let name = metadata.required(ctx, "instance/name").await?;
    let url = format!(
        "{}/compute/v1/projects/{project}/zones/{}/instances/{name}",
        ctx.endpoints.gce_compute_api,
        last_segment(&zone)
    );
    let request = Request::get(&url, ctx.request_timeout())
        .header("Authorization", format!("Bearer {token}"));
    let answer = Client::default()
        .send(request)
        .await
        .map_err(|e| format!("Compute API: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "Compute API: HTTP {} {}",
            answer.status,
            answer.text().chars().take(300).collect::<String>()
        ));
    }
    answer.json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_regions_and_instance_groups() {
        assert_eq!(
            zone_and_region("us-central1-a").unwrap(),
            ("us-central1-a".to_string(), "us-central1".to_string())
        );
        assert!(zone_and_region("us16").is_err());
        assert_eq!(
            last_segment("projects/1/zones/europe-west4-b"),
            "europe-west4-b"
        );
        let mut found = Found::default();
        managed_instance_group(
            &mut found,
            "projects/123/zones/us-central1-a/instanceGroupManagers/web-mig",
        );
        assert_eq!(
            found.get_str("gcp.gce.instance_group_manager.name"),
            Some("web-mig")
        );
        assert_eq!(
            found.get_str("gcp.gce.instance_group_manager.zone"),
            Some("us-central1-a")
        );
        let mut regional = Found::default();
        managed_instance_group(
            &mut regional,
            "projects/123/regions/us-central1/instanceGroupManagers/web-mig",
        );
        assert_eq!(
            regional.get_str("gcp.gce.instance_group_manager.region"),
            Some("us-central1")
        );
        let mut none = Found::default();
        managed_instance_group(&mut none, "instanceGroupManagers");
        assert!(none.is_empty());
    }
}
