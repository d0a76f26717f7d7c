//! Station recordings: the files a ground station writes while it cannot reach the daemon
//! (gr-satellites' `--kiss_out`, an SDR recorder's frame dump, a file of space packets), read back
//! frame by frame so that a backfill can feed them to a link as if the station were sending them
//! now (issue 70).
//!
//! A recording is delimited by the same decoders as a link's byte stream
//! ([`crate::protocol::kiss`], [`crate::protocol::ccsds`],
//! [`crate::protocol::transfer_frames`]): a file and a TCP connection of the same station hold the
//! same bytes, so they must read the same. What differs is what a file allows: it is read to its
//! end, so a bare packet stream that goes bad is resynchronised (a link closes the connection
//! instead), and every byte that is not a frame is named in a [`Damage`] with its place, so an
//! operator knows what the file cost. A frame's place is its byte offset in the *uncompressed*
//! stream, which is what an import resumes from.
//!
//! The format is detected where the bytes say so (`detect.rs`, the rule in
//! `docs/ground-segment.md`, "Recording files") and named otherwise ([`Naming`]); gzip is told by
//! its magic. The file is streamed through a buffer bounded by the largest frame, so a recording
//! of several GiB costs no more memory than one of a pass.
//!
//! Layout: `format.rs` names the formats and completes a named one; `detect.rs` tells the format
//! from the first bytes; `delimit.rs` cuts a buffer into frames and damaged ranges per format;
//! this file opens the file and streams it.

mod delimit;
mod detect;
mod format;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

pub use detect::Undetected;
pub use format::{Compression, FormatName, Naming, NamingError, RecordingFormat, UnknownFormat};

use delimit::{Cut, Cuts, KissTimes};

/// How many bytes are read at a time.
const READ_BYTES: usize = 64 * 1024;

/// The most bytes of a damaged range held before it is handed out: a longer one comes in pieces,
/// each starting where the one before ended, so that reading through any stretch of damage (a
/// file of zeros, gigabytes once uncompressed) hands out an item, and gives an import its turn
/// to stop, at least every this many bytes.
pub const DAMAGE_PIECE: u64 = 64 << 20;

/// How many bytes detection looks at: a run of packets holds the largest packet whole.
const DETECT_BYTES: usize = 2 * READ_BYTES + 4096;

/// The gzip magic.
const GZIP: [u8; 2] = [0x1F, 0x8B];

/// A frame of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedFrame {
    /// Where the frame (its KISS frame end, its marker, its length field) starts in the
    /// uncompressed stream: where an import resumes to read it again.
    pub offset: u64,
    /// What a link's framing hands on: a KISS data frame's unescaped bytes, a transfer frame
    /// (marker excluded), a space packet, a length-prefixed frame without its stripped header.
    pub payload: Bytes,
    /// The earth-receive time of gr-satellites' KISS time frame before it, in nanoseconds
    /// since the Unix epoch.
    pub earth_unix_ns: Option<u64>,
    /// The KISS port of a KISS data frame.
    pub kiss_port: Option<u8>,
    /// The bytes of its unit before the payload: a length-prefixed frame's header (where a
    /// link's `earth_time` field lies), a marker; none for KISS.
    pub header: Bytes,
}

/// Bytes of a recording that hold no frame, in the uncompressed stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    pub start: u64,
    pub end: u64,
    pub reason: DamageReason,
}

/// Why bytes of a recording hold no frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DamageReason {
    /// Bytes before a sync marker (with a valid header behind it).
    #[error("no sync marker: bytes passed over to the next marker")]
    NoMarker,
    /// A packet stream's bytes that are no packet, passed over to the next run of packets.
    #[error("{0}: bytes passed over to the next packets")]
    NotPackets(crate::protocol::ccsds::PacketError),
    /// A KISS frame that cannot be read.
    #[error("a bad KISS frame: {0}")]
    Kiss(crate::protocol::kiss::KissError),
    /// The file ends within a frame.
    #[error("the file ends within a frame")]
    Truncated,
}

