//! Followers of the archive: consumers outside the process that must not miss a frame (an
//! analytics loader, another site) read every stored frame from a position of their choosing and
//! then follow live, over TCP (`docs/follow-protocol.md`).
//!
//! Why from the files and not from the pipeline: the archive already holds every frame in order,
//! durably, with a place on disk that survives restarts. Serving followers from it makes a
//! position a bookmark in the files ([`position`]), makes "history, then live" one loop up to the
//! archive's durable end ([`crate::archive::read`]), so the switch loses and repeats nothing, and
//! keeps followers off the data path: a slow follower is only further behind in the files, and
//! ingest, the archive writer and the drain never wait for it. The price is latency: a frame
//! reaches a follower once it is durable (`archive.sync_interval_ms`, 20 ms by default).
//!
//! The archive has a segment stream per shard (`crate::archive::format`), each with its own
//! durable end: a follower reads them all, and a position names its shard; a consumer resumes
//! with one position per shard ([`Positions`]).
//!
//! The reading is the archive's; this folder is what makes it a follow: [`protocol`] is the wire
//! format, [`server`] the listener and one task per follower, [`client`] the consumer's side and
//! `aggregator tail`.
//!
//! [`position`]: crate::domain::position
//! [`Positions`]: crate::domain::position::Positions

pub mod client;
pub mod protocol;
pub mod server;

pub use server::{FollowSettings, Followers};
