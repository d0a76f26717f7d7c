//! From the socket into the pipeline.
//!
//! Everything a source touches lives here: the wire protocol, the listeners, the connection task
//! that reads, batches and acknowledges, the read credits that bound what all connections read at
//! once, the router that owns the table of sources, and each source's acknowledgement ledger. The
//! ledger is here, not with the archive, because an acknowledgement is a promise made to a source:
//! the archive only reports which batches it stored.

pub(crate) mod connection;
pub mod listener;
pub(crate) mod read_credit;
pub mod router;
