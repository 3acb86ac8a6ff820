//! `hetzner`: a Hetzner Cloud server, from `/hetzner/v1/metadata`.

use crate::resource_detection::attributes::{Attr, off, on};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    off("cloud.platform"),
    on("cloud.region"),
    on("cloud.availability_zone"),
    on("host.id"),
    on("host.name"),
];

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let base = format!("{}/hetzner/v1/metadata", ctx.endpoints.hetzner);
    // The host name answers on every Hetzner Cloud server: the reachability probe.
    let hostname = match super::get_text(ctx, &format!("{base}/hostname"), &[]).await {
        Ok(hostname) => hostname,
        Err(e) => return ctx.missing(format!("not a Hetzner Cloud server: {e}")),
    };
    let mut found = Found::default();
    found.string("cloud.provider", "hetzner");
    found.string("cloud.platform", "hetzner.cloud_server");
    found.string("host.name", hostname);
    let mut missing = Vec::new();
    for (path, key) in [
        ("instance-id", "host.id"),
        ("region", "cloud.region"),
        ("availability-zone", "cloud.availability_zone"),
    ] {
        match super::get_text(ctx, &format!("{base}/{path}"), &[]).await {
            Ok(value) => found.string(key, value),
            Err(e) => missing.push(e),
        }
    }
    // A partial answer keeps what it has, unless missing metadata must fail.
    if !missing.is_empty() {
        if ctx.fail_on_missing() {
            return Err(format!("partial Hetzner metadata: {}", missing.join("; ")));
        }
        tracing::debug!(missing = ?missing, "hetzner detector: some metadata could not be read");
    }
    Ok(found)
}
