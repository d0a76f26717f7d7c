//! `aggregator archive repair DIR [--quarantine]`: the way out when a newest segment is
//! corrupt and the daemon refuses to start (`docs/archive-tools.md`).
//!
//! Why it works as it does:
//! - **The newest segment of each shard only.** Recovery reads each shard's newest segment alone
//!   (every shard is a segment stream of its own, `archive::layout`), so only their damage stops
//!   the daemon, and a crash can tear the tail of every shard's at once. Damage in an older
//!   segment stays where it is: `verify` reports it, the replay skips it, and rewriting the
//!   segment would only hide it.
//! - **Every shard looked at before any is changed.** A newest segment that cannot be repaired
//!   (its magic is damaged, it cannot be read) in any shard stops the repair before it moves a
//!   byte, so an archive is never left repaired in some shards only because of another's fault.
//! - **A dry run unless told.** Without `--quarantine` it says what it would move and changes
//!   nothing: bytes are not moved out of an archive by surprise.
//! - **Nothing is deleted.** Each damaged range goes to a file of its own under the shard
//!   directory's `quarantine/` (`DIR/quarantine/`, `DIR/shard-02/quarantine/`), named after the
//!   segment and the range's offset. Segment and shard listing ignore it, so recovery and the
//!   tools never read it.
//! - **The original stays until its replacement is durable.** The damaged bytes are synced first;
//!   then the segment without them is written under a name that recovery and the tools ignore
//!   (`segment-{index}.seg.repairing`), synced, renamed over the segment, and the directory
//!   synced. A crash at any point leaves the original or the repaired segment, never neither.
//! - **Never under a running daemon.** It takes every shard directory's `LOCK`, as the daemon's
//!   shards do: rewriting the segment a daemon appends to would lose what it appends.
//! - **The scan's own ranges.** What is moved is exactly what [`format::scan`] reports as
//!   damaged, in the same bytes it scanned, so what is left is the valid records, whole.
//! - **The journals are counted, never touched.** After a power cut a shard's emergency journals
//!   may hold acknowledged frames its segments lost, which the next start stores
//!   (`docs/archive-format.md`, "Emergency journals"): an operator deciding what to do with a damaged
//!   archive needs to know they are there, and that they must stay. It says how many frames each
//!   shard's next start takes from them, with recovery's own code (its reading of the newest
//!   segment, `recovery::track`, and `journal::recover`), so the count is what the start does,
//!   not an estimate of it. A repair removes only damaged bytes, which recovery never reads, so
//!   the count is the same before and after it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::archive::format::{self, ArchiveError, Damage, Entry, Kept};
use crate::archive::write::{journal, recovery};

/// The directory under the archive's that holds the damaged bytes `repair` moved aside.
pub(crate) const QUARANTINE_DIR: &str = "quarantine";

/// What `repair` found in the newest segment of every shard of an archive, and did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// The archive directory.
    pub root: PathBuf,
    /// One per shard that holds a segment, shard 0 first, then by shard.
    pub shards: Vec<Repair>,
    /// One per shard that holds an emergency journal, shard 0 first, then by shard.
    pub journals: Vec<JournalRestore>,
}

impl RepairReport {
    /// Whether nothing is left to repair: each newest segment was clean, or has been repaired.
    pub fn is_settled(&self) -> bool {
        self.shards.iter().all(|r| r.damaged.is_empty() || r.done)
    }

    /// The frames the next start stores from the journals, every shard's together.
    pub fn journaled(&self) -> u64 {
        self.journals.iter().map(|j| j.frames).sum()
    }
}

/// What the next start of one shard stores from its emergency journals: the frames in them that
/// its newest segment does not hold (neither at or below its source's watermark nor stored above
/// it). A journal of a retired shard (beyond `runtime.shards`) is stored by shard 0, less what
/// shard 0 already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRestore {
    pub shard: usize,
    /// The shard's directory (`archive::layout::shard_dir`).
    pub dir: PathBuf,
    /// Its journal files.
    pub files: u64,
    /// The frames the next start stores from them.
    pub frames: u64,
}

