//! Builds the component graph from `service.pipelines` and runs it: start in dependency order,
//! shut down upstream first so every stage drains into a still-running next stage.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use sluice_config::{
    ComponentConfig, ComponentId, ComponentRef, Config, ConfigErrors, Diagnostic, PipelineConfig,
    Pos, SignalKind,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::component::{
    BuildContext, FactoryInfo, Lifecycle, Receiver, ReceiverOutputs, Registry, StartError,
    unknown_type,
};
use crate::config_keys::ConfigWarnings;
use crate::consumer::AnyConsumer;
use crate::telemetry::{
    ConsoleClient, HealthRoutes, HealthState, OtlpClient, PeriodicPusher, PeriodicReader,
    PromOptions, Telemetry, TelemetryConfig, serve_health, serve_metrics,
};

pub use crate::telemetry::HealthCheckConfig;

/// Extension types sluice knows: the runtime implements `health_check` (and its newer name
/// `healthcheckv2`) and `file_storage`; `zpages` and `pprof` are accepted so that configs
/// written for the Collector start, with a warning that their pages are not served.
pub const EXTENSION_TYPES: &[&str] = &[
    "health_check",
    "healthcheckv2",
    crate::storage::FILE_STORAGE,
    "zpages",
    "pprof",
];

/// `extensions: zpages:`, accepted so configs start; its pages are not served yet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ZpagesConfig {
    /// Default `localhost:55679`.
    endpoint: Option<String>,
    /// Go's expvar page.
    expvar: Option<serde::de::IgnoredAny>,
    /// The HTTP server keys of the Collector (`tls`, `cors`, timeouts...).
    tls: Option<serde::de::IgnoredAny>,
    cors: Option<serde::de::IgnoredAny>,
    auth: Option<serde::de::IgnoredAny>,
    transport: Option<serde::de::IgnoredAny>,
    dialer: Option<serde::de::IgnoredAny>,
    read_timeout: Option<serde::de::IgnoredAny>,
    read_header_timeout: Option<serde::de::IgnoredAny>,
    write_timeout: Option<serde::de::IgnoredAny>,
    idle_timeout: Option<serde::de::IgnoredAny>,
    max_request_body_size: Option<serde::de::IgnoredAny>,
    include_metadata: Option<serde::de::IgnoredAny>,
    response_headers: Option<serde::de::IgnoredAny>,
    compression_algorithms: Option<serde::de::IgnoredAny>,
    keep_alives_enabled: Option<serde::de::IgnoredAny>,
    middlewares: Option<serde::de::IgnoredAny>,
}

/// `extensions: pprof:`, accepted so configs start; Go's profiler has no Rust counterpart.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PprofConfig {
    /// Default `localhost:1777`.
    endpoint: Option<String>,
    dialer: Option<serde::de::IgnoredAny>,
    block_profile_fraction: Option<serde::de::IgnoredAny>,
    mutex_profile_fraction: Option<serde::de::IgnoredAny>,
    save_to_file: Option<serde::de::IgnoredAny>,
}

/// An address to listen on, and whether the user chose it.
#[derive(Clone, Debug)]
struct Endpoint {
    address: String,
    configured: bool,
    pos: Option<Pos>,
    path: String,
}

struct Named<T> {
    name: String,
    item: T,
}

/// How long after `service.shutdown_timeout` components have to report what they lose.
const SHUTDOWN_ACCOUNTING_GRACE: Duration = Duration::from_secs(2);

/// A built, runnable collector.
pub struct Service {
    pub telemetry: Telemetry,
    pub telemetry_config: TelemetryConfig,
    receivers: Vec<(ComponentConfig, Arc<dyn Receiver>)>,
    /// Processors and connectors, in the order they must drain.
    stages: Vec<Named<Arc<dyn Lifecycle>>>,
    /// Each exporter's hooks, in its own shutdown order.
    exporters: Vec<Named<Vec<Arc<dyn Lifecycle>>>>,
    /// Prometheus endpoints (pull readers), each with how it writes the exposition.
    metrics_endpoints: Vec<(Endpoint, PromOptions)>,
    health_endpoint: Endpoint,
    health_routes: HealthRoutes,
    /// Periodic readers with their clients, started with the service.
    periodic: Vec<(PeriodicReader, Arc<dyn OtlpClient>)>,
    pushers: Vec<PeriodicPusher>,
    /// sluice's own resource, as its metrics describe it.
    resource: Vec<(String, String)>,
    /// `file_storage` extensions, whose directories are made at start.
    storage: crate::storage::StorageExtensions,
    shutdown_timeout: Duration,
    servers: Vec<JoinHandle<()>>,
    warnings: Vec<Diagnostic>,
}

fn dedup(errors: Vec<Diagnostic>) -> ConfigErrors {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for e in errors {
        if seen.insert(e.to_string()) {
            out.push(e);
        }
    }
    ConfigErrors(out)
}

