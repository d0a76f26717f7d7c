//! Frames as an Apache Parquet file: one row per frame, typed columns, for DuckDB, pandas/pyarrow,
//! Polars or Spark.
//!
//! The columns are the NDJSON/CSV rows' (same names, same meanings), typed, then two more:
//!
//! | column | physical type | logical type | nullable |
//! | --- | --- | --- | --- |
//! | `received` | INT64 | TIMESTAMP(NANOS, UTC-adjusted) | no |
//! | `kind` | BYTE_ARRAY | STRING (`live`, `replay`) | no |
//! | `source` | INT32 | INTEGER(32, unsigned) | no |
//! | `sequence` | INT64 | INTEGER(64, unsigned) | no |
//! | `priority` | BYTE_ARRAY | STRING (`emergency`, `routine`) | no |
//! | `shard` | INT32 | INTEGER(32, unsigned) | no |
//! | `position` | BYTE_ARRAY | STRING (`SHARD/SEGMENT:OFFSET:INDEX`) | no |
//! | `payload` | BYTE_ARRAY | none (bytes) | no |
//! | `apid` | INT32 | none | yes: set when the payload is one whole CCSDS space packet |
//! | `station` | BYTE_ARRAY | STRING | yes: set for a link's frames |
//! | `link` | BYTE_ARRAY | STRING | yes: set for a link's frames |
//! | `mode` | BYTE_ARRAY | STRING (`realtime`, `playback`) | yes: set for a link's frames |
//! | `earth_received` | INT64 | TIMESTAMP(NANOS, UTC-adjusted) | yes: set when the station gave it |
//! | `ax25_from` | BYTE_ARRAY | STRING | yes: set for a frame that came in an AX.25 frame |
//! | `ax25_to` | BYTE_ARRAY | STRING | yes: as `ax25_from` |
//! | `recording` | BYTE_ARRAY | STRING | yes: set for a frame a backfill read from a recording |
//!
//! `apid` is the space packet's APID when the payload is exactly one packet of version 0 (its
//! header's length, packet data length + 7, is the payload's), as the TM outputs decide
//! ([`apid_of_packet`]); null for any other payload. The last seven are a link's reception
//! metadata (`docs/ground-segment.md`, "Reception metadata"); null for the ingest protocol's
//! sources.
//!
//! Why the `parquet` crate's low-level writer and not its arrow writer: a frame's values go
//! straight from the frame into the column writers (a payload as the archive's own `Bytes`, which
//! the encoder copies once into its page), where arrow would first copy every payload into an
//! array's buffer for the same writers to read; and without the `arrow` feature the crate brings
//! none of its six `arrow-*` crates (nor what they pull in) into the build.
//!
//! Row groups: frames are gathered until [`ROW_GROUP_ROWS`] rows or [`ROW_GROUP_PAYLOAD`] bytes of
//! payload, whichever comes first, then written as one row group, so memory stays bounded whatever
//! the window (the gathered frames hold the read buffers their payloads lie in;
//! `docs/bench/export.md` measured a peak RSS of 253-494 MiB). Compression: zstd, level 1, on every
//! column: DuckDB, pyarrow and Spark all read it, and the `parquet` crate's docs recommend it as
//! the balance of ratio, speed and support; snappy, the other codec they all read, was not measured against it.
//! Columns whose values hardly repeat (`received`, `sequence`, `position`, `payload`) are written
//! without a dictionary, and `payload` without min/max statistics (a byte-wise minimum of payloads
//! helps no query).
//!
//! Threads: the columns of a row group are encoded at once, each into a buffer of its own on one
//! of as many threads as the process may use (`available_parallelism`, which `taskset` and a
//! cgroup's CPU limit lower), the heaviest first, while the reader gathers the next row group;
//! once that is gathered, the encoded columns are written to the file in column order. zstd, the
//! encoders and the copies cost one to two microseconds a frame (`docs/bench/export.md`), which
//! on one thread held the export well under the disk's pace; the price is memory: two row
//! groups' frames and one's encoded columns.
//!
//! The writer needs only [`Write`]: no seeking, so standard output serves as well as a file.

