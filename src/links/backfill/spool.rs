//! A link's spool directory (`spool_dir`): stations upload their recordings into it (rsync,
//! scp) and the daemon imports each once it is complete, in name order.
//!
//! Complete means renamed into place: a name that starts with `.` or ends in `.part` or `.tmp`
//! is a file still being written (rsync writes `.name.XXXXXX`, and the convention for other
//! tools is write-then-rename), and is left alone. A file whose every frame the archive holds
//! moves to `done/`; one that cannot be read to its end moves to `failed/` beside a text file
//! saying why. The daemon never deletes a file, and syncs each move (an upload's into the spool
//! too), so a power cut leaves a file where it was, where it went, or, where the file system
//! moves it by a link, in both (the next look then takes it out of the spool). One stopped by the drain, by
//! SIGKILL or by a power cut stays where it is: the next start reads it again, and what it
//! stored before is held already, so nothing is stored twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::super::station::Link;
use super::import::{import, Backfill, ImportError, Imported};
use crate::stats::{FileReport, FileState};

/// How often the directory is looked at.
pub(crate) const POLL: Duration = Duration::from_secs(1);

const DONE: &str = "done";

/// How an upload's file begins its name while it is written (`ops::spool`).
pub(crate) const UPLOADING: &str = ".upload-";
const FAILED: &str = "failed";

/// Watches the link's spool directory until the drain.
pub(crate) async fn watch(link: Arc<Link>, dir: PathBuf, backfill: Backfill) {
    sweep_uploads(&dir);
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
    if moved_before(dir, file) {
        return true;
    }
    tracing::info!(link = %link.config.name, file = %name, "backfill: importing");
    let counters = link.counters.backfill();
    counters.started();
    let mut last = Imported::default();
    let report = |state, imported, reason, moved_to| FileReport {
        state,
        imported: Some(imported),
        reason,
        moved_to,
    };
    // One file of a merge group at a time: two stations' recordings of one pass, imported
    // together, would each miss what the other stores.
    let _turn = backfill.group_turn.lock().await;
    let outcome = import(link, backfill, file, &mut |now| {
        counters.progress(&last, now);
        counters.report(&name, report(FileState::Importing, *now, None, None));
        last = *now;
    })
    .await;
    counters.finished();
    let (state, reason) = match outcome {
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
            counters.file_done();
            (FileState::Done, None)
        }
        Err(ImportError::Stopped) => return false,
        Err(err @ ImportError::Archive(_)) => {
            tracing::error!(link = %link.config.name, file = %name, error = %err, "backfill: the file stays in the spool and is read again at the next look");
            counters.report(
                &name,
                report(FileState::Waiting, last, Some(err.to_string()), None),
            );
            return true;
        }
        Err(err) => {
            // The spool's own path is the daemon's business, not a remote client's.
            let why = err.to_string().replace(&format!("{}/", dir.display()), "");
            tracing::error!(link = %link.config.name, file = %name, error = %why, "backfill: file failed");
            counters.file_failed();
            (FileState::Failed, Some(why))
        }
    };
    // Its syncs wait for the disk: off the runtime, which live ingest runs on.
    let (link_name, dir_owned, file_owned, why) = (
        link.config.name.clone(),
        dir.to_owned(),
        file.to_owned(),
        reason.clone(),
    );
    let settled = tokio::task::spawn_blocking(move || {
        settle(&link_name, &dir_owned, &file_owned, state, why.as_deref())
    });
    let moved = settled.await.unwrap_or(None);
    counters.report(&name, report(state, last, reason, moved));
    true
}

/// Whether `file` is a file `done/` or `failed/` holds already, under a second name that a power
/// cut during its move left behind: then that name goes, and nothing is imported again.
fn moved_before(dir: &Path, file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(file) else {
        return false;
    };
    let same = |entry: std::fs::DirEntry| {
        let other = entry.metadata().ok()?;
        (other.dev() == meta.dev() && other.ino() == meta.ino()).then(|| entry.path())
    };
    let moved = (meta.nlink() > 1)
        .then(|| {
            [DONE, FAILED]
                .into_iter()
                .filter_map(|d| std::fs::read_dir(dir.join(d)).ok())
        })
        .into_iter()
        .flatten()
        .flat_map(|entries| entries.flatten().filter_map(same))
        .next();
    let Some(moved) = moved else {
        return false;
    };
    match std::fs::remove_file(file).and_then(|()| sync_dir(dir)) {
        Ok(()) => {
            tracing::info!(file = %file.display(), moved_to = %moved.display(), "backfill: a move a power cut interrupted is finished")
        }
        Err(err) => {
            tracing::error!(file = %file.display(), moved_to = %moved.display(), error = %err, "backfill: cannot finish a move a power cut interrupted")
        }
    }
    true
}

