//! `tencent_cvm`: a Tencent Cloud CVM instance, from its metadata service.

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
    on("host.name"),
    on("host.type"),
];

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let base = &ctx.endpoints.tencent;
    let reads = [
        ("instance-name", "host.name"),
        ("instance/image-id", "host.image.id"),
        ("instance-id", "host.id"),
        ("instance/instance-type", "host.type"),
        ("app-id", "cloud.account.id"),
        ("placement/region", "cloud.region"),
        ("placement/zone", "cloud.availability_zone"),
    ]
    .map(|(path, key)| async move {
        let value = super::get_text(ctx, &format!("{base}/latest/meta-data/{path}"), &[]).await;
        (key, value)
    });
    let mut found = Found::default();
    found.string("cloud.provider", "tencent_cloud");
    found.string("cloud.platform", "tencent_cloud_cvm");
    for (key, value) in futures::future::join_all(reads).await {
        match value {
            Ok(value) => found.string(key, value),
            Err(e) => return ctx.missing(format!("not on Tencent Cloud CVM: {e}")),
        }
    }
    Ok(found)
}