use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical, ZstdLevel};
use parquet::column::writer::{get_column_writer, ColumnCloseResult, ColumnWriter};
use parquet::data_type::{ByteArray, ByteArrayType, DataType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesPtr};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::{ColumnDescPtr, ColumnPath, Type};

use crate::archive::query::export::ExportSink;
use crate::archive::read::ArchivedFrame;
use crate::protocol::ccsds::apid_of_packet;

/// A row group holds at most this many rows (the `parquet` crate's default maximum).
pub(crate) const ROW_GROUP_ROWS: usize = 1024 * 1024;

/// A row group holds at most about this many bytes of payload: it is written once its frames'
/// payloads reach this.
pub(crate) const ROW_GROUP_PAYLOAD: usize = 64 * 1024 * 1024;

/// Rows handed to a column writer at a time, so that the values of a column are never all in
/// memory at once (the frames are).
const BATCH: usize = 8192;

/// The columns, in order: the names a reader's query uses.
pub const COLUMNS: [&str; 16] = [
    "received",
    "kind",
    "source",
    "sequence",
    "priority",
    "shard",
    "position",
    "payload",
    "apid",
    "station",
    "link",
    "mode",
    "earth_received",
    "ax25_from",
    "ax25_to",
    "recording",
];

/// The order the columns are handed to the encoding threads, as indexes into [`COLUMNS`]: the
/// heaviest first (payloads, the position strings, then the columns of a value a row), so that
/// the last to finish is a light one.
const ENCODING_ORDER: [usize; 16] = [7, 6, 0, 3, 2, 5, 8, 1, 4, 9, 10, 11, 12, 13, 14, 15];

/// Writes frames to `W` as a Parquet file, a row group at a time; [`ExportSink::finish`] writes
/// the last row group and the footer.
pub struct ParquetSink<W: Write + Send> {
    /// `None` once finished.
    writer: Option<SerializedFileWriter<W>>,
    /// What the column writers are made with (the file writer's own).
    properties: WriterPropertiesPtr,
    /// How many columns are encoded at once.
    threads: NonZeroUsize,
    /// A buffer for each column's encoded pages, kept from one row group to the next: a fresh
    /// one of tens of MiB is fresh pages for the kernel to fault in.
    buffers: Vec<Vec<u8>>,
    /// The output, once finished.
    finished: Option<W>,
    /// The row group before it, being encoded meanwhile.
    encoding: Option<Encoding>,
    /// The frames of the row group being gathered.
    group: Vec<ArchivedFrame>,
    /// Their payloads' bytes.
    group_payload: usize,
    /// When a row group is written.
    limits: RowGroupLimits,
}

/// A row group is written once it holds `rows` rows or `payload` bytes of payloads.
#[derive(Debug, Clone, Copy)]
struct RowGroupLimits {
    rows: usize,
    payload: usize,
}

impl<W: Write + Send> ParquetSink<W> {
    /// Starts the file: writes its magic bytes to `out`.
    pub fn new(out: W) -> io::Result<ParquetSink<W>> {
        let limits = RowGroupLimits {
            rows: ROW_GROUP_ROWS,
            payload: ROW_GROUP_PAYLOAD,
        };
        ParquetSink::with_limits(out, limits)
    }

    fn with_limits(out: W, limits: RowGroupLimits) -> io::Result<ParquetSink<W>> {
        let properties = Arc::new(properties());
        let writer = SerializedFileWriter::new(out, Arc::new(schema()?), Arc::clone(&properties))
            .map_err(to_io)?;
        let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Ok(ParquetSink {
            writer: Some(writer),
            properties,
            threads,
            buffers: COLUMNS.iter().map(|_| Vec::new()).collect(),
            finished: None,
            encoding: None,
            group: Vec::new(),
            group_payload: 0,
            limits,
        })
    }

