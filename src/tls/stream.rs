//! A connection's two halves, plain TCP or TLS, behind one type each.
//!
//! The ingest loop reads while the catalog sender writes, so the halves must be borrowed apart.
//! A plain connection keeps Tokio's owned halves of its socket (no lock, and readiness can be
//! awaited before a read credit is taken); a TLS connection splits its stream with
//! `tokio::io::split`, whose halves share the `rustls` session. An enum rather than a boxed trait
//! object: the plain path costs one branch per call, and nothing more is allocated.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

use super::auth::PeerIdentity;
use super::client::ClientTls;
use super::ServerTls;

/// The reading half of a connection.
#[derive(Debug)]
pub enum Reader {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a connection.
#[derive(Debug)]
pub enum Writer {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

/// A connection accepted by a listener, its TLS handshake (if any) done.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub reader: Reader,
    pub writer: Writer,
    /// The identity of the peer's certificate, with mutual TLS.
    pub identity: Option<PeerIdentity>,
}

impl Reader {
    /// Waits until the socket has data, where that can be known without reading: `false` for TLS,
    /// whose session may already hold decrypted bytes, so that only a read can tell.
    pub(crate) async fn readable(&self) -> io::Result<bool> {
        match self {
            Reader::Plain(reader) => reader.readable().await.map(|()| true),
            Reader::Tls(_) => Ok(false),
        }
    }
}

/// Splits `stream` as it is (no TLS) or after a server-side TLS handshake of at most `patience`.
/// A failed handshake is an error naming why (a plaintext client, no or a rejected certificate).
pub(crate) async fn accept(
    stream: TcpStream,
    tls: Option<&ServerTls>,
    patience: Duration,
) -> io::Result<Accepted> {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        let (reader, writer) = stream.into_split();
        return Ok(Accepted {
            reader: Reader::Plain(reader),
            writer: Writer::Plain(writer),
            identity: None,
        });
    };
    // Boxed: the handshake's state holds the whole session, and would otherwise sit in every
    // connection's future for its whole life.
    let handshake = Box::pin(tls.acceptor().accept(stream));
    let stream = tokio::time::timeout(patience, handshake)
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake within {} ms", patience.as_millis()),
            )
        })??;
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(PeerIdentity::of);
    let (reader, writer) = tokio::io::split(TlsStream::Server(stream));
    Ok(Accepted {
        reader: Reader::Tls(reader),
        writer: Writer::Tls(writer),
        identity,
    })
}

/// Splits a client's connected `stream`, after a TLS handshake when `tls` is given.
pub async fn client(stream: TcpStream, tls: Option<&ClientTls>) -> io::Result<(Reader, Writer)> {
    let _ = stream.set_nodelay(true);
    match tls {
        None => {
            let (reader, writer) = stream.into_split();
            Ok((Reader::Plain(reader), Writer::Plain(writer)))
        }
        Some(tls) => {
            let addr = stream.peer_addr()?;
            let stream = Box::pin(tls.connect(addr, stream)).await?;
            let (reader, writer) = tokio::io::split(TlsStream::Client(stream));
            Ok((Reader::Tls(reader), Writer::Tls(writer)))
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Plain(reader) => Pin::new(reader).poll_read(cx, buf),
            Reader::Tls(reader) => Pin::new(reader).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Plain(writer) => Pin::new(writer).poll_write(cx, buf),
            Writer::Tls(writer) => Pin::new(writer).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Plain(writer) => Pin::new(writer).poll_write_vectored(cx, bufs),
            Writer::Tls(writer) => Pin::new(writer).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Writer::Plain(writer) => writer.is_write_vectored(),
            Writer::Tls(writer) => writer.is_write_vectored(),
        }
    }

    /// A plain socket has nothing to flush; a TLS session may hold records the socket did not take.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Plain(writer) => Pin::new(writer).poll_flush(cx),
            Writer::Tls(writer) => Pin::new(writer).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Plain(writer) => Pin::new(writer).poll_shutdown(cx),
            Writer::Tls(writer) => Pin::new(writer).poll_shutdown(cx),
        }
    }
}
