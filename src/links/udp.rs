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
use super::station::{Link, ReadPackets, Station};
use super::stream::takes_frame;
use crate::stats::LinkState;

/// Datagrams read into one chunk at most.
const BURST: usize = 64;

/// The datagrams of one burst: the buffer they are read into, where each packet lies in it, and
/// who sent the first.
struct Burst {
    buf: BytesMut,
    peer: Option<SocketAddr>,
    packets: Vec<Range<usize>>,
}

impl Burst {
    fn new(room: usize) -> Burst {
        Burst {
            buf: BytesMut::with_capacity(room * 4),
            peer: None,
            packets: Vec::new(),
        }
    }

    /// The datagram just read into `buf[start..]`: a frame to `deframer` if the link reads
    /// frames, else taken if it is one whole packet.
    fn datagram(
        &mut self,
        link: &Link,
        deframer: Option<&mut Deframer>,
        start: usize,
        from: SocketAddr,
    ) {
        self.peer.get_or_insert(from);
        let datagram = &self.buf[start..];
        match deframer {
            Some(deframer) => deframer.read_datagram(link, datagram),
            None if takes_frame(link, datagram) => self.packets.push(start..self.buf.len()),
            None => {}
        }
    }

    /// Reads the datagrams waiting on `socket`, up to [`BURST`] in all, each with `room` bytes.
    fn read_waiting(
        &mut self,
        socket: &UdpSocket,
        link: &Link,
        mut deframer: Option<&mut Deframer>,
        room: usize,
    ) {
        for _ in 1..BURST {
            let start = self.buf.len();
            if self.buf.capacity() - start < room {
                self.buf.reserve(room);
            }
            match socket.try_recv_buf_from(&mut self.buf) {
                Ok((_, from)) => self.datagram(link, deframer.as_deref_mut(), start, from),
                Err(_) => break,
            }
        }
    }

    /// The burst's packets (out of its frames, when the link reads frames).
    fn packets(self, link: &Link, deframer: Option<&mut Deframer>) -> ReadPackets {
        match deframer {
            Some(deframer) => deframer.packets(link),
            None => ReadPackets {
                chunk: self.buf.freeze(),
                packets: self.packets,
                heard: Vec::new(),
            },
        }
    }
}

/// Reads datagrams until the drain.
pub(crate) async fn receive(link: Arc<Link>, socket: UdpSocket, drain: CancellationToken) {
    link.counters.set_state(LinkState::Listening);
    let mut station = Station::new(Arc::clone(&link));
    let mut deframer = Deframer::new(&link);
    let room = room(&link);
    let mut first = true;
    loop {
        let mut burst = Burst::new(room);
        let received = tokio::select! {
            _ = drain.cancelled() => break,
            received = socket.recv_buf_from(&mut burst.buf) => received,
        };
        match received {
            Ok((_, from)) => burst.datagram(&link, deframer.as_mut(), 0, from),
            Err(err) => {
                tracing::warn!(link = %link.config.name, error = %err, "udp receive failed");
                continue;
            }
        }
        burst.read_waiting(&socket, &link, deframer.as_mut(), room);
        let Some(peer) = burst.peer else { continue };
        if first {
            link.counters.connected();
            first = false;
        }
        let packets = burst.packets(&link, deframer.as_mut());
        if station.take(peer, packets).await.is_err() {
            break;
        }
    }
    if let Some(deframer) = deframer.as_mut() {
        deframer.finish(&link);
    }
    station.finish().await;
    link.counters.set_state(LinkState::Stopped);
}

/// One byte more than the largest packet (or marker and frame): a datagram that fills it is too
/// long.
fn room(link: &Link) -> usize {
    let check = link.config.rs_check_symbols_length;
    let frame = link
        .config
        .frame_length
        .map_or(0, |length| 4 + length + check);
    link.config.max_packet_bytes.max(frame) + 1
}
