//! One segment as a reader of the archive reads it: what of a sealed one can hold frames of a
//! window ([`Wanted::sealed`]), and a read of a range of its bytes that passes over a damaged
//! record to the next one that decodes ([`SegmentFile::read`]).
//!
//! Why once, here: the cursors ([`super::window`] plans their parts, [`super::cursor`] reads them
//! a bounded chunk at a time) and completeness (`crate::archive::query`, which answers a sealed
//! segment wholly inside its window from the index alone and reads only the parts the window's
//! ends cut through) ask a segment's index the same question and pass damage the same way. Asked
//! and passed in one place, a reader of a window and the completeness of that window read the
//! same blocks and name the same damaged bytes.
//!
//! Damage is met where a read starts: [`format::read_records`] hands back the records before a
//! bad one and ends there, so the next read starts at it. Reading goes on at the next record that
//! decodes (looked for up to a bound the caller gives), and the bytes in between are a
//! [`DamagedRange`].

use std::fs::File;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::error::DamagedRange;
use crate::archive::format::index::{self, SegmentIndex, SpanCache};
use crate::archive::format::{self, ArchiveError, Damage, FileDamage, Records};
use crate::domain::filter::FrameFilter;
use crate::domain::frame::SourceKey;

/// What a window asks of the segments' indexes: the received times it wants (nanoseconds since
/// the Unix epoch, both ends included) and its sources (none: every one).
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    since: u64,
    until: u64,
    sources: Vec<SourceKey>,
}

/// What a sealed segment holds of a window, by its index.
#[derive(Debug)]
pub(crate) struct Sealed {
    /// Its index: the sources, stations and CLOCK records it holds.
    pub(crate) contents: SegmentIndex,
    /// The received times of its frames, when every one of them is in the window: the index
    /// answers for the segment whole, without a frame read.
    pub(crate) whole: Option<RangeInclusive<u64>>,
    /// The byte ranges of its blocks that can hold frames of the window of the sources wanted,
    /// in file order; none when it holds nothing of it.
    pub(crate) ranges: Vec<(u64, u64)>,
}

impl Wanted {
    /// What `filter`'s window (all time, without one) and sources ask; not its priority.
    pub(crate) fn of(filter: &FrameFilter) -> Wanted {
        let received = filter.received();
        Wanted {
            since: *received.start(),
            until: *received.end(),
            sources: filter.sources.clone(),
        }
    }

    /// Whether frames received from `oldest` to `newest` (a segment's or a block's span) may
    /// include one of the window.
    pub(crate) fn meets(&self, oldest: u64, newest: u64) -> bool {
        newest >= self.since && oldest <= self.until
    }

    /// The bits ([`index::source_bit`]) of the sources wanted that a segment holds, by its
    /// index (`contents`): a source of another shard or time that shares a bit with one wanted
    /// has none of its blocks read. Every bit when every source is wanted.
    fn mask(&self, contents: &SegmentIndex) -> u64 {
        if self.sources.is_empty() {
            return u64::MAX;
        }
        let held = (self.sources.iter()).map(|(kind, id)| (kind.to_byte(), *id));
        held.filter(|key| contents.sources.contains_key(key))
            .fold(0, |mask, (kind, id)| mask | index::source_bit(kind, id))
    }

    /// What sealed segment `segment` (at `path`, in shard directory `dir`) holds of the window,
    /// from its index: read, or built again from the segment when missing or damaged (and its
    /// span kept in `spans`). Blocking.
    pub(crate) fn sealed(
        &self,
        dir: &Path,
        segment: u64,
        path: &Path,
        spans: &SpanCache,
    ) -> Result<Sealed, ArchiveError> {
        let contents = SegmentIndex::read_or_rebuild(dir, segment, path, spans)?;
        let inside = |&(oldest, newest): &(u64, u64)| oldest >= self.since && newest <= self.until;
        let whole = (contents.received.filter(inside)).map(|(oldest, newest)| oldest..=newest);
        let ranges = contents.ranges_between(self.since, self.until, self.mask(&contents));
        Ok(Sealed {
            contents,
            whole,
            ranges,
        })
    }
}

/// What one read of a segment's bytes gave.
#[derive(Debug)]
pub(crate) enum Piece {
    /// Whole records; the next read starts at [`Records::next`].
    Records(Records),
    /// A record that did not decode, passed over: the next read starts at the range's end.
    Damaged(DamagedRange),
}