fn at(r: &ComponentRef, message: String) -> Diagnostic {
    Diagnostic::new(Some(r.pos.clone()), r.path.clone(), message)
}

struct Graph<'a> {
    config: &'a Config,
    registry: &'a Registry,
    ctx: BuildContext,
    errors: Vec<Diagnostic>,
    connectors: HashMap<&'a ComponentId, &'a ComponentConfig>,
}

impl<'a> Graph<'a> {
    fn is_connector(&self, id: &ComponentId) -> bool {
        self.connectors.contains_key(id)
    }

    fn collect<T>(&mut self, result: Result<T, ConfigErrors>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.extend(e.0);
                None
            }
        }
    }

    /// Type and signal checks, all reported together.
    fn check_types(&mut self) {
        let registry = self.registry;
        let receiver_infos: Vec<FactoryInfo> =
            registry.receivers.iter().map(|f| f.info()).collect();
        let processor_infos: Vec<FactoryInfo> =
            registry.processors.iter().map(|f| f.info()).collect();
        let exporter_infos: Vec<FactoryInfo> =
            registry.exporters.iter().map(|f| f.info()).collect();
        let connector_infos: Vec<FactoryInfo> =
            registry.connectors.iter().map(|f| f.info()).collect();
        for c in &self.config.receivers {
            if registry.receiver(&c.id.type_name).is_none() {
                self.errors
                    .push(unknown_type(c, "receiver", &receiver_infos));
            }
        }
        for c in &self.config.processors {
            if registry.processor(&c.id.type_name).is_none() {
                self.errors
                    .push(unknown_type(c, "processor", &processor_infos));
            }
        }
        for c in &self.config.exporters {
            if registry.exporter(&c.id.type_name).is_none() {
                self.errors
                    .push(unknown_type(c, "exporter", &exporter_infos));
            }
        }
        for c in &self.config.connectors {
            if registry.connector(&c.id.type_name).is_none() {
                self.errors
                    .push(unknown_type(c, "connector", &connector_infos));
            }
        }
        let extension_infos: Vec<FactoryInfo> = EXTENSION_TYPES
            .iter()
            .map(|t| FactoryInfo {
                type_name: t,
                aliases: &[],
                signals: &[],
                description: "",
            })
            .collect();
        for c in &self.config.extensions {
            if !EXTENSION_TYPES.contains(&c.id.type_name.as_str()) {
                self.errors
                    .push(unknown_type(c, "extension", &extension_infos));
            }
        }

        let unsupported = |kind: &str, r: &ComponentRef, signal: SignalKind| {
            at(r, format!("{kind} `{}` does not support {signal}", r.id))
        };
        let mut connector_from: BTreeMap<&ComponentId, Vec<(SignalKind, &ComponentRef)>> =
            BTreeMap::new();
        let mut connector_to: BTreeMap<&ComponentId, Vec<(SignalKind, &ComponentRef)>> =
            BTreeMap::new();
        for p in &self.config.service.pipelines {
            let signal = p.id.signal;
            for r in &p.receivers {
                if self.is_connector(&r.id) {
                    connector_to.entry(&r.id).or_default().push((signal, r));
                } else if let Some(f) = registry.receiver(&r.id.type_name)
                    && !f.info().signals.contains(&signal)
                {
                    self.errors.push(unsupported("receiver", r, signal));
                }
            }
            for r in &p.processors {
                if let Some(f) = registry.processor(&r.id.type_name)
                    && !f.info().signals.contains(&signal)
                {
                    self.errors.push(unsupported("processor", r, signal));
                }
            }
            for r in &p.exporters {
                if self.is_connector(&r.id) {
                    connector_from.entry(&r.id).or_default().push((signal, r));
                } else if let Some(f) = registry.exporter(&r.id.type_name)
                    && !f.info().signals.contains(&signal)
                {
                    self.errors.push(unsupported("exporter", r, signal));
                }
            }
        }
        for id in self.connectors.keys() {
            let Some(factory) = registry.connector(&id.type_name) else {
                continue;
            };
            let froms = connector_from.get(id).cloned().unwrap_or_default();
            let tos = connector_to.get(id).cloned().unwrap_or_default();
            // A connector used on one side only is reported by the config checks.
            for (from, from_ref) in &froms {
                let joins_some = tos
                    .iter()
                    .any(|(to, _)| factory.pairs().contains(&(*from, *to)));
                if !joins_some {
                    self.errors.push(at(
                        from_ref,
                        format!(
                            "connector `{id}` cannot take {from} into any signal it feeds ({})",
                            tos.iter()
                                .map(|(s, _)| s.as_str())
                                .collect::<BTreeSet<_>>()
                                .into_iter()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            for (to, to_ref) in &tos {
                if !froms
                    .iter()
                    .any(|(from, _)| factory.pairs().contains(&(*from, *to)))
                {
                    self.errors.push(at(
                        to_ref,
                        format!("connector `{id}` cannot produce {to} from what it is given"),
                    ));
                }
            }
        }
    }

    /// Pipelines ordered so that a pipeline exporting to a connector comes before the
    /// pipelines that connector feeds; a cycle is an error.
    fn pipeline_order(&mut self) -> Vec<&'a PipelineConfig> {
        let pipelines = &self.config.service.pipelines;
        let mut indegree = vec![0usize; pipelines.len()];
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); pipelines.len()];
        for (up, p) in pipelines.iter().enumerate() {
            for e in p.exporters.iter().filter(|e| self.is_connector(&e.id)) {
                for (down, q) in pipelines.iter().enumerate() {
                    if q.receivers.iter().any(|r| r.id == e.id) {
                        edges[up].push(down);
                        indegree[down] += 1;
                    }
                }
            }
        }
        let mut ready: Vec<usize> = (0..pipelines.len())
            .filter(|&i| indegree[i] == 0)
            .rev()
            .collect();
        let mut order = Vec::new();
        while let Some(i) = ready.pop() {
            order.push(&pipelines[i]);
            for &d in &edges[i] {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.push(d);
                }
            }
        }
        if order.len() < pipelines.len() {
            let cyclic: Vec<String> = (0..pipelines.len())
                .filter(|&i| indegree[i] > 0)
                .map(|i| pipelines[i].id.to_string())
                .collect();
            self.errors.push(Diagnostic::new(
                None,
                "service.pipelines",
                format!(
                    "connectors form a cycle between pipelines {}",
                    cyclic.join(", ")
                ),
            ));
        }
        order
    }
}

