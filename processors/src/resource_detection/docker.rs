//! `docker`: the machine as the Docker daemon describes it (`/info`: its name and OS), and,
//! when switched on, the collector's own container (looked up by the container's host name).

use super::attributes::{Attr, off, on};
use super::detection::{Ctx, DetectResult, Found};
use super::http::{Client, Request};
use super::system::os_type;

pub const ATTRIBUTES: &[Attr] = &[
    on("host.name"),
    on("os.type"),
    off("container.name"),
    off("container.image.name"),
    off("container.image.id"),
    off("container.image.tags"),
];

/// A client for the daemon, and the base URL to put before API paths.
fn daemon(ctx: &Ctx) -> Result<(Client, String), String> {
    match ctx.host.var("DOCKER_HOST") {
        Some(url) if url.starts_with("unix://") => Ok((
            Client::default().over_unix_socket(url.trim_start_matches("unix://")),
            "http://docker".into(),
        )),
        Some(url) if url.starts_with("tcp://") => Ok((
            Client::default(),
            format!("http://{}", url.trim_start_matches("tcp://")),
        )),
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok((Client::default(), url))
        }
        Some(other) => Err(format!(
            "DOCKER_HOST `{other}`: only unix:// and tcp:// are supported"
        )),
        None => Ok((
            Client::default().over_unix_socket(&ctx.endpoints.docker_socket),
            "http://docker".into(),
        )),
    }
}

async fn get(ctx: &Ctx, client: &Client, url: &str) -> Result<serde_json::Value, String> {
    let answer = client
        .send(Request::get(url, ctx.request_timeout()))
        .await
        .map_err(|e| format!("Docker daemon: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "Docker daemon {url}: HTTP {} {}",
            answer.status,
            answer.text().trim()
        ));
    }
    answer.json()
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let (client, base) = daemon(ctx)?;
    let info = match get(ctx, &client, &format!("{base}/info")).await {
        Ok(info) => info,
        Err(e) => return ctx.missing(e),
    };
    let text = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut found = Found::default();
    found.string("host.name", text(&info, "Name"));
    found.string("os.type", os_type(&text(&info, "OSType")));
    let switches = ctx.switches();
    let wanted = [
        "container.name",
        "container.image.name",
        "container.image.id",
        "container.image.tags",
    ];
    if switches.any(&wanted)
        && let Err(e) = container(ctx, &client, &base, &mut found).await
    {
        tracing::warn!(error = %e, "docker detector: no container attributes");
    }
    Ok(found)
}

/// The collector's own container, found by its host name (Docker's default host name is the
/// container's short id).
async fn container(
    ctx: &Ctx,
    client: &Client,
    base: &str,
    found: &mut Found,
) -> Result<(), String> {
    let hostname = ctx
        .host
        .names()
        .hostname()
        .map_err(|e| format!("own host name: {e}"))?;
    let inspect = get(
        ctx,
        client,
        &format!("{base}/containers/{}/json", hostname.trim()),
    )
    .await?;
    let field = |key: &str| {
        inspect
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    // As the OTel Collector reports them by default: the name with Docker's leading `/`, the
    // image by its id.
    found.string("container.name", field("Name"));
    let image = field("Image");
    found.string("container.image.name", &image);
    found.string("container.image.id", &image);
    if ctx.switches().on("container.image.tags") {
        let described = get(ctx, client, &format!("{base}/images/{image}/json")).await?;
        let tags = described
            .get("RepoTags")
            .and_then(|t| t.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        found.strings("container.image.tags", tags);
    }
    Ok(())
}
