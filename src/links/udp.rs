//! A UDP link: one packet per datagram (cFS' TO_LAB, Yamcs' UDP links). A burst of datagrams
//! waiting on the socket is read into one chunk and admitted together; a datagram that is not
//! exactly one space packet is dropped and counted, and nothing else is affected.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::station::{Link, Station};
use super::stream::whole_packet;
use crate::stats::LinkState;

/// Datagrams read into one chunk at most.
const BURST: usize = 64;

/// Reads datagrams until the drain.
pub(crate) async fn receive(link: Arc<Link>, socket: UdpSocket, drain: CancellationToken) {
    link.counters.set_state(LinkState::Listening);
    let mut station = Station::new(Arc::clone(&link));
    let max = link.config.max_packet_bytes;
    // One byte more than the largest packet: a datagram that fills it is too long.
    let room = max + 1;
    let mut first = true;
    loop {
        let mut buf = BytesMut::with_capacity(room * 4);
        let received = tokio::select! {
            _ = drain.cancelled() => break,
            received = socket.recv_buf_from(&mut buf) => received,
        };
        let mut peer: Option<SocketAddr> = None;
        let mut packets = Vec::new();
        let mut datagram = |buf: &BytesMut, start: usize, from: SocketAddr| {
            peer.get_or_insert(from);
            match whole_packet(&buf[start..], max) {
                Ok(()) => packets.push(start..buf.len()),
                Err(err) => link.bad_packet(&err),
            }
            packets.len()
        };
        let mut taken = match received {
            Ok((_, from)) => datagram(&buf, 0, from),
            Err(err) => {
                tracing::warn!(link = %link.config.name, error = %err, "udp receive failed");
                continue;
            }
        };
        for _ in 1..BURST {
            let start = buf.len();
            if buf.capacity() - start < room {
                buf.reserve(room);
            }
            match socket.try_recv_buf_from(&mut buf) {
                Ok((_, from)) => taken = datagram(&buf, start, from),
                Err(_) => break,
            }
        }
        drop(datagram);
        tracing::trace!(taken, "udp burst");
        let Some(peer) = peer else { continue };
        if first {
            link.counters.connected();
            first = false;
        }
        if station.take(peer, buf.freeze(), &packets).await.is_err() {
            break;
        }
    }
    station.finish().await;
    link.counters.set_state(LinkState::Stopped);
}
