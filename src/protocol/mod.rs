//! The wire formats peers implement, below every stage that speaks them.
//!
//! [`ingest`] is the protocol of uplinks and replay feeds (`docs/ingest-protocol.md`): the
//! daemon's connections, the catalog's pre-encoded CATALOG message and `uplink-sim` all speak it.
//! [`ccsds`] and [`kiss`] are the ground segment's formats (`docs/ground-segment.md`): what
//! stations send into the links, and what the TM server sends to mission-control systems.

pub mod ccsds;
pub mod ingest;
pub mod kiss;
