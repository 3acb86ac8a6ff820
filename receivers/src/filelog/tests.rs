//! The receiver in-process: real files in a temporary directory, a pipeline that records
//! what it gets and can refuse it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use sluice_config::{ComponentConfig, ComponentId, ComponentKind, Pos, parse_yaml};
use sluice_pipeline::storage::{FileStorageConfig, StorageExtensions};
use sluice_pipeline::{Consumer, DeliveryError, DynConsumer};

use super::*;

/// A record as the pipeline got it, with its resource.
#[derive(Clone, Debug)]
struct Got {
    record: LogRecord,
    resource: Vec<(String, String)>,
    scope: String,
}

impl Got {
    fn body(&self) -> String {
        match self.record.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::BytesValue(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        }
    }

    fn attribute(&self, key: &str) -> Option<String> {
        self.record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
            .map(|v| match v {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            })
    }

    fn resource(&self, key: &str) -> Option<String> {
        self.resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

struct Sink {
    got: Mutex<Vec<Got>>,
    refuse: AtomicBool,
    permanent: AtomicBool,
    batches: AtomicUsize,
    /// Records in each batch taken.
    sizes: Mutex<Vec<usize>>,
    /// Batches from this one on (counting from 0) are kept unanswered in `held`: a pipeline
    /// that never acknowledges.
    hold_from: AtomicUsize,
    held: Mutex<Vec<Batch<Logs>>>,
}

impl Default for Sink {
    fn default() -> Self {
        Sink {
            got: Mutex::default(),
            refuse: AtomicBool::default(),
            permanent: AtomicBool::default(),
            batches: AtomicUsize::default(),
            sizes: Mutex::default(),
            hold_from: AtomicUsize::new(usize::MAX),
            held: Mutex::default(),
        }
    }
}

#[async_trait]
impl Consumer<Logs> for Sink {
    async fn consume(&self, batch: Batch<Logs>) {
        let number = self.batches.fetch_add(1, AtomicOrdering::SeqCst);
        if number >= self.hold_from.load(AtomicOrdering::SeqCst) {
            self.held.lock().unwrap().push(batch);
            return;
        }
        if self.permanent.load(AtomicOrdering::SeqCst) {
            batch.settle(&Err(DeliveryError::permanent("bad data")));
            return;
        }
        if self.refuse.load(AtomicOrdering::SeqCst) {
            batch.settle(&Err(DeliveryError::retryable("backend down")));
            return;
        }
        self.sizes.lock().unwrap().push(batch.items());
        let mut got = self.got.lock().unwrap();
        for r in batch.resources() {
            let resource: Vec<(String, String)> = r
                .resource
                .as_ref()
                .map(|res| {
                    res.attributes
                        .iter()
                        .map(|kv| {
                            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(any_value::Value::StringValue(s)) => s.clone(),
                                other => format!("{other:?}"),
                            };
                            (kv.key.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default();
            for s in &r.scope_logs {
                let scope = s.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                for record in &s.log_records {
                    got.push(Got {
                        record: record.clone(),
                        resource: resource.clone(),
                        scope: scope.clone(),
                    });
                }
            }
        }
        drop(got);
        batch.settle(&Ok(()));
    }
}

impl Sink {
    fn bodies(&self) -> Vec<String> {
        self.got.lock().unwrap().iter().map(Got::body).collect()
    }

    fn records(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` records arrived; returns what arrived.
    async fn wait_for(&self, n: usize) -> Vec<String> {
        for _ in 0..400 {
            if self.got.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.bodies()
    }
}

struct Harness {
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }

    fn append(&self, name: &str, text: &str) {
        self.append_bytes(name, text.as_bytes());
    }

    fn append_bytes(&self, name: &str, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path(name))
            .unwrap();
        f.write_all(bytes).unwrap();
    }

    fn config(&self, yaml: &str) -> ComponentConfig {
        let text = yaml.replace("@DIR@", &self.dir.path().display().to_string());
        ComponentConfig {
            kind: ComponentKind::Receiver,
            id: ComponentId::new("filelog"),
            pos: Pos::new("test.yaml", 1, 1),
            path: "receivers.filelog".into(),
            node: parse_yaml("test.yaml", &text).unwrap(),
        }
    }

    fn context(&self) -> BuildContext {
        BuildContext {
            storage: StorageExtensions::new([FileStorage {
                id: "file_storage".into(),
                config: FileStorageConfig {
                    directory: self.path("state"),
                    ..FileStorageConfig::default()
                },
            }]),
            ..BuildContext::default()
        }
    }

    fn build(&self, yaml: &str, sink: &Arc<Sink>) -> Result<Arc<FilelogReceiver>, ConfigErrors> {
        let consumer: DynConsumer<Logs> = sink.clone();
        build(
            &self.config(yaml),
            ReceiverOutputs {
                logs: Some(consumer),
                ..ReceiverOutputs::default()
            },
            &self.context(),
        )
    }

    async fn start(&self, yaml: &str, sink: &Arc<Sink>) -> Arc<FilelogReceiver> {
        let receiver = self.build(yaml, sink).unwrap();
        receiver.start().await.unwrap();
        receiver
    }

    /// The offsets saved in the checkpoint, by path.
    fn saved(&self) -> Vec<(String, u64)> {
        self.saved_records()
            .into_iter()
            .map(|r| (r.path, r.offset))
            .collect()
    }

    /// The files saved in the checkpoint.
    fn saved_records(&self) -> Vec<checkpoint::FileRecord> {
        let Ok(bytes) = std::fs::read(self.checkpoint_path()) else {
            return Vec::new();
        };
        checkpoint::load(&bytes).unwrap()
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.path("state/filelog/checkpoints/offsets")
    }

    /// Waits (bounded) until the checkpoint saves `offset` for `name`; returns what it saves.
    async fn wait_saved(&self, name: &str, offset: u64) -> Vec<(String, u64)> {
        let path = self.path(name).display().to_string();
        for _ in 0..400 {
            if self.saved().iter().any(|(p, o)| *p == path && *o == offset) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.saved()
    }
}

/// Waits (bounded) until `done` holds.
async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text).unwrap();
    gz.finish().unwrap()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn stop(receiver: &FilelogReceiver) {
    receiver
        .shutdown(Instant::now() + Duration::from_secs(5))
        .await;
}

fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

#[tokio::test]
async fn reads_files_with_their_attributes() {
    let h = Harness::new();
    h.write("app.log", &lines("a", 0..3));
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/*.log']\nstart_at: beginning\npoll_interval: 20ms\ninclude_file_path: true\ninclude_file_record_number: true\ninclude_file_record_offset: true\nattributes: {team: web}\nresource: {service.name: shop}\n",
            &sink,
        )
        .await;
    assert_eq!(sink.wait_for(3).await, ["a 0", "a 1", "a 2"]);
    h.append("app.log", "a 3\n");
    assert_eq!(sink.wait_for(4).await.len(), 4);
    stop(&receiver).await;
    let got = sink.records();
    assert_eq!(
        got[0].attribute("log.file.name").as_deref(),
        Some("app.log")
    );
    assert_eq!(
        got[0].attribute("log.file.path"),
        Some(h.path("app.log").display().to_string())
    );
    assert_eq!(
        got[1].attribute("log.file.record_number").as_deref(),
        Some("2")
    );
    assert_eq!(
        got[1].attribute("log.file.record_offset").as_deref(),
        Some("4")
    );
    assert_eq!(got[0].attribute("team").as_deref(), Some("web"));
    assert_eq!(got[0].resource("service.name").as_deref(), Some("shop"));
    assert!(got[0].record.observed_time_unix_nano > 0);
}

#[tokio::test]
async fn start_at_end_skips_what_was_there_but_reads_new_files_whole() {
    let h = Harness::new();
    h.write("old.log", &lines("old", 0..5));
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start("include: ['@DIR@/*.log']\npoll_interval: 20ms\n", &sink)
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    h.append("old.log", "old new\n");
    h.write("new.log", &lines("new", 0..2));
    let mut got = sink.wait_for(3).await;
    got.sort();
    assert_eq!(got, ["new 0", "new 1", "old new"]);
    stop(&receiver).await;
}

#[tokio::test]
async fn checkpoints_move_only_with_acknowledgements_and_survive_a_restart() {
    let h = Harness::new();
    h.write("app.log", &lines("line", 0..100));
    let sink = Arc::new(Sink::default());
    sink.refuse.store(true, AtomicOrdering::SeqCst);
    let config = "include: ['@DIR@/app.log']\nstart_at: beginning\npoll_interval: 20ms\nstorage: file_storage\n";
    let receiver = h.start(config, &sink).await;
    // Refused for a while: the file is known, its checkpoint stays at 0.
    for _ in 0..200 {
        if sink.batches.load(AtomicOrdering::SeqCst) >= 3 && !h.saved().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sink.batches.load(AtomicOrdering::SeqCst) >= 1);
    assert!(
        h.saved().iter().all(|(_, offset)| *offset == 0),
        "{:?}",
        h.saved()
    );
    sink.refuse.store(false, AtomicOrdering::SeqCst);
    assert_eq!(sink.wait_for(100).await.len(), 100);
    let size = std::fs::metadata(h.path("app.log")).unwrap().len();
    stop(&receiver).await;
    assert_eq!(h.saved(), [(h.path("app.log").display().to_string(), size)]);
    // A restart reads only what was added since.
    h.append("app.log", "line 100\n");
    let again = Arc::new(Sink::default());
    let receiver = h.start(config, &again).await;
    assert_eq!(again.wait_for(1).await, ["line 100"]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(again.bodies(), ["line 100"]);
    stop(&receiver).await;
}

#[tokio::test]
async fn rename_rotation_and_truncation_lose_nothing() {
    let h = Harness::new();
    h.write("app.log", &lines("x", 0..10));
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/app.log']\nstart_at: beginning\npoll_interval: 20ms\n",
            &sink,
        )
        .await;
    assert_eq!(sink.wait_for(10).await.len(), 10);
    // Written just before the rename, read from the renamed file (outside the glob).
    h.append("app.log", &lines("x", 10..15));
    std::fs::rename(h.path("app.log"), h.path("app.log.1")).unwrap();
    h.write("app.log", &lines("y", 0..3));
    assert_eq!(sink.wait_for(18).await.len(), 18);
    // Truncated in place and written again.
    std::fs::write(h.path("app.log"), "z 0\n").unwrap();
    let got = sink.wait_for(19).await;
    stop(&receiver).await;
    let mut want: Vec<String> = (0..15).map(|i| format!("x {i}")).collect();
    want.extend((0..3).map(|i| format!("y {i}")));
    want.push("z 0".into());
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "got {got:?}");
}

#[tokio::test]
async fn copytruncate_reads_the_rest_from_the_copy() {
    let h = Harness::new();
    h.write("app.log", &lines("c", 0..5));
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/app.log']\nstart_at: beginning\npoll_interval: 50ms\n",
            &sink,
        )
        .await;
    assert_eq!(sink.wait_for(5).await.len(), 5);
    // Lines the receiver has not read yet when the file is copied and truncated.
    h.append("app.log", &lines("c", 5..8));
    std::fs::copy(h.path("app.log"), h.path("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(h.path("app.log"))
        .unwrap()
        .set_len(0)
        .unwrap();
    h.append("app.log", "after 0\n");
    let got = sink.wait_for(9).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop(&receiver).await;
    let mut sorted = sink.bodies();
    sorted.sort();
    let mut want: Vec<String> = (0..8).map(|i| format!("c {i}")).collect();
    want.push("after 0".into());
    want.sort();
    assert_eq!(sorted, want, "got {got:?}");
}

#[tokio::test]
async fn on_truncate_choices() {
    for (choice, want) in [
        ("read_whole_file", vec!["a 0", "a 1", "a 0", "b 2", "b 3"]),
        ("read_new", vec!["a 0", "a 1", "b 2", "b 3"]),
        ("ignore", vec!["a 0", "a 1", "b 3"]),
    ] {
        let h = Harness::new();
        h.write("t.log", "a 0\na 1\n");
        let sink = Arc::new(Sink::default());
        let receiver = h
            .start(
                &format!("include: ['@DIR@/t.log']\nstart_at: beginning\npoll_interval: 20ms\non_truncate: {choice}\n"),
                &sink,
            )
            .await;
        assert_eq!(sink.wait_for(2).await.len(), 2);
        // Same first bytes, shorter than what was read: truncated and written again.
        std::fs::write(h.path("t.log"), "a 0\n").unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.append("t.log", "b 2\n");
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.append("t.log", "b 3\n");
        let got = sink.wait_for(want.len()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop(&receiver).await;
        assert_eq!(sink.bodies(), want, "on_truncate {choice}: {got:?}");
    }
}

#[tokio::test]
async fn multiline_and_force_flush() {
    let h = Harness::new();
    h.write(
        "ml.log",
        "Exception in thread 1\n    at a\n    at b\nException in thread 2\n    at c\n",
    );
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/ml.log']\nstart_at: beginning\npoll_interval: 20ms\nforce_flush_period: 100ms\nmultiline:\n  line_start_pattern: ^Exception\n",
            &sink,
        )
        .await;
    let got = sink.wait_for(2).await;
    stop(&receiver).await;
    assert_eq!(
        got,
        [
            "Exception in thread 1\n    at a\n    at b",
            "Exception in thread 2\n    at c"
        ]
    );
}

#[tokio::test]
async fn encodings_and_compression() {
    let h = Harness::new();
    let utf16: Vec<u8> = "héllo\nwörld\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    std::fs::write(h.path("u16.log"), &utf16).unwrap();
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/u16.log']\nstart_at: beginning\npoll_interval: 20ms\nencoding: utf-16le\n",
            &sink,
        )
        .await;
    assert_eq!(sink.wait_for(2).await, ["héllo", "wörld"]);
    stop(&receiver).await;

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"zipped 1\nzipped 2\n").unwrap();
    std::fs::write(h.path("old.log.gz"), gz.finish().unwrap()).unwrap();
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/*.gz']\nstart_at: beginning\npoll_interval: 20ms\ncompression: auto\n",
            &sink,
        )
        .await;
    assert_eq!(sink.wait_for(2).await, ["zipped 1", "zipped 2"]);
    // An appended member is read on its own.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"zipped 3\n").unwrap();
    let member = gz.finish().unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(h.path("old.log.gz"))
        .unwrap()
        .write_all(&member)
        .unwrap();
    assert_eq!(sink.wait_for(3).await, ["zipped 1", "zipped 2", "zipped 3"]);
    stop(&receiver).await;

    h.write("raw.bin", "no\nsplit\n");
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/raw.bin']\nstart_at: beginning\npoll_interval: 20ms\nencoding: nop\nforce_flush_period: 50ms\n",
            &sink,
        )
        .await;
    let got = sink.wait_for(1).await;
    stop(&receiver).await;
    assert_eq!(got, ["no\nsplit\n"]);
    assert!(matches!(
        sink.records()[0]
            .record
            .body
            .as_ref()
            .and_then(|b| b.value.as_ref()),
        Some(any_value::Value::BytesValue(_))
    ));
}

#[tokio::test]
async fn long_entries_split_or_truncate() {
    for (behavior, want) in [
        ("split", vec!["0123456789", "abcdef", "short"]),
        ("truncate", vec!["0123456789", "short"]),
    ] {
        let h = Harness::new();
        h.write("long.log", "0123456789abcdef\nshort\n");
        let sink = Arc::new(Sink::default());
        let receiver = h
            .start(
                &format!("include: ['@DIR@/long.log']\nstart_at: beginning\npoll_interval: 20ms\nmax_log_size: 10\nmax_log_size_behavior: {behavior}\n"),
                &sink,
            )
            .await;
        let got = sink.wait_for(want.len()).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        stop(&receiver).await;
        assert_eq!(sink.bodies(), want, "{behavior}: {got:?}");
    }
}

#[tokio::test]
async fn delete_after_read_waits_for_delivery() {
    let h = Harness::new();
    h.write("once.log", &lines("d", 0..3));
    let sink = Arc::new(Sink::default());
    sink.refuse.store(true, AtomicOrdering::SeqCst);
    let receiver = h
        .start(
            "include: ['@DIR@/once.log']\nstart_at: beginning\npoll_interval: 20ms\ndelete_after_read: true\n",
            &sink,
        )
        .await;
    for _ in 0..100 {
        if sink.batches.load(AtomicOrdering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.path("once.log").exists(), "deleted before delivery");
    sink.refuse.store(false, AtomicOrdering::SeqCst);
    assert_eq!(sink.wait_for(3).await.len(), 3);
    for _ in 0..100 {
        if !h.path("once.log").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(&receiver).await;
    assert!(!h.path("once.log").exists());
}

#[tokio::test]
async fn header_lines_become_attributes() {
    let h = Harness::new();
    h.write(
        "w3c.log",
        "#Version: 1.0\n#Fields: date time cs-method\n2024-01-01 10:00:00 GET\n",
    );
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/w3c.log']\nstart_at: beginning\npoll_interval: 20ms\nheader:\n  pattern: '^#'\n  metadata_operators:\n    - type: regex_parser\n      regex: '^#(?P<key>[A-Za-z]+): (?P<value>.*)$'\n",
            &sink,
        )
        .await;
    let got = sink.wait_for(1).await;
    stop(&receiver).await;
    assert_eq!(got, ["2024-01-01 10:00:00 GET"]);
    let record = &sink.records()[0];
    assert_eq!(record.attribute("key").as_deref(), Some("Fields"));
    assert_eq!(
        record.attribute("value").as_deref(),
        Some("date time cs-method")
    );
}

#[tokio::test]
async fn refused_batches_follow_retry_on_failure() {
    let h = Harness::new();
    h.write("r.log", "one\n");
    let sink = Arc::new(Sink::default());
    sink.permanent.store(true, AtomicOrdering::SeqCst);
    let config = "include: ['@DIR@/r.log']\nstart_at: beginning\npoll_interval: 20ms\nstorage: file_storage\n";
    let receiver = h.start(config, &sink).await;
    // Refused for good: counted and moved past, so the checkpoint moves.
    for _ in 0..200 {
        if h.saved().first().is_some_and(|(_, o)| *o == 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.shared.refused.get(), 1);
    stop(&receiver).await;

    // Written as upstream's default (enabled: false): a retryable refusal is given up at once.
    let h = Harness::new();
    h.write("r.log", "one\n");
    let sink = Arc::new(Sink::default());
    sink.refuse.store(true, AtomicOrdering::SeqCst);
    let receiver = h
        .start(
            "include: ['@DIR@/r.log']\nstart_at: beginning\npoll_interval: 20ms\nretry_on_failure: {enabled: false}\n",
            &sink,
        )
        .await;
    for _ in 0..200 {
        if receiver.shared.refused.get() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.shared.refused.get(), 1);
    assert_eq!(sink.batches.load(AtomicOrdering::SeqCst), 1);
    stop(&receiver).await;

    // Without the section: retried until taken.
    let h = Harness::new();
    h.write("r.log", "one\n");
    let sink = Arc::new(Sink::default());
    sink.refuse.store(true, AtomicOrdering::SeqCst);
    let receiver = h
        .start(
            "include: ['@DIR@/r.log']\nstart_at: beginning\npoll_interval: 20ms\n",
            &sink,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sink.refuse.store(false, AtomicOrdering::SeqCst);
    assert_eq!(sink.wait_for(1).await, ["one"]);
    assert_eq!(receiver.shared.refused.get(), 0);
    stop(&receiver).await;
}

#[tokio::test]
async fn exclude_and_exclude_older_than() {
    let h = Harness::new();
    h.write("keep.log", "keep\n");
    h.write("skip.log", "skip\n");
    h.write("old.log", "old\n");
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(h.path("old.log"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/*.log']\nexclude: ['@DIR@/skip*']\nexclude_older_than: 1h\nstart_at: beginning\npoll_interval: 20ms\n",
            &sink,
        )
        .await;
    let got = sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(&receiver).await;
    assert_eq!(got, ["keep"]);
    assert_eq!(sink.bodies(), ["keep"]);
}

#[tokio::test]
async fn operators_run_on_each_line() {
    let h = Harness::new();
    h.write(
        "app.log",
        "2023-06-19 05:20:50 ERROR disk full\n2023-06-20 12:50:00 DEBUG all good\nnot matching\n",
    );
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            r#"include: ['@DIR@/app.log']
start_at: beginning
poll_interval: 20ms
operators:
  - type: regex_parser
    regex: '^(?P<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?P<sev>[A-Z]*) (?P<msg>.*)$'
    on_error: drop_quiet
    timestamp:
      parse_from: attributes.time
      layout: '%Y-%m-%d %H:%M:%S'
      location: UTC
    severity:
      parse_from: attributes.sev
  - type: filter
    expr: 'attributes.sev == "DEBUG"'
"#,
            &sink,
        )
        .await;
    let got = sink.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop(&receiver).await;
    assert_eq!(got, ["2023-06-19 05:20:50 ERROR disk full"]);
    let r = &sink.records()[0];
    assert_eq!(r.record.severity_number, 17);
    assert_eq!(r.record.severity_text, "ERROR");
    assert_eq!(r.record.time_unix_nano, 1_687_152_050_000_000_000);
    assert_eq!(r.attribute("msg").as_deref(), Some("disk full"));
    assert!(r.scope.is_empty());
}

#[tokio::test]
async fn an_operator_holding_entries_holds_the_checkpoint() {
    let h = Harness::new();
    h.write("stack.log", "first\n  detail\n");
    let sink = Arc::new(Sink::default());
    let config = "include: ['@DIR@/stack.log']\nstart_at: beginning\npoll_interval: 20ms\nstorage: file_storage\npreserve_leading_whitespaces: true\noperators:\n  - type: recombine\n    combine_field: body\n    is_first_entry: body matches \"^[^ ]\"\n    force_flush_period: 1h\n";
    let receiver = h.start(config, &sink).await;
    for _ in 0..100 {
        if !h.saved().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The recombine operator holds both lines: nothing delivered, nothing committed.
    assert!(sink.bodies().is_empty());
    assert!(h.saved().iter().all(|(_, o)| *o == 0), "{:?}", h.saved());
    h.append("stack.log", "second\n");
    assert_eq!(sink.wait_for(1).await, ["first\n  detail"]);
    for _ in 0..100 {
        if h.saved().iter().any(|(_, o)| *o == 15) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Committed up to the start of the line still held.
    assert_eq!(h.saved()[0].1, 15);
    stop(&receiver).await;
}

/// Bug b: a file truncated and read again under `read_whole_file` has a new fingerprint and
/// offsets counted from 0. Saved before those reads are acknowledged, the new fingerprint
/// went with the old offset; after a crash, the file grown past that offset was resumed there,
/// losing its new lines before it.
#[tokio::test]
async fn a_truncated_file_keeps_its_old_identity_until_its_new_reads_are_acknowledged() {
    let h = Harness::new();
    let old = lines("a", 0..10);
    h.write("t.log", &old);
    let sink = Arc::new(Sink::default());
    let config = "include: ['@DIR@/t.log']\nstart_at: beginning\npoll_interval: 20ms\nstorage: file_storage\n";
    let receiver = h.start(config, &sink).await;
    assert_eq!(sink.wait_for(10).await.len(), 10);
    h.wait_saved("t.log", old.len() as u64).await;
    // The backend goes down; the file is truncated and written again (its first line, the
    // same as before, so it reads as truncated in place).
    sink.refuse.store(true, AtomicOrdering::SeqCst);
    let refused_before = sink.batches.load(AtomicOrdering::SeqCst);
    std::fs::write(h.path("t.log"), "a 0\n").unwrap();
    wait_until(|| sink.batches.load(AtomicOrdering::SeqCst) > refused_before).await;
    receiver
        .shutdown(Instant::now() + Duration::from_millis(300))
        .await;
    let saved = h.saved_records();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert_eq!(
        (saved[0].fingerprint.as_str(), saved[0].offset),
        (
            checkpoint::to_hex(old.as_bytes()).as_str(),
            old.len() as u64
        ),
        "an identity was saved with an offset that is not its own"
    );
    // The file grows past the old offset while sluice is down; the restart reads it all.
    h.append("t.log", &lines("new", 1..20));
    let again = Arc::new(Sink::default());
    let receiver = h.start(config, &again).await;
    let got = again.wait_for(20).await;
    stop(&receiver).await;
    let mut want = vec!["a 0".to_string()];
    want.extend((1..20).map(|i| format!("new {i}")));
    assert_eq!(again.bodies(), want, "got {got:?}");
}

/// Bug c, first half: once a checkpoint was saved, a restart is not a first start, so a file
/// that appeared while sluice was down is read whole whatever `start_at` says, even when no
/// file was there before.
#[tokio::test]
async fn a_file_made_while_stopped_is_read_whole() {
    let h = Harness::new();
    let sink = Arc::new(Sink::default());
    let config = "include: ['@DIR@/app.log']\npoll_interval: 20ms\nstorage: file_storage\n";
    let receiver = h.start(config, &sink).await;
    wait_until(|| h.checkpoint_path().exists()).await;
    stop(&receiver).await;
    assert!(h.checkpoint_path().exists(), "no checkpoint saved");
    h.write("app.log", &lines("new", 0..3));
    let again = Arc::new(Sink::default());
    let receiver = h.start(config, &again).await;
    let got = again.wait_for(3).await;
    stop(&receiver).await;
    assert_eq!(got, ["new 0", "new 1", "new 2"]);
}

/// Bug c: rotation while sluice is down, by rename and by copytruncate, to names the globs do
/// not match: the old file's unread tail is found (by inode, or by its first bytes beside it)
/// and read from the checkpoint, and the new file is read from its start (default
/// `start_at: end`).
#[tokio::test]
async fn rotation_while_stopped_loses_nothing() {
    let h = Harness::new();
    let config = "include: ['@DIR@/app.log']\npoll_interval: 20ms\nstorage: file_storage\n";
    let sink = Arc::new(Sink::default());
    let receiver = h.start(config, &sink).await;
    wait_until(|| h.checkpoint_path().exists()).await;
    // Made after the start: read whole.
    h.write("app.log", &lines("a", 0..5));
    assert_eq!(sink.wait_for(5).await.len(), 5);
    stop(&receiver).await;

    // Down: lines written, the file renamed, a new one begun.
    h.append("app.log", &lines("a", 5..8));
    std::fs::rename(h.path("app.log"), h.path("app.log.1")).unwrap();
    h.write("app.log", &lines("b", 0..3));
    let again = Arc::new(Sink::default());
    let receiver = h.start(config, &again).await;
    let got = again.wait_for(6).await;
    // Every file is read to its end before the stop (nothing left for the next run).
    h.wait_saved("app.log", lines("b", 0..3).len() as u64).await;
    h.wait_saved("app.log.1", lines("a", 0..8).len() as u64)
        .await;
    stop(&receiver).await;
    assert_eq!(
        sorted(again.bodies()),
        ["a 5", "a 6", "a 7", "b 0", "b 1", "b 2"],
        "got {got:?}"
    );

    // Down again: lines written, then copied and truncated, and written again.
    h.append("app.log", &lines("b", 3..5));
    std::fs::copy(h.path("app.log"), h.path("app.log.2")).unwrap();
    std::fs::write(h.path("app.log"), lines("c", 0..2)).unwrap();
    let third = Arc::new(Sink::default());
    let receiver = h.start(config, &third).await;
    let got = third.wait_for(4).await;
    h.wait_saved("app.log", lines("c", 0..2).len() as u64).await;
    stop(&receiver).await;
    assert_eq!(
        sorted(third.bodies()),
        ["b 3", "b 4", "c 0", "c 1"],
        "got {got:?}"
    );
}

/// Bug d: a gzip member is decoded as a stream and cut into batches of bounded size, not
/// decompressed whole into one batch.
#[tokio::test]
async fn gzip_is_read_in_bounded_batches() {
    let h = Harness::new();
    let n = reader::BATCH_RECORDS * 2 + 100;
    std::fs::write(h.path("big.log.gz"), gzip(lines("z", 0..n).as_bytes())).unwrap();
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/*.gz']\nstart_at: beginning\npoll_interval: 20ms\ncompression: gzip\n",
            &sink,
        )
        .await;
    let got = sink.wait_for(n).await;
    stop(&receiver).await;
    let want: Vec<String> = (0..n).map(|i| format!("z {i}")).collect();
    assert!(got == want, "{} of {n} read", got.len());
    let sizes = sink.sizes.lock().unwrap().clone();
    assert!(
        sizes.iter().all(|&s| s <= reader::BATCH_RECORDS),
        "batch sizes {sizes:?}"
    );
}

/// Bug d: a gzip member still being written is not passed over: the checkpoint stays at its
/// start, and it is read once complete; a member written in flushed pieces gives each line
/// once.
#[tokio::test]
async fn a_gzip_member_still_being_written_is_read_once_complete() {
    let h = Harness::new();
    let first = gzip(b"g 0\ng 1\n");
    let second = gzip(b"g 2\ng 3\n");
    let half = second.len() / 2;
    let mut start = first.clone();
    start.extend_from_slice(&second[..half]);
    std::fs::write(h.path("live.gz"), &start).unwrap();
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/live.gz']\nstart_at: beginning\npoll_interval: 20ms\ncompression: gzip\nstorage: file_storage\n",
            &sink,
        )
        .await;
    assert_eq!(sink.wait_for(2).await, ["g 0", "g 1"]);
    assert_eq!(
        h.wait_saved("live.gz", first.len() as u64).await,
        [(h.path("live.gz").display().to_string(), first.len() as u64)],
        "the checkpoint passed a member not complete"
    );
    h.append_bytes("live.gz", &second[half..]);
    assert_eq!(sink.wait_for(4).await, ["g 0", "g 1", "g 2", "g 3"]);

    // A member flushed part way (a streaming writer), then finished.
    let mut writer = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    writer.write_all(b"s 0\ns 1\n").unwrap();
    writer.flush().unwrap();
    let flushed = writer.get_ref().len();
    h.append_bytes("live.gz", writer.get_ref());
    assert_eq!(sink.wait_for(6).await.len(), 6);
    writer.write_all(b"s 2\n").unwrap();
    let whole = writer.finish().unwrap();
    h.append_bytes("live.gz", &whole[flushed..]);
    let got = sink.wait_for(7).await;
    let size = std::fs::metadata(h.path("live.gz")).unwrap().len();
    h.wait_saved("live.gz", size).await;
    stop(&receiver).await;
    assert_eq!(
        sink.bodies(),
        ["g 0", "g 1", "g 2", "g 3", "s 0", "s 1", "s 2"],
        "got {got:?}"
    );
    assert_eq!(h.saved(), [(h.path("live.gz").display().to_string(), size)]);
}

/// Bug e: with the pipeline full, the reader waits to hand a batch over. Shutdown releases it
/// at once (it used to hold the wait until the deadline, leaving the delivery task no time
/// for its final save), and the checkpoint saved holds what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_blocked_reader_and_saves_what_was_acknowledged() {
    let h = Harness::new();
    let n = reader::BATCH_RECORDS * (MAX_IN_FLIGHT + 6);
    h.write("big.log", &lines("b", 0..n));
    let first_batch = lines("b", 0..reader::BATCH_RECORDS).len() as u64;
    let sink = Arc::new(Sink::default());
    // The first batch is acknowledged; none after it ever is.
    sink.hold_from.store(1, AtomicOrdering::SeqCst);
    let receiver = h
        .start(
            "include: ['@DIR@/big.log']\nstart_at: beginning\npoll_interval: 20ms\nstorage: file_storage\n",
            &sink,
        )
        .await;
    wait_until(|| sink.held.lock().unwrap().len() >= MAX_IN_FLIGHT).await;
    assert_eq!(sink.held.lock().unwrap().len(), MAX_IN_FLIGHT);
    h.wait_saved("big.log", first_batch).await;
    let reading = receiver
        .running
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .stop_reading
        .clone();
    receiver
        .shutdown(Instant::now() + Duration::from_secs(1))
        .await;
    // The reader holds the other reference to this flag until its thread ends.
    assert_eq!(
        Arc::strong_count(&reading),
        1,
        "the reading thread still runs after shutdown returned"
    );
    assert_eq!(
        h.saved(),
        [(h.path("big.log").display().to_string(), first_batch)]
    );
}

/// Bug f: `utf-16` follows each file's byte-order mark (little-endian without one), and the
/// mark is not part of the first entry.
#[tokio::test]
async fn utf16_follows_the_byte_order_mark() {
    let h = Harness::new();
    let mut be = vec![0xFE, 0xFF];
    be.extend("héllo\nwörld\n".encode_utf16().flat_map(u16::to_be_bytes));
    std::fs::write(h.path("be.u16"), &be).unwrap();
    let mut le = vec![0xFF, 0xFE];
    le.extend("one\n".encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(h.path("le.u16"), &le).unwrap();
    let plain: Vec<u8> = "two\n".encode_utf16().flat_map(u16::to_le_bytes).collect();
    std::fs::write(h.path("plain.u16"), &plain).unwrap();
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/*.u16']\nstart_at: beginning\npoll_interval: 20ms\nencoding: utf-16\ninclude_file_record_offset: true\n",
            &sink,
        )
        .await;
    let got = sink.wait_for(4).await;
    stop(&receiver).await;
    assert_eq!(sorted(got), ["héllo", "one", "two", "wörld"]);
    let one = sink
        .records()
        .into_iter()
        .find(|r| r.body() == "one")
        .unwrap();
    assert_eq!(
        one.attribute("log.file.record_offset").as_deref(),
        Some("2")
    );
}

/// Bug f: the back-off to a character boundary at a `max_log_size` cut is UTF-8's; a legacy
/// encoding whose bytes 0x80-0xBF are characters of their own is cut at the byte.
#[tokio::test]
async fn a_cut_at_max_log_size_backs_off_only_in_utf8() {
    for (encoding, text, want) in [
        (
            "windows-1252",
            &b"aaaaaaaaa\xa9\xa9\xa9\n"[..],
            vec!["aaaaaaaaa\u{a9}", "\u{a9}\u{a9}"],
        ),
        ("utf-8", "aaaaaaaaaé€\n".as_bytes(), vec!["aaaaaaaaa", "é€"]),
    ] {
        let h = Harness::new();
        std::fs::write(h.path("cut.log"), text).unwrap();
        let sink = Arc::new(Sink::default());
        let receiver = h
            .start(
                &format!("include: ['@DIR@/cut.log']\nstart_at: beginning\npoll_interval: 20ms\nmax_log_size: 10\nencoding: {encoding}\n"),
                &sink,
            )
            .await;
        let got = sink.wait_for(want.len()).await;
        stop(&receiver).await;
        assert_eq!(got, want, "{encoding}");
    }
}

/// The search for a rotated file's copy opens files the globs do not match: a FIFO among
/// them is passed over, since opening it for reading would block the reading thread until a
/// writer came (the globs themselves only ever match regular files).
#[tokio::test]
async fn a_fifo_beside_a_rotated_file_does_not_stop_reading() {
    let h = Harness::new();
    let made = std::process::Command::new("mkfifo")
        .arg(h.path("app.log.0"))
        .status()
        .unwrap();
    assert!(made.success());
    h.write("app.log", &lines("c", 0..3));
    let sink = Arc::new(Sink::default());
    let receiver = h
        .start(
            "include: ['@DIR@/app.log']\nstart_at: beginning\npoll_interval: 20ms\n",
            &sink,
        )
        .await;
    assert_eq!(sink.wait_for(3).await.len(), 3);
    // copytruncate: the copy is searched for beside the file, past the FIFO.
    h.append("app.log", &lines("c", 3..5));
    std::fs::copy(h.path("app.log"), h.path("app.log.1")).unwrap();
    std::fs::write(h.path("app.log"), "after 0\n").unwrap();
    let got = sink.wait_for(6).await;
    stop(&receiver).await;
    assert_eq!(sorted(got), ["after 0", "c 0", "c 1", "c 2", "c 3", "c 4"]);
}

fn errors(h: &Harness, yaml: &str) -> String {
    let sink = Arc::new(Sink::default());
    match h.build(yaml, &sink) {
        Ok(_) => String::new(),
        Err(e) => {
            e.0.iter()
                .map(|d| format!("{}: {}\n", d.path, d.message))
                .collect()
        }
    }
}

#[test]
fn config_problems_are_reported_at_their_keys() {
    let h = Harness::new();
    let e = errors(&h, "include: []\n");
    assert!(e.contains("receivers.filelog.include"), "{e}");
    let e = errors(&h, "include: [a]\ninclud: [b]\n");
    assert!(e.contains("includ"), "{e}");
    let e = errors(&h, "include: [a]\noperators:\n  - type: jsonparser\n");
    assert!(e.contains("unknown operator type `jsonparser`"), "{e}");
    assert!(e.contains("json_parser"), "{e}");
    let e = errors(&h, "include: [a]\nstorage: file_storage/missing\n");
    assert!(e.contains("storage `file_storage/missing`"), "{e}");
    let e = errors(&h, "include: [a]\nmultiline: {line_start_pattern: '('}\n");
    assert!(e.contains("multiline"), "{e}");
    let e = errors(&h, "include: [a]\nencoding: klingon\n");
    assert!(e.contains("encoding"), "{e}");
    let e = errors(&h, "include: [a]\ndelete_after_read: true\n");
    assert!(e.contains("delete_after_read"), "{e}");
    let e = errors(
        &h,
        "include: [a]\noperators:\n  - type: regex_parser\n    regex: '(?P<a>x'\n  - type: move\n    from: a\n",
    );
    assert!(e.contains("operators[0].regex"), "{e}");
    assert!(e.contains("operators[1]"), "{e}");
    let e = errors(
        &h,
        "include: [a]\noperators:\n  - type: router\n    routes:\n      - output: nowhere\n        expr: 'true'\n",
    );
    assert!(e.contains("`nowhere`"), "{e}");
    let e = errors(
        &h,
        "include: [a]\noperators:\n  - type: filter\n    expr: 'all(attributes, true)'\n",
    );
    assert!(e.contains("not supported"), "{e}");
    assert_eq!(
        errors(
            &h,
            "include: [a]\ninitial_buffer_size: 16KiB\nfile_cache_advise: true\nacquire_fs_lock: true\n"
        ),
        ""
    );
}

#[test]
fn both_names_are_registered() {
    let info = FilelogReceiverFactory.info();
    assert!(info.answers_to("filelog"));
    assert!(info.answers_to("file_log"));
}