/// One segment of a shard, open to read.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    shard: usize,
    segment: u64,
    file: File,
    path: PathBuf,
}

impl SegmentFile {
    /// Segment `segment` of shard `shard`, open as `file` from `path`.
    pub(crate) fn new(shard: usize, segment: u64, file: File, path: PathBuf) -> SegmentFile {
        SegmentFile {
            shard,
            segment,
            file,
            path,
        }
    }

    /// Opens segment `segment` of shard `shard` at `path`.
    pub(crate) fn open(
        shard: usize,
        segment: u64,
        path: &Path,
    ) -> Result<SegmentFile, ArchiveError> {
        let file = File::open(path).map_err(ArchiveError::io(path, "read"))?;
        Ok(SegmentFile::new(shard, segment, file, path.to_path_buf()))
    }

    /// The open file.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Tells the kernel that `ranges` (of a sealed segment) are read soon, so that it reads them
    /// from the disk all at once rather than one after the other as each is asked for: a
    /// station's blocks, small and apart, cost a disk's latency each otherwise. The first `most`
    /// bytes of them only: the rest are read as they come, with the kernel's readahead, rather
    /// than pushing other files out of the page cache. Only advice: a failure is not reported.
    pub(crate) fn will_read(&self, ranges: &[(u64, u64)], most: u64) {
        let mut asked = 0;
        for &(from, to) in ranges {
            let len = to.saturating_sub(from);
            if asked + len > most {
                break;
            }
            if len > 0 {
                advise(&self.file, from, len, Advice::WillNeed);
                asked += len;
            }
        }
    }

    /// Reads the whole records from `from` (where one starts) up to `to`, about `budget` bytes
    /// of them ([`format::read_records`]). A record at `from` that does not decode is an
    /// [`ArchiveError::Damaged`] without `past_damage`; with it, it is passed over up to the next
    /// record that decodes before offset `past_damage`, or to that offset. Blocking.
    pub(crate) fn read(
        &self,
        from: u64,
        to: u64,
        budget: usize,
        past_damage: Option<u64>,
    ) -> Result<Piece, ArchiveError> {
        match format::read_records(&self.file, &self.path, from, to, budget) {
            Ok(records) => Ok(Piece::Records(records)),
            Err(ArchiveError::Damaged(damage)) => match past_damage {
                Some(limit) => self.passed(from, limit, damage).map(Piece::Damaged),
                None => Err(ArchiveError::Damaged(damage)),
            },
            Err(err) => Err(err),
        }
    }

    /// The damaged range from the record at `from`, which did not decode (`damage`), to the next
    /// record that decodes before `limit`, or to `limit`.
    fn passed(
        &self,
        from: u64,
        limit: u64,
        damage: FileDamage,
    ) -> Result<DamagedRange, ArchiveError> {
        let next = format::next_record(&self.file, &self.path, from, limit)?;
        Ok(DamagedRange {
            shard: self.shard,
            segment: self.segment,
            bytes: Damage {
                start: from,
                end: next.unwrap_or(limit),
                reason: damage.reason,
            },
        })
    }
}

/// What a reader tells the kernel of bytes of a segment (`posix_fadvise`).
#[derive(Debug, Clone, Copy)]
pub(super) enum Advice {
    /// Read no further ahead than asked.
    Random,
    /// Read soon: start reading them.
    WillNeed,
    /// Read: drop them from the page cache.
    DontNeed,
}

