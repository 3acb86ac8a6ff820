//! The processor as a whole, plus the fixtures every detector's tests use: a described
//! environment (never the process's own) and a temporary root for `/proc` and `/etc`.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Duration, Pos, parse_yaml};
use sluice_pipeline::{
    Ack, AnyConsumer, Batch, BuildContext, Consumer, DeliveryError, Logs, Metrics, Signal,
    SignalConsumer, Traces,
};

use super::endpoints::Endpoints;
use super::host::{Host, Interface, NameService, Vars};
use super::*;

mod aws;
mod clouds;
mod kubernetes;
mod lifecycle;
pub mod metadata_server;

// ---- fixtures shared with the detectors' tests ----

/// A root that holds nothing, for detectors that must find nothing in files.
const EMPTY_ROOT: &str = "/nonexistent/sluice-resource-detection-test-root";

/// Name services that answer what the test says.
#[derive(Default)]
pub struct FakeNames {
    pub hostname: Option<String>,
    pub canonical: Option<String>,
    pub reverse: Option<String>,
    pub interfaces: Vec<Interface>,
}

impl FakeNames {
    pub fn none() -> Self {
        FakeNames::default()
    }
    pub fn named(name: &str) -> Self {
        FakeNames {
            hostname: Some(name.into()),
            ..FakeNames::default()
        }
    }
}

impl NameService for FakeNames {
    fn hostname(&self) -> io::Result<String> {
        self.hostname
            .clone()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no host name"))
    }
    fn canonical_name(&self, _host: &str, _wait: StdDuration) -> io::Result<Option<String>> {
        Ok(self.canonical.clone())
    }
    fn reverse_name(&self, _host: &str, _wait: StdDuration) -> io::Result<Option<String>> {
        Ok(self.reverse.clone())
    }
    fn interfaces(&self) -> io::Result<Vec<Interface>> {
        Ok(self.interfaces.clone())
    }
}

/// A temporary directory laid out like a root filesystem.
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn file(self, absolute: &str, text: &str) -> Self {
        let path = self.dir.path().join(absolute.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }
    pub fn dir(self, absolute: &str) -> Self {
        std::fs::create_dir_all(self.dir.path().join(absolute.trim_start_matches('/'))).unwrap();
        self
    }
}

pub fn vars(pairs: &[(&str, &str)]) -> Vars {
    Vars::Fixed(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
    )
}

/// Only the given variables, no files.
pub fn host_with(pairs: &[(&str, &str)], names: Option<Arc<dyn NameService>>) -> Host {
    Host::new(
        EMPTY_ROOT,
        vars(pairs),
        names.unwrap_or_else(|| Arc::new(FakeNames::none())),
    )
}

/// Only the fixture's files, no variables.
pub fn host_in(fx: &Fixture, names: FakeNames) -> Host {
    Host::new(fx.path(), vars(&[]), Arc::new(names))
}

pub fn host_with_root(pairs: &[(&str, &str)], fx: &Fixture, names: FakeNames) -> Host {
    Host::new(fx.path(), vars(pairs), Arc::new(names))
}

/// Runs one detector as the processor would: its switches applied, retried within the
/// budget of `cfg`.
pub async fn run_detector(
    kind: DetectorKind,
    mut cfg: ResourceDetectionConfig,
    host: Host,
    endpoints: Endpoints,
) -> detection::DetectResult {
    cfg.detectors = vec![kind];
    let outcomes = detection::run_all(&host, &Arc::new(cfg), &Arc::new(endpoints)).await;
    outcomes
        .into_iter()
        .next()
        .map(|(_, r)| r)
        .unwrap_or_else(|| Err("no outcome".into()))
}

