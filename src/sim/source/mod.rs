//! One simulated source: its clock, its connections and its reconnections.
//!
//! A source is a single task that owns its socket, its [`Outbox`] and its clock, so nothing is
//! shared but the progress counters. On a connection it `select!`s over three things at once:
//! reading the daemon's messages (so acknowledgements are timed when they arrive, even while the
//! daemon's backpressure holds a write), writing its output buffer, and its clock. Frames are
//! encoded many at a time into one buffer and written with `write_buf`, which is cancellation safe:
//! a write cut short by an arriving ACK loses nothing and is simply polled again.
//!
//! The clock keeps running while the source is disconnected, like a satellite that keeps producing
//! telemetry during a ground-station outage: what fell due meanwhile is sent on reconnection, after
//! everything still unacknowledged. A connection ends in one of six ways ([`SessionEnd`]); only a
//! refusal other than `ShuttingDown`, a protocol violation, failing to get a WELCOME for
//! [`SessionOptions::give_up_after`] after a first connection, or finding nothing listening for
//! [`SessionOptions::first_connect_within`] before one ends the source without its frames
//! acknowledged. The last is told apart ([`Outcome::Unreachable`]) because it is not a source's
//! problem but the run's: no daemon at the address, said once for all its sources.
//!
//! A source knows a list of daemons and starts at the first. When the one it talks to is lost (no
//! connection, a broken or timed-out one, or a daemon shutting down), the next attempt goes to the
//! next daemon of the list, wrapping around: a failover. A daemon that closes for a reason of the
//! connection (idle, storage unavailable) is tried again. A WELCOME below the highest
//! acknowledgement the source took means that the frames between were acknowledged (by another
//! daemon, or by this one before it lost them) and are no longer held here: they are counted and
//! warned about, and the source goes on with what it holds.
//!
//! One connection, from HELLO to its end, is `session.rs`; this file is the source between them.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout, Instant};

use crate::domain::frame::Priority;
use crate::protocol::ingest::RefuseReason;

use super::outbox::Outbox;
use super::progress::Progress;
use super::report::{Latencies, Outcome, SourceReport};
use super::{Amount, EmergencyMix, Rate, SessionOptions, SourceSpec};
use crate::tls::client::ClientTls;
use crate::tls::stream;

mod session;

/// Bytes encoded ahead of the socket: large writes, few system calls.
const WRITE_TARGET: usize = 64 * 1024;

/// How one connection ended.
#[derive(Debug)]
enum SessionEnd {
    /// Everything was acknowledged and the daemon closed with EndOfStream.
    Finished,
    /// The daemon is lost for now: the connection broke or timed out, or the daemon is shutting
    /// down. The next attempt, after a backoff, goes to the next daemon; the text says why.
    Lost(String),
    /// The daemon closed for a reason of this connection: worth another connection to it after a
    /// backoff; the text says why.
    Retry(String),
    /// The TCP connection could not be made; the text says why.
    NoConnection(String),
    /// The daemon refused the HELLO.
    Refused(RefuseReason, String),
    /// Retrying cannot help; the text names the cause.
    Fatal(String),
}

/// A small deterministic generator (SplitMix64) for jitter and the emergency draw.
#[derive(Debug)]
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// When the next batch falls due, and when generation ends.
#[derive(Debug)]
struct Clock {
    started: Instant,
    /// Mean time between batches; `None` for [`Rate::Max`].
    interval: Option<Duration>,
    next_batch: Instant,
    generated: u64,
}

/// One simulated source and its accounting.
#[derive(Debug)]
pub(crate) struct SimSource {
    spec: SourceSpec,
    /// The daemons it knows, in the order it tries them.
    daemons: Vec<String>,
    /// The index in `daemons` of the one it connects to now.
    daemon: usize,
    /// TLS to the daemon, when the run has `--tls-ca`.
    tls: Option<ClientTls>,
    opts: SessionOptions,
    progress: Arc<Progress>,
    outbox: Outbox,
    payload: Bytes,
    rng: SplitMix,
    clock: Clock,
    sent: u64,
    acked: u64,
    emergency_acked: u64,
    resent: u64,
    refused: u64,
    connections: u64,
    /// Moves to another daemon of the list.
    failovers: u64,
    /// Frames acknowledged above the resume point a later WELCOME gave.
    acked_not_held: u64,
    /// The newest catalog version received.
    catalog_version: Option<u64>,
    latency: Latencies,
    /// A TCP connection made for this source before it started ([`super::run`] asks each address
    /// once whether anything listens): its first connection, to the first daemon.
    first: Option<TcpStream>,
}