/// Removes what uploads a killed daemon left half written (`.upload-*`, never imported).
fn sweep_uploads(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(UPLOADING) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Moves `file` into `done/` or `failed/` under a name not taken there, with `why` beside it in
/// `NAME.txt`; the name it took.
fn settle(link: &str, dir: &Path, file: &Path, to: FileState, why: Option<&str>) -> Option<String> {
    let into = dir.join(match to {
        FileState::Failed => FAILED,
        _ => DONE,
    });
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let moved = (|| {
        std::fs::create_dir_all(&into)?;
        let free = place(file, &[&into], &name)?;
        if let Some(why) = why {
            let mut text = std::fs::File::create(into.join(format!("{free}.txt")))?;
            std::io::Write::write_all(&mut text, format!("{why}\n").as_bytes())?;
            text.sync_all()?;
            sync_dir(&into)?;
        }
        Ok::<_, std::io::Error>(free)
    })();
    match moved {
        Ok(free) => Some(free),
        Err(err) => {
            tracing::error!(link = %link, file = %file.display(), error = %err, "backfill: cannot move the file out of the spool: it is imported again at the next look (nothing is stored twice)");
            None
        }
    }
}

/// Moves `from` into `dirs[0]` under the first name near `name` that none of `dirs` holds,
/// never replacing a file (a name taken meanwhile is passed); the name it took. Durably: once
/// this returns, the file is under the new name. A rename that does not replace
/// (`RENAME_NOREPLACE`) moves it at once; where the file system has none, a link then the unlink,
/// the new name synced before the old one goes, so a power cut leaves the file under one of its
/// names (both at worst), never under neither. A rename, not a link, where it can: a link to a
/// file another user owns is refused under `fs.protected_hardlinks`, a rename is not.
pub(crate) fn place(from: &Path, dirs: &[&Path], name: &str) -> std::io::Result<String> {
    let into = dirs.first().ok_or(std::io::ErrorKind::InvalidInput)?;
    let left = from.parent().filter(|dir| !dir.as_os_str().is_empty());
    let left = left.unwrap_or(Path::new("."));
    loop {
        let free = free_name(dirs, name);
        let to = into.join(&free);
        match rename_noreplace(from, &to) {
            Ok(()) => {
                sync_dir(into)?;
                if let Err(err) = sync_dir(left) {
                    tracing::warn!(file = %from.display(), error = %err, "moved, but the old name's removal is not synced: a power cut may leave the file under its old name");
                }
                return Ok(free);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) if err.kind() == std::io::ErrorKind::Unsupported => {}
            Err(err) => return Err(err),
        }
        match std::fs::hard_link(from, &to) {
            Ok(()) => {
                if let Err(err) = sync_dir(into) {
                    // Undone: the file stays where it was, under one name, and is moved again
                    // later; never a second copy where it went.
                    let _ = std::fs::remove_file(&to);
                    return Err(err);
                }
                std::fs::remove_file(from)?;
                if let Err(err) = sync_dir(left) {
                    tracing::warn!(file = %from.display(), error = %err, "moved, but the old name's removal is not synced: a power cut may leave the file under both names");
                }
                return Ok(free);
            }
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then); `Unsupported` where the
/// file system cannot rename without replacing.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
    let (from, to) = (path(from)?, path(to)?);
    // SAFETY: both are NUL-terminated strings that outlive the call, which only reads them.
    let renamed = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    match renamed {
        0 => Ok(()),
        _ => match std::io::Error::last_os_error() {
            err if matches!(err.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                Err(std::io::Error::new(std::io::ErrorKind::Unsupported, err))
            }
            err => Err(err),
        },
    }
}

/// Makes the names in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `name`, or `name.1`, `name.2`, …: the first that none of `dirs` holds (nor its `.txt`).
fn free_name(dirs: &[&Path], name: &str) -> String {
    let taken = |candidate: &str| {
        let note = format!("{candidate}.txt");
        (dirs.iter()).any(|dir| dir.join(candidate).exists() || dir.join(&note).exists())
    };
    (0..)
        .map(|n| match n {
            0 => name.to_owned(),
            n => format!("{name}.{n}"),
        })
        .find(|candidate| !taken(candidate))
        .unwrap_or_else(|| name.to_owned())
}

/// Where `name` of the spool at `dir` stands on disk, for a file the daemon did not import since
/// its start: waiting in the spool, else the one of its names in `done/` and `failed/` (`NAME`,
/// `NAME.1`, …) moved there last, with its reason in `failed/`.
pub(crate) fn on_disk(dir: &Path, name: &str) -> Option<FileReport> {
    let report = |state, reason, moved_to| FileReport {
        state,
        imported: None,
        reason,
        moved_to,
    };
    if dir.join(name).is_file() {
        return Some(report(FileState::Waiting, None, None));
    }
    let settled = [(DONE, FileState::Done), (FAILED, FileState::Failed)];
    let moved = settled.into_iter().flat_map(|(sub, state)| {
        let names = moved_names(&dir.join(sub), name);
        names
            .into_iter()
            .map(move |(at, moved)| (at, sub, state, moved))
    });
    let (_, sub, state, moved) = moved.max_by_key(|(at, ..)| *at)?;
    let why = (state == FileState::Failed)
        .then(|| std::fs::read_to_string(dir.join(sub).join(format!("{moved}.txt"))).ok())
        .flatten();
    Some(report(
        state,
        why.map(|why| why.trim().to_owned()),
        Some(moved),
    ))
}

/// The files of `dir` named `name` or `name.N`, each with when it was moved there (its inode's
/// change time) and then `N`, which orders two moves within one tick of that clock.
fn moved_names(dir: &Path, name: &str) -> Vec<((i64, i64, u64), String)> {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let number = |file: &str| match file.strip_prefix(name)?.strip_prefix('.') {
        None => (file == name).then_some(0),
        Some(n) => n.parse::<u64>().ok().filter(|_| !n.starts_with(['0', '+'])),
    };
    (entries.flatten())
        .filter_map(|entry| {
            let file = entry.file_name().to_string_lossy().into_owned();
            let n = number(&file)?;
            let meta = entry.metadata().ok().filter(|meta| meta.is_file())?;
            Some(((meta.ctime(), meta.ctime_nsec(), n), file))
        })
        .collect()
}

/// Whether `name` may be a file of a spool: a complete file's name, one path component.
pub(crate) fn takes_name(name: &str) -> bool {
    let writing = name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp");
    let one = !name.is_empty() && !name.contains(['/', '\\', '\0']) && name.len() <= 200;
    one && !writing && name != DONE && name != FAILED
}

/// The spool's complete files, in name order.
fn waiting(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|err| err.to_string())?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| err.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && takes_name(&name) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file a power cut left in the spool and in `done/` (its move linked, not yet unlinked) is
    /// taken out of the spool, not imported again; a file of one name, or linked elsewhere, is
    /// imported.
    #[test]
    fn a_move_a_power_cut_interrupted_is_finished() {
        let dir = std::env::temp_dir().join(format!("spool-moved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(DONE)).unwrap();
        let file = dir.join("pass.lp");
        std::fs::write(&file, b"recording").unwrap();
        assert!(!moved_before(&dir, &file), "one name: imported");
        std::fs::hard_link(&file, dir.join("elsewhere")).unwrap();
        assert!(!moved_before(&dir, &file), "linked outside done/: imported");
        std::fs::hard_link(&file, dir.join(DONE).join("pass.lp")).unwrap();
        assert!(moved_before(&dir, &file));
        assert!(!file.exists());
        assert_eq!(
            std::fs::read(dir.join("done/pass.lp")).unwrap(),
            b"recording"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A name that went to `failed/` twice, after a restart: the later move is the one reported,
    /// with its own reason; the name uploaded again is waiting.
    #[test]
    fn a_name_moved_twice_is_reported_by_its_later_move() {
        let dir = std::env::temp_dir().join(format!("spool-twice-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let upload = |bytes: &[u8]| std::fs::write(dir.join("pass.lp"), bytes).unwrap();
        for why in ["first: truncated", "second: empty"] {
            upload(b"recording");
            let failed = settle(
                "uhf",
                &dir,
                &dir.join("pass.lp"),
                FileState::Failed,
                Some(why),
            );
            assert!(failed.is_some());
        }
        let report = on_disk(&dir, "pass.lp").unwrap();
        assert_eq!(report.state, FileState::Failed);
        assert_eq!(report.reason.as_deref(), Some("second: empty"));
        assert_eq!(report.moved_to.as_deref(), Some("pass.lp.1"));
        upload(b"recording");
        assert_eq!(on_disk(&dir, "pass.lp").unwrap().state, FileState::Waiting);
        assert!(on_disk(&dir, "pass").is_none() && on_disk(&dir, "pass.lp.1").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
