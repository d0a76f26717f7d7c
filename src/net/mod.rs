//! Binding and accepting connections, the same way on every listener: the sources' listeners, the
//! follow listener, the TM servers and the monitor.
//!
//! Why a folder of its own below the stages: whatever port a client reaches, its connection takes
//! a file descriptor, and the archive must always find one to open and sync its files. So the
//! accept loop (`accept_until`), the connection limits per listener and per address ([`slots`])
//! and the descriptor reserve it keeps for the archive ([`descriptors`]) are written once, and
//! every stage that listens imports them from below, not from a stage beside it.

pub(crate) mod accept;
pub mod descriptors;
mod listen;
pub mod slots;

pub(crate) use accept::accept_until;
pub use listen::listen;
pub use slots::{Limits, Refused};
pub(crate) use slots::{Slot, Slots};
