//! `oraclecloud`: an OCI instance, from `/opc/v2/instance/` (which wants `Authorization:
//! Bearer Oracle`), after a quick probe that tells OCI from anything else.

use serde::Deserialize;

use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};
use crate::resource_detection::http::Request;

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.availability_zone"),
    on("cloud.platform"),
    on("cloud.provider"),
    on("cloud.region"),
    on("cloud.resource_id"),
    on("host.id"),
    on("host.name"),
    on("host.type"),
    on("k8s.cluster.name"),
    on("oracle_cloud.realm"),
];

const AUTH: (&str, &str) = ("Authorization", "Bearer Oracle");

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Compute {
    id: String,
    display_name: String,
    shape: String,
    canonical_region_name: String,
    availability_domain: String,
    metadata: Metadata,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    #[serde(rename = "oke-cluster-display-name")]
    oke_cluster: String,
    realm: String,
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let url = format!("{}/opc/v2/instance/", ctx.endpoints.oraclecloud);
    let probe = Request {
        method: http::Method::HEAD,
        ..Request::get(&url, ctx.request_timeout()).header(AUTH.0, AUTH.1)
    };
    let on_oci = matches!(super::client().send(probe).await, Ok(answer) if answer.is_ok());
    if !on_oci {
        return ctx.missing("not on Oracle Cloud");
    }
    // The probe said OCI: from here a failure is a failure, not absence.
    let compute: Compute = super::get_json(ctx, &url, &[AUTH])
        .await
        .map_err(|e| format!("Oracle Cloud detected but its metadata unreadable: {e}"))?;
    let mut found = Found::default();
    found.string("cloud.provider", "oracle_cloud");
    found.string("cloud.platform", "oracle_cloud_oke");
    found.string("cloud.region", compute.canonical_region_name);
    found.string("cloud.resource_id", &compute.id);
    found.string("cloud.availability_zone", compute.availability_domain);
    found.string("host.id", compute.id);
    found.string("host.name", compute.display_name);
    found.string("host.type", compute.shape);
    found.non_empty("k8s.cluster.name", compute.metadata.oke_cluster);
    found.non_empty("oracle_cloud.realm", compute.metadata.realm);
    Ok(found)
}
