//! `aggregator archive export`: the frames received in a time window, read from the files, written
//! to a file an analyst opens (DuckDB, pandas, Spark read Parquet and CSV).
//!
//! It reads through the archive's read side with the window, as a follower does, so it reads only
//! the parts of the segments that can hold it; from the files alone, each shard up to its newest
//! segment's last whole record, so it runs on a stopped archive or beside a running daemon
//! (read-only: it takes no lock, and frames stored after it began are not in the file).

use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::archive::query::export::ExportSink;
use crate::archive::read::stopped_ends;
use crate::archive::read::{
    ArchivedFrame, DamagedRange, Earliest, OnGap, ReadError, ShardCursors, Start,
};
use crate::domain::filter::FrameFilter;

/// How far an export has come, for its progress line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub frames: u64,
    /// Payload bytes exported.
    pub bytes: u64,
    /// The newest received time exported (ns since the epoch).
    pub newest: Option<u64>,
}

/// What an export wrote, and what it found deleted of its window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    pub progress: Progress,
    /// Shards whose oldest frame left is after the window's start (retention deleted the rest).
    pub earliest: Vec<Earliest>,
    /// Damaged records passed over: the rest of the window was exported.
    pub damaged: Vec<DamagedRange>,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the archive: {0}")]
    Read(#[from] ReadError),
    #[error("cannot write the export: {0}")]
    Write(io::Error),
}

/// Exports the frames `filter` wants of the archive at `root` to `sink`, calling `progress` after
/// each chunk read (at most about 256 KiB of records: memory stays bounded whatever the window).
pub fn export(
    root: &Path,
    filter: FrameFilter,
    sink: &mut dyn ExportSink,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Exported, ExportError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ExportError::Write)?;
    runtime.block_on(async {
        let ends = stopped_ends(root).map_err(ReadError::Unreadable)?;
        let (wanted, on_gap) = (Arc::new(filter), OnGap::End);
        let cursors = ShardCursors::locate(root, &ends, &Start::Oldest, wanted, on_gap).await?;
        let mut cursors = cursors.passing_damage().uncaching();
        let mut exported = Exported {
            earliest: cursors.take_earliest(),
            ..Exported::default()
        };
        let copied = copy(&mut cursors, sink, &mut exported, progress).await;
        if let Err(ExportError::Read(_)) = copied {
            // The file holds what came before, complete (a Parquet file its footer): the read
            // error is what is reported, whether this ends the file or not.
            let _ = sink.finish();
        }
        copied?;
        sink.finish().map_err(ExportError::Write)?;
        Ok(exported)
    })
}

/// Writes every frame `cursors` read to `sink`, a chunk at a time, noting the damaged records
/// passed over in `exported`.
async fn copy(
    cursors: &mut ShardCursors,
    sink: &mut dyn ExportSink,
    exported: &mut Exported,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), ExportError> {
    while let Some(runs) = cursors.next_runs().await? {
        exported.damaged.extend(cursors.take_damaged());
        let frames: Vec<ArchivedFrame> =
            runs.into_iter().flat_map(|run| run.into_frames()).collect();
        let done = &mut exported.progress;
        for frame in &frames {
            done.frames += 1;
            done.bytes += frame.frame.payload.len() as u64;
            done.newest = done.newest.max(Some(frame.frame.received_unix_ns));
        }
        sink.frames(&frames).map_err(ExportError::Write)?;
        progress(done);
    }
    exported.damaged.extend(cursors.take_damaged());
    Ok(())
}
