//! The exporter as a whole, driven through its factory as the service builds it.

use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_config::{ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::codec::decode_json;

fn component(yaml: &str) -> ComponentConfig {
    ComponentConfig {
        kind: ComponentKind::Exporter,
        id: ComponentId::with_name("file", "t"),
        pos: Pos::new("test.yaml", 1, 1),
        path: "exporters.file/t".into(),
        node: parse_yaml("test.yaml", yaml).unwrap(),
    }
}

fn sink(yaml: &str, ctx: &BuildContext) -> Arc<FileSink> {
    let c = component(yaml);
    let cfg: FileConfig = decode_config(&c).unwrap();
    config::validate(&cfg, &c).unwrap();
    Arc::new(FileSink::new("file/t", &cfg, &SignalKind::ALL, ctx))
}

fn logs(segment: Option<&str>, bodies: &[&str]) -> ResourceLogs {
    ResourceLogs {
        resource: segment.map(|s| Resource {
            attributes: vec![KeyValue {
                key: "fileexporter.path_segment".into(),
                value: Some(AnyValue {
                    value: Some(Value::StringValue(s.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: bodies
                .iter()
                .map(|b| LogRecord {
                    body: Some(AnyValue {
                        value: Some(Value::StringValue((*b).into())),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn bodies(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        for resource in decode_json::<Logs>(line.as_bytes()).unwrap() {
            for scope in resource.scope_logs {
                for record in scope.log_records {
                    if let Some(Value::StringValue(s)) = record.body.and_then(|b| b.value) {
                        out.push(s);
                    }
                }
            }
        }
    }
    out
}

async fn export_logs(sink: &FileSink, resources: Vec<ResourceLogs>) -> Result<(), DeliveryError> {
    Export::<Logs>::export(sink, &Batch::from_resources(resources)).await
}

fn deadline() -> Instant {
    Instant::now() + StdDuration::from_secs(5)
}

#[tokio::test]
async fn every_signal_shares_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    std::fs::write(&path, "old content\n").unwrap();
    let ctx = BuildContext::default();
    let sink = sink(
        &format!("path: {}\nflush_interval: 0s\n", path.display()),
        &ctx,
    );
    sink.start().await.unwrap();
    export_logs(&sink, vec![logs(None, &["a"])]).await.unwrap();
    let spans = vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                name: "op".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }];
    Export::<Traces>::export(&*sink, &Batch::from_resources(spans))
        .await
        .unwrap();
    sink.shutdown(deadline()).await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // `append` defaults to false: what was there before start is gone.
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("{\"resourceLogs\""));
    assert!(lines[1].starts_with("{\"resourceSpans\""));
}

#[tokio::test]
async fn append_keeps_what_the_file_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let ctx = BuildContext::default();
    let yaml = format!("path: {}\nappend: true\n", path.display());
    for body in ["first", "second"] {
        let sink = sink(&yaml, &ctx);
        sink.start().await.unwrap();
        export_logs(&sink, vec![logs(None, &[body])]).await.unwrap();
        sink.shutdown(deadline()).await;
    }
    assert_eq!(bodies(&path), ["first", "second"]);
}

#[tokio::test]
async fn group_by_writes_each_resource_to_its_file_and_counts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = BuildContext::default();
    let sink = sink(
        &format!(
            "path: {}/logs-*.jsonl\ngroup_by:\n  enabled: true\n  max_open_files: 1\n",
            dir.path().display()
        ),
        &ctx,
    );
    sink.start().await.unwrap();
    export_logs(
        &sink,
        vec![
            logs(Some("a"), &["a1"]),
            logs(Some("../b"), &["b1"]),
            logs(None, &["lost1", "lost2"]),
            logs(Some("a"), &["a2"]),
        ],
    )
    .await
    .unwrap();
    export_logs(&sink, vec![logs(Some("../b"), &["b2"])])
        .await
        .unwrap();
    sink.shutdown(deadline()).await;
    assert_eq!(bodies(&dir.path().join("logs-a.jsonl")), ["a1", "a2"]);
    assert_eq!(
        bodies(&dir.path().join("logs-%2E.%2Fb.jsonl")),
        ["b1", "b2"]
    );
    // One line per file per batch: a and b's first batch, b's second.
    let a = std::fs::read_to_string(dir.path().join("logs-a.jsonl")).unwrap();
    assert_eq!(a.lines().count(), 1);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["logs-%2E.%2Fb.jsonl", "logs-a.jsonl"]);
    let text = ctx.telemetry.metrics.render();
    assert!(
        text.contains("sluice_exporter_file_unrouted_log_records_total{exporter=\"file/t\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn default_segment_keeps_resources_without_the_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = BuildContext::default();
    let sink = sink(
        &format!(
            "path: {}/*/out.jsonl\ngroup_by:\n  enabled: true\n  default_segment: unknown\n",
            dir.path().display()
        ),
        &ctx,
    );
    sink.start().await.unwrap();
    // A value equal to the default segment shares its file.
    export_logs(
        &sink,
        vec![
            logs(None, &["x"]),
            logs(Some("svc"), &["y"]),
            logs(Some("unknown"), &["z"]),
            logs(None, &["w"]),
            logs(Some("svc"), &["v"]),
        ],
    )
    .await
    .unwrap();
    sink.shutdown(deadline()).await;
    let unknown = dir.path().join("unknown/out.jsonl");
    assert_eq!(bodies(&unknown), ["x", "z", "w"]);
    assert_eq!(
        std::fs::read_to_string(&unknown).unwrap().lines().count(),
        1
    );
    assert_eq!(bodies(&dir.path().join("svc/out.jsonl")), ["y", "v"]);
}

#[tokio::test]
async fn proto_records_are_length_prefixed_and_rotation_keeps_them_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.pb");
    let ctx = BuildContext::default();
    let sink = sink(
        &format!(
            "path: {}\nformat: proto\nrotation:\n  max_megabytes: 0.0001\n  max_backups: 3\n",
            path.display()
        ),
        &ctx,
    );
    sink.start().await.unwrap();
    for i in 0..10 {
        let body = format!("record-{i}-{}", "x".repeat(40));
        export_logs(&sink, vec![logs(None, &[&body])])
            .await
            .unwrap();
    }
    sink.shutdown(deadline()).await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // 0.0001 MiB is 104 bytes, room for one ~60-byte record per file.
    assert_eq!(files.len(), 4, "{files:?}");
    let mut seen = Vec::new();
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let resources =
                sluice_pipeline::codec::decode_proto::<Logs>(&rest[4..4 + len]).unwrap();
            for r in resources {
                for s in r.scope_logs {
                    for l in s.log_records {
                        if let Some(Value::StringValue(b)) = l.body.and_then(|b| b.value) {
                            seen.push(b[..8].to_string());
                        }
                    }
                }
            }
            rest = &rest[4 + len..];
        }
    }
    seen.sort();
    assert_eq!(seen, ["record-6", "record-7", "record-8", "record-9"]);
}

#[tokio::test]
async fn an_unwritable_file_is_a_retryable_error() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        return;
    }
    let ctx = BuildContext::default();
    let sink = sink("path: /dev/full\nappend: true\nflush_interval: 0s\n", &ctx);
    sink.start().await.unwrap();
    // The first batch is taken and held; the failure shows on the next one.
    export_logs(&sink, vec![logs(None, &["a"])]).await.unwrap();
    let e = export_logs(&sink, vec![logs(None, &["b"])])
        .await
        .unwrap_err();
    assert!(!e.is_permanent(), "{e}");
    sink.shutdown(deadline()).await;
}
