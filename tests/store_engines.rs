//! The store's contract on the run's engines (`ITM_STORE`): the embedded
//! RocksDB, or the cluster store on a real PostgreSQL and a real
//! three-node Garage. Every assertion holds on both; the cluster's own
//! (two nodes sharing one store, a Garage node down) run only there.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use imap_time_machine::store::{
    ContentRecord, FolderRecord, MessageRecord, RequestState, RestoreRequest, SnapshotInfo, Store,
};
use support::cluster::{self, StoreKind};

/// A fresh namespace of the cluster when the run is on it.
fn namespace() -> Option<String> {
    (StoreKind::of_run() == StoreKind::Cluster).then(cluster::namespace)
}

fn open(data: &std::path::Path, ns: Option<&str>) -> Store {
    cluster::open_store(data, ns)
}

fn message(raw: &[u8]) -> ([u8; 32], ContentRecord) {
    (
        *blake3::hash(raw).as_bytes(),
        ContentRecord {
            size: raw.len() as u64,
            envelope: b"(NIL)".to_vec(),
            bodystructure: vec![],
            body: vec![],
        },
    )
}

fn record(uid: u32, hash: [u8; 32], size: u64) -> MessageRecord {
    MessageRecord {
        uid,
        flags: vec!["\\Seen".into()],
        internaldate: "02-Dec-2026 09:15:03 +0100".into(),
        hash,
        modseq: 1,
        size,
    }
}

fn folder(name: &str, messages: u32) -> FolderRecord {
    FolderRecord {
        name: name.as_bytes().to_vec(),
        delimiter: Some('/'),
        attributes: vec![],
        flags: vec!["\\Seen".into()],
        selectable: true,
        uidvalidity: 7,
        uidnext: messages + 1,
        highestmodseq: 1,
        messages,
        bytes: 0,
        messages_at: None,
    }
}

fn info(user: &str, date: &str, messages: u64) -> SnapshotInfo {
    SnapshotInfo {
        user: user.into(),
        date: date.into(),
        taken_at: 1,
        folders: 1,
        messages,
        bytes: 0,
    }
}

/// Bodies of every size class (empty, small, a base64 attachment of
/// incompressible bytes, 3 MB) go in and come out byte for byte.
fn bodies() -> Vec<Vec<u8>> {
    let mut noise = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..(3 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        noise.push(x as u8);
    }
    vec![
        Vec::new(),
        b"Subject: hi\r\n\r\nhello\r\n".to_vec(),
        [b"Subject: att\r\n\r\n".as_slice(), &noise[..70_000]].concat(),
        noise.clone(),
    ]
}

