//! The connection the sink publishes through: to the server that leads its stream.
//!
//! Why: JetStream stores a stream's messages at its leader, which sends them on to the other
//! replicas. A message published through another server crosses one more connection on its way
//! in, its PubAck one more on its way out, and that server takes every byte twice (from the sink,
//! then from the leader as a replica): with the bench's three servers on one machine the sink got
//! 6-8 % more frames through at 64 B (`docs/bench/nats.md`); across machines it is a network hop
//! a message. Clients of NATS connect to any server of their list, so a task looks at the
//! stream's leader a [`LOOK`] after each look and, where the sink publishes through another
//! server, connects to the servers of `sinks.nats.url` one by one until one names itself the
//! leader, and hands that connection over; where none does (the leader is not in the list, or
//! does not answer from here), the sink publishes through its own connection, as it always could.
//!
//! The sink takes a connection up ([`Publishing::take_up`]) only where no message it publishes
//! next can overtake one in flight: in `records/1` at any message (a source has one message in
//! flight at a time, its series, `series.rs`, so its next waits for the PubAck of its last,
//! whichever connection carried it); in `frame/1`, where a source has many, once every message
//! in flight is acknowledged (the sink publishes nothing more until then). A connection the sink
//! left stays open, for the PubAcks of what it carried, until a take-up [`KEPT`] or more later.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::Client;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::client::connect_one;
use crate::config::NatsConfig;
use crate::stats::Stats;

/// How long a publish may wait for room in the client's queue, and for its PubAck.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the task waits after each look at the stream's leader.
const LOOK: Duration = Duration::from_secs(5);

/// How long a connection the sink no longer publishes through stays open at least: its PubAcks
/// have come or timed out by then.
const KEPT: Duration = Duration::from_secs(2 * ACK_TIMEOUT.as_secs());

/// How long a server of the list may take to answer when the task looks for the leader's.
const ANSWER: Duration = Duration::from_secs(2);

/// How long a leader that no server of the list answered for is left before the task looks for
/// it again.
const MISSED: Duration = Duration::from_secs(60);

/// A context of `client` whose PubAcks time out after [`ACK_TIMEOUT`].
pub(super) fn context_of(client: Client) -> jetstream::Context {
    let mut context = jetstream::new(client);
    context.set_timeout(ACK_TIMEOUT);
    context
}

/// The connection the sink publishes through, and the task that follows the leader for it.
pub(super) struct Publishing {
    /// The sink's own connection's: where no connection to the leader is handed over.
    own: jetstream::Context,
    changes: watch::Receiver<Option<Client>>,
    now: jetstream::Context,
    /// The connections before, each with when it was left, for the PubAcks of what it carried.
    before: Vec<(jetstream::Context, Instant)>,
    _follower: AbortOnDropHandle<()>,
}

impl Publishing {
    /// Publishes through `own` (a context of the sink's own connection) until the task it
    /// starts, on `io` where there is one, hands over a connection to the leader of the stream of
    /// `config`; the task tells `stats` whether the sink has one.
    pub(super) fn start(
        own: jetstream::Context,
        config: &NatsConfig,
        io: Option<&Handle>,
        stats: Stats,
    ) -> Publishing {
        let (changes, changed) = watch::channel(None);
        let following = follow(own.clone(), config.clone(), io.cloned(), changes, stats);
        let follower = match io {
            Some(io) => io.spawn(following),
            None => tokio::spawn(following),
        };
        Publishing {
            now: own.clone(),
            own,
            changes: changed,
            before: Vec::new(),
            _follower: AbortOnDropHandle::new(follower),
        }
    }

    /// Whether a connection was handed over that the sink has not taken up yet.
    pub(super) fn handed_over(&self) -> bool {
        self.changes.has_changed().unwrap_or(false)
    }

    /// Publishes through the connection handed over last, from the next message on.
    pub(super) fn take_up(&mut self) {
        if !self.handed_over() {
            return;
        }
        let next = match self.changes.borrow_and_update().clone() {
            Some(client) => context_of(client),
            None => self.own.clone(),
        };
        self.before.retain(|(_, left)| left.elapsed() < KEPT);
        let left = std::mem::replace(&mut self.now, next);
        self.before.push((left, Instant::now()));
    }

