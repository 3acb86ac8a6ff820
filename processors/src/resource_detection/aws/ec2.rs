//! `ec2`: the EC2 instance, from the instance metadata service; its tags from the EC2 API
//! (`DescribeTags`, signed with the instance's credentials) or, with `tags_from_imds`, from the
//! metadata service itself.

use regex::Regex;

use super::imds::{IdentityDocument, Imds};
use super::{api, credentials};
use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::config::Ec2Config;
use crate::resource_detection::detection::{Ctx, DetectResult, Found};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    on("cloud.region"),
    on("cloud.account.id"),
    on("cloud.availability_zone"),
    on("host.id"),
    on("host.image.id"),
    on("host.type"),
    on("host.name"),
];

const TAG_PREFIX: &str = "ec2.tag.";

pub async fn detect(ctx: &Ctx, cfg: &Ec2Config) -> DetectResult {
    let Some(mut imds) = Imds::from_env(ctx, cfg.max_attempts, cfg.max_backoff.0) else {
        return ctx.missing("AWS_EC2_METADATA_DISABLED is set");
    };
    // The instance id is the reachability probe: off EC2 nothing (or something else) answers.
    if let Err(e) = imds.get(ctx, "/latest/meta-data/instance-id").await {
        return ctx.missing(format!("EC2 instance metadata unavailable: {e}"));
    }
    let doc: IdentityDocument = imds
        .get_json(ctx, "/latest/dynamic/instance-identity/document")
        .await
        .map_err(|e| format!("failed getting identity document: {e}"))?;
    let hostname = imds
        .get(ctx, "/latest/meta-data/hostname")
        .await
        .map_err(|e| format!("failed getting hostname: {e}"))?;
    let mut found = Found::default();
    found.string("cloud.provider", "aws");
    found.string("cloud.platform", "aws_ec2");
    found.string("cloud.region", &doc.region);
    found.string("cloud.account.id", &doc.account_id);
    found.string("cloud.availability_zone", &doc.availability_zone);
    found.string("host.id", &doc.instance_id);
    found.string("host.image.id", &doc.image_id);
    found.string("host.type", &doc.instance_type);
    found.string("host.name", hostname.trim());
    if !cfg.tags.is_empty() {
        let patterns: Vec<Regex> = cfg.tags.iter().filter_map(|p| Regex::new(p).ok()).collect();
        // As upstream: tags that cannot be read cost only the tags.
        match tags(ctx, cfg, &mut imds, &doc, &patterns).await {
            Ok(tags) => {
                for (key, value) in tags {
                    found.string(&format!("{TAG_PREFIX}{key}"), value);
                }
            }
            Err(e) => tracing::warn!(error = %e, "ec2 detector: cannot read the instance's tags"),
        }
    }
    Ok(found)
}

/// The instance's tags whose key matches one of `patterns`.
async fn tags(
    ctx: &Ctx,
    cfg: &Ec2Config,
    imds: &mut Imds,
    doc: &IdentityDocument,
    patterns: &[Regex],
) -> Result<Vec<(String, String)>, String> {
    let wanted = |key: &str| patterns.iter().any(|p| p.is_match(key));
    if cfg.tags_from_imds {
        const TAGS: &str = "/latest/meta-data/tags/instance";
        let keys = imds.get(ctx, TAGS).await.map_err(|e| {
            format!("instance tags in metadata (InstanceMetadataTags=enabled?): {e}")
        })?;
        let mut out = Vec::new();
        for key in keys.lines().map(str::trim).filter(|k| !k.is_empty()) {
            if !wanted(key) {
                continue;
            }
            let value = imds
                .get(ctx, &format!("{TAGS}/{key}"))
                .await
                .map_err(|e| e.to_string())?;
            out.push((key.to_string(), value));
        }
        return Ok(out);
    }
    let creds = credentials::find(ctx, Some(imds), &doc.region).await?;
    let all = api::describe_tags(ctx, &creds, &doc.region, &doc.instance_id).await?;
    Ok(all.into_iter().filter(|(k, _)| wanted(k)).collect())
}
