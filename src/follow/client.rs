//! The consumer's side: [`Follower`] subscribes and reads frames until the daemon's END, and
//! [`tail`] is `aggregator tail`, which prints them one line (or one JSON object) each.
//!
//! A consumer that must not lose a frame keeps the position of the last frame it handled in each
//! shard and subscribes again after them ([`Start::After`]) when the connection ends, whatever
//! ended it. [`Follower::positions`] keeps them: the ones the subscription started after, moved
//! on by each frame handed out.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::SocketAddr;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::protocol::{
    DaemonMessage, DecodeError, EndReason, RefuseReason, RunReception, Subscription,
    MAX_DAEMON_MESSAGE_LEN,
};

use crate::archive::read::{ArchivedFrame, DamagedRange, Earliest, Skipped, Start};
use crate::domain::display::{hex, payload_preview, unix_ns_to_rfc3339};
use crate::domain::position::Positions;
use crate::tls::client::ClientTls;
use crate::tls::stream::{self, Reader, Writer};

/// Why following ended other than at the daemon's drain.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot connect to {addr}: {source}{}", refused_hint(.source))]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("the daemon refused the subscription ({reason:?}): {detail}")]
    Refused {
        reason: RefuseReason,
        detail: String,
    },
    #[error("the daemon ended the subscription ({reason:?}): {detail}")]
    Ended { reason: EndReason, detail: String },
    #[error("the daemon sent a message this client does not understand: {0}")]
    Protocol(#[from] DecodeError),
    /// A message of the protocol at a point of the conversation where it has no place.
    #[error("the daemon sent a message this client does not understand: {message:?} {when}")]
    Unexpected {
        message: Box<DaemonMessage>,
        /// `before SUBSCRIBED` or `after SUBSCRIBED`.
        when: &'static str,
    },
    #[error("the daemon closed the connection without an END")]
    Closed,
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What a refused connection most often means: a daemon running without its follow listener,
/// which is off unless its config turns it on.
fn refused_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => {
            "; nothing listens there: the daemon's follow listener may not be enabled \
             (`consumer.enabled = true` in its config; it listens at `consumer.listen`)"
        }
        _ => "",
    }
}

/// What a follower receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Frame(ArchivedFrame),
    /// This catalog version was published (`docs/follow-protocol.md`, CATALOG).
    Catalog(u64),
    /// Segments the subscription needed were deleted: it goes on at the oldest one left
    /// (`docs/follow-protocol.md`, SKIPPED; only to a subscription that asked for it).
    Skipped(Skipped),
    /// A shard holds nothing received before this time any more, and the subscription's window
    /// starts before it (`docs/follow-protocol.md`, EARLIEST).
    Earliest(Earliest),
}

/// A subscription that the daemon accepted.
pub struct Follower {
    input: FramedRead<Reader, LengthDelimitedCodec>,
    /// The rest of the last FRAMES message, handed out one by one.
    pending: VecDeque<ArchivedFrame>,
    /// The RECEPTION of the FRAMES message to come.
    reception: Option<RunReception>,
    /// Each shard's last frame handed out (or the subscription's start after it).
    positions: Positions,
    /// The subscription's window has an end: only END(Until) says every frame of it came, and
    /// END(Shutdown) is an error (the daemon drained before the window's end).
    ends: bool,
    /// Kept open: closing it ends the subscription.
    _output: Writer,
}

impl Follower {
    /// Connects to the follow listener at `addr` (over TLS when `tls` is given) and subscribes;
    /// a daemon that does not speak the subscription's version 5 (one before it) is asked again
    /// in version 4, which it does.
    pub async fn subscribe(
        addr: SocketAddr,
        subscription: &Subscription,
        tls: Option<&ClientTls>,
    ) -> Result<Follower, FollowError> {
        match Follower::subscribe_once(addr, subscription, tls).await {
            Err(FollowError::Refused {
                reason: RefuseReason::UnsupportedVersion,
                ..
            }) if subscription.version == 5 => {
                let older = Subscription {
                    version: 4,
                    ..subscription.clone()
                };
                Follower::subscribe_once(addr, &older, tls).await
            }
            subscribed => subscribed,
        }
    }

