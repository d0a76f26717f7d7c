//! `[connection]`: what one source connection may send and how it is read and acknowledged.

use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound, UNBOUNDED};
use super::de::millis;
use super::error::{Invalid, Problem};
use crate::protocol::ingest::DATA_HEADER;

/// The largest frame length the config accepts, to keep per-connection buffers sane.
const MAX_FRAME_LENGTH_LIMIT: u64 = 16 * 1024 * 1024;

/// The smallest `connection.receive_buffer` the config accepts.
const MIN_RECEIVE_BUFFER: u64 = 4096;

/// The most bytes one socket read may take.
const MAX_READ_BUFFER: u64 = 64 << 20;

/// The most bytes of full read buffers, all connections together.
const MAX_READ_BUDGET: u64 = if usize::BITS > 32 {
    1 << 36
} else {
    usize::MAX as u64
};

/// Per-connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// Largest message body accepted; a larger length prefix closes the connection.
    pub max_frame_length: usize,
    /// Most bytes read from one socket at a time.
    pub read_buffer: usize,
    /// Bytes of full read buffers shared by all connections: `read_budget / read_buffer`
    /// connections read a full buffer at a time (the credits are shared out among the shards, at
    /// least one each); the rest read 4 KiB, or wait their turn when
    /// their socket holds more (the `read_credit` module), so memory stays bounded whatever the
    /// number of sources. The default, 64 credits, is one for every source of the reference
    /// deployment (48 uplinks and their replay feeds) and no more: a read beyond those only waits
    /// in the fan-in's line, holding memory, and costs CPU per frame with many sources
    /// (`docs/architecture.md`).
    pub read_budget: usize,
    /// The kernel's receive buffer of each connection (`SO_RCVBUF`, set on the listeners): what
    /// the kernel may hold of a source's data the daemon has not read yet. Left out, the kernel
    /// sizes it (autotuning, up to `net.ipv4.tcp_rmem`'s largest per connection).
    pub receive_buffer: Option<usize>,
    /// Time a new connection has to send its hello.
    #[serde(rename = "handshake_timeout_ms", deserialize_with = "millis")]
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    #[serde(rename = "idle_timeout_ms", deserialize_with = "millis")]
    pub idle_timeout: Duration,
    /// Acknowledgements to one source are coalesced to at most one per interval.
    #[serde(rename = "ack_interval_ms", deserialize_with = "millis")]
    pub ack_interval: Duration,
    /// ACKs per second across all connections: with many connections each one's interval
    /// stretches to `connections / ack_budget_per_sec` seconds, since every ACK is a system call
    /// (and on loopback also the peer's TCP receive). 5,000 leaves 48 sources their 10 ms and gives
    /// each of 10,000 one every 2 s.
    pub ack_budget_per_sec: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_frame_length: 64 * 1024,
            read_buffer: 128 * 1024,
            read_budget: 8 * 1024 * 1024,
            receive_buffer: None,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            ack_interval: Duration::from_millis(10),
            ack_budget_per_sec: 5_000,
        }
    }
}

impl ConnectionConfig {
    /// Every size and timeout within its bounds, and a budget that holds one full read.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let mut table = vec![
            Bound::bytes(
                "connection.read_buffer",
                self.read_buffer,
                1..=MAX_READ_BUFFER,
            ),
            Bound::bytes(
                "connection.read_budget",
                self.read_budget,
                1..=MAX_READ_BUDGET,
            ),
            Bound::count(
                "connection.ack_budget_per_sec",
                self.ack_budget_per_sec,
                UNBOUNDED,
            ),
            Bound::millis("connection.handshake_timeout_ms", self.handshake_timeout),
            Bound::millis("connection.idle_timeout_ms", self.idle_timeout),
            Bound::millis("connection.ack_interval_ms", self.ack_interval),
            Bound::bytes(
                "connection.max_frame_length",
                self.max_frame_length,
                DATA_HEADER as u64..=MAX_FRAME_LENGTH_LIMIT,
            )
            .least_because("a DATA body's header, without payload"),
        ];
        if let Some(bytes) = self.receive_buffer {
            let row = Bound::bytes(
                "connection.receive_buffer",
                bytes,
                MIN_RECEIVE_BUFFER..=UNBOUNDED,
            );
            table.push(row.least_because("leave it out for the kernel's own sizing"));
        }
        bounds::check(&table)?;
        if self.read_budget < self.read_buffer {
            let problem = Problem::BelowReadBuffer {
                value: self.read_budget,
                read_buffer: self.read_buffer,
                must_hold: "the budget must hold at least one full read",
            };
            return Err(Invalid::new("connection.read_budget", problem));
        }
        Ok(())
    }
}
