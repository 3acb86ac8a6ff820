//! `scaleway`: a Scaleway instance, from its metadata service's `/conf?format=json`.

use serde::Deserialize;

use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.account.id"),
    on("cloud.availability_zone"),
    on("cloud.platform"),
    on("cloud.provider"),
    on("cloud.region"),
    on("host.id"),
    on("host.image.id"),
    on("host.image.name"),
    on("host.name"),
    on("host.type"),
];

#[derive(Deserialize, Default)]
#[serde(default)]
struct Conf {
    id: String,
    name: String,
    commercial_type: String,
    organization: String,
    location: Location,
    image: Image,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Location {
    zone_id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Image {
    id: String,
    name: String,
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let url = format!("{}/conf?format=json", ctx.endpoints.scaleway);
    let conf: Conf = match super::get_json(ctx, &url, &[]).await {
        Ok(conf) => conf,
        Err(e) => return ctx.missing(format!("not on Scaleway: {e}")),
    };
    let mut found = Found::default();
    found.string("cloud.account.id", conf.organization);
    found.string("cloud.availability_zone", &conf.location.zone_id);
    found.string("cloud.provider", "scaleway_cloud");
    found.string("cloud.platform", "scaleway_cloud_compute");
    // `fr-par-1` is in `fr-par`.
    if let Some((region, _)) = conf.location.zone_id.rsplit_once('-')
        && !region.is_empty()
    {
        found.string("cloud.region", region);
    }
    found.string("host.id", conf.id);
    found.string("host.image.id", conf.image.id);
    found.string("host.image.name", conf.image.name);
    found.string("host.name", conf.name);
    found.string("host.type", conf.commercial_type);
    Ok(found)
}
