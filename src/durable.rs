//! The durable archive: every frame appended to CRC-checked segment files (`docs/archive.md`).
//!
//! [`SegmentSink`] is the [`ArchiveSink`] the daemon runs with by default. The archive consumer
//! hands it groups of batches; it encodes them into one buffer and writes it with one system call,
//! and syncs when the consumer's policy says so. The write runs on the runtime thread: it only
//! copies into the page cache, into disk blocks reserved when the segment was created
//! (`preallocate`), which costs less than handing each group to the blocking pool and waking
//! the runtime when it is done (about 40 % less server CPU per frame at 64 B; BENCHMARKS.md). What
//! waits for the disk, the `fsync` and starting a new segment, runs on the blocking pool, as Redis
//! does with its append-only file. What it must remember besides
//! the frames is what makes a restart exactly-once: for each source, the highest acknowledged
//! sequence (a WATERMARK record, written as acknowledgements move) and the frames stored above it
//! (emergencies overtake routine frames, so "stored" is not a prefix of the sequence). A new segment
//! starts with a checkpoint of both, so recovery reads the newest segment alone.
//!
//! [`SegmentSink::open`] is the recovery: it cuts a torn tail left by a crash (and says so),
//! rebuilds each source's resume point from the newest segment, and starts a new segment.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::archive::{ArchiveSink, BoxFuture};
use crate::config::ArchiveConfig;
use crate::frame::Batch;
use crate::router::{ResumePoint, SourceKey};
use crate::segment::{self, Entry, ScanEnd, MAGIC};
use crate::source::Source;

/// What the archive remembers of one source between its records.
#[derive(Debug, Default, Clone)]
struct Tracked {
    /// The last WATERMARK written.
    watermark: Option<u64>,
    /// Sequences written above it, in write order; pruned when the watermark moves.
    above: Vec<u64>,
    /// The source as last seen in a batch (none for one known only from recovery), to read its
    /// acknowledgement when a checkpoint is written. With many sources taking turns a source may
    /// send nothing for seconds after its frames were stored and acknowledged; without the fresh
    /// watermark, each checkpoint would list all those frames again.
    source: Option<Arc<Source>>,
}

impl Tracked {
    /// Remembers the source a batch came from (a reconnection brings a new one).
    fn seen(&mut self, source: &Arc<Source>) {
        if !self
            .source
            .as_ref()
            .is_some_and(|known| Arc::ptr_eq(known, source))
        {
            self.source = Some(Arc::clone(source));
        }
    }

    fn raise_watermark(&mut self, acked: u64) -> bool {
        if self.watermark.is_some_and(|w| w >= acked) {
            return false;
        }
        self.watermark = Some(acked);
        self.above.retain(|&s| s > acked);
        // A source's turn can leave thousands of sequences here; once they are acknowledged their
        // room goes back, or 10,000 sources would each keep a turn's worth of capacity.
        if self.above.capacity() > 2 * self.above.len() + 64 {
            self.above.shrink_to_fit();
        }
        true
    }
}

/// The open segment and where it stands.
#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
    index: u64,
    /// Bytes of whole records written so far: where a failed write is cut back to.
    len: u64,
}

/// Appends frames to segment files in `archive.dir`.
#[derive(Debug)]
pub struct SegmentSink {
    /// Lent to the blocking pool while a new segment is started or the archive closes; `None`
    /// afterwards only if that task died, which leaves the archive unusable (reported on every
    /// later write).
    writer: Option<Writer>,
    dir: PathBuf,
    /// Held open for the sink's life: its exclusive lock keeps a second daemon out of the directory.
    _lock: File,
}

/// The open segment and what the archive remembers, with the file work on it: appends on the
/// runtime thread, the rest moved to the blocking pool and back.
#[derive(Debug)]
struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    /// `None` after an error that left the file in an unknown state.
    segment: Option<Segment>,
    sources: HashMap<SourceKey, Tracked>,
    buf: Vec<u8>,
}

/// Takes an exclusive lock on `dir/LOCK`: two daemons appending to one archive would interleave
/// segments and both believe their resume points.
fn lock_directory(dir: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| with_path(err, &path, "cannot open"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!(
                "the archive directory {} is in use by another aggregator process ({err})",
                dir.display()
            ),
        ));
    }
    Ok(file)
}

