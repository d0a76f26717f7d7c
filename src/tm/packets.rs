//! The archive read as a stream of space packets: the archive's cursors over every shard, and the
//! choice of which stored frames are packets a TM output serves.
//!
//! A frame is served when its kind is one of `kinds`, its source one of `sources` (the archive
//! reader's own filter), and its payload is exactly one whole space packet of version 0,
//! of one of `apids`. Ground stations that send over the ingest protocol may carry anything in
//! a payload; a payload that is not one packet cannot be delimited on a stream of packets, so it
//! is skipped and counted, never cut or padded into one.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::archive::read::{DurableEnds, FrameRun, OnGap, ReadError, ShardCursors, Start};
use crate::config::{TmSelection, TmStart};
use crate::domain::filter::FrameFilter;
use crate::protocol::ccsds::apid_of_packet;
use crate::stats::{Stats, TmOutput};

/// One TM output's reading of the archive, a batch of packets at a time.
pub(crate) struct PacketStream {
    cursors: ShardCursors,
    selection: TmSelection,
    output: TmOutput,
}

impl PacketStream {
    /// Finds where `selection` starts in every shard of the archive at `root`; an error says why
    /// the archive cannot be read. Damaged records it meets are counted in `stats`.
    pub(crate) async fn locate(
        root: &Path,
        durable: &DurableEnds,
        selection: TmSelection,
        output: TmOutput,
        stats: &Stats,
    ) -> Result<PacketStream, ReadError> {
        let start = match selection.from {
            TmStart::Now => Start::Now,
            TmStart::Start => Start::Oldest,
        };
        // Its sources; every priority.
        let filter = Arc::new(FrameFilter {
            sources: selection.sources.clone(),
            ..FrameFilter::default()
        });
        let on_gap = match selection.from_oldest_on_gap {
            true => OnGap::Oldest,
            false => OnGap::End,
        };
        let cursors = ShardCursors::locate(root, durable, &start, filter, on_gap).await?;
        let cursors = cursors.counting_damage(stats);
        Ok(PacketStream {
            cursors,
            selection,
            output,
        })
    }

    /// The next packets in archive order (each shard's, shards in turn), waiting for them to
    /// become durable. `None` once every shard's writer has closed and everything is read: the
    /// daemon drained. Cancel-safe: a read that is cancelled moves no cursor.
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<Bytes>>, ReadError> {
        loop {
            // Whether every shard was closed before this read: then a read that finds nothing
            // means everything durable was read.
            let closed = !self.cursors.is_open();
            let read = self.cursors.read().await;
            for skip in self.cursors.take_skipped() {
                self.output.skipped(skip.frames());
                skip.log("TM output");
            }
            match read? {
                Some(runs) => {
                    let packets = self.packets_of(&runs);
                    if !packets.is_empty() {
                        return Ok(Some(packets));
                    }
                }
                None if closed => return Ok(None),
                None => self.cursors.changed().await,
            }
        }
    }

    /// The packets this output serves among `runs`, counting the frames that are no packet.
    fn packets_of(&self, runs: &[FrameRun]) -> Vec<Bytes> {
        let mut packets = Vec::new();
        let mut not_packets = 0;
        let wanted = runs
            .iter()
            .filter(|run| self.selection.kinds.contains(&run.kind))
            .flat_map(|run| run.frames.iter().map(|(_, payload)| payload));
        for payload in wanted {
            match apid_of_packet(payload) {
                None => not_packets += 1,
                Some(apid) if self.wants_apid(apid) => packets.push(payload.clone()),
                Some(_) => {}
            }
        }
        if not_packets > 0 {
            self.output.not_packets(not_packets);
        }
        packets
    }

    fn wants_apid(&self, apid: u16) -> bool {
        self.selection.apids.is_empty() || self.selection.apids.contains(&apid)
    }
}