/// What a recording yields, in the file's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordedItem {
    Frame(RecordedFrame),
    Damage(Damage),
}

/// Why a recording cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is empty")]
    Empty { path: PathBuf },
    #[error("cannot tell the format of {path}: {why}")]
    Undetected { path: PathBuf, why: Undetected },
    #[error("cannot read {path} as {format}: {why}")]
    Named {
        path: PathBuf,
        format: FormatName,
        why: NamingError,
    },
}

/// A recording file, open, streamed frame by frame ([`Iterator`]): its frames and damaged
/// ranges in order; a read error (a gzip stream cut short) comes last, after every frame before
/// it.
pub struct Recording {
    path: PathBuf,
    format: RecordingFormat,
    compression: Compression,
    detected: bool,
    input: Box<dyn Read + Send>,
    buf: BytesMut,
    /// The uncompressed offset of `buf`'s first byte.
    at: u64,
    eof: bool,
    /// A read error, yielded once the bytes before it are.
    failed: Option<io::Error>,
    done: bool,
    times: KissTimes,
    ready: VecDeque<RecordedItem>,
    /// A damaged range that may still grow: contiguous damage is one range.
    damage: Option<Damage>,
}

impl Recording {
    /// Opens `path`, gunzips it when it starts with gzip's magic, and tells its format from its
    /// first bytes unless `naming` names it.
    pub fn open(path: &Path, naming: &Naming) -> Result<Recording, RecordingError> {
        let file = File::open(path).map_err(|source| RecordingError::Io {
            path: path.to_owned(),
            source,
        })?;
        Recording::read_from(path, io::BufReader::new(file), naming)
    }

    /// [`Self::open`] of the bytes `file` gives, named `path` in what it tells (the fuzz
    /// targets read recordings from memory).
    pub fn read_from(
        path: &Path,
        mut file: impl io::BufRead + Send + 'static,
        naming: &Naming,
    ) -> Result<Recording, RecordingError> {
        let io = |source| RecordingError::Io {
            path: path.to_owned(),
            source,
        };
        let magic = file.fill_buf().map_err(io)?;
        let (compression, mut input): (_, Box<dyn Read + Send>) = match magic.starts_with(&GZIP) {
            true => (
                Compression::Gzip,
                Box::new(flate2::read::MultiGzDecoder::new(file)),
            ),
            false => (Compression::Plain, Box::new(file)),
        };
        let mut buf = BytesMut::new();
        // A gzip stream cut short within the first bytes: what it gave is told and read, and
        // the error comes after it.
        let (whole, failed) = match read_up_to(&mut input, &mut buf, DETECT_BYTES) {
            Ok(whole) => (whole, None),
            Err(err) if !buf.is_empty() => (true, Some(err)),
            Err(err) => return Err(io(err)),
        };
        if buf.is_empty() {
            return Err(RecordingError::Empty {
                path: path.to_owned(),
            });
        }
        let (format, detected) = format::choose(naming, &buf, whole).map_err(|err| match err {
            format::Refused::Undetected(why) => RecordingError::Undetected {
                path: path.to_owned(),
                why,
            },
            format::Refused::Named(format, why) => RecordingError::Named {
                path: path.to_owned(),
                format,
                why,
            },
        })?;
        Ok(Recording {
            path: path.to_owned(),
            format,
            compression,
            detected,
            input,
            buf,
            at: 0,
            eof: whole,
            failed,
            done: false,
            times: KissTimes::default(),
            ready: VecDeque::new(),
            damage: None,
        })
    }

