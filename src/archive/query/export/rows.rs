//! One stored frame as a row of each export format.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::archive::format::FrameRecord;
use crate::archive::read::ArchivedFrame;
use crate::domain::display::unix_ns_to_rfc3339;
use crate::domain::reception::Reception;

/// How frames are written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object per line.
    Ndjson,
    /// A header line, then a line per frame.
    Csv,
    /// Each payload after its length (u32, big-endian).
    Raw,
    /// The payloads back to back: CCSDS space packets delimit themselves.
    Ccsds,
    /// An Apache Parquet file (`aggregator archive export` only).
    Parquet,
}

/// Why a format name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}: ndjson, csv, raw, ccsds or parquet")]
pub struct FormatError(String);

impl std::str::FromStr for Format {
    type Err = FormatError;

    fn from_str(name: &str) -> Result<Format, FormatError> {
        match name {
            "ndjson" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "raw" => Ok(Format::Raw),
            "ccsds" => Ok(Format::Ccsds),
            "parquet" => Ok(Format::Parquet),
            other => Err(FormatError(other.to_string())),
        }
    }
}

impl Format {
    /// The media type of a response or file in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Raw | Format::Ccsds => "application/octet-stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// The CSV header: the columns of every row.
const CSV_HEADER: &str = "received,kind,source,sequence,priority,shard,position,payload,\
                          link,station,mode,earth_received,ax25_from,ax25_to,recording\n";

/// Writes frames as rows of a text or byte format (not Parquet, which is a file of its own).
#[derive(Debug)]
pub struct Rows {
    format: Format,
    /// The CSV header is written.
    started: bool,
}

impl Rows {
    pub fn new(format: Format) -> Rows {
        Rows {
            format,
            started: false,
        }
    }

    /// Appends `frame`'s row to `out` (after the CSV header, before the first row).
    pub fn write(&mut self, frame: &ArchivedFrame, out: &mut Vec<u8>) {
        self.start(out);
        let f = &frame.frame;
        match self.format {
            Format::Ndjson => {
                let mut row = frame_json(f);
                row.insert("shard".into(), frame.shard.into());
                let position = frame.shard_position().to_string();
                row.insert("position".into(), position.into());
                out.extend_from_slice(serde_json::Value::Object(row).to_string().as_bytes());
                out.push(b'\n');
            }
            Format::Csv => {
                let mut line = String::with_capacity(96 + f.payload.len() * 4 / 3);
                let _ = write!(
                    line,
                    "{},{},{},{},{},{},{},{}",
                    unix_ns_to_rfc3339(f.received_unix_ns),
                    f.kind.label(),
                    f.source_id,
                    f.sequence,
                    f.priority.as_str(),
                    frame.shard,
                    frame.shard_position(),
                    base64(&f.payload)
                );
                let fields = f.reception.as_deref().map(Reception::text_fields);
                let values = fields.map(|fields| fields.map(|(_, value)| value));
                for value in values.unwrap_or_default() {
                    line.push(',');
                    line.push_str(&csv_field(value.as_deref().unwrap_or("")));
                }
                line.push('\n');
                out.extend_from_slice(line.as_bytes());
            }
            Format::Raw => {
                out.extend_from_slice(&(f.payload.len() as u32).to_be_bytes());
                out.extend_from_slice(&f.payload);
            }
            Format::Ccsds => out.extend_from_slice(&f.payload),
            Format::Parquet => {}
        }
    }

    /// Appends what comes before the first row: the CSV header, once, rows or none.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started && self.format == Format::Csv {
            out.extend_from_slice(CSV_HEADER.as_bytes());
        }
        self.started = true;
    }
}