/// Drops the first `len` bytes of a segment, synced by now, from the page cache.
///
/// The daemon never reads a segment back while it runs (recovery and the archive tools read from
/// the disk), so cached pages of synced segments only push other programs' pages out until the
/// kernel reclaims them, and every page a write takes is a fresh page: on a virtual machine whose
/// free memory goes back to the host (this one's balloon reports it) a first touch costs five times
/// the copy (BENCHMARKS.md). Dropped pages go back to the free lists, where the next writes find
/// them. Only advice: a failure changes nothing that matters, so it is not reported.
fn release_cached(file: &File, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
        // SAFETY: posix_fadvise reads no memory; `file` keeps the descriptor open for the call.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, len, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, len);
}

/// Reserves the disk blocks of a whole segment before the first append.
///
/// Appends are written from the runtime thread while an `fsync` of the same file runs on the
/// blocking pool. On ext4 with delayed allocation, a write into blocks not yet allocated takes the
/// inode's allocation lock, which the sync's writeback holds while it allocates: the runtime thread,
/// and with it every connection, then waits for the disk (writes of up to 7 ms, and an emergency
/// probe p99 of 5-7 ms; BENCHMARKS.md). Into reserved blocks a write only copies into the page
/// cache. The size is kept (`FALLOC_FL_KEEP_SIZE`), so readers still see only whole records, and
/// [`trim`] gives back what a segment did not use. Only advice: on a file system without
/// `fallocate` the appends still work, with the stalls.
fn preallocate(file: &File, bytes: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(bytes).unwrap_or(libc::off_t::MAX);
        // SAFETY: fallocate reads no memory; `file` keeps the descriptor open for the call.
        unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, bytes);
}

/// Gives back the blocks [`preallocate`] reserved beyond the segment's `len` bytes of records (a
/// truncation to the current size frees the blocks past it).
fn trim(file: &File, path: &Path, len: u64) -> io::Result<()> {
    file.set_len(len)
        .map_err(|err| with_path(err, path, "cannot trim segment"))
}

/// Makes the first `len` bytes of the segment at `path` durable, then drops them from the page
/// cache.
fn sync_segment(file: &File, path: &Path, len: u64) -> io::Result<()> {
    file.sync_data()
        .map_err(|err| with_path(err, path, "cannot sync segment"))?;
    release_cached(file, len);
    Ok(())
}

