//! The handshake: the first message must be a valid HELLO for this listener, within
//! `handshake_timeout`.
//!
//! Every way it can fail is a [`Refusal`], sent as one REFUSED with its reason, logged and counted
//! in one place ([`refuse`]): as a protocol error when the peer broke the protocol, as a refused
//! connection when it asked for something the daemon will not give.

use std::net::SocketAddr;
use std::ops::ControlFlow;

use bytes::Buf;
use tokio::time::{sleep_until, Instant};

use super::services::Services;
use super::wire::Wire;
use crate::domain::frame::SourceKind;
use crate::protocol::ingest::{
    walk_messages, ClientMessage, Hello, MessageView, ProtocolError, RefuseReason, ServerMessage,
    VERSION,
};
use crate::tls::auth::PeerIdentity;

/// Why a connection is not served.
#[derive(Debug)]
pub(super) enum Refusal {
    /// Refused with this reason and detail.
    Refuse(RefuseReason, String),
    /// The peer went away before a HELLO: there is no one to tell.
    Gone,
}

impl Refusal {
    fn expected_hello(err: impl std::fmt::Display) -> Refusal {
        Refusal::Refuse(
            RefuseReason::HelloExpected,
            format!("expected HELLO: {err}"),
        )
    }

    /// A HELLO of protocol `version`, not this daemon's.
    fn other_version(version: u8) -> Refusal {
        let detail = ProtocolError::OtherVersion(version).to_string();
        Refusal::Refuse(RefuseReason::UnsupportedVersion, detail)
    }

    /// The drain started before the source was welcomed.
    pub(super) fn shutting_down() -> Refusal {
        let detail = "the daemon is shutting down".to_string();
        Refusal::Refuse(RefuseReason::ShuttingDown, detail)
    }
}

/// Waits for a valid hello and consumes it from the read buffer; anything the source sent behind
/// it stays there for the ingest loop. With mutual TLS, `identity` (the peer's certificate) must
/// cover the source the hello names.
pub(super) async fn handshake(
    wire: &mut Wire,
    listener: SourceKind,
    identity: Option<&PeerIdentity>,
    services: &Services,
) -> Result<Hello, Refusal> {
    let hello = match first_message(wire, services).await? {
        Ok(MessageView::Hello(hello)) if hello.version == VERSION => hello,
        Ok(MessageView::Hello(hello)) => return Err(Refusal::other_version(hello.version)),
        Err(ProtocolError::OtherVersion(version)) => return Err(Refusal::other_version(version)),
        Ok(MessageView::Data { .. }) => return Err(Refusal::expected_hello("DATA before HELLO")),
        Ok(MessageView::Ping(_)) => return Err(Refusal::expected_hello("PING before HELLO")),
        Ok(MessageView::CatalogAck(_)) => {
            return Err(Refusal::expected_hello("CATALOG_ACK before HELLO"))
        }
        Err(err) => return Err(Refusal::expected_hello(err)),
    };
    if hello.kind != listener {
        let detail = format!(
            "a {} source cannot connect to the {} listener",
            hello.kind.as_str(),
            listener.as_str()
        );
        return Err(Refusal::Refuse(RefuseReason::WrongKind, detail));
    }
    if let Some(identity) = identity {
        if !services
            .config
            .auth
            .allows(identity, hello.kind, hello.source_id)
        {
            let detail = format!(
                "the certificate of {identity} does not cover {}:{}",
                hello.kind.label(),
                hello.source_id
            );
            return Err(Refusal::Refuse(RefuseReason::Unauthorized, detail));
        }
    }
    Ok(hello)
}

/// The longest first message read whole (docs/ingest-protocol.md, `HelloExpected`). A HELLO is 7 bytes:
/// a longer length is refused once its prefix is read, not after its body, so that a connection
/// that has not said who it is holds little (not `max_frame_length`, up to 16 MiB, per connection
/// being admitted).
const FIRST_MESSAGE_MAX: usize = 4096;

/// Reads until the first whole message, and decodes it.
async fn first_message(
    wire: &mut Wire,
    services: &Services,
) -> Result<Result<MessageView, ProtocolError>, Refusal> {
    let cfg = &services.config.connection;
    let deadline = Instant::now() + cfg.handshake_timeout;
    loop {
        let mut first = None;
        let max = cfg.max_frame_length.min(FIRST_MESSAGE_MAX);
        let walk = walk_messages(&wire.buf, max, |_, body| {
            first = Some(ClientMessage::view(body));
            ControlFlow::Break(())
        });
        if let Some(first) = first {
            wire.buf.advance(walk.end);
            return Ok(first);
        }
        match walk.oversize {
            Some(ProtocolError::FrameTooLarge { length, .. }) => {
                let max = cfg.max_frame_length;
                let why = match length <= max {
                    true => format!("a first message of {length} bytes, where a HELLO is 7"),
                    false => ProtocolError::FrameTooLarge { length, max }.to_string(),
                };
                return Err(Refusal::expected_hello(why));
            }
            Some(err) => return Err(Refusal::expected_hello(err)),
            None => {}
        }
        let read = tokio::select! {
            _ = services.drain.cancelled() => return Err(Refusal::shutting_down()),
            _ = sleep_until(deadline) => {
                let detail = format!("no HELLO within {} ms", cfg.handshake_timeout.as_millis());
                return Err(Refusal::Refuse(RefuseReason::HandshakeTimeout, detail));
            }
            read = wire.read_small() => read,
        };
        match read {
            Ok(0) if wire.buf.is_empty() => {
                tracing::debug!("closed before sending a HELLO");
                return Err(Refusal::Gone);
            }
            Ok(0) => {
                let buffered = wire.buf.len();
                return Err(Refusal::expected_hello(ProtocolError::Truncated {
                    buffered,
                }));
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(error = %err, "read failed before the HELLO");
                return Err(Refusal::Gone);
            }
        }
    }
}

/// Sends a refusal, logs it and counts it, and closes the connection.
pub(super) async fn refuse(
    wire: &mut Wire,
    peer: SocketAddr,
    services: &Services,
    refusal: Refusal,
) {
    if let Refusal::Refuse(reason, detail) = refusal {
        if is_protocol_error(reason) {
            services.stats.protocol_error();
        } else {
            services.stats.refused();
        }
        if reason == RefuseReason::Unauthorized {
            services.stats.unauthorized();
        }
        // The peer in the event itself, not only in the connection's span: the line must name it
        // whatever became of the span.
        tracing::warn!(%peer, %reason, %detail, "connection refused");
        wire.send(&ServerMessage::Refused { reason, detail }).await;
    }
    wire.close().await;
}

/// Whether the peer broke the protocol, rather than asked for something the daemon will not give.
fn is_protocol_error(reason: RefuseReason) -> bool {
    match reason {
        RefuseReason::HelloExpected | RefuseReason::HandshakeTimeout => true,
        RefuseReason::UnsupportedVersion
        | RefuseReason::WrongKind
        | RefuseReason::DuplicateSource
        | RefuseReason::TooManyConnections
        | RefuseReason::ShuttingDown
        | RefuseReason::Unauthorized => false,
    }
}
