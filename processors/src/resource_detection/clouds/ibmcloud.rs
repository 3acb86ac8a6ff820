//! `ibmcloud_vpc` (the VPC instance metadata service, token first) and `ibmcloud_classic`
//! (the SoftLayer resource metadata API).

use serde::Deserialize;

use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::config::IbmCloudVpcConfig;
use crate::resource_detection::detection::{Ctx, DetectResult, Found};
use crate::resource_detection::http::{Client, Request};

pub const VPC_ATTRIBUTES: &[Attr] = &[
    on("cloud.account.id"),
    on("cloud.availability_zone"),
    on("cloud.platform"),
    on("cloud.provider"),
    on("cloud.region"),
    on("cloud.resource_id"),
    on("host.id"),
    on("host.image.id"),
    on("host.image.name"),
    on("host.name"),
    on("host.type"),
];

pub const CLASSIC_ATTRIBUTES: &[Attr] = &[
    on("cloud.account.id"),
    on("cloud.availability_zone"),
    on("cloud.platform"),
    on("cloud.provider"),
    on("cloud.resource_id"),
    on("host.id"),
    on("host.name"),
];

const API_VERSION: &str = "2026-01-30";

#[derive(Deserialize, Default)]
#[serde(default)]
struct Instance {
    id: String,
    crn: String,
    name: String,
    profile: Named,
    zone: Named,
    image: Image,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Image {
    id: String,
    name: String,
}

async fn vpc_instance(ctx: &Ctx, cfg: &IbmCloudVpcConfig) -> Result<Instance, String> {
    let base = format!("{}://{}", cfg.protocol, ctx.endpoints.ibmcloud_vpc_host);
    let client = if cfg.protocol == "https" {
        Client::default()
    } else {
        super::client()
    };
    let request = Request::put(
        format!("{base}/identity/v1/token?version={API_VERSION}"),
        ctx.request_timeout(),
    )
    .header("Metadata-Flavor", "ibm")
    .header("Accept", "application/json")
    .header("Content-Type", "application/json");
    let request = Request {
        body: br#"{"expires_in":300}"#.to_vec(),
        ..request
    };
    let answer = client
        .send(request)
        .await
        .map_err(|e| format!("identity token: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "identity token: HTTP {} {}",
            answer.status,
            answer.text().trim()
        ));
    }
    let token: serde_json::Value = answer.json()?;
    let token = token
        .get("access_token")
        .and_then(|t| t.as_str())
        .ok_or("identity token: no access_token")?;
    let request = Request::get(
        format!("{base}/metadata/v1/instance?version={API_VERSION}"),
        ctx.request_timeout(),
    )
    .header("Authorization", format!("Bearer {token}"))
    .header("Accept", "application/json");
    let answer = client
        .send(request)
        .await
        .map_err(|e| format!("instance metadata: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "instance metadata: HTTP {} {}",
            answer.status,
            answer.text().trim()
        ));
    }
    answer.json()
}

pub async fn detect_vpc(ctx: &Ctx, cfg: &IbmCloudVpcConfig) -> DetectResult {
    let instance = match vpc_instance(ctx, cfg).await {
        Ok(instance) => instance,
        Err(e) => return ctx.missing(format!("IBM Cloud VPC metadata not available: {e}")),
    };
    let zone = instance.zone.name;
    // `us-south-1` is in `us-south`.
    let region = zone.rsplit_once('-').map_or(zone.as_str(), |(r, _)| r);
    // `crn:v1:bluemix:public:is:us-south-1:a/<account>::instance:<id>`.
    let account = instance
        .crn
        .split(':')
        .nth(6)
        .map(|a| a.trim_start_matches("a/"))
        .unwrap_or_default();
    let mut found = Found::default();
    found.string("cloud.provider", "ibm_cloud");
    found.string("cloud.platform", "ibm_cloud.vpc");
    found.string("cloud.region", region);
    found.string("cloud.availability_zone", &zone);
    found.string("cloud.account.id", account);
    found.string("cloud.resource_id", &instance.crn);
    found.string("host.id", instance.id);
    found.string("host.image.id", instance.image.id);
    found.string("host.image.name", instance.image.name);
    found.string("host.name", instance.name);
    found.string("host.type", instance.profile.name);
    Ok(found)
}

pub async fn detect_classic(ctx: &Ctx) -> DetectResult {
    let base = &ctx.endpoints.ibmcloud_classic;
    let reads = [
        ("getId.txt", "host.id"),
        ("getHostname.txt", "host.name"),
        ("getDatacenter.txt", "cloud.availability_zone"),
        ("getAccountId.txt", "cloud.account.id"),
        ("getGlobalIdentifier.txt", "cloud.resource_id"),
    ]
    .map(|(method, key)| async move {
        let answer = Client::default()
            .send(Request::get(
                format!("{base}/{method}"),
                ctx.request_timeout(),
            ))
            .await;
        (key, answer)
    });
    let mut found = Found::default();
    found.string("cloud.provider", "ibm_cloud");
    found.string("cloud.platform", "ibm_cloud.classic");
    for (key, answer) in futures::future::join_all(reads).await {
        match answer {
            Ok(answer) if answer.is_ok() => found.string(key, answer.text().trim()),
            Ok(answer) => {
                return ctx.missing(format!(
                    "IBM Cloud Classic metadata: HTTP {}",
                    answer.status
                ));
            }
            Err(e) => return ctx.missing(format!("IBM Cloud Classic metadata: {e}")),
        }
    }
    Ok(found)
}
