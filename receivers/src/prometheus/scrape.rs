//! One target's scrape loop: at its own offset inside the interval, a request bounded in time
//! and size, the body parsed and relabelled, then translated and sent with the synthetic
//! `up`/`scrape_*` gauges. A failing target reports `up` 0 and is logged once per outage.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT,
};
use sluice_pipeline::telemetry::Counter;
use sluice_pipeline::{Batch, DynConsumer, Metrics};

use super::client::Auth;
use super::discovery::Target;
use super::relabel::{self, Labels, Rule};
use super::text::{self, Format, Sample};
use super::translate::{self, Scrape, Settings, TargetState};

/// What every target of a scrape config shares.
pub struct Job {
    pub name: String,
    pub receiver: String,
    pub client: reqwest::Client,
    pub auth: Auth,
    pub headers: Option<std::collections::BTreeMap<String, super::config::HeaderValues>>,
    pub accept: String,
    pub fallback: Option<Format>,
    pub compression: bool,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel: Vec<Rule>,
    pub limits: Limits,
    pub failure_log: Option<PathBuf>,
    pub extra_metrics: bool,
    pub settings: Settings,
    pub consumer: DynConsumer<Metrics>,
    pub accepted: Counter,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    pub samples: u64,
    pub labels: u64,
    pub label_name_length: u64,
    pub label_value_length: u64,
    pub body_bytes: u64,
}

/// sluice bounds every body even when no `body_size_limit` is set: a target must not be able
/// to make the collector buffer without bound.
pub const DEFAULT_BODY_LIMIT: u64 = 64 << 20;

/// The `Accept` header for the configured protocols, weighted as Prometheus weights them.
pub fn accept_header(protocols: &[String]) -> String {
    let mut parts = Vec::new();
    for p in protocols {
        let media = match p.as_str() {
            "OpenMetricsText1.0.0" => "application/openmetrics-text;version=1.0.0",
            "OpenMetricsText0.0.1" => "application/openmetrics-text;version=0.0.1",
            "PrometheusText0.0.4" => "text/plain;version=0.0.4",
            // The protobuf and UTF-8 text formats are not read by sluice: not asked for.
            _ => continue,
        };
        if parts.is_empty() {
            parts.push(media.to_string());
        } else {
            let weight = (1.0 - 0.25 * parts.len() as f64).max(0.2);
            let q = format!("{weight:.2}");
            parts.push(format!("{media};q={}", q.trim_end_matches('0')));
        }
    }
    parts.push("*/*;q=0.1".into());
    parts.join(",")
}

pub fn default_protocols() -> Vec<String> {
    vec![
        "OpenMetricsText1.0.0".into(),
        "OpenMetricsText0.0.1".into(),
        "PrometheusText0.0.4".into(),
    ]
}

/// Where inside the interval a target is scraped: the same target always gets the same
/// offset, and targets spread over the whole interval instead of all starting together.
pub fn offset(target: &Target, receiver: &str, interval: Duration) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    receiver.hash(&mut h);
    target.url.hash(&mut h);
    target.labels.hash(&mut h);
    let nanos = interval.as_nanos().max(1) as u64;
    Duration::from_nanos(h.finish() % nanos)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Scrapes `target` every interval until the task is aborted. `forced_failure` stands in for
