//! A link's spool directory (`spool_dir`): stations upload their recordings into it (rsync,
//! scp) and the daemon imports each once it is complete, in name order.
//!
//! Complete means renamed into place: a name that starts with `.` or ends in `.part` or `.tmp`
//! is a file still being written (rsync writes `.name.XXXXXX`, and the convention for other
//! tools is write-then-rename), and is left alone. A file whose every frame the archive holds
//! moves to `done/`; one that cannot be read to its end moves to `failed/` beside a text file
//! saying why. The daemon never deletes a file. One stopped by the drain stays where it is: the
//! next start reads it again, and what it stored before is held already, so nothing is stored
//! twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::super::station::Link;
use super::import::{import, Backfill, ImportError, Imported};

/// How often the directory is looked at.
pub(crate) const POLL: Duration = Duration::from_secs(1);

const DONE: &str = "done";
const FAILED: &str = "failed";

/// Watches the link's spool directory until the drain.
pub(crate) async fn watch(link: Arc<Link>, dir: PathBuf, backfill: Backfill) {
    let mut refused: Option<String> = None;
    loop {
        match waiting(&dir) {
            Ok(files) => {
                refused = None;
                for file in files {
                    if !take(&link, &backfill, &dir, &file).await {
                        return;
                    }
                }
            }
            Err(why) => {
                if refused.as_ref() != Some(&why) {
                    tracing::error!(link = %link.config.name, spool = %dir.display(), error = %why, "cannot read the spool directory: nothing is imported from it until it can be read");
                    link.counters.backfill().spool_unreadable(true);
                    refused = Some(why);
                }
            }
        }
        if refused.is_none() {
            link.counters.backfill().spool_unreadable(false);
        }
        tokio::select! {
            _ = backfill.drain.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Imports `file` and moves it where it belongs; `false` at the drain.
async fn take(link: &Link, backfill: &Backfill, dir: &Path, file: &Path) -> bool {
    let name = file
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    tracing::info!(link = %link.config.name, file = %name, "backfill: importing");
    let counters = link.counters.backfill();
    counters.started();
    let mut last = Imported::default();
    let outcome = import(link, backfill, file, &mut |now| {
        counters.progress(&last, now);
        last = *now;
    })
    .await;
    counters.finished();
    match outcome {
        Ok(imported) => {
            let Imported {
                packets,
                stored,
                held,
                unplaced,
                damaged_ranges,
                ..
            } = imported;
            tracing::info!(link = %link.config.name, file = %name, packets, stored, held, unplaced, damaged_ranges, "backfill: file imported");
            settle(link, dir, file, DONE, None);
            counters.file_done();
        }
        Err(ImportError::Stopped) => return false,
        Err(err) => {
            let why = err.to_string();
            tracing::error!(link = %link.config.name, file = %name, error = %why, "backfill: file failed");
            settle(link, dir, file, FAILED, Some(&why));
            counters.file_failed();
        }
    }
    true
}

/// Moves `file` into `dir/to/`, with `why` beside it in `NAME.txt`.
fn settle(link: &Link, dir: &Path, file: &Path, to: &str, why: Option<&str>) {
    let moved = (|| {
        let into = dir.join(to);
        std::fs::create_dir_all(&into)?;
        let name = file.file_name().unwrap_or_default();
        if let Some(why) = why {
            let mut note = name.to_owned();
            note.push(".txt");
            std::fs::write(into.join(note), format!("{why}\n"))?;
        }
        std::fs::rename(file, into.join(name))
    })();
    if let Err(err) = moved {
        tracing::error!(link = %link.config.name, file = %file.display(), error = %err, "backfill: cannot move the file out of the spool: it is imported again at the next look (nothing is stored twice)");
    }
}

/// The spool's complete files, in name order.
fn waiting(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|err| err.to_string())?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| err.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let writing = name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp");
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !writing {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}