/// A consumer for graph positions that failed to build; never run, since errors abort.
fn placeholder(signal: SignalKind) -> AnyConsumer {
    AnyConsumer::fanout(signal, Vec::new())
}

impl Service {
    /// Builds every component and wires the pipelines, reporting every problem at once.
    pub fn build(
        config: &Config,
        registry: &Registry,
        telemetry: Telemetry,
    ) -> Result<Service, ConfigErrors> {
        let mut graph = Graph {
            config,
            registry,
            ctx: BuildContext {
                telemetry: telemetry.clone(),
                ..BuildContext::default()
            },
            errors: Vec::new(),
            connectors: config.connectors.iter().map(|c| (&c.id, c)).collect(),
        };
        graph.check_types();
        // Storage first: exporters with a persistent queue look theirs up while building.
        let (storage, storage_errors) =
            crate::storage::build_extensions(config, &graph.ctx.warnings);
        graph.errors.extend(storage_errors);
        graph
            .errors
            .extend(crate::storage::check_references(config, &storage));
        graph.ctx.storage = storage;
        let telemetry_config: Option<TelemetryConfig> = graph.collect(TelemetryConfig::decode(
            &config.service.telemetry,
            &config.service.telemetry_path,
            &graph.ctx.warnings,
        ));
        let resource = telemetry_config
            .as_ref()
            .map(|t| t.resource_attributes(&telemetry.instance_id))
            .unwrap_or_default();
        let periodic = telemetry_config
            .as_ref()
            .map(|t| graph.periodic_clients(t, &telemetry))
            .unwrap_or_default();
        graph.check_extensions();
        let health = graph.health_endpoint();
        let order = graph.pipeline_order();
        // Building goes on after the checks above failed, so that every component's own
        // section is decoded and its problems reported in the same run. Unknown types and
        // signals a component does not support are left out of the build below.

        // Exporters: one instance per id, serving every signal some pipeline sends it.
        let mut exporter_signals: BTreeMap<&ComponentId, BTreeSet<SignalKind>> = BTreeMap::new();
        for p in &config.service.pipelines {
            for e in p.exporters.iter().filter(|e| !graph.is_connector(&e.id)) {
                exporter_signals
                    .entry(&e.id)
                    .or_default()
                    .insert(p.id.signal);
            }
        }
        let mut exporter_consumers: HashMap<(&ComponentId, SignalKind), AnyConsumer> =
            HashMap::new();
        let mut exporters = Vec::new();
        for (id, signals) in &exporter_signals {
            let Some(cfg) = config.exporters.iter().find(|c| &c.id == *id) else {
                continue;
            };
            let Some(factory) = registry.exporter(&id.type_name) else {
                continue;
            };
            let supported = factory.info().signals;
            let signals: Vec<SignalKind> = signals
                .iter()
                .copied()
                .filter(|s| supported.contains(s))
                .collect();
            let built =
                crate::component::build_exporter(factory.as_ref(), cfg, &signals, &graph.ctx);
            if let Some(built) = graph.collect(built) {
                for consumer in built.consumers {
                    exporter_consumers.insert((id, consumer.signal()), consumer);
                }
                exporters.push(Named {
                    name: format!("exporter {id}"),
                    item: built.lifecycles,
                });
            }
        }

        // Pipelines from the most downstream up, so every consumer exists before its producer.
        let mut heads: HashMap<&sluice_config::PipelineId, AnyConsumer> = HashMap::new();
        let mut pipeline_stages: HashMap<
            &sluice_config::PipelineId,
            Vec<Named<Arc<dyn Lifecycle>>>,
        > = HashMap::new();
        let mut connector_inputs: HashMap<(&ComponentId, SignalKind), AnyConsumer> = HashMap::new();
        let mut connector_stages: HashMap<&ComponentId, Vec<Named<Arc<dyn Lifecycle>>>> =
            HashMap::new();
        for p in order.iter().rev() {
            let signal = p.id.signal;
            let mut targets = Vec::new();
            for e in &p.exporters {
                if let Some(cfg) = graph.connectors.get(&e.id).copied() {
                    connector_inputs.entry((&e.id, signal)).or_insert_with(|| {
                        graph.build_connector(cfg, signal, &heads, &mut connector_stages)
                    });
                    if let Some(c) = connector_inputs.get(&(&e.id, signal)) {
                        targets.push(c.clone());
                    }
                } else if let Some(c) = exporter_consumers.get(&(&e.id, signal)) {
                    targets.push(c.clone());
                }
            }
            let mut next = AnyConsumer::fanout(signal, targets);
            let mut stages = Vec::new();
            for r in p.processors.iter().rev() {
                let Some(cfg) = config.processors.iter().find(|c| c.id == r.id) else {
                    continue;
                };
                let Some(factory) = registry.processor(&r.id.type_name) else {
                    continue;
                };
                if !factory.info().signals.contains(&signal) {
                    next = placeholder(signal);
                    continue;
                }
                match graph.collect(factory.build(cfg, next, &graph.ctx)) {
                    Some(built) => {
                        next = built.consumer;
                        if let Some(l) = built.lifecycle {
                            stages.push(Named {
                                name: format!("processor {} in pipeline {}", r.id, p.id),
                                item: l,
                            });
                        }
                    }
                    None => next = placeholder(signal),
                }
            }
            stages.reverse();
            pipeline_stages.insert(&p.id, stages);
            heads.insert(&p.id, next);
        }

        // Receivers: one instance per id, fanning out to every pipeline that lists it.
        let mut receivers = Vec::new();
        let mut seen = BTreeSet::new();
        for p in &config.service.pipelines {
            for r in &p.receivers {
                if graph.is_connector(&r.id) || !seen.insert(&r.id) {
                    continue;
                }
                let Some(cfg) = config.receivers.iter().find(|c| c.id == r.id) else {
                    continue;
                };
                let Some(factory) = registry.receiver(&r.id.type_name) else {
                    continue;
                };
                let mut outputs = ReceiverOutputs::default();
                let supported = factory.info().signals;
                for signal in SignalKind::ALL
                    .into_iter()
                    .filter(|s| supported.contains(s))
                {
                    let feeds: Vec<AnyConsumer> = config
                        .service
                        .pipelines
                        .iter()
                        .filter(|q| {
                            q.id.signal == signal && q.receivers.iter().any(|x| x.id == r.id)
                        })
                        .filter_map(|q| heads.get(&q.id).cloned())
                        .collect();
                    if !feeds.is_empty() {
                        outputs.set(AnyConsumer::fanout(signal, feeds));
                    }
                }
                if let Some(receiver) = graph.collect(factory.build(cfg, outputs, &graph.ctx)) {
                    receivers.push((cfg.clone(), receiver));
                }
            }
        }

        graph.check_unused();

        let Some(telemetry_config) = telemetry_config else {
            return Err(dedup(graph.errors));
        };
        if !graph.errors.is_empty() {
            return Err(dedup(graph.errors));
        }
        let Some(health_endpoint) = health else {
            return Err(dedup(graph.errors));
        };

        // Drain order: pipeline by pipeline upstream first; a connector once every pipeline
        // feeding it has drained, i.e. just before the first pipeline it feeds.
        let mut stages = Vec::new();
        let mut drained_connectors = BTreeSet::new();
        for p in &order {
            for r in &p.receivers {
                if graph.is_connector(&r.id) && drained_connectors.insert(&r.id) {
                    stages.extend(connector_stages.remove(&r.id).unwrap_or_default());
                }
            }
            stages.extend(pipeline_stages.remove(&p.id).unwrap_or_default());
        }

        let metrics_endpoints = telemetry_config
            .pull_endpoints(&resource)
            .into_iter()
            .map(|pull| {
                (
                    Endpoint {
                        address: pull.address,
                        configured: pull.configured,
                        pos: Some(config.service.telemetry.pos.clone()),
                        path: format!("{}.metrics", config.service.telemetry_path),
                    },
                    pull.options,
                )
            })
            .collect();
        Ok(Service {
            telemetry,
            telemetry_config,
            receivers,
            stages,
            exporters,
            metrics_endpoints,
            health_routes: health_endpoint.1,
            health_endpoint: health_endpoint.0,
            periodic,
            pushers: Vec::new(),
            resource,
            storage: graph.ctx.storage.clone(),
            shutdown_timeout: config.service.shutdown_timeout.0,
            servers: Vec::new(),
            warnings: graph.ctx.warnings.take(),
        })
    }