/// A configuration for a one-detector test: a short budget, no retries unless asked for.
pub fn quick() -> ResourceDetectionConfig {
    let mut c = ResourceDetectionConfig {
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    c.retry.enabled = false;
    c
}

// ---- the processor ----

/// Keeps what reaches it and acknowledges it.
struct Capture<S: Signal>(Mutex<Vec<Vec<S::Resource>>>);

impl<S: Signal> Capture<S> {
    fn new() -> Arc<Self> {
        Arc::new(Capture(Mutex::new(Vec::new())))
    }
    fn last(&self) -> Vec<S::Resource> {
        self.0.lock().unwrap().last().cloned().unwrap()
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

#[async_trait]
impl<S: Signal> Consumer<S> for Capture<S> {
    async fn consume(&self, batch: Batch<S>) {
        self.0.lock().unwrap().push(batch.resources().to_vec());
        batch.settle(&Ok(()));
    }
}

pub fn cfg(detectors: &[DetectorKind]) -> ResourceDetectionConfig {
    ResourceDetectionConfig {
        detectors: detectors.to_vec(),
        ..Default::default()
    }
}

/// A started stage of signal `S` in front of a capture.
async fn started<S: Signal + SignalConsumer>(
    cfg: ResourceDetectionConfig,
    host: Host,
) -> (DynConsumer<S>, Arc<Capture<S>>) {
    let capture = Capture::<S>::new();
    let built = stage(
        Arc::new(Detection::new(
            "resource_detection",
            cfg,
            host,
            Endpoints::default(),
        )),
        S::to_any(capture.clone()),
    );
    built.lifecycle.unwrap().start().await.unwrap();
    (S::from_any(built.consumer).unwrap(), capture)
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn attr<'a>(resource: Option<&'a Resource>, key: &str) -> Option<&'a str> {
    let kv = resource?.attributes.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn with_resource<S: Signal>(attrs: Option<Vec<KeyValue>>) -> S::Resource {
    let mut r = S::Resource::default();
    *S::resource_mut(&mut r) = attrs.map(|attributes| Resource {
        attributes,
        ..Default::default()
    });
    r
}

/// Every resource of a batch gets the attributes, whatever the signal; a resource that has
/// none yet gets one.
async fn stamps_every_resource<S: Signal + SignalConsumer>() {
    let host = host_with(
        &[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=prod,service.name=checkout",
        )],
        None,
    );
    let (stage, capture) = started::<S>(cfg(&[DetectorKind::Env]), host).await;
    let batch = Batch::<S>::from_resources(vec![
        with_resource::<S>(None),
        with_resource::<S>(Some(vec![kv("other", "kept")])),
    ]);
    stage.consume(batch).await;
    let out = capture.last();
    assert_eq!(out.len(), 2);
    for r in &out {
        assert_eq!(attr(S::resource(r), "service.name"), Some("checkout"));
        assert_eq!(
            attr(S::resource(r), "deployment.environment.name"),
            Some("prod")
        );
    }
    assert_eq!(attr(S::resource(&out[1]), "other"), Some("kept"));
}

#[tokio::test]
async fn stamps_every_resource_of_each_signal() {
    stamps_every_resource::<Traces>().await;
    stamps_every_resource::<Metrics>().await;
    stamps_every_resource::<Logs>().await;
}

#[tokio::test]
async fn override_decides_whether_existing_values_stay() {
    let host = || {
        host_with(
            &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=detected")],
            None,
        )
    };
    let batch = || {
        Batch::<Logs>::from_resources(vec![with_resource::<Logs>(Some(vec![kv(
            "service.name",
            "from-sdk",
        )]))])
    };

    let (stage, capture) = started::<Logs>(cfg(&[DetectorKind::Env]), host()).await;
    stage.consume(batch()).await;
    assert_eq!(
        attr(capture.last()[0].resource.as_ref(), "service.name"),
        Some("detected")
    );

    let mut keep = cfg(&[DetectorKind::Env]);
    keep.override_existing = false;
    let (stage, capture) = started::<Logs>(keep, host()).await;
    stage.consume(batch()).await;
    let out = capture.last();
    assert_eq!(
        attr(out[0].resource.as_ref(), "service.name"),
        Some("from-sdk")
    );
    assert_eq!(out[0].resource.as_ref().unwrap().attributes.len(), 1);
}

#[tokio::test]
async fn the_earlier_detector_wins_a_shared_key() {
    let host = || {
        host_with(
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "k8s.pod.name=from-env"),
                ("K8S_POD_NAME", "from-k8s"),
                ("K8S_NODE_NAME", "node-1"),
            ],
            None,
        )
    };
    let one = || Batch::<Traces>::from_resources(vec![with_resource::<Traces>(None)]);
    for (order, expected) in [
        ([DetectorKind::Env, DetectorKind::K8s], "from-env"),
        ([DetectorKind::K8s, DetectorKind::Env], "from-k8s"),
    ] {
        let (stage, capture) = started::<Traces>(cfg(&order), host()).await;
        stage.consume(one()).await;
        let out = capture.last();
        assert_eq!(
            attr(out[0].resource.as_ref(), "k8s.pod.name"),
            Some(expected)
        );
        // Keys only the later detector has are still added.
        assert_eq!(
            attr(out[0].resource.as_ref(), "k8s.node.name"),
            Some("node-1")
        );
    }
}