/// a scrape (the job's `target_limit` was exceeded).
pub async fn run(job: Arc<Job>, target: Target, forced_failure: Option<String>) {
    tokio::time::sleep(offset(&target, &job.receiver, target.interval)).await;
    let mut ticker = tokio::time::interval(target.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = TargetState::default();
    let mut down = false;
    loop {
        ticker.tick().await;
        // Prometheus' scrape time: millisecond precision.
        let time_ns = now_ns() / 1_000_000 * 1_000_000;
        let started = Instant::now();
        let outcome = match &forced_failure {
            Some(reason) => Err(reason.clone()),
            None => fetch(&job, &target).await,
        };
        let resource = match outcome.and_then(|(body, format)| {
            let exposition = text::parse(&body, format)
                .map_err(|e| format!("cannot parse the response: {e}"))?;
            let body_size = body.len();
            let scraped = exposition.samples.len();
            let samples = relabel_samples(&job, &target.labels, exposition.samples)?;
            Ok((exposition.metadata, samples, scraped, body_size))
        }) {
            Ok((metadata, samples, scraped, body_size)) => {
                if down {
                    tracing::info!(receiver = %job.receiver, job = %job.name, target = %target.url, "target is up again");
                    down = false;
                }
                let post = samples.len();
                let duration = started.elapsed().as_secs_f64();
                let synthetic = |added: usize| {
                    synthetic_samples(
                        &job, &target, 1.0, duration, scraped, post, added, body_size,
                    )
                };
                let (resource, _) = translate::translate(
                    &mut state,
                    &job.settings,
                    &target.labels,
                    &target.scheme,
                    Scrape {
                        samples,
                        metadata: &metadata,
                        time_ns,
                    },
                    &synthetic,
                );
                resource
            }
            Err(reason) => {
                if !down {
                    tracing::warn!(receiver = %job.receiver, job = %job.name, target = %target.url, error = %reason, "scrape failed; up is 0 until it succeeds again (logged once per outage)");
                    down = true;
                }
                log_failure(&job, &target, &reason);
                let duration = started.elapsed().as_secs_f64();
                let synthetic = synthetic_samples(&job, &target, 0.0, duration, 0, 0, 0, 0);
                translate::failed(
                    &mut state,
                    &target.labels,
                    &target.scheme,
                    time_ns,
                    synthetic,
                )
            }
        };
        let batch = Batch::<Metrics>::from_resources(vec![resource]);
        let points = batch.items() as u64;
        job.consumer.consume(batch).await;
        job.accepted.add(points);
    }
}

fn log_failure(job: &Job, target: &Target, reason: &str) {
    let Some(path) = &job.failure_log else {
        return;
    };
    let line = serde_json::json!({
        "ts": chrono_like_now(),
        "job": job.name,
        "url": target.url,
        "error": reason,
    });
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn chrono_like_now() -> f64 {
    now_ns() as f64 / 1e9
}

#[allow(clippy::too_many_arguments)]
fn synthetic_samples(
    job: &Job,
    target: &Target,
    up: f64,
    duration: f64,
    scraped: usize,
    post: usize,
    added: usize,
    body_size: usize,
) -> Vec<Sample> {
    let mut values = vec![
        ("up", up),
        ("scrape_duration_seconds", duration),
        ("scrape_samples_scraped", scraped as f64),
        ("scrape_samples_post_metric_relabeling", post as f64),
        ("scrape_series_added", added as f64),
    ];
    if job.extra_metrics {
        values.push(("scrape_timeout_seconds", target.timeout.as_secs_f64()));
        values.push(("scrape_sample_limit", job.limits.samples as f64));
        values.push(("scrape_body_size_bytes", body_size as f64));
    }
    values
        .into_iter()
        .map(|(name, value)| Sample {
            name: name.to_string(),
            labels: target.labels.clone(),
            value,
            timestamp_ms: None,
            exemplar: None,
        })
        .collect()
}

/// One request: the body (decompressed, at most the body limit) and its format.
async fn fetch(job: &Job, target: &Target) -> Result<(String, Format), String> {
    let mut headers = super::client::extra_headers(&job.headers)?;
    super::client::authorize(&mut headers, &job.auth)?;
    headers.insert(
        ACCEPT,
        HeaderValue::from_str(&job.accept).map_err(|e| e.to_string())?,
    );
    headers.insert(
        ACCEPT_ENCODING,
        HeaderValue::from_static(if job.compression { "gzip" } else { "identity" }),
    );
    headers.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
    );
    headers.insert(
        "X-Prometheus-Scrape-Timeout-Seconds",
        HeaderValue::from_str(&format!("{}", target.timeout.as_secs_f64()))
            .map_err(|e| e.to_string())?,
    );
    let limit = if job.limits.body_bytes == 0 {
        DEFAULT_BODY_LIMIT
    } else {
        job.limits.body_bytes
    };
    let request = async {
        let mut response = job
            .client
            .get(&target.url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("server returned HTTP status {status}"));
        }
        let response_headers: HeaderMap = response.headers().clone();
        let mut raw = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            raw.extend_from_slice(&chunk);
            if raw.len() as u64 > limit {
                return Err(format!("body size limit exceeded ({limit} bytes)"));
            }
        }
        Ok((raw, response_headers))
    };
    let (raw, response_headers) = tokio::time::timeout(target.timeout, request)
        .await
        .map_err(|_| format!("scrape timed out after {:?}", target.timeout))??;
    let gzip = response_headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let bytes = if gzip {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot decompress the response: {e}"))?;
        if out.len() as u64 > limit {
            return Err(format!("body size limit exceeded ({limit} bytes)"));
        }
        out
    } else {
        raw
    };
    let content_type = response_headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = if content_type.is_empty() {
        job.fallback.unwrap_or(Format::Text)
    } else {
        Format::from_content_type(content_type)
    };
    let body =
        String::from_utf8(bytes).map_err(|_| "the response is not UTF-8 text".to_string())?;
    Ok((body, format))
}

