//! Tests of the write-ahead log through its public API, on temporary directories: replay, commits and space
//! reclaim, repair of torn tails and corrupt records, Full, group commit.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::record::{self, OVERHEAD};
use super::segment::ack_path;
use super::{FsyncPolicy, Record, Wal, WalConfig, WalError};

pub(super) fn config(dir: &Path, segment_bytes: u64, max_bytes: u64, fsync: FsyncPolicy) -> WalConfig {
    WalConfig { dir: dir.to_path_buf(), max_bytes, segment_bytes, fsync }
}

/// A payload that tells which record it belongs to.
pub(super) fn payload(tag: u64, len: usize) -> Bytes {
    let mut v: Vec<u8> = tag.to_le_bytes().iter().copied().cycle().take(len.max(8)).collect();
    v.truncate(len.max(8));
    for (i, b) in v.iter_mut().enumerate().skip(8) {
        *b ^= i as u8;
    }
    Bytes::from(v)
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == ext)).collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Runs `f` with the log output captured.
fn captured<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink(Arc::default());
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&sink.0.lock().expect("log sink")).into_owned();
    (out, text)
}

fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Opens the log, waiting (up to 5 s) while the directory's lock is held. After a test drops its `Wal` the lock
/// can stay held for a moment: the crash tests in this binary spawn child processes, and a child holds a copy of
/// every descriptor, the lock file's included, from its fork until its exec closes them.
fn open(cfg: &WalConfig) -> (Wal, Vec<Record>) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        match Wal::open(cfg.clone()) {
            Err(WalError::Locked(_)) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
            opened => return opened.expect("open"),
        }
    }
}

async fn append_n(wal: &Wal, n: u64, len: usize) -> Vec<u64> {
    let mut seqs = Vec::new();
    for i in 0..n {
        seqs.push(wal.append((i % 3) as u8, payload(i, len)).await.expect("append"));
    }
    seqs
}

#[tokio::test]
async fn round_trip_across_segment_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 4096, 1 << 20, FsyncPolicy::Always);
    let (wal, replay) = open(&cfg);
    assert!(replay.is_empty());
    let seqs = append_n(&wal, 40, 1024 - OVERHEAD).await;
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    let stats = wal.stats();
    assert_eq!((stats.records_pending, stats.segments), (40, 10), "4 records of 1 KiB per 4 KiB segment");
    assert_eq!(stats.bytes_used, 40 * 1024);
    assert_eq!(stats.oldest_pending_seq, Some(seqs[0]));
    drop(wal);
    assert_eq!(files(dir.path(), "wal").len(), 10);
    let (wal, replay) = open(&cfg);
    assert_eq!(replay.len(), 40);
    for (i, (r, seq)) in replay.iter().zip(&seqs).enumerate() {
        assert_eq!((r.seq, r.signal, &r.payload), (*seq, (i % 3) as u8, &payload(i as u64, 1024 - OVERHEAD)));
    }
    let next = wal.append(0, payload(99, 10)).await.expect("append after reopen");
    assert!(next > seqs[39], "seqs keep increasing after reopen");
}

#[tokio::test]
async fn commit_reclaims_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 4096, 1 << 20, FsyncPolicy::Always);
    let (wal, _) = open(&cfg);
    let seqs = append_n(&wal, 40, 1024 - OVERHEAD).await;
    let before = wal.stats().bytes_used;
    for seq in &seqs[..20] {
        wal.commit(*seq).expect("commit");
    }
    let stats = wal.stats();
    assert_eq!((stats.segments, stats.records_pending, stats.oldest_pending_seq), (5, 20, Some(seqs[20])));
    assert_eq!(stats.bytes_used, before - 20 * 1024);
    eventually("5 segment files deleted", || files(dir.path(), "wal").len() == 5);
    eventually("their commit files deleted", || files(dir.path(), "ack").is_empty());
    wal.commit(seqs[3]).expect("committing twice is fine");
    assert!(matches!(wal.commit(seqs[39] + 1000), Err(WalError::UnknownSeq(_))));
    for seq in &seqs[20..] {
        wal.commit(*seq).expect("commit");
    }
    let stats = wal.stats();
    assert_eq!((stats.segments, stats.records_pending), (1, 0), "only the active segment is left");
    drop(wal);
    let (wal, replay) = open(&cfg);
    assert!(replay.is_empty());
    assert_eq!(wal.stats().segments, 0);
    assert!(files(dir.path(), "wal").is_empty() && files(dir.path(), "ack").is_empty());
}