#[tokio::test]
async fn a_failed_detector_is_skipped_unless_fail_on_error() {
    let host = || {
        host_with(
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "broken"),
                ("K8S_POD_NAME", "pod-1"),
            ],
            None,
        )
    };
    let (stage, capture) =
        started::<Logs>(cfg(&[DetectorKind::Env, DetectorKind::K8s]), host()).await;
    stage
        .consume(Batch::from_resources(vec![with_resource::<Logs>(None)]))
        .await;
    assert_eq!(
        attr(capture.last()[0].resource.as_ref(), "k8s.pod.name"),
        Some("pod-1")
    );

    let mut strict = cfg(&[DetectorKind::Env, DetectorKind::K8s]);
    strict.fail_on_error = true;
    let built = stage_for_logs(strict, host());
    let err = built.lifecycle.unwrap().start().await.unwrap_err();
    assert!(err.to_string().contains("env"), "{err}");
    assert!(err.to_string().contains("broken"), "{err}");
}

fn stage_for_logs(cfg: ResourceDetectionConfig, host: Host) -> sluice_pipeline::BuiltStage {
    stage(
        Arc::new(Detection::new(
            "resource_detection",
            cfg,
            host,
            Endpoints::default(),
        )),
        AnyConsumer::Logs(Capture::<Logs>::new()),
    )
}

/// Name services whose host name lookup hangs until the test lets it go.
struct Hanging(Mutex<std::sync::mpsc::Receiver<()>>);

impl NameService for Hanging {
    fn hostname(&self) -> io::Result<String> {
        let _ = self.0.lock().unwrap().recv();
        Ok("too-late".into())
    }
    fn canonical_name(&self, _: &str, _: StdDuration) -> io::Result<Option<String>> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_detector_past_the_timeout_fails_and_the_others_keep_their_findings() {
    let (release, hang) = std::sync::mpsc::channel::<()>();
    let names: Arc<dyn NameService> = Arc::new(Hanging(Mutex::new(hang)));
    let host = host_with(
        &[("OTEL_RESOURCE_ATTRIBUTES", "service.name=svc")],
        Some(names),
    )
    .with_root("/");
    let mut c = cfg(&[DetectorKind::System, DetectorKind::Env]);
    c.system.hostname_sources = vec![HostnameSource::Os];
    // Generous, so the env detector is surely done; the hanging one never is.
    c.timeout = Duration::from_secs(2);
    let (stage, capture) = started::<Logs>(c.clone(), host.clone()).await;
    stage
        .consume(Batch::from_resources(vec![with_resource::<Logs>(None)]))
        .await;
    let out = capture.last();
    assert_eq!(attr(out[0].resource.as_ref(), "service.name"), Some("svc"));
    assert_eq!(attr(out[0].resource.as_ref(), "host.name"), None);

    c.fail_on_error = true;
    c.timeout = Duration::from_millis(100);
    c.retry.enabled = false;
    let err = stage_for_logs(c, host)
        .lifecycle
        .unwrap()
        .start()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not finish within"), "{err}");
    drop(release);
}

/// Counts host name lookups, to see how often detection runs.
struct Counting(AtomicUsize);

impl NameService for Counting {
    fn hostname(&self) -> io::Result<String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok("counted".into())
    }
    fn canonical_name(&self, _: &str, _: StdDuration) -> io::Result<Option<String>> {
        Ok(None)
    }
}

