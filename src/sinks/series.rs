//! A source's series in the stream: the last message of its subject, and what a stream of layout
//! `records/1` holds of it (`docs/scale-out.md`, "Exactly once").
//!
//! Why the subject's last message and JetStream's expected-last-subject-sequence check, not the
//! duplicate window: a batch published again after a failure need not be the same batch (the
//! reading after a restart cuts the frames elsewhere), so no message id can name it. Instead the
//! sink has one message of a subject in flight at a time, each message says how far its subject
//! reaches ([`Through`]) and names the stream sequence of the one before it, which JetStream
//! checks: whichever daemon wrote last, the last message tells what the stream holds, and a
//! writer that did not know it is refused, looks again, and publishes only what lacks.

use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};

use super::message::{Naming, Through, REPLICATED_THROUGH, SITE};
use crate::archive::format::FrameRecord;
use crate::domain::frame::SourceKey;

/// What the last message of a source in the stream says.
pub(super) struct LastMessage {
    pub(super) site: Option<String>,
    /// `Aggregator-Sequence`: a `frame/1` message's frame.
    pub(super) sequence: Option<u64>,
    pub(super) replicated_through: Option<u64>,
    pub(super) through: Through,
    pub(super) stream_sequence: u64,
}

/// The last message of the source `key` in `stream`; `None` when the stream has none of it.
pub(super) async fn last_message(
    stream: &Stream,
    naming: &Naming,
    key: SourceKey,
) -> Result<Option<LastMessage>, String> {
    let subject = naming.subject(key.0, key.1);
    let message = match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => message,
        Err(err) if err.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
        Err(err) => return Err(format!("last message of {subject}: {err}")),
    };
    let bad = |why: String| format!("last message of {subject}: {why}");
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_string());
    let number = |name: &str| match header(name) {
        None => Ok(None),
        Some(text) => {
            (text.parse().map(Some)).map_err(|_| bad(format!("{name} {text:?} is not a sequence")))
        }
    };
    Ok(Some(LastMessage {
        site: header(SITE),
        sequence: number("Aggregator-Sequence")?,
        replicated_through: number(REPLICATED_THROUGH)?,
        through: Through::of_headers(&message.headers).map_err(|e| bad(e.to_string()))?,
        stream_sequence: message.sequence,
    }))
}

/// A source's series as the sink last knew it: the stream sequence of its subject's last
/// message, and how far each priority reaches.
#[derive(Debug, Clone, Default)]
pub(super) struct Series {
    pub(super) last: u64,
    pub(super) through: Through,
}

impl Series {
    /// As the stream's last message of the source says (none: an empty series).
    pub(super) fn of(last: Option<&LastMessage>) -> Series {
        last.map_or_else(Series::default, |m| Series {
            last: m.stream_sequence,
            through: m.through.clone(),
        })
    }

    /// Whether the stream holds `frame` already.
    pub(super) fn holds(&self, frame: &FrameRecord) -> bool {
        self.through.holds(frame)
    }

    /// The marks with `frames` published after what the series holds.
    pub(super) fn with<'a>(&self, frames: impl IntoIterator<Item = &'a FrameRecord>) -> Through {
        let mut through = self.through.clone();
        frames.into_iter().for_each(|frame| through.add(frame));
        through
    }
}