    /// Keys the config sets that sluice accepts without acting on them, each with why.
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// For `sluice validate`: every listen address that cannot be bound right now.
    pub async fn check_addresses(&self) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        for (cfg, receiver) in &self.receivers {
            for address in receiver.listen_addresses() {
                if let Err(e) = TcpListener::bind(crate::net::listen_address(&address)).await {
                    problems.push(Diagnostic::new(
                        Some(cfg.pos.clone()),
                        cfg.path.clone(),
                        format!("cannot listen on {address}: {e}"),
                    ));
                }
            }
        }
        let metrics = self.metrics_endpoints.iter().map(|(e, _)| e);
        for endpoint in metrics.chain([&self.health_endpoint]) {
            if endpoint.configured
                && let Err(e) =
                    TcpListener::bind(crate::net::listen_address(&endpoint.address)).await
            {
                problems.push(Diagnostic::new(
                    endpoint.pos.clone(),
                    endpoint.path.clone(),
                    format!("cannot listen on {}: {e}", endpoint.address),
                ));
            }
        }
        problems
    }

    /// Starts self-telemetry, then exporters, processors and receivers (downstream first), and
    /// reports ready.
    pub async fn start(&mut self) -> Result<(), StartError> {
        let health = self.telemetry.health.clone();
        health.set(HealthState::Starting);
        for warning in &self.warnings {
            tracing::warn!("config: {warning}");
        }
        for (endpoint, options) in self.metrics_endpoints.clone() {
            if let Some(listener) = bind_endpoint(&endpoint, "metrics").await? {
                self.servers.push(serve_metrics(
                    listener,
                    self.telemetry.metrics.clone(),
                    options,
                ));
            }
        }
        let endpoint = self.health_endpoint.clone();
        if let Some(listener) = bind_endpoint(&endpoint, "health").await? {
            self.servers.push(serve_health(
                listener,
                self.health_routes.clone(),
                health.clone(),
            ));
        }
        for (reader, client) in &self.periodic {
            self.pushers.push(PeriodicPusher::start(
                reader,
                client.clone(),
                self.telemetry.metrics.clone(),
                self.resource.clone(),
            ));
        }
        for storage in self.storage.iter() {
            storage.config.prepare_directory().map_err(|e| {
                StartError::new(format!("extensions.{}", storage.id), e.to_string())
            })?;
        }
        for exporter in &self.exporters {
            for lifecycle in exporter.item.iter().rev() {
                lifecycle.start().await?;
            }
        }
        for stage in self.stages.iter().rev() {
            stage.item.start().await?;
        }
        for (_, receiver) in &self.receivers {
            receiver.start().await?;
        }
        health.set(HealthState::Ready);
        tracing::info!(
            receivers = self.receivers.len(),
            exporters = self.exporters.len(),
            "sluice is ready"
        );
        Ok(())
    }

    /// Pushes everything held in processors and exporter queues on to its destination and
    /// waits for it, without stopping anything; stages go in drain order so what one hands on
    /// is in the next before that one flushes. Returns false if `deadline` cut it short.
    pub async fn flush(&self, deadline: Instant) -> bool {
        let mut complete = true;
        for stage in &self.stages {
            if tokio::time::timeout_at(deadline, stage.item.flush(deadline))
                .await
                .is_err()
            {
                tracing::warn!(stage = %stage.name, "flush deadline reached");
                complete = false;
            }
        }
        let results = futures::future::join_all(self.exporters.iter().map(|e| async move {
            // In order, as at shutdown: the queues drain into what they write to before that
            // flushes.
            let in_order = async {
                for lifecycle in &e.item {
                    lifecycle.flush(deadline).await;
                }
            };
            let done = tokio::time::timeout_at(deadline, in_order).await.is_ok();
            if !done {
                tracing::warn!(exporter = %e.name, "flush deadline reached");
            }
            done
        }))
        .await;
        complete && results.into_iter().all(|d| d)
    }

    /// Stops receiving, drains every stage in order and flushes exporters, all within the
    /// shutdown timeout.
    pub async fn shutdown(&mut self) {
        self.telemetry.health.set(HealthState::Draining);
        let deadline = Instant::now() + self.shutdown_timeout;
        // Components stop their work at `deadline` and then count and report what they could
        // not hand on; they get this long after it to do so before they are cut off.
        let cut_off = deadline + SHUTDOWN_ACCOUNTING_GRACE;
        futures::future::join_all(self.receivers.iter().map(|(_, r)| r.shutdown(deadline))).await;
        for stage in &self.stages {
            if tokio::time::timeout_at(cut_off, stage.item.shutdown(deadline))
                .await
                .is_err()
            {
                tracing::error!(stage = %stage.name, "shutdown timeout reached while draining");
            }
        }
        // Exporters flush in parallel; each one's own parts stop in order.
        futures::future::join_all(self.exporters.iter().map(|e| async move {
            let in_order = async {
                for lifecycle in &e.item {
                    lifecycle.shutdown(deadline).await;
                }
            };
            if tokio::time::timeout_at(cut_off, in_order).await.is_err() {
                tracing::error!(exporter = %e.name, "exporter did not stop after the shutdown timeout; what it held is lost and could not be counted");
            }
        }))
        .await;
        // Last, so the final push has what every component counted while stopping.
        for pusher in self.pushers.drain(..) {
            pusher.stop(SHUTDOWN_ACCOUNTING_GRACE).await;
        }
        for server in self.servers.drain(..) {
            server.abort();
        }
        tracing::info!("sluice stopped");
    }
}

