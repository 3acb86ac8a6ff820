//! `vultr`: a Vultr instance, from `/v1.json`.

use serde::Deserialize;

use crate::resource_detection::attributes::{Attr, off, on};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};

pub const ATTRIBUTES: &[Attr] = &[
    off("cloud.platform"),
    on("cloud.provider"),
    on("cloud.region"),
    on("host.id"),
    on("host.name"),
];

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    hostname: String,
    instanceid: String,
    #[serde(rename = "instance-v2-id")]
    instance_v2_id: String,
    region: Region,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Region {
    regioncode: String,
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let url = format!("{}/v1.json", ctx.endpoints.vultr);
    let answer = match super::get(ctx, &url, &[]).await {
        Ok(answer) => answer,
        Err(e) => return ctx.missing(format!("not on Vultr: {e}")),
    };
    // A client error comes from something that is not Vultr's metadata service; any other
    // failure is the service's own.
    if (400..500).contains(&answer.status) {
        return ctx.missing(format!("not on Vultr: {url} answered {}", answer.status));
    }
    if !answer.is_ok() {
        return Err(format!("Vultr metadata: HTTP {}", answer.status));
    }
    let md: Metadata = answer.json().map_err(|e| format!("Vultr metadata: {e}"))?;
    let mut found = Found::default();
    found.string("cloud.provider", "vultr");
    found.string("cloud.platform", "vultr.cloud_compute");
    let id = if md.instance_v2_id.is_empty() {
        md.instanceid
    } else {
        md.instance_v2_id
    };
    found.non_empty("host.id", id);
    found.non_empty("host.name", md.hostname);
    // The service writes region codes in upper case (`EWR`).
    found.non_empty("cloud.region", md.region.regioncode.to_lowercase());
    Ok(found)
}