    pub fn format(&self) -> &RecordingFormat {
        &self.format
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Whether the format was told from the bytes (not named).
    pub fn detected(&self) -> bool {
        self.detected
    }

    /// The bytes of the uncompressed stream used up so far: all of them once the frames end.
    pub fn bytes_read(&self) -> u64 {
        self.at
    }

    /// The next frame or damaged range (or piece of one, [`DAMAGE_PIECE`]); `None` at the end
    /// of the file.
    fn next_item(&mut self) -> Result<Option<RecordedItem>, RecordingError> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            if self.done {
                return match self.failed.take() {
                    Some(source) => Err(RecordingError::Io {
                        path: self.path.clone(),
                        source,
                    }),
                    None => Ok(None),
                };
            }
            self.cut();
            let long = |damage: &Damage| damage.end - damage.start >= DAMAGE_PIECE;
            if self.ready.is_empty() && self.damage.as_ref().is_some_and(long) {
                self.flush_damage();
            }
            if !self.eof && self.ready.is_empty() {
                self.read_more();
            }
        }
    }

    /// Reads the next bytes; a failure ends the stream, to be yielded after what was read.
    fn read_more(&mut self) {
        match read_up_to(&mut self.input, &mut self.buf, READ_BYTES) {
            Ok(ended) => self.eof = ended,
            Err(err) => {
                self.eof = true;
                self.failed = Some(err);
            }
        }
    }

    /// Cuts the buffer's frames and damage off it; at the end of the file, also its rest.
    fn cut(&mut self) {
        let cuts = delimit::cut(&self.format, &self.buf, self.eof, &mut self.times);
        let Cuts {
            used,
            cuts,
            unescaped,
        } = cuts;
        let (chunk, unescaped) = (self.buf.split_to(used).freeze(), Bytes::from(unescaped));
        for cut in cuts {
            match cut {
                Cut::Frame(frame) => {
                    self.flush_damage();
                    let (payload, header) = match frame.unescaped {
                        true => (unescaped.slice(frame.payload), Bytes::new()),
                        false => (
                            chunk.slice(frame.payload.clone()),
                            chunk.slice(frame.start..frame.payload.start),
                        ),
                    };
                    self.ready.push_back(RecordedItem::Frame(RecordedFrame {
                        offset: self.at + frame.start as u64,
                        payload,
                        earth_unix_ns: frame.earth_unix_ns,
                        kiss_port: frame.kiss_port,
                        header,
                    }));
                }
                Cut::Damage { range, reason } => self.damaged(Damage {
                    start: self.at + range.start as u64,
                    end: self.at + range.end as u64,
                    reason,
                }),
            }
        }
        self.at += used as u64;
        if self.eof {
            let rest = std::mem::take(&mut self.buf);
            if delimit::holds_more_than_fill(&self.format, &rest) {
                let (start, end) = (self.at, self.at + rest.len() as u64);
                let reason = DamageReason::Truncated;
                self.damaged(Damage { start, end, reason });
            }
            self.at += rest.len() as u64;
            self.flush_damage();
            self.done = true;
        }
    }

    /// Adds `damage` to the range growing, or starts a new one.
    fn damaged(&mut self, damage: Damage) {
        match &mut self.damage {
            Some(growing) if growing.end == damage.start => growing.end = damage.end,
            _ => {
                self.flush_damage();
                self.damage = Some(damage);
            }
        }
    }

    fn flush_damage(&mut self) {
        if let Some(damage) = self.damage.take() {
            self.ready.push_back(RecordedItem::Damage(damage));
        }
    }
}

impl Iterator for Recording {
    type Item = Result<RecordedItem, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

/// Reads into `buf` until it holds `want` more bytes or the input ends; whether it ended.
fn read_up_to(input: &mut dyn Read, buf: &mut BytesMut, want: usize) -> io::Result<bool> {
    let goal = buf.len() + want;
    while buf.len() < goal {
        let before = buf.len();
        buf.resize(goal, 0);
        match input.read(&mut buf[before..]) {
            Ok(0) => {
                buf.truncate(before);
                return Ok(true);
            }
            Ok(n) => buf.truncate(before + n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => buf.truncate(before),
            Err(err) => {
                buf.truncate(before);
                return Err(err);
            }
        }
    }
    Ok(false)
}