/// Binds a self-telemetry endpoint. The default address being taken (another collector on
/// the host) is a warning; an address the user chose is an error.
async fn bind_endpoint(endpoint: &Endpoint, what: &str) -> Result<Option<TcpListener>, StartError> {
    match TcpListener::bind(crate::net::listen_address(&endpoint.address)).await {
        Ok(l) => {
            tracing::info!(address = %endpoint.address, "{what} endpoint listening");
            Ok(Some(l))
        }
        Err(e) if !endpoint.configured => {
            tracing::warn!(address = %endpoint.address, error = %e, "default {what} address unavailable; running without the {what} endpoint");
            Ok(None)
        }
        Err(e) => Err(StartError::new(
            &endpoint.path,
            format!("cannot listen on {}: {e}", endpoint.address),
        )),
    }
}

impl<'a> Graph<'a> {
    /// The health endpoint: the `health_check` extension's if the service enables one, else the
    /// default address.
    fn health_endpoint(&mut self) -> Option<(Endpoint, HealthRoutes)> {
        let enabled = self
            .config
            .service
            .extensions
            .iter()
            .find(|r| matches!(r.id.type_name.as_str(), "health_check" | "healthcheckv2"));
        let Some(r) = enabled else {
            return Some((
                Endpoint {
                    address: crate::telemetry::DEFAULT_HEALTH_ENDPOINT.into(),
                    configured: false,
                    pos: None,
                    path: "extensions.health_check".into(),
                },
                HealthRoutes::default(),
            ));
        };
        let cfg = self.config.extensions.iter().find(|c| c.id == r.id)?;
        let routes = HealthCheckConfig::decode(cfg, &ConfigWarnings::default()).ok()?;
        Some((
            Endpoint {
                address: routes.endpoint.clone(),
                configured: true,
                pos: Some(cfg.pos.clone()),
                path: format!("{}.endpoint", cfg.path),
            },
            routes,
        ))
    }

