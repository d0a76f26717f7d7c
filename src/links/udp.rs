//! A UDP link: one packet per datagram (cFS' TO_LAB, Yamcs' UDP links), or one transfer frame
//! per datagram with a frame framing. A burst of datagrams waiting on the socket is read into
//! one chunk and admitted together; a datagram that is not exactly one space packet (or one
//! frame) is dropped and counted, and nothing else is affected.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::frames::Deframer;
use super::station::{Link, Station};
use super::stream::takes_frame;
use crate::stats::LinkState;

/// Datagrams read into one chunk at most.
const BURST: usize = 64;

/// The datagrams of one burst: where each packet lies in the chunk, and who sent the first.
#[derive(Default)]
struct Burst {
    peer: Option<SocketAddr>,
    packets: Vec<Range<usize>>,
}

impl Burst {
    /// The datagram at `buf[start..]`: a frame to `deframer` if the link reads frames, else
    /// taken if it is one whole packet.
    fn datagram(
        &mut self,
        link: &Link,
        deframer: Option<&mut Deframer>,
        (buf, start): (&BytesMut, usize),
        from: SocketAddr,
    ) {
        self.peer.get_or_insert(from);
        match deframer {
            Some(deframer) => deframer.read_datagram(link, &buf[start..]),
            None if takes_frame(link, &buf[start..]) => self.packets.push(start..buf.len()),
            None => {}
        }
    }
}

/// Reads datagrams until the drain.
pub(crate) async fn receive(link: Arc<Link>, socket: UdpSocket, drain: CancellationToken) {
    link.counters.set_state(LinkState::Listening);
    let mut station = Station::new(Arc::clone(&link));
    let mut deframer = Deframer::new(&link);
    // One byte more than the largest packet (or marker and frame): a datagram that fills it is
    // too long.
    let check = link.config.rs_check_symbols_length;
    let frame = link
        .config
        .frame_length
        .map_or(0, |length| 4 + length + check);
    let room = link.config.max_packet_bytes.max(frame) + 1;
    let mut first = true;
    loop {
        let mut buf = BytesMut::with_capacity(room * 4);
        let received = tokio::select! {
            _ = drain.cancelled() => break,
            received = socket.recv_buf_from(&mut buf) => received,
        };
        let mut burst = Burst::default();
        match received {
            Ok((_, from)) => burst.datagram(&link, deframer.as_mut(), (&buf, 0), from),
            Err(err) => {
                tracing::warn!(link = %link.config.name, error = %err, "udp receive failed");
                continue;
            }
        }
        for _ in 1..BURST {
            let start = buf.len();
            if buf.capacity() - start < room {
                buf.reserve(room);
            }
            match socket.try_recv_buf_from(&mut buf) {
                Ok((_, from)) => burst.datagram(&link, deframer.as_mut(), (&buf, start), from),
                Err(_) => break,
            }
        }
        let Burst { peer, packets } = burst;
        let Some(peer) = peer else { continue };
        if first {
            link.counters.connected();
            first = false;
        }
        let (chunk, packets, heard) = match deframer.as_mut() {
            Some(deframer) => deframer.packets(&link),
            None => (buf.freeze(), packets, Vec::new()),
        };
        if station.take(peer, chunk, &packets, &heard).await.is_err() {
            break;
        }
    }
    if let Some(deframer) = deframer.as_mut() {
        deframer.finish(&link);
    }
    station.finish().await;
    link.counters.set_state(LinkState::Stopped);
}
