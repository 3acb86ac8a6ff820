//! The persistent sending queue with real processes: nothing acknowledged is lost across
//! `kill -9`, damaged log files are quarantined while the intact records are delivered, a
//! deleted log file is reported with what it held while the rest is delivered, and a full
//! disk (a real, small tmpfs) refuses new data with 429 without keeping sluice from starting.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::otlp_sink::OtlpSink;
use common::{Collector, free_port, signal};

/// OTLP/HTTP in, an `otlp_http` exporter to `backend` with its queue in `queue_dir`.
fn config(queue_dir: &Path, backend: u16, fsync: &str) -> String {
    config_with(queue_dir, backend, fsync, "")
}

/// `config` with more `file_storage` keys (each line indented for the extension's section).
fn config_with(queue_dir: &Path, backend: u16, fsync: &str, storage_extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: "@HTTP@"
extensions:
  health_check:
    endpoint: "@HEALTH@"
  file_storage/queue:
    directory: "{dir}"
    fsync: {fsync}
    fsync_interval: 200ms
    segment_size: 64KiB
{storage_extra}
exporters:
  otlp_http:
    endpoint: "http://127.0.0.1:{backend}"
    compression: none
    timeout: 2s
    sending_queue:
      storage: file_storage/queue
      num_consumers: 4
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 300ms
      max_elapsed_time: 0s
service:
  shutdown_timeout: 5s
  extensions: [health_check, file_storage/queue]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [otlp_http]
"#,
        dir = queue_dir.display()
    )
}

fn logs_request(ids: &[String]) -> String {
    let records: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"body":{{"stringValue":"{id}"}}}}"#))
        .collect();
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}]}}]}}]}}"#,
        records.join(",")
    )
}

fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Posts one request; true if the collector answered 200 (it then owns the data).
fn send(client: &reqwest::blocking::Client, port: u16, ids: &[String]) -> bool {
    status(client, port, ids) == Some(200)
}

