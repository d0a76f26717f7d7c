//! The archive consumer's tests: sync policies, the unsynced bound, failed writes.

use super::*;
use crate::archive::write::JournalAppend;
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::ledger::{Ledger, Run};
use crate::domain::source::Source;
use crate::pipeline::queue::{frame_queue, FrameSender};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// A disk that takes writes at once and makes them durable only when the test says so; with
/// `journal`, it also journals emergencies, durable at once, or with `appends` once the test
/// says whether each append worked; with `short`, each sync fails before it reaches the disk
/// (out of descriptors, say).
#[derive(Default)]
struct SlowDisk {
    written: Arc<AtomicU64>,
    syncs: Arc<Mutex<Vec<oneshot::Sender<()>>>>,
    journal: bool,
    appends: Option<Arc<Mutex<Vec<oneshot::Sender<bool>>>>>,
    short: bool,
}

impl ArchiveSink for SlowDisk {
    fn write<'a>(
        &'a mut self,
        batches: &'a [Arc<Batch>],
    ) -> BoxFuture<'a, Result<(), ArchiveError>> {
        let bytes: u64 = batches.iter().map(|b| b.payload_bytes()).sum();
        self.written.fetch_add(bytes, SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn journal(&mut self, batches: &[Arc<Batch>]) -> Option<JournalAppend> {
        let (worked, works) = oneshot::channel();
        match &self.appends {
            Some(appends) => appends.lock().unwrap().push(worked),
            None => worked.send(true).unwrap(),
        }
        self.journal.then(|| JournalAppend {
            records: vec![bytes::Bytes::new(); batches.len()],
            durable: Box::pin(async move {
                match works.await {
                    Ok(true) => Ok(()),
                    _ => Err(ArchiveError::broken("the append failed")),
                }
            }),
        })
    }

    fn sync(&mut self) -> BoxFuture<'static, Result<(), ArchiveError>> {
        if self.short {
            let source = std::io::Error::from_raw_os_error(libc::EMFILE);
            let (path, operation) = ("segment".into(), "open the directory of");
            return Box::pin(async move {
                Err(ArchiveError::Transient {
                    path,
                    operation,
                    source,
                })
            });
        }
        let (done, synced) = oneshot::channel();
        self.syncs.lock().unwrap().push(done);
        Box::pin(async move {
            synced
                .await
                .map_err(|_| ArchiveError::broken("sync dropped"))
        })
    }
}

const KIB: u64 = 1024;

/// Queues `count` batches of one 1 KiB routine frame of `source`, sequences from 0.
async fn queue_frames(archive: &FrameSender<Arc<Batch>>, source: &Arc<Source>, count: u64) {
    queue_priority(archive, source, count, Priority::Routine).await;
}

/// Queues `count` batches of one 1 KiB frame of `priority` of `source`, sequences from 0.
async fn queue_priority(
    archive: &FrameSender<Arc<Batch>>,
    source: &Arc<Source>,
    count: u64,
    priority: Priority,
) {
    let runs: Vec<Run> = (0..count)
        .map(|sequence| Run {
            priority,
            frames: 1,
            last_sequence: sequence,
        })
        .collect();
    source.record(&runs);
    for sequence in 0..count {
        let now = std::time::Instant::now();
        let mut batch = Batch::new(Arc::clone(source), priority, now, 1);
        batch.push(sequence, 0..KIB as usize);
        batch.attach(bytes::Bytes::from(vec![0; KIB as usize]));
        let sent = archive.send(Arc::new(batch), 1).await;
        assert!(sent.is_ok(), "the archive's queue is open");
    }
}

fn source(id: u32) -> Arc<Source> {
    Source::for_test(id)
}