    /// Every extension's own section is checked, used or not, as the Collector does; the
    /// ones whose work sluice does not do yet are accepted with a warning.
    fn check_extensions(&mut self) {
        let warnings = self.ctx.warnings.clone();
        for c in &self.config.extensions {
            match c.id.type_name.as_str() {
                "health_check" | "healthcheckv2" => {
                    self.collect(HealthCheckConfig::decode(c, &warnings));
                }
                "zpages"
                    if self
                        .collect(crate::config_keys::decode_section::<ZpagesConfig>(
                            c,
                            &[],
                            &warnings,
                        ))
                        .is_some() =>
                {
                    warnings.push(Diagnostic::new(
                        Some(c.pos.clone()),
                        c.path.clone(),
                        "accepted, not served yet: sluice has no zPages; its state is in the \
                         metrics endpoint and the log",
                    ));
                }
                "pprof"
                    if self
                        .collect(crate::config_keys::decode_section::<PprofConfig>(
                            c,
                            &[],
                            &warnings,
                        ))
                        .is_some() =>
                {
                    warnings.push(Diagnostic::new(
                        Some(c.pos.clone()),
                        c.path.clone(),
                        "accepted, not served: Go's pprof profiler has no counterpart in sluice \
                         (use perf or a heap profiler on the process)",
                    ));
                }
                _ => {}
            }
        }
    }