fn with_path(err: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

impl SegmentSink {
    /// Opens (creating if needed) the archive directory, recovers from the newest segment, and
    /// starts a new segment with a checkpoint. Returns the resume point of every source the archive
    /// knows. Errors name the path and the cause; a corrupt newest segment is an error (run
    /// `aggregator archive verify`), a torn tail is cut and logged.
    pub fn open(
        config: &ArchiveConfig,
    ) -> io::Result<(SegmentSink, HashMap<SourceKey, ResumePoint>)> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir)
            .map_err(|err| with_path(err, &dir, "cannot create the archive directory"))?;
        let lock = lock_directory(&dir)?;
        let segments = segment::list_segments(&dir)?;
        let mut sources: HashMap<SourceKey, Tracked> = HashMap::new();
        let mut next_index = 1;
        if let Some((index, path)) = segments.last() {
            next_index = index + 1;
            if let Some(cut) = segment::repair_tail(path)? {
                tracing::warn!(
                    segment = %path.display(),
                    bytes = cut,
                    "archive: truncated a torn tail left by an unclean stop"
                );
            }
            // A daemon stopped without closing left the blocks it reserved for this segment.
            let newest = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|err| with_path(err, path, "cannot open"))?;
            let len = newest
                .metadata()
                .map_err(|err| with_path(err, path, "cannot read the length of"))?
                .len();
            trim(&newest, path, len)?;
            let scan = segment::read_segment(path)?;
            if let ScanEnd::Corrupt { offset, reason } = &scan.end {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: corrupt record at offset {offset}: {reason}",
                        path.display()
                    ),
                ));
            }
            let mut stored: HashMap<SourceKey, BTreeSet<u64>> = HashMap::new();
            for (_, entry) in scan.entries {
                let key = entry.source();
                match entry {
                    Entry::Frame(frame) => {
                        stored.entry(key).or_default().insert(frame.sequence);
                    }
                    Entry::Stored { sequence, .. } => {
                        stored.entry(key).or_default().insert(sequence);
                    }
                    Entry::Watermark { acked, .. } => {
                        sources.entry(key).or_default().raise_watermark(acked);
                    }
                }
            }
            for (key, sequences) in stored {
                let tracked = sources.entry(key).or_default();
                tracked.above = sequences
                    .into_iter()
                    .filter(|&s| tracked.watermark.is_none_or(|w| s > w))
                    .collect();
            }
            tracing::info!(
                segment = %path.display(),
                sources = sources.len(),
                "archive: recovered resume points from the newest segment"
            );
        }
        let resume = sources
            .iter()
            .map(|(key, tracked)| {
                let point = ResumePoint {
                    after: tracked.watermark,
                    already_stored: Arc::new(tracked.above.iter().copied().collect()),
                };
                (*key, point)
            })
            .collect();
        let mut writer = Writer {
            dir: dir.clone(),
            segment_bytes: config.segment_bytes,
            segment: None,
            sources,
            buf: Vec::with_capacity(1 << 20),
        };
        writer.start_segment(next_index)?;
        let sink = SegmentSink {
            writer: Some(writer),
            dir,
            _lock: lock,
        };
        Ok((sink, resume))
    }

    fn unusable(&self) -> io::Error {
        io::Error::other(format!(
            "the archive writer for {} was lost with a failed task",
            self.dir.display()
        ))
    }

    /// Runs `work` on the blocking pool with the writer, and takes the writer back.
    async fn blocking<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Writer) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let Some(mut writer) = self.writer.take() else {
            return Err(self.unusable());
        };
        let (writer, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut writer);
            (writer, result)
        })
        .await
        .map_err(|err| io::Error::other(format!("archive writer task failed: {err}")))?;
        self.writer = Some(writer);
        result
    }
}

impl Writer {
    /// Creates segment `index` and writes its magic and the checkpoint. Blocking: called at start
    /// and at rollover, from the blocking pool.
    fn start_segment(&mut self, index: u64) -> io::Result<()> {
        let path = self.dir.join(segment::segment_name(index));
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(|err| with_path(err, &path, "cannot create segment"))?;
        preallocate(&file, self.segment_bytes);
        let mut checkpoint = Vec::from(&MAGIC[..]);
        for (&(kind, id), tracked) in &mut self.sources {
            if let Some(acked) = tracked.source.as_ref().and_then(|s| s.last_acked()) {
                tracked.raise_watermark(acked);
            }
            if let Some(acked) = tracked.watermark {
                segment::encode_watermark(&mut checkpoint, kind, id, acked);
            }
            for &sequence in &tracked.above {
                segment::encode_stored(&mut checkpoint, kind, id, sequence);
            }
        }
        file.write_all(&checkpoint)
            .and_then(|()| file.sync_data())
            .map_err(|err| with_path(err, &path, "cannot write segment"))?;
        // The new file's directory entry must survive a crash too.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.segment = Some(Segment {
            file,
            path,
            index,
            len: checkpoint.len() as u64,
        });
        Ok(())
    }

    /// Encodes a group: a FRAMES record per batch, then a WATERMARK for each source whose
    /// acknowledgement moved since the last one (acknowledgements only ever cover frames already
    /// synced).
    fn encode(&mut self, batches: &[Arc<Batch>]) {
        self.buf.clear();
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let now = Instant::now();
        for batch in batches {
            let source = &batch.source;
            let received =
                now_unix.saturating_sub(now.duration_since(batch.decoded_at).as_nanos() as u64);
            let tracked = self.sources.entry((source.kind, source.id)).or_default();
            tracked.seen(source);
            segment::encode_frames(
                &mut self.buf,
                source.kind,
                batch.priority,
                source.id,
                received,
                batch.payloads(),
            );
            tracked
                .above
                .extend(batch.payloads().map(|(sequence, _)| sequence));
        }
        for batch in batches {
            let source = &batch.source;
            let tracked = self.sources.entry((source.kind, source.id)).or_default();
            if let Some(acked) = source.last_acked() {
                if tracked.raise_watermark(acked) {
                    segment::encode_watermark(&mut self.buf, source.kind, source.id, acked);
                }
            }
        }
    }

    /// Encodes and appends a group; says whether the segment is full now, and the caller should
    /// [`Self::roll_over`].
    fn append(&mut self, batches: &[Arc<Batch>]) -> io::Result<bool> {
        self.encode(batches);
        let Some(segment) = self.segment.as_mut() else {
            return Err(self.unusable());
        };
        if let Err(err) = segment.file.write_all(&self.buf) {
            let err = with_path(err, &segment.path, "cannot append to segment");
            // Cut a partial record off, so that later appends follow whole records.
            if segment.file.set_len(segment.len).is_err() {
                self.segment = None;
            }
            return Err(err);
        }
        segment.len += self.buf.len() as u64;
        Ok(segment.len >= self.segment_bytes)
    }

    /// Syncs the full segment and starts the next one.
    fn roll_over(&mut self) -> io::Result<()> {
        let Some(segment) = self.segment.as_ref() else {
            return Err(self.unusable());
        };
        let next = segment.index + 1;
        sync_segment(&segment.file, &segment.path, segment.len)?;
        self.start_segment(next)
    }

    fn unusable(&self) -> io::Error {
        io::Error::other(format!(
            "the archive in {} is unusable after an earlier error",
            self.dir.display()
        ))
    }
}

