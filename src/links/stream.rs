//! A link's TCP connections: accepted (tcp-listen) or dialled again and again with backoff
//! (tcp-connect), each read, delimited into packets (or frames, their packets taken out) and
//! handed to its [`Station`].
//!
//! A station connected to a listening link that connects again (its old connection half dead)
//! replaces the old one: the old one stops reading, its packets are admitted, and the new one
//! starts, so one connection at a time feeds the link's sources and their sequences stay in order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::frames::Deframer;
use super::station::{Heard, Link, ReadPackets, Station};
use crate::config::KissPayload;
use crate::domain::reception::Ax25Addresses;
use crate::net::{accept_until, Limits, Slots};
use crate::protocol::ax25;
use crate::protocol::ccsds::{Framing, PacketError, PrimaryHeader};
use crate::protocol::kiss::{self, KissError, KissFrame};
use crate::stats::LinkState;

/// Why a link's connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Ending {
    #[error("the station closed the connection")]
    EndOfStream,
    #[error("the station closed the connection within a packet ({0} bytes unread)")]
    Truncated(usize),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable stream: {0}")]
    Packet(#[from] PacketError),
    #[error("unreadable KISS stream: {0}")]
    Kiss(#[from] KissError),
    #[error("replaced by a newer connection of the station")]
    Replaced,
    #[error("the daemon is draining")]
    Drain,
}

/// Connections of one link's station at once: the one feeding it, and those waiting for their
/// turn. A newer one takes the place of the oldest waiting, so that a flood of connections to a
/// station port holds neither memory nor descriptors, and the newest always gets its turn.
const LINK_CONNECTIONS: usize = 4;

/// Accepts stations until the drain; each connection replaces the one before. Through the accept
/// loop every listener runs, so the archive's descriptor reserve is kept, and past
/// [`LINK_CONNECTIONS`] the oldest connection still waiting for its turn is closed.
pub(crate) async fn listen(
    link: Arc<Link>,
    listener: TcpListener,
    drain: CancellationToken,
    tracker: TaskTracker,
) {
    link.counters.set_state(LinkState::Listening);
    let mut current: Option<CancellationToken> = None;
    let slots = Slots::new(Limits::new(LINK_CONNECTIONS, Some(LINK_CONNECTIONS)));
    let stats = link.stats.clone();
    accept_until(
        &listener,
        &slots,
        Slots::take_or_evict,
        &drain,
        &stats,
        |stream, peer, slot| {
            let slot = match slot {
                Ok(slot) => slot,
                Err(refused) => {
                    tracing::debug!(link = %link.config.name, %peer, "station connection closed: {refused}");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let stop = drain.child_token();
            if let Some(previous) = current.replace(stop.clone()) {
                previous.cancel();
            }
            let (link, drain) = (Arc::clone(&link), drain.clone());
            tracker.spawn(async move {
                // A connection replaced before its turn came has read nothing to store.
                let _turn = tokio::select! {
                    turn = link.turn.lock() => turn,
                    () = stop.cancelled() => return,
                    () = slot.evicted().cancelled() => return,
                };
                slot.set_idle(false);
                let ending = connection(&link, stream, peer, &stop, &drain).await;
                ended(&link, peer, &ending, &stop);
                if !stop.is_cancelled() {
                    link.counters.set_state(LinkState::Listening);
                }
                drop(slot);
            });
        },
    )
    .await;
    link.counters.set_state(LinkState::Stopped);
}

/// The wait after `wait` in a row of failed dials: twice it, up to `max`, never below `min` (a
/// `reconnect_max_ms` under `reconnect_min_ms` keeps the waits at the latter).
fn next_wait(wait: Duration, min: Duration, max: Duration) -> Duration {
    (wait * 2).min(max).max(min)
}

/// Dials the station until the drain, again after each loss, waiting between tries from
/// `reconnect_min` doubling up to `reconnect_max`.
pub(crate) async fn dial(link: Arc<Link>, drain: CancellationToken) {
    let config = &link.config;
    let mut wait = config.reconnect_min;
    let mut failures = 0u64;
    loop {
        link.counters.set_state(LinkState::Connecting);
        let dialled = tokio::select! {
            _ = drain.cancelled() => break,
            dialled = TcpStream::connect(config.address.as_str()) => dialled,
        };
        match dialled.and_then(|stream| Ok((stream.peer_addr()?, stream))) {
            Ok((peer, stream)) => {
                let _ = stream.set_nodelay(true);
                tracing::info!(link = %config.name, %peer, "link connected");
                failures = 0;
                wait = config.reconnect_min;
                let ending = connection(&link, stream, peer, &drain, &drain).await;
                ended(&link, peer, &ending, &drain);
            }
            Err(err) => {
                failures += 1;
                let why = format!("cannot connect to {}: {err}", config.address);
                // The first failure after a success is news; the retries are not.
                match failures {
                    1 => {
                        tracing::warn!(link = %config.name, reason = %why, retry_ms = wait.as_millis() as u64, "link down")
                    }
                    _ => tracing::debug!(link = %config.name, reason = %why, "link still down"),
                }
                link.counters.failed(why);
            }
        }
        link.counters.set_state(LinkState::Backoff);
        tokio::select! {
            _ = drain.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        if failures > 0 {
            wait = next_wait(wait, config.reconnect_min, config.reconnect_max);
        }
    }
    link.counters.set_state(LinkState::Stopped);
}

fn ended(link: &Link, peer: SocketAddr, ending: &Ending, stop: &CancellationToken) {
    let name = &link.config.name;
    match ending {
        Ending::Drain | Ending::Replaced => {
            tracing::debug!(link = %name, %peer, reason = %ending, "link connection ended")
        }
        Ending::Packet(_) | Ending::Kiss(_) => {
            link.counters.bad_input();
            tracing::warn!(link = %name, %peer, reason = %ending, "closing the link's connection on bad input");
        }
        _ => tracing::info!(link = %name, %peer, reason = %ending, "link connection ended"),
    }
    if !stop.is_cancelled() {
        link.counters.failed(ending.to_string());
    }
}

/// Reads one connection until it ends, `stop` is cancelled (by the `drain`, or by a newer
/// connection) or its input is unreadable; every packet decoded before the end is admitted.
async fn connection(
    link: &Arc<Link>,
    mut stream: impl AsyncRead + Unpin,
    peer: SocketAddr,
    stop: &CancellationToken,
    drain: &CancellationToken,
) -> Ending {
    link.counters.connected();
    let mut station = Station::new(Arc::clone(link));
    let mut input = Input::new(link);
    let ending = loop {
        input.reserve(link);
        let read = tokio::select! {
            biased;
            _ = stop.cancelled() => break match drain.is_cancelled() {
                true => Ending::Drain,
                false => Ending::Replaced,
            },
            read = stream.read_buf(&mut input.buf) => read,
        };
        match read {
            Ok(0) if input.buf.is_empty() => break Ending::EndOfStream,
            Ok(0) => break Ending::Truncated(input.buf.len()),
            Ok(_) => {}
            Err(err) => break Ending::Io(err),
        }
        let (packets, failure) = input.packets(link);
        if station.take(peer, packets).await.is_err() {
            break Ending::Drain;
        }
        if let Some(failure) = failure {
            break failure;
        }
    };
    input.finish(link);
    station.finish().await;
    ending
}

/// What one connection reads with: its buffer, and the state of the link's framing.
struct Input {
    buf: BytesMut,
    /// How the stream delimits packets, unless it carries frames or KISS.
    framing: Option<Framing>,
    /// The frame layer, when the stream carries transfer frames.
    deframer: Option<Deframer>,
    /// A KISS time frame's earth-receive time, for the next data frame (it may come in a later
    /// read).
    earth_time: Option<u64>,
}

impl Input {
    fn new(link: &Link) -> Input {
        Input {
            buf: BytesMut::new(),
            framing: link.config.stream_framing(),
            deframer: Deframer::new(link),
            earth_time: None,
        }
    }

    /// Makes room for the next read: the link's read buffer, and at least a whole packet.
    fn reserve(&mut self, link: &Link) {
        let max = link.config.max_packet_bytes;
        (self.buf).reserve(link.read_buffer.max(max + 8) - self.buf.len().min(max + 8));
    }

    /// The whole packets at the front of the buffer, cut off it, and the failure that stops the
    /// stream after them, if any.
    fn packets(&mut self, link: &Link) -> (ReadPackets, Option<Ending>) {
        match (&mut self.deframer, &self.framing) {
            (Some(deframer), _) => {
                deframer.read_stream(link, &mut self.buf);
                (deframer.packets(link), None)
            }
            (None, Some(framing)) => delimit(link, framing, &mut self.buf),
            (None, None) => unescape(link, &mut self.buf, &mut self.earth_time),
        }
    }

    /// The stream ended: packets in reassembly in the frame layer are dropped and counted.
    fn finish(&mut self, link: &Link) {
        if let Some(deframer) = &mut self.deframer {
            deframer.finish(link);
        }
    }
}

/// The complete packets at the front of `buf`, cut off it as one chunk, with their
/// earth-receive times. A header delimits a whole packet by itself; a length field delimits a
/// frame, which must hold one.
fn delimit(link: &Link, framing: &Framing, buf: &mut BytesMut) -> (ReadPackets, Option<Ending>) {
    let max = link.config.max_packet_bytes;
    let mut delimited = framing.delimit(buf, max, |skipped| link.lost_sync(skipped));
    if matches!(framing, Framing::LengthPrefix(_)) {
        delimited
            .packets
            .retain(|frame| takes_frame(link, &buf[frame.clone()]));
    }
    let failure = delimited.failure.map(Ending::Packet);
    let chunk = buf.split_to(delimited.end).freeze();
    let heard = header_times(link, &chunk, &delimited.packets);
    let packets = delimited.packets;
    (
        ReadPackets {
            chunk,
            packets,
            heard,
        },
        failure,
    )
}

/// Each length-prefixed packet's earth-receive time, from the header before it
/// (`earth_time`); nothing for other framings.
fn header_times(link: &Link, chunk: &[u8], packets: &[std::ops::Range<usize>]) -> Vec<Heard> {
    let config = &link.config;
    let (Some(field), Some(length)) = (config.earth_time, config.length) else {
        return Vec::new();
    };
    (packets.iter())
        .map(|packet| Heard {
            earth_unix_ns: (chunk.get(packet.start.saturating_sub(length.strip)..packet.start))
                .and_then(|header| field.read(header)),
            ..Heard::default()
        })
        .collect()
}

/// What a read's KISS data frames hold: the packets, unescaped into a chunk of their own, and
/// what was heard of each: its AX.25 addresses and the source its sender maps to, and the
/// earth-receive time of a time frame before it.
#[derive(Default)]
struct KissPackets {
    out: Vec<u8>,
    packets: Vec<std::ops::Range<usize>>,
    heard: Vec<Heard>,
}

/// The complete KISS data frames at the front of `buf`, unescaped into a chunk of their own; a
/// frame that does not start with one whole space packet (behind its AX.25 header with
/// `kiss_payload = "ax25"`) is dropped and counted, and bytes after the packet are counted. A
/// time frame's time (`earth_time`) goes to the next data frame of the link's port.
fn unescape(
    link: &Link,
    buf: &mut BytesMut,
    earth_time: &mut Option<u64>,
) -> (ReadPackets, Option<Ending>) {
    let max = link.config.max_packet_bytes;
    let (mut at, mut read, mut failure) = (0, KissPackets::default(), None);
    let port_taken = |port| link.config.kiss_port.is_none_or(|wanted| wanted == port);
    loop {
        match kiss::next_frame(&buf[at..], 2 * max + 2, &mut read.out) {
            Ok(Some((end, KissFrame::Data { port, len }))) => {
                at += end;
                let start = read.out.len() - len;
                let time = port_taken(port).then(|| earth_time.take()).flatten();
                read.data_frame(link, port, start, time);
            }
            Ok(Some((end, KissFrame::Time { port, unix_ms }))) => {
                at += end;
                if port_taken(port) {
                    *earth_time = earth_receive_time(link, unix_ms);
                }
            }
            Ok(Some((end, KissFrame::Command(_) | KissFrame::Fill))) => at += end,
            Ok(Some((end, KissFrame::Bad(err)))) => {
                at += end;
                // A time frame cut short gives no time: the next data frame goes without.
                *earth_time = None;
                link.bad_packet(&err);
            }
            Ok(None) => break,
            Err(err) => {
                failure = Some(Ending::Kiss(err));
                break;
            }
        }
    }
    buf.advance(at);
    (read.into(), failure)
}

/// A recording's KISS data frames (port, unescaped bytes, earth-receive time) as one read's
/// packets, taken as the link takes a connection's (`super::backfill`).
pub(crate) fn kiss_packets<'a>(
    link: &Link,
    frames: impl Iterator<Item = (u8, &'a [u8], Option<u64>)>,
) -> ReadPackets {
    let mut read = KissPackets::default();
    for (port, bytes, earth_unix_ns) in frames {
        let start = read.out.len();
        read.out.extend_from_slice(bytes);
        read.data_frame(link, port, start, earth_unix_ns);
    }
    read.into()
}

impl From<KissPackets> for ReadPackets {
    fn from(read: KissPackets) -> ReadPackets {
        ReadPackets {
            chunk: Bytes::from(read.out),
            packets: read.packets,
            heard: read.heard,
        }
    }
}

impl KissPackets {
    /// Takes the packet of the data frame of `port` at `out[start..]`, received on earth at
    /// `earth_unix_ns`, or drops the frame.
    fn data_frame(&mut self, link: &Link, port: u8, start: usize, earth_unix_ns: Option<u64>) {
        let config = &link.config;
        if config.kiss_port.is_some_and(|wanted| wanted != port) {
            link.counters.other_port();
            return self.out.truncate(start);
        }
        let mut heard = Heard {
            earth_unix_ns,
            ..Heard::default()
        };
        let at = match config.kiss_payload {
            KissPayload::Packet => start,
            KissPayload::Ax25 => match ax25::parse(&self.out[start..]) {
                Ok(header) => {
                    heard.sender = received(link, &header);
                    heard.ax25 = Some(Ax25Addresses {
                        from: header.source,
                        to: header.destination,
                    });
                    start + header.len
                }
                Err(err) => {
                    link.bad_packet(&err);
                    return self.out.truncate(start);
                }
            },
        };
        match leading_packet(&self.out[at..], config.max_packet_bytes) {
            Ok(len) => {
                trailing(link, self.out.len() - at - len);
                self.out.truncate(at + len);
                self.packets.push(at..at + len);
                self.heard.push(heard);
            }
            Err(err) => {
                self.out.truncate(start);
                link.bad_packet(&err);
            }
        }
    }
}

/// A time frame's milliseconds as nanoseconds; past what nanoseconds hold (the year 2554) it is
/// bad input, and the next data frame goes without.
fn earth_receive_time(link: &Link, unix_ms: u64) -> Option<u64> {
    let time = unix_ms.checked_mul(1_000_000);
    if time.is_none() {
        link.bad_packet(&format_args!(
            "a KISS time frame of {unix_ms} ms since 1970: beyond the year 2554"
        ));
    }
    time
}

/// Counts and logs an AX.25 frame: the source its sender maps to, if any.
fn received(link: &Link, header: &ax25::UiHeader) -> Option<u32> {
    link.counters.ax25_frame();
    let source = link.source_of_sender(&header.source);
    tracing::debug!(
        link = %link.config.name,
        from = %header.source,
        to = %header.destination,
        repeaters = header.repeaters,
        source,
        "AX.25 frame"
    );
    source
}

/// Bytes after the packet in a KISS frame: counted, and logged at most once a second.
fn trailing(link: &Link, bytes: usize) {
    if bytes == 0 {
        return;
    }
    link.counters.trailing(bytes as u64);
    if link.may_log() {
        tracing::warn!(link = %link.config.name, bytes, "bytes after the packet in a KISS frame: not stored");
    }
}

/// Whether the content of a frame (length-prefixed, a KISS data frame, a datagram) is taken as
/// a packet: it must be one whole packet ([`whole_packet`]), or it is dropped, counted as bad
/// input and logged at most once a second; the stream goes on after it.
pub(crate) fn takes_frame(link: &Link, content: &[u8]) -> bool {
    match whole_packet(content, link.config.max_packet_bytes) {
        Ok(()) => true,
        Err(err) => {
            link.bad_packet(&err);
            false
        }
    }
}

/// Checks that `bytes` are one whole space packet of at most `max` bytes: a header of version
/// 0 whose length field says `bytes.len()`.
pub(crate) fn whole_packet(bytes: &[u8], max: usize) -> Result<(), PacketError> {
    if bytes.len() > max {
        let length = bytes.len();
        return Err(PacketError::TooLong { length, max });
    }
    match leading_packet(bytes, max)? {
        len if len == bytes.len() => Ok(()),
        declared => Err(PacketError::LengthMismatch {
            declared,
            carried: bytes.len(),
        }),
    }
}

/// The length of the whole space packet of at most `max` bytes that `bytes` start with.
fn leading_packet(bytes: &[u8], max: usize) -> Result<usize, PacketError> {
    let least = crate::protocol::ccsds::PRIMARY_HEADER + 1;
    let header = PrimaryHeader::parse(bytes).ok_or(PacketError::TooShort {
        length: bytes.len(),
        least,
    })?;
    if header.version != 0 {
        return Err(PacketError::Version(header.version));
    }
    let declared = header.packet_len();
    if declared > max {
        return Err(PacketError::TooLong {
            length: declared,
            max,
        });
    }
    if declared > bytes.len() {
        return Err(PacketError::LengthMismatch {
            declared,
            carried: bytes.len(),
        });
    }
    Ok(declared)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waits double from the least up to the most; a most below the least keeps the least.
    #[test]
    fn the_wait_doubles_within_its_bounds() {
        let ms = Duration::from_millis;
        let waits = |min, max| {
            let steps =
                std::iter::successors(Some(ms(min)), |&w| Some(next_wait(w, ms(min), ms(max))));
            steps.take(5).map(|w| w.as_millis()).collect::<Vec<_>>()
        };
        assert_eq!(waits(100, 500), [100, 200, 400, 500, 500]);
        assert_eq!(waits(1000, 200), [1000, 1000, 1000, 1000, 1000]);
    }
}