    /// The OTLP clients of the periodic metric readers; a reader that cannot have one is a
    /// config error.
    fn periodic_clients(
        &mut self,
        telemetry_config: &TelemetryConfig,
        telemetry: &Telemetry,
    ) -> Vec<(PeriodicReader, Arc<dyn OtlpClient>)> {
        let node = &self.config.service.telemetry;
        let path = &self.config.service.telemetry_path;
        let mut out = Vec::new();
        let readers = telemetry_config.periodic_readers();
        for (i, reader) in telemetry_config
            .metrics
            .readers
            .iter()
            .enumerate()
            .filter(|(_, r)| r.periodic.is_some())
        {
            let Some(periodic) = &reader.periodic else {
                continue;
            };
            if !readers.iter().any(|r| std::ptr::eq(*r, periodic)) {
                continue;
            }
            let key = format!("metrics.readers.{i}.periodic.exporter.otlp");
            let client: Result<Arc<dyn OtlpClient>, String> = match &periodic.exporter.otlp {
                None => Ok(Arc::new(ConsoleClient)),
                Some(target) => match &telemetry.otlp_client {
                    Some(build) => build(target),
                    None => Err("this build of sluice has no OTLP client".into()),
                },
            };
            match client {
                Ok(c) => out.push((periodic.clone(), c)),
                Err(e) => self
                    .errors
                    .push(crate::telemetry::telemetry_problem(node, path, &key, &e)),
            }
        }
        out
    }

    /// Components defined but in no pipeline are not run, but their settings are still checked
    /// (with throwaway telemetry, so they leave no series behind), as the Collector does.
    fn check_unused(&mut self) {
        let used: BTreeSet<&ComponentId> = self
            .config
            .service
            .pipelines
            .iter()
            .flat_map(|p| p.receivers.iter().chain(&p.processors).chain(&p.exporters))
            .map(|r| &r.id)
            .collect();
        // Throwaway telemetry, but the warnings are the service's, so `validate` shows them.
        let ctx = BuildContext {
            warnings: self.ctx.warnings.clone(),
            ..BuildContext::default()
        };
        let registry = self.registry;
        let config = self.config;
        let unused = |c: &&ComponentConfig| !used.contains(&c.id);
        let not_used = |c: &ComponentConfig| {
            Diagnostic::new(
                Some(c.pos.clone()),
                c.path.clone(),
                "defined but not used in any pipeline: it is checked, not run",
            )
        };
        for c in config.receivers.iter().filter(unused) {
            if let Some(f) = registry.receiver(&c.id.type_name) {
                ctx.warnings.push(not_used(c));
                // Outputs for every signal it produces, so it is checked as it would be built
                // in a pipeline (a receiver refuses to be built for nothing).
                let mut outputs = ReceiverOutputs::default();
                for signal in f.info().signals {
                    outputs.set(placeholder(*signal));
                }
                self.collect(f.build(c, outputs, &ctx));
            }
        }
        for c in config.processors.iter().filter(unused) {
            if let Some(f) = registry.processor(&c.id.type_name) {
                ctx.warnings.push(not_used(c));
                let signal = f
                    .info()
                    .signals
                    .first()
                    .copied()
                    .unwrap_or(SignalKind::Traces);
                self.collect(f.build(c, placeholder(signal), &ctx));
            }
        }
        for c in config.exporters.iter().filter(unused) {
            if let Some(f) = registry.exporter(&c.id.type_name) {
                ctx.warnings.push(not_used(c));
                let signals: Vec<SignalKind> =
                    f.info().signals.first().copied().into_iter().collect();
                self.collect(crate::component::build_exporter(
                    f.as_ref(),
                    c,
                    &signals,
                    &ctx,
                ));
            }
        }
        for c in config.connectors.iter().filter(unused) {
            if let Some(f) = registry.connector(&c.id.type_name) {
                ctx.warnings.push(not_used(c));
                if let Some((from, to)) = f.pairs().first().copied() {
                    self.collect(f.build(c, from, placeholder(to), &ctx));
                }
            }
        }
    }

