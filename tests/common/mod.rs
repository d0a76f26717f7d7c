//! Shared test helpers, one file per concern: the daemon under test, in-process on loopback port 0
//! ([`daemon`]) or as a child process ([`process`]); archives that record or shard ([`archive`],
//! [`sharded`]) and the archive's files read back ([`files`]); waiting ([`wait`]); the monitor over
//! HTTP ([`http`]); protocol clients ([`client`]); log capture ([`logs`]); certificates
//! ([`certs`]); scratch directories ([`scratch`]); AX.25 audio for real TNCs ([`ax25_audio`]);
//! `nats-server`, alone or as a JetStream cluster ([`nats`]), daemons publishing into it
//! ([`nats_daemon`]), `uplink-sim` as a child ([`sim`]), and two stations of a merge group
//! ([`stations`]) and a recording of theirs backfilled through a link's spool ([`backfill`]), and a
//! TNC's KISS frames ([`tnc`]).
//!
//! Every integration test file includes this module and uses a different part of it, so what one
//! file leaves unused is not dead code.
#![allow(dead_code)]

pub mod ax25_audio;
pub mod backfill;
pub mod process;
pub mod stations;

mod archive;
mod certs;
mod client;
mod daemon;
mod files;
mod http;
mod logs;
mod nats;
mod nats_daemon;
mod scratch;
mod sharded;
mod sim;
mod tnc;
mod wait;

// Each test file uses some of these, and the rest are unused there.
#[allow(unused_imports)]
pub use self::{
    archive::{Archive, RecordingSink, Stored},
    certs::Ca,
    client::{
        data_bytes, emergency_at, every_nth_emergency, hello_bytes, is_disconnect, payload_for,
        ping_bytes, routine_at, Client, Closed, Inbox,
    },
    daemon::{archive_config, test_config, unbatched_config, with_followers, Shards, TestDaemon},
    files::stored_frames,
    http::{
        chunks_so_far, dechunked, http_get, http_get_json, http_get_json_blocking, http_get_with,
        http_request, serve_monitor, start_monitored,
    },
    logs::{log_capture, LogWriter},
    nats::{nats_server, NatsCluster, NatsServer},
    nats_daemon::NatsDaemon,
    scratch::{TempDir, Tmpfs},
    sharded::ShardedArchive,
    sim::{Sim, SimTotal},
    tnc::{kiss_time_frame, packet},
    wait::{ephemeral_low, free_port, wait_until, wait_until_async, wait_until_blocking, PATIENCE},
};