    /// The output, once [`ExportSink::finish`] has written the file's end.
    pub fn into_inner(self) -> Option<W> {
        self.finished
    }

    /// Starts encoding the gathered frames as a row group, then writes the row group before it
    /// (whose encoding ran while these were gathered) to the file.
    fn write_group(&mut self) -> io::Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let writer = self.writer.as_ref().ok_or_else(finished)?;
        let columns = writer.schema_descr().columns().to_vec();
        let (properties, threads) = (Arc::clone(&self.properties), self.threads);
        let frames = std::mem::take(&mut self.group);
        let buffers = std::mem::take(&mut self.buffers);
        self.group_payload = 0;
        let encoding = std::thread::Builder::new()
            .name("parquet-encode".into())
            .spawn(move || encode_columns(&columns, &properties, &frames, threads, buffers))?;
        match self.encoding.replace(encoding) {
            Some(before) => self.append(before),
            None => Ok(()),
        }
    }

    /// Waits for a row group's columns to be encoded and writes them to the file, keeping their
    /// buffers for a row group to come.
    fn append(&mut self, encoding: Encoding) -> io::Result<()> {
        let encoded = encoding
            .join()
            .map_err(|_| io::Error::other("a Parquet encoding thread panicked"))?
            .map_err(to_io)?;
        let writer = self.writer.as_mut().ok_or_else(finished)?;
        let mut group = writer.next_row_group().map_err(to_io)?;
        let keep = self.buffers.is_empty();
        for column in encoded {
            group
                .append_column(&column.bytes, column.close)
                .map_err(to_io)?;
            if keep {
                let buffer = column.bytes.try_into_mut().map(Vec::from);
                self.buffers.push(buffer.unwrap_or_default());
            }
        }
        group.close().map_err(to_io)?;
        Ok(())
    }
}

/// A row group's columns being encoded on a thread of their own (and the threads it starts),
/// while the next row group is gathered.
type Encoding = std::thread::JoinHandle<Result<Vec<EncodedColumn>, ParquetError>>;

impl<W: Write + Send> ExportSink for ParquetSink<W> {
    fn frames(&mut self, frames: &[ArchivedFrame]) -> io::Result<()> {
        if self.writer.is_none() {
            return Err(finished());
        }
        for frame in frames {
            self.group.push(frame.clone());
            self.group_payload += frame.frame.payload.len();
            let limits = self.limits;
            if self.group.len() >= limits.rows || self.group_payload >= limits.payload {
                self.write_group()?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.write_group()?;
        if let Some(last) = self.encoding.take() {
            self.append(last)?;
        }
        let writer = self.writer.take().ok_or_else(finished)?;
        let mut out = writer.into_inner().map_err(to_io)?;
        out.flush()?;
        self.finished = Some(out);
        Ok(())
    }
}

/// A column of a row group, encoded: its pages, and what its writer said of them when closed.
struct EncodedColumn {
    bytes: Bytes,
    close: ColumnCloseResult,
}

/// Encodes the columns described by `columns` (the schema's, in [`COLUMNS`] order) of `frames`'
/// rows, on up to `threads` threads, each column into its buffer of `buffers` (emptied first; one
/// is made where none is given); they come back in column order.
fn encode_columns(
    columns: &[ColumnDescPtr],
    properties: &WriterPropertiesPtr,
    frames: &[ArchivedFrame],
    threads: NonZeroUsize,
    buffers: Vec<Vec<u8>>,
) -> Result<Vec<EncodedColumn>, ParquetError> {
    let buffers: Vec<Mutex<Vec<u8>>> = buffers.into_iter().map(Mutex::new).collect();
    let buffer = |n: usize| {
        let taken = buffers
            .get(n)
            .and_then(|b| b.lock().ok().map(|mut b| std::mem::take(&mut *b)));
        let mut buffer = taken.unwrap_or_default();
        buffer.clear();
        buffer
    };
    let next = AtomicUsize::new(0);
    // A thread takes the next column of ENCODING_ORDER until none is left.
    let work = || {
        let mut done = Vec::new();
        while let Some(&n) = ENCODING_ORDER.get(next.fetch_add(1, Ordering::Relaxed)) {
            let descr = columns.get(n).cloned();
            let descr = descr.ok_or_else(|| ParquetError::General(format!("no column {n}")));
            let encoded = descr.and_then(|d| encode_column(d, properties, frames, buffer(n)));
            done.push((n, encoded));
        }
        done
    };
    let mut encoded: Vec<Option<EncodedColumn>> = COLUMNS.iter().map(|_| None).collect();
    let finished = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.get().min(COLUMNS.len()))
            .map(|_| scope.spawn(work))
            .collect();
        let joined = workers.into_iter().map(|worker| worker.join());
        joined.collect::<Result<Vec<_>, _>>()
    });
    let finished =
        finished.map_err(|_| ParquetError::General("an encoding thread panicked".into()));
    for (n, column) in finished?.into_iter().flatten() {
        encoded[n] = Some(column?);
    }
    let missing = || ParquetError::General("a column was not encoded".into());
    encoded.into_iter().map(|c| c.ok_or_else(missing)).collect()
}

