//! The follow protocol (`docs/follow-protocol.md`): SUBSCRIBE from the consumer; SUBSCRIBED or
//! REFUSED, then FRAMES and an END from the daemon.
//!
//! A FRAMES message carries the frames of one archive record (a batch of one source and priority):
//! what they share, and the first one's position, once; each frame's sequence, length and payload
//! after it, as the archive stores them. At 64-byte payloads a message per frame cost the consumer
//! more to take apart than the frame itself.
//!
//! Every position names its shard (`crate::archive::format`): SUBSCRIBE carries one position per
//! shard, and FRAMES its shard. Versions 3 to 5 are spoken: 4 adds RECEPTION, a link's frames'
//! reception, before their FRAMES, which a consumer of 3 never sees; 5 adds RECORDED RECEPTION,
//! which names a backfill's recording; a SUBSCRIBE of any other is refused with
//! `UnsupportedVersion`.
//!
//! What the messages carry is the archive's: where a reading starts ([`Start`](crate::archive::read::Start)), which frames it
//! wants ([`FrameFilter`](crate::domain::filter::FrameFilter)), the runs of frames it reads
//! ([`FrameRun`](crate::archive::read::FrameRun)) and why it cannot go on
//! ([`ReadError`], said here as a [`Refusal`] or an [`End`]). This folder only puts them on the
//! wire and takes them off it.
//!
//! It uses the uplink protocol's framing (a u32 big-endian length, then the body, whose first byte
//! is the type), so a client reuses its framing code, and message types of their own (0x11, 0x91
//! to 0x9A), so a consumer that connects to a source listener by mistake, or a source that
//! connects here, is refused at its first message instead of misread. Every message is encoded
//! and decoded here and nowhere else: the daemon, `aggregator tail` and the benchmark share it.
//!
//! The files, each importing only those above it: `wire` (versions, message types, lengths, a
//! position's bytes); `refusal` and `end` (REFUSED's and END's typed causes and codes);
//! `decode_error` (what a consumer makes of a body that is no message); `subscribe`
//! (SUBSCRIBE); `reception` (RECEPTION and its per-frame flags); `frames` (FRAMES); `message`
//! (every message the daemon sends).

//!
//! [`ReadError`]: crate::archive::read::ReadError

mod decode_error;
mod end;
mod frames;
mod message;
mod reception;
mod refusal;
mod subscribe;
mod wire;

pub use decode_error::DecodeError;
pub use end::{End, EndReason};
pub(crate) use frames::encode_frames;
pub use message::DaemonMessage;
pub(crate) use reception::RunReception;
pub(crate) use refusal::Refusal;
pub use refusal::RefuseReason;
pub use refusal::SubscribeError;
pub use subscribe::Subscription;
pub(crate) use wire::MAX_SUBSCRIBE_LEN;
pub use wire::{MAX_DAEMON_MESSAGE_LEN, OLDEST_VERSION, VERSION};

#[cfg(test)]
mod tests;
