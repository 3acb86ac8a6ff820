use std::path::Path;
use std::time::Duration as StdDuration;

use super::*;
use crate::exporter::Sizer;

fn opts(dir: &Path) -> QueueOptions {
    QueueOptions {
        directory: dir.to_path_buf(),
        fsync: FsyncPolicy::Always,
        fsync_interval: StdDuration::from_millis(50),
        max_disk: 1 << 30,
        segment_size: 1 << 20,
        capacity: 1 << 30,
        sizer: Sizer::Bytes,
        create_directory: true,
    }
}

fn open(o: &QueueOptions) -> (PersistentQueue, ReplayReport) {
    PersistentQueue::open(o.clone(), QueueMetrics::default()).unwrap()
}

async fn put(q: &PersistentQueue, text: &str) {
    q.append(text.as_bytes().to_vec(), 1, Vec::new(), true)
        .await
        .unwrap();
}

/// Claims everything pending: (claim, payload text).
async fn take_all(q: &PersistentQueue) -> Vec<(Claim, String)> {
    let mut out = Vec::new();
    while q.pending().0 > out.len() {
        let claim = q.pop().await.unwrap();
        let text = String::from_utf8(q.read(&claim).unwrap()).unwrap();
        out.push((claim, text));
    }
    out
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    out.sort();
    out
}

fn quarantined(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("quarantine")).map_or(0, |d| d.count())
}

async fn wait_until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    panic!("condition not reached in 5 s");
}

#[tokio::test]
async fn appended_records_come_back_in_order_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let (q, report) = open(&o);
    assert_eq!(report, ReplayReport::default());
    for i in 0..5 {
        put(&q, &format!("r{i}")).await;
    }
    assert_eq!(q.pending(), (5, 5, 10));
    q.finish().await;
    drop(q);

    let (q, report) = open(&o);
    assert_eq!((report.records, report.items, report.damaged), (5, 5, 0));
    let texts: Vec<String> = take_all(&q).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["r0", "r1", "r2", "r3", "r4"]);
    // New ids continue after the replayed ones.
    put(&q, "r5").await;
    let claim = q.pop().await.unwrap();
    assert_eq!((claim.id, q.read(&claim).unwrap()), (5, b"r5".to_vec()));
    q.finish().await;
}

#[tokio::test]
async fn out_of_order_completion_persists_the_lowest_undelivered_id() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let (q, _) = open(&o);
    for i in 0..5 {
        put(&q, &format!("r{i}")).await;
    }
    let mut claims: Vec<Claim> = take_all(&q).await.into_iter().map(|(c, _)| c).collect();
    let c3 = claims.remove(3);
    let c1 = claims.remove(1);
    let c0 = claims.remove(0);
    q.complete(c1, &Ok(()));
    q.complete(c3, &Ok(()));
    // 0 still in flight: the watermark cannot move past it.
    assert_eq!(q.pending().0, 3);
    q.complete(c0, &Ok(()));
    assert_eq!(q.pending().0, 2);
    q.finish().await;
    drop(q);

    // Watermark is 2: 2 and 4 are undelivered, 3 was done but above it, so it comes again.
    let (q, report) = open(&o);
    assert_eq!(report.records, 3);
    let texts: Vec<String> = take_all(&q).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["r2", "r3", "r4"]);
    q.finish().await;
}

#[tokio::test]
async fn delivered_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.segment_size = 200;
    let (q, _) = open(&o);
    let payload = "x".repeat(100);
    for _ in 0..20 {
        put(&q, &payload).await;
    }
    assert!(segments(dir.path()).len() >= 10);
    let used = q.disk_used();
    assert!(used >= 20 * 100, "{used}");
    for (claim, _) in take_all(&q).await {
        q.complete(claim, &Ok(()));
    }
    q.wait_empty().await;
    // Only the segment being written to is left.
    wait_until(|| segments(dir.path()).len() == 1).await;
    assert!(q.disk_used() <= 200);
    q.finish().await;
    drop(q);
    let (q, report) = open(&o);
    assert_eq!(report.records, 0);
    q.finish().await;
}

