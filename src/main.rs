//! The `sluice` command line.

// The workspace's rule for the binary too (its tests in tests/ and benches may unwrap).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod allocator;
#[cfg(feature = "lambda")]
mod lambda_extension;
mod logging;
mod open_files;
mod start_up_pages;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sluice_config::{Config, ConfigErrors, Source};
use sluice_pipeline::telemetry::{OtlpClientBuilder, TelemetryConfig};
use sluice_pipeline::{Registry, Service, Telemetry};

const DEFAULT_CONFIG: &str = include_str!("default-config.yaml");

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "An OpenTelemetry-compatible telemetry pipeline collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Args, Clone, Default)]
struct ConfigArgs {
    /// A config file in the OpenTelemetry Collector's YAML format; repeat to merge several in
    /// order. Without it the embedded default runs.
    #[arg(long = "config", short = 'c', global = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Overrides one value, e.g. `--set exporters.file/out.path=/tmp/x.jsonl`.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// The config used when no file is given (the Lambda extension has its own).
    #[arg(skip)]
    default_config: Option<&'static str>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the collector (the default).
    Run,
    /// Check the configuration, including that its listen addresses can be bound.
    Validate,
    /// List every component type with its aliases and signals.
    Components,
    /// Print the merged configuration with environment references expanded.
    PrintConfig,
    /// Run as an AWS Lambda extension (the default when AWS_LAMBDA_RUNTIME_API is set).
    #[cfg(feature = "lambda")]
    Lambda,
}

fn registry() -> Registry {
    Registry {
        receivers: sluice_receivers::factories(),
        processors: sluice_processors::processor_factories(),
        exporters: sluice_exporters::factories(),
        connectors: sluice_processors::connector_factories(),
    }
}

fn load(args: &ConfigArgs) -> Result<sluice_config::Node, ConfigErrors> {
    let mut sources = Vec::new();
    if args.files.is_empty() {
        sources.push(Source {
            name: "<default>".into(),
            text: args.default_config.unwrap_or(DEFAULT_CONFIG).into(),
        });
    }
    for path in &args.files {
        sources.push(Source::from_file(path)?);
    }
    sluice_config::load(&sources, &args.sets, &|name| std::env::var(name).ok())
}

/// How self-telemetry reaches OTLP destinations: the exporters' client.
fn otlp_client() -> OtlpClientBuilder {
    std::sync::Arc::new(sluice_exporters::self_telemetry::client)
}

/// Loads and builds the service. Logging starts as soon as its settings are known, so what the
/// build warns about is seen.
fn build(args: &ConfigArgs, with_logging: bool) -> Result<Service, ConfigErrors> {
    let node = load(args)?;
    // Structural problems and the components' own problems are reported together.
    let (config, mut errors) = Config::from_node_lenient(&node);
    let telemetry = Telemetry {
        otlp_client: Some(otlp_client()),
        ..Telemetry::default()
    };
    if with_logging {
        // An invalid telemetry section is reported by the build; log with defaults meanwhile.
        let telemetry_config = TelemetryConfig::decode(
            &config.service.telemetry,
            &config.service.telemetry_path,
            &Default::default(),
        )
        .unwrap_or_default();
        let problems = logging::init(
            &telemetry_config,
            telemetry.otlp_client.as_ref(),
            &telemetry.instance_id,
        );
        for (key, message) in problems {
            errors.push(sluice_pipeline::telemetry::telemetry_problem(
                &config.service.telemetry,
                &config.service.telemetry_path,
                &key,
                &message,
            ));
        }
    }
    match Service::build(&config, &registry(), telemetry) {
        Ok(service) if errors.is_empty() => Ok(service),
        Ok(_) => Err(errors),
        Err(more) => {
            for d in more {
                if !errors.0.contains(&d) {
                    errors.push(d);
                }
            }
            Err(errors)
        }
    }
}

fn print_errors(errors: &ConfigErrors) {
    let mut text = format!(
        "invalid configuration ({} problem{}):\n",
        errors.0.len(),
        if errors.0.len() == 1 { "" } else { "s" }
    );
    for e in &errors.0 {
        text.push_str(&format!("  {e}\n"));
    }
    write_quietly(&mut std::io::stderr(), &text);
}

/// Writes to stdout or stderr and ignores failures: a reader that went away (`sluice
/// components | head`) or a closed stderr must not make the process panic, as `println!`
/// would.
fn write_quietly(out: &mut impl std::io::Write, text: &str) {
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The signals sluice acts on. All are taken over as soon as the runtime exists: the default
/// action of SIGHUP, SIGUSR1 and SIGUSR2 is to end the process at once, which would lose what
/// memory queues hold.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let take = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot listen for {name}"))
        };
        Ok(Signals {
            term: take(SignalKind::terminate(), "SIGTERM")?,
            int: take(SignalKind::interrupt(), "SIGINT")?,
            hup: take(SignalKind::hangup(), "SIGHUP")?,
            usr1: take(SignalKind::user_defined1(), "SIGUSR1")?,
            usr2: take(SignalKind::user_defined2(), "SIGUSR2")?,
        })
    }

    /// Waits for SIGTERM or SIGINT; other signals are logged and carry on.
    async fn shutdown_requested(&mut self) -> &'static str {
        loop {
            let other = tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => "SIGHUP",
                _ = self.usr1.recv() => "SIGUSR1",
                _ = self.usr2.recv() => "SIGUSR2",
            };
            tracing::warn!(
                signal = other,
                "signal ignored; SIGTERM or SIGINT stops sluice"
            );
        }
    }
}

fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    // Components may set up connections while being built, which needs the runtime.
    let runtime = runtime()?;
    let entered = runtime.enter();
    let mut signals = Signals::listen()?;
    let mut service = match build(args, true) {
        Ok(s) => s,
        Err(errors) => {
            print_errors(&errors);
            return Ok(ExitCode::from(2));
        }
    };
    open_files::raise_limit();
    let outcome = runtime.block_on(async move {
        if let Err(e) = service.start().await {
            tracing::error!(error = %e, "cannot start");
            service.shutdown().await;
            return Ok(ExitCode::FAILURE);
        }
        start_up_pages::release_after_start();
        let signal = signals.shutdown_requested().await;
        tracing::info!(signal, timeout = ?service.shutdown_timeout(), "shutting down");
        service.shutdown().await;
        Ok(ExitCode::SUCCESS)
    });
    drop(entered);
    logging::flush(LOG_EXPORT_GRACE);
    // Dropping the runtime would wait for every blocking task, such as a Kafka consumer
    // closing against a broker that is gone, forever. What could be saved was saved within
    // the shutdown timeout.
    runtime.shutdown_timeout(LEFTOVER_TASKS_GRACE);
    outcome
}

/// How long the OTLP export of sluice's own last log lines may delay the exit.
const LOG_EXPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long blocking work still running after shutdown may delay the exit.
const LEFTOVER_TASKS_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

fn validate(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let runtime = runtime()?;
    let _entered = runtime.enter();
    let service = match build(args, false) {
        Ok(s) => s,
        Err(errors) => {
            print_errors(&errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    let problems = runtime.block_on(service.check_addresses());
    let mut warnings = String::new();
    for warning in service.warnings() {
        warnings.push_str(&format!("warning: {warning}\n"));
    }
    write_quietly(&mut std::io::stderr(), &warnings);
    if !problems.is_empty() {
        print_errors(&ConfigErrors(problems));
        return Ok(ExitCode::FAILURE);
    }
    write_quietly(&mut std::io::stdout(), "configuration is valid\n");
    Ok(ExitCode::SUCCESS)
}

fn components() -> ExitCode {
    let registry = registry();
    let mut rows: Vec<(&str, sluice_pipeline::FactoryInfo, String)> = Vec::new();
    let signals = |info: &sluice_pipeline::FactoryInfo| {
        info.signals
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    rows.extend(
        registry
            .receivers
            .iter()
            .map(|f| ("receiver", f.info(), signals(&f.info()))),
    );
    rows.extend(
        registry
            .processors
            .iter()
            .map(|f| ("processor", f.info(), signals(&f.info()))),
    );
    rows.extend(
        registry
            .exporters
            .iter()
            .map(|f| ("exporter", f.info(), signals(&f.info()))),
    );
    rows.extend(registry.connectors.iter().map(|f| {
        let pairs = f
            .pairs()
            .iter()
            .map(|(a, b)| format!("{a}->{b}"))
            .collect::<Vec<_>>()
            .join(", ");
        ("connector", f.info(), pairs)
    }));
    rows.extend(sluice_pipeline::service::EXTENSION_TYPES.iter().map(|t| {
        (
            "extension",
            sluice_pipeline::FactoryInfo {
                type_name: t,
                aliases: &[],
                signals: &[],
                description: match *t {
                    "health_check" => "health endpoint",
                    "healthcheckv2" => "health endpoint (the newer form's name)",
                    "file_storage" => "on-disk write-ahead log for persistent sending queues",
                    "zpages" => "accepted; its pages are not served yet",
                    "pprof" => "accepted; Go's profiler has no counterpart in sluice",
                    _ => "",
                },
            },
            String::new(),
        )
    }));
    let mut text = format!(
        "{:<10} {:<20} {:<18} {:<46} DESCRIPTION\n",
        "KIND", "TYPE", "ALIASES", "SIGNALS"
    );
    for (kind, info, signals) in rows {
        let aliases = if info.aliases.is_empty() {
            "-".to_string()
        } else {
            info.aliases.join(", ")
        };
        let signals = if signals.is_empty() {
            "-".to_string()
        } else {
            signals
        };
        text.push_str(&format!(
            "{kind:<10} {:<20} {aliases:<18} {signals:<46} {}\n",
            info.type_name, info.description
        ));
    }
    write_quietly(&mut std::io::stdout(), &text);
    ExitCode::SUCCESS
}

fn print_config(args: &ConfigArgs) -> ExitCode {
    match load(args) {
        Ok(node) => {
            write_quietly(&mut std::io::stdout(), &sluice_config::to_yaml(&node));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_errors(&errors);
            ExitCode::FAILURE
        }
    }
}

fn main() -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    allocator::register_release();
    let cli = Cli::parse();
    #[cfg(feature = "lambda")]
    let command = match cli.command {
        None if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() => Command::Lambda,
        other => other.unwrap_or(Command::Run),
    };
    #[cfg(not(feature = "lambda"))]
    let command = cli.command.unwrap_or(Command::Run);
    #[cfg(not(feature = "lambda"))]
    let _ = started;
    match command {
        #[cfg(feature = "lambda")]
        Command::Lambda => lambda_extension::run(&cli.config, started),
        Command::Run => run(&cli.config),
        Command::Validate => validate(&cli.config),
        Command::Components => Ok(components()),
        Command::PrintConfig => Ok(print_config(&cli.config)),
    }
}
