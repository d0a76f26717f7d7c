//! The wire formats peers implement, below every stage that speaks them.
//!
//! [`ingest`] is the protocol of uplinks and replay feeds (`docs/ingest-protocol.md`): the
//! daemon's connections, the catalog's pre-encoded CATALOG message and `uplink-sim` all speak it.

pub mod ingest;
