//! The `sluice` command line.

mod allocator;
#[cfg(feature = "lambda")]
mod lambda_extension;
mod start_up_pages;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sluice_config::{Config, ConfigErrors, Source};
use sluice_pipeline::telemetry::{LogEncoding, TelemetryConfig};
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
        match std::fs::read_to_string(path) {
            Ok(text) => sources.push(Source {
                name: path.display().to_string(),
                text,
            }),
            Err(e) => {
                return Err(sluice_config::Diagnostic::new(
                    None,
                    "",
                    format!("cannot read {}: {e}", path.display()),
                )
                .into());
            }
        }
    }
    sluice_config::load(&sources, &args.sets, &|name| std::env::var(name).ok())
}

/// Loads and builds the service. Logging starts as soon as its settings are known, so what the
/// build warns about is seen.
fn build(args: &ConfigArgs, with_logging: bool) -> Result<Service, ConfigErrors> {
    let node = load(args)?;
    // Structural problems and the components' own problems are reported together.
    let (config, mut errors) = Config::from_node_lenient(&node);
    if with_logging {
        // An invalid telemetry section is reported by the build; log with defaults meanwhile.
        let telemetry: TelemetryConfig =
            sluice_config::decode(&config.service.telemetry, &config.service.telemetry_path)
                .unwrap_or_default();
        init_logging(&telemetry);
    }
    match Service::build(&config, &registry(), Telemetry::default()) {
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
    eprintln!(
        "invalid configuration ({} problem{}):",
        errors.0.len(),
        if errors.0.len() == 1 { "" } else { "s" }
    );
    for e in &errors.0 {
        eprintln!("  {e}");
    }
}

fn init_logging(config: &TelemetryConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logs.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match config.logs.encoding {
        LogEncoding::Json => builder.json().try_init(),
        LogEncoding::Console => builder.try_init(),
    };
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    // Components may set up connections while being built, which needs the runtime.
    let runtime = runtime()?;
    let _entered = runtime.enter();
    let mut service = match build(args, true) {
        Ok(s) => s,
        Err(errors) => {
            print_errors(&errors);
            return Ok(ExitCode::from(2));
        }
    };
    runtime.block_on(async move {
        if let Err(e) = service.start().await {
            tracing::error!(error = %e, "cannot start");
            service.shutdown().await;
            return Ok(ExitCode::FAILURE);
        }
        start_up_pages::release_after_start();
        let signal = wait_for_signal().await?;
        tracing::info!(signal, timeout = ?service.shutdown_timeout(), "shutting down");
        service.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

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
    if !problems.is_empty() {
        print_errors(&ConfigErrors(problems));
        return Ok(ExitCode::FAILURE);
    }
    println!("configuration is valid");
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
                    "file_storage" => "on-disk write-ahead log for persistent sending queues",
                    _ => "",
                },
            },
            String::new(),
        )
    }));
    println!(
        "{:<10} {:<20} {:<18} {:<46} DESCRIPTION",
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
        println!(
            "{kind:<10} {:<20} {aliases:<18} {signals:<46} {}",
            info.type_name, info.description
        );
    }
    ExitCode::SUCCESS
}

fn print_config(args: &ConfigArgs) -> ExitCode {
    match load(args) {
        Ok(node) => {
            print!("{}", sluice_config::to_yaml(&node));
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
