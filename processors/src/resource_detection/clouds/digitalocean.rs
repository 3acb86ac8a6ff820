//! `digitalocean`: a droplet, from `/metadata/v1.json`.

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
struct Droplet {
    droplet_id: i64,
    hostname: String,
    region: String,
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let url = format!("{}/metadata/v1.json", ctx.endpoints.digitalocean);
    let droplet: Droplet = match super::get_json(ctx, &url, &[]).await {
        Ok(droplet) => droplet,
        Err(e) => return ctx.missing(format!("not on DigitalOcean: {e}")),
    };
    let mut found = Found::default();
    found.string("cloud.provider", "digitalocean");
    found.string("host.id", droplet.droplet_id.to_string());
    found.string("host.name", droplet.hostname);
    found.string("cloud.region", droplet.region);
    Ok(found)
}