/// What `repair` found in one shard's newest segment, and did (or, in a dry run, would do).
#[derive(Debug, Clone)]
pub struct Repair {
    pub shard: usize,
    /// The shard's directory (`archive::layout::shard_dir`).
    pub dir: PathBuf,
    /// Its newest segment.
    pub segment: PathBuf,
    /// The segment's length before the repair.
    pub file_len: u64,
    /// Its damaged ranges: each is moved to [`Repair::quarantine_path`].
    pub damaged: Vec<Damage>,
    /// Whether the ranges were moved (false in a dry run, or when there was nothing to move).
    pub done: bool,
}

impl Repair {
    /// Where the bytes of `damage` go: `{shard dir}/quarantine/{segment name}.at-{offset}.damaged`.
    pub fn quarantine_path(&self, damage: &Damage) -> PathBuf {
        let name = self
            .segment
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        self.dir
            .join(QUARANTINE_DIR)
            .join(format!("{name}.at-{}.damaged", damage.start))
    }

    /// The segment's length without its damaged ranges.
    pub fn kept_len(&self) -> u64 {
        self.file_len - self.damaged.iter().map(|d| d.end - d.start).sum::<u64>()
    }
}

/// Looks at the newest segment of every shard of the archive at `root`
/// ([`format::list_shard_segments`]) and, with `quarantine`, moves their damaged ranges aside and
/// rewrites them without them. No shard is changed until every one has been looked at. An `Err`
/// names the file and the cause: a directory or a segment cannot be read, a shard is locked by a
/// running daemon, a segment's magic is damaged (it does not guess a format), or a write failed,
/// which leaves that segment as it was (and the shards before it repaired: run it again).
pub fn repair(root: &Path, quarantine: bool) -> Result<RepairReport, ArchiveError> {
    // Locked before the segments are listed: a daemon that stopped in between may have started
    // a newer segment.
    let _locks = match quarantine {
        true => format::lock_shards(root)?,
        false => Vec::new(),
    };
    let mut repairs = Vec::new();
    let mut journals = Vec::new();
    for shard in format::list_shard_segments(root)? {
        // What recovery reads of the newest segment: what the journals are tested against.
        let mut sources = HashMap::new();
        if let Some((_, newest)) = shard.segments.last() {
            let track = |_, entry: Entry| recovery::track(&mut sources, entry);
            let (_, scanned) = read_and_scan(newest, track)?;
            repairs.push(Repair {
                shard: shard.shard,
                dir: shard.dir.clone(),
                segment: newest.clone(),
                file_len: scanned.file_len,
                damaged: scanned.damaged,
                done: false,
            });
        }
        if !shard.journals.is_empty() {
            recovery::settle(&mut sources);
            let leftover = journal::recover(&shard.dir, &mut sources)?;
            journals.push(JournalRestore {
                shard: shard.shard,
                dir: shard.dir,
                files: leftover.files.len() as u64,
                frames: leftover.frames.len() as u64,
            });
        }
    }
    if quarantine {
        for repair in repairs.iter_mut().filter(|r| !r.damaged.is_empty()) {
            carry_out(repair)?;
        }
    }
    Ok(RepairReport {
        root: root.to_path_buf(),
        shards: repairs,
        journals,
    })
}

/// The bytes of `segment` and what [`format::scan`] finds in them, each valid entry handed to
/// `visit`; a segment whose magic is damaged is an error.
fn read_and_scan(
    segment: &Path,
    visit: impl FnMut(u64, Entry),
) -> Result<(Vec<u8>, format::Scanned), ArchiveError> {
    let bytes = fs::read(segment).map_err(ArchiveError::io(segment, "read"))?;
    let scanned = format::scan(segment, &bytes[..], visit)?;
    if let Some(magic) = scanned.damaged.first().filter(|d| d.start == 0) {
        return Err(ArchiveError::Unrepaired {
            path: segment.to_path_buf(),
            offset: 0,
            reason: magic.reason.clone(),
            kept: Kept::Magic,
        });
    }
    Ok((bytes, scanned))
}

/// Moves the damaged ranges found when every shard was looked at aside, and rewrites the segment
/// without them. The segment is read and scanned again (each shard was looked at before any was
/// changed, and one segment's bytes at a time are held); the shard's `LOCK` is held, so it finds
/// the same ranges, and a segment where it does not is left alone.
fn carry_out(repair: &mut Repair) -> Result<(), ArchiveError> {
    let (bytes, scanned) = read_and_scan(&repair.segment, |_, _| {})?;
    if scanned.file_len != repair.file_len || scanned.damaged != repair.damaged {
        return Err(ArchiveError::broken(format!(
            "{}: changed while it was being repaired; run the repair again",
            repair.segment.display()
        )));
    }
    move_aside(repair, &bytes)?;
    rewrite(repair, &bytes)?;
    repair.done = true;
    Ok(())
}