    async fn subscribe_once(
        addr: SocketAddr,
        subscription: &Subscription,
        tls: Option<&ClientTls>,
    ) -> Result<Follower, FollowError> {
        let connect = async { stream::client(TcpStream::connect(addr).await?, tls).await };
        let (read, mut output) = connect
            .await
            .map_err(|source| FollowError::Connect { addr, source })?;
        let mut buf = BytesMut::new();
        subscription.encode(&mut buf);
        output.write_all(&buf).await?;
        output.flush().await?;
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(MAX_DAEMON_MESSAGE_LEN)
            .new_codec();
        let mut follower = Follower {
            input: FramedRead::new(read, codec),
            pending: VecDeque::new(),
            reception: None,
            positions: match &subscription.start {
                Start::After(positions) => positions.clone(),
                Start::Oldest | Start::Now => Positions::new(),
            },
            ends: subscription.filter.until.is_some(),
            _output: output,
        };
        match follower.message().await? {
            DaemonMessage::Subscribed { .. } => Ok(follower),
            DaemonMessage::Refused { reason, detail } => {
                Err(FollowError::Refused { reason, detail })
            }
            other => Err(FollowError::Unexpected {
                message: Box::new(other),
                when: "before SUBSCRIBED",
            }),
        }
    }

    /// The next frame; `None` at the END that follows the daemon's drain, after every durable frame.
    /// Catalog, skip and earliest notices are passed over.
    pub async fn next(&mut self) -> Result<Option<ArchivedFrame>, FollowError> {
        loop {
            match self.next_event().await? {
                Some(Event::Frame(frame)) => return Ok(Some(frame)),
                Some(Event::Catalog(_) | Event::Skipped(_) | Event::Earliest(_)) => {}
                None => return Ok(None),
            }
        }
    }

    /// Where to resume once every frame handed out so far is handled: the position of the last
    /// one in each shard, and the subscription's own for shards none came from. Shards missing
    /// from it start at their oldest frame ([`Start::After`]).
    pub fn positions(&self) -> &Positions {
        &self.positions
    }

    /// The next frame or notice; `None` at the END that follows the daemon's drain or the end of
    /// the subscription's time window. A window's subscription that the drain ended before the
    /// window's end is [`FollowError::Ended`]: more of the window may come after a restart.
    pub async fn next_event(&mut self) -> Result<Option<Event>, FollowError> {
        while self.pending.is_empty() {
            match self.message().await? {
                DaemonMessage::Reception(reception) => self.reception = Some(reception),
                DaemonMessage::Frames(mut run) => {
                    if let Some((delivery, received)) = self.reception.take() {
                        if received.len() != run.frames.len() {
                            return Err(FollowError::Protocol(DecodeError::ReceptionCount {
                                reception: received.len(),
                                frames: run.frames.len(),
                            }));
                        }
                        run.reception = Some((delivery, received));
                    }
                    self.pending.extend(run.into_frames())
                }
                DaemonMessage::Catalog { version } => return Ok(Some(Event::Catalog(version))),
                DaemonMessage::Earliest(earliest) => return Ok(Some(Event::Earliest(earliest))),
                DaemonMessage::Skipped(skipped) => {
                    // The shard's last position is in a deleted segment: no place to resume.
                    self.positions.remove(skipped.shard);
                    return Ok(Some(Event::Skipped(skipped)));
                }
                DaemonMessage::End {
                    reason: EndReason::Until,
                    ..
                } => return Ok(None),
                DaemonMessage::End {
                    reason: EndReason::Shutdown,
                    ..
                } if !self.ends => return Ok(None),
                DaemonMessage::End { reason, detail } => {
                    return Err(FollowError::Ended { reason, detail })
                }
                other => {
                    return Err(FollowError::Unexpected {
                        message: Box::new(other),
                        when: "after SUBSCRIBED",
                    })
                }
            }
        }
        Ok(self.pending.pop_front().map(|frame| {
            self.positions.set(frame.shard_position());
            Event::Frame(frame)
        }))
    }

    async fn message(&mut self) -> Result<DaemonMessage, FollowError> {
        let body = self.input.next().await.ok_or(FollowError::Closed)??;
        Ok(DaemonMessage::decode(body.freeze())?)
    }
}

/// What `aggregator tail` does.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub addr: SocketAddr,
    pub subscription: Subscription,
    /// Stop after this many frames.
    pub limit: Option<u64>,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// TLS to the follow listener (`--tls-ca`, `--tls-cert`, `--tls-key`).
    pub tls: Option<ClientTls>,
}

