//! Where exported frames go: the trait an export writes to, and its text and byte formats' sink.

use std::io::{self, Write};

use crate::archive::query::export::{Format, Rows};
use crate::archive::read::ArchivedFrame;

/// Where exported frames go: a file in some format.
pub trait ExportSink {
    /// Takes the next frames, in archive order.
    fn frames(&mut self, frames: &[ArchivedFrame]) -> io::Result<()>;
    /// Takes the end: everything is written out.
    fn finish(&mut self) -> io::Result<()>;
}

/// Rows of a text or byte format ([`Rows`]) written to `out`, a chunk at a time.
pub struct RowSink<'a> {
    rows: Rows,
    out: &'a mut dyn Write,
    buf: Vec<u8>,
}

impl<'a> RowSink<'a> {
    pub fn new(format: Format, out: &'a mut dyn Write) -> RowSink<'a> {
        let (mut rows, mut buf) = (Rows::new(format), Vec::new());
        rows.start(&mut buf);
        RowSink { rows, out, buf }
    }
}

impl ExportSink for RowSink<'_> {
    fn frames(&mut self, frames: &[ArchivedFrame]) -> io::Result<()> {
        for frame in frames {
            self.rows.write(frame, &mut self.buf);
        }
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}
