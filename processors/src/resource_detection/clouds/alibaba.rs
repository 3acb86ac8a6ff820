//! `alibaba_ecs`: an Alibaba Cloud ECS instance, from its metadata service (with the session
//! token it hands out, as IMDSv2 does).

use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};
use crate::resource_detection::http::Request;

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.account.id"),
    on("cloud.availability_zone"),
    on("cloud.platform"),
    on("cloud.provider"),
    on("cloud.region"),
    on("host.id"),
    on("host.image.id"),
    on("host.name"),
    on("host.type"),
];

async fn read(ctx: &Ctx) -> Result<Vec<(&'static str, String)>, String> {
    let base = &ctx.endpoints.alibaba;
    let request = Request::put(format!("{base}/latest/api/token"), ctx.request_timeout())
        .header("X-aliyun-ecs-metadata-token-ttl-seconds", "21600");
    let answer = super::client()
        .send(request)
        .await
        .map_err(|e| format!("metadata token: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "metadata token: HTTP {} {}",
            answer.status,
            answer.text().trim()
        ));
    }
    let token = answer.text();
    let mut out = Vec::new();
    for (path, key) in [
        ("hostname", "host.name"),
        ("image-id", "host.image.id"),
        ("instance-id", "host.id"),
        ("instance/instance-type", "host.type"),
        ("owner-account-id", "cloud.account.id"),
        ("region-id", "cloud.region"),
        ("zone-id", "cloud.availability_zone"),
    ] {
        let value = super::get_text(
            ctx,
            &format!("{base}/latest/meta-data/{path}"),
            &[("X-aliyun-ecs-metadata-token", token.as_str())],
        )
        .await?;
        out.push((key, value));
    }
    Ok(out)
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let values = match read(ctx).await {
        Ok(values) => values,
        Err(e) => return ctx.missing(format!("not on Alibaba Cloud ECS: {e}")),
    };
    let mut found = Found::default();
    found.string("cloud.provider", "alibaba_cloud");
    found.string("cloud.platform", "alibaba_cloud_ecs");
    for (key, value) in values {
        found.string(key, value);
    }
    Ok(found)
}
