//! The telemetry aggregator: a daemon that merges satellite uplinks and replay feeds into one
//! priority-ordered, backpressured stream, fans it out to an archive that receives every frame and
//! a dashboard that may lag, and drains everything it accepted before it exits.
//!
//! # Layout
//! - [`protocol`]: the wire format (`docs/protocol.md`), shared with the simulator and benchmark.
//! - [`frame`]: `Frame`, `Batch`, `Priority`, `SourceKind`: what moves through the pipeline.
//! - [`config`]: `aggregator.toml`, its defaults and its validation.
//! - [`server`]: the `Daemon`: wiring, accept loops, connection limits, the drain.
//! - [`connection`]: one source connection: handshake, ingest, backpressure, acknowledgements.
//! - [`router`]: the router actor that owns the table of sources and hands out fan-in lanes.
//! - [`source`]: a registered source's shared counters.
//! - [`ledger`]: a source's acknowledgement ledger, keyed by sequence, kept across connections.
//! - [`sequence_set`]: sequences as runs: what a source stored above its acknowledgement.
//! - [`fan_in`]: the two-lane priority fan-in with its starvation guard.
//! - [`queue`]: the queue bounded in frames that every lane and the archive input use.
//! - [`processor`]: the frame processor and the fan-out.
//! - [`durable`]: the segment-file archive sink and its recovery at start-up.
//! - [`archive`]: the consumer that must receive every frame, and its `ArchiveSink` interface.
//! - [`segment`]: the archive's on-disk format (`docs/archive.md`): segment files, records, the scan
//!   that tells a torn tail from corruption and resumes after damage.
//! - [`archive_tools`]: `aggregator archive verify`, `inspect` and `repair`, for operators.
//! - [`dashboard`]: the consumer that may lag, and the lag-tolerant `FrameFeed`.
//! - [`stats`]: lock-free pipeline counters and their `watch` publication.
//! - [`monitor`]: the HTTP endpoint: `/stats`, `/metrics`, `/healthz`.
//! - [`logging`]: text or JSON logs.
//! - [`sim`]: `uplink-sim`, the load and smoke-test client that accounts for every frame end to end.

pub mod archive;
pub mod archive_tools;
pub mod config;
pub(crate) mod connection;
pub mod dashboard;
pub mod durable;
pub mod fan_in;
pub mod frame;
pub mod ledger;
pub mod logging;
pub mod monitor;
pub mod processor;
pub mod protocol;
pub mod queue;
pub(crate) mod read_credit;
pub mod router;
pub mod segment;
pub mod sequence_set;
pub mod server;
pub mod sim;
pub mod source;
pub mod stats;

pub use config::Config;
pub use frame::{Batch, Frame, Priority, SourceKind};
pub use server::{Daemon, DrainReport, Health, HealthProbe, Listeners};
pub use stats::{PipelineStats, Stats};
