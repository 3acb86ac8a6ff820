//! The `prometheus` receiver: scrapes Prometheus and OpenMetrics endpoints as Prometheus
//! does (its `scrape_configs`, target and metric relabelling, limits, file and HTTP service
//! discovery) and turns what it reads into OTLP metrics by the OTel Collector's rules.

mod client;
mod config;
mod discovery;
mod relabel;
mod scrape;
mod text;
mod translate;

#[cfg(test)]
mod tests;

pub use config::PrometheusReceiverConfig;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sluice_config::{ComponentConfig, ConfigErrors, Diagnostic, SignalKind};
use sluice_pipeline::{
    BuildContext, FactoryInfo, Lifecycle, Receiver, ReceiverFactory, ReceiverOutputs, StartError,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use config::ScrapeConfig;
use discovery::{SourcedGroup, Target};
use scrape::Job;

pub struct PrometheusReceiverFactory;

impl ReceiverFactory for PrometheusReceiverFactory {
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "prometheus",
            aliases: &[],
            signals: &[SignalKind::Metrics],
            description: "scrapes Prometheus and OpenMetrics endpoints (scrape_configs, relabelling, file and HTTP discovery)",
        }
    }

    fn build(
        &self,
        config: &ComponentConfig,
        outputs: ReceiverOutputs,
        ctx: &BuildContext,
    ) -> Result<Arc<dyn Receiver>, ConfigErrors> {
        let cfg = config::decode(config, &ctx.warnings)?;
        let Some(consumer) = outputs.metrics else {
            return Err(Diagnostic::new(
                Some(config.pos.clone()),
                config.path.clone(),
                "the prometheus receiver only produces metrics; use it in a metrics pipeline",
            )
            .into());
        };
        let name = config.id.to_string();
        let accepted = ctx.telemetry.metrics.counter(
            "otelcol_receiver_accepted_metric_points",
            "Number of metric_points successfully pushed into the pipeline",
            &[("receiver", &name), ("transport", "http")],
        );
        let prom = cfg.config.clone().unwrap_or_default();
        let mut scrape_configs = prom.scrape_configs.clone();
        let mut errors = Vec::new();
        for pattern in &prom.scrape_config_files {
            match load_scrape_config_files(pattern) {
                Ok(more) => scrape_configs.extend(more),
                Err(e) => errors.push(sluice_pipeline::config_keys::problem(
                    config,
                    "config.scrape_config_files",
                    e,
                )),
            }
        }
        let start_time_metric = cfg.use_start_time_metric.then(|| {
            let pattern = cfg
                .start_time_metric_regex
                .clone()
                .unwrap_or_else(|| "^process_start_time_seconds$".into());
            regex::Regex::new(&pattern).ok()
        });
        let mut jobs = Vec::new();
        for (i, sc) in scrape_configs.iter().enumerate() {
            let at = |field: &str, message: String| {
                sluice_pipeline::config_keys::problem(
                    config,
                    &format!("config.scrape_configs.{i}"),
                    if field.is_empty() {
                        message
                    } else {
                        format!("{field}: {message}")
                    },
                )
            };
            match build_job(
                sc,
                &prom.global,
                &cfg,
                &name,
                start_time_metric.clone().flatten(),
                &consumer,
                &accepted,
            ) {
                Ok(job) => jobs.push(job),
                Err(e) => errors.push(at("", e)),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Arc::new(PrometheusReceiver {
            jobs,
            running: Mutex::new(Vec::new()),
        }))
    }
}

fn load_scrape_config_files(pattern: &str) -> Result<Vec<ScrapeConfig>, String> {
    let mut out = Vec::new();
    for (path, _) in discovery::file_stamps(&[pattern.to_string()]) {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{name}: {e}"))?;
        let node = sluice_config::parse_yaml(&name, &text).map_err(|e| e.to_string())?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            scrape_configs: Vec<ScrapeConfig>,
        }
        let file: File = sluice_config::decode(&node, &name).map_err(|e| e.to_string())?;
        out.extend(file.scrape_configs);
    }
    Ok(out)
}

/// A scrape config ready to run: its shared job settings and where its targets come from.
struct JobSpec {
    job: Arc<Job>,
    config: ScrapeConfig,
    rules: Vec<relabel::Rule>,
    interval: Duration,
    timeout: Duration,
    target_limit: u64,
    /// One per `http_sd_configs` entry, in order.
    sd_clients: Vec<reqwest::Client>,
}

