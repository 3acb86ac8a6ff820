//! `upcloud`: an UpCloud server, from `/metadata/v1.json`.

use serde::Deserialize;

use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.region"),
    on("host.id"),
    on("host.name"),
];

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    cloud_name: String,
    hostname: String,
    instance_id: String,
    region: String,
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let url = format!("{}/metadata/v1.json", ctx.endpoints.upcloud);
    let md: Metadata = match super::get_json(ctx, &url, &[]).await {
        Ok(md) => md,
        Err(e) => return ctx.missing(format!("not on UpCloud: {e}")),
    };
    let mut found = Found::default();
    found.string("cloud.provider", md.cloud_name);
    found.string("cloud.region", md.region);
    found.string("host.id", md.instance_id);
    found.string("host.name", md.hostname);
    Ok(found)
}