/// Where a source stands between its connections.
#[derive(Debug)]
struct Attempts {
    /// The delay before the next attempt: doubled after each, back to the first after a WELCOME.
    backoff: Duration,
    started: Instant,
    last_welcome: Instant,
    /// Whether a TCP connection was ever made, to any daemon: until then nothing is known to listen.
    reached: bool,
    /// Attempts made: a source that never connected is unreachable only once it tried every daemon.
    tried: usize,
}

/// Why a source connects again, and whether it moves to the next daemon of its list for it.
#[derive(Debug)]
struct Again {
    why: String,
    next_daemon: bool,
}

impl Again {
    /// Again, at the next daemon: this one is lost.
    fn next(why: String) -> Again {
        Again {
            why,
            next_daemon: true,
        }
    }
}

impl SimSource {
    pub(crate) fn new(
        spec: SourceSpec,
        daemons: Vec<String>,
        tls: Option<ClientTls>,
        opts: SessionOptions,
        progress: Arc<Progress>,
    ) -> Self {
        let now = Instant::now();
        let interval = match spec.rate {
            Rate::PerSecond(rate) => Duration::try_from_secs_f64(f64::from(spec.batch) / rate).ok(),
            Rate::Max => None,
        };
        let mut rng = SplitMix(spec.seed);
        // Spread the first batches of a jittered run over one interval, so the sources do not all
        // fire in the same instant.
        let phase = match interval {
            Some(i) if spec.jitter > 0.0 => i.mul_f64(rng.unit()),
            _ => Duration::ZERO,
        };
        let outbox = match &spec.recording {
            Some(recording) => Outbox::recorded(Arc::clone(recording)),
            None => Outbox::new(),
        };
        SimSource {
            payload: Bytes::from(vec![spec.id as u8; spec.payload]),
            rng,
            clock: Clock {
                started: now,
                interval,
                next_batch: now + phase,
                generated: 0,
            },
            spec,
            daemons,
            daemon: 0,
            tls,
            opts,
            progress,
            outbox,
            sent: 0,
            acked: 0,
            emergency_acked: 0,
            resent: 0,
            refused: 0,
            connections: 0,
            failovers: 0,
            acked_not_held: 0,
            catalog_version: None,
            latency: Latencies::default(),
            first: None,
        }
    }

    /// The source's first connection is `stream`, already made to its first daemon.
    pub(crate) fn with_connection(mut self, stream: TcpStream) -> Self {
        self.first = Some(stream);
        self
    }

    /// The address of the daemon it connects to now.
    fn address(&self) -> &str {
        self.daemons.get(self.daemon).map_or("", String::as_str)
    }

    /// The address to name in the `--ack-log`: only a source that knows several daemons names it,
    /// so that the log of a run with one daemon keeps its four fields.
    fn logged_daemon(&self) -> Option<&str> {
        (self.daemons.len() > 1).then(|| self.address())
    }

    /// Runs the source to its end: connects, reconnects as long as retrying can help, and reports.
    #[tracing::instrument(name = "sim_source", skip_all, fields(kind = self.spec.kind.as_str(), source_id = self.spec.id))]
    pub(crate) async fn run(mut self) -> SourceReport {
        let outcome = if let (Rate::PerSecond(rate), None) = (self.spec.rate, self.clock.interval) {
            Outcome::Failed(format!("invalid rate {rate} frames/s"))
        } else {
            self.connect_until_done().await
        };
        match &outcome {
            Outcome::Completed => {
                tracing::debug!(sent = self.sent, acked = self.acked, "source completed")
            }
            Outcome::Refused { reason, detail } => {
                tracing::warn!(%reason, %detail, "source refused")
            }
            Outcome::Failed(why) => tracing::error!(%why, "source failed"),
            // The run reports it once for every source of the address.
            Outcome::Unreachable { address, error } => {
                tracing::debug!(%address, %error, "nothing listens")
            }
        }
        Progress::add(&self.progress.finished, 1);
        SourceReport {
            kind: self.spec.kind,
            id: self.spec.id,
            sent: self.sent,
            acked: self.acked,
            emergency_acked: self.emergency_acked,
            resent: self.resent,
            refused: self.refused,
            connections: self.connections,
            failovers: self.failovers,
            acked_not_held: self.acked_not_held,
            unacked: self.outbox.unacked() as u64,
            emergency_latency: self.latency,
            catalog_version: self.catalog_version,
            outcome,
        }
    }