/// Encodes the column `descr` describes of `frames`' rows into `buffer`.
fn encode_column(
    descr: ColumnDescPtr,
    properties: &WriterPropertiesPtr,
    frames: &[ArchivedFrame],
    buffer: Vec<u8>,
) -> Result<EncodedColumn, ParquetError> {
    let mut out = TrackedWrite::new(buffer);
    let pages = Box::new(SerializedPageWriter::new(&mut out));
    let mut column = get_column_writer(Arc::clone(&descr), Arc::clone(properties), pages);
    write_column(descr.name(), &mut column, frames)?;
    let close = column.close()?;
    let bytes = Bytes::from(out.into_inner()?);
    Ok(EncodedColumn { bytes, close })
}

/// Writes column `name` of `frames`' rows.
fn write_column(
    name: &str,
    column: &mut ColumnWriter<'_>,
    frames: &[ArchivedFrame],
) -> Result<(), ParquetError> {
    let text = |text: &'static str| Some(ByteArray::from(Bytes::from_static(text.as_bytes())));
    match name {
        "received" => write::<Int64Type>(column, frames, |f| {
            // Past 2262 a time no longer fits an INT64 of nanoseconds.
            Some(i64::try_from(f.frame.received_unix_ns).unwrap_or(i64::MAX))
        }),
        "kind" => write::<ByteArrayType>(column, frames, |f| text(f.frame.kind.label())),
        // Unsigned logical types: the bits of the u32 and u64, as Parquet stores them.
        "source" => write::<Int32Type>(column, frames, |f| Some(f.frame.source_id as i32)),
        "sequence" => write::<Int64Type>(column, frames, |f| Some(f.frame.sequence as i64)),
        "priority" => write::<ByteArrayType>(column, frames, |f| text(f.frame.priority.as_str())),
        "shard" => write::<Int32Type>(column, frames, |f| Some(f.shard as i32)),
        "position" => write::<ByteArrayType>(column, frames, |f| {
            Some(ByteArray::from(f.shard_position().to_string().into_bytes()))
        }),
        "payload" => write::<ByteArrayType>(column, frames, |f| {
            Some(ByteArray::from(f.frame.payload.clone()))
        }),
        "apid" => write::<Int32Type>(column, frames, |f| {
            apid_of_packet(&f.frame.payload).map(i32::from)
        }),
        "station" | "link" | "mode" | "ax25_from" | "ax25_to" | "recording" => {
            write::<ByteArrayType>(column, frames, |f| {
                let reception = f.frame.reception.as_ref()?;
                let (_, value) = reception
                    .text_fields()
                    .into_iter()
                    .find(|(n, _)| *n == name)?;
                Some(ByteArray::from(value?.into_bytes()))
            })
        }
        "earth_received" => write::<Int64Type>(column, frames, |f| {
            let time = f.frame.reception.as_ref()?.received.earth_unix_ns?;
            Some(i64::try_from(time).unwrap_or(i64::MAX))
        }),
        other => Err(ParquetError::General(format!("no column {other}"))),
    }
}