#[tokio::test]
async fn replay_returns_exactly_the_uncommitted_records_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 4096, 1 << 20, FsyncPolicy::Interval(Duration::from_millis(1)));
    let (wal, _) = open(&cfg);
    let seqs = append_n(&wal, 30, 500).await;
    for (i, seq) in seqs.iter().enumerate() {
        if i % 3 != 0 {
            wal.commit(*seq).expect("commit");
        }
    }
    drop(wal);
    let (wal, replay) = open(&cfg);
    let expect: Vec<u64> = seqs.iter().step_by(3).copied().collect();
    assert_eq!(replay.iter().map(|r| r.seq).collect::<Vec<_>>(), expect);
    assert!(replay.iter().all(|r| r.payload == payload(r.seq - seqs[0], 500)));
    assert_eq!(wal.stats().records_pending, 10);
    // Commits of replayed records go to the old segments' commit files.
    for r in &replay[..5] {
        wal.commit(r.seq).expect("commit replayed");
    }
    let extra = wal.append(1, payload(1000, 64)).await.expect("append");
    drop(wal);
    let (_wal, replay) = open(&cfg);
    let mut expect: Vec<u64> = expect[5..].to_vec();
    expect.push(extra);
    assert_eq!(replay.iter().map(|r| r.seq).collect::<Vec<_>>(), expect);
}

#[tokio::test]
async fn torn_tail_is_truncated_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1 << 20, 1 << 22, FsyncPolicy::Always);
    let mut torn = Vec::new();
    record::encode(&mut torn, 1_000_000, 0, &payload(7, 300));
    torn.truncate(torn.len() / 2);
    let (wal, _) = open(&cfg);
    append_n(&wal, 5, 200).await;
    drop(wal);
    let seg = files(dir.path(), "wal").pop().expect("a segment");
    let good_len = fs::metadata(&seg).expect("stat").len();
    for tail in [torn, vec![0u8; 100], b"OLW\x01\xff\xff".to_vec()] {
        fs::OpenOptions::new().append(true).open(&seg).and_then(|mut f| f.write_all(&tail)).expect("write tail");
        let ((wal, replay), log) = captured(|| open(&cfg));
        assert_eq!(replay.len(), 5);
        assert_eq!(fs::metadata(&seg).expect("stat").len(), good_len, "tail cut off");
        let line = log.lines().find(|l| l.contains("torn or corrupt tail truncated")).expect("warning logged");
        assert!(line.contains("WARN") && line.contains(&*seg.to_string_lossy()), "{line}");
        assert!(line.contains(&format!("offset={good_len}")) && line.contains(&format!("bytes={}", tail.len())));
        assert_eq!(log.lines().filter(|l| l.contains("WARN")).count(), 1, "one line: {log}");
        drop(wal);
    }
    let ((_wal, replay), log) = captured(|| open(&cfg));
    assert_eq!((replay.len(), log.contains("WARN")), (5, false), "clean after the repair");
}

#[tokio::test]
async fn bit_flips_in_the_middle_are_skipped_and_later_records_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1 << 20, 1 << 22, FsyncPolicy::Always);
    let (wal, _) = open(&cfg);
    let seqs = append_n(&wal, 10, 100).await;
    drop(wal);
    let seg = files(dir.path(), "wal").pop().expect("a segment");
    let mut bytes = fs::read(&seg).expect("read");
    let rec = 100 + OVERHEAD;
    bytes[2 * rec + 20 + 50] ^= 0x04; // payload of the third record
    bytes[6 * rec + 5] ^= 0x80; // length field of the seventh: its extent is wrong, the scan must resynchronise
    fs::write(&seg, &bytes).expect("write");
    let ((wal, replay), log) = captured(|| open(&cfg));
    let expect: Vec<u64> = seqs.iter().enumerate().filter(|(i, _)| *i != 2 && *i != 6).map(|(_, s)| *s).collect();
    assert_eq!(replay.iter().map(|r| r.seq).collect::<Vec<_>>(), expect);
    let skipped: Vec<&str> = log.lines().filter(|l| l.contains("corrupt record skipped")).collect();
    assert_eq!(skipped.len(), 2, "{log}");
    assert!(skipped[0].contains(&format!("offset={}", 2 * rec)) && skipped[0].contains(&format!("bytes={rec}")));
    assert!(skipped[1].contains(&format!("offset={}", 6 * rec)));
    for r in &replay {
        wal.commit(r.seq).expect("commit");
    }
    drop(wal);
    let (_wal, replay) = open(&cfg);
    assert!(replay.is_empty(), "the damaged segment is deleted once the rest is committed");
}