    async fn connect_until_done(&mut self) -> Outcome {
        let now = Instant::now();
        let mut attempts = Attempts {
            backoff: self.opts.backoff_initial,
            started: now,
            last_welcome: now,
            reached: false,
            tried: 0,
        };
        loop {
            let end = self.attempt(&mut attempts).await;
            let Again { why, next_daemon } = match self.judge(end, &attempts) {
                Ok(again) => again,
                Err(outcome) => return outcome,
            };
            if attempts.reached && attempts.last_welcome.elapsed() >= self.opts.give_up_after {
                return Outcome::Failed(format!(
                    "no connection for {} ms; last error: {why}",
                    self.opts.give_up_after.as_millis()
                ));
            }
            if next_daemon {
                self.fail_over(&why);
            }
            let backoff = attempts.backoff;
            tracing::debug!(%why, backoff_ms = backoff.as_millis() as u64, "reconnecting");
            sleep(backoff).await;
            attempts.backoff = (backoff * 2).min(self.opts.backoff_max);
        }
    }

    /// One connection to the current daemon, and its session once it is made.
    async fn attempt(&mut self, attempts: &mut Attempts) -> SessionEnd {
        attempts.tried += 1;
        let made = self.first.take();
        let connect = async {
            let stream = match made {
                Some(stream) => stream,
                None => TcpStream::connect(self.address()).await?,
            };
            stream::client(stream, self.tls.as_ref()).await
        };
        match timeout(self.opts.connect_timeout, connect).await {
            Ok(Ok((rd, wr))) => {
                attempts.reached = true;
                let welcomed_before = self.connections;
                let end = self.session(rd, wr).await;
                if self.connections > welcomed_before {
                    attempts.last_welcome = Instant::now();
                    attempts.backoff = self.opts.backoff_initial;
                }
                end
            }
            Ok(Err(err)) => SessionEnd::NoConnection(err.to_string()),
            Err(_) => SessionEnd::NoConnection(format!(
                "no answer within {} ms",
                self.opts.connect_timeout.as_millis()
            )),
        }
    }

    /// What the end of a connection means: the source's outcome when it ends the source (`Err`),
    /// else why it tries again, and where (`Ok`).
    fn judge(&mut self, end: SessionEnd, attempts: &Attempts) -> Result<Again, Outcome> {
        match end {
            SessionEnd::Finished => Err(Outcome::Completed),
            SessionEnd::Fatal(why) => Err(Outcome::Failed(why)),
            SessionEnd::Refused(reason, detail) => {
                self.refused += 1;
                Progress::add(&self.progress.refused, 1);
                match reason {
                    RefuseReason::ShuttingDown => {
                        Ok(Again::next(format!("refused: {reason}: {detail}")))
                    }
                    _ => Err(Outcome::Refused { reason, detail }),
                }
            }
            SessionEnd::NoConnection(error)
                if !attempts.reached
                    && attempts.tried >= self.daemons.len()
                    && attempts.started.elapsed() >= self.opts.first_connect_within =>
            {
                let address = super::list_label(&self.daemons);
                Err(Outcome::Unreachable { address, error })
            }
            SessionEnd::NoConnection(error) => Ok(Again::next(format!(
                "cannot connect to {}: {error}",
                self.address()
            ))),
            SessionEnd::Lost(why) => Ok(Again::next(why)),
            SessionEnd::Retry(why) => Ok(Again {
                why,
                next_daemon: false,
            }),
        }
    }

