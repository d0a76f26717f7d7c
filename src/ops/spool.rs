//! A link's spool directory over the monitor, for `aggregator backfill`: `PUT
//! /links/{link}/spool/{file}` uploads a recording into it, `GET` the same path says where the
//! file stands (docs/http-api.md, "Backfill").
//!
//! Why through the spool and not straight into the link: the spool already imports a file
//! exactly once, durably, after a restart too, and says what became of it; an upload only has to
//! put a complete file there. It is written under a dotted name (which the spool leaves alone),
//! synced, and renamed into place, so the watcher never takes half a file, and a name taken
//! already (in the spool, `done/` or `failed/`) gets a number: no file is overwritten.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;

use crate::archive::retention::catalogue::free_space;
use crate::archive::retention::plan;
use crate::config::RetentionConfig;
use crate::links::{on_disk, place, takes_name, UPLOADING};
use crate::stats::{FileReport, FileState, Stats};

/// How many bytes of an upload are written at a time.
const WRITE_BYTES: usize = 1 << 20;

/// Each link's spool directory, by link name, whether they are watched (not where the archive
/// keeps no files: nothing could tell what it holds), and the links' counters.
#[derive(Debug, Clone)]
pub(crate) struct Spools {
    pub dirs: Arc<HashMap<String, PathBuf>>,
    pub watched: bool,
    pub stats: Stats,
    /// The archive's retention, whose free space an upload leaves alone.
    pub retention: Arc<RetentionConfig>,
}

/// A refusal: its status and reason.
type Refusal = (StatusCode, String);

fn refused((status, why): Refusal) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// The spool of `link`, and `file` if it may be a file of it.
fn spool_of(spools: &Spools, link: &str, file: &str) -> Result<PathBuf, Refusal> {
    let Some(dir) = spools.dirs.get(link) else {
        let why = format!("no link {link:?} has a spool_dir");
        return Err((StatusCode::NOT_FOUND, why));
    };
    if !spools.watched {
        let why = format!("the spool_dir of link {link:?} is not watched: the daemon keeps no archive files (archive.kind = \"count\")");
        return Err((StatusCode::NOT_FOUND, why));
    }
    if !takes_name(file) {
        let why = format!("{file:?} is no name of a complete file (one path component, not starting with '.', not ending in .part or .tmp, not done or failed)");
        return Err((StatusCode::BAD_REQUEST, why));
    }
    Ok(dir.clone())
}

/// `PUT /links/{link}/spool/{file}`: the body, as a file of the spool; answers 201 with the name
/// it took once it is there, complete and synced.
pub(crate) async fn put(
    State(spools): State<Spools>,
    UrlPath((link, file)): UrlPath<(String, String)>,
    body: Body,
) -> Response {
    let dir = match spool_of(&spools, &link, &file) {
        Ok(dir) => dir,
        Err(refusal) => return refused(refusal),
    };
    let upload = match Upload::create(&dir, &file) {
        Ok(upload) => upload,
        Err(why) => return refused((StatusCode::INTERNAL_SERVER_ERROR, why)),
    };
    let retention = Arc::clone(&spools.retention);
    let least_free = move |size| plan::least_free(&retention, size).unwrap_or(size / 20);
    match receive(&dir, upload, &file, body, least_free).await {
        Ok((name, bytes)) => {
            tracing::info!(link, file = %name, bytes, "backfill: recording uploaded into the spool");
            let answer = serde_json::json!({ "file": name, "bytes": bytes });
            (StatusCode::CREATED, Json(answer)).into_response()
        }
        Err((status, why)) => {
            tracing::warn!(link, file, error = %why, "backfill: upload not taken");
            refused((status, why))
        }
    }
}

/// An upload's file in the spool, under a dotted name of its own (which the spool leaves
/// alone); removed when dropped unless placed: an upload that breaks off, or whose connection is
/// cut, leaves nothing behind.
struct Upload {
    path: PathBuf,
    out: Option<std::fs::File>,
    placed: bool,
}

/// Uploads under way, numbered: two uploads of one name never share a file.
static UPLOADS: AtomicU64 = AtomicU64::new(0);