fn describe(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Adds the target's labels (`honor_labels` decides conflicts), applies
/// `metric_relabel_configs`, and enforces the limits, which fail the whole scrape.
fn relabel_samples(
    job: &Job,
    target: &Labels,
    samples: Vec<Sample>,
) -> Result<Vec<Sample>, String> {
    let mut out = Vec::with_capacity(samples.len());
    let limits = job.limits;
    for mut sample in samples {
        let mut labels = std::mem::take(&mut sample.labels);
        for (name, value) in target {
            match relabel::get(&labels, name) {
                Some(existing) if !existing.is_empty() => {
                    if job.honor_labels {
                        continue;
                    }
                    let existing = existing.to_string();
                    let mut exported = format!("exported_{name}");
                    while relabel::get(&labels, &exported).is_some() {
                        exported = format!("exported_{exported}");
                    }
                    relabel::set(&mut labels, &exported, existing);
                    relabel::set(&mut labels, name, value.clone());
                }
                _ => relabel::set(&mut labels, name, value.clone()),
            }
        }
        labels.retain(|(_, v)| !v.is_empty());
        if !job.metric_relabel.is_empty() {
            relabel::set(&mut labels, "__name__", std::mem::take(&mut sample.name));
            if !relabel::apply(&job.metric_relabel, &mut labels) {
                continue;
            }
            let Ok(i) = labels.binary_search_by(|(n, _)| n.as_str().cmp("__name__")) else {
                continue;
            };
            sample.name = labels.remove(i).1;
        }
        if limits.labels > 0 && labels.len() as u64 + 1 > limits.labels {
            return Err(format!(
                "label_limit exceeded (metric: {}, {} labels, limit {})",
                sample.name,
                labels.len() + 1,
                limits.labels
            ));
        }
        for (name, value) in &labels {
            if limits.label_name_length > 0 && name.len() as u64 > limits.label_name_length {
                return Err(format!(
                    "label_name_length_limit exceeded (metric: {}, label: {name})",
                    sample.name
                ));
            }
            if limits.label_value_length > 0 && value.len() as u64 > limits.label_value_length {
                return Err(format!(
                    "label_value_length_limit exceeded (metric: {}, label: {name})",
                    sample.name
                ));
            }
        }
        if !job.honor_timestamps {
            sample.timestamp_ms = None;
        }
        sample.labels = labels;
        out.push(sample);
        if limits.samples > 0 && out.len() as u64 > limits.samples {
            return Err(format!(
                "sample_limit exceeded ({} samples)",
                limits.samples
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_prefers_openmetrics_then_text() {
        let accept = accept_header(&default_protocols());
        assert!(
            accept.starts_with("application/openmetrics-text;version=1.0.0,"),
            "{accept}"
        );
        assert!(accept.contains("text/plain;version=0.0.4;q="), "{accept}");
        let text_only = accept_header(&["PrometheusText0.0.4".into()]);
        assert!(
            text_only.starts_with("text/plain;version=0.0.4,"),
            "{text_only}"
        );
    }

    #[test]
    fn offsets_spread_targets_and_stay_put() {
        let interval = Duration::from_secs(10);
        let target = |url: &str| Target {
            labels: vec![],
            url: url.into(),
            scheme: "http".into(),
            interval,
            timeout: interval,
        };
        let offsets: std::collections::HashSet<Duration> = (0..50)
            .map(|i| offset(&target(&format!("http://h{i}:1/metrics")), "r", interval))
            .collect();
        assert!(offsets.len() > 40, "targets must not all start together");
        assert!(offsets.iter().all(|o| *o < interval));
        let t = target("http://a:1/metrics");
        assert_eq!(offset(&t, "r", interval), offset(&t, "r", interval));
    }
}
