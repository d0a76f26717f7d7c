//! A sink's durable cursor: the position of the last frame its destination acknowledged, with
//! every frame before it acknowledged too, kept in a file next to the archive
//! (`ARCHIVE_DIR/sinks/NAME.cursor`). A position is only meaningful within its shard's segment
//! stream, so a sink keeps one cursor per shard: shard 0's has the name it had before shards
//! (a deployment upgraded resumes where it was), shard `k`'s is `NAME-shard-KK.cursor`.
//!
//! The file holds the position's text form (`SEGMENT:OFFSET:INDEX`) and is replaced atomically: a
//! temporary file is written and synced, renamed over the old one, and the directory synced, so a
//! crash leaves either the old cursor or the new one. The cursor only ever trails what was
//! acknowledged, so after a crash the sink publishes again from an older position, never skips one.
//! The NATS sink saves its cursors ([`SavedCursors`]) a few times a second while they move, and
//! tells retention protection where they are.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::archive::retention::ReadMarks;
use crate::domain::position::{Position, PositionError, Positions, ShardPosition};
use crate::stats::Stats;

/// The cursor file of the sink `name` in the archive directory `archive`.
#[derive(Debug, Clone)]
pub(crate) struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub(crate) fn new(archive: &Path, name: &str) -> CursorFile {
        CursorFile {
            path: archive.join("sinks").join(format!("{name}.cursor")),
        }
    }

    /// The cursor file of the sink `name` for shard `shard` of the archive `archive`.
    pub(crate) fn of_shard(archive: &Path, name: &str, shard: usize) -> CursorFile {
        match shard {
            0 => CursorFile::new(archive, name),
            k => CursorFile::new(archive, &format!("{name}-shard-{k:02}")),
        }
    }

    #[cfg(test)]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The saved position; `None` when the sink has never saved one (it starts at the oldest
    /// frame). A file that does not hold a position is an error: guessing could skip frames.
    pub(crate) fn load(&self) -> io::Result<Option<Position>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.error(err, "cannot read")),
        };
        text.trim().parse().map(Some).map_err(|why: PositionError| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {why}", self.path.display()),
            )
        })
    }

    /// Replaces the saved position with `position`, durably (temporary file, sync, rename, sync
    /// of the directory). Blocks on the disk.
    pub(crate) fn save(&self, position: Position) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|err| self.error(err, "cannot create the directory of"))?;
        let temporary = self.path.with_extension("cursor.new");
        let mut file =
            File::create(&temporary).map_err(|err| self.error(err, "cannot create a new"))?;
        writeln!(file, "{position}")
            .and_then(|()| file.sync_all())
            .map_err(|err| self.error(err, "cannot write a new"))?;
        fs::rename(&temporary, &self.path).map_err(|err| self.error(err, "cannot replace"))?;
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|err| self.error(err, "cannot sync the directory of"))
    }

    fn error(&self, err: io::Error, what: &str) -> io::Error {
        io::Error::new(
            err.kind(),
            format!("{what} the cursor file {}: {err}", self.path.display()),
        )
    }
}

/// How often the cursors are saved while they move: what a restart publishes again, at most.
pub(super) const SAVE_INTERVAL: Duration = Duration::from_millis(200);

/// The NATS sink's cursor file of each shard, what each holds, and where retention protection
/// is told the saved cursors are (`archive.retention.protect`).
pub(super) struct SavedCursors {
    files: HashMap<usize, CursorFile>,
    saved: Positions,
    saved_at: Instant,
    marks: Option<Arc<ReadMarks>>,
}

impl SavedCursors {
    /// Loads the NATS sink's cursor of each of `shards` of the archive in `archive` (a shard
    /// without one starts at its oldest frame), and tells `marks` where they are.
    pub(super) fn load(
        archive: &Path,
        shards: impl Iterator<Item = usize>,
        marks: Option<Arc<ReadMarks>>,
    ) -> io::Result<SavedCursors> {
        let files: HashMap<usize, CursorFile> = shards
            .map(|shard| (shard, CursorFile::of_shard(archive, "nats", shard)))
            .collect();
        let mut saved = Positions::new();
        for (&shard, file) in &files {
            if let Some(position) = file.load()? {
                saved.set(ShardPosition { shard, position });
            }
        }
        if let Some(marks) = &marks {
            saved
                .iter()
                .for_each(|at| marks.set(at.shard, at.position.segment));
            marks.reported();
        }
        let saved_at = Instant::now();
        Ok(SavedCursors {
            files,
            saved,
            saved_at,
            marks,
        })
    }

    /// What each shard's file holds.
    pub(super) fn saved(&self) -> &Positions {
        &self.saved
    }

    /// Whether the last save was [`SAVE_INTERVAL`] ago or more.
    pub(super) fn due(&self) -> bool {
        self.saved_at.elapsed() >= SAVE_INTERVAL
    }

    /// Saves each shard's cursor in `acked` that moved since its last save: a cursor that cannot
    /// be saved stays as it was, and a restart publishes more again.
    pub(super) async fn save(&mut self, acked: &Positions, stats: &Stats) {
        self.saved_at = Instant::now();
        let moved: Vec<ShardPosition> = (acked.iter())
            .filter(|at| self.saved.get(at.shard) != Some(at.position))
            .collect();
        for at in moved {
            let Some(file) = self.files.get(&at.shard).cloned() else {
                continue;
            };
            match tokio::task::spawn_blocking(move || file.save(at.position)).await {
                Ok(Ok(())) => {
                    self.saved.set(at);
                    if at.shard == 0 {
                        stats.nats_cursor(at.position);
                    }
                    if let Some(marks) = &self.marks {
                        marks.set(at.shard, at.position.segment);
                    }
                }
                Ok(Err(err)) => {
                    stats.nats_error();
                    tracing::warn!(error = %err, "cannot save the NATS sink's cursor; a restart publishes more again");
                }
                Err(err) => tracing::warn!(error = %err, "cannot save the NATS sink's cursor"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_cursor_loads_back_and_a_damaged_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("cursor-test-{}", std::process::id()));
        let cursor = CursorFile::new(&dir, "nats");
        assert_eq!(cursor.load().unwrap(), None);
        let position = Position {
            segment: 3,
            offset: 4096,
            index: 7,
        };
        cursor.save(position).unwrap();
        assert_eq!(cursor.load().unwrap(), Some(position));
        cursor
            .save(Position {
                index: 8,
                ..position
            })
            .unwrap();
        assert_eq!(cursor.load().unwrap().map(|p| p.index), Some(8));
        fs::write(cursor.path(), "3:4096\n").unwrap();
        assert_eq!(CursorFile::of_shard(&dir, "nats", 0).path(), cursor.path());
        let shard = CursorFile::of_shard(&dir, "nats", 3);
        assert_eq!(shard.path(), dir.join("sinks/nats-shard-03.cursor"));
        let err = cursor.load().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        fs::remove_dir_all(&dir).unwrap();
    }
}