    /// The context to publish through.
    pub(super) fn context(&self) -> &jetstream::Context {
        &self.now
    }
}

/// Follows the leader of the stream of `config`, a [`LOOK`] after each look (`context` is of the
/// sink's own connection; new ones run on `io`), until aborted.
async fn follow(
    context: jetstream::Context,
    config: NatsConfig,
    io: Option<Handle>,
    changes: watch::Sender<Option<Client>>,
    stats: Stats,
) {
    let mut follower = Follower {
        own: context.client(),
        context,
        config,
        io,
        changes,
        stats,
        missed: None,
    };
    loop {
        follower.look().await;
        tokio::time::sleep(LOOK).await;
    }
}

/// The task that follows the leader.
struct Follower {
    own: Client,
    /// A context of `own`: the sink's, to ask for the stream's leader.
    context: jetstream::Context,
    config: NatsConfig,
    io: Option<Handle>,
    /// The connection handed over last; `None`: the sink's own.
    changes: watch::Sender<Option<Client>>,
    stats: Stats,
    /// A leader that no server of the list answered for, and when.
    missed: Option<(String, Instant)>,
}

impl Follower {
    /// One look at the stream's leader: hands over the sink's own connection where that one
    /// leads or the one handed over is lost, else a connection to the leader where the sink
    /// publishes through another server.
    async fn look(&mut self) {
        let Some(leader) = leader_of(&self.context, &self.config.stream, &self.own).await else {
            self.stats.nats_at_leader(false);
            return;
        };
        let handed = self.changes.borrow().clone();
        let own_leads = leads(&self.own, &leader);
        let at_leader = handed.as_ref().map_or(own_leads, |c| leads(c, &leader));
        self.stats.nats_at_leader(at_leader || own_leads);
        if at_leader {
            return;
        }
        // Back to the sink's own connection where the one handed over is lost (and, below, where
        // the own one leads).
        if handed.is_some_and(|c| c.connection_state() != State::Connected) {
            self.changes.send_replace(None);
        }
        let recently = |(name, at): &(String, Instant)| *name == leader && at.elapsed() < MISSED;
        if !own_leads && self.missed.as_ref().is_some_and(recently) {
            return;
        }
        let found = if own_leads {
            Some(None)
        } else {
            connect_to(&self.config, &leader, self.io.as_ref())
                .await
                .map(Some)
        };
        let stream = &self.config.stream;
        let Some(connection) = found else {
            if (self.missed.as_ref()).is_none_or(|(name, _)| *name != leader) {
                tracing::info!(
                    stream,
                    leader,
                    "no server of sinks.nats.url answers as the stream's leader: the NATS sink publishes through another"
                );
            }
            self.missed = Some((leader, Instant::now()));
            return;
        };
        tracing::info!(
            stream,
            leader,
            own = connection.is_none(),
            "the NATS sink publishes through the server that leads its stream"
        );
        self.changes.send_replace(connection);
        self.stats.nats_at_leader(true);
        self.missed = None;
    }
}

/// Whether `client` is connected to the server named `leader`.
fn leads(client: &Client, leader: &str) -> bool {
    client.connection_state() == State::Connected && client.server_info().server_name == leader
}

/// The name of the server that leads `stream`, once the stream has one: where the stream's
/// information has no cluster (a lone server of Debian's 2.9.10), the server `own` is on.
async fn leader_of(context: &jetstream::Context, stream: &str, own: &Client) -> Option<String> {
    let stream = context.get_stream(stream).await.ok()?;
    match &stream.cached_info().cluster {
        Some(cluster) => cluster.leader.clone().filter(|name| !name.is_empty()),
        None => Some(own.server_info().server_name),
    }
}

/// A connection to the server named `leader`: the first server of `sinks.nats.url` that answers
/// with that name within [`ANSWER`].
async fn connect_to(config: &NatsConfig, leader: &str, io: Option<&Handle>) -> Option<Client> {
    let name = format!("aggregator {} publishing", config.site);
    for url in &config.url {
        match connect_one(config, url, name.clone(), ANSWER, io).await {
            Ok(client) if client.server_info().server_name == leader => return Some(client),
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, url, "no answer"),
        }
    }
    None
}
