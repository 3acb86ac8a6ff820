//! `akamai`: an Akamai (Linode) instance, from the metadata service's `/v1/instance`, with the
//! session token it requires.

use serde::Deserialize;

use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};
use crate::resource_detection::http::Request;

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.account.id"),
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
struct Instance {
    id: i64,
    label: String,
    region: String,
    #[serde(rename = "type")]
    kind: String,
    image: Image,
    account_euuid: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Image {
    id: String,
    label: String,
}

async fn instance(ctx: &Ctx) -> Result<Instance, String> {
    let base = format!("{}/v1", ctx.endpoints.akamai);
    let request = Request::put(format!("{base}/token"), ctx.request_timeout())
        .header("Content-Type", "text/plain")
        .header("X-Metadata-Token-Expiry-Seconds", "3600");
    let answer = super::client()
        .send(request)
        .await
        .map_err(|e| format!("metadata token: {e}"))?;
    if !answer.is_ok() {
        return Err(format!("metadata token: HTTP {}", answer.status));
    }
    let token = answer.text().trim().to_string();
    super::get_json(
        ctx,
        &format!("{base}/instance"),
        &[
            ("X-Metadata-Token", token.as_str()),
            ("Content-Type", "application/json"),
        ],
    )
    .await
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let instance = match instance(ctx).await {
        Ok(instance) => instance,
        Err(e) => return ctx.missing(format!("not on Akamai: {e}")),
    };
    let mut found = Found::default();
    found.string("cloud.account.id", instance.account_euuid);
    found.string("cloud.provider", "akamai_cloud");
    found.string("cloud.platform", "akamai_cloud_compute");
    found.string("cloud.region", instance.region);
    found.string("host.id", instance.id.to_string());
    found.string("host.image.id", instance.image.id);
    found.string("host.image.name", instance.image.label);
    found.string("host.name", instance.label);
    found.string("host.type", instance.kind);
    Ok(found)
}
