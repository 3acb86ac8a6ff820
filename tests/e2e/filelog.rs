//! The `filelog` receiver through the real binary, with real writer processes: rotation by
//! rename and by copytruncate while a writer appends at a steady rate, `kill -9` in the middle
//! of a stream, rotation while sluice is stopped, and a backend that refuses. Every test counts
//! the lines lost and the lines delivered more than once.
//!
//! Needs `python3` (the writer).

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::otlp_sink::OtlpSink;
use common::{Collector, free_port, signal};

/// Appends numbered lines to a file at a steady rate, keeping the file open as a logging
/// application does, and rotates it every `every` lines, the modes taken in turn:
/// - `mv`: renamed to `<path>.<n>`; a few lines still go to the renamed file through the open
///   handle (the application has not reopened yet), then a new file is opened;
/// - `copytruncate`: copied to `<path>.<n>` and truncated in place, as logrotate's
///   `copytruncate` does; the writer appends (`O_APPEND`), so it goes on at the new end.
///
/// The writer itself rotates between two lines. With logrotate, a separate process, lines
/// written between the copy and the truncation are in neither file: that loss is
/// copytruncate's own, whatever reads the files, so it is kept out of what is measured here.
const WRITER: &str = r#"
import os, shutil, sys, time
path, first, count, rate, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
modes = sys.argv[6].split(",") if len(sys.argv) > 6 and sys.argv[6] else []
f = open(path, "a")
def line(n):
    return "seq=%08d %s\n" % (n, "x" * 40)
written = 0
rotations = 0
start = time.monotonic()
while written < count:
    due = min(count, int((time.monotonic() - start) * rate) + 1)
    while written < due:
        f.write(line(first + written))
        written += 1
        if modes and every and written % every == 0 and written < count:
            mode = modes[rotations % len(modes)]
            rotations += 1
            rotated = "%s.%d" % (path, rotations)
            f.flush()
            if mode == "mv":
                os.rename(path, rotated)
                for _ in range(3):
                    if written < count:
                        f.write(line(first + written))
                        written += 1
                f.close()
                f = open(path, "a")
            else:
                shutil.copyfile(path, rotated)
                os.truncate(path, 0)
    f.flush()
    time.sleep(0.005)
f.close()
"#;

