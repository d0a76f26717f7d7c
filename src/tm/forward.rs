//! A TM forward: the archive's packets from the daemon's start (or the archive's), each sent as
//! one UDP datagram to one address, for tools that listen for packets rather than connect.
//!
//! UDP has no backpressure and no delivery: the forward sends as fast as it reads, and a send
//! that fails (a port with no listener answers with an ICMP that the next send reports as
//! refused) is counted and the forward goes on, so a tool that is not running costs nothing.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::UdpSocket;

use super::packets::PacketStream;
use crate::archive::read::DurableEnds;
use crate::config::TmSelection;
use crate::domain::readers::Readers;
use crate::stats::{Stats, TmOutput};

/// One `[[tm_forwards]]` entry, ready to run.
pub(crate) struct TmForward {
    pub name: String,
    pub to: SocketAddr,
    pub selection: TmSelection,
    pub archive: PathBuf,
    pub durable: DurableEnds,
    pub readers: Option<Arc<Readers>>,
    pub output: TmOutput,
    /// The daemon's counters (damaged records met).
    pub stats: Stats,
}

/// Sends every packet selected until the daemon drained and everything stored was sent, or the
/// archive cannot be read.
#[tracing::instrument(name = "tm_forward", skip_all, fields(forward = %forward.name, to = %forward.to))]
pub(crate) async fn run(forward: TmForward) {
    let socket = match connect(forward.to).await {
        Ok(socket) => socket,
        Err(err) => {
            tracing::error!(error = %err, "cannot open the forward's UDP socket; nothing is forwarded");
            return;
        }
    };
    let located = PacketStream::locate(
        &forward.archive,
        &forward.durable,
        forward.selection.clone(),
        forward.output.clone(),
        &forward.stats,
    )
    .await;
    let mut packets = match located {
        Ok(packets) => packets,
        Err(err) => {
            tracing::error!(detail = %err, "cannot read the archive; nothing is forwarded");
            return;
        }
    };
    let _reading = forward.readers.as_ref().map(Readers::hold);
    let mut failing = false;
    loop {
        let batch = match packets.next().await {
            Ok(Some(batch)) => batch,
            Ok(None) => break,
            Err(err) => {
                tracing::error!(detail = %err, "cannot read the archive; the forward stopped");
                return;
            }
        };
        for packet in batch {
            match socket.send(&packet).await {
                Ok(sent) => {
                    forward.output.sent(1, sent as u64);
                    if std::mem::take(&mut failing) {
                        tracing::info!("the forward sends again");
                    }
                }
                Err(err) => {
                    forward.output.send_error();
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(error = %err, "the forward cannot send; its packets are dropped and counted until it can");
                    }
                }
            }
        }
    }
    tracing::info!("the daemon drained; every stored packet was forwarded");
}

/// A socket on an ephemeral port of `to`'s family, connected to `to` so that its refusals come
/// back as send errors.
async fn connect(to: SocketAddr) -> std::io::Result<UdpSocket> {
    let local = match to {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(to).await?;
    Ok(socket)
}