/// A frame's NDJSON keys that are its own, wherever it is read from (an archive's shard and
/// position, a stream's site and sequence are added by the reader): received time, source,
/// sequence, priority, payload (base64) and a link frame's reception.
pub fn frame_json(f: &FrameRecord) -> serde_json::Map<String, serde_json::Value> {
    let mut row = serde_json::Map::new();
    row.insert(
        "received".into(),
        unix_ns_to_rfc3339(f.received_unix_ns).into(),
    );
    row.insert("kind".into(), f.kind.label().into());
    row.insert("source".into(), f.source_id.into());
    row.insert("sequence".into(), f.sequence.into());
    row.insert("priority".into(), f.priority.as_str().into());
    row.insert("payload".into(), base64(&f.payload).into());
    if let Some(reception) = &f.reception {
        reception.add_to(&mut row);
    }
    row
}

/// A CSV field (RFC 4180): quoted, quotes doubled, when it holds a comma, a quote or a line end.
fn csv_field(text: &str) -> std::borrow::Cow<'_, str> {
    match text.contains([',', '"', '\n', '\r']) {
        true => format!("\"{}\"", text.replace('"', "\"\"")).into(),
        false => text.into(),
    }
}

fn base64(payload: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(payload)
}

#[cfg(test)]
pub(crate) mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::archive::format::FrameRecord;
    use crate::domain::frame::{Priority, SourceKind};
    use crate::domain::position::Position;

    /// The frame the documented rows show: live:7, sequence 42, an emergency, one space packet.
    pub(crate) fn frame(sequence: u64, payload: &'static [u8]) -> ArchivedFrame {
        ArchivedFrame {
            frame: FrameRecord {
                kind: SourceKind::LiveUplink,
                priority: Priority::Emergency,
                source_id: 7,
                sequence,
                received_unix_ns: 1_700_000_000_123_456_789,
                payload: Bytes::from_static(payload),
                reception: None,
            },
            shard: 1,
            position: Position {
                segment: 3,
                offset: 8,
                index: 2,
            },
        }
    }

    /// The documented frame's payload.
    pub(crate) const PACKET: &[u8] = b"\x08\x64\xc0\x00\x00\x01ab";

    /// The rows `docs/http-api.md` shows, byte for byte.
    #[test]
    fn each_format_writes_the_documented_row() {
        let rows = |format| {
            let mut out = Vec::new();
            let mut rows = Rows::new(format);
            rows.write(&frame(42, PACKET), &mut out);
            out
        };
        assert_eq!(
            String::from_utf8(rows(Format::Ndjson)).unwrap(),
            "{\"kind\":\"live\",\"payload\":\"CGTAAAABYWI=\",\"position\":\"1/3:8:2\",\
             \"priority\":\"emergency\",\"received\":\"2023-11-14T22:13:20.123456789Z\",\
             \"sequence\":42,\"shard\":1,\"source\":7}\n"
        );
        assert_eq!(
            String::from_utf8(rows(Format::Csv)).unwrap(),
            "received,kind,source,sequence,priority,shard,position,payload,\
             link,station,mode,earth_received,ax25_from,ax25_to,recording\n\
             2023-11-14T22:13:20.123456789Z,live,7,42,emergency,1,1/3:8:2,CGTAAAABYWI=,,,,,,,\n"
        );
        assert_eq!(rows(Format::Raw), b"\0\0\0\x08\x08\x64\xc0\x00\x00\x01ab");
        assert_eq!(rows(Format::Ccsds), b"\x08\x64\xc0\x00\x00\x01ab");
        let mut empty = Vec::new();
        Rows::new(Format::Csv).start(&mut empty);
        assert_eq!(empty, CSV_HEADER.as_bytes(), "a header without rows");
    }

    #[test]
    fn formats_are_named_as_documented() {
        for (name, format) in [
            ("ndjson", Format::Ndjson),
            ("csv", Format::Csv),
            ("raw", Format::Raw),
            ("ccsds", Format::Ccsds),
            ("parquet", Format::Parquet),
        ] {
            assert_eq!(name.parse(), Ok(format));
        }
        assert_eq!(
            "xml".parse::<Format>().unwrap_err().to_string(),
            "unknown format \"xml\": ndjson, csv, raw, ccsds or parquet"
        );
    }
}
