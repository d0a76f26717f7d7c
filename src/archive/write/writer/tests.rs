//! The segment writer's tests: what it writes, syncs, rolls over and recovers.

use super::*;
use crate::archive::format::index;
use crate::archive::format::{Entry, MAGIC};
use crate::archive::write::page_cache;
use crate::config::{ArchiveKind, SyncMode};
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::ledger::{Ledger, Run};
use crate::domain::reception::{Delivery, Received};
use crate::domain::source::Source;
use bytes::Bytes;
use std::fs::OpenOptions;
use std::path::Path;
use std::time::Duration;

/// A batch of `count` one-byte frames of `source`, sequences from `first` on.
fn batch(source: &Arc<Source>, first: u64, count: u64) -> Arc<Batch> {
    batch_of(Priority::Routine, source, first, count)
}

/// [`batch`] with frames of `priority`.
fn batch_of(priority: Priority, source: &Arc<Source>, first: u64, count: u64) -> Arc<Batch> {
    let now = std::time::Instant::now();
    let mut batch = Batch::new(Arc::clone(source), priority, now, count as usize);
    for (i, sequence) in (first..first + count).enumerate() {
        batch.push(sequence, i..i + 1);
    }
    batch.attach(Bytes::from(vec![0xa5; count as usize]));
    Arc::new(batch)
}

/// A batch of `count` one-byte frames of `source` that `delivery`'s station received.
fn delivered(source: &Arc<Source>, delivery: &Arc<Delivery>, first: u64, count: u64) -> Arc<Batch> {
    let now = std::time::Instant::now();
    let mut batch = Batch::new(Arc::clone(source), Priority::Routine, now, count as usize);
    for (i, sequence) in (first..first + count).enumerate() {
        batch.push_received(sequence, i..i + 1, delivery, Received::default());
    }
    batch.attach(Bytes::from(vec![0x5a; count as usize]));
    Arc::new(batch)
}

/// Live uplink `id`, as a connection registers it.
fn uplink(id: u32) -> Arc<Source> {
    let peer = "127.0.0.1:1".parse().unwrap();
    let ledger = Arc::new(Ledger::new(None));
    Arc::new(Source::new(id, SourceKind::LiveUplink, peer, ledger))
}

/// Frames 0 to `count - 1` of `source` through the archive consumer's steps: admitted, written,
/// synced, and so acknowledged.
async fn store_and_acknowledge(sink: &mut SegmentSink, source: &Arc<Source>, count: u64) {
    source.record(&[Run {
        priority: Priority::Routine,
        frames: count,
        last_sequence: count - 1,
    }]);
    let batch = batch(source, 0, count);
    sink.write(std::slice::from_ref(&batch)).await.unwrap();
    sink.sync().await.unwrap();
    source.stored(batch.span().unwrap());
}

/// Opens the archive as a restart does (its checkpoint written to a new segment) and returns
/// live uplink `id`'s resume point.
fn restart_and_resume(config: &ArchiveConfig, id: u32) -> ResumePoint {
    let (sink, mut resume) = SegmentSink::open(config).unwrap();
    drop(sink);
    resume.remove(&(SourceKind::LiveUplink, id)).unwrap()
}

/// The records of the segment at `path`, without their offsets.
fn entries(path: &Path) -> Vec<Entry> {
    format::read_segment(path)
        .unwrap()
        .entries
        .into_iter()
        .map(|(_, entry)| entry)
        .collect()
}