/// Writes `value` of each frame to `column`, whose physical type is `T`'s; `None` is a null,
/// which only an optional column takes.
fn write<T: DataType>(
    column: &mut ColumnWriter<'_>,
    frames: &[ArchivedFrame],
    value: impl Fn(&ArchivedFrame) -> Option<T::T>,
) -> Result<(), ParquetError> {
    let typed = T::get_column_writer_mut(column)
        .ok_or_else(|| ParquetError::General(format!("not a {} column", T::get_physical_type())))?;
    let nullable = typed.get_descriptor().max_def_level() > 0;
    let (mut values, mut defined) = (Vec::with_capacity(BATCH), Vec::with_capacity(BATCH));
    for batch in frames.chunks(BATCH) {
        values.clear();
        defined.clear();
        for frame in batch {
            let value = value(frame);
            defined.push(i16::from(value.is_some()));
            values.extend(value);
        }
        if !nullable && values.len() != batch.len() {
            return Err(ParquetError::General("a null in a required column".into()));
        }
        typed.write_batch(&values, nullable.then_some(&defined[..]), None)?;
    }
    Ok(())
}

/// The file's schema: [`COLUMNS`], typed as the module doc's table says.
fn schema() -> io::Result<Type> {
    use Physical::{BYTE_ARRAY, INT32, INT64};
    let column = |name: &str, physical, logical: Option<LogicalType>, repetition| {
        Type::primitive_type_builder(name, physical)
            .with_logical_type(logical)
            .with_repetition(repetition)
            .build()
            .map(Arc::new)
    };
    let (required, optional) = (Repetition::REQUIRED, Repetition::OPTIONAL);
    let string = Some(LogicalType::String);
    let unsigned = |bits| Some(LogicalType::integer(bits, false));
    let nanos = Some(LogicalType::timestamp(true, TimeUnit::NANOS));
    let fields = [
        column("received", INT64, nanos.clone(), required),
        column("kind", BYTE_ARRAY, string.clone(), required),
        column("source", INT32, unsigned(32), required),
        column("sequence", INT64, unsigned(64), required),
        column("priority", BYTE_ARRAY, string.clone(), required),
        column("shard", INT32, unsigned(32), required),
        column("position", BYTE_ARRAY, string.clone(), required),
        column("payload", BYTE_ARRAY, None, required),
        column("apid", INT32, None, optional),
        column("station", BYTE_ARRAY, string.clone(), optional),
        column("link", BYTE_ARRAY, string.clone(), optional),
        column("mode", BYTE_ARRAY, string.clone(), optional),
        column("earth_received", INT64, nanos, optional),
        column("ax25_from", BYTE_ARRAY, string.clone(), optional),
        column("ax25_to", BYTE_ARRAY, string.clone(), optional),
        column("recording", BYTE_ARRAY, string, optional),
    ];
    let fields = fields.into_iter().collect::<Result<Vec<_>, _>>();
    Type::group_type_builder("frame")
        .with_fields(fields.map_err(to_io)?)
        .build()
        .map_err(to_io)
}

/// zstd on every column; no dictionary where values hardly repeat; no statistics of payloads.
fn properties() -> WriterProperties {
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_column_statistics_enabled(ColumnPath::from("payload"), EnabledStatistics::None);
    for unique in ["received", "sequence", "position", "payload"] {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(unique), false);
    }
    properties.build()
}

fn to_io(err: ParquetError) -> io::Error {
    match err {
        ParquetError::External(err) => match err.downcast::<io::Error>() {
            Ok(err) => *err,
            Err(err) => io::Error::other(err),
        },
        err => io::Error::other(err),
    }
}

