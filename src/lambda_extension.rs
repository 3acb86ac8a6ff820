//! `sluice lambda`: sluice as an AWS Lambda external extension. Registers with the Extensions
//! API, runs the configured pipelines (the `lambda` receiver subscribes to the Telemetry API),
//! and flushes everything of an invocation before asking for the next event, since Lambda may
//! freeze the sandbox as soon as every extension has asked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sluice_receivers::lambda::runtime_api::{self, ExtensionContext, Milestone, Response, tracker};
use tokio::time::Instant;

use crate::{ConfigArgs, build, print_errors, runtime};

pub const LAMBDA_DEFAULT_CONFIG: &str = include_str!("lambda-default-config.yaml");
/// Where a layer puts its own config (layers are unpacked under /opt).
const LAYER_CONFIG: &str = "/opt/sluice/config.yaml";
const EXTENSION_API: &str = "/2020-01-01/extension";
/// What Lambda gives extensions to finish after SHUTDOWN (when any extension is registered).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(2000);
/// Kept back from every deadline for the exit itself.
const MARGIN: Duration = Duration::from_millis(100);

/// When the data of an invocation is pushed out.
#[derive(Clone, Copy, Debug, PartialEq)]
enum FlushMode {
    /// Before asking for the next event: nothing waits in a frozen sandbox, but the
    /// invocation's end is delayed by the flush.
    End,
    /// When the next invocation starts, while the function runs: no added latency, but data
    /// waits in the frozen sandbox until then (fine for functions invoked often).
    Next,
}

struct Settings {
    mode: FlushMode,
    flush_timeout: Duration,
}

fn settings() -> Settings {
    let mode = match std::env::var("SLUICE_LAMBDA_FLUSH").as_deref() {
        Ok("next") => FlushMode::Next,
        Ok("end") | Err(_) => FlushMode::End,
        Ok(other) => {
            tracing::warn!(
                value = other,
                "SLUICE_LAMBDA_FLUSH is `end` or `next`; using `end`"
            );
            FlushMode::End
        }
    };
    let flush_timeout = std::env::var("SLUICE_LAMBDA_FLUSH_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(2));
    Settings {
        mode,
        flush_timeout,
    }
}

/// The extension's name must be its file name in /opt/extensions.
fn extension_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "sluice".into())
}

/// `--config` wins, then SLUICE_CONFIG, then the layer's file, then the embedded default.
fn config_args(args: &ConfigArgs) -> ConfigArgs {
    let mut args = args.clone();
    if args.files.is_empty() {
        if let Some(path) = std::env::var_os("SLUICE_CONFIG").filter(|p| !p.is_empty()) {
            args.files = std::env::split_paths(&path).collect();
        } else if Path::new(LAYER_CONFIG).is_file() {
            args.files = vec![PathBuf::from(LAYER_CONFIG)];
        } else {
            args.default_config = Some(LAMBDA_DEFAULT_CONFIG);
        }
    }
    args
}

fn epoch_ms_to_instant(deadline_ms: Option<u64>) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    Some(Instant::now() + Duration::from_millis(deadline_ms?.saturating_sub(now_ms)))
}

async fn call(
    api: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Option<Duration>,
) -> anyhow::Result<Response> {
    let response = runtime_api::request(api, method, path, headers, body, timeout)
        .await
        .map_err(anyhow::Error::msg)?;
    if !(200..300).contains(&response.status) {
        anyhow::bail!(
            "{method} {path}: {} {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    Ok(response)
}

async fn register(api: &str) -> anyhow::Result<ExtensionContext> {
    let name = extension_name();
    let response = call(
        api,
        "POST",
        &format!("{EXTENSION_API}/register"),
        &[
            ("Lambda-Extension-Name", &name),
            ("Lambda-Extension-Accept-Feature", "accountId"),
        ],
        br#"{"events":["INVOKE","SHUTDOWN"]}"#,
        Some(Duration::from_secs(5)),
    )
    .await?;
    let extension_id = response
        .header("Lambda-Extension-Identifier")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow::anyhow!("register: no Lambda-Extension-Identifier in the answer"))?
        .to_string();
    let account_id = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v.get("accountId")?.as_str().map(str::to_string));
    Ok(ExtensionContext {
        runtime_api: api.to_string(),
        extension_id,
        account_id,
    })
}

/// Tells Lambda the init failed, so the failure shows in the function's logs and the init is
/// retried, instead of the extension just disappearing.
async fn init_error(context: &ExtensionContext, error_type: &str, message: &str) {
    let body = serde_json::json!({"errorMessage": message, "errorType": error_type}).to_string();
    if let Err(e) = call(
        &context.runtime_api,
        "POST",
        &format!("{EXTENSION_API}/init/error"),
        &[
            ("Lambda-Extension-Identifier", &context.extension_id),
            ("Lambda-Extension-Function-Error-Type", error_type),
        ],
        body.as_bytes(),
        Some(Duration::from_secs(2)),
    )
    .await
    {
        eprintln!("sluice: cannot report the init error to Lambda: {e}");
    }
}

