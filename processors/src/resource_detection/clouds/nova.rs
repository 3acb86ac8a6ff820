//! `nova`: an OpenStack Nova instance, from `/openstack/latest/meta_data.json` (and the
//! EC2-compatible `instance-type`).

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::config::NovaConfig;
use crate::resource_detection::detection::{Ctx, DetectResult, Found};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.account.id"),
    on("cloud.availability_zone"),
    on("cloud.platform"),
    on("cloud.provider"),
    on("cloud.region"),
    on("host.id"),
    on("host.name"),
    on("host.type"),
];

const META_PREFIX: &str = "openstack.nova.meta.";

#[derive(Deserialize, Default)]
#[serde(default)]
struct Document {
    availability_zone: String,
    hostname: String,
    meta: BTreeMap<String, String>,
    project_id: String,
    uuid: String,
}

pub async fn detect(ctx: &Ctx, cfg: &NovaConfig) -> DetectResult {
    let base = &ctx.endpoints.nova;
    let url = format!("{base}/openstack/latest/meta_data.json");
    let doc = match super::get_json::<Document>(ctx, &url, &[]).await {
        Ok(doc) if !doc.uuid.is_empty() => doc,
        Ok(_) => return ctx.missing("instance ID (uuid) not found in metadata"),
        Err(e) => return ctx.missing(format!("not on OpenStack: {e}")),
    };
    if doc.hostname.is_empty() {
        return Err("hostname not found in metadata".into());
    }
    let mut found = Found::default();
    // Optional: the EC2-compatible part may be off.
    match super::get_text(ctx, &format!("{base}/latest/meta-data/instance-type"), &[]).await {
        Ok(kind) => found.non_empty("host.type", kind),
        Err(e) => tracing::debug!(error = %e, "nova detector: no EC2-compatible instance type"),
    }
    found.string("cloud.provider", "openstack");
    found.string("cloud.platform", "openstack_nova");
    found.string("cloud.account.id", doc.project_id);
    found.string("cloud.availability_zone", doc.availability_zone);
    found.string("host.id", doc.uuid);
    found.string("host.name", doc.hostname);
    let patterns: Vec<Regex> = cfg
        .labels
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect();
    for (key, value) in doc.meta {
        if patterns.iter().any(|p| p.is_match(&key)) {
            found.string(&format!("{META_PREFIX}{key}"), value);
        }
    }
    Ok(found)
}