#[tokio::test]
async fn a_full_disk_refuses_or_blocks_until_records_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.max_disk = 1000;
    o.segment_size = 250;
    let (q, _) = open(&o);
    let q = std::sync::Arc::new(q);
    let payload = vec![7u8; 100];
    let mut stored = 0;
    loop {
        match q.append(payload.clone(), 1, Vec::new(), false).await {
            Ok(()) => stored += 1,
            Err((AppendError::Full, _)) => break,
            Err((e, _)) => panic!("{e}"),
        }
    }
    // Each 128-byte record starts a 16-byte segment header here (segments of 250 bytes).
    assert!((6..=7).contains(&stored), "{stored}");
    assert!(q.disk_used() <= 1000);

    let blocked = {
        let q = q.clone();
        let payload = payload.clone();
        tokio::spawn(async move { q.append(payload, 1, Vec::new(), true).await.is_ok() })
    };
    tokio::time::sleep(StdDuration::from_millis(50)).await;
    assert!(
        !blocked.is_finished(),
        "append must wait while the disk is full"
    );
    // Delivering the oldest records frees whole segments, which lets the append in.
    let first = q.pop().await.unwrap();
    let second = q.pop().await.unwrap();
    q.complete(first, &Ok(()));
    q.complete(second, &Ok(()));
    assert!(blocked.await.unwrap());
    assert!(q.disk_used() <= 1000);
    q.finish().await;
}

#[tokio::test]
async fn torn_tail_is_quarantined_once_and_the_rest_replays() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let (q, _) = open(&o);
    for i in 0..3 {
        put(&q, &format!("record-{i}")).await;
    }
    q.finish().await;
    drop(q);
    let segment = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&segment).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.set_len(len - 4).unwrap();
    drop(file);

    let metrics = QueueMetrics::default();
    let (q, report) = PersistentQueue::open(o.clone(), metrics.clone()).unwrap();
    assert_eq!(
        (report.records, report.damaged, metrics.damaged.get()),
        (2, 1, 1)
    );
    assert_eq!(quarantined(dir.path()), 1);
    let texts: Vec<String> = take_all(&q).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["record-0", "record-1"]);
    q.finish().await;
    drop(q);
    // The tail was cut off: the next start finds nothing new to report.
    let (q, report) = open(&o);
    assert_eq!((report.records, report.damaged), (2, 0));
    q.finish().await;
}

#[tokio::test]
async fn flipped_bits_in_the_middle_lose_only_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let (q, _) = open(&o);
    for i in 0..5 {
        put(&q, &format!("record-{i}")).await;
    }
    q.finish().await;
    drop(q);
    let segment = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.windows(8).position(|w| w == b"record-2").unwrap();
    bytes[at + 4] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();

    let (q, report) = open(&o);
    assert_eq!((report.records, report.damaged), (4, 1));
    let texts: Vec<String> = take_all(&q).await.into_iter().map(|(_, t)| t).collect();
    assert_eq!(texts, ["record-0", "record-1", "record-3", "record-4"]);
    let quarantine = std::fs::read_dir(dir.path().join("quarantine"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let kept = std::fs::read(quarantine).unwrap();
    assert!(kept.windows(8).any(|w| w == b"recoRd-2"));
    q.finish().await;
    drop(q);
    let (q, report) = open(&o);
    assert_eq!((report.records, report.damaged), (4, 0));
    q.finish().await;
}

#[tokio::test]
async fn a_torn_cursor_replays_more_never_less() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let (q, _) = open(&o);
    for i in 0..4 {
        put(&q, &format!("r{i}")).await;
    }
    let claims: Vec<Claim> = take_all(&q).await.into_iter().map(|(c, _)| c).collect();
    let mut claims = claims.into_iter();
    q.complete(claims.next().unwrap(), &Ok(()));
    q.complete(claims.next().unwrap(), &Ok(()));
    q.finish().await;
    drop(q);
    let (q, report) = open(&o);
    assert_eq!(report.records, 2);
    q.finish().await;
    drop(q);

    std::fs::write(dir.path().join("cursor"), [0xAAu8; 48]).unwrap();
    let (q, report) = open(&o);
    assert_eq!(report.records, 4);
    q.finish().await;
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let (q, _) = open(&o);
    assert!(matches!(
        PersistentQueue::open(o.clone(), QueueMetrics::default()),
        Err(StorageError::Locked(_))
    ));
    q.finish().await;
    drop(q);
    let (q, _) = open(&o);
    q.finish().await;
}

#[tokio::test]
async fn the_items_sizer_bounds_pending_items() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.sizer = Sizer::Items;
    o.capacity = 10;
    let (q, _) = open(&o);
    q.append(b"a".to_vec(), 6, Vec::new(), false).await.unwrap();
    assert!(matches!(
        q.append(b"b".to_vec(), 6, Vec::new(), false).await,
        Err((AppendError::Full, _))
    ));
    q.append(b"c".to_vec(), 4, Vec::new(), false).await.unwrap();
    assert_eq!(q.pending(), (2, 10, 10));
    q.finish().await;
}

/// `n` records of `payload_len` bytes (texts `r00-xxx…`), written and kept for the next start.
async fn filled_log(o: &QueueOptions, n: usize, payload_len: usize) -> Vec<String> {
    let (q, _) = open(o);
    let mut texts = Vec::new();
    for i in 0..n {
        let text = format!("r{i:02}-{}", "x".repeat(payload_len - 4));
        put(&q, &text).await;
        texts.push(text);
    }
    q.finish().await;
    texts
}

