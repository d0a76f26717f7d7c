//! A link's backfill counters (`spool_dir`): what its station's
//! recordings brought, so that an operator watches an import go in and sees one fail
//! (`/stats`' `links[].backfill`, `/metrics`' `aggregator_link_backfill_*`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};

/// How many files' reports a link keeps: the newest.
const KEPT_REPORTS: usize = 1024;

/// Bumped by the link's spool watcher once per chunk of a file.
#[derive(Debug, Default)]
pub(crate) struct BackfillCounters {
    importing: AtomicU64,
    files_done: AtomicU64,
    files_failed: AtomicU64,
    /// What the imports read and stored, summed.
    totals: Mutex<BackfillProgress>,
    spool_unreadable: AtomicBool,
    /// The newest files' reports, by name, oldest first.
    reports: Mutex<VecDeque<(String, FileReport)>>,
}

/// Where a file of the spool stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// In the spool, not taken yet.
    Waiting,
    Importing,
    /// Every packet stored from it is durable; it is in `done/`.
    Done,
    /// It could not be read to its end; it is in `failed/`, the reason beside it.
    Failed,
}

/// What became of a file of the spool (`GET /links/{link}/spool/{file}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileReport {
    pub state: FileState,
    /// What the import counted; `null` for a file the daemon did not import since its start.
    pub imported: Option<BackfillProgress>,
    /// Why it failed.
    pub reason: Option<String>,
    /// Its name in `done/` or `failed/` (a name taken there gets a number).
    pub moved_to: Option<String>,
}

/// An import's totals so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BackfillProgress {
    pub bytes: u64,
    pub packets: u64,
    pub stored: u64,
    pub held: u64,
    pub unplaced: u64,
    pub damaged_ranges: u64,
    pub damaged_bytes: u64,
    /// Frames and packets the link's checks refused (not a whole packet, another KISS port, a
    /// transfer frame dropped): counted here, not in the link's live counters.
    pub rejected: u64,
}

/// One reading of a link's backfill counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackfillSnapshot {
    /// Files being imported now (0 or 1).
    pub importing: u64,
    /// Files imported whole: in `done/`.
    pub files_done: u64,
    /// Files that could not be read to their end: in `failed/`, with the reason beside.
    pub files_failed: u64,
    /// What the imports read and stored, summed.
    #[serde(flatten)]
    pub totals: BackfillProgress,
    /// Whether the spool directory cannot be read now.
    pub spool_unreadable: bool,
}

impl BackfillProgress {
    /// Adds what an import counted from `before` to `now` (its totals then and now).
    fn add_since(&mut self, before: &BackfillProgress, now: &BackfillProgress) {
        let fields = |p: &BackfillProgress| {
            [
                p.bytes,
                p.packets,
                p.stored,
                p.held,
                p.unplaced,
                p.damaged_ranges,
                p.damaged_bytes,
                p.rejected,
            ]
        };
        let mine = [
            &mut self.bytes,
            &mut self.packets,
            &mut self.stored,
            &mut self.held,
            &mut self.unplaced,
            &mut self.damaged_ranges,
            &mut self.damaged_bytes,
            &mut self.rejected,
        ];
        for ((mine, now), before) in mine.into_iter().zip(fields(now)).zip(fields(before)) {
            *mine += now.saturating_sub(before);
        }
    }
}

impl BackfillCounters {
    pub(crate) fn started(&self) {
        self.importing.fetch_add(1, Relaxed);
    }

    pub(crate) fn finished(&self) {
        self.importing.fetch_sub(1, Relaxed);
    }

    /// An import went from `before` to `now` (its totals so far).
    pub(crate) fn progress(&self, before: &BackfillProgress, now: &BackfillProgress) {
        let mut totals = self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        totals.add_since(before, now);
    }

    pub(crate) fn file_done(&self) {
        self.files_done.fetch_add(1, Relaxed);
    }

    pub(crate) fn file_failed(&self) {
        self.files_failed.fetch_add(1, Relaxed);
    }

    pub(crate) fn spool_unreadable(&self, unreadable: bool) {
        self.spool_unreadable.store(unreadable, Relaxed);
    }

    /// What became of `file`, as the import now says.
    pub(crate) fn report(&self, file: &str, report: FileReport) {
        let mut reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        reports.retain(|(name, _)| name != file);
        if reports.len() >= KEPT_REPORTS {
            reports.pop_front();
        }
        reports.push_back((file.to_owned(), report));
    }

    /// The report of `file`, if the daemon imported it since its start.
    pub(crate) fn file(&self, file: &str) -> Option<FileReport> {
        let reports = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        reports
            .iter()
            .find(|(name, _)| name == file)
            .map(|(_, r)| r.clone())
    }

    pub(crate) fn snapshot(&self) -> BackfillSnapshot {
        let totals = *self.totals.lock().unwrap_or_else(PoisonError::into_inner);
        BackfillSnapshot {
            importing: self.importing.load(Relaxed),
            files_done: self.files_done.load(Relaxed),
            files_failed: self.files_failed.load(Relaxed),
            totals,
            spool_unreadable: self.spool_unreadable.load(Relaxed),
        }
    }
}
