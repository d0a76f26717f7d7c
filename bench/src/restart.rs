//! The restart run: what the durable daemon's recovery costs when its newest segment is full.
//!
//! On start the archive reads its newest segment to rebuild every source's resume point, before a
//! single connection is served: the time it takes is how long a fleet reconnecting after a restart
//! waits, and the memory it takes comes on top of a running daemon's, where a container's memory
//! limit would cut it off. A full segment is the worst case; the parent writes one, in the records
//! the daemon writes for `sources` saturating sources at 64 B, and a child of this binary opens
//! the archive as the daemon does (`SegmentSink::open`) and reports.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use aggregator::archive::format;
use aggregator::archive::write::SegmentSink;
use aggregator::config::ArchiveConfig;
use aggregator::{Priority, SourceKind};

use crate::control::{self, emit, ChildMsg, Recovered};

/// Frames per batch, and so per FRAMES record: the daemon's default `max_batch_frames`.
const BATCH: u64 = 64;
/// Payload bytes per frame.
const PAYLOAD: usize = 64;

/// Writes segment 1 of an archive in `dir`, filled to `segment_bytes` the way the daemon fills
/// it: rounds of one 64-frame batch per source, each round followed by the sources' watermarks
/// one batch behind (acknowledgements follow the syncs). Returns the frames written.
pub fn write_full_segment(dir: &Path, segment_bytes: u64, sources: u32) -> io::Result<u64> {
    let payload = [0x5a; PAYLOAD];
    let mut out = format::MAGIC.to_vec();
    let mut round = Vec::new();
    let mut frames = 0;
    for r in 0.. {
        round.clear();
        let first = r * BATCH;
        for id in 0..sources {
            let batch = (first..first + BATCH).map(|sequence| (sequence, &payload[..]));
            let (kind, priority) = (SourceKind::LiveUplink, Priority::Routine);
            format::encode_frames(&mut round, kind, priority, id, 0, batch);
            if let Some(acked) = first.checked_sub(1) {
                format::encode_watermark(&mut round, kind, id, acked);
            }
        }
        if (out.len() + round.len()) as u64 > segment_bytes {
            break;
        }
        out.extend_from_slice(&round);
        frames += BATCH * u64::from(sources);
    }
    // Synced, as the daemon's segment is but for the appends since its last sync: the run times
    // reading it back, not writing it out.
    let mut file = fs::File::create(dir.join(format::segment_name(1)))?;
    file.write_all(&out)?;
    file.sync_all()?;
    Ok(frames)
}

/// The child: opens the archive in `dir` as the daemon does and reports how long that took and
/// the process's peak RSS.
pub fn recover(dir: &Path) -> ExitCode {
    let config = ArchiveConfig {
        dir: dir.to_path_buf(),
        ..aggregator::Config::default().archive
    };
    let started = Instant::now();
    let opened = SegmentSink::open(&config);
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    match opened {
        Ok((sink, resume)) => {
            let frames_above = resume.values().map(|r| r.already_stored.len()).sum();
            emit(&ChildMsg::Recovered(Recovered {
                open_ms,
                peak_rss_kib: control::peak_rss_kib(),
                sources: resume.len() as u64,
                frames_above,
            }));
            drop(sink);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!(
                "aggregator-bench: recovery of {} failed: {err}",
                dir.display()
            );
            ExitCode::FAILURE
        }
    }
}
