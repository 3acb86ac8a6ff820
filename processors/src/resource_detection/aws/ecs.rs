//! `ecs`: the ECS task, from the task metadata endpoint (v4, else v3) the ECS agent points
//! every container at.

use serde::Deserialize;

use crate::resource_detection::attributes::{Attr, on};
use crate::resource_detection::detection::{Ctx, DetectResult, Found};
use crate::resource_detection::http::{Client, Request};

pub const ATTRIBUTES: &[Attr] = &[
    on("cloud.provider"),
    on("cloud.platform"),
    on("cloud.account.id"),
    on("cloud.region"),
    on("cloud.availability_zone"),
    on("aws.ecs.cluster.arn"),
    on("aws.ecs.task.arn"),
    on("aws.ecs.task.family"),
    on("aws.ecs.task.revision"),
    on("aws.ecs.task.id"),
    on("aws.ecs.launchtype"),
    on("aws.log.group.names"),
    on("aws.log.group.arns"),
    on("aws.log.stream.names"),
    on("aws.log.stream.arns"),
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Task {
    #[serde(rename = "Cluster")]
    cluster: String,
    #[serde(rename = "TaskARN")]
    task_arn: String,
    #[serde(rename = "Family")]
    family: String,
    #[serde(rename = "Revision")]
    revision: String,
    #[serde(rename = "LaunchType")]
    launch_type: String,
    #[serde(rename = "AvailabilityZone")]
    availability_zone: String,
    #[serde(rename = "Containers")]
    containers: Vec<Container>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Container {
    #[serde(rename = "DockerId")]
    docker_id: String,
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "KnownStatus")]
    known_status: String,
    #[serde(rename = "LogDriver")]
    log_driver: String,
    #[serde(rename = "LogOptions")]
    log_options: LogOptions,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LogOptions {
    #[serde(rename = "awslogs-group")]
    group: String,
    #[serde(rename = "awslogs-region")]
    region: String,
    #[serde(rename = "awslogs-stream")]
    stream: String,
}

impl LogOptions {
    fn is_empty(&self) -> bool {
        self.group.is_empty() && self.region.is_empty() && self.stream.is_empty()
    }
}

/// The metadata endpoint from the environment: v4, else v3; one that is not a URL counts as
/// absent (not on ECS).
fn base(ctx: &Ctx) -> Option<String> {
    [
        "ECS_CONTAINER_METADATA_URI_V4",
        "ECS_CONTAINER_METADATA_URI",
    ]
    .iter()
    .filter_map(|var| ctx.host.var(var))
    .find(|url| url.parse::<http::Uri>().is_ok_and(|u| u.scheme().is_some()))
    .map(|url| url.trim_end_matches('/').to_string())
}

async fn get<T: serde::de::DeserializeOwned>(ctx: &Ctx, url: &str) -> Result<T, String> {
    let request =
        Request::get(url, ctx.request_timeout()).header("Content-Type", "application/json");
    let answer = Client::default()
        .send(request)
        .await
        .map_err(|e| format!("request GET {url} failed: {e}"))?;
    if !answer.is_ok() {
        return Err(format!(
            "request GET {url} failed - \"{} {}\"",
            answer.status,
            answer.text().trim()
        ));
    }
    answer.json().map_err(|e| format!("GET {url}: {e}"))
}

pub async fn detect(ctx: &Ctx) -> DetectResult {
    let Some(base) = base(ctx) else {
        return ctx.missing("ECS_CONTAINER_METADATA_URI_V4/ECS_CONTAINER_METADATA_URI not set");
    };
    let task: Task = get(ctx, &format!("{base}/task")).await?;
    let mut found = Found::default();
    found.string("cloud.provider", "aws");
    found.string("cloud.platform", "aws_ecs");
    found.string("aws.ecs.task.arn", &task.task_arn);
    found.string("aws.ecs.task.family", &task.family);
    found.string("aws.ecs.task.revision", &task.revision);
    let parts: Vec<&str> = task.task_arn.split(':').collect();
    let (mut region, mut account) = ("", "");
    if parts.len() >= 5 {
        region = parts[3];
        account = parts[4];
        found.string("cloud.region", region);
        found.string("cloud.account.id", account);
    }
    if let Some(resource) = parts.get(5) {
        // `task/<id>` or `task/<cluster>/<id>`.
        let id = resource.rsplit('/').next().unwrap_or(resource);
        found.string("aws.ecs.task.id", id);
    }
    let cluster = if task.cluster.contains(':') {
        task.cluster.clone()
    } else {
        format!("arn:aws:ecs:{region}:{account}:cluster/{}", task.cluster)
    };
    found.string("aws.ecs.cluster.arn", cluster);
    found.non_empty("cloud.availability_zone", &task.availability_zone);
    match task.launch_type.to_ascii_lowercase().as_str() {
        "ec2" => found.string("aws.ecs.launchtype", "ec2"),
        "fargate" => found.string("aws.ecs.launchtype", "fargate"),
        _ => {}
    }
    // The collector's own container is left out of the log attributes: its logs are not the
    // data it carries.
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Own {
        #[serde(rename = "DockerId")]
        docker_id: String,
    }
    let own: Own = match get(ctx, &base).await {
        Ok(own) => own,
        Err(e) if ctx.fail_on_missing() => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "ecs detector: own container metadata unavailable; no log attributes");
            return Ok(found);
        }
    };
    let logs: Vec<&Container> = task
        .containers
        .iter()
        .filter(|c| {
            c.kind == "NORMAL"
                && c.known_status == "RUNNING"
                && c.log_driver == "awslogs"
                && c.docker_id != own.docker_id
                && !c.log_options.is_empty()
        })
        .collect();
    if !logs.is_empty() {
        let arn =
            |o: &LogOptions| format!("arn:aws:logs:{}:{account}:log-group:{}", o.region, o.group);
        found.strings(
            "aws.log.group.names",
            logs.iter().map(|c| c.log_options.group.clone()).collect(),
        );
        found.strings(
            "aws.log.group.arns",
            logs.iter().map(|c| arn(&c.log_options)).collect(),
        );
        found.strings(
            "aws.log.stream.names",
            logs.iter().map(|c| c.log_options.stream.clone()).collect(),
        );
        found.strings(
            "aws.log.stream.arns",
            logs.iter()
                .map(|c| {
                    format!(
                        "{}:log-stream:{}",
                        arn(&c.log_options),
                        c.log_options.stream
                    )
                })
                .collect(),
        );
    }
    Ok(found)
}
