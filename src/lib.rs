//! The telemetry aggregator: a daemon that merges satellite uplinks and replay feeds into one
//! priority-ordered, backpressured stream, fans it out to an archive that receives every frame and
//! to lossy subscribers (the dashboard, `/feed`) that may lag, serves the archive to followers and
//! sinks, sends operators' catalogs to every source, and drains everything it accepted before it
//! exits.
//!
//! # Layout
//! The folders follow a frame through the daemon, bottom up; each imports only those above it in
//! this list (`tests/layers.rs` checks it):
//! - [`domain`]: the words every stage shares: frames, batches, sources and their keys, the
//!   acknowledgement ledger, resume points, sequence sets, positions, shards, catalogs, the
//!   archive clock that stamps received times and the steps of the wall clock.
//! - [`stats`]: the counters every stage bumps and the snapshots published from them.
//! - [`protocol`]: the wire formats: the ingest protocol that uplinks, replay feeds and
//!   `uplink-sim` speak, and the ground segment's (CCSDS space packets, KISS, AX.25, TM and AOS
//!   transfer frames).
//! - [`net`]: the accept loop every listener runs, and the file descriptors it keeps for the
//!   archive.
//! - [`config`]: the config file, `aggregator.toml`, with its defaults and validation.
//! - [`tls`]: TLS on the listeners (one stream type for plain TCP and TLS, reloaded on SIGHUP),
//!   the clients' `--tls-*` flags, and which certificate may speak for which source.
//! - [`catalog`]: catalogs that operators publish and every connected source receives.
//! - [`pipeline`]: where frames merge and move: the priority fan-in, the queues bounded in
//!   frames, the processor and its fan-out, the shards' threads.
//! - [`ingest`]: from the socket into the pipeline: listeners, one task per connection
//!   (handshake, intake, acknowledgements), read credits, the router.
//! - [`links`]: ground stations' packets in (TCP, UDP, KISS, transfer frames), redundant
//!   stations merged, and the stations' recording files read frame by frame.
//! - [`archive`]: where every frame is stored, in rooms that import only downwards: the format
//!   on disk; retention; the write side (the consumer with its sync policy and unsynced bound,
//!   the segment writer and its disk thread, journals, recovery) beside the read side, which
//!   followers, TM outputs and sinks read it with; queries (completeness, passes, export); the
//!   operators' tools.
//! - [`follow`]: consumers that read the archive from a position and then follow it live: the
//!   follow protocol, the listener and its per-follower tasks, and `aggregator tail`.
//! - [`tm`]: the archive's space packets for mission control (Yamcs, COSMOS): TM servers that
//!   write them back to back on TCP, and forwards that send each as a UDP datagram.
//! - [`sinks`]: publishers of the archive into other systems (NATS JetStream), each a follower of
//!   the files with a durable cursor of its own, so that an outage never slows ingest.
//! - [`ops`]: how operators see it: the monitor's HTTP endpoint (stats, metrics, health, the feed,
//!   catalog uploads), the web dashboard, the stats log line, logs.
//! - [`daemon`]: the stages wired together, and the drain.
//! - [`sim`]: `uplink-sim`, the load and smoke-test client that accounts for every frame end to end.

pub mod archive;
pub mod catalog;
pub mod config;
pub mod daemon;
pub mod domain;
pub mod follow;
pub mod ingest;
pub mod links;
pub mod net;
pub mod ops;
pub mod pipeline;
pub mod protocol;
pub mod sim;
pub mod sinks;
pub mod stats;
pub mod tls;
pub(crate) mod tm;

pub use config::Config;
pub use daemon::{Daemon, DrainReport};
pub use domain::batch::Batch;
pub use domain::frame::{Frame, Priority, SourceKind};
pub use ingest::listener::Listeners;
pub use ops::health::Health;
pub use ops::health::HealthProbe;
pub use stats::{PipelineStats, Stats};
