//! Protocol clients: a source connection ([`Client`]) that writes raw bytes and reads the daemon's
//! answers decoded ([`Inbox`]), and the wire bytes tests send.

use std::io;
use std::net::SocketAddr;

use aggregator::protocol::ingest::{
    encode_data, ClientCodec, ClientMessage, CloseReason, Hello, RefuseReason, ServerMessage,
    VERSION,
};
use aggregator::tls::client::ClientTls;
use aggregator::tls::stream::{self, Reader, Writer};
use aggregator::{Priority, SourceKind};
use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::codec::FramedRead;

use super::PATIENCE;

/// The payload every test frame carries: its own sequence, so a mangled payload shows.
pub fn payload_for(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

/// Wire bytes of DATA frames, with [`payload_for`] payloads.
pub fn data_bytes(frames: impl IntoIterator<Item = (Priority, u64)>) -> BytesMut {
    let mut out = BytesMut::new();
    for (priority, sequence) in frames {
        encode_data(&mut out, priority, sequence, &payload_for(sequence));
    }
    out
}

/// Wire bytes of a HELLO.
pub fn hello_bytes(version: u8, kind: SourceKind, source_id: u32) -> BytesMut {
    let mut out = BytesMut::new();
    ClientMessage::Hello(Hello {
        version,
        kind,
        source_id,
    })
    .encode(&mut out);
    out
}

pub fn ping_bytes(token: u64) -> BytesMut {
    let mut out = BytesMut::new();
    ClientMessage::Ping(token).encode(&mut out);
    out
}

/// How an accepted connection ended, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Every ACK received before the CLOSE, in order.
    pub acks: Vec<u64>,
    pub reason: CloseReason,
    pub final_ack: Option<u64>,
    pub detail: String,
}

/// A source connection: raw writes (so tests can also send garbage) and decoded reads.
pub struct Client {
    pub inbox: Inbox,
    pub writer: Writer,
}

/// The reading side of a [`Client`]: what the daemon says.
pub struct Inbox {
    reader: FramedRead<Reader, ClientCodec>,
}

impl Client {
    /// Connects without saying anything.
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the daemon");
        Self::from_stream(stream)
    }

    /// Connects with a small kernel send buffer, so that a daemon that stops reading blocks the
    /// client's writes soon.
    pub async fn connect_small_buffer(addr: SocketAddr, send_buffer: u32) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_send_buffer_size(send_buffer).unwrap();
        let stream = socket.connect(addr).await.expect("connect to the daemon");
        Self::from_stream(stream)
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        let (read, writer) = stream.into_split();
        Self::from_halves(Reader::Plain(read), Writer::Plain(writer))
    }

    /// Connects and completes a TLS handshake (its error, if it fails).
    pub async fn connect_tls(addr: SocketAddr, tls: &ClientTls) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        let (reader, writer) = stream::client(stream, Some(tls)).await?;
        Ok(Self::from_halves(reader, writer))
    }

    /// A client on the halves of a connection already made (plain or TLS).
    pub fn from_halves(reader: Reader, writer: Writer) -> Client {
        Client {
            inbox: Inbox {
                reader: FramedRead::new(reader, ClientCodec::default()),
            },
            writer,
        }
    }

    /// Connects, says HELLO and expects WELCOME.
    pub async fn source(addr: SocketAddr, kind: SourceKind, source_id: u32) -> Client {
        let mut client = Self::connect(addr).await;
        client
            .send_raw(&hello_bytes(VERSION, kind, source_id))
            .await;
        client.expect_welcome().await;
        client
    }

    /// Sends `payloads` as source `kind:id` to the listener at `addr`, with sequences from
    /// `first` and routine priority, and waits until the daemon has stored them all (acknowledged
    /// and closed the connection).
    pub async fn store(
        addr: SocketAddr,
        kind: SourceKind,
        id: u32,
        first: u64,
        payloads: &[Vec<u8>],
    ) {
        let mut bytes = BytesMut::new();
        for (sequence, payload) in (first..).zip(payloads) {
            encode_data(&mut bytes, Priority::Routine, sequence, payload);
        }
        let mut client = Client::source(addr, kind, id).await;
        client.send_raw(&bytes).await;
        client.finish_sending().await;
        client.read_to_close().await;
    }

    /// Separates the halves, to write from one task and read from another.
    pub fn split(self) -> (Inbox, Writer) {
        (self.inbox, self.writer)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .await
            .expect("write to the daemon");
        // A no-op on plain TCP; TLS may hold the last record until flushed.
        self.writer.flush().await.expect("write to the daemon");
    }

    /// Sends DATA frames in one write.
    pub async fn send_frames(&mut self, frames: impl IntoIterator<Item = (Priority, u64)>) {
        let bytes = data_bytes(frames);
        self.send_raw(&bytes).await;
    }

    /// Sends routine frames with the given sequences in one write.
    pub async fn send_routine(&mut self, sequences: impl IntoIterator<Item = u64>) {
        self.send_frames(sequences.into_iter().map(|s| (Priority::Routine, s)))
            .await;
    }

    /// Shuts down the sending side (the source is done).
    pub async fn finish_sending(&mut self) {
        self.writer
            .shutdown()
            .await
            .expect("shut down the sending side");
    }

    pub async fn recv(&mut self) -> Option<io::Result<ServerMessage>> {
        self.inbox.recv().await
    }

    pub async fn recv_message(&mut self) -> ServerMessage {
        self.inbox.recv_message().await
    }

    pub async fn expect_welcome(&mut self) -> Option<u64> {
        self.inbox.expect_welcome().await
    }

    pub async fn expect_refused(&mut self) -> (RefuseReason, String) {
        self.inbox.expect_refused().await
    }

    pub async fn read_to_close_with(&mut self, on_ack: impl FnMut(u64)) -> Closed {
        self.inbox.read_to_close_with(on_ack).await
    }

    pub async fn read_to_close(&mut self) -> Closed {
        self.inbox.read_to_close().await
    }

    pub async fn expect_closed(&mut self) {
        self.inbox.expect_closed().await
    }
}

