//! A `records/2` message's body: its frame records compressed as one zstd frame where that makes
//! them a quarter smaller at least (`docs/scale-out.md`, "Layouts").
//!
//! Why compress in the sink: with `ack = "replicated"` every byte the sink publishes is taken
//! by the stream's leader, written to three stores and sent twice over the cluster's routes, so
//! on a machine the servers share the servers' cores bound the rate, byte for byte. Telemetry
//! repeats itself (fill, housekeeping that barely moves, a record's head per frame), and one of
//! zstd's fast levels halves a message of half-random payloads at about 0.7 GB/s a core (this
//! VM, `zstd -b --fast=3`). Payloads that do not compress (encrypted, or already compressed)
//! would cost a core per 2 GB/s for nothing, so a source whose message does not shrink is sent as
//! it is for its next [`SKIPPED`] messages before the sink tries again.

use std::collections::HashMap;

use bytes::Bytes;

use crate::domain::frame::SourceKey;
use crate::stats::Stats;

/// The header of a `records/2` message whose body is compressed, and its one value.
pub(super) const COMPRESSION: &str = "Aggregator-Compression";
pub(super) const ZSTD: &str = "zstd";

/// zstd's level: a fast one, 1.3 times level 1's pace on half-random payloads for 4 % less
/// shrinking, and 4.5 times on payloads that do not shrink.
const LEVEL: i32 = -3;

/// Messages of a source sent as they are after one that compression did not shrink enough.
const SKIPPED: u8 = 15;

/// The most bytes a compressed body may unpack to: NATS's own bound on `max_payload`.
const MOST_UNPACKED: u64 = 64 << 20;

/// Compresses the bodies of one sink's messages (layout `records/2`), or none (`records/1`).
pub(super) struct Packer {
    /// Whether its messages are of layout `records/2`.
    compress: bool,
    /// None where it does not compress, or zstd could not make one (each body then goes as it
    /// is, still `records/2`).
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Per source, the messages still to send as they are.
    skipping: HashMap<SourceKey, u8>,
    /// Told the bytes of records and of bodies.
    stats: Stats,
}

impl Packer {
    /// A packer that compresses (`compress`), or passes bodies as they are.
    pub(super) fn new(compress: bool, stats: Stats) -> Packer {
        let compressor = compress
            .then(|| zstd::bulk::Compressor::new(LEVEL))
            .and_then(|made| {
                made.map_err(
                    |err| tracing::warn!(error = %err, "no zstd compressor: bodies go as they are"),
                )
                .ok()
            });
        Packer {
            compress,
            compressor,
            skipping: HashMap::new(),
            stats,
        }
    }

    /// Whether its messages are of layout `records/2`.
    pub(super) fn compresses(&self) -> bool {
        self.compress
    }

    /// The body of a message of source `key` with records `raw`, and whether it is compressed.
    pub(super) fn pack(&mut self, key: SourceKey, raw: Vec<u8>) -> (Bytes, bool) {
        let records = raw.len();
        let (body, compressed) = self.packed(key, raw);
        self.stats.nats_bytes(records, body.len());
        (body, compressed)
    }

    fn packed(&mut self, key: SourceKey, raw: Vec<u8>) -> (Bytes, bool) {
        let Some(compressor) = self.compressor.as_mut() else {
            return (Bytes::from(raw), false);
        };
        if let Some(left) = self.skipping.get_mut(&key) {
            *left -= 1;
            if *left == 0 {
                self.skipping.remove(&key);
            }
            return (Bytes::from(raw), false);
        }
        match compressor.compress(&raw) {
            Ok(packed) if packed.len() * 4 <= raw.len() * 3 => (Bytes::from(packed), true),
            _ => {
                self.skipping.insert(key, SKIPPED);
                (Bytes::from(raw), false)
            }
        }
    }
}

