//! A live uplink's connection: the socket, its HELLO.

use std::net::SocketAddr;

use aggregator::protocol::ingest::{ClientMessage, Hello, VERSION};
use aggregator::SourceKind;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Connects a live uplink, with a send buffer of `send_buffer` bytes if given, and says HELLO.
pub async fn connect(
    addr: SocketAddr,
    source_id: u32,
    send_buffer: Option<u32>,
) -> Result<TcpStream, String> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(size) = send_buffer {
        socket
            .set_send_buffer_size(size)
            .map_err(|e| format!("SO_SNDBUF: {e}"))?;
    }
    let mut stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .write_all(&hello(source_id))
        .await
        .map_err(|e| format!("HELLO: {e}"))?;
    Ok(stream)
}

/// The HELLO of live uplink `source_id`.
pub fn hello(source_id: u32) -> BytesMut {
    let mut hello = BytesMut::new();
    ClientMessage::Hello(Hello {
        version: VERSION,
        kind: SourceKind::LiveUplink,
        source_id,
    })
    .encode(&mut hello);
    hello
}
