//! `--ack-log FILE`: every WELCOME and every acknowledgement a source takes, one line each, for a
//! harness that checks from the outside what the daemon promised (`deploy/powercut/run.sh` compares
//! each source's last acknowledgement before a power cut with its `resume_after` after it).
//!
//! Lines, in the order the sources took them (`KIND` is `live` or `replay`):
//!
//! ```text
//! welcome KIND ID RESUME_AFTER   # RESUME_AFTER is "-" when the WELCOME had none
//! ack KIND ID SEQUENCE           # an ACK, a CLOSE's final_ack, or a resume_after that covered frames
//! ```
//!
//! A source that knows several daemons (`--uplink A,B`) adds a fifth field to both, the address of
//! the daemon that said it (`ack live 3 41 127.0.0.1:7700`). With one daemon the lines keep their
//! four fields, which the readers of a single daemon's log (the power-cut harnesses) expect.
//!
//! The file is written through a buffer shared by all sources and flushed when the run ends.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::domain::frame::SourceKind;

/// A shared, buffered `--ack-log` file; cloning shares it.
#[derive(Clone)]
pub struct AckLog(Arc<Mutex<BufWriter<File>>>);

impl AckLog {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> std::io::Result<AckLog> {
        let file = File::create(path)?;
        Ok(AckLog(Arc::new(Mutex::new(BufWriter::new(file)))))
    }

    /// A WELCOME, with its `resume_after`, from `daemon` where the source knows several.
    pub(crate) fn welcome(
        &self,
        kind: SourceKind,
        id: u32,
        resume_after: Option<u64>,
        daemon: Option<&str>,
    ) {
        let kind = label(kind);
        let daemon = DaemonField(daemon);
        match resume_after {
            Some(sequence) => self.line(format_args!("welcome {kind} {id} {sequence}{daemon}")),
            None => self.line(format_args!("welcome {kind} {id} -{daemon}")),
        }
    }

    /// An acknowledgement up to `sequence`, from `daemon` where the source knows several.
    pub(crate) fn ack(&self, kind: SourceKind, id: u32, sequence: u64, daemon: Option<&str>) {
        let daemon = DaemonField(daemon);
        self.line(format_args!("ack {} {id} {sequence}{daemon}", label(kind)));
    }

    /// Writes what the buffer holds to the file.
    pub fn flush(&self) -> std::io::Result<()> {
        self.lock().flush()
    }

    fn line(&self, line: std::fmt::Arguments<'_>) {
        // A failed write is logged here; the final flush fails too and fails the run.
        if let Err(err) = writeln!(self.lock(), "{line}") {
            tracing::warn!(%err, "--ack-log: write failed");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BufWriter<File>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The fifth field of a line, with the space before it; nothing without a daemon to name.
struct DaemonField<'a>(Option<&'a str>);

impl std::fmt::Display for DaemonField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(address) => write!(f, " {address}"),
            None => Ok(()),
        }
    }
}

fn label(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::LiveUplink => "live",
        SourceKind::ArchivedReplay => "replay",
    }
}

impl std::fmt::Debug for AckLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckLog")
    }
}

impl PartialEq for AckLog {
    fn eq(&self, other: &AckLog) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_line_per_welcome_and_acknowledgement() {
        let path = std::env::temp_dir().join(format!("ack-log-test-{}", std::process::id()));
        let log = AckLog::create(&path).unwrap();
        let shared = log.clone();
        assert_eq!(log, shared);
        log.welcome(SourceKind::LiveUplink, 3, None, None);
        shared.ack(SourceKind::LiveUplink, 3, 41, None);
        log.welcome(SourceKind::ArchivedReplay, 1000, Some(7), None);
        log.welcome(SourceKind::LiveUplink, 4, None, Some("127.0.0.1:7702"));
        log.ack(SourceKind::LiveUplink, 4, 9, Some("127.0.0.1:7702"));
        log.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            text,
            "welcome live 3 -\nack live 3 41\nwelcome replay 1000 7\n\
             welcome live 4 - 127.0.0.1:7702\nack live 4 9 127.0.0.1:7702\n"
        );
    }
}