/// An empty archive directory `durable-{name}-{pid}` under the temporary directory, and the
/// config of an archive there with segments of `segment_bytes`.
fn fresh_archive(name: &str, segment_bytes: u64) -> (PathBuf, ArchiveConfig) {
    let dir = std::env::temp_dir().join(format!("durable-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let config = ArchiveConfig {
        kind: ArchiveKind::Segments,
        dir: dir.clone(),
        segment_bytes,
        sync: SyncMode::Interval,
        sync_interval: Duration::from_millis(20),
        ..ArchiveConfig::default()
    };
    (dir, config)
}

/// Pages of the file at `path` that are in the page cache.
fn cached_pages(path: &Path) -> usize {
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len() as usize;
    page_cache::cached_pages(&file, len)
}

/// The archive never reads a segment back, so a sync leaves none of what it covered cached.
/// (Needs a disk-backed temporary directory: tmpfs keeps files only in the page cache.)
#[tokio::test]
async fn a_sync_drops_what_it_covered_from_the_page_cache() {
    let (dir, config) = fresh_archive("cache", 64 << 20);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    let source = uplink(1);
    let batches: Vec<_> = (0..64).map(|i| batch(&source, i * 4096, 4096)).collect();
    sink.write(&batches).await.unwrap();
    let (_, path) = format::list_segments(&dir).unwrap().pop().unwrap();
    let written = cached_pages(&path);
    assert!(
        written >= 64,
        "written and not yet synced: {written} pages cached"
    );

    sink.sync().await.unwrap();
    let left = cached_pages(&path);
    assert!(
        left <= 1,
        "{left} of {written} pages still cached after the sync"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// Bytes of disk the file at `path` holds.
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).unwrap().blocks() * 512
}

/// A segment holds its whole size of disk from the start, so that appends never wait for a
/// sync's block allocation, and gives back what it did not use when the archive closes, or at
/// the next start after a stop without a close.
#[tokio::test]
async fn a_segment_reserves_its_size_and_gives_back_the_rest() {
    let (dir, config) = fresh_archive("reserve", 4 << 20);
    let source = uplink(1);
    let page_rounded = |path: &Path| fs::metadata(path).unwrap().len().next_multiple_of(4096);

    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    sink.write(&[batch(&source, 0, 10)]).await.unwrap();
    let (_, first) = format::list_segments(&dir).unwrap().pop().unwrap();
    assert!(allocated(&first) >= 4 << 20, "{} bytes", allocated(&first));
    sink.close().await.unwrap();
    assert!(
        allocated(&first) <= page_rounded(&first),
        "{} bytes",
        allocated(&first)
    );
    assert!(staged(&dir).is_empty(), "the spare is deleted at close");
    drop(sink);

    // Started again, the archive goes on in that segment, which reserves its size again.
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    sink.write(&[batch(&source, 10, 10)]).await.unwrap();
    let (_, second) = format::list_segments(&dir).unwrap().pop().unwrap();
    assert_eq!(first, second, "the start went on in the newest segment");
    assert!(
        allocated(&second) >= 4 << 20,
        "{} bytes",
        allocated(&second)
    );
    // Stopped without a close: the next start trims it before it reserves again, and a close
    // gives back the rest.
    drop(sink);
    let (mut sink, resume) = SegmentSink::open(&config).unwrap();
    sink.close().await.unwrap();
    assert!(
        allocated(&second) <= page_rounded(&second),
        "{} bytes",
        allocated(&second)
    );
    let point = &resume[&(SourceKind::LiveUplink, 1)];
    assert_eq!(
        point.after(),
        Some(19),
        "frames 0..=19 are all stored: {point:?}"
    );
    drop(sink);
    let _ = fs::remove_dir_all(&dir);
}

/// A start after an unclean stop (a sink dropped without its close, as a crash leaves it) goes
/// on in the newest segment: repeated crashes do not pile up segments, the spare each left
/// behind is deleted, and every frame synced before each crash is found.
#[tokio::test]
async fn unclean_stops_do_not_multiply_segments() {
    let (dir, config) = fresh_archive("unclean", 1 << 20);
    let source = uplink(1);
    for run in 0..5 {
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        sink.write(&[batch(&source, run * 10, 10)]).await.unwrap();
        // Also waits for the spare segment, which the crash leaves behind.
        sink.sync().await.unwrap();
        drop(sink);
        assert_eq!(named_indexes(&dir), [1], "after {} crashes", run + 1);
        assert_eq!(staged(&dir).len(), 1, "the spare, segment 2");
    }
    let point = restart_and_resume(&config, 1);
    assert_eq!(point.after(), Some(49), "{point:?}");
    assert_eq!(named_indexes(&dir), [1]);
    let _ = fs::remove_dir_all(&dir);
}

/// A source whose stored frames were acknowledged while it sent nothing more: the next
/// checkpoint carries its new watermark and does not list those frames again.
#[tokio::test]
async fn a_checkpoint_takes_the_acknowledgement_of_a_source_gone_quiet() {
    let (dir, config) = fresh_archive("checkpoint", 4096);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    let quiet = uplink(1);
    let busy = uplink(2);

    // Synced and acknowledged; the quiet source sends nothing more.
    store_and_acknowledge(&mut sink, &quiet, 10).await;
    assert_eq!(quiet.last_acked(), Some(9));
    // The busy source alone fills the segment and starts the next one. Each sync runs after
    // the jobs sent before it, the next segment's creation and any rollover among them.
    for first in (0..400).step_by(40) {
        sink.write(&[batch(&busy, first, 40)]).await.unwrap();
        sink.sync().await.unwrap();
    }
    let segments = format::list_segments(&dir).unwrap();
    assert!(segments.len() >= 2, "rolled over: {segments:?}");
    for (_, path) in &segments {
        let len = fs::metadata(path).unwrap().len();
        assert!(
            len <= 4096,
            "{}: {len} bytes, past the reservation",
            path.display()
        );
    }
    let (_, newest) = segments.last().unwrap();
    let checkpoint: Vec<Entry> = entries(newest)
        .into_iter()
        .filter(|entry| entry.source() == Some((SourceKind::LiveUplink, 1)))
        .collect();
    assert_eq!(
        checkpoint,
        vec![Entry::Watermark {
            kind: SourceKind::LiveUplink,
            source_id: 1,
            acked: 9
        }],
        "the watermark, and no STORED RUN for frames it covers"
    );
    drop(sink);
    let _ = fs::remove_dir_all(&dir);
}

/// Every start records a CLOCK record, with the jump of received times from the newest the
/// shard held; a step of the wall clock the daemon noticed is recorded before the frames
/// written after it, once, and the frames keep the archive clock's times.
#[tokio::test]
async fn starts_and_steps_are_recorded_where_they_happened() {
    let (dir, config) = fresh_archive("clock", 1 << 20);
    let source = uplink(1);
    let archive = super::super::open::open_shards(&config, 1).unwrap();
    let steps = Arc::clone(&archive.clock.steps);
    let mut sink = archive.sinks.into_iter().next().unwrap();
    sink.write(&[batch(&source, 0, 2)]).await.unwrap();
    let step = ClockEvent {
        kind: ClockEventKind::Step,
        archive_ns: ArchiveClock::process().now(),
        wall_ns: 1,
        jump_ns: -3_600_000_000_000,
    };
    steps.push(step);
    sink.write(&[batch(&source, 2, 2)]).await.unwrap();
    sink.write(&[batch(&source, 4, 2)]).await.unwrap();
    sink.sync().await.unwrap();
    sink.close().await.unwrap();
    drop(sink);
    let (_, resume) = SegmentSink::open(&config).unwrap();
    drop(resume);

    let (_, newest) = format::list_segments(&dir).unwrap().pop().unwrap();
    let kinds: Vec<String> = (entries(&newest).into_iter())
        .filter(|e| !matches!(e, Entry::Watermark { .. } | Entry::Stored { .. }))
        .map(|e| match e {
            Entry::Clock(event) => {
                format!("{}{:+}", event.kind.label(), event.jump_ns.signum())
            }
            Entry::Frame(frame) => frame.sequence.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    // The first start found nothing (jump 0), the second jumps forward from frame 5.
    let want = ["start+0", "0", "1", "step-1", "2", "3", "4", "5", "start+1"];
    assert_eq!(kinds, want);
    let frames = entries(&newest).into_iter().filter_map(|e| match e {
        Entry::Frame(frame) => Some(frame.received_unix_ns),
        _ => None,
    });
    let before = frames.clone().take(2).max().unwrap();
    assert!(
        frames.skip(2).all(|at| at >= before),
        "no received time moved back"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// A clean stop records the acknowledgements of its last sync: the next start resumes the
/// source after them, and neither its resume point nor the segment lists those frames as
/// stored above the watermark.
#[tokio::test]
async fn a_close_records_the_last_acknowledgements() {
    let (dir, config) = fresh_archive("close", 1 << 20);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    let source = uplink(1);
    // The archive consumer's last sync, then the acknowledgement it allows, then the close.
    store_and_acknowledge(&mut sink, &source, 10).await;
    sink.close().await.unwrap();
    drop(sink);

    let point = restart_and_resume(&config, 1);
    assert_eq!(point.after(), Some(9), "{point:?}");
    assert!(point.already_stored.is_empty(), "{point:?}");
    let (_, newest) = format::list_segments(&dir).unwrap().pop().unwrap();
    let (starts, records): (Vec<Entry>, Vec<Entry>) = entries(&newest)
        .into_iter()
        .filter(|entry| !matches!(entry, Entry::Frame(_)))
        .partition(|entry| matches!(entry, Entry::Clock(_)));
    assert_eq!(
        records,
        vec![Entry::Watermark {
            kind: SourceKind::LiveUplink,
            source_id: 1,
            acked: 9
        }]
    );
    assert_eq!(starts.len(), 2, "a CLOCK record for each start: {starts:?}");
    let _ = fs::remove_dir_all(&dir);
}

/// A source recovered with frames stored above its watermark resends only those: they are
/// dropped as duplicates and acknowledged, and no batch of it reaches the archive. The archive
/// reads that acknowledgement from the source's ledger, which recovery made and the source's
/// connection continues, and records it at the close: the next start resumes the source after
/// those frames.
#[tokio::test]
async fn a_source_that_resends_only_stored_frames_has_its_acknowledgement_recorded() {
    let (dir, config) = fresh_archive("resumed", 1 << 20);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    // Stored, then a crash before the acknowledgement. The source's first frame is 5.
    let before = uplink(1);
    sink.write(&[batch(&before, 5, 5)]).await.unwrap();
    sink.sync().await.unwrap();
    drop(sink);

    let (mut sink, resume) = SegmentSink::open(&config).unwrap();
    let point = &resume[&(SourceKind::LiveUplink, 1)];
    assert_eq!(point.after(), None, "{point:?}");
    assert_eq!(point.already_stored.runs().collect::<Vec<_>>(), [(5, 9)]);
    // The source connects and resends frames 5..=9: all duplicates of stored frames.
    let peer = "127.0.0.1:1".parse().unwrap();
    let ledger = Arc::clone(&point.ledger);
    let after = Source::new(1, SourceKind::LiveUplink, peer, ledger);
    after.record(&[Run {
        priority: Priority::Routine,
        frames: 0,
        last_sequence: 9,
    }]);
    assert_eq!(after.last_acked(), Some(9));
    sink.close().await.unwrap();
    drop(sink);

    let point = restart_and_resume(&config, 1);
    assert_eq!(point.after(), Some(9), "{point:?}");
    assert!(point.already_stored.is_empty(), "{point:?}");
    let _ = fs::remove_dir_all(&dir);
}

/// After a crash, a source that went quiet once its last frames were acknowledged resumes
/// after them: the frames stored right above the last WATERMARK on disk are all stored, so
/// the recovered resume point passes them even though their WATERMARK was never written.
#[tokio::test]
async fn recovery_passes_frames_stored_contiguously_above_the_watermark() {
    let (dir, config) = fresh_archive("contiguous", 1 << 20);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    let source = uplink(1);
    store_and_acknowledge(&mut sink, &source, 10).await;
    // 10..=19 stored and acknowledged, 25..=29 stored (an emergency that overtook 20..=24),
    // then a crash: no WATERMARK for 19 reached the disk.
    for (first, count) in [(10, 10), (25, 5)] {
        sink.write(&[batch(&source, first, count)]).await.unwrap();
    }
    sink.sync().await.unwrap();
    drop(sink);

    let point = restart_and_resume(&config, 1);
    assert_eq!(point.after(), Some(19), "{point:?}");
    assert_eq!(point.already_stored.runs().collect::<Vec<_>>(), [(25, 29)]);
    let _ = fs::remove_dir_all(&dir);
}

/// The journal files in `dir`, by file name.
fn journals(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".journal"))
        .collect();
    names.sort();
    names
}

/// How many times the segments in `dir` hold frame `sequence` of live uplink `id`.
fn copies(dir: &Path, id: u32, sequence: u64) -> usize {
    format::list_segments(dir)
        .unwrap()
        .iter()
        .flat_map(|(_, path)| entries(path))
        .filter(|entry| {
            matches!(entry, Entry::Frame(frame)
                if frame.source_id == id && frame.sequence == sequence)
        })
        .count()
}

/// A crash that takes the segment's unsynced tail keeps an emergency its journal made
/// durable: the next start stores it in the new segment, once, and its source resumes after
/// it; an emergency that both copies kept is not stored again. The journals are deleted once
/// the new segment holds their frames, and a second start stores nothing more.
#[tokio::test]
async fn a_journaled_emergency_survives_the_loss_of_the_segments_tail() {
    let (dir, config) = fresh_archive("journal", 1 << 20);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    let (kept, lost) = (uplink(1), uplink(2));
    // Source 1: routine 0..=9 and emergency 10, synced and journaled.
    let both = [
        batch(&kept, 0, 10),
        batch_of(Priority::Emergency, &kept, 10, 1),
    ];
    sink.write(&both).await.unwrap();
    sink.journal(&both[1..]).unwrap().durable.await.unwrap();
    sink.sync().await.unwrap();
    let (_, newest) = format::list_segments(&dir).unwrap().pop().unwrap();
    let synced = fs::metadata(&newest).unwrap().len();
    // Source 2: emergency 0, journaled; the crash takes it from the segment.
    let emergency = [batch_of(Priority::Emergency, &lost, 0, 1)];
    sink.write(&emergency).await.unwrap();
    sink.journal(&emergency).unwrap().durable.await.unwrap();
    drop(sink);
    OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(synced)
        .unwrap();
    assert_eq!(copies(&dir, 2, 0), 0, "the crash took it from the segment");

    let (sink, resume) = SegmentSink::open(&config).unwrap();
    assert_eq!(resume[&(SourceKind::LiveUplink, 1)].after(), Some(10));
    assert_eq!(resume[&(SourceKind::LiveUplink, 2)].after(), Some(0));
    assert_eq!(copies(&dir, 1, 10), 1, "kept by both, stored once");
    assert_eq!(copies(&dir, 2, 0), 1, "stored again from the journal");
    assert_eq!(
        journals(&dir),
        ["emergency-00000000000000000002.journal"],
        "the journal it recovered from is deleted; a new one is started"
    );
    drop(sink);

    let (sink, resume) = SegmentSink::open(&config).unwrap();
    assert_eq!(resume[&(SourceKind::LiveUplink, 2)].after(), Some(0));
    assert_eq!(copies(&dir, 2, 0), 1, "a second start stores nothing more");
    drop(sink);
    let _ = fs::remove_dir_all(&dir);
}

/// A sync that moved the journal to a new generation holds a way to retire the old ones
/// until it ends; dropping the sink meanwhile (a drain deadline drops the archive's task)
/// still ends its journal thread.
#[tokio::test]
async fn a_sink_dropped_during_a_rotating_sync_stops() {
    let (dir, config) = fresh_archive("rotating", 64 << 20);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    let source = uplink(1);
    // More than a generation's worth of journal records.
    let emergencies = [batch_of(Priority::Emergency, &source, 0, 100_000)];
    sink.write(&emergencies).await.unwrap();
    sink.journal(&emergencies).unwrap().durable.await.unwrap();
    let pending = sink.sync();
    let (dropped, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(sink);
        let _ = dropped.send(());
    });
    let stopped = done.recv_timeout(Duration::from_secs(30));
    drop(pending);
    assert!(stopped.is_ok(), "dropping the sink hung");
    let _ = fs::remove_dir_all(&dir);
}

/// The indexes of the named segments in `dir`.
fn named_indexes(dir: &Path) -> Vec<u64> {
    format::list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(index, _)| index)
        .collect()
}

/// The staged segments in `dir`, by file name.
fn staged(dir: &Path) -> Vec<String> {
    format::list_staged(dir)
        .unwrap()
        .iter()
        .map(|(_, path)| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// When a segment fills, the writer goes on into the next one at once, while the disk thread
/// is busy; the new segment gets its name, and becomes what recovery reads, only when the disk
/// thread has made the full one durable, and a sync sent meanwhile waits for that.
#[tokio::test]
async fn a_full_segment_does_not_stop_the_writer_and_the_next_is_named_after_it() {
    let (dir, config) = fresh_archive("rollover", 4096);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    let source = uplink(1);
    // Fills segment 1; the sync also waits for the spare, segment 2, to be created.
    sink.write(&[batch(&source, 0, 400)]).await.unwrap();
    sink.sync().await.unwrap();
    assert_eq!(
        staged(&dir),
        [files::staged_path(&dir, 2)
            .file_name()
            .unwrap()
            .to_string_lossy()]
    );

    let release = sink.writer.disk.hold();
    // The disk thread is held: these writes would never end if they waited for it.
    for first in (400..4000).step_by(400) {
        let written = tokio::time::timeout(
            Duration::from_secs(10),
            sink.write(&[batch(&source, first, 400)]),
        )
        .await;
        assert!(
            matches!(written, Ok(Ok(()))),
            "a write waited for the disk thread"
        );
    }
    let sync = sink.sync();
    let names = named_indexes(&dir);
    assert_eq!(names, [1], "segment 2 is written to but not named yet");
    assert_eq!(staged(&dir).len(), 1, "{:?}", staged(&dir));

    release.send(()).unwrap();
    sync.await.unwrap();
    let names = named_indexes(&dir);
    assert_eq!(names, [1, 2]);
    // Segment 1 gave back its reservation when it was made durable.
    let first = dir.join(format::segment_name(1));
    assert!(allocated(&first) < 4 << 20, "{} bytes", allocated(&first));

    sink.close().await.unwrap();
    assert!(staged(&dir).is_empty(), "the spare is deleted at close");
    drop(sink);
    let (_, resume) = SegmentSink::open(&config).unwrap();
    let point = &resume[&(SourceKind::LiveUplink, 1)];
    assert_eq!(point.after(), Some(3999), "every frame written is found");
    assert!(point.already_stored.is_empty(), "{point:?}");
    let _ = fs::remove_dir_all(&dir);
}

/// A crash between a switch and its rollover leaves the new segment unnamed: nothing in it was
/// acknowledged, so the next start deletes it and recovers from the newest named segment.
#[tokio::test]
async fn a_segment_a_crash_left_unnamed_is_deleted_and_not_read() {
    let (dir, config) = fresh_archive("unnamed", 64 << 10);
    let source = uplink(1);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    sink.write(&[batch(&source, 0, 10)]).await.unwrap();
    sink.close().await.unwrap();
    drop(sink);
    // What a crash in the middle of the rollover to segment 2 leaves: a staged segment 2 with
    // a checkpoint and frames that recovery must not believe.
    let named = dir.join(format::segment_name(1));
    let mut unnamed = fs::read(&named).unwrap();
    unnamed.extend_from_slice(&fs::read(&named).unwrap()[MAGIC.len()..]);
    fs::write(files::staged_path(&dir, 2), &unnamed).unwrap();

    let (sink, resume) = SegmentSink::open(&config).unwrap();
    let point = &resume[&(SourceKind::LiveUplink, 1)];
    assert_eq!(point.after(), Some(9), "{point:?}");
    let names = named_indexes(&dir);
    assert_eq!(names, [1], "the archive goes on in segment 1");
    let frames = entries(&named)
        .iter()
        .filter(|entry| matches!(entry, Entry::Frame(_)))
        .count();
    assert_eq!(frames, 10, "nothing of the unnamed segment is in it");
    drop(sink);
    let _ = fs::remove_dir_all(&dir);
}

/// The time index the writer keeps is the one a scan of the segment builds: each batch placed at
/// its own record, so a station's frames written in one group with the uplinks' get blocks of
/// their own, and a reader of the station's source reads none of the uplinks' records.
#[tokio::test]
async fn a_stations_frames_get_blocks_of_their_own_within_a_write() {
    let (dir, config) = fresh_archive("station-blocks", 64 << 20);
    let (mut sink, _) = SegmentSink::open(&config).unwrap();
    let (uplink, station) = (uplink(1), uplink(2));
    let key = |source: &Arc<Source>| (source.kind, source.id);
    let station_mask = index::sources_mask(&[key(&station)]);
    assert_eq!(index::sources_mask(&[key(&uplink)]) & station_mask, 0);
    let delivery = Arc::new(Delivery::live("gs-1", "Kiruna"));
    for group in 0..8 {
        let first = group * 40_000;
        let group = [
            batch(&uplink, first, 20_000),
            delivered(&station, &delivery, group * 10, 10),
            batch(&uplink, first + 20_000, 20_000),
        ];
        sink.write(&group).await.unwrap();
    }
    sink.sync().await.unwrap();
    let path = dir.join(format::segment_name(1));
    let rebuilt = SegmentIndex::build(&path).unwrap();
    let written = &SegmentIndex {
        len: rebuilt.len,
        ..sink.writer.contents.clone()
    };
    assert_eq!(written.times, rebuilt.times);
    let mut bytes = Vec::new();
    written.encode(&mut bytes);
    assert_eq!(index::decode(&bytes).as_ref(), Some(written), "reads back");
    let entries = format::read_segment(&path).unwrap().entries;
    let ranges = written.ranges_between(0, u64::MAX, station_mask);
    let read: Vec<u32> = (entries.iter())
        .filter(|(offset, _)| ranges.iter().any(|(a, b)| (a..b).contains(&offset)))
        .filter_map(|(_, entry)| match entry {
            Entry::Frame(frame) => Some(frame.source_id),
            _ => None,
        })
        .collect();
    assert_eq!(read, [2; 80], "only the station's frames are read");
    sink.close().await.unwrap();
    let _ = fs::remove_dir_all(&dir);
}
