//! How operators see the daemon: counters, the monitor's HTTP endpoint (`/stats`, `/metrics`,
//! health, the feed, catalog uploads, archive queries), the web dashboard page, the stats log
//! line, the logs.
//!
//! Nothing here is on the data path's critical section: stages add to atomic counters, and every
//! reader (the monitor, the web dashboard, the stats line) takes snapshots, so watching the daemon
//! never slows it.

pub mod access;
pub mod archive_query;
pub mod catalog;
pub(crate) mod clock;
pub mod completeness_json;
pub mod feed;
pub mod frame_feed;
pub mod health;
mod http;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod passes_json;
pub mod query;
mod spool;
mod stats_body;
pub(crate) mod stats_log;
pub mod volume_json;
pub mod web;