/// The records of a message's body: `body` itself where `compression` is `None`, else what its
/// one zstd frame holds (nothing after it). `Err` says why not.
pub(super) fn unpack(compression: Option<&str>, body: Bytes) -> Result<Bytes, String> {
    match compression {
        None => Ok(body),
        Some(ZSTD) => {
            let size = match zstd::zstd_safe::get_frame_content_size(&body) {
                Ok(Some(size)) if size <= MOST_UNPACKED => size,
                Ok(Some(size)) => return Err(format!("a zstd frame of {size} bytes unpacked")),
                Ok(None) => return Err("a zstd frame without its size".to_string()),
                Err(_) => return Err("not a zstd frame".to_string()),
            };
            match zstd::zstd_safe::find_frame_compressed_size(&body) {
                Ok(length) if length == body.len() => {}
                Ok(length) => {
                    let why = format!("{} bytes after its zstd frame", body.len() - length);
                    return Err(why);
                }
                Err(_) => return Err("its zstd frame is cut short".to_string()),
            }
            let records = zstd::bulk::decompress(&body, size as usize)
                .map_err(|err| format!("its zstd frame: {err}"))?;
            if records.len() as u64 != size {
                let why = format!(
                    "{} bytes unpacked, where its frame says {size}",
                    records.len()
                );
                return Err(why);
            }
            Ok(Bytes::from(records))
        }
        Some(other) => Err(format!("{COMPRESSION} {other:?}, not {ZSTD}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::frame::SourceKind;

    const KEY: SourceKey = (SourceKind::LiveUplink, 7);

    /// What repeats is compressed and unpacks to itself; what does not goes as it is, and so do
    /// the source's next messages, while another source's are still tried.
    #[test]
    fn a_body_is_compressed_where_that_pays() {
        let stats = Stats::new();
        let mut packer = Packer::new(true, stats.clone());
        let raw: Vec<u8> = (0..65_536u32).map(|i| (i % 7) as u8).collect();
        let (packed, compressed) = packer.pack(KEY, raw.clone());
        assert!(compressed && packed.len() < raw.len() / 10);
        let counted = stats.snapshot();
        assert_eq!(counted.nats_record_bytes, raw.len() as u64);
        assert_eq!(counted.nats_body_bytes, packed.len() as u64);
        assert_eq!(unpack(Some(ZSTD), packed).unwrap(), raw);

        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..65_536)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect();
        let (sent, compressed) = packer.pack(KEY, noise.clone());
        assert!(!compressed && sent == noise, "noise goes as it is");
        for _ in 0..SKIPPED {
            assert!(!packer.pack(KEY, raw.clone()).1);
        }
        assert!(packer.pack(KEY, raw.clone()).1);
        assert!(packer.pack((SourceKind::ArchivedReplay, 7), raw.clone()).1);
        let (sent, compressed) = Packer::new(false, Stats::new()).pack(KEY, raw.clone());
        assert!(!compressed && sent == raw, "records/1 compresses nothing");
    }

    /// A body that is not what its header says is an error naming why, not a panic or a huge
    /// allocation.
    #[test]
    fn a_bad_compressed_body_says_why() {
        let raw = vec![0xA5u8; 4096];
        let packed = zstd::bulk::compress(&raw, LEVEL).unwrap();
        let fails = |compression, body: &[u8]| unpack(compression, Bytes::copy_from_slice(body));
        assert_eq!(fails(None, &packed).unwrap(), Bytes::from(packed.clone()));
        assert!(fails(Some("lz4"), &packed)
            .unwrap_err()
            .contains("not zstd"));
        assert!(fails(Some(ZSTD), &raw)
            .unwrap_err()
            .contains("not a zstd frame"));
        let cut = &packed[..packed.len() - 3];
        assert!(fails(Some(ZSTD), cut).unwrap_err().contains("zstd frame"));
        let mut more = packed.clone();
        more.extend_from_slice(&packed);
        assert_eq!(
            fails(Some(ZSTD), &more).unwrap_err(),
            format!("{} bytes after its zstd frame", packed.len())
        );
        let mut sizeless = zstd::bulk::Compressor::new(LEVEL).unwrap();
        let flag = zstd::zstd_safe::CParameter::ContentSizeFlag(false);
        sizeless.set_parameter(flag).unwrap();
        let sizeless = sizeless.compress(&raw).unwrap();
        assert_eq!(
            fails(Some(ZSTD), &sizeless).unwrap_err(),
            "a zstd frame without its size"
        );
        // A frame header (single segment, an 8-byte content size) that says 1 GiB: refused
        // from its header.
        let mut huge = vec![0x28, 0xB5, 0x2F, 0xFD, 0xE0];
        huge.extend_from_slice(&(1u64 << 30).to_le_bytes());
        assert!(fails(Some(ZSTD), &huge)
            .unwrap_err()
            .contains("1073741824 bytes"));
    }
}
