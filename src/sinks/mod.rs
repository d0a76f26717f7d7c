//! Publishers of the archive into other systems, for deployments that outgrow one daemon
//! (`docs/scale-out.md`).
//!
//! A sink is a follower of the archive, like a lossless consumer of [`crate::follow`]: it reads
//! the segment files from its own durable [`cursor`] with the archive's read side
//! ([`crate::archive::read`]), on a thread of its own, so an outage of the system it publishes to
//! only puts it further behind in the files; ingest, the archive and the drain never wait for it.
//! [`nats`] publishes into NATS JetStream; [`fleet`] asks its stream where a source stands, for a
//! daemon that takes over a source from another; [`reader`] reads the stream's frames back.

mod backlog;
pub mod client;
pub mod cursor;
pub mod fleet;
mod gaps;
mod layout;
mod leader;
pub mod message;
pub mod nats;
mod pack;
mod progress;
pub mod reader;
mod room;
mod series;
mod size;
mod stream;
mod unacked;
mod urgent;
mod window;