/// A test's own directory: the log files, the checkpoint storage and the exporters' output
/// live here, so they outlive each collector process (each has a directory of its own).
struct Setup {
    root: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("logs")).unwrap();
        std::fs::write(root.path().join("writer.py"), WRITER).unwrap();
        Setup { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.path("logs").join(name)
    }

    /// Starts the writer on `logs/app.log`: lines `first..first + count`.
    fn writer(&self, first: u64, count: u64, rate: u64, every: u64, modes: &str) -> Child {
        Command::new("python3")
            .arg(self.path("writer.py"))
            .arg(self.log("app.log"))
            .args([
                first.to_string(),
                count.to_string(),
                rate.to_string(),
                every.to_string(),
                modes.to_string(),
            ])
            .spawn()
            .expect("python3 runs")
    }

    /// filelog (`include` only `logs/app.log`, so rotated files are outside the globs) into
    /// `exporters` (YAML under `exporters:`, whose first id is used), checkpoints in
    /// `state/`. `start_at` is left at its default (`end`) unless `receiver_extra` sets it.
    fn config(&self, receiver_extra: &str, exporters: &str) -> String {
        let exporter = exporters
            .lines()
            .find(|l| l.starts_with("  ") && !l.starts_with("   "))
            .map(|l| l.trim().trim_end_matches(':').to_string())
            .unwrap();
        format!(
            r#"
receivers:
  filelog:
    include: ["{logs}/app.log"]
    poll_interval: 100ms
    storage: file_storage/filelog
{receiver_extra}
extensions:
  health_check:
    endpoint: "@HEALTH@"
  file_storage/filelog:
    directory: "{state}"
exporters:
{exporters}
service:
  shutdown_timeout: 5s
  extensions: [health_check, file_storage/filelog]
  telemetry:
    metrics:
      address: "@METRICS@"
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [{exporter}]
"#,
            logs = self.path("logs").display(),
            state = self.path("state").display(),
        )
    }

    /// A file exporter to `<name>.jsonl` that acknowledges a batch once it is written
    /// (`wait_for_delivery`: a memory queue would acknowledge on enqueue, and what it held
    /// would be lost by `kill -9`, whatever the receiver does).
    fn file_exporter(&self, name: &str) -> String {
        format!(
            r#"  file/out:
    path: "{}"
    format: json
    flush_interval: 0s
    sending_queue:
      wait_for_delivery: true
"#,
            self.path(&format!("{name}.jsonl")).display()
        )
    }

    /// The saved checkpoint: (path, offset) of every file.
    fn checkpoint(&self) -> Vec<(String, u64)> {
        let Ok(text) = std::fs::read_to_string(self.path("state/filelog/checkpoints/offsets"))
        else {
            return Vec::new();
        };
        let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
        saved["files"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap_or_default().to_string(),
                    f["offset"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// The sequence numbers of the log bodies in a file exporter's output, in order. A last line
/// cut short (a process killed while writing it) is left out: its batch was not acknowledged.
fn delivered(path: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let whole = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for (i, line) in lines.iter().enumerate() {
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) if i + 1 == lines.len() && !whole => {
                eprintln!("ignoring a torn last line of {}: {e}", path.display());
                break;
            }
            Err(e) => panic!("{}: {e}: {line}", path.display()),
        };
        let each =
            |v: &serde_json::Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
        for r in each(&value, "resourceLogs") {
            for s in each(&r, "scopeLogs") {
                for l in each(&s, "logRecords") {
                    let body = l["body"]["stringValue"].as_str().unwrap_or_default();
                    out.push(seq(body));
                }
            }
        }
    }
    out
}

fn seq(body: &str) -> u64 {
    body.strip_prefix("seq=")
        .and_then(|rest| rest.get(..8))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered line: {body:?}"))
}

/// How often each number arrived.
fn tally(seqs: impl IntoIterator<Item = u64>) -> BTreeMap<u64, usize> {
    let mut counts = BTreeMap::new();
    for s in seqs {
        *counts.entry(s).or_default() += 1;
    }
    counts
}

/// (lost, duplicated) of `0..n` in `counts`; numbers outside it are a failure of their own.
fn lost_and_duplicated(counts: &BTreeMap<u64, usize>, n: u64) -> (Vec<u64>, usize) {
    let strays: Vec<&u64> = counts.keys().filter(|s| **s >= n).collect();
    assert!(strays.is_empty(), "numbers never written: {strays:?}");
    let lost = (0..n).filter(|s| !counts.contains_key(s)).collect();
    let duplicated = counts.values().map(|c| c - 1).sum();
    (lost, duplicated)
}

/// Waits (up to `within`) until `done` holds; true if it did.
fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Generous: a shared, noisy machine.
const PATIENCE: Duration = Duration::from_secs(120);

fn wait_writer(writer: &mut Child) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = writer.try_wait().unwrap() {
            assert!(status.success(), "the writer failed: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "the writer did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(collector: &mut Collector) {
    signal(collector.pid(), "KILL");
    collector.wait_exit(Duration::from_secs(30));
}

/// Numbered lines `range` as the writer writes them.
fn numbered(range: std::ops::Range<u64>) -> String {
    range
        .map(|n| format!("seq={n:08} {}\n", "x".repeat(40)))
        .collect()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

#[test]
fn rotation_by_rename_and_by_copytruncate_under_a_steady_writer_loses_and_repeats_nothing() {
    let setup = Setup::new();
    let n = 6000;
    let out = setup.path("out.jsonl");
    let mut collector = Collector::start(
        &setup.config("    start_at: beginning", &setup.file_exporter("out")),
        &[],
    );
    // 6000 lines at 2000 a second, rotated every 500 lines: 11 rotations, rename and
    // copytruncate in turn.
    let mut writer = setup.writer(0, n, 2000, 500, "mv,copytruncate");
    wait_writer(&mut writer);
    let rotated = (1..=11)
        .filter(|i| setup.log(&format!("app.log.{i}")).exists())
        .count();
    assert_eq!(rotated, 11, "the writer did not rotate as planned");
    let complete = wait_until(PATIENCE, || tally(delivered(&out)).len() as u64 == n);
    collector.stop();
    let counts = tally(delivered(&out));
    let (lost, duplicated) = lost_and_duplicated(&counts, n);
    eprintln!(
        "rotation under a steady writer: {n} written, {} lost, {duplicated} duplicated",
        lost.len()
    );
    assert!(
        complete && lost.is_empty(),
        "lost {} lines, first {:?}; log:\n{}",
        lost.len(),
        lost.iter().take(20).collect::<Vec<_>>(),
        collector.logs()
    );
    // The writer rotates between two lines, so no line is in both the copy and the file
    // truncated after it, and a read racing the truncation is dropped (the file's first bytes
    // are checked after each read): nothing is read twice.
    assert_eq!(duplicated, 0, "lines delivered twice");
}

#[test]
fn kill_9_in_the_middle_of_a_stream_loses_nothing_and_repeats_only_what_the_checkpoint_had_not_passed()
 {
    let setup = Setup::new();
    let n = 6000;
    let first_out = setup.path("first.jsonl");
    let second_out = setup.path("second.jsonl");
    let beginning = "    start_at: beginning";
    let mut collector =
        Collector::start(&setup.config(beginning, &setup.file_exporter("first")), &[]);
    let mut writer = setup.writer(0, n, 1500, 0, "");
    assert!(
        wait_until(PATIENCE, || delivered(&first_out).len() >= 1500),
        "nothing delivered; log:\n{}",
        collector.logs()
    );
    kill9(&mut collector);
    // What the checkpoint had passed when the process died.
    let app = setup.log("app.log").display().to_string();
    let offset = setup
        .checkpoint()
        .iter()
        .find(|(p, _)| *p == app)
        .map(|(_, o)| *o)
        .expect("a checkpoint of app.log");
    let line = numbered(0..1).len() as u64;
    assert_eq!(offset % line, 0, "the checkpoint is not at a line's end");
    let passed = offset / line;
    // The writer goes on while sluice is down.
    let size_at_kill = std::fs::metadata(setup.log("app.log")).unwrap().len();
    assert!(wait_until(PATIENCE, || {
        std::fs::metadata(setup.log("app.log")).unwrap().len() >= size_at_kill + 300 * line
            || writer.try_wait().ok().flatten().is_some()
    }));
    let mut collector = Collector::start(
        &setup.config(beginning, &setup.file_exporter("second")),
        &[],
    );
    wait_writer(&mut writer);
    let complete = wait_until(PATIENCE, || {
        tally(
            delivered(&first_out)
                .into_iter()
                .chain(delivered(&second_out)),
        )
        .len() as u64
            == n
    });
    collector.stop();
    let first = delivered(&first_out);
    let second = delivered(&second_out);
    let (lost, duplicated) = lost_and_duplicated(&tally(first.iter().chain(&second).copied()), n);
    let first_past = first.iter().filter(|s| **s >= passed).count();
    eprintln!(
        "kill -9: {n} written, {} lost, {duplicated} duplicated; checkpoint at line {passed}, {} lines delivered before the kill, {first_past} of them past the checkpoint",
        lost.len(),
        first.len()
    );
    assert!(
        complete && lost.is_empty(),
        "lost {} lines, first {:?}",
        lost.len(),
        lost.iter().take(20).collect::<Vec<_>>()
    );
    // Each run delivered each line once.
    for (name, run) in [("first", &first), ("second", &second)] {
        let repeated: Vec<_> = tally(run.iter().copied())
            .into_iter()
            .filter(|(_, c)| *c > 1)
            .collect();
        assert!(repeated.is_empty(), "{name} run repeated {repeated:?}");
    }
    // Everything before the checkpoint was delivered by the first run, and the second run
    // started exactly there: the only lines delivered twice are the ones the first run
    // delivered past the checkpoint (acknowledged after the last save, or not at all).
    let first_set = tally(first.iter().copied());
    assert!((0..passed).all(|s| first_set.contains_key(&s)));
    assert!(
        second.iter().all(|s| *s >= passed),
        "the second run read lines the checkpoint had passed"
    );
    assert_eq!(duplicated, first_past);
}

#[test]
fn rotation_while_sluice_is_stopped_loses_nothing() {
    let setup = Setup::new();
    let app = setup.log("app.log");
    let out = |i: usize| setup.path(&format!("out{i}.jsonl"));
    let all = |upto: usize| -> Vec<u64> { (0..upto).flat_map(|i| delivered(&out(i))).collect() };
    let start = |i: usize| {
        // Default `start_at: end`: only the very first start skips what files hold.
        Collector::start(
            &setup.config("", &setup.file_exporter(&format!("out{i}"))),
            &[],
        )
    };

    // The file is made after the first start: read whole.
    let mut collector = start(0);
    assert!(wait_until(PATIENCE, || !setup.checkpoint().is_empty()
        || setup.path("state/filelog/checkpoints/offsets").exists()));
    append(&app, &numbered(0..200));
    assert!(wait_until(PATIENCE, || delivered(&out(0)).len() >= 200));
    collector.stop();

    // Down: lines written, the file renamed (out of the globs), a new file begun.
    append(&app, &numbered(200..300));
    std::fs::rename(&app, setup.log("app.log.1")).unwrap();
    append(&app, &numbered(300..400));
    let mut collector = start(1);
    let complete = wait_until(PATIENCE, || tally(all(2)).len() >= 400);
    collector.stop();
    let (lost, duplicated) = lost_and_duplicated(&tally(all(2)), 400);
    eprintln!(
        "rename while stopped: {} lost, {duplicated} duplicated",
        lost.len()
    );
    assert!(complete && lost.is_empty(), "lost {lost:?}");
    assert_eq!(duplicated, 0);

    // Down: lines written, then copied and truncated, and the file written again.
    append(&app, &numbered(400..450));
    std::fs::copy(&app, setup.log("app.log.2")).unwrap();
    std::fs::write(&app, numbered(450..500)).unwrap();
    let mut collector = start(2);
    let complete = wait_until(PATIENCE, || tally(all(3)).len() >= 500);
    collector.stop();
    let (lost, duplicated) = lost_and_duplicated(&tally(all(3)), 500);
    eprintln!(
        "copytruncate while stopped: {} lost, {duplicated} duplicated",
        lost.len()
    );
    assert!(complete && lost.is_empty(), "lost {lost:?}");
    assert_eq!(duplicated, 0);
}

/// An `otlp_http` exporter to `port`, its queue in memory or in the storage's directory.
fn otlp_exporter(port: u16, persistent: bool) -> String {
    let queue = if persistent {
        "      storage: file_storage/filelog\n"
    } else {
        "      wait_for_delivery: true\n"
    };
    format!(
        r#"  otlp_http:
    endpoint: "http://127.0.0.1:{port}"
    compression: none
    timeout: 2s
    sending_queue:
{queue}    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
      max_elapsed_time: 0s
"#
    )
}

#[test]
fn a_refusing_backend_holds_the_checkpoint_until_delivery() {
    let setup = Setup::new();
    let n = 1000;
    append(&setup.log("app.log"), &numbered(0..n));
    let port = free_port();
    let app = setup.log("app.log").display().to_string();
    let config = setup.config("    start_at: beginning", &otlp_exporter(port, false));
    // Nothing listens on the port: every attempt is refused, the queue (answering only on
    // delivery) holds the batches, the receiver's checkpoint stays at 0.
    let mut collector = Collector::start(&config, &[]);
    assert!(
        wait_until(PATIENCE, || collector
            .logs()
            .contains("export failed, will retry")),
        "no export attempted; log:\n{}",
        collector.logs()
    );
    assert!(wait_until(PATIENCE, || setup
        .checkpoint()
        .iter()
        .any(|(p, _)| *p == app)));
    collector.stop();
    assert_eq!(
        setup.checkpoint(),
        [(app.clone(), 0)],
        "the checkpoint moved past lines never delivered"
    );
    // The backend is back: the restart delivers every line, once.
    let backend = OtlpSink::start_on(port);
    let mut collector = Collector::start(&config, &[]);
    let complete = wait_until(PATIENCE, || backend.bodies().len() as u64 >= n);
    let size = std::fs::metadata(setup.log("app.log")).unwrap().len();
    assert!(wait_until(PATIENCE, || setup.checkpoint() == [(app.clone(), size)]));
    collector.stop();
    let (lost, duplicated) =
        lost_and_duplicated(&tally(backend.bodies().iter().map(|b| seq(b))), n);
    eprintln!(
        "refusing backend, memory queue: {} lost, {duplicated} duplicated",
        lost.len()
    );
    assert!(complete && lost.is_empty(), "lost {lost:?}");
    assert_eq!(duplicated, 0);
}

#[test]
fn a_refusing_backend_behind_a_persistent_queue_then_kill_9_loses_nothing() {
    let setup = Setup::new();
    let n = 1000;
    append(&setup.log("app.log"), &numbered(0..n));
    let port = free_port();
    let app = setup.log("app.log").display().to_string();
    let size = std::fs::metadata(setup.log("app.log")).unwrap().len();
    let config = setup.config("    start_at: beginning", &otlp_exporter(port, true));
    // The queue answers once a batch is on disk: the checkpoint moves to the end although
    // the backend refuses everything; the queue holds the lines.
    let mut collector = Collector::start(&config, &[]);
    assert!(
        wait_until(PATIENCE, || setup.checkpoint() == [(app.clone(), size)]),
        "checkpoint {:?}; log:\n{}",
        setup.checkpoint(),
        collector.logs()
    );
    kill9(&mut collector);
    let backend = OtlpSink::start_on(port);
    let mut collector = Collector::start(&config, &[]);
    let complete = wait_until(PATIENCE, || {
        tally(backend.bodies().iter().map(|b| seq(b))).len() as u64 >= n
    });
    collector.stop();
    let (lost, duplicated) =
        lost_and_duplicated(&tally(backend.bodies().iter().map(|b| seq(b))), n);
    eprintln!(
        "refusing backend, persistent queue, kill -9: {} lost, {duplicated} duplicated",
        lost.len()
    );
    assert!(complete && lost.is_empty(), "lost {lost:?}");
    // Everything was in the queue and the checkpoint at the end before the kill: nothing is
    // read twice.
    assert_eq!(duplicated, 0);
}
