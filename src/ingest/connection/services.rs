//! What the daemon lends every connection: the configuration, the router, the counters, the
//! drain and storage signals, the read credits, the catalog, TLS and the shards' runtimes.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::catalog::CatalogHandle;
use crate::config::Config;
use crate::domain::replication::{FleetResume, Replication};
use crate::ingest::read_credit::ReadCredits;
use crate::ingest::router::RouterHandle;
use crate::stats::Stats;
use crate::tls::ServerTls;

/// The daemon's services every connection uses, shared by all of them.
#[derive(Debug)]
pub(crate) struct Services {
    pub config: Arc<Config>,
    pub router: RouterHandle,
    pub stats: Stats,
    pub drain: CancellationToken,
    /// Each shard's, cancelled by its archive when it gives up on frames it cannot store (a
    /// drain during a disk outage): the shard's connections stop waiting for their
    /// acknowledgement (`storage_lost[k]` is shard `k`'s).
    pub storage_lost: Vec<CancellationToken>,
    /// Each shard's read credits (`read_credits[k]` is shard `k`'s).
    pub read_credits: Vec<ReadCredits>,
    pub catalog: CatalogHandle,
    /// The listeners' TLS, when `[tls]` is configured.
    pub tls: Option<Arc<ServerTls>>,
    /// Each shard's runtime (`shards[k]` is shard `k`'s): a registered connection is served on
    /// its shard's. Empty: on the caller's runtime.
    pub shards: Vec<tokio::runtime::Handle>,
    /// With `sinks.nats.identity = "fleet"` and `ack = "replicated"`: where a registering source
    /// stands in the fleet's stream.
    pub fleet: Option<Arc<dyn FleetResume>>,
    /// With `sinks.nats.ack = "replicated"`: the gate, which says when the sink has published
    /// what earlier runs archived.
    pub replication: Option<Arc<Replication>>,
}