fn finished() -> io::Error {
    io::Error::other("the Parquet file is already finished")
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    use super::*;
    use crate::archive::query::export::rows::tests::{frame, PACKET};

    /// The NDJSON row of `rows.rs`' test, as Parquet: every column, then a frame that is no
    /// space packet (null APID).
    #[test]
    fn a_row_holds_the_documented_values() {
        let mut sink = ParquetSink::new(Vec::new()).unwrap();
        let frames = [frame(42, PACKET), frame(43, b"ab")];
        sink.frames(&frames).unwrap();
        sink.finish().unwrap();
        let file = sink.into_inner().unwrap();
        let reader = SerializedFileReader::new(Bytes::from(file)).unwrap();
        let rows: Vec<Vec<(String, Field)>> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|row| row.unwrap().into_columns())
            .collect();
        let names: Vec<&str> = rows[0].iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, COLUMNS);
        let values: Vec<&Field> = rows[0].iter().map(|(_, value)| value).collect();
        assert_eq!(
            values,
            [
                &Field::Long(1_700_000_000_123_456_789),
                &Field::Str("live".into()),
                &Field::UInt(7),
                &Field::ULong(42),
                &Field::Str("emergency".into()),
                &Field::UInt(1),
                &Field::Str("1/3:8:2".into()),
                &Field::Bytes(ByteArray::from(PACKET)),
                &Field::Int(100),
                &Field::Null,
                &Field::Null,
                &Field::Null,
                &Field::Null,
                &Field::Null,
                &Field::Null,
                &Field::Null,
            ]
        );
        assert_eq!(rows[1][8].1, Field::Null, "no packet, no APID");
    }

    /// The columns encoded on several threads make the file one thread makes, byte for byte.
    #[test]
    fn threads_change_nothing_in_the_file() {
        let frames: Vec<ArchivedFrame> = (0..3000)
            .map(|n| match n % 3 {
                0 => frame(n, PACKET),
                1 => frame(n, b"ab"),
                _ => frame(n, b"a longer payload"),
            })
            .collect();
        let file = |threads| {
            let limits = RowGroupLimits {
                rows: 1000,
                payload: 1 << 20,
            };
            let mut sink = ParquetSink::with_limits(Vec::new(), limits).unwrap();
            sink.threads = NonZeroUsize::new(threads).unwrap();
            sink.frames(&frames).unwrap();
            sink.finish().unwrap();
            sink.into_inner().unwrap()
        };
        let one = file(1);
        assert_eq!(file(4), one);
        assert_eq!(file(32), one, "more threads than columns");
        let reader = SerializedFileReader::new(Bytes::from(one)).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 3000);
    }

    /// Row groups end at the row limit or the payload limit, whichever comes first; an empty
    /// export is a valid file of none; a finished file takes nothing more.
    #[test]
    fn row_groups_are_bounded() {
        let groups = |(rows, payload), frames: &[ArchivedFrame]| {
            let limits = RowGroupLimits { rows, payload };
            let mut sink = ParquetSink::with_limits(Vec::new(), limits).unwrap();
            sink.frames(frames).unwrap();
            sink.finish().unwrap();
            assert!(sink.frames(frames).is_err(), "finished already");
            assert!(sink.finish().is_err(), "finished already");
            let reader = SerializedFileReader::new(Bytes::from(sink.into_inner().unwrap()));
            let reader = reader.unwrap();
            let groups = reader.metadata().row_groups().iter();
            groups.map(|group| group.num_rows()).collect::<Vec<_>>()
        };
        let small: Vec<ArchivedFrame> = (0..25).map(|n| frame(n, b"abcd")).collect();
        assert_eq!(groups((10, 1000), &small), [10, 10, 5], "rows");
        assert_eq!(groups((1000, 40), &small), [10, 10, 5], "payload bytes");
        assert_eq!(groups((10, 1000), &[]), Vec::<i64>::new(), "empty");
    }
}