/// Which of `texts` each segment file holds, oldest file first.
fn texts_by_segment(dir: &Path, texts: &[String]) -> Vec<(std::path::PathBuf, Vec<String>)> {
    segments(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let held = texts
                .iter()
                .filter(|t| bytes.windows(t.len()).any(|w| w == t.as_bytes()))
                .cloned()
                .collect();
            (path, held)
        })
        .collect()
}

async fn texts_of(q: &PersistentQueue) -> Vec<String> {
    take_all(q).await.into_iter().map(|(_, t)| t).collect()
}

#[tokio::test]
async fn a_flipped_bit_in_a_segment_header_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.segment_size = 400;
    let texts = filled_log(&o, 12, 60).await;
    let files = texts_by_segment(dir.path(), &texts);
    assert!(files.len() >= 3, "{}", files.len());
    // One bit of the salt of the oldest file, one of the magic of the next one.
    for (file, byte, bit) in [(&files[0].0, 6, 0x10), (&files[1].0, 1, 0x01)] {
        let mut bytes = std::fs::read(file).unwrap();
        bytes[byte] ^= bit;
        std::fs::write(file, &bytes).unwrap();
    }

    let metrics = QueueMetrics::default();
    let (q, report) = PersistentQueue::open(o.clone(), metrics.clone()).unwrap();
    assert_eq!((report.records, report.damaged), (12, 2));
    assert_eq!(metrics.damaged.get(), 2);
    assert_eq!(quarantined(dir.path()), 2);
    assert_eq!(texts_of(&q).await, texts);
    q.finish().await;
    drop(q);
    // Reported once: the damaged headers are already in quarantine.
    let (q, report) = open(&o);
    assert_eq!((report.records, report.damaged), (12, 0));
    let claims = take_all(&q).await;
    for (claim, _) in claims {
        q.complete(claim, &Ok(()));
    }
    q.wait_empty().await;
    // Delivered files with damaged headers are deleted like any other.
    wait_until(|| segments(dir.path()).len() == 1).await;
    q.finish().await;
}

#[tokio::test]
async fn a_deleted_segment_is_reported_with_its_records_and_the_rest_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.segment_size = 400;
    let texts = filled_log(&o, 12, 60).await;
    let files = texts_by_segment(dir.path(), &texts);
    let (gone, lost) = files[1].clone();
    assert!(!lost.is_empty() && files.len() >= 3);
    std::fs::remove_file(&gone).unwrap();

    let metrics = QueueMetrics::default();
    let (q, report) = PersistentQueue::open(o.clone(), metrics.clone()).unwrap();
    assert_eq!(
        (report.records, report.lost_segments, report.lost_records),
        (12 - lost.len(), 1, lost.len() as u64)
    );
    assert_eq!(metrics.lost_segments.get(), 1);
    let rest: Vec<String> = texts
        .iter()
        .filter(|t| !lost.contains(t))
        .cloned()
        .collect();
    assert_eq!(texts_of(&q).await, rest);
    q.finish().await;
    drop(q);

    // Reported once: a placeholder stands in for the lost file until it is among the oldest.
    let metrics = QueueMetrics::default();
    let (q, report) = PersistentQueue::open(o.clone(), metrics.clone()).unwrap();
    assert_eq!((report.records, report.lost_segments), (rest.len(), 0));
    assert_eq!(metrics.lost_segments.get(), 0);
    for (claim, _) in take_all(&q).await {
        q.complete(claim, &Ok(()));
    }
    q.wait_empty().await;
    wait_until(|| segments(dir.path()).len() == 1).await;
    q.finish().await;
    drop(q);
    let (q, report) = open(&o);
    assert_eq!((report.records, report.lost_segments), (0, 0));
    q.finish().await;
}

