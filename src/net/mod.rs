//! Accepting connections, the same way on every listener: the sources' listeners, the follow
//! listener, the TM servers and the monitor.
//!
//! Why a folder of its own below the stages: whatever port a client reaches, its connection takes
//! a file descriptor, and the archive must always find one to open and sync its files. So the
//! accept loop (`accept_until`) and the descriptor reserve it keeps for the archive
//! ([`descriptors`]) are written once, and every stage that listens imports them from below, not
//! from a stage beside it.

pub(crate) mod accept;
pub mod descriptors;

pub(crate) use accept::accept_until;