fn status(client: &reqwest::blocking::Client, port: u16, ids: &[String]) -> Option<u16> {
    client
        .post(format!("http://127.0.0.1:{port}/v1/logs"))
        .header("content-type", "application/json")
        .body(logs_request(ids))
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

/// A small deterministic generator, so a failing run can be repeated.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn wait_for(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// A metric's value for the series whose line starts with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    let queue_dir = tempfile::tempdir().unwrap();
    let backend = free_port();
    let seed = 0x5eed_0005u64;
    let mut rng = Lcg(seed);
    println!("seed {seed:#x}");

    // A client sending steadily to whichever collector is up, remembering what got a 200.
    let port = Arc::new(AtomicU16::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sender = {
        let (port, running, acked) = (port.clone(), running.clone(), acked.clone());
        std::thread::spawn(move || {
            let client = client();
            let mut n = 0u64;
            while running.load(Ordering::SeqCst) {
                let target = port.load(Ordering::SeqCst);
                if target == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let ids: Vec<String> = (0..5).map(|i| format!("n-{}", n * 5 + i)).collect();
                n += 1;
                if send(&client, target, &ids) {
                    acked.lock().unwrap().extend(ids);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    // The backend is down for the first rounds, then comes up while the kills go on, so
    // collectors also die in the middle of delivering (which is where duplicates come from).
    let rounds = 6;
    let backend_up_at = 3;
    let mut sink = None;
    for round in 0..rounds {
        if round == backend_up_at {
            sink = Some(OtlpSink::start_on(backend));
        }
        // Alternate the fsync policies: both must survive a killed process.
        let fsync = if round % 2 == 0 { "always" } else { "interval" };
        let collector = Collector::start(&config(queue_dir.path(), backend, fsync), &[]);
        port.store(collector.http, Ordering::SeqCst);
        let before = acked.lock().unwrap().len();
        // Wait for some traffic, then kill at a pseudo-random moment.
        assert!(
            wait_for(Duration::from_secs(20), || acked.lock().unwrap().len()
                > before),
            "no request was acknowledged; log:\n{}",
            collector.logs()
        );
        std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
        signal(collector.pid(), "KILL");
        port.store(0, Ordering::SeqCst);
        drop(collector);
        println!(
            "round {round} ({fsync}): {} acknowledged so far",
            acked.lock().unwrap().len()
        );
    }
    running.store(false, Ordering::SeqCst);
    sender.join().unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(!acked.is_empty());

    // The next collector delivers what the killed ones left.
    let sink = sink.unwrap();
    let collector = Collector::start(&config(queue_dir.path(), backend, "always"), &[]);
    let wanted: BTreeSet<&String> = acked.iter().collect();
    let complete = wait_for(Duration::from_secs(60), || {
        let got: BTreeSet<String> = sink.bodies().into_iter().collect();
        wanted.iter().all(|id| got.contains(*id))
    });
    let bodies = sink.bodies();
    let got: BTreeSet<&String> = bodies.iter().collect();
    let lost: Vec<&&String> = wanted.iter().filter(|id| !got.contains(**id)).collect();
    let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
    for b in &bodies {
        *counts.entry(b).or_default() += 1;
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    println!(
        "acknowledged {}, received {} ({} distinct), duplicates {duplicates}, lost {}",
        acked.len(),
        bodies.len(),
        got.len(),
        lost.len()
    );
    assert!(
        complete && lost.is_empty(),
        "lost {} acknowledged records, e.g. {:?}; log:\n{}",
        lost.len(),
        lost.iter().take(10).collect::<Vec<_>>(),
        collector.logs()
    );
    // Everything delivered: the queue drains to empty.
    assert!(wait_for(Duration::from_secs(20), || {
        metric(
            &collector.metrics_text(),
            "otelcol_exporter_queue_size{exporter=\"otlp_http\",data_type=\"logs\"}",
        ) == Some(0.0)
    }));
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .filter(|p| std::fs::metadata(p).unwrap().len() > 0)
        .collect();
    out.sort();
    out
}

#[test]
fn damaged_log_is_quarantined_and_the_intact_records_are_delivered() {
    let queue_dir = tempfile::tempdir().unwrap();
    let backend = free_port();
    let ids: Vec<String> = (0..20).map(|i| format!("corrupt-{i:02}")).collect();

    // Backend down: everything stays in the log.
    let mut collector = Collector::start(&config(queue_dir.path(), backend, "always"), &[]);
    let client = client();
    for id in &ids {
        assert!(send(&client, collector.http, std::slice::from_ref(id)));
    }
    assert!(collector.stop().success());
    let logs = collector.logs();
    assert!(
        logs.contains("kept in the persistent queue for the next start"),
        "{logs}"
    );
    assert!(!logs.contains("it is lost"), "{logs}");

    // Flip a byte inside record 07 and cut the tail off the last record (19).
    let log_dir = queue_dir.path().join("otlp_http").join("logs");
    let files = segments(&log_dir);
    assert!(!files.is_empty(), "no log files in {}", log_dir.display());
    let mut damaged_middle = false;
    for file in &files {
        let mut bytes = std::fs::read(file).unwrap();
        if let Some(at) = bytes.windows(10).position(|w| w == b"corrupt-07") {
            bytes[at + 8] ^= 0x03;
            std::fs::write(file, &bytes).unwrap();
            damaged_middle = true;
        }
    }
    assert!(damaged_middle);
    let last = files.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    assert!(
        std::fs::read(last)
            .unwrap()
            .windows(10)
            .any(|w| w == b"corrupt-19")
    );
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);

    // Backend up: the collector starts anyway and delivers the 18 intact records.
    let sink = OtlpSink::start_on(backend);
    let collector = Collector::start(&config(queue_dir.path(), backend, "always"), &[]);
    let intact: BTreeSet<String> = ids
        .iter()
        .filter(|id| *id != "corrupt-07" && *id != "corrupt-19")
        .cloned()
        .collect();
    let delivered = wait_for(Duration::from_secs(30), || {
        let got: BTreeSet<String> = sink.bodies().into_iter().collect();
        intact.is_subset(&got)
    });
    assert!(
        delivered,
        "got {:?}; log:\n{}",
        sink.bodies(),
        collector.logs()
    );
    let got: BTreeSet<String> = sink.bodies().into_iter().collect();
    assert!(!got.contains("corrupt-07") && !got.contains("corrupt-19"));

    let metrics = collector.metrics_text();
    assert_eq!(
        metric(
            &metrics,
            "sluice_persistent_queue_damaged_records_total{exporter=\"otlp_http\",data_type=\"logs\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    let logs = collector.logs();
    assert!(
        logs.contains("damaged data in the persistent queue"),
        "{logs}"
    );
    let quarantine: Vec<Vec<u8>> = std::fs::read_dir(log_dir.join("quarantine"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert_eq!(quarantine.len(), 2);
    assert!(
        quarantine
            .iter()
            .any(|q| q.windows(10).any(|w| w == b"corrupt-37"))
    );
    // The torn record's remains: its body lost "-19" with the tail.
    assert!(
        quarantine
            .iter()
            .all(|q| q.windows(7).any(|w| w == b"corrupt"))
    );
}

#[test]
fn delivered_log_files_are_reclaimed_under_steady_load() {
    let queue_dir = tempfile::tempdir().unwrap();
    let backend = free_port();
    let sink = OtlpSink::start_on(backend);
    let collector = Collector::start(&config(queue_dir.path(), backend, "interval"), &[]);
    let client = client();
    // About 40 segments' worth of records (64KiB each) pass through the log.
    let body = "x".repeat(1000);
    let mut sent = BTreeSet::new();
    for n in 0..2500 {
        let id = format!("steady-{n}-{body}");
        if send(&client, collector.http, std::slice::from_ref(&id)) {
            sent.insert(id);
        }
    }
    assert!(sent.len() > 2000);
    let delivered = wait_for(Duration::from_secs(60), || {
        let got: BTreeSet<String> = sink.bodies().into_iter().collect();
        sent.is_subset(&got)
    });
    assert!(delivered, "log:\n{}", collector.logs());
    let log_dir = queue_dir.path().join("otlp_http").join("logs");
    // Delivered segments are deleted: what is left is about the segment being written.
    let reclaimed = wait_for(Duration::from_secs(20), || {
        let bytes: u64 = std::fs::read_dir(&log_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "wal"))
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        bytes <= 2 * 64 * 1024
    });
    assert!(reclaimed, "log files were not reclaimed");
    let gauge_follows = wait_for(Duration::from_secs(20), || {
        metric(
            &collector.metrics_text(),
            "sluice_persistent_queue_disk_bytes{exporter=\"otlp_http\",data_type=\"logs\"}",
        )
        .is_some_and(|v| v <= 2.0 * 64.0 * 1024.0)
    });
    assert!(gauge_follows, "{}", collector.metrics_text());
}

#[test]
fn a_full_disk_pushes_back_with_429_until_the_backend_drains_it() {
    let queue_dir = tempfile::tempdir().unwrap();
    let backend = free_port();
    let config = config_with(queue_dir.path(), backend, "always", "    max_size: 256KiB");
    let collector = Collector::start(&config, &[]);
    let client = client();
    let pad = "y".repeat(2000);
    let mut acked = BTreeSet::new();
    let mut refused = None;
    for n in 0..1000 {
        let id = format!("full-{n}-{pad}");
        match status(&client, collector.http, std::slice::from_ref(&id)) {
            Some(200) => {
                acked.insert(id);
            }
            other => {
                refused = other;
                break;
            }
        }
    }
    // The log holds at most max_size; then the client is told to back off.
    assert_eq!(refused, Some(429), "log:\n{}", collector.logs());
    assert!(acked.len() > 50, "{}", acked.len());
    let log_dir = queue_dir.path().join("otlp_http").join("logs");
    let on_disk: u64 = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(on_disk <= 256 * 1024, "{on_disk}");

    // The backend returns: everything acknowledged arrives and the queue takes data again.
    let sink = OtlpSink::start_on(backend);
    let delivered = wait_for(Duration::from_secs(60), || {
        let got: BTreeSet<String> = sink.bodies().into_iter().collect();
        acked.is_subset(&got)
    });
    assert!(delivered, "log:\n{}", collector.logs());
    assert!(send(
        &client,
        collector.http,
        &["after-the-outage".to_string()]
    ));
}

/// Sends `n` single-record requests (bodies `{prefix}-NNN-` and a pad, about 2 KiB) to a
/// collector whose backend is down, then stops it: every body is acknowledged and kept in
/// the log. Returns the bodies.
fn stored_in_log(queue_dir: &Path, backend: u16, prefix: &str, n: usize) -> Vec<String> {
    let mut collector = Collector::start(&config(queue_dir, backend, "always"), &[]);
    let client = client();
    let pad = "p".repeat(2000);
    let bodies: Vec<String> = (0..n).map(|i| format!("{prefix}-{i:03}-{pad}")).collect();
    for body in &bodies {
        assert!(
            send(&client, collector.http, std::slice::from_ref(body)),
            "log:\n{}",
            collector.logs()
        );
    }
    assert!(collector.stop().success());
    let logs = collector.logs();
    assert!(
        logs.contains("kept in the persistent queue for the next start"),
        "{logs}"
    );
    bodies
}

/// Each log file of `log_dir` (oldest first) with the bodies it holds; every body is in one.
fn bodies_by_file(log_dir: &Path, bodies: &[String]) -> Vec<(PathBuf, Vec<String>)> {
    let files: Vec<(PathBuf, Vec<String>)> = segments(log_dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let held = bodies
                .iter()
                .filter(|b| bytes.windows(b.len()).any(|w| w == b.as_bytes()))
                .cloned()
                .collect();
            (path, held)
        })
        .collect();
    let placed: usize = files.iter().map(|(_, held)| held.len()).sum();
    assert_eq!(placed, bodies.len());
    files
}

/// How often each body arrived.
fn arrivals(sink: &OtlpSink) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for body in sink.bodies() {
        *counts.entry(body).or_default() += 1;
    }
    counts
}

/// Waits until every one of `wanted` arrived; then returns the arrivals.
fn wait_for_all(
    sink: &OtlpSink,
    wanted: &[String],
    collector: &Collector,
) -> BTreeMap<String, usize> {
    let all = wait_for(Duration::from_secs(60), || {
        let got = arrivals(sink);
        wanted.iter().all(|b| got.contains_key(b))
    });
    let got = arrivals(sink);
    let missing: Vec<&String> = wanted.iter().filter(|b| !got.contains_key(*b)).collect();
    assert!(
        all,
        "{} of {} records never arrived, e.g. {:?}; log:\n{}",
        missing.len(),
        wanted.len(),
        missing.first().map(|b| &b[..12]),
        collector.logs()
    );
    got
}

const LABELS: &str = "{exporter=\"otlp_http\",data_type=\"logs\"}";

#[test]
fn a_flipped_bit_in_a_log_file_header_loses_no_record() {
    let queue_dir = tempfile::tempdir().unwrap();
    let backend = free_port();
    let bodies = stored_in_log(queue_dir.path(), backend, "header", 90);
    let log_dir = queue_dir.path().join("otlp_http").join("logs");
    let files = bodies_by_file(&log_dir, &bodies);
    assert!(files.len() >= 3, "{}", files.len());
    // One bit of the oldest file's salt: before, the whole file (30 records) was dropped.
    let (oldest, held) = &files[0];
    assert!(held.len() >= 20, "{}", held.len());
    let mut bytes = std::fs::read(oldest).unwrap();
    bytes[9] ^= 0x08;
    std::fs::write(oldest, &bytes).unwrap();

    let sink = OtlpSink::start_on(backend);
    let collector = Collector::start(&config(queue_dir.path(), backend, "always"), &[]);
    let got = wait_for_all(&sink, &bodies, &collector);
    // Nothing had been delivered before the restart, so nothing is sent twice.
    let twice: Vec<&String> = got
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(b, _)| b)
        .collect();
    assert!(twice.is_empty(), "{} sent twice", twice.len());
    assert_eq!(got.len(), bodies.len());

    let damaged = format!("sluice_persistent_queue_damaged_records_total{LABELS}");
    assert_eq!(
        collector.wait_for_metric(&damaged, 1),
        Some(1),
        "{}",
        collector.metrics_text()
    );
    let logs = collector.logs();
    let warning = logs
        .lines()
        .find(|l| l.contains("damaged data in the persistent queue"))
        .unwrap_or_else(|| panic!("no warning; log:\n{logs}"));
    let name = oldest.file_name().unwrap().to_str().unwrap();
    assert!(
        warning.contains(name) && warning.contains("offset=0") && warning.contains("bytes=16"),
        "{warning}"
    );
}

#[test]
fn deleted_log_files_are_reported_and_everything_else_is_delivered() {
    let queue_dir = tempfile::tempdir().unwrap();
    let backend = free_port();
    let bodies = stored_in_log(queue_dir.path(), backend, "deleted", 120);
    let log_dir = queue_dir.path().join("otlp_http").join("logs");
    let files = bodies_by_file(&log_dir, &bodies);
    assert!(files.len() >= 4, "{}", files.len());
    // The oldest file (records the cursor says are still to be delivered) and one in the
    // middle go missing.
    let deleted = [&files[0], &files[2]];
    for (path, _) in deleted {
        std::fs::remove_file(path).unwrap();
    }
    let lost: BTreeSet<&String> = deleted.iter().flat_map(|(_, held)| held).collect();
    let kept: Vec<String> = bodies
        .iter()
        .filter(|b| !lost.contains(b))
        .cloned()
        .collect();
    assert!(!lost.is_empty() && !kept.is_empty());

    let sink = OtlpSink::start_on(backend);
    let collector = Collector::start(&config(queue_dir.path(), backend, "always"), &[]);
    let got = wait_for_all(&sink, &kept, &collector);
    let twice: Vec<&String> = got
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(b, _)| b)
        .collect();
    assert!(twice.is_empty(), "{} sent twice", twice.len());
    assert!(
        got.keys().all(|b| !lost.contains(b)),
        "a record of a deleted file arrived"
    );
    assert_eq!(got.len(), kept.len());

    let metric = format!("sluice_persistent_queue_lost_segments_total{LABELS}");
    assert_eq!(
        collector.wait_for_metric(&metric, 2),
        Some(2),
        "{}",
        collector.metrics_text()
    );
    // One error per missing file, naming it and how many undelivered records it held.
    let logs = collector.logs();
    for (path, held) in deleted {
        let name = path.file_name().unwrap().to_str().unwrap();
        let line = logs
            .lines()
            .find(|l| l.contains(name) && l.contains("is missing"))
            .unwrap_or_else(|| panic!("{name} not reported; log:\n{logs}"));
        assert!(
            line.contains("ERROR")
                && line.contains(&format!(
                    "the {} undelivered records it held are lost",
                    held.len()
                )),
            "{line}"
        );
    }

    // The next start reports nothing again, and new data flows.
    drop(collector);
    let collector = Collector::start(&config(queue_dir.path(), backend, "always"), &[]);
    assert!(send(
        &client(),
        collector.http,
        &["after-the-loss".to_string()]
    ));
    wait_for_all(&sink, &["after-the-loss".to_string()], &collector);
    assert!(
        !collector.logs().contains("is missing"),
        "{}",
        collector.logs()
    );
}

/// A small tmpfs mounted for one test, so the collector fills a real filesystem; unmounted
/// on drop. `None` where mounting is not allowed (it needs root).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Takes every byte still free, as another program filling the disk would.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = [0u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("{e}"),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a collector still holding files open cannot keep the mount.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn after_a_crash_on_a_full_disk_sluice_starts_delivers_and_takes_data_again() {
    let Some(disk) = Tmpfs::mount("2m") else {
        println!("SKIPPED: mounting a tmpfs is not allowed here (needs root)");
        return;
    };
    let queue_dir = disk.path().join("queue");
    let backend = free_port();
    let config = config(&queue_dir, backend, "always");
    let collector = Collector::start(&config, &[]);
    let client = client();
    let pad = "f".repeat(2000);
    // Backend down: the log grows until the disk is full, then the client is told to back
    // off with 429 (the refused write is cut off the log, not left half-written).
    let mut acked = Vec::new();
    let mut refused = None;
    for n in 0..5000 {
        let body = format!("full-{n:04}-{pad}");
        match status(&client, collector.http, std::slice::from_ref(&body)) {
            Some(200) => acked.push(body),
            other => {
                refused = other;
                break;
            }
        }
    }
    assert_eq!(refused, Some(429), "log:\n{}", collector.logs());
    assert!(acked.len() > 200, "{}", acked.len());
    assert!(
        collector
            .logs()
            .contains("no space left for the persistent queue"),
        "{}",
        collector.logs()
    );
    // The crash, and whatever room the refused write left is taken too (by another program):
    // not even a new log file can be created at the next start.
    signal(collector.pid(), "KILL");
    drop(collector);
    let filler = disk.fill();

    let collector = Collector::start(&config, &[]);
    assert!(
        collector
            .logs()
            .contains("no space left for the persistent queue: delivering what it holds"),
        "the start did not run out of space; log:\n{}",
        collector.logs()
    );
    assert_eq!(
        status(&client, collector.http, &["while-full".to_string()]),
        Some(429),
        "log:\n{}",
        collector.logs()
    );
    let sink = OtlpSink::start_on(backend);
    let got = wait_for_all(&sink, &acked, &collector);
    // The backend was down until now: nothing was delivered twice.
    assert_eq!(got.len(), acked.len());
    assert!(got.values().all(|n| *n == 1));
    assert!(!got.contains_key("while-full"));
    // Delivery deleted the log's files, so new data is taken again (the filler stays).
    let mut n = 0;
    let taken = wait_for(Duration::from_secs(30), || {
        n += 1;
        send(&client, collector.http, &[format!("after-{n}")])
    });
    assert!(taken, "log:\n{}", collector.logs());
    wait_for_all(&sink, &[format!("after-{n}")], &collector);
    assert!(filler.exists());
    let metrics = collector.metrics_text();
    assert_eq!(
        metric(
            &metrics,
            &format!("sluice_persistent_queue_damaged_records_total{LABELS}")
        )
        .unwrap_or(0.0),
        0.0,
        "{metrics}"
    );
}
