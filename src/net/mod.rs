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

/// How long a closing connection waits for its client to close its side, reading and dropping
/// what it sends: a close with the client's bytes unread resets the connection, and the reset
/// drops what the daemon sent last before the client read it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Reads and drops what `read` brings until its end or [`LINGER`]: after the sending side's
/// shutdown, so that the last bytes sent reach the client.
pub(crate) async fn linger(mut read: impl tokio::io::AsyncRead + Unpin) {
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut read, &mut sink)).await;
}
pub use listen::listen;
pub use slots::{Limits, Refused};
pub(crate) use slots::{Slot, Slots};