/// Gives `advice` for `len` bytes of `file` from `from` (0: to its end). Only advice: a failure
/// changes nothing that matters, so it is not reported.
pub(super) fn advise(file: &File, from: u64, len: u64, advice: Advice) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let advice = match advice {
            Advice::Random => libc::POSIX_FADV_RANDOM,
            Advice::WillNeed => libc::POSIX_FADV_WILLNEED,
            Advice::DontNeed => libc::POSIX_FADV_DONTNEED,
        };
        let (at, len) = (from as libc::off_t, len as libc::off_t);
        // SAFETY: posix_fadvise reads no memory; `file` keeps the descriptor open for the call.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), at, len, advice) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, from, len, advice);
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::domain::frame::{Priority, SourceKind};

    /// A wanted source's bit is looked for only in the segments that hold that source: another
    /// source sharing its bit (live:7 and live:62 do) has none of its blocks read there.
    #[test]
    fn a_source_of_the_same_bit_is_not_read_where_the_wanted_one_is_not() {
        let (held, absent) = ((SourceKind::LiveUplink, 7), (SourceKind::LiveUplink, 62));
        let mask = |source| index::sources_mask(&[source]);
        assert_eq!(mask(held), mask(absent));
        let (path, _, len) = segment("same-bit", false);
        let dir = path.parent().unwrap();
        let spans = SpanCache::default();
        let ranges = |sources: Vec<SourceKey>| {
            let wanted = Wanted::of(&FrameFilter {
                sources,
                ..FrameFilter::default()
            });
            wanted.sealed(dir, 0, &path, &spans).unwrap().ranges
        };
        assert_eq!(ranges(vec![absent]), []);
        let whole = [(format::MAGIC.len() as u64, len)];
        assert_eq!(ranges(vec![held]), whole);
        assert_eq!(ranges(vec![absent, held]), whole);
        assert_eq!(ranges(vec![]), whole);
        fs::remove_dir_all(dir).unwrap();
    }

    /// Segment 0 of a shard directory of its own: three one-frame records received at 10, 20 and
    /// 30, the second damaged when `damaged`; with the offsets where each record starts and the
    /// file's length.
    fn segment(name: &str, damaged: bool) -> (PathBuf, [u64; 3], u64) {
        let dir = std::env::temp_dir().join(format!("segment-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format::segment_name(0));
        let mut bytes = format::MAGIC.to_vec();
        let mut starts = [0; 3];
        for (i, received) in [10, 20, 30].into_iter().enumerate() {
            starts[i] = bytes.len() as u64;
            let (kind, priority) = (SourceKind::LiveUplink, Priority::Routine);
            let frame = [(i as u64, &b"payload"[..])];
            format::encode_frames(&mut bytes, kind, priority, 7, received, frame);
        }
        if damaged {
            bytes[starts[2] as usize - 1] ^= 0xff;
        }
        fs::write(&path, &bytes).unwrap();
        (path, starts, bytes.len() as u64)
    }

    #[test]
    fn a_read_passes_over_a_damaged_record_only_when_asked() {
        let (path, starts, len) = segment("damaged", true);
        let file = SegmentFile::open(2, 5, &path).unwrap();
        let read = |from, past_damage| file.read(from, len, 1 << 20, past_damage);
        // The records before the damaged one, and the next read starts at it.
        let Piece::Records(records) = read(starts[0], None).unwrap() else {
            panic!("the first record decodes");
        };
        assert_eq!((records.entries.len(), records.next), (1, starts[1]));
        let err = read(starts[1], None).unwrap_err();
        assert!(matches!(err, ArchiveError::Damaged(_)), "{err}");
        let Piece::Damaged(range) = read(starts[1], Some(len)).unwrap() else {
            panic!("the second record is damaged");
        };
        assert_eq!((range.shard, range.segment), (2, 5));
        assert_eq!((range.bytes.start, range.bytes.end), (starts[1], starts[2]));
        let reason = format!("{}: {}", path.display(), range.says());
        assert_eq!(reason, err.to_string(), "the error's text, but its path");
        // Looked for no further than asked.
        let Piece::Damaged(range) = read(starts[1], Some(starts[2] - 1)).unwrap() else {
            panic!("the second record is damaged");
        };
        assert_eq!(range.bytes.end, starts[2] - 1);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_sealed_segment_inside_a_window_is_answered_whole_by_its_index() {
        let (path, _, len) = segment("sealed", false);
        let dir = path.parent().unwrap();
        let spans = SpanCache::default();
        let window = |since, until| {
            Wanted::of(&FrameFilter {
                since: Some(since),
                until: Some(until),
                ..FrameFilter::default()
            })
        };
        let sealed = |wanted: Wanted| wanted.sealed(dir, 0, &path, &spans).unwrap();
        let inside = sealed(window(10, 30));
        assert_eq!(inside.whole, Some(10..=30));
        assert_eq!(inside.ranges, [(format::MAGIC.len() as u64, len)]);
        let cut = sealed(window(15, 30));
        assert_eq!((cut.whole, cut.ranges.len()), (None, 1));
        assert!(sealed(window(31, 40)).ranges.is_empty());
        assert!(window(25, 40).meets(20, 30) && !window(31, 40).meets(20, 30));
        fs::remove_dir_all(dir).unwrap();
    }
}