/// An emergency behind routine frames that wait for room, on a disk whose syncs have not
/// ended: it is written at once, and acknowledged once its journal append is durable, before
/// any routine frame; the segment's sync that covers it later does not count it again.
#[tokio::test(start_paused = true)]
async fn an_emergency_is_acknowledged_from_the_journal_without_waiting_for_routine_syncs() {
    let (archive, input) = frame_queue(1024);
    let (routine, emergency) = (source(1), source(2));
    queue_frames(&archive, &routine, 4).await;
    queue_priority(&archive, &emergency, 1, Priority::Emergency).await;
    drop(archive);
    let disk = SlowDisk {
        journal: true,
        ..SlowDisk::default()
    };
    let (written, syncs) = (Arc::clone(&disk.written), Arc::clone(&disk.syncs));
    let settings = ArchiveSettings {
        policy: SyncPolicy::Interval(Duration::from_millis(20)),
        max_unsynced_bytes: KIB,
        drain: CancellationToken::new(),
        storage_lost: CancellationToken::new(),
        replication: None,
    };
    let stats = Stats::new();
    let consumer = ArchiveConsumer::new(input, Box::new(disk), settings, stats.clone());
    let stored = tokio::spawn(consumer.run());

    // Paused time: the sleep returns once every task is idle, waiting for the disk.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        emergency.last_acked(),
        Some(0),
        "acknowledged from the journal"
    );
    assert_eq!(routine.last_acked(), None, "no routine sync has ended");
    assert_eq!(
        written.load(SeqCst),
        2 * KIB,
        "the first routine frame fills the room, the emergency passes it"
    );
    assert_eq!(stats.snapshot().frames_archived, 1);

    while !stored.is_finished() {
        let pending: Vec<_> = syncs.lock().unwrap().drain(..).collect();
        pending.into_iter().for_each(|done| done.send(()).unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stored.await.unwrap();
    assert_eq!(routine.last_acked(), Some(3));
    assert_eq!(
        stats.snapshot().frames_archived,
        5,
        "every frame counted once, the emergency too"
    );
}

/// With a disk slower than the pipeline, the archive writes no more than
/// `max_unsynced_bytes` ahead of what is durable: it writes no routine frame until a sync ends
/// (so the pipeline behind it, and the sockets, slow to the disk), and every sync lets the
/// acknowledgements move on.
#[tokio::test(start_paused = true)]
async fn a_slow_disk_bounds_what_is_written_and_not_durable() {
    let (archive, input) = frame_queue(1024);
    let peer = "127.0.0.1:1".parse().unwrap();
    let source = Arc::new(Source::new(
        1,
        SourceKind::LiveUplink,
        peer,
        Ledger::default().into(),
    ));
    queue_frames(&archive, &source, 64).await;
    drop(archive);
    let disk = SlowDisk::default();
    let (written, syncs) = (Arc::clone(&disk.written), Arc::clone(&disk.syncs));
    let settings = ArchiveSettings {
        policy: SyncPolicy::Interval(Duration::from_millis(20)),
        max_unsynced_bytes: 8 * KIB,
        drain: CancellationToken::new(),
        storage_lost: CancellationToken::new(),
        replication: None,
    };
    let consumer = ArchiveConsumer::new(input, Box::new(disk), settings, Stats::new());
    let stored = tokio::spawn(consumer.run());

    let mut durable = 0;
    while durable < 64 * KIB {
        // Paused time: the sleep returns once every task is idle, waiting for the disk.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ahead = written.load(SeqCst) - durable;
        assert_eq!(
            ahead,
            8 * KIB,
            "written and not durable, with {durable} durable"
        );
        assert_eq!(source.last_acked(), (durable / KIB).checked_sub(1));
        let pending: Vec<_> = syncs.lock().unwrap().drain(..).collect();
        assert_eq!(pending.len(), 1, "one sync at a time");
        pending.into_iter().for_each(|done| done.send(()).unwrap());
        durable += ahead;
    }
    stored.await.unwrap();
    assert_eq!(source.last_acked(), Some(63));
}

/// With `ack = "replicated"`, an emergency goes to the NATS sink as its journal append starts,
/// so that it is published while the journal syncs, and is marked durable only once the append
/// ended so; one whose append failed never is (the files count it).
#[tokio::test(start_paused = true)]
async fn a_replicated_emergency_is_handed_over_as_its_append_starts_and_durable_once_it_is() {
    for works in [true, false] {
        let (archive, input) = frame_queue(1024);
        let emergency = source(2);
        queue_priority(&archive, &emergency, 1, Priority::Emergency).await;
        drop(archive);
        let appends = Arc::new(Mutex::new(Vec::new()));
        let disk = SlowDisk {
            journal: true,
            appends: Some(Arc::clone(&appends)),
            ..SlowDisk::default()
        };
        let syncs = Arc::clone(&disk.syncs);
        let gate = Replication::new(100, 100, Duration::from_millis(10));
        gate.handover().set_taken(true);
        let settings = ArchiveSettings {
            policy: SyncPolicy::Interval(Duration::from_millis(20)),
            max_unsynced_bytes: KIB,
            drain: CancellationToken::new(),
            storage_lost: CancellationToken::new(),
            replication: Some(Arc::clone(&gate)),
        };
        let consumer = ArchiveConsumer::new(input, Box::new(disk), settings, Stats::new());
        let stored = tokio::spawn(consumer.run());

        // Paused time: the sleep returns once every task is idle, waiting for the journal.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let handed = gate.handover().take();
        assert_eq!(handed.len(), 1, "handed over before the append ended");
        assert!(!handed[0].durable.is_durable());
        let pending: Vec<_> = appends.lock().unwrap().drain(..).collect();
        assert_eq!(pending.len(), 1);
        pending
            .into_iter()
            .for_each(|done| done.send(works).unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            handed[0].durable.is_durable(),
            works,
            "the append worked: {works}"
        );
        assert_eq!(
            emergency.last_acked(),
            None,
            "a replica moves it, not the journal"
        );

        while !stored.is_finished() {
            let pending: Vec<_> = syncs.lock().unwrap().drain(..).collect();
            pending.into_iter().for_each(|done| done.send(()).unwrap());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        stored.await.unwrap();
    }
}

/// A sync that failed stores nothing after it: at the drain the connections are told at once
/// (`storage_lost`), though nothing is held or parked, rather than wait for the drain's deadline
/// for frames that will never be stored; none of them is acknowledged.
#[tokio::test(start_paused = true)]
async fn a_failed_sync_lets_the_connections_go_at_the_drain() {
    let (archive, input) = frame_queue(1024);
    let routine = source(1);
    queue_frames(&archive, &routine, 2).await;
    let disk = SlowDisk::default();
    let syncs = Arc::clone(&disk.syncs);
    let (drain, storage_lost) = (CancellationToken::new(), CancellationToken::new());
    let settings = ArchiveSettings {
        policy: SyncPolicy::Interval(Duration::from_millis(20)),
        max_unsynced_bytes: 8 * KIB,
        drain: drain.clone(),
        storage_lost: storage_lost.clone(),
        replication: None,
    };
    let consumer = ArchiveConsumer::new(input, Box::new(disk), settings, Stats::new());
    let stored = tokio::spawn(consumer.run());

    // Paused time: the sleep returns once every task is idle, waiting for the disk.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pending: Vec<_> = syncs.lock().unwrap().drain(..).collect();
    assert_eq!(pending.len(), 1, "the frames' sync");
    drop(pending);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!storage_lost.is_cancelled(), "no drain yet");

    drain.cancel();
    let told = tokio::time::timeout(Duration::from_secs(1), storage_lost.cancelled()).await;
    assert!(told.is_ok(), "the connections are told at the drain");
    assert_eq!(routine.last_acked(), None);
    drop(archive);
    stored.await.unwrap();
}

/// At a drain, a sync that keeps failing before it reaches the disk gives up on what it covers
/// (`frames_abandoned`), but for an emergency its journal made durable: that one is stored and
/// acknowledged, not abandoned.
#[tokio::test(start_paused = true)]
async fn an_emergency_its_journal_stored_is_not_abandoned() {
    let (archive, input) = frame_queue(1024);
    let (routine, emergency) = (source(1), source(2));
    queue_frames(&archive, &routine, 3).await;
    queue_priority(&archive, &emergency, 1, Priority::Emergency).await;
    drop(archive);
    let disk = SlowDisk {
        journal: true,
        short: true,
        ..SlowDisk::default()
    };
    let (drain, storage_lost) = (CancellationToken::new(), CancellationToken::new());
    let settings = ArchiveSettings {
        policy: SyncPolicy::Interval(Duration::from_millis(20)),
        max_unsynced_bytes: 64 * KIB,
        drain: drain.clone(),
        storage_lost: storage_lost.clone(),
        replication: None,
    };
    let stats = Stats::new();
    let consumer = ArchiveConsumer::new(input, Box::new(disk), settings, stats.clone());
    drain.cancel();
    consumer.run().await;
    assert_eq!(emergency.last_acked(), Some(0), "stored by its journal");
    assert_eq!(routine.last_acked(), None);
    assert!(storage_lost.is_cancelled());
    let snapshot = stats.snapshot();
    assert_eq!(
        (snapshot.frames_archived, snapshot.frames_abandoned),
        (1, 3)
    );
}
