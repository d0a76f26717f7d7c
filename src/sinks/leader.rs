//! The connection the sink publishes through: to the server that leads its stream.
//!
//! Why: JetStream stores a stream's messages at its leader, which sends them on to the other
//! replicas. A message published through another server crosses one more connection on its way
//! in, its PubAck one more on its way out, and that server takes every byte twice (from the sink,
//! then from the leader as a replica): with the bench's three servers on one machine the sink got
//! 6-8 % more frames through at 64 B (`docs/bench/nats.md`); across machines it is a network hop
//! a message. Clients of NATS connect to any server of their list, so a task looks at the
//! stream's leader every [`LOOK`] and, where the sink publishes through another server, connects
//! to the servers of `sinks.nats.url` one by one until one names itself the leader. The sink
//! publishes through that connection from its next message on; where no server of the list leads
//! (the leader is not in it, or cannot be reached from here), it publishes through its own
//! connection, as it always could.
//!
//! A message in flight stays on the connection that carried it, and the connection before is kept
//! until the next change (at least a [`LOOK`] later, past the PubAck's timeout). In `records/1` a
//! source has one message in flight at a time (its series, `series.rs`), so its next waits for
//! the PubAck of its last whichever connection carried it; in `frame/1` a source has many, so the
//! sink takes up a new connection once every message in flight is acknowledged.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::Client;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::time::Instant;

use super::client::connect_from;
use crate::config::NatsConfig;
use crate::stats::Stats;

/// How often the task looks at the stream's leader.
pub(super) const LOOK: Duration = Duration::from_secs(5);

/// How long a server of the list may take to answer when the task looks for the leader's.
const ANSWER: Duration = Duration::from_secs(2);

/// How long a leader that no server of the list led to is left before the task looks for it
/// again.
const MISSED: Duration = Duration::from_secs(60);

/// The connection the sink publishes through, as the task that follows the leader changes it.
pub(super) struct Publishing {
    /// The sink's own connection's: where no connection to the leader is found.
    own: jetstream::Context,
    /// The PubAck's timeout of every context it makes.
    timeout: Duration,
    changes: watch::Receiver<Option<Client>>,
    now: jetstream::Context,
    /// The connection before, until the next change: the PubAcks of what it carried land on it.
    before: Option<jetstream::Context>,
}

impl Publishing {
    /// Publishing through `own` (a context of the sink's own connection) until `changes` hands
    /// over a connection to the leader.
    pub(super) fn new(
        own: jetstream::Context,
        timeout: Duration,
        changes: watch::Receiver<Option<Client>>,
    ) -> Publishing {
        Publishing {
            now: own.clone(),
            own,
            timeout,
            changes,
            before: None,
        }
    }

    /// Whether the next message goes through another connection than the last.
    pub(super) fn changing(&self) -> bool {
        self.changes.has_changed().unwrap_or(false)
    }

    /// The context to publish the next message through.
    pub(super) fn context(&mut self) -> &jetstream::Context {
        if self.changing() {
            let next = match self.changes.borrow_and_update().clone() {
                Some(client) => {
                    let mut context = jetstream::new(client);
                    context.set_timeout(self.timeout);
                    context
                }
                None => self.own.clone(),
            };
            self.before = Some(std::mem::replace(&mut self.now, next));
        }
        &self.now
    }
}

/// Follows the leader of the stream of `config`, a [`LOOK`] after each look: hands `changes` a
/// connection to it where the sink's publishing connection is to another server and a server of
/// the list is the leader; tells `stats` whether the sink publishes through the leader. `own` is
/// the sink's own connection; new connections run on `io`. Runs until aborted.
pub(super) async fn follow(
    own: Client,
    config: NatsConfig,
    io: Option<Handle>,
    changes: watch::Sender<Option<Client>>,
    stats: Stats,
) {
    let mut follower = Follower {
        context: jetstream::new(own.clone()),
        own,
        config,
        io,
        changes,
        stats,
        missed: None,
    };
    loop {
        follower.look().await;
        // A whole LOOK after a change: a connection handed over is kept at least that long.
        tokio::time::sleep(LOOK).await;
    }
}

/// The task that follows the leader.
struct Follower {
    own: Client,
    /// A context of `own`, to ask for the stream's leader.
    context: jetstream::Context,
    config: NatsConfig,
    io: Option<Handle>,
    changes: watch::Sender<Option<Client>>,
    stats: Stats,
    /// A leader that no server of the list answered for, and when.
    missed: Option<(String, Instant)>,
}

impl Follower {
    /// One look at the stream's leader.
    async fn look(&mut self) {
        let Some(leader) = leader_of(&self.context, &self.config.stream, &self.own).await else {
            self.stats.nats_at_leader(false);
            return;
        };
        let publishing = (self.changes.borrow().clone()).unwrap_or_else(|| self.own.clone());
        let at_leader = publishing.connection_state() == State::Connected
            && publishing.server_info().server_name == leader;
        self.stats.nats_at_leader(at_leader);
        let left = |(name, at): &(String, Instant)| *name == leader && at.elapsed() < MISSED;
        if at_leader || self.missed.as_ref().is_some_and(left) {
            return;
        }
        let stream = &self.config.stream;
        match connect_to(&self.config, &leader, self.io.as_ref()).await {
            Some(client) => {
                tracing::info!(
                    stream,
                    leader,
                    "the NATS sink publishes through the server that leads its stream"
                );
                self.changes.send_replace(Some(client));
                self.stats.nats_at_leader(true);
                self.missed = None;
            }
            None => {
                tracing::info!(
                    stream,
                    leader,
                    "no server of sinks.nats.url answers as the stream's leader: the NATS sink publishes through another"
                );
                self.missed = Some((leader, Instant::now()));
            }
        }
    }
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
/// with that name (the servers after it in the list are where the connection goes if it is lost).
async fn connect_to(config: &NatsConfig, leader: &str, io: Option<&Handle>) -> Option<Client> {
    let name = format!("aggregator {} publishing", config.site);
    for first in 0..config.url.len() {
        let connected = connect_from(config, first, name.clone(), ANSWER, io).await;
        match connected {
            Ok(client) if client.server_info().server_name == leader => return Some(client),
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, url = config.url[first], "no answer"),
        }
    }
    None
}