#[tokio::test]
async fn full_when_max_bytes_reached_and_space_back_after_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (segment, max) in [(16 << 10, 64 << 10), (16 << 10, 16 << 10)] {
        let cfg = config(&dir.path().join(format!("{max}")), segment, max, FsyncPolicy::Never);
        let (wal, _) = open(&cfg);
        let mut seqs = Vec::new();
        let mut full = false;
        for i in 0..100 {
            match wal.append(0, payload(i, 4000)).await {
                Ok(seq) => seqs.push(seq),
                Err(WalError::Full) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(full, "refused once full");
        assert_eq!(seqs.len() as u64, max / 4024, "all that fits");
        assert!(wal.stats().bytes_used <= max);
        assert!(matches!(wal.append(0, payload(0, 4000)).await, Err(WalError::Full)), "still full");
        for seq in &seqs {
            wal.commit(*seq).expect("commit");
        }
        for i in 0..seqs.len() as u64 {
            wal.append(0, payload(i, 4000)).await.expect("space is back");
        }
        assert!(wal.stats().bytes_used <= max);
        let too_large = wal.append(0, payload(0, max as usize)).await;
        assert!(matches!(too_large, Err(WalError::TooLarge { .. })), "{too_large:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed_and_all_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 64 << 10, 1 << 24, FsyncPolicy::Interval(Duration::from_millis(5)));
    let (wal, _) = open(&cfg);
    let wal = Arc::new(wal);
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..50 {
                    let tag = t * 1000 + i;
                    out.push((wal.append(t as u8, payload(tag, 1024)).await.expect("append"), tag));
                }
                out
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.expect("task"));
    }
    acked.sort();
    assert!(acked.windows(2).all(|w| w[0].0 != w[1].0), "unique seqs");
    let fsyncs = wal.stats().fsyncs;
    assert!(fsyncs <= 200, "400 appends in {fsyncs} fsyncs: batched");
    drop(Arc::into_inner(wal).expect("last handle"));
    let (_wal, replay) = open(&cfg);
    assert_eq!(replay.len(), 400);
    for (r, (seq, tag)) in replay.iter().zip(&acked) {
        assert_eq!((r.seq, r.signal, &r.payload), (*seq, (tag / 1000) as u8, &payload(*tag, 1024)));
    }
}

#[tokio::test]
async fn torn_or_corrupt_commit_file_only_redelivers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1 << 20, 1 << 22, FsyncPolicy::Always);
    let (wal, _) = open(&cfg);
    let seqs = append_n(&wal, 6, 50).await;
    for seq in &seqs[..4] {
        wal.commit(*seq).expect("commit");
    }
    drop(wal);
    let first = files(dir.path(), "wal").pop().expect("segment");
    let stem = first.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).expect("name");
    let acks = ack_path(dir.path(), stem);
    let mut bytes = fs::read(&acks).expect("commit file");
    assert_eq!(bytes.len(), 4 * record::ACK_LEN);
    bytes[record::ACK_LEN] ^= 1; // second commit entry damaged: its record comes back
    bytes.extend_from_slice(&[9, 9, 9]); // torn entry
    fs::write(&acks, &bytes).expect("write");
    let ((_wal, replay), log) = captured(|| open(&cfg));
    assert_eq!(replay.iter().map(|r| r.seq).collect::<Vec<_>>(), [seqs[1], seqs[4], seqs[5]]);
    assert!(log.contains("corrupt commit entries skipped") && log.contains("torn commit entry truncated"), "{log}");
    assert_eq!(fs::metadata(&acks).expect("stat").len(), 4 * record::ACK_LEN as u64);
}

#[test]
fn invalid_config_and_second_opener_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 4096, 1 << 20, FsyncPolicy::Always);
    let (wal, _) = open(&cfg);
    assert!(matches!(Wal::open(cfg.clone()), Err(WalError::Locked(_))));
    drop(wal);
    drop(open(&cfg));
    assert!(matches!(Wal::open(config(dir.path(), 0, 10, FsyncPolicy::Always)), Err(WalError::Config(_))));
    assert!(matches!(Wal::open(config(dir.path(), 100, 10, FsyncPolicy::Always)), Err(WalError::Config(_))));
}
