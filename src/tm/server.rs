//! A TM server's listener and one task per connection: the packets of the archive from the
//! connection's start point, then live, written back to back (or each after the sync marker).
//!
//! The connection speaks no protocol of its own, because a mission-control reader (Yamcs'
//! `TcpTmDataLink` with `CcsdsPacketInputStream`, COSMOS' length protocol) expects nothing but
//! packets: no greeting, no end message. It reads the socket only to notice the client leave;
//! whatever a client sends is discarded.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::packets::PacketStream;
use crate::archive::read::{DurableEnds, ReadError};
use crate::config::{TmFraming, TmSelection};
use crate::domain::readers::Readers;
use crate::net::{accept_until, Limits, Slots};
use crate::protocol::ccsds::{self, Framing};
use crate::stats::{Stats, TmOutput};

/// What every connection of one TM server shares.
pub(crate) struct TmService {
    pub name: String,
    pub framing: TmFraming,
    pub selection: TmSelection,
    pub limits: Limits,
    /// The archive directory, and each shard's durable end.
    pub archive: PathBuf,
    pub durable: DurableEnds,
    /// The archive's count of readers, which keeps the segments they read in the page cache.
    pub readers: Option<Arc<Readers>>,
    pub output: TmOutput,
    /// The daemon's counters (connections refused for the archive's descriptors).
    pub stats: Stats,
    pub drain: CancellationToken,
}

/// Why a connection ended, logged once where it ends.
enum Ending {
    /// The daemon drained and every packet it stored was sent.
    Drained,
    ClientClosed,
    Io(io::Error),
    ArchiveUnreadable(ReadError),
}

/// Accepts connections until the drain starts; each runs until the archive closes, the client
/// goes, or the cut-off.
pub(crate) async fn accept(
    listener: &TcpListener,
    service: &Arc<TmService>,
    tasks: &TaskTracker,
    cut_off: &CancellationToken,
) {
    let slots = Slots::new(service.limits);
    accept_until(
        listener,
        &slots,
        Slots::take,
        &service.drain,
        &service.stats,
        |stream, peer, slot| {
            let slot = match slot {
                Ok(slot) => slot,
                Err(refused) => {
                    service.output.refused();
                    tracing::debug!(server = service.name, %peer, "TM connection closed: {refused}");
                    return;
                }
            };
            let (service, cut_off) = (Arc::clone(service), cut_off.clone());
            tasks.spawn(async move {
                tokio::select! {
                    _ = cut_off.cancelled() => {
                        tracing::warn!(server = service.name, %peer, "TM connection cut off at the drain deadline");
                    }
                    () = serve(stream, peer, &service) => {}
                }
                drop(slot);
            });
        },
    )
    .await;
}

/// One connection, from its start point to its end.
#[tracing::instrument(name = "tm_connection", skip_all, fields(server = %service.name, %peer))]
async fn serve(stream: TcpStream, peer: SocketAddr, service: &TmService) {
    let (mut read, mut write) = stream.into_split();
    let located = PacketStream::locate(
        &service.archive,
        &service.durable,
        service.selection.clone(),
        service.output.clone(),
        &service.stats,
    )
    .await;
    let mut packets = match located {
        Ok(packets) => packets,
        Err(err) => {
            tracing::warn!(detail = %err, "cannot read the archive; TM connection closed");
            return;
        }
    };
    let _open = Open::count(&service.output);
    let _reading = service.readers.as_ref().map(Readers::hold);
    tracing::info!(from = ?service.selection.from, "TM connection opened");
    let framing = match service.framing {
        TmFraming::Ccsds => Framing::Ccsds,
        TmFraming::CcsdsAsm => Framing::CcsdsAsm,
    };
    match send(
        &mut packets,
        &mut read,
        &mut write,
        &framing,
        &service.output,
    )
    .await
    {
        Ending::Drained => {
            tracing::info!("the daemon drained; every stored packet was sent");
            if write.shutdown().await.is_ok() {
                crate::net::linger(&mut read).await;
            }
        }
        Ending::ClientClosed => tracing::info!("TM client closed its connection"),
        Ending::Io(err) => tracing::info!(error = %err, "TM connection lost"),
        Ending::ArchiveUnreadable(err) => {
            tracing::warn!(detail = %err, "cannot read the archive; TM connection closed");
        }
    }
}

/// Writes the packets as `framing` frames them, batch after batch, until the archive closes or
/// cannot be read, or the client goes; each batch written is counted in `output`.
async fn send(
    packets: &mut PacketStream,
    read: &mut OwnedReadHalf,
    write: &mut OwnedWriteHalf,
    framing: &Framing,
    output: &TmOutput,
) -> Ending {
    let mut buf = Vec::new();
    loop {
        let next = tokio::select! {
            next = packets.next() => next,
            ending = closed(read) => return ending,
        };
        let batch = match next {
            Ok(Some(batch)) => batch,
            Ok(None) => return Ending::Drained,
            Err(err) => return Ending::ArchiveUnreadable(err),
        };
        buf.clear();
        batch
            .iter()
            .for_each(|packet| ccsds::encode(framing, packet, &mut buf));
        tokio::select! {
            written = write.write_all(&buf) => {
                if let Err(err) = written {
                    return Ending::Io(err);
                }
            }
            ending = closed(read) => return ending,
        }
        output.sent(batch.len() as u64, buf.len() as u64);
    }
}

/// Waits for the client to close its side, discarding anything it sends. Cancel-safe.
async fn closed(read: &mut OwnedReadHalf) -> Ending {
    let mut discarded = [0u8; 512];
    loop {
        match read.read(&mut discarded).await {
            Ok(0) => return Ending::ClientClosed,
            Ok(_) => {}
            Err(err) => return Ending::Io(err),
        }
    }
}

/// A connection counted as open for as long as it is kept.
struct Open<'a>(&'a TmOutput);

impl Open<'_> {
    fn count(output: &TmOutput) -> Open<'_> {
        output.connection_opened();
        Open(output)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}