    /// Turns to the next daemon of the list, wrapping around, after losing this one for `why`; a
    /// move to another address is a failover.
    fn fail_over(&mut self, why: &str) {
        let from = self.daemon;
        self.daemon = (from + 1) % self.daemons.len().max(1);
        let (Some(from), to) = (self.daemons.get(from), self.address()) else {
            return;
        };
        if from != to {
            tracing::info!(%from, %to, %why, "failing over to the next daemon");
            self.failovers += 1;
            Progress::add(&self.progress.failovers, 1);
        }
    }

    /// Whether the source has generated everything it will.
    fn generation_done(&self, now: Instant) -> bool {
        match self.spec.amount {
            Amount::Frames(n) => self.clock.generated >= n,
            Amount::Duration(d) => {
                let deadline = self.clock.started + d;
                match self.clock.interval {
                    Some(_) => self.clock.next_batch >= deadline,
                    None => now >= deadline,
                }
            }
        }
    }

    /// When the next frames fall due: the next batch of a paced generator, or the next frame of a
    /// recording played at its recorded pace; `None` when frames are due whenever there is room.
    fn next_due(&self) -> Option<Instant> {
        match (&self.spec.recording, self.clock.interval) {
            (Some(recording), _) => recording
                .due(self.clock.generated as usize)
                .map(|due| self.clock.started + due),
            (None, Some(_)) => Some(self.clock.next_batch),
            (None, None) => None,
        }
    }

    /// Generates one batch if one is due and the in-flight limit allows; returns whether it did.
    fn generate_batch(&mut self, now: Instant) -> bool {
        if self.generation_done(now) || self.outbox.unacked() >= self.opts.max_in_flight {
            return false;
        }
        if let Some(interval) = self.clock.interval {
            if self.clock.next_batch > now {
                return false;
            }
            let swing = self.spec.jitter.clamp(0.0, 1.0) * (2.0 * self.rng.unit() - 1.0);
            self.clock.next_batch += interval.mul_f64(1.0 + swing);
        }
        let frames = match self.spec.amount {
            Amount::Frames(n) => u64::from(self.spec.batch).min(n - self.clock.generated),
            Amount::Duration(_) => u64::from(self.spec.batch),
        };
        if let Some(recording) = &self.spec.recording {
            // The recording's next frames, as many as are due at its pace.
            let elapsed = now.saturating_duration_since(self.clock.started);
            let start = self.clock.generated as usize;
            let mut pushed = 0;
            for (index, frame) in recording
                .frames
                .iter()
                .enumerate()
                .skip(start)
                .take(frames as usize)
            {
                if recording.due(index).is_some_and(|due| due > elapsed) {
                    break;
                }
                self.outbox.push(frame.priority);
                pushed += 1;
            }
            self.clock.generated += pushed;
            return pushed > 0;
        }
        for index in 0..frames {
            let emergency = match self.spec.emergency {
                EmergencyMix::FirstOfBatch(k) => index < u64::from(k),
                EmergencyMix::Share(share) => self.rng.unit() < share,
            };
            self.outbox.push(if emergency {
                Priority::Emergency
            } else {
                Priority::Routine
            });
        }
        self.clock.generated += frames;
        true
    }

    /// Fills `out` with unwritten frames, generating due batches as it goes.
    fn fill(&mut self, out: &mut BytesMut, now: Instant) {
        loop {
            let written = self
                .outbox
                .write_into(out, &self.payload, WRITE_TARGET, now);
            self.sent += written.fresh;
            self.resent += written.resent;
            Progress::add(&self.progress.sent, written.fresh);
            Progress::add(&self.progress.resent, written.resent);
            if out.len() >= WRITE_TARGET || self.outbox.unwritten() > 0 || !self.generate_batch(now)
            {
                return;
            }
        }
    }

    fn acknowledge(&mut self, sequence: u64, now: Instant) {
        let latency = &mut self.latency;
        let acked = self
            .outbox
            .acknowledge(sequence, now, |d| latency.record(d));
        if let Some(log) = &self.opts.ack_log {
            log.ack(self.spec.kind, self.spec.id, sequence, self.logged_daemon());
        }
        self.acked += acked.frames;
        self.emergency_acked += acked.emergency;
        Progress::add(&self.progress.acked, acked.frames);
        if acked.frames > 0 {
            self.progress.acknowledged_at(now.into());
        }
    }
}