#[tokio::test]
async fn detection_runs_once_not_per_batch() {
    let counting = Arc::new(Counting(AtomicUsize::new(0)));
    let host = host_with(&[], Some(counting.clone())).with_root("/");
    let mut c = cfg(&[DetectorKind::System]);
    c.system.hostname_sources = vec![HostnameSource::Os];
    let (stage, capture) = started::<Logs>(c, host).await;
    for _ in 0..3 {
        stage
            .consume(Batch::from_resources(vec![with_resource::<Logs>(None)]))
            .await;
    }
    assert_eq!(capture.count(), 3);
    assert_eq!(
        attr(capture.last()[0].resource.as_ref(), "host.name"),
        Some("counted")
    );
    assert_eq!(counting.0.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unstarted_stage_detects_on_first_use() {
    let capture = Capture::<Logs>::new();
    let built = stage(
        Arc::new(Detection::new(
            "resource_detection",
            cfg(&[DetectorKind::Env]),
            host_with(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=lazy")], None),
            Endpoints::default(),
        )),
        AnyConsumer::Logs(capture.clone()),
    );
    let AnyConsumer::Logs(stage) = built.consumer else {
        panic!("not a logs consumer");
    };
    stage
        .consume(Batch::from_resources(vec![with_resource::<Logs>(None)]))
        .await;
    assert_eq!(
        attr(capture.last()[0].resource.as_ref(), "service.name"),
        Some("lazy")
    );
}

fn logs_with(n: usize, attrs: Vec<KeyValue>) -> Batch<Logs> {
    Batch::from_resources(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: attrs,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default(); n],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Acknowledgements travel with the batch to the next stage, which settles them.
#[tokio::test]
async fn acknowledgements_are_forwarded_with_the_batch() {
    struct Refuse;
    #[async_trait]
    impl Consumer<Logs> for Refuse {
        async fn consume(&self, batch: Batch<Logs>) {
            batch.settle(&Err(DeliveryError::permanent("refused downstream")));
        }
    }
    let detection = Arc::new(Detection::new(
        "resource_detection",
        cfg(&[DetectorKind::Env]),
        host_with(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=svc")], None),
        Endpoints::default(),
    ));
    let built = stage(detection.clone(), AnyConsumer::Logs(Arc::new(Refuse)));
    built.lifecycle.unwrap().start().await.unwrap();
    let AnyConsumer::Logs(refusing) = built.consumer else {
        panic!("not a logs consumer");
    };
    let (ack, waiter) = Ack::new();
    refusing.consume(logs_with(2, vec![]).with_ack(ack)).await;
    assert!(matches!(waiter.await, Err(DeliveryError::Permanent { .. })));

    let capture = Capture::<Logs>::new();
    let built = stage(detection, AnyConsumer::Logs(capture.clone()));
    let AnyConsumer::Logs(accepting) = built.consumer else {
        panic!("not a logs consumer");
    };
    let (ack, waiter) = Ack::new();
    accepting.consume(logs_with(2, vec![]).with_ack(ack)).await;
    assert_eq!(waiter.await, Ok(()));
}

/// A batch that already carries every detected value is passed on as is: data shared with
/// another fan-out branch is not copied.
#[tokio::test]
async fn an_unchanged_batch_is_not_copied_and_a_changed_one_is_recounted() {
    let host = host_with(&[("OTEL_RESOURCE_ATTRIBUTES", "service.name=svc")], None);
    struct Pointer(Mutex<Option<(usize, usize)>>);
    #[async_trait]
    impl Consumer<Logs> for Pointer {
        async fn consume(&self, batch: Batch<Logs>) {
            *self.0.lock().unwrap() = Some((batch.resources().as_ptr() as usize, batch.bytes()));
            batch.settle(&Ok(()));
        }
    }
    let seen = Arc::new(Pointer(Mutex::new(None)));
    let mut keep = cfg(&[DetectorKind::Env]);
    keep.override_existing = false;
    let built = stage_with(keep, host, AnyConsumer::Logs(seen.clone()));
    built.lifecycle.unwrap().start().await.unwrap();
    let AnyConsumer::Logs(stage) = built.consumer else {
        panic!("not a logs consumer");
    };

    let has_it = logs_with(1, vec![kv("service.name", "own")]);
    let other_branch = has_it.fork();
    stage.consume(has_it).await;
    let (ptr, _) = seen.0.lock().unwrap().unwrap();
    assert_eq!(ptr, other_branch.resources().as_ptr() as usize);

    let lacks_it = logs_with(1, vec![]);
    let before = lacks_it.bytes();
    let other_branch = lacks_it.fork();
    stage.consume(lacks_it).await;
    let (ptr, bytes) = seen.0.lock().unwrap().unwrap();
    assert_ne!(ptr, other_branch.resources().as_ptr() as usize);
    assert!(bytes > before);
    // The other branch still sees the data as it came in.
    assert!(
        other_branch.resources()[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .is_empty()
    );
}

fn stage_with(
    cfg: ResourceDetectionConfig,
    host: Host,
    next: AnyConsumer,
) -> sluice_pipeline::BuiltStage {
    stage(
        Arc::new(Detection::new(
            "resource_detection",
            cfg,
            host,
            Endpoints::default(),
        )),
        next,
    )
}

// ---- through the factory ----

fn component(name: &str, yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Processor,
        id: ComponentId::with_name("resource_detection", name),
        pos: Pos::new("test.yaml", 1, 1),
        path: format!("processors.resource_detection/{name}"),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

/// Decodes and validates a section as the factory does; the warnings it gave.
fn decoded(yaml: &str) -> Result<(ResourceDetectionConfig, Vec<String>), String> {
    let c = component("a", yaml);
    let warnings = sluice_pipeline::config_keys::ConfigWarnings::default();
    let cfg: ResourceDetectionConfig =
        sluice_pipeline::config_keys::decode_section(&c, config::NO_EFFECT, &warnings)
            .map_err(|e| e.to_string())?;
    let cfg = cfg.validate(&c, &warnings).map_err(|e| e.to_string())?;
    let warned = warnings
        .take()
        .into_iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    Ok((cfg, warned))
}

#[test]
fn config_defaults_and_top_level_keys() {
    let d = ResourceDetectionConfig::default();
    assert_eq!(d.detectors, vec![DetectorKind::Env]);
    assert!(d.override_existing);
    assert_eq!(d.timeout.0, StdDuration::from_secs(5));
    assert_eq!(d.refresh_interval.0, StdDuration::ZERO);
    assert!(!d.fail_on_missing_metadata);
    assert!(d.retry.enabled);
    assert_eq!(d.retry.initial_interval.0, StdDuration::from_secs(1));
    assert_eq!(d.retry.max_interval.0, StdDuration::from_secs(30));
    assert_eq!(d.retry.max_elapsed_time.0, StdDuration::ZERO);
    assert!(!d.fail_on_error);
    assert_eq!(d.root_path, "/");
    assert_eq!(
        d.system.hostname_sources,
        vec![HostnameSource::Dns, HostnameSource::Os]
    );
    assert_eq!(d.ec2.max_attempts, 3);
    assert_eq!(d.ec2.max_backoff.0, StdDuration::from_secs(20));
    assert_eq!(d.k8s_api.node_from_env_var, "K8S_NODE_NAME");
    assert_eq!(d.ibmcloud_vpc.protocol, "http");

    let (cfg, warned) = decoded(
        "detectors: [env, system, container, docker, ' ec2 ', k8s, lambda, env]\noverride: false\ntimeout: 2s\nrefresh_interval: 10m\nfail_on_missing_metadata: true\nretry:\n  enabled: true\n  initial_interval: 2s\n  randomization_factor: 0.1\n  multiplier: 3\n  max_interval: 10s\n  max_elapsed_time: 1m\nfail_on_error: true\nroot_path: /hostfs\nsystem:\n  hostname_sources: [os, cname, lookup, dns]\n",
    )
    .unwrap();
    assert!(warned.is_empty(), "{warned:?}");
    assert_eq!(
        cfg.detectors,
        vec![
            DetectorKind::Env,
            DetectorKind::System,
            DetectorKind::Container,
            DetectorKind::Docker,
            DetectorKind::Ec2,
            DetectorKind::K8s,
            DetectorKind::Lambda
        ]
    );
    assert!(!cfg.override_existing);
    assert_eq!(cfg.timeout.0, StdDuration::from_secs(2));
    assert_eq!(cfg.refresh_interval.0, StdDuration::from_secs(600));
    assert!(cfg.fail_on_missing_metadata);
    assert_eq!(cfg.retry.multiplier, 3.0);
    assert_eq!(detection::budget(&cfg), StdDuration::from_secs(60));
    assert!(cfg.fail_on_error);
    assert_eq!(cfg.root_path, "/hostfs");
    assert_eq!(
        cfg.system.hostname_sources,
        vec![
            HostnameSource::Os,
            HostnameSource::Cname,
            HostnameSource::Lookup,
            HostnameSource::Dns
        ]
    );
}

#[test]
fn every_detector_name_and_block_is_accepted() {
    let names = [
        "env",
        "system",
        "docker",
        "container",
        "k8s",
        "lambda",
        "ec2",
        "ecs",
        "eks",
        "elastic_beanstalk",
        "gcp",
        "azure",
        "aks",
        "azurecontainerapps",
        "heroku",
        "consul",
        "k8s_api",
        "k8snode",
        "kubeadm",
        "openshift",
        "dynatrace",
        "hetzner",
        "akamai",
        "scaleway",
        "digitalocean",
        "oraclecloud",
        "vultr",
        "upcloud",
        "nova",
        "alibaba_ecs",
        "tencent_cvm",
        "ibmcloud_vpc",
        "ibmcloud_classic",
    ];
    let yaml = format!(
        "detectors: [{}]\n\
         env:\n  allow_list: [service.name]\n\
         system:\n  resource_attributes:\n    host.id:\n      enabled: true\n\
         docker:\n  resource_attributes:\n    container.name: {{enabled: true}}\n\
         ec2:\n  tags: ['^team$']\n  tags_from_imds: true\n  max_attempts: 5\n  max_backoff: 5s\n\
         ecs:\n  resource_attributes:\n    aws.log.group.arns: {{enabled: false}}\n\
         eks:\n  node_from_env_var: K8S_NODE_NAME\n  imds_check_max_retry: 2\n  max_attempts: 2\n  max_backoff: 1s\n\
         lambda:\n  resource_attributes:\n    faas.max_memory: {{enabled: false}}\n\
         elasticbeanstalk:\n  resource_attributes:\n    service.version: {{enabled: false}}\n\
         gcp:\n  labels: ['^env$']\n  gke_host_type: true\n\
         azure:\n  tags: ['.*']\n\
         aks:\n  resource_attributes:\n    k8s.cluster.name: {{enabled: true}}\n\
         azurecontainerapps:\n  resource_attributes:\n    service.name: {{enabled: true}}\n\
         heroku:\n  resource_attributes:\n    heroku.app.id: {{enabled: false}}\n\
         consul:\n  address: consul.local:8500\n  datacenter: dc1\n  token: t\n  token_file: /f\n  namespace: ns\n  meta:\n    rack: ''\n\
         k8s_api:\n  auth_type: serviceAccount\n  context: c\n  node_from_env_var: NODE\n\
         k8snode:\n  auth_type: kubeConfig\n\
         kubeadm:\n  auth_type: none\n\
         openshift:\n  address: https://api.example.com\n  token: t\n  tls:\n    insecure: false\n    ca_file: /ca.crt\n\
         hetzner: {{}}\nakamai: {{}}\nscaleway: {{}}\ndigitalocean: {{}}\noraclecloud: {{}}\n\
         vultr:\n  fail_on_missing_metadata: false\nupcloud: {{}}\n\
         nova:\n  labels: ['^x']\n\
         alibaba_ecs: {{}}\ntencent_cvm: {{}}\n\
         ibmcloud_vpc:\n  protocol: https\nibmcloud_classic: {{}}\n",
        names.join(", ")
    );
    let (cfg, warned) = decoded(&yaml).unwrap();
    assert_eq!(cfg.detectors.len(), names.len());
    assert_eq!(cfg.consul.meta.len(), 1);
    // k8snode is deprecated.
    assert!(warned.iter().any(|w| w.contains("k8snode")), "{warned:?}");
}

#[test]
fn deprecated_forms_and_go_knobs_are_warned_about() {
    let (cfg, warned) = decoded(
        "detectors: [ec2]\nattributes: [host.name]\nec2:\n  fail_on_missing_metadata: true\nmax_idle_conns: 10\nidle_conn_timeout: 90s\nendpoint: http://x\ntls:\n  min_version: '1.2'\n",
    )
    .unwrap();
    assert_eq!(cfg.attributes, Some(vec!["host.name".to_string()]));
    assert!(cfg.fails_on_missing(DetectorKind::Ec2));
    assert!(!cfg.fails_on_missing(DetectorKind::Gcp));
    for key in [
        "attributes",
        "ec2.fail_on_missing_metadata",
        "max_idle_conns",
        "idle_conn_timeout",
        "endpoint",
        "tls.min_version",
    ] {
        assert!(
            warned
                .iter()
                .any(|w| w.contains(&format!("resource_detection/a.{key}"))),
            "{key}: {warned:?}"
        );
    }
}

#[test]
fn config_errors_name_the_key_and_suggest() {
    let factory = ResourceDetectionProcessorFactory;
    let build = |yaml: &str| {
        factory
            .build(
                &component("e", yaml),
                AnyConsumer::Logs(Capture::<Logs>::new()),
                &BuildContext::default(),
            )
            .err()
            .unwrap()
            .to_string()
    };
    let e = build("detectors: [sytem]\n");
    assert!(e.contains("sytem") && e.contains("system"), "{e}");
    let e = build("overide: true\n");
    assert!(e.contains("override"), "{e}");
    let e = build("timeout: 0s\n");
    assert!(e.contains("processors.resource_detection/e.timeout"), "{e}");
    let e = build("root_path: ''\n");
    assert!(e.contains("root_path"), "{e}");
    let e = build("system:\n  hostname_sources: [fqdn]\n");
    assert!(e.contains("fqdn"), "{e}");
    let e = build("ec2:\n  tags: ['(unclosed']\n");
    assert!(
        e.contains("ec2.tags.0") && e.contains("regular expression"),
        "{e}"
    );
    let e = build("system:\n  resource_attributes:\n    host.nmae:\n      enabled: true\n");
    assert!(
        e.contains("system.resource_attributes.host.nmae") && e.contains("host.name"),
        "{e}"
    );
    let e = build("ec2:\n  resource_attributes:\n    host.name:\n      enabeld: true\n");
    assert!(e.contains("enabeld"), "{e}");
    let e = build("ibmcloud_vpc:\n  protocol: ftp\n");
    assert!(e.contains("ibmcloud_vpc.protocol"), "{e}");
    let e = build("k8s_api:\n  auth_type: token\n");
    assert!(e.contains("token"), "{e}");
    let e = build("retry:\n  multiplier: 0.5\n");
    assert!(e.contains("retry.multiplier"), "{e}");
    let e = build("proxy_url: socks5://x\n");
    assert!(e.contains("proxy_url"), "{e}");
    // Unknown detector blocks are refused as upstream refuses them.
    let e = build("dynatrace: {}\n");
    assert!(e.contains("dynatrace"), "{e}");
}

#[test]
fn a_zero_timeout_without_retries_falls_back_to_five_seconds_with_a_warning() {
    let (cfg, warned) = decoded("timeout: 0s\nretry:\n  enabled: false\n").unwrap();
    assert_eq!(cfg.timeout.0, StdDuration::from_secs(5));
    assert!(warned.iter().any(|w| w.contains("timeout")), "{warned:?}");
    // With a total budget, a zero per-attempt timeout is fine.
    let (cfg, warned) = decoded("timeout: 0s\nretry:\n  max_elapsed_time: 30s\n").unwrap();
    assert_eq!(detection::budget(&cfg), StdDuration::from_secs(30));
    assert!(warned.is_empty(), "{warned:?}");
}

#[test]
fn factory_answers_to_both_names() {
    let info = ResourceDetectionProcessorFactory.info();
    assert!(info.answers_to("resource_detection"));
    assert!(info.answers_to("resourcedetection"));
    assert_eq!(info.signals, &SignalKind::ALL);
}

/// Pipelines that list the same processor id share one detection, run once; a different id
/// detects on its own. The fixture root stands in for the host, so nothing of the test
/// machine's own environment is involved.
#[tokio::test]
async fn pipelines_share_one_detection_per_processor_id() {
    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let fx = Fixture::new().file("/proc/self/cgroup", &format!("0::/docker/{A}\n"));
    let yaml = format!(
        "detectors: [container]\nroot_path: {}\n",
        fx.path().display()
    );
    let factory = ResourceDetectionProcessorFactory;
    let ctx = BuildContext::default();
    let traces_out = Capture::<Traces>::new();
    let logs_out = Capture::<Logs>::new();
    let traces = factory
        .build(
            &component("shared", &yaml),
            AnyConsumer::Traces(traces_out.clone()),
            &ctx,
        )
        .unwrap();
    let logs = factory
        .build(
            &component("shared", &yaml),
            AnyConsumer::Logs(logs_out.clone()),
            &ctx,
        )
        .unwrap();
    traces.lifecycle.unwrap().start().await.unwrap();
    // The container "changes" after the first pipeline started: the second must not notice.
    std::fs::write(
        fx.path().join("proc/self/cgroup"),
        format!("0::/docker/{B}\n"),
    )
    .unwrap();
    logs.lifecycle.unwrap().start().await.unwrap();
    let other_out = Capture::<Logs>::new();
    let other = factory
        .build(
            &component("other", &yaml),
            AnyConsumer::Logs(other_out.clone()),
            &ctx,
        )
        .unwrap();
    other.lifecycle.unwrap().start().await.unwrap();

    let AnyConsumer::Logs(logs_in) = logs.consumer else {
        panic!("not a logs consumer");
    };
    logs_in.consume(logs_with(1, vec![])).await;
    assert_eq!(
        attr(logs_out.last()[0].resource.as_ref(), "container.id"),
        Some(A)
    );
    let AnyConsumer::Traces(traces_in) = traces.consumer else {
        panic!("not a traces consumer");
    };
    traces_in
        .consume(Batch::from_resources(vec![ResourceSpans::default()]))
        .await;
    assert_eq!(
        attr(traces_out.last()[0].resource.as_ref(), "container.id"),
        Some(A)
    );
    let AnyConsumer::Logs(other_in) = other.consumer else {
        panic!("not a logs consumer");
    };
    other_in.consume(logs_with(1, vec![])).await;
    assert_eq!(
        attr(other_out.last()[0].resource.as_ref(), "container.id"),
        Some(B)
    );
}