#[test]
fn snapshots_are_stored_read_replaced_and_swept() {
    let data = tempfile::tempdir().expect("tempdir");
    let ns = namespace();
    let s = open(data.path(), ns.as_deref());
    let raws = bodies();
    let mut records = Vec::new();
    for (i, raw) in raws.iter().enumerate() {
        let (h, meta) = message(raw);
        assert!(s.put_content("alice", &h, raw, &meta).expect("put"));
        assert!(
            !s.put_content("alice", &h, raw, &meta).expect("put again"),
            "stored once"
        );
        records.push(record(i as u32 + 1, h, raw.len() as u64));
    }
    // Nothing is visible before the commit.
    assert!(s.snapshots(Some("alice")).expect("list").is_empty());
    s.commit_snapshot(
        &info("alice", "2026-12-01", records.len() as u64),
        &[folder("INBOX", records.len() as u32)],
        &[(b"INBOX".to_vec(), records.clone())],
    )
    .expect("commit");
    assert_eq!(s.snapshots(Some("alice")).expect("list").len(), 1);
    assert_eq!(
        *s.messages_shared("alice", "2026-12-01", b"INBOX").expect("list"),
        records
    );
    assert_eq!(s.messages("alice", "2026-12-01", b"INBOX").expect("list"), records);
    assert_eq!(
        s.message("alice", "2026-12-01", b"INBOX", 3).expect("one"),
        Some(records[2].clone())
    );
    assert_eq!(s.message("alice", "2026-12-01", b"INBOX", 99).expect("none"), None);
    if let Some(ns) = &ns {
        // A folder version is one row, whatever its messages (schema 3).
        let c = cluster::cluster();
        assert_eq!(c.rows(ns, "itm_lists"), 1);
        assert_eq!(c.rows(ns, "itm_messages"), 0);
    }
    let wanted: Vec<_> = records.iter().map(|m| (m.hash, m.size)).collect();
    for verify in [false, true] {
        let got = s.blobs("alice", &wanted, verify).expect("read");
        let got: Vec<Vec<u8>> = got.into_iter().map(|b| b.expect("present")).collect();
        assert_eq!(got, raws, "verify={verify}");
    }
    assert_eq!(s.bodies("alice", &records).expect("bodies"), raws);
    // Another user sees none of it.
    assert!(s
        .blobs("bob", &wanted, false)
        .expect("read")
        .iter()
        .all(Option::is_none));
    assert!(s.snapshots(Some("bob")).expect("list").is_empty());

    // The same date again replaces it whole.
    s.commit_snapshot(
        &info("alice", "2026-12-01", 1),
        &[folder("Archive", 1)],
        &[(b"Archive".to_vec(), vec![records[1].clone()])],
    )
    .expect("replace");
    let names: Vec<_> = s
        .folders("alice", "2026-12-01")
        .expect("folders")
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, vec![b"Archive".to_vec()]);
    assert!(s.messages("alice", "2026-12-01", b"INBOX").expect("gone").is_empty());

    // The sweep removes exactly the bodies no snapshot holds.
    let (before, _) = s.blob_stats().expect("stats");
    let swept = s.sweep().expect("sweep");
    assert_eq!(swept.blobs_removed, 3);
    // An object store's listing may trail its DELETEs by moments (seen
    // once in a dozen runs on Garage under load): wait for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.blob_stats().expect("stats").0 != before - 3 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(s.blob_stats().expect("stats").0, before - 3);
    assert!(s.content("alice", &records[0].hash).expect("content").is_none());
    assert_eq!(s.blob("alice", &records[1].hash).expect("blob"), Some(raws[1].clone()));
    s.delete_snapshot("alice", "2026-12-01").expect("delete");
    assert_eq!(s.sweep().expect("sweep").blobs_removed, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.blob_stats().expect("stats").0 != before - 4 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(s.blob_stats().expect("stats").0, before - 4);
}

fn request(user: &str) -> RestoreRequest {
    RestoreRequest {
        id: 0,
        user: user.into(),
        date: "2026-12-01".into(),
        folder: None,
        state: RequestState::Pending,
        created_at: 0,
        decided_by: None,
        decided_at: None,
        reason: None,
        status_seq: 0,
        changed_at: 0,
        progress: vec![],
        error: None,
    }
}

/// Request ids and status numbers are read-modify-writes under the
/// store's lock: threads of one store, and in the cluster two stores (two
/// nodes) at once, never hand out one twice.
#[test]
fn concurrent_requests_get_distinct_ids() {
    let data = tempfile::tempdir().expect("tempdir");
    let data2 = tempfile::tempdir().expect("tempdir");
    let ns = namespace();
    let first = Arc::new(open(data.path(), ns.as_deref()));
    let stores: Vec<Arc<Store>> = match &ns {
        None => vec![first.clone(), first.clone()],
        Some(ns) => vec![first.clone(), Arc::new(open(data2.path(), Some(ns)))],
    };
    let mut threads = Vec::new();
    for (i, store) in stores.iter().cycle().take(8).enumerate() {
        let store = store.clone();
        threads.push(std::thread::spawn(move || {
            (0..10)
                .map(|_| store.create_request(request(&format!("u{i}"))).expect("create").id)
                .collect::<Vec<u64>>()
        }));
    }
    let ids: Vec<u64> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
    let distinct: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), 80, "ids handed out twice: {ids:?}");
    assert_eq!(distinct, (1..=80).collect::<HashSet<u64>>());
    assert_eq!(first.requests().expect("requests").len(), 80);
    assert_eq!(stores[1].last_status_seq().expect("seq"), 80);
}