/// Writes every damaged range of the segment (whose contents are `bytes`) to its quarantine file
/// and makes them durable.
fn move_aside(repair: &Repair, bytes: &[u8]) -> Result<(), ArchiveError> {
    let quarantine = repair.dir.join(QUARANTINE_DIR);
    fs::create_dir_all(&quarantine).map_err(ArchiveError::io(&quarantine, "create"))?;
    sync_dir(&repair.dir)?;
    for damage in &repair.damaged {
        let range = &bytes[damage.start as usize..damage.end as usize];
        write_new(&repair.quarantine_path(damage), range)?;
    }
    sync_dir(&quarantine)
}

/// Creates `path` holding `bytes`, synced. A file already there with the same bytes (left by a
/// repair that stopped before it rewrote the segment) is kept; one with other bytes is an error.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), ArchiveError> {
    let created = OpenOptions::new().write(true).create_new(true).open(path);
    let result = match created {
        Ok(mut file) => file.write_all(bytes).and_then(|()| file.sync_all()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => match fs::read(path) {
            Ok(held) if held == bytes => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "it already exists and holds other bytes; move it away first",
            )),
            Err(err) => Err(err),
        },
        Err(err) => Err(err),
    };
    result.map_err(ArchiveError::io(path, "write"))
}

/// Replaces the segment (whose contents are `bytes`) with its bytes outside the damaged ranges:
/// written to a temporary file, synced, renamed over it, and the directory synced.
fn rewrite(repair: &Repair, bytes: &[u8]) -> Result<(), ArchiveError> {
    let mut temp_name = repair.segment.clone().into_os_string();
    temp_name.push(".repairing");
    let temp = PathBuf::from(temp_name);
    let mut file = File::create(&temp).map_err(ArchiveError::io(&temp, "create"))?;
    let mut kept_from = 0;
    for damage in &repair.damaged {
        file.write_all(&bytes[kept_from..damage.start as usize])
            .map_err(ArchiveError::io(&temp, "write"))?;
        kept_from = damage.end as usize;
    }
    file.write_all(&bytes[kept_from..])
        .and_then(|()| file.sync_all())
        .map_err(ArchiveError::io(&temp, "write"))?;
    fs::rename(&temp, &repair.segment).map_err(ArchiveError::io(&temp, "rename"))?;
    sync_dir(&repair.dir)
}

/// Makes the entries of `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(ArchiveError::io(dir, "sync the directory"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::frame::SourceKind;

    /// A repair that stopped after moving the bytes aside, before the rename, runs again to the
    /// same result; a quarantine file that holds other bytes stops it with the segment untouched.
    #[test]
    fn a_repair_cut_short_runs_again_and_never_overwrites_other_bytes() {
        let dir = std::env::temp_dir().join(format!("repair-again-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut bytes = format::MAGIC.to_vec();
        for acked in 0..3 {
            format::encode_watermark(&mut bytes, SourceKind::LiveUplink, 1, acked);
        }
        bytes[8 + 22 + 10] ^= 1; // the second record's body
        let path = dir.join(format::segment_name(1));
        fs::write(&path, &bytes).unwrap();

        let done = repair(&dir, true).unwrap().shards.remove(0);
        let repaired = fs::read(&path).unwrap();
        assert_eq!(repaired.len() as u64, done.kept_len());
        fs::write(&path, &bytes).unwrap();
        let again = repair(&dir, true).unwrap().shards.remove(0);
        assert!(again.done);
        assert_eq!(fs::read(&path).unwrap(), repaired);

        fs::write(&path, &bytes).unwrap();
        let quarantined = done.quarantine_path(&done.damaged[0]);
        fs::write(&quarantined, b"other").unwrap();
        let err = repair(&dir, true).unwrap_err();
        assert!(err.to_string().contains("holds other bytes"), "{err}");
        assert!(
            err.to_string().contains(&quarantined.display().to_string()),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), bytes);
        fs::remove_dir_all(&dir).unwrap();
    }
}
