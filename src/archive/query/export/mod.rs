//! The archive's frames as rows for people and other programs: NDJSON, CSV, length-prefixed raw
//! payloads, CCSDS packets back to back, and Parquet. `aggregator archive export` writes them to a
//! file from a stopped archive (or beside a running daemon, read-only); the monitor's
//! `GET /archive/frames` streams them from the running daemon's archive.
//!
//! Why here and not in each of them: both read through the archive's read side
//! ([`crate::archive::read`]) with a time window, and a row must be the same whoever writes it, so
//! a file exported today and a query answered tomorrow compare line for line. The row layouts are
//! documented in `docs/http-api.md` ("Archive queries") and, with the Parquet schema, in
//! `docs/archive-tools.md` ("export"). [`ExportSink`] is where rows go: [`RowSink`] for the text
//! and byte formats, [`ParquetSink`] for Parquet.

mod behind;
mod parquet;
mod rows;
mod sink;

pub use self::parquet::{ParquetSink, COLUMNS};
pub use behind::WriteBehind;
pub use rows::{frame_json, Format, FormatError, Rows};
pub use sink::{ExportSink, RowSink};
