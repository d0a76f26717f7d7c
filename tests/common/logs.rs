//! Log capture: what the daemon logs, as text, for a test to read.

use std::io;
use std::sync::{Arc, Mutex};

/// A subscriber that writes every event at `level` and above, as text, into the returned buffer.
pub fn log_capture(
    level: tracing::Level,
) -> (Arc<Mutex<Vec<u8>>>, impl tracing::Subscriber + Send + Sync) {
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(level)
        .with_writer({
            let log = Arc::clone(&log);
            move || LogWriter(Arc::clone(&log))
        })
        .finish();
    (log, subscriber)
}

/// Collects log output: `tracing_subscriber::fmt().with_writer(...)` of a [`LogWriter`] per write.
pub struct LogWriter(pub Arc<Mutex<Vec<u8>>>);

impl io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