/// Retention's sweep on one node while a snapshot job of another node
/// runs and reuses a body that only an expired snapshot held: the sweep
/// waits for the job (its fence), so the body the new snapshot names is
/// kept; once nothing holds it, the next sweep frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_waits_for_the_snapshot_jobs_of_other_nodes() {
    let data = tempfile::tempdir().expect("tempdir");
    let data2 = tempfile::tempdir().expect("tempdir");
    let Some(ns) = namespace() else {
        // One process owns an embedded store: the snapshot service's own
        // lock keeps its sweep apart from its jobs, and marks left by a
        // crashed process must not hold a sweep back.
        let s = Arc::new(open(data.path(), None));
        assert!(s.start_writing(60).await.expect("mark").is_none());
        assert!(s.fence_writers(60).await.expect("fence").is_none());
        return;
    };
    let a = Arc::new(open(data.path(), Some(&ns)));
    let b = Arc::new(open(data2.path(), Some(&ns)));
    let raw = b"Subject: kept\r\n\r\nstill needed\r\n".to_vec();
    let (h, meta) = message(&raw);
    assert!(a.put_content("alice", &h, &raw, &meta).expect("put"));
    let held = vec![(b"INBOX".to_vec(), vec![record(1, h, raw.len() as u64)])];
    a.commit_snapshot(&info("alice", "2026-11-01", 1), &[folder("INBOX", 1)], &held)
        .expect("commit");
    // Retention removed that day: the body is unreferenced now.
    a.delete_snapshot("alice", "2026-11-01").expect("delete");

    // Node a's job starts, and finds the body stored (it will reuse it).
    let job = a.start_writing(60).await.expect("mark");
    assert!(job.is_some(), "a job on a shared store leaves a mark");
    assert!(a.has_content("alice", &h).expect("has"));
    // Node b prunes meanwhile.
    let sweeper = b.clone();
    let sweep = tokio::spawn(async move {
        let fence = sweeper.fence_writers(60).await.expect("fence");
        assert!(fence.is_some());
        sweeper.sweep().expect("sweep")
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let now = || jiff::Timestamp::now().as_second();
    while !a.sweeping(now()).expect("sweeping") && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(a.sweeping(now()).expect("sweeping"), "the sweep took its fence");
    assert_eq!(b.live_writers(now()).expect("writers"), 1, "and sees a's job");
    assert!(!sweep.is_finished(), "the sweep waits while a's job runs");
    // No new job starts while the sweep holds its fence.
    let waiting = tokio::time::timeout(std::time::Duration::from_millis(1500), a.start_writing(60)).await;
    assert!(waiting.is_err(), "a job started while a sweep ran");
    // a's job commits the snapshot that names the body, and ends.
    a.commit_snapshot(&info("alice", "2026-12-01", 1), &[folder("INBOX", 1)], &held)
        .expect("commit");
    drop(job);
    let swept = sweep.await.expect("sweep task");
    assert_eq!(swept.blobs_removed, 0, "the body a's new snapshot names was swept");
    for s in [&a, &b] {
        assert_eq!(s.blob("alice", &h).expect("read"), Some(raw.clone()));
    }
    // The fence is gone: jobs start at once again.
    let again = tokio::time::timeout(std::time::Duration::from_secs(5), a.start_writing(60))
        .await
        .expect("a job starts once the sweep ended")
        .expect("mark");
    drop(again);
    // Nothing holds the body any more: the next sweep frees it.
    a.delete_snapshot("alice", "2026-12-01").expect("delete");
    let fence = b.fence_writers(60).await.expect("fence");
    assert_eq!(b.sweep().expect("sweep").blobs_removed, 1);
    drop(fence);
    assert!(b.content("alice", &h).expect("content").is_none());
}