impl Inbox {
    /// The next message from the daemon: `None` at a clean end of stream, `Some(Err)` when the
    /// connection was reset or a message did not decode. Fails the test if nothing comes in time.
    pub async fn recv(&mut self) -> Option<io::Result<ServerMessage>> {
        tokio::time::timeout(PATIENCE, self.reader.next())
            .await
            .expect("the daemon answered in time")
    }

    /// The next message, which must exist and decode.
    pub async fn recv_message(&mut self) -> ServerMessage {
        self.recv()
            .await
            .expect("a message, not the end of the stream")
            .expect("a well-formed message")
    }

    /// Expects WELCOME; returns its `resume_after`.
    pub async fn expect_welcome(&mut self) -> Option<u64> {
        match self.recv_message().await {
            ServerMessage::Welcome {
                version,
                resume_after,
            } => {
                assert_eq!(version, VERSION);
                resume_after
            }
            other => panic!("expected WELCOME, got {other:?}"),
        }
    }

    /// Expects REFUSED and then the end of the connection; returns the reason and detail.
    pub async fn expect_refused(&mut self) -> (RefuseReason, String) {
        let refused = match self.recv_message().await {
            ServerMessage::Refused { reason, detail } => (reason, detail),
            other => panic!("expected REFUSED, got {other:?}"),
        };
        self.expect_closed().await;
        refused
    }

    /// Reads ACKs until CLOSE, checking that ACKs only move forward, then expects the end of the
    /// connection. `on_ack` sees every acknowledged sequence, the CLOSE's `final_ack` too.
    /// Catalogs are passed over.
    pub async fn read_to_close_with(&mut self, mut on_ack: impl FnMut(u64)) -> Closed {
        let mut acks: Vec<u64> = Vec::new();
        loop {
            match self.recv_message().await {
                ServerMessage::Ack { sequence } => {
                    if let Some(&last) = acks.last() {
                        assert!(sequence > last, "ACK {sequence} after ACK {last}");
                    }
                    on_ack(sequence);
                    acks.push(sequence);
                }
                ServerMessage::Close {
                    reason,
                    final_ack,
                    detail,
                } => {
                    if let Some(&last) = acks.last() {
                        assert!(
                            final_ack.is_some_and(|fin| fin >= last),
                            "final_ack {final_ack:?} below the earlier ACK {last}"
                        );
                    }
                    if let Some(fin) = final_ack {
                        on_ack(fin);
                    }
                    self.expect_closed().await;
                    return Closed {
                        acks,
                        reason,
                        final_ack,
                        detail,
                    };
                }
                ServerMessage::Catalog { .. } => {}
                other => panic!("expected ACK or CLOSE, got {other:?}"),
            }
        }
    }

    pub async fn read_to_close(&mut self) -> Closed {
        self.read_to_close_with(|_| ()).await
    }

    /// Expects the daemon to have closed the connection: end of stream, or a reset.
    pub async fn expect_closed(&mut self) {
        match self.recv().await {
            None => {}
            Some(Err(err)) if is_disconnect(&err) => {}
            Some(other) => panic!("expected the connection to be closed, got {other:?}"),
        }
    }
}

/// Errors that mean "the peer closed the connection".
pub fn is_disconnect(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Routine frame `sequence`, as `Client::send_frames` takes it.
pub fn routine_at(sequence: u64) -> (Priority, u64) {
    (Priority::Routine, sequence)
}

/// Emergency frame `sequence`, as `Client::send_frames` takes it.
pub fn emergency_at(sequence: u64) -> (Priority, u64) {
    (Priority::Emergency, sequence)
}

/// Frames of `sequences`, every `n`th an emergency.
pub fn every_nth_emergency(sequences: std::ops::Range<u64>, n: u64) -> Vec<(Priority, u64)> {
    sequences
        .map(|s| {
            if s % n == n - 1 {
                emergency_at(s)
            } else {
                routine_at(s)
            }
        })
        .collect()
}
