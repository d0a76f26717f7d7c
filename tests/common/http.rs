//! The monitor served beside an in-process daemon, and a plain HTTP client to ask it.

use std::io;
use std::net::SocketAddr;

use aggregator::archive::write::ArchiveSink;
use aggregator::ops::monitor::{self, MonitorState};
use aggregator::tls::client::ClientTls;
use aggregator::tls::stream;
use aggregator::{Config, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::TestDaemon;

/// A daemon storing into `sink`, with its monitor served beside it as the binary does; cancel the
/// token to stop the monitor.
pub async fn start_monitored(
    config: Config,
    sink: Box<dyn ArchiveSink>,
) -> (TestDaemon, SocketAddr, CancellationToken) {
    let (daemon, state) = TestDaemon::start_with(config, sink, Daemon::monitor_state).await;
    let (addr, stop) = serve_monitor(state).await;
    (daemon, addr, stop)
}

/// Serves the monitor with `state` on loopback port 0, bound as the binary binds it; cancel the
/// token to stop it.
pub async fn serve_monitor(state: MonitorState) -> (SocketAddr, CancellationToken) {
    let loopback = "127.0.0.1:0".parse().unwrap();
    let listener = aggregator::net::listen(loopback, 256, None, "monitor").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(monitor::serve(
        listener,
        state,
        stop.clone().cancelled_owned(),
    ));
    (addr, stop)
}

/// A plain HTTP/1.1 GET: (status, lowercase header lines, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, Vec<String>, String) {
    http_get_with(addr, path, &[], None).await
}

/// An HTTP/1.1 GET with extra header lines, over TLS when `tls` is given.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[&str],
    tls: Option<&ClientTls>,
) -> (u16, Vec<String>, String) {
    http_request(addr, "GET", path, headers, tls)
        .await
        .unwrap_or_else(|err| panic!("GET {path} from {addr}: {err}"))
}

/// An HTTP/1.1 request without a body (`method` GET, or POST with `Content-Length: 0` among the
/// headers), over TLS when `tls` is given: (status, lowercase header lines, body). An error when
/// no connection can be made, as to a server still starting.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    tls: Option<&ClientTls>,
) -> io::Result<(u16, Vec<String>, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream::client(tcp, tls).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    writer.write_all(request.as_bytes()).await?;
    writer.flush().await?;
    let mut response = String::new();
    // A TLS peer may close without close_notify once the response is complete.
    let _ = reader.read_to_string(&mut response).await;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines.map(str::to_ascii_lowercase).collect();
    Ok((status, headers, body.to_string()))
}

/// The body of a chunked answer, decoded.
pub fn dechunked(body: &str) -> String {
    let (out, whole) = chunks_so_far(body);
    assert!(whole, "the answer has no last chunk: {out}");
    out
}

/// The data of the whole chunks of a chunked body read so far, and whether its last chunk (the
/// empty one that says the answer is whole) came.
pub fn chunks_so_far(body: &str) -> (String, bool) {
    let (mut rest, mut out) = (body, String::new());
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return (out, false);
        };
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return (out, true);
        }
        if after.len() < size + 2 {
            return (out, false);
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// `GET path` as JSON.
pub async fn http_get_json(addr: SocketAddr, path: &str) -> serde_json::Value {
    let (status, _, body) = http_get(addr, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("a JSON body")
}

/// `GET path` from a plain HTTP server on loopback `port`, on the calling thread (HTTP/1.0: the
/// server closes when done): the status and the JSON body. An error when no connection can be
/// made or the body is not JSON, as from a server still starting.
pub fn http_get_json_blocking(port: u16, path: &str) -> io::Result<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("no status in {response:?}")))?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json = serde_json::from_str(body).map_err(|err| invalid(format!("{err}: {body:?}")))?;
    Ok((status, json))
}