impl ArchiveSink for SegmentSink {
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>> {
        Box::pin(async move {
            let Some(writer) = self.writer.as_mut() else {
                return Err(self.unusable());
            };
            if writer.append(batches)? {
                self.blocking(Writer::roll_over).await?;
            }
            Ok(())
        })
    }

    fn sync(&mut self) -> BoxFuture<'static, io::Result<()>> {
        // A second handle on the same file: the sync runs while the writer goes on appending.
        let segment = self.writer.as_ref().and_then(|w| w.segment.as_ref());
        let handle = match segment {
            Some(segment) => segment
                .file
                .try_clone()
                .map(|file| (file, segment.path.clone(), segment.len))
                .map_err(|err| with_path(err, &segment.path, "cannot sync segment")),
            None => Err(self.unusable()),
        };
        Box::pin(async move {
            let (file, path, len) = handle?;
            // Covers what was written before the sync began.
            tokio::task::spawn_blocking(move || sync_segment(&file, &path, len))
                .await
                .map_err(|err| io::Error::other(format!("archive sync task failed: {err}")))?
        })
    }

    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        // The last sync and the trim in one turn of the blocking pool.
        Box::pin(self.blocking(|writer| {
            let Some(segment) = &writer.segment else {
                return Err(writer.unusable());
            };
            sync_segment(&segment.file, &segment.path, segment.len)?;
            trim(&segment.file, &segment.path, segment.len)?;
            tracing::info!(segment = %segment.path.display(), "archive closed");
            Ok(())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ArchiveKind, SyncMode};
    use crate::frame::{Priority, SourceKind};
    use crate::source::Run;
    use bytes::Bytes;
    use std::time::Duration;

    /// A batch of `count` one-byte frames of `source`, sequences from `first` on.
    fn batch(source: &Arc<Source>, first: u64, count: u64) -> Arc<Batch> {
        let now = std::time::Instant::now();
        let mut batch = Batch::new(Arc::clone(source), Priority::Routine, now, count as usize);
        for (i, sequence) in (first..first + count).enumerate() {
            batch.push(sequence, i..i + 1);
        }
        batch.attach(Bytes::from(vec![0xa5; count as usize]));
        Arc::new(batch)
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
        };
        (dir, config)
    }

    /// Pages of the file at `path` that are in the page cache (`mincore` over a mapping of it;
    /// mapping a file reads none of it).
    fn cached_pages(path: &Path) -> usize {
        use std::os::fd::AsRawFd;
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len() as usize;
        // SAFETY: a read-only shared mapping of an open file, unmapped before returning; mincore
        // writes one byte per page into a vector of that many.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED, "{}", io::Error::last_os_error());
            let mut resident = vec![0u8; len.div_ceil(page)];
            let result = libc::mincore(addr, len, resident.as_mut_ptr());
            libc::munmap(addr, len);
            assert_eq!(result, 0, "{}", io::Error::last_os_error());
            resident.iter().filter(|&&b| b & 1 == 1).count()
        }
    }

    /// The archive never reads a segment back, so a sync leaves none of what it covered cached.
    /// (Needs a disk-backed temporary directory: tmpfs keeps files only in the page cache.)
    #[tokio::test]
    async fn a_sync_drops_what_it_covered_from_the_page_cache() {
        let (dir, config) = fresh_archive("cache", 64 << 20);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let peer = "127.0.0.1:1".parse().unwrap();
        let source = Arc::new(Source::new(1, SourceKind::LiveUplink, peer, None));
        let batches: Vec<_> = (0..64).map(|i| batch(&source, i * 4096, 4096)).collect();
        sink.write(&batches).await.unwrap();
        let (_, path) = segment::list_segments(&dir).unwrap().pop().unwrap();
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
        let peer = "127.0.0.1:1".parse().unwrap();
        let source = Arc::new(Source::new(1, SourceKind::LiveUplink, peer, None));
        let page_rounded = |path: &Path| fs::metadata(path).unwrap().len().next_multiple_of(4096);

        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        sink.write(&[batch(&source, 0, 10)]).await.unwrap();
        let (_, first) = segment::list_segments(&dir).unwrap().pop().unwrap();
        assert!(allocated(&first) >= 4 << 20, "{} bytes", allocated(&first));
        sink.close().await.unwrap();
        assert!(
            allocated(&first) <= page_rounded(&first),
            "{} bytes",
            allocated(&first)
        );
        drop(sink);

        // Stopped without a close: the next start trims the segment it recovers from.
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        sink.write(&[batch(&source, 10, 10)]).await.unwrap();
        let (_, second) = segment::list_segments(&dir).unwrap().pop().unwrap();
        assert_ne!(first, second);
        assert!(
            allocated(&second) >= 4 << 20,
            "{} bytes",
            allocated(&second)
        );
        drop(sink);
        let (sink, resume) = SegmentSink::open(&config).unwrap();
        assert!(
            allocated(&second) <= page_rounded(&second),
            "{} bytes",
            allocated(&second)
        );
        let point = &resume[&(SourceKind::LiveUplink, 1)];
        assert_eq!(point.already_stored.len(), 20, "{point:?}");
        drop(sink);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A source whose stored frames were acknowledged while it sent nothing more: the next
    /// checkpoint carries its new watermark and does not list those frames again.
    #[test]
    fn a_checkpoint_takes_the_acknowledgement_of_a_source_gone_quiet() {
        let (dir, config) = fresh_archive("checkpoint", 4096);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let writer = sink.writer.as_mut().unwrap();
        let peer = "127.0.0.1:1".parse().unwrap();
        let quiet = Arc::new(Source::new(1, SourceKind::LiveUplink, peer, None));
        let busy = Arc::new(Source::new(2, SourceKind::LiveUplink, peer, None));

        quiet.record(&[Run {
            priority: Priority::Routine,
            frames: 10,
            last_sequence: 9,
        }]);
        writer.append(&[batch(&quiet, 0, 10)]).unwrap();
        // Synced and acknowledged; the quiet source sends nothing more.
        quiet.stored(Priority::Routine, 10);
        assert_eq!(quiet.last_acked(), Some(9));
        // The busy source alone fills the segment and starts the next one.
        for first in (0..400).step_by(40) {
            if writer.append(&[batch(&busy, first, 40)]).unwrap() {
                writer.roll_over().unwrap();
            }
        }
        let segments = segment::list_segments(&dir).unwrap();
        assert!(segments.len() >= 2, "rolled over: {segments:?}");
        let (_, newest) = segments.last().unwrap();
        let checkpoint: Vec<Entry> = segment::read_segment(newest)
            .unwrap()
            .entries
            .into_iter()
            .map(|(_, entry)| entry)
            .filter(|entry| entry.source() == (SourceKind::LiveUplink, 1))
            .collect();
        assert_eq!(
            checkpoint,
            vec![Entry::Watermark {
                kind: SourceKind::LiveUplink,
                source_id: 1,
                acked: 9
            }],
            "the watermark, and no STORED record for frames it covers"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
