//! Discovery: lists the running containers, then follows the daemon's event stream, and
//! reconnects with backoff whenever the stream ends (the daemon restarted or went away).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use bollard::models::{ContainerSummaryStateEnum, EventMessage};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
};
use bollard::{ClientVersion, Docker};
use futures::StreamExt;
use sluice_pipeline::Batch;
use tokio::sync::watch;

use super::config::{Endpoint, EventFacts, Settings};
use super::events::{Action, lifecycle_record};
use super::state::{State, track};
use super::{Shared, stopped};
use crate::cgroups::builder::now_nanos;

pub(crate) async fn run(shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let (first_backoff, max_backoff) = (shared.settings.min_retry, shared.settings.max_retry);
    let mut backoff = first_backoff;
    // Where the event stream resumes after a reconnect, so nothing between the two streams is
    // missed (the daemon replays its recent events from `since`). The first stream starts at
    // `logs.since` when set.
    let mut since_nanos: Option<u64> = None;
    let mut first_from = shared.settings.events.since;
    let mut warned = false;
    loop {
        let session = async {
            let docker = connect(&shared.settings).await?;
            shared.set_client(Some(docker.clone()));
            let from = since_nanos.or(first_from.take()).unwrap_or_else(now_nanos);
            list(&shared, &docker).await?;
            tracing::info!(receiver = %shared.name, "connected to the Docker daemon");
            warned = false;
            backoff = first_backoff;
            follow(&shared, &docker, from, &mut since_nanos).await
        };
        let outcome = tokio::select! {
            outcome = session => outcome,
            _ = stopped(stop.clone()) => return,
        };
        shared.set_client(None);
        if let Err(e) = outcome {
            // Loud once, then quiet while the daemon stays away: a retry every few seconds
            // would otherwise flood the log.
            if warned {
                tracing::debug!(receiver = %shared.name, error = %e, "Docker daemon still unreachable");
            } else {
                tracing::warn!(receiver = %shared.name, error = %e, retry_in = ?backoff, "Docker daemon unreachable; retrying with backoff");
                warned = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(stop.clone()) => return,
        }
        backoff = (backoff * 2).min(max_backoff);
    }
}

async fn connect(settings: &Settings) -> Result<Docker, String> {
    let timeout = settings.timeout.as_secs().max(1);
    let version = match settings.api_version {
        Some((major, minor)) => ClientVersion {
            major_version: major,
            minor_version: minor,
        },
        None => *bollard::API_DEFAULT_VERSION,
    };
    let docker = match &settings.endpoint {
        Endpoint::Unix(path) => Docker::connect_with_unix(path, timeout, &version),
        Endpoint::Tcp(address) => Docker::connect_with_http(address, timeout, &version),
    }
    .map_err(|e| e.to_string())?;
    let docker = if settings.api_version.is_none() {
        // Speaks the daemon's version when it is older than the client's (a 20.10 engine
        // refuses requests above API 1.41).
        within(settings.timeout, docker.negotiate_version()).await?
    } else {
        within(settings.timeout, docker.ping()).await?;
        docker
    };
    Ok(docker)
}

async fn within<T, E: std::fmt::Display>(
    timeout: Duration,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Registers every running container and marks stopped the ones that are gone (a daemon that
/// restarted may have lost them without an event the receiver saw).
async fn list(shared: &Shared, docker: &Docker) -> Result<(), String> {
    let options = ListContainersOptionsBuilder::default().all(false).build();
    let running = within(
        shared.settings.timeout,
        docker.list_containers(Some(options)),
    )
    .await?;
    let mut ids = Vec::new();
    for summary in running {
        let Some(id) = summary.id else { continue };
        if summary
            .state
            .is_some_and(|s| s != ContainerSummaryStateEnum::RUNNING)
        {
            continue;
        }
        if summary
            .image
            .as_deref()
            .is_some_and(|image| shared.settings.excluded(image))
        {
            continue;
        }
        let known = shared
            .containers
            .lock()
            .map(|c| c.get(&id).is_some_and(|t| t.is_running()))
            .unwrap_or(false);
        if !known {
            register(shared, docker, &id).await;
        }
        ids.push(id);
    }
    if let Ok(mut containers) = shared.containers.lock() {
        for (id, tracked) in containers.iter_mut() {
            if tracked.is_running() && !ids.contains(id) {
                tracked.state = State::Stopped {
                    since: StdInstant::now(),
                };
            }
        }
    }
    Ok(())
}

/// Inspects a container and starts watching it (again). Returns whether it is watched.
async fn register(shared: &Shared, docker: &Docker, id: &str) -> bool {
    let inspect = within(
        shared.settings.timeout,
        docker.inspect_container(id, None::<InspectContainerOptions>),
    )
    .await;
    let inspect = match inspect {
        Ok(i) => i,
        Err(e) => {
            // Gone between the event and the inspection: nothing to watch.
            tracing::debug!(receiver = %shared.name, container = id, error = %e, "cannot inspect container");
            return false;
        }
    };
    if shared.settings.excluded(&super::state::image_of(&inspect)) {
        return false;
    }
    let Some(tracked) = track(&inspect, &shared.settings) else {
        return false;
    };
    tracing::debug!(receiver = %shared.name, container = %tracked.name, "watching container");
    if let Ok(mut containers) = shared.containers.lock() {
        containers.insert(tracked.id.clone(), tracked);
    }
    true
}

async fn follow(
    shared: &Shared,
    docker: &Docker,
    from_nanos: u64,
    since_nanos: &mut Option<u64>,
) -> Result<(), String> {
    let mut filters: HashMap<&str, Vec<&str>> = HashMap::new();
    filters.insert("type", vec!["container"]);
    filters.insert(
        "event",
        vec!["start", "die", "stop", "oom", "destroy", "restart"],
    );
    let since = format!(
        "{}.{:09}",
        from_nanos / 1_000_000_000,
        from_nanos % 1_000_000_000
    );
    let options = EventsOptionsBuilder::default()
        .since(&since)
        .filters(&filters)
        .build();
    let mut stream = docker.events(Some(options));
    while let Some(event) = stream.next().await {
        let event = event.map_err(|e| format!("event stream: {e}"))?;
        let time = event_time(&event);
        // A replay after a reconnect repeats events at the resume instant.
        if since_nanos.is_some_and(|last| time <= last) {
            continue;
        }
        *since_nanos = Some(time);
        handle(shared, docker, event, time).await;
    }
    Err("the daemon closed the event stream".into())
}

fn event_time(event: &EventMessage) -> u64 {
    event
        .time_nano
        .and_then(|t| u64::try_from(t).ok())
        .or_else(|| {
            event
                .time
                .and_then(|t| u64::try_from(t).ok())
                .map(|s| s * 1_000_000_000)
        })
        .unwrap_or_else(now_nanos)
}

async fn handle(shared: &Shared, docker: &Docker, event: EventMessage, time: u64) {
    let Some(action) = event.action.as_deref().and_then(Action::parse) else {
        return;
    };
    let actor = event.actor.unwrap_or_default();
    let Some(id) = actor.id else { return };
    let attributes = actor.attributes.unwrap_or_default();
    if attributes
        .get("image")
        .is_some_and(|image| shared.settings.excluded(image))
    {
        return;
    }
    if action == Action::Start && !register(shared, docker, &id).await {
        return;
    }
    // What the record needs is read under the lock; the record is sent after releasing it.
    let described = {
        let Ok(mut containers) = shared.containers.lock() else {
            return;
        };
        let Some(tracked) = containers.get_mut(&id) else {
            return;
        };
        if matches!(action, Action::Die | Action::Stop | Action::Destroy) && tracked.is_running() {
            tracked.state = State::Stopped {
                since: StdInstant::now(),
            };
            tracked.previous_cpu = None;
        }
        (tracked.name.clone(), tracked.resource.clone())
    };
    let (name, resource) = described;
    tracing::debug!(receiver = %shared.name, container = %name, action = action.name(), "container event");
    let facts = EventFacts {
        action: action.name(),
        id: &id,
        name: &name,
        image: attributes.get("image").map_or("", String::as_str),
        labels: &attributes,
        time,
    };
    if let Some(logs) = shared
        .logs
        .as_ref()
        .filter(|_| shared.settings.events.allows(&facts))
    {
        let record = lifecycle_record(action, &name, &attributes, resource, time, now_nanos());
        logs.consume(Batch::from_resources(vec![record])).await;
    }
}
