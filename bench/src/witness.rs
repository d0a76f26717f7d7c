//! A writer beside the throttle run's daemon, outside its cgroup, that times small synced writes to
//! the archive's disk: what the disk itself makes any durable write wait, throttle or not.
//!
//! An emergency is acknowledged once its journal's `fdatasync` returns, and no sync returns while
//! the disk (on a virtual machine, the host behind it) holds its writes or its cache flush. Stalls
//! the witness sees in the same run are the disk's, not the daemon's; the report prints them next
//! to the emergency-only sources' ACK latency so that the two can be told apart.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::control::LatencySummary;

/// One page per write, a write every [`EVERY`]: often enough to see any stall of the disk that
/// matters to a 50 ms target, seldom enough not to add much to its cache flushes.
const PAGE: usize = 4096;
const EVERY: Duration = Duration::from_millis(20);
/// The pages the writes go round, so the file stays small.
const PAGES: u64 = 256;

/// The witness's thread; [`Witness::stop`], or a drop on an error's way out, ends it and deletes
/// its file.
pub struct Witness {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<(u64, u64)>>>,
    path: PathBuf,
}

impl Witness {
    /// Starts writing to a file of its own in `dir`, which should be on the archive's disk.
    pub fn start(dir: &Path) -> Result<Witness, String> {
        let path = dir.join(format!("aggregator-bench-witness-{}", std::process::id()));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|e| format!("witness: cannot create {}: {e}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let page = [0x5a_u8; PAGE];
            let mut samples = Vec::new();
            let mut at = 0;
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                let synced = file
                    .write_all_at(&page, at % PAGES * PAGE as u64)
                    .and_then(|()| file.sync_data());
                if synced.is_err() {
                    break;
                }
                samples.push((started.elapsed().as_nanos() as u64, 1));
                at += 1;
                std::thread::sleep(EVERY);
            }
            samples
        });
        Ok(Witness {
            stop,
            thread: Some(thread),
            path,
        })
    }

    /// Ends the writes: the latency of each write and its sync, over the writes made.
    pub fn stop(mut self) -> LatencySummary {
        LatencySummary::of(self.end())
    }

    fn end(&mut self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self
            .thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default();
        let _ = fs::remove_file(&self.path);
        samples
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.end();
        }
    }
}
