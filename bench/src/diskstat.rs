//! The archive's disk as the kernel counts its I/O (`/sys/dev/block/MAJ:MIN/stat`,
//! Documentation/block/stat.rst): what it wrote, discarded and flushed over a window, and how long
//! it was busy. Every writer of the disk counts, not only the daemon: on a shared machine the
//! figures are the disk's, and say what the daemon's writes competed with.

use serde::Serialize;

/// Bytes in a sector of these counters, whatever the disk's own sector size.
const SECTOR: u64 = 512;

/// A disk's cumulative counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub written_sectors: u64,
    pub discarded_sectors: u64,
    /// Milliseconds spent on discards, summed over the requests.
    pub discard_ms: u64,
    pub flushes: u64,
    /// Milliseconds spent on flushes, summed over the requests.
    pub flush_ms: u64,
    /// Milliseconds during which the disk had at least one request in flight.
    pub busy_ms: u64,
}

impl DiskCounters {
    /// The counters of disk `device` (`MAJ:MIN`); `None` where the kernel keeps no discard and
    /// flush counters (before Linux 5.5) or the file cannot be read.
    pub fn read(device: &str) -> Option<DiskCounters> {
        let stat = std::fs::read_to_string(format!("/sys/dev/block/{device}/stat")).ok()?;
        DiskCounters::parse(&stat)
    }

    /// The 17 fields of a `stat` line: reads (4), writes (4), in flight, busy ms, weighted ms,
    /// discards (4), flushes (2).
    fn parse(line: &str) -> Option<DiskCounters> {
        let fields: Vec<u64> = line
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let field = |n: usize| fields.get(n - 1).copied();
        Some(DiskCounters {
            written_sectors: field(7)?,
            busy_ms: field(10)?,
            discarded_sectors: field(14)?,
            discard_ms: field(15)?,
            flushes: field(16)?,
            flush_ms: field(17)?,
        })
    }
}

/// What a disk did over a window.
#[derive(Debug, Clone, Serialize)]
pub struct DiskWindow {
    /// The disk, `MAJ:MIN`.
    pub device: String,
    pub written_mib_per_s: f64,
    pub discarded_mib_per_s: f64,
    /// Milliseconds of discards per second of the window (above 1,000: several at once).
    pub discard_ms_per_s: f64,
    pub flushes_per_s: f64,
    /// The mean time a flush took.
    pub flush_ms_mean: f64,
    /// Percent of the window the disk had a request in flight.
    pub busy_pct: f64,
}

impl DiskWindow {
    /// From the counters of `device` at the window's start and end, `window_s` apart.
    pub fn between(
        device: &str,
        start: &DiskCounters,
        end: &DiskCounters,
        window_s: f64,
    ) -> DiskWindow {
        let delta = |f: fn(&DiskCounters) -> u64| f(end).saturating_sub(f(start)) as f64;
        let mib_per_s = |sectors: f64| sectors * SECTOR as f64 / (1024.0 * 1024.0) / window_s;
        let flushes = delta(|c| c.flushes);
        DiskWindow {
            device: device.to_string(),
            written_mib_per_s: mib_per_s(delta(|c| c.written_sectors)),
            discarded_mib_per_s: mib_per_s(delta(|c| c.discarded_sectors)),
            discard_ms_per_s: delta(|c| c.discard_ms) / window_s,
            flushes_per_s: flushes / window_s,
            flush_ms_mean: match flushes > 0.0 {
                true => delta(|c| c.flush_ms) / flushes,
                false => 0.0,
            },
            busy_pct: delta(|c| c.busy_ms) / 10.0 / window_s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_are_the_writes_discards_flushes_and_busy_time_of_the_line() {
        let line = " 1084360    27531 65812516  1199778  1499671   199580 946924768  1979741        0   526084  3492251   121256       71 857909568   132293   374020   180437\n";
        let c = DiskCounters::parse(line).expect("a Linux 5.5+ stat line");
        assert_eq!(
            c,
            DiskCounters {
                written_sectors: 946_924_768,
                discarded_sectors: 857_909_568,
                discard_ms: 132_293,
                flushes: 374_020,
                flush_ms: 180_437,
                busy_ms: 526_084,
            }
        );
        // Before Linux 5.5: no discard or flush fields.
        assert_eq!(DiskCounters::parse("1 2 3 4 5 6 7 8 9 10 11"), None);
    }

    #[test]
    fn a_window_s_figures_are_per_second_and_per_flush() {
        let start = DiskCounters::default();
        let end = DiskCounters {
            written_sectors: 2 * 2048 * 100,
            discarded_sectors: 2 * 2048 * 50,
            discard_ms: 600,
            flushes: 40,
            flush_ms: 200,
            busy_ms: 1_500,
        };
        let w = DiskWindow::between("254:0", &start, &end, 2.0);
        assert_eq!(w.written_mib_per_s, 100.0);
        assert_eq!(w.discarded_mib_per_s, 50.0);
        assert_eq!(w.discard_ms_per_s, 300.0);
        assert_eq!(w.flushes_per_s, 20.0);
        assert_eq!(w.flush_ms_mean, 5.0);
        assert_eq!(w.busy_pct, 75.0);
    }
}