/// Prints frames to `out` as they come, until `limit` frames or the daemon's END after a drain.
/// Returns how many it printed.
pub async fn tail(options: &TailOptions, out: &mut dyn Write) -> Result<u64, FollowError> {
    let tls = options.tls.as_ref();
    let mut follower = Follower::subscribe(options.addr, &options.subscription, tls).await?;
    let mut printed = 0;
    while options.limit.is_none_or(|limit| printed < limit) {
        let line = match follower.next_event().await? {
            None => break,
            Some(Event::Catalog(version)) if options.json => {
                serde_json::json!({ "catalog": version }).to_string()
            }
            Some(Event::Catalog(version)) => format!("catalog version {version} published"),
            Some(Event::Skipped(skipped)) if options.json => skipped_json(&skipped).to_string(),
            Some(Event::Skipped(skipped)) => skipped_line(&skipped),
            Some(Event::Earliest(earliest)) if options.json => earliest_json(&earliest).to_string(),
            Some(Event::Earliest(earliest)) => format!(
                "shard {} holds nothing received before {} any more (retention deleted older \
                 segments): it starts at its oldest frame",
                earliest.shard,
                unix_ns_to_rfc3339(earliest.oldest)
            ),
            Some(Event::Frame(frame)) => {
                printed += 1;
                match options.json {
                    true => frame_json(&frame, follower.positions()).to_string(),
                    false => frame_line(&frame),
                }
            }
        };
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(printed)
}

/// A frame as `aggregator tail` prints it: shard and position, source, sequence, priority,
/// payload length and its first bytes in hex.
pub(crate) fn frame_line(followed: &ArchivedFrame) -> String {
    let f = &followed.frame;
    let mut line = format!(
        "{} {}:{} seq={} {} len={}",
        followed.shard_position(),
        f.kind.label(),
        f.source_id,
        f.sequence,
        f.priority.as_str(),
        f.payload.len(),
    );
    if let Some(reception) = &f.reception {
        line.push_str(&reception.line_fields());
    }
    line.push_str(&format!(" payload={}", payload_preview(&f.payload)));
    line
}

/// A skip as `aggregator tail` prints it: `skipped N frames: shard K segments D.. deleted, on at
/// segment R: live:1 10, live:2 5`.
pub(crate) fn skipped_line(skipped: &Skipped) -> String {
    let sources: Vec<String> = (skipped.sources.iter())
        .map(|((kind, id), frames)| format!("{}:{id} {frames}", kind.label()))
        .collect();
    format!(
        "skipped {} frames: shard {} segments {}..{} deleted, on at segment {}: {}",
        skipped.frames(),
        skipped.shard,
        skipped.deleted,
        skipped.resumed,
        skipped.resumed,
        sources.join(", ")
    )
}

/// A shard's oldest frame left, as the JSON answers name it (`aggregator tail --json`, `GET
/// /archive/frames`' NDJSON): `{"earliest":{"shard":S,"oldest":"RFC 3339"}}`.
pub(crate) fn earliest_json(earliest: &Earliest) -> serde_json::Value {
    let oldest = unix_ns_to_rfc3339(earliest.oldest);
    serde_json::json!({ "earliest": { "shard": earliest.shard, "oldest": oldest } })
}

/// Damaged bytes passed over, as the JSON answers name them: `{"shard":S,"segment":N,
/// "from":OFFSET,"to":OFFSET,"reason":"..."}`.
pub(crate) fn damaged_json(range: &DamagedRange) -> serde_json::Value {
    serde_json::json!({
        "shard": range.shard,
        "segment": range.segment,
        "from": range.bytes.start,
        "to": range.bytes.end,
        "reason": range.says(),
    })
}

/// A skip as `aggregator tail --json` prints it.
pub(crate) fn skipped_json(skipped: &Skipped) -> serde_json::Value {
    let sources: Vec<serde_json::Value> = (skipped.sources.iter())
        .map(|((kind, id), frames)| {
            serde_json::json!({ "kind": kind.label(), "source": id, "frames": frames })
        })
        .collect();
    serde_json::json!({
        "skipped": {
            "shard": skipped.shard,
            "deleted": skipped.deleted,
            "resumed": skipped.resumed,
            "frames": skipped.frames(),
            "sources": sources,
        }
    })
}

/// A frame as `aggregator tail --json` prints it, the whole payload in hex, with `resume`: the
/// positions to subscribe after once this frame is handled (`--from`).
pub(crate) fn frame_json(followed: &ArchivedFrame, resume: &Positions) -> serde_json::Value {
    let f = &followed.frame;
    let mut json = serde_json::json!({
        "position": followed.shard_position().to_string(),
        "resume": resume.to_string(),
        "kind": f.kind.label(),
        "source": f.source_id,
        "sequence": f.sequence,
        "priority": f.priority.as_str(),
        "received": unix_ns_to_rfc3339(f.received_unix_ns),
        "payload_len": f.payload.len(),
        "payload_hex": hex(&f.payload),
    });
    if let (Some(object), Some(reception)) = (json.as_object_mut(), &f.reception) {
        reception.add_to(object);
    }
    json
}