    /// Builds a connector's `from` side feeding the pipelines that receive from it.
    fn build_connector(
        &mut self,
        cfg: &'a ComponentConfig,
        from: SignalKind,
        heads: &HashMap<&sluice_config::PipelineId, AnyConsumer>,
        stages: &mut HashMap<&'a ComponentId, Vec<Named<Arc<dyn Lifecycle>>>>,
    ) -> AnyConsumer {
        let Some(factory) = self.registry.connector(&cfg.id.type_name) else {
            return placeholder(from);
        };
        let mut inputs = Vec::new();
        for to in SignalKind::ALL {
            if !factory.pairs().contains(&(from, to)) {
                continue;
            }
            let feeds: Vec<AnyConsumer> = self
                .config
                .service
                .pipelines
                .iter()
                .filter(|q| q.id.signal == to && q.receivers.iter().any(|r| r.id == cfg.id))
                .filter_map(|q| heads.get(&q.id).cloned())
                .collect();
            if feeds.is_empty() {
                continue;
            }
            let output = AnyConsumer::fanout(to, feeds);
            if let Some(built) = self.collect(factory.build(cfg, from, output, &self.ctx)) {
                inputs.push(built.consumer);
                if let Some(l) = built.lifecycle {
                    stages.entry(&cfg.id).or_default().push(Named {
                        name: format!("connector {}", cfg.id),
                        item: l,
                    });
                }
            }
        }
        AnyConsumer::fanout(from, inputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::component::{
        BuiltExporter, BuiltStage, ExporterFactory, ProcessorFactory, ReceiverFactory,
    };
    use async_trait::async_trait;
    use std::sync::Mutex;

    type Journal = Arc<Mutex<Vec<String>>>;

    /// Records flushes; `stall` never finishes one.
    struct Probe {
        name: String,
        journal: Journal,
        stall: bool,
    }

    #[async_trait]
    impl Lifecycle for Probe {
        async fn flush(&self, _deadline: Instant) {
            self.journal.lock().unwrap().push(self.name.clone());
            if self.stall {
                futures::future::pending::<()>().await;
            }
        }
    }

    impl Receiver for Probe {}

    struct Factories(Journal);

    const ALL: &[SignalKind] = &SignalKind::ALL;

    fn info(type_name: &'static str) -> FactoryInfo {
        FactoryInfo {
            type_name,
            aliases: &[],
            signals: ALL,
            description: "",
        }
    }

    impl Factories {
        fn probe(&self, config: &ComponentConfig) -> Arc<Probe> {
            Arc::new(Probe {
                name: config.id.to_string(),
                journal: self.0.clone(),
                stall: config.id.to_string().contains("stall"),
            })
        }
    }

    impl ReceiverFactory for Factories {
        fn info(&self) -> FactoryInfo {
            info("probe")
        }
        fn build(
            &self,
            config: &ComponentConfig,
            _outputs: ReceiverOutputs,
            _ctx: &BuildContext,
        ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
            Ok(self.probe(config))
        }
    }

    impl ProcessorFactory for Factories {
        fn info(&self) -> FactoryInfo {
            info("probe")
        }
        fn build(
            &self,
            config: &ComponentConfig,
            next: AnyConsumer,
            _ctx: &BuildContext,
        ) -> Result<BuiltStage, ConfigErrors> {
            Ok(BuiltStage {
                consumer: next,
                lifecycle: Some(self.probe(config)),
            })
        }
    }

    impl ExporterFactory for Factories {
        fn info(&self) -> FactoryInfo {
            info("probe")
        }
        fn build(
            &self,
            config: &ComponentConfig,
            _settings: crate::exporter::HelperSettings,
            _signals: &[SignalKind],
            _ctx: &BuildContext,
        ) -> Result<BuiltExporter, ConfigErrors> {
            Ok(BuiltExporter {
                consumers: vec![AnyConsumer::fanout(SignalKind::Logs, Vec::new())],
                lifecycles: vec![self.probe(config)],
            })
        }
    }

    fn service(yaml: &str, journal: &Journal) -> Service {
        let node = sluice_config::load(
            &[sluice_config::Source {
                name: "test".into(),
                text: yaml.into(),
            }],
            &[],
            &|_| None,
        )
        .unwrap();
        let (config, errors) = Config::from_node_lenient(&node);
        assert!(errors.is_empty(), "{errors:?}");
        let f = Arc::new(Factories(journal.clone()));
        let registry = Registry {
            receivers: vec![f.clone()],
            processors: vec![f.clone()],
            exporters: vec![f],
            connectors: Vec::new(),
        };
        match Service::build(&config, &registry, Telemetry::default()) {
            Ok(s) => s,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[tokio::test]
    async fn flush_goes_through_processors_in_order_then_exporters() {
        let journal = Journal::default();
        let s = service(
            "receivers: {probe: }\nprocessors: {probe/a: , probe/b: }\nexporters: {probe/x: }\n\
             service: {pipelines: {logs: {receivers: [probe], processors: [probe/a, probe/b], exporters: [probe/x]}}}\n",
            &journal,
        );
        assert!(s.flush(Instant::now() + Duration::from_secs(5)).await);
        assert_eq!(*journal.lock().unwrap(), ["probe/a", "probe/b", "probe/x"]);
    }

    #[tokio::test]
    async fn a_stuck_stage_makes_flush_give_up_at_the_deadline() {
        let journal = Journal::default();
        let s = service(
            "receivers: {probe: }\nprocessors: {probe/stall: }\nexporters: {probe/x: }\n\
             service: {pipelines: {logs: {receivers: [probe], processors: [probe/stall], exporters: [probe/x]}}}\n",
            &journal,
        );
        assert!(!s.flush(Instant::now() + Duration::from_millis(20)).await);
    }
}
