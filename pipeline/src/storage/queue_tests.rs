use std::path::Path;
use std::time::Duration as StdDuration;

use super::*;
use crate::exporter::Sizer;
use crate::telemetry::{Counter, Gauge};

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
    PersistentQueue::open(o.clone(), Counter::default(), Gauge::default()).unwrap()
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

    let damaged = Counter::default();
    let (q, report) = PersistentQueue::open(o.clone(), damaged.clone(), Gauge::default()).unwrap();
    assert_eq!((report.records, report.damaged, damaged.get()), (2, 1, 1));
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
        PersistentQueue::open(o.clone(), Counter::default(), Gauge::default()),
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