impl Upload {
    fn create(dir: &Path, file: &str) -> Result<Upload, String> {
        let n = UPLOADS.fetch_add(1, Relaxed);
        let path = dir.join(format!("{UPLOADING}{}-{n}-{file}", std::process::id()));
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path);
        let out = out.map_err(|err| format!("cannot write into the spool: {err}"))?;
        Ok(Upload {
            path,
            out: Some(out),
            placed: false,
        })
    }

    /// Syncs the file and moves it into `dir` under the first free name near `file` (never
    /// replacing one); the name it took.
    fn place(&mut self, dir: &Path, file: &str) -> std::io::Result<String> {
        if let Some(out) = self.out.take() {
            out.sync_all()?;
        }
        let name = place(
            &self.path,
            &[dir, &dir.join("done"), &dir.join("failed")],
            file,
        )?;
        self.placed = true;
        Ok(name)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn failed(why: String) -> Refusal {
    (StatusCode::INTERNAL_SERVER_ERROR, why)
}

/// Whether `bytes` more leave at least `least_free` of its size free on the file system of `dir`
/// (else 507).
fn room(dir: &Path, bytes: usize, least_free: impl Fn(u64) -> u64) -> Result<(), Refusal> {
    let (free, size) = free_space(dir).map_err(|err| failed(err.to_string()))?;
    let least = least_free(size);
    match free.saturating_sub(bytes as u64) >= least {
        true => Ok(()),
        false => Err((
            StatusCode::INSUFFICIENT_STORAGE,
            format!("the spool's file system would have less than {least} bytes free (archive.retention.min_free_bytes or min_free_ratio, else a twentieth of it): the upload is refused"),
        )),
    }
}

/// Writes `body` into `upload`, syncs it, and places it in `dir` under a free name near `file`;
/// refused (507) where a write would leave less free on the spool's file system than
/// `least_free` of its size.
async fn receive(
    dir: &Path,
    mut upload: Upload,
    file: &str,
    body: Body,
    least_free: impl Fn(u64) -> u64 + Clone + Send + 'static,
) -> Result<(String, u64), Refusal> {
    let (mut stream, mut pending, mut bytes) = (body.into_data_stream(), Vec::new(), 0u64);
    loop {
        let chunk = stream.next().await;
        if let Some(chunk) = &chunk {
            let chunk =
                (chunk.as_ref()).map_err(|err| failed(format!("the upload broke off: {err}")))?;
            pending.extend_from_slice(chunk);
            bytes += chunk.len() as u64;
        }
        if pending.len() >= WRITE_BYTES || chunk.is_none() {
            let (written, mut out) = (std::mem::take(&mut pending), upload.out.take());
            let (dir, least_free) = (dir.to_owned(), least_free.clone());
            let wrote = tokio::task::spawn_blocking(move || {
                let wrote = room(&dir, written.len(), least_free).and_then(|()| {
                    let wrote = out.as_mut().map_or(Ok(()), |out| out.write_all(&written));
                    wrote.map_err(|err| failed(format!("cannot write into the spool: {err}")))
                });
                (out, wrote)
            });
            let (out, wrote) = wrote.await.map_err(|err| failed(err.to_string()))?;
            upload.out = out;
            wrote?;
        }
        if chunk.is_none() {
            break;
        }
    }
    let (dir, file) = (dir.to_owned(), file.to_owned());
    let placed = tokio::task::spawn_blocking(move || upload.place(&dir, &file));
    let name = (placed.await.map_err(|err| failed(err.to_string()))?)
        .map_err(|err| failed(format!("cannot place the upload in the spool: {err}")))?;
    Ok((name, bytes))
}

/// `GET /links/{link}/spool/{file}`: where the file stands (`state`), what its import counted,
/// why it failed.
pub(crate) async fn status(
    State(spools): State<Spools>,
    UrlPath((link, file)): UrlPath<(String, String)>,
) -> Response {
    let dir = match spool_of(&spools, &link, &file) {
        Ok(dir) => dir,
        Err(refusal) => return refused(refusal),
    };
    let known = spools.stats.spool_file(&link, &file);
    match standing(known, &dir, &file) {
        Some(report) => Json(report).into_response(),
        None => refused((
            StatusCode::NOT_FOUND,
            format!("no file {file:?} in the spool of {link:?}"),
        )),
    }
}

/// Where `file` of the spool at `dir` stands: what its import said (`known`), unless that import
/// moved it out and a file of that name is in the spool again (a new one, which waits), else
/// what the spool's folders hold.
fn standing(known: Option<FileReport>, dir: &Path, file: &str) -> Option<FileReport> {
    let settled = |report: &FileReport| {
        matches!(report.state, FileState::Done | FileState::Failed) && report.moved_to.is_some()
    };
    let again = || dir.join(file).is_file();
    match known {
        Some(report) if settled(&report) && again() => on_disk(dir, file),
        Some(report) => Some(report),
        None => on_disk(dir, file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file imported, then one of the same name in the spool again: the new one waits, whatever
    /// the first import said.
    #[test]
    fn a_file_of_a_name_imported_before_waits() {
        let dir = std::env::temp_dir().join(format!("spool-again-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("done")).unwrap();
        std::fs::write(dir.join("done/pass.lp"), b"imported").unwrap();
        let done = FileReport {
            state: FileState::Done,
            imported: None,
            reason: None,
            moved_to: Some("pass.lp".into()),
        };
        let state = |known| standing(known, &dir, "pass.lp").map(|r| r.state);
        assert_eq!(state(Some(done.clone())), Some(FileState::Done));
        std::fs::write(dir.join("pass.lp"), b"a new recording").unwrap();
        let unmoved = FileReport {
            moved_to: None,
            ..done.clone()
        };
        assert_eq!(state(Some(done)), Some(FileState::Waiting));
        // Its move failed: the file in the spool is the one imported.
        assert_eq!(state(Some(unmoved)), Some(FileState::Done));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two uploads of one name at once: each writes a file of its own, and neither replaces the
    /// other, nor a file `done/` holds.
    #[test]
    fn two_uploads_of_one_name_keep_both_files() {
        let dir = std::env::temp_dir().join(format!("spool-uploads-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("done")).unwrap();
        std::fs::write(dir.join("done/pass.lp"), b"imported").unwrap();
        let (mut a, mut b) = (
            Upload::create(&dir, "pass.lp").unwrap(),
            Upload::create(&dir, "pass.lp").unwrap(),
        );
        assert_ne!(a.path, b.path);
        a.out.as_mut().unwrap().write_all(b"first").unwrap();
        b.out.as_mut().unwrap().write_all(b"second").unwrap();
        assert_eq!(b.place(&dir, "pass.lp").unwrap(), "pass.lp.1");
        assert_eq!(a.place(&dir, "pass.lp").unwrap(), "pass.lp.2");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        assert_eq!(
            (read("done/pass.lp"), read("pass.lp.1"), read("pass.lp.2")),
            (b"imported".to_vec(), b"second".to_vec(), b"first".to_vec())
        );
        // One that breaks off leaves nothing.
        let broken = Upload::create(&dir, "pass.lp").unwrap();
        let path = broken.path.clone();
        drop(broken);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