pub fn run(args: &ConfigArgs, started: std::time::Instant) -> anyhow::Result<ExitCode> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API")
        .map_err(|_| anyhow::anyhow!("AWS_LAMBDA_RUNTIME_API is not set: not running in Lambda"))?;
    let runtime = runtime()?;
    let _entered = runtime.enter();
    let context = runtime.block_on(register(&api))?;
    runtime_api::set_extension(context.clone());
    let registered = started.elapsed();
    let mut service = match build(&config_args(args), true) {
        Ok(s) => s,
        Err(errors) => {
            print_errors(&errors);
            let text = errors
                .0
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ");
            runtime.block_on(init_error(&context, "Extension.ConfigInvalid", &text));
            return Ok(ExitCode::FAILURE);
        }
    };
    runtime.block_on(async move {
        if let Err(e) = service.start().await {
            tracing::error!(error = %e, "cannot start");
            init_error(&context, "Extension.StartFailed", &e.to_string()).await;
            service.shutdown().await;
            return Ok(ExitCode::FAILURE);
        }
        tracing::info!(
            registered_ms = registered.as_secs_f64() * 1000.0,
            ready_ms = started.elapsed().as_secs_f64() * 1000.0,
            subscribed = tracker().subscribed(),
            "lambda extension registered and running"
        );
        crate::start_up_pages::release_after_start();
        event_loop(&context, &mut service, settings()).await
    })
}

async fn flush(service: &sluice_pipeline::Service, deadline: Instant) {
    let began = Instant::now();
    let complete = service.flush(deadline).await;
    tracing::debug!(took = ?began.elapsed(), complete, "flushed");
}

async fn event_loop(
    context: &ExtensionContext,
    service: &mut sluice_pipeline::Service,
    settings: Settings,
) -> anyhow::Result<ExitCode> {
    let next_path = format!("{EXTENSION_API}/event/next");
    let mut last_request: Option<String> = None;
    loop {
        let response = call(
            &context.runtime_api,
            "GET",
            &next_path,
            &[("Lambda-Extension-Identifier", &context.extension_id)],
            b"",
            None,
        )
        .await;
        let event: Value = match response.map(|r| serde_json::from_slice(&r.body)) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "event/next: not JSON; stopping");
                service.shutdown().await;
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => {
                tracing::error!(error = %e, "event/next failed; stopping");
                service.shutdown().await;
                return Ok(ExitCode::FAILURE);
            }
        };
        let deadline = epoch_ms_to_instant(event.get("deadlineMs").and_then(Value::as_u64));
        match event.get("eventType").and_then(Value::as_str) {
            Some("INVOKE") => {
                let request = event
                    .get("requestId")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                match settings.mode {
                    FlushMode::Next => {
                        // The previous invocation's data, while this one runs.
                        flush(service, Instant::now() + settings.flush_timeout).await;
                    }
                    FlushMode::End => {
                        // The function's logs and span are in the pipeline once its
                        // runtimeDone is; its report comes only after this extension asks
                        // for the next event, so it goes out with the next flush.
                        if let (Some(id), true) = (&request, tracker().subscribed()) {
                            let until = deadline
                                .unwrap_or_else(|| Instant::now() + Duration::from_secs(900));
                            if !tracker().wait_for(Milestone::RuntimeDone, id, until).await {
                                tracing::warn!(request = %id, "no platform.runtimeDone before the invocation deadline");
                            }
                        }
                        flush(service, Instant::now() + settings.flush_timeout).await;
                    }
                }
                last_request = request;
            }
            Some("SHUTDOWN") => {
                let budget_end = Instant::now() + SHUTDOWN_BUDGET;
                let end = deadline.map_or(budget_end, |d| d.min(budget_end));
                let end = end.checked_sub(MARGIN).unwrap_or(end);
                let reason = event
                    .get("shutdownReason")
                    .and_then(|r| r.as_str())
                    .unwrap_or("");
                tracing::info!(reason, "lambda SHUTDOWN");
                // The last invocation's report is pushed after SHUTDOWN; wait for it a while
                // but keep most of the budget for sending.
                if let (Some(id), true) = (&last_request, tracker().subscribed()) {
                    let wait = end.saturating_duration_since(Instant::now()) / 3;
                    tracker()
                        .wait_for(Milestone::Report, id, Instant::now() + wait)
                        .await;
                }
                flush(service, end).await;
                if tokio::time::timeout_at(end + MARGIN / 2, service.shutdown())
                    .await
                    .is_err()
                {
                    tracing::warn!("shutdown deadline reached; exiting");
                }
                return Ok(ExitCode::SUCCESS);
            }
            other => {
                tracing::warn!(event = ?other, "unknown Extensions API event; ignored");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_lambda_default_builds() {
        let runtime = runtime().unwrap();
        let _entered = runtime.enter();
        let args = ConfigArgs {
            default_config: Some(LAMBDA_DEFAULT_CONFIG),
            ..ConfigArgs::default()
        };
        if let Err(errors) = build(&args, false) {
            panic!(
                "{:?}",
                errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn deadlines_in_the_past_or_missing_do_not_panic() {
        assert!(epoch_ms_to_instant(None).is_none());
        assert!(epoch_ms_to_instant(Some(0)).is_some_and(|d| d <= Instant::now()));
    }
}
