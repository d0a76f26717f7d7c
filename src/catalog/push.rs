//! `aggregator catalog push`: one HTTP/1.1 `PUT /catalog` to the monitor, and its answer.
//!
//! One request with a known body needs no HTTP client library: the request is written whole and
//! the response read to the end of the connection (`Connection: close`).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::client::ClientTls;
use crate::tls::stream;

/// How long the whole exchange may take: the daemon answers once the catalog is synced to disk.
const PATIENCE: Duration = Duration::from_secs(30);

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cannot reach the monitor at {addr}: {source}")]
    Unreachable {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from the monitor at {0} within 30 s")]
    Timeout(SocketAddr),
    #[error("the monitor refused the catalog (HTTP {status}): {reason}")]
    Refused { status: u16, reason: String },
    #[error("the monitor's answer is not HTTP: {0:?}")]
    BadAnswer(String),
}

/// How to reach a monitor that has TLS or a token.
#[derive(Debug, Default)]
pub struct MonitorAccess {
    /// HTTPS, with `[tls]` on the daemon.
    pub tls: Option<ClientTls>,
    /// The bearer token, with `monitor.token_file` on the daemon.
    pub token: Option<String>,
}

/// Publishes `body` through the monitor at `addr`; returns the version it was given.
pub async fn push(
    addr: SocketAddr,
    content_type: &str,
    body: &[u8],
    access: &MonitorAccess,
) -> Result<u64, PushError> {
    tokio::time::timeout(PATIENCE, exchange(addr, content_type, body, access))
        .await
        .map_err(|_| PushError::Timeout(addr))?
}

async fn exchange(
    addr: SocketAddr,
    content_type: &str,
    body: &[u8],
    access: &MonitorAccess,
) -> Result<u64, PushError> {
    let unreachable = |source| PushError::Unreachable { addr, source };
    let stream = TcpStream::connect(addr).await.map_err(unreachable)?;
    let (mut reader, mut writer) = stream::client(stream, access.tls.as_ref())
        .await
        .map_err(unreachable)?;
    let authorization = access.authorization();
    let head = format!(
        "PUT /catalog HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n{authorization}Connection: close\r\n\r\n",
        body.len()
    );
    writer
        .write_all(head.as_bytes())
        .await
        .map_err(unreachable)?;
    // A refusal (413) may come before the body is read: a failed write is then not the story.
    let sent = match writer.write_all(body).await {
        Ok(()) => writer.flush().await,
        failed => failed,
    };
    let mut answer = Vec::new();
    let read = reader.read_to_end(&mut answer).await;
    if answer.is_empty() {
        let err = sent.err().or(read.err()).unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed without an answer",
            )
        });
        return Err(unreachable(err));
    }
    parse_answer(&String::from_utf8_lossy(&answer))
}

/// The version from a 200 answer (`{"version":N}`), or the refusal's status and text.
fn parse_answer(answer: &str) -> Result<u64, PushError> {
    let bad = || PushError::BadAnswer(answer.chars().take(80).collect());
    let (status, body) = status_and_body(answer).ok_or_else(bad)?;
    if status != 200 {
        return Err(PushError::Refused {
            status,
            reason: body.trim().to_string(),
        });
    }
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["version"].as_u64())
        .ok_or_else(bad)
}

/// The status and body of an HTTP/1.1 answer read to its end; `None` when it is not one.
pub fn status_and_body(answer: &str) -> Option<(u16, &str)> {
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body))
}

impl MonitorAccess {
    /// The `Authorization` header line (CRLF ended) with the token; empty without one.
    pub fn authorization(&self) -> String {
        (self.token.as_ref()).map_or(String::new(), |token| {
            format!("Authorization: Bearer {token}\r\n")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_give_the_version_or_the_reason() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"version\":7}";
        assert_eq!(parse_answer(ok).unwrap(), 7);
        let refused = "HTTP/1.1 413 Payload Too Large\r\n\r\nthe catalog is 9 bytes, above catalog.max_bytes (4)\n";
        let err = parse_answer(refused).unwrap_err().to_string();
        assert!(
            err.contains("413") && err.contains("catalog.max_bytes"),
            "{err}"
        );
        assert!(matches!(
            parse_answer("garbage"),
            Err(PushError::BadAnswer(_))
        ));
    }
}