#[tokio::test]
async fn deleting_the_oldest_or_the_newest_segment_is_reported() {
    for which in ["oldest", "newest", "all"] {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.segment_size = 400;
        let texts = filled_log(&o, 12, 60).await;
        let files: Vec<_> = texts_by_segment(dir.path(), &texts)
            .into_iter()
            .filter(|(_, held)| !held.is_empty())
            .collect();
        let deleted: Vec<_> = match which {
            "oldest" => files[..1].to_vec(),
            "newest" => files[files.len() - 1..].to_vec(),
            _ => files.clone(),
        };
        let lost: Vec<String> = deleted.iter().flat_map(|(_, h)| h.clone()).collect();
        for (path, _) in &deleted {
            std::fs::remove_file(path).unwrap();
        }
        let metrics = QueueMetrics::default();
        let (q, report) = PersistentQueue::open(o.clone(), metrics.clone()).unwrap();
        // A clean shutdown recorded the next id, so even the newest files' records are known.
        assert_eq!(
            (report.lost_segments, report.lost_records),
            (deleted.len() as u64, lost.len() as u64),
            "{which}"
        );
        assert_eq!(metrics.lost_segments.get(), deleted.len() as u64, "{which}");
        let rest: Vec<String> = texts
            .iter()
            .filter(|t| !lost.contains(t))
            .cloned()
            .collect();
        assert_eq!(texts_of(&q).await, rest, "{which}");
        // New records get new ids and new files after the lost ones.
        put(&q, "after").await;
        let claim = q.pop().await.unwrap();
        assert_eq!(q.read(&claim).unwrap(), b"after", "{which}");
        assert_eq!(claim.id, 12, "{which}");
        q.finish().await;
    }
}

#[tokio::test]
async fn a_missing_file_that_held_only_delivered_records_is_no_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    o.segment_size = 400;
    let texts = filled_log(&o, 12, 60).await;
    let files = texts_by_segment(dir.path(), &texts);
    // Delivered, then the collector dies before deleting the file: the cursor still names it.
    let (q, _) = open(&o);
    let claims = take_all(&q).await;
    let first_file = files[0].1.len();
    q.finish().await;
    drop(claims);
    drop(q);
    let mut cursor = super::cursor::Cursor::open(&dir.path().join("cursor")).unwrap();
    let mut extent = cursor.extent().unwrap();
    extent.first_segment = 0;
    cursor
        .store(super::cursor::Mark {
            watermark: first_file as u64,
            extent,
        })
        .unwrap();
    drop(cursor);
    std::fs::remove_file(&files[0].0).unwrap();
    let (q, report) = open(&o);
    assert_eq!(
        (report.records, report.lost_segments, report.lost_records),
        (12 - first_file, 0, 0)
    );
    q.finish().await;
}

/// A small tmpfs, so that a test fills a real filesystem: `None` where mounting is not
/// allowed (it needs root). Unmounted on drop.
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
    fn fill(&self) -> std::path::PathBuf {
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
        // Lazy: a file still open (a failed test's queue) must not keep the mount.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_refuses_appends_keeps_the_log_intact_and_takes_data_again() {
    let Some(fs) = Tmpfs::mount("256k") else {
        eprintln!("skipped: mounting a tmpfs is not allowed here (needs root)");
        return;
    };
    let mut o = opts(&fs.path().join("queue"));
    o.segment_size = 64 * 1024;
    let (q, _) = open(&o);
    let mut stored = Vec::new();
    let refusal = loop {
        let text = format!("{:04}-{}", stored.len(), "z".repeat(1000));
        match q
            .append(text.clone().into_bytes(), 1, Vec::new(), true)
            .await
        {
            Ok(()) => stored.push(text),
            Err((e, _)) => break e,
        }
        assert!(stored.len() < 1000, "the tmpfs never filled up");
    };
    assert!(matches!(refusal, AppendError::NoSpace(_)), "{refusal}");
    assert!(stored.len() > 100, "{}", stored.len());
    // Refused, not wedged: a record as large is refused the same way (a small one may still
    // fit in what is left).
    let again = format!("{:04}-{}", stored.len(), "z".repeat(1000));
    assert!(matches!(
        q.append(again.into_bytes(), 1, Vec::new(), false).await,
        Err((AppendError::NoSpace(_), _))
    ));
    q.finish().await;
    drop(q);

    // Whatever room the refused writes left is taken too: the restart cannot even create
    // a segment. It opens anyway, with everything that was acknowledged and no damage.
    let filler = fs.fill();
    let (q, report) = open(&o);
    assert_eq!((report.records, report.damaged), (stored.len(), 0));
    assert!(matches!(
        q.append(b"refused".to_vec(), 1, Vec::new(), true).await,
        Err((AppendError::NoSpace(_), _))
    ));
    let taken = take_all(&q).await;
    let texts: Vec<String> = taken.iter().map(|(_, t)| t.clone()).collect();
    assert_eq!(texts, stored);
    for (claim, _) in taken {
        q.complete(claim, &Ok(()));
    }
    q.wait_empty().await;
    // Delivery deleted the log's files: new data is taken again (the filler stays).
    put(&q, "after the disk was full").await;
    q.finish().await;
    drop(q);
    assert!(filler.exists());
    let (q, report) = open(&o);
    assert_eq!((report.records, report.damaged), (1, 0));
    assert_eq!(texts_of(&q).await, ["after the disk was full"]);
    q.finish().await;
}