#[allow(clippy::too_many_arguments)]
fn build_job(
    sc: &ScrapeConfig,
    global: &config::Global,
    cfg: &PrometheusReceiverConfig,
    receiver: &str,
    start_time_metric: Option<regex::Regex>,
    consumer: &sluice_pipeline::DynConsumer<sluice_pipeline::Metrics>,
    accepted: &sluice_pipeline::telemetry::Counter,
) -> Result<JobSpec, String> {
    let mut problems = Vec::new();
    config::check_scrape_config(sc, global, &mut |field, message| {
        problems.push(if field.is_empty() {
            message
        } else {
            format!("{field}: {message}")
        })
    });
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let client = client::build_client(&client::ClientOptions::of_scrape(sc))?;
    // Each discovery URL is reached with its own entry's settings (TLS, proxy, redirects),
    // as in Prometheus: a job's scrape TLS says nothing about the discovery server.
    let sd_clients = sc
        .http_sd_configs
        .iter()
        .enumerate()
        .map(|(i, sd)| {
            client::build_client(&client::ClientOptions::of_http_sd(sd))
                .map_err(|e| format!("http_sd_configs[{i}]: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let auth = client::Auth::from_config(
        &sc.basic_auth,
        &sc.authorization,
        &sc.bearer_token,
        &sc.bearer_token_file,
    );
    client::check_auth(&auth)?;
    client::extra_headers(&sc.http_headers)?;
    let (interval, timeout) = config::intervals(sc, global);
    let protocols = sc
        .scrape_protocols
        .clone()
        .or_else(|| global.scrape_protocols.clone())
        .unwrap_or_else(scrape::default_protocols);
    let fallback = sc.fallback_scrape_protocol.as_deref().map(|p| {
        if p.starts_with("OpenMetrics") {
            text::Format::OpenMetrics
        } else {
            text::Format::Text
        }
    });
    let pick = |own: Option<u64>, global: Option<u64>| own.or(global).unwrap_or(0);
    let metric_relabel = sc
        .metric_relabel_configs
        .iter()
        .map(|r| r.compile())
        .collect::<Result<Vec<_>, _>>()?;
    let rules = sc
        .relabel_configs
        .iter()
        .map(|r| r.compile())
        .collect::<Result<Vec<_>, _>>()?;
    let job = Arc::new(Job {
        name: sc.job_name.clone(),
        receiver: receiver.to_string(),
        client: client.clone(),
        auth,
        headers: sc.http_headers.clone(),
        accept: scrape::accept_header(&protocols),
        fallback,
        compression: sc.enable_compression.unwrap_or(true),
        honor_labels: sc.honor_labels,
        honor_timestamps: sc.honor_timestamps.unwrap_or(true),
        metric_relabel,
        limits: scrape::Limits {
            samples: pick(sc.sample_limit, global.sample_limit),
            labels: pick(sc.label_limit, global.label_limit),
            label_name_length: pick(sc.label_name_length_limit, global.label_name_length_limit),
            label_value_length: pick(sc.label_value_length_limit, global.label_value_length_limit),
            body_bytes: sc
                .body_size_limit
                .or(global.body_size_limit)
                .map(|s| s.0)
                .unwrap_or(0),
        },
        failure_log: sc
            .scrape_failure_log_file
            .clone()
            .or_else(|| global.scrape_failure_log_file.clone())
            .map(Into::into),
        extra_metrics: cfg.report_extra_scrape_metrics,
        settings: translate::Settings {
            trim_metric_suffixes: cfg.trim_metric_suffixes,
            track_timestamps_staleness: sc.track_timestamps_staleness,
            start_time_metric,
        },
        consumer: consumer.clone(),
        accepted: accepted.clone(),
    });
    Ok(JobSpec {
        job,
        config: sc.clone(),
        rules,
        interval,
        timeout,
        target_limit: pick(sc.target_limit, global.target_limit),
        sd_clients,
    })
}

pub struct PrometheusReceiver {
    jobs: Vec<JobSpec>,
    running: Mutex<Vec<JoinHandle<()>>>,
}

#[async_trait]
impl Lifecycle for PrometheusReceiver {
    async fn start(&self) -> Result<(), StartError> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        for spec in &self.jobs {
            running.push(tokio::spawn(manage_job(JobRunner {
                job: spec.job.clone(),
                config: spec.config.clone(),
                rules: spec.rules.clone(),
                interval: spec.interval,
                timeout: spec.timeout,
                target_limit: spec.target_limit,
                sd_clients: spec.sd_clients.clone(),
            })));
        }
        Ok(())
    }

    async fn shutdown(&self, _deadline: Instant) {
        let tasks = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        // Aborting a job manager drops its target tasks' handles, which aborts them too.
        for task in tasks {
            task.abort();
        }
    }
}

impl Receiver for PrometheusReceiver {}

struct JobRunner {
    job: Arc<Job>,
    config: ScrapeConfig,
    rules: Vec<relabel::Rule>,
    interval: Duration,
    timeout: Duration,
    target_limit: u64,
    sd_clients: Vec<reqwest::Client>,
}

/// A target's scrape loop, aborted when dropped.
struct TargetTask {
    handle: JoinHandle<()>,
    /// Started failing on purpose (`target_limit` was exceeded): it never scrapes, so it
    /// must be replaced by a real one once the job is back under the limit.
    forced: bool,
}

impl Drop for TargetTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Brings the running target tasks in line with the discovered `targets`: gone targets stop,
/// new ones start. Over `target_limit` every target runs a task that only reports the failure
/// (Prometheus fails the whole job); back under it those are replaced by scraping ones.
fn reconcile(
    running: &mut HashMap<Target, TargetTask>,
    targets: &[Target],
    target_limit: u64,
    spawn: &mut dyn FnMut(&Target, Option<String>) -> JoinHandle<()>,
) {
    let over = target_limit > 0 && targets.len() as u64 > target_limit;
    let forced = over.then(|| {
        format!(
            "target_limit exceeded ({} targets, limit {target_limit})",
            targets.len()
        )
    });
    if over {
        // The failure message names the count, which changed: restart them all with it.
        running.clear();
    } else {
        running.retain(|t, task| !task.forced && targets.contains(t));
    }
    for target in targets {
        if !running.contains_key(target) {
            let handle = spawn(target, forced.clone());
            running.insert(
                target.clone(),
                TargetTask {
                    handle,
                    forced: over,
                },
            );
        }
    }
}

/// How often discovery files are checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(2);

async fn manage_job(runner: JobRunner) {
    let sc = &runner.config;
    let mut running: HashMap<Target, TargetTask> = HashMap::new();
    let static_groups: Vec<SourcedGroup> = sc
        .static_configs
        .iter()
        .map(|g| SourcedGroup {
            group: g.clone(),
            source_labels: Vec::new(),
        })
        .collect();
    let mut file_groups: Vec<Vec<SourcedGroup>> = vec![Vec::new(); sc.file_sd_configs.len()];
    let mut file_stamps: Vec<Vec<_>> = vec![Vec::new(); sc.file_sd_configs.len()];
    let mut file_read_at: Vec<Option<std::time::Instant>> = vec![None; sc.file_sd_configs.len()];
    let mut http_groups: Vec<Vec<SourcedGroup>> = vec![Vec::new(); sc.http_sd_configs.len()];
    let mut http_polled_at: Vec<Option<std::time::Instant>> = vec![None; sc.http_sd_configs.len()];
    let http_auth: Vec<client::Auth> = sc
        .http_sd_configs
        .iter()
        .map(|h| client::Auth::from_config(&h.basic_auth, &h.authorization, &None, &None))
        .collect();
    let mut previous_targets: Option<Vec<Target>> = None;
    loop {
        for (i, fsd) in sc.file_sd_configs.iter().enumerate() {
            let refresh = fsd
                .refresh_interval
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(300));
            let stamps = discovery::file_stamps(&fsd.files);
            let due = file_read_at[i].is_none_or(|at| at.elapsed() >= refresh);
            if stamps != file_stamps[i] || due {
                let mut groups = Vec::new();
                for (path, _) in &stamps {
                    match discovery::read_file_groups(path) {
                        Ok(found) => groups.extend(found.into_iter().map(|group| SourcedGroup {
                            group,
                            source_labels: vec![(
                                "__meta_filepath".into(),
                                path.display().to_string(),
                            )],
                        })),
                        // A file being rewritten may be read half-written: keep the last
                        // good groups until it reads whole.
                        Err(e) => {
                            tracing::warn!(job = %sc.job_name, error = %e, "cannot read a file_sd file; keeping its last targets");
                            groups = file_groups[i].clone();
                            break;
                        }
                    }
                }
                file_groups[i] = groups;
                file_stamps[i] = stamps;
                file_read_at[i] = Some(std::time::Instant::now());
            }
        }
        for (i, hsd) in sc.http_sd_configs.iter().enumerate() {
            let refresh = hsd
                .refresh_interval
                .map(|d| d.0)
                .unwrap_or(Duration::from_secs(60));
            if http_polled_at[i].is_none_or(|at| at.elapsed() >= refresh) {
                http_polled_at[i] = Some(std::time::Instant::now());
                let Some(sd_client) = runner.sd_clients.get(i) else {
                    continue;
                };
                match discovery::fetch_http_groups(sd_client, hsd, &http_auth[i]).await {
                    Ok(groups) => http_groups[i] = groups,
                    Err(e) => {
                        tracing::warn!(job = %sc.job_name, error = %e, "http_sd_configs: cannot fetch targets; keeping the last ones")
                    }
                }
            }
        }
        let mut groups = static_groups.clone();
        groups.extend(file_groups.iter().flatten().cloned());
        groups.extend(http_groups.iter().flatten().cloned());
        let (targets, problems) =
            discovery::populate(sc, &runner.rules, runner.interval, runner.timeout, &groups);
        if previous_targets.as_ref() != Some(&targets) {
            for p in problems {
                tracing::warn!(job = %sc.job_name, problem = %p, "target skipped");
            }
            reconcile(
                &mut running,
                &targets,
                runner.target_limit,
                &mut |target, forced| {
                    tokio::spawn(scrape::run(runner.job.clone(), target.clone(), forced))
                },
            );
            previous_targets = Some(targets);
        }
        if sc.file_sd_configs.is_empty() && sc.http_sd_configs.is_empty() {
            // Static targets never change: wait until aborted.
            futures::future::pending::<()>().await;
        }
        tokio::time::sleep(FILE_CHECK).await;
    }
}
