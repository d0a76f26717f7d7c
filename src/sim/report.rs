//! What each source ended with, and the summary of a run.
//!
//! The summary is the simulator's half of the end-to-end accounting: `sent` is every distinct frame
//! written at least once, `acked` what the daemon answered for, `resent` how many writes were
//! repeats after a reconnection (the daemon counts the duplicates among them on its side). Notes
//! under the table say what the latency and the resent count include, which the client cannot
//! measure apart. The last line, `sim total: key=value ...`, is stable so scripts and tests can
//! read it.
//!
//! A run whose sources know several daemons also says how often they moved from one to another
//! (`failovers`), and how many frames a daemon acknowledged above the resume point a daemon gave
//! later (`acked_not_held`): the source dropped them when they were acknowledged, and the daemon
//! that welcomed it does not store them. A run with one daemon shows these only when a restarted
//! daemon lost what it had acknowledged, so its summary stays as it was.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::domain::frame::SourceKind;
use crate::protocol::ingest::RefuseReason;

use super::SourceSpec;

/// How a source ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything generated was acknowledged and the daemon closed with EndOfStream.
    Completed,
    /// The daemon refused the source for a reason retrying cannot fix.
    Refused {
        reason: RefuseReason,
        detail: String,
    },
    /// The source gave up; the text names the cause.
    Failed(String),
    /// Nothing ever accepted a connection at the address, or at any address of the list (named
    /// as the command line takes it, `A,B`): no daemon listens there. Found before the run starts,
    /// it is every source's outcome, including those of the run's other address: none of them
    /// started.
    Unreachable { address: String, error: String },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Completed => f.write_str("completed"),
            Outcome::Refused { reason, detail } => write!(f, "refused: {reason}: {detail}"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
            Outcome::Unreachable { error, .. } => write!(f, "unreachable: {error}"),
        }
    }
}

/// Latency samples, in microseconds, with exact percentiles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latencies {
    micros: Vec<u32>,
}

impl Latencies {
    pub(crate) fn record(&mut self, latency: Duration) {
        self.micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    pub(crate) fn merge(&mut self, other: &Latencies) {
        self.micros.extend_from_slice(&other.micros);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The `q` quantile (0.0 to 1.0), nearest rank; `None` without samples.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.micros.is_empty() {
            return None;
        }
        let mut sorted = self.micros.clone();
        sorted.sort_unstable();
        let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
        Some(Duration::from_micros(u64::from(sorted[rank - 1])))
    }

    /// "p50/p99/max" in milliseconds, or "-" without samples.
    fn summary(&self) -> String {
        match (self.quantile(0.5), self.quantile(0.99), self.quantile(1.0)) {
            (Some(p50), Some(p99), Some(max)) => {
                format!("{:.2}/{:.2}/{:.2}", ms(p50), ms(p99), ms(max))
            }
            _ => "-".into(),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What the emergency acknowledgement latency is made of, beyond the emergency's own path.
const LATENCY_NOTE: &str = "note: emergency ack latency runs from a frame's first write to the \
    ACK that covers it, so it includes the archive's sync interval: the daemon acknowledges a frame \
    only after the fsync that covers it (archive.sync_interval_ms, 20 ms by default), and a source \
    at most once per connection.ack_interval_ms (10 ms by default)\n\
    note: an ACK covers a frame only once every frame its source sent before it is stored too, so \
    under load this latency includes the routine frames ahead of an emergency, not only how soon \
    the emergency itself was processed";

/// One source's accounting.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceReport {
    pub kind: SourceKind,
    pub id: u32,
    /// Distinct frames written at least once.
    pub sent: u64,
    /// Frames an acknowledgement covers.
    pub acked: u64,
    /// Emergency frames among them.
    pub emergency_acked: u64,
    /// Writes of a frame already written on an earlier connection.
    pub resent: u64,
    /// REFUSED answers, including the ShuttingDown ones that were retried.
    pub refused: u64,
    /// Connections that got a WELCOME.
    pub connections: u64,
    /// Moves to another daemon of the source's list after losing one.
    pub failovers: u64,
    /// Frames acknowledged above the resume point a later WELCOME gave: acknowledged (by another
    /// daemon, or by the same one before it lost them), no longer held by the source, and not
    /// stored by the daemon that welcomed it, so never sent again.
    pub acked_not_held: u64,
    /// Frames generated and never acknowledged (0 unless the source failed or was refused).
    pub unacked: u64,
    /// From first write to the acknowledgement, for emergency frames.
    pub emergency_latency: Latencies,
    /// The newest catalog version the daemon sent (and the source acknowledged).
    pub catalog_version: Option<u64>,
    pub outcome: Outcome,
}

impl SourceReport {
    /// A report for a source that could not run at all.
    pub fn failed(spec: &SourceSpec, why: String) -> Self {
        SourceReport::not_run(spec, Outcome::Failed(why))
    }

    /// A report for a source that never started, ended with `outcome`.
    pub(crate) fn not_run(spec: &SourceSpec, outcome: Outcome) -> Self {
        SourceReport {
            kind: spec.kind,
            id: spec.id,
            sent: 0,
            acked: 0,
            emergency_acked: 0,
            resent: 0,
            refused: 0,
            connections: 0,
            failovers: 0,
            acked_not_held: 0,
            unacked: 0,
            emergency_latency: Latencies::default(),
            catalog_version: None,
            outcome,
        }
    }

    fn label(&self) -> String {
        let kind = match self.kind {
            SourceKind::LiveUplink => "uplink",
            SourceKind::ArchivedReplay => "replay",
        };
        format!("{kind}-{}", self.id)
    }
}

/// The reports of every source of a run.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub sources: Vec<SourceReport>,
    pub elapsed: Duration,
    /// The longest time between two acknowledgements in a row, of any sources.
    pub longest_ack_gap: Duration,
    /// The most daemons the sources of one kind knew: with more than one, the summary shows the
    /// failover figures.
    pub daemons: usize,
}

/// Sums over every source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub sources: u64,
    pub completed: u64,
    pub sent: u64,
    pub acked: u64,
    pub emergency_acked: u64,
    pub resent: u64,
    pub refused: u64,
    pub connections: u64,
    pub failovers: u64,
    pub acked_not_held: u64,
    pub unacked: u64,
    pub emergency_latency: Latencies,
}

impl SimReport {
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in &self.sources {
            t.sources += 1;
            t.completed += u64::from(s.outcome == Outcome::Completed);
            t.sent += s.sent;
            t.acked += s.acked;
            t.emergency_acked += s.emergency_acked;
            t.resent += s.resent;
            t.refused += s.refused;
            t.connections += s.connections;
            t.failovers += s.failovers;
            t.acked_not_held += s.acked_not_held;
            t.unacked += s.unacked;
            t.emergency_latency.merge(&s.emergency_latency);
        }
        t
    }

    /// `catalog: version V held by N of M sources`: the newest version any source received.
    pub fn catalog_line(&self) -> String {
        let newest = self.sources.iter().filter_map(|s| s.catalog_version).max();
        let total = self.sources.len();
        match newest {
            Some(v) => {
                let holders = self
                    .sources
                    .iter()
                    .filter(|s| s.catalog_version == Some(v))
                    .count();
                format!("catalog: version {v} held by {holders} of {total} sources")
            }
            None => format!("catalog: none received by the {total} sources"),
        }
    }

    /// Sources that did not complete.
    pub fn problems(&self) -> impl Iterator<Item = &SourceReport> {
        self.sources
            .iter()
            .filter(|s| s.outcome != Outcome::Completed)
    }

    /// The addresses nothing listened at, each once, with the error its first source met there.
    pub fn unreachable(&self) -> BTreeMap<&str, &str> {
        let mut addresses = BTreeMap::new();
        for s in &self.sources {
            if let Outcome::Unreachable { address, error } = &s.outcome {
                addresses.entry(address.as_str()).or_insert(error.as_str());
            }
        }
        addresses
    }

    /// Whether no source reached a daemon: then nothing was sent, and that is all there is to say.
    pub fn reached_none(&self) -> bool {
        !self.sources.is_empty()
            && self
                .sources
                .iter()
                .all(|s| matches!(s.outcome, Outcome::Unreachable { .. }))
    }

    /// Whether the summary shows the failover figures: the sources knew several daemons, or a
    /// daemon's resume point was below what was acknowledged.
    fn shows_failover(&self, t: &Totals) -> bool {
        self.daemons > 1 || t.failovers > 0 || t.acked_not_held > 0
    }

    /// The note on frames acknowledged above a later resume point, naming the first sources.
    fn acked_not_held_note(&self, total: u64) -> String {
        /// Sources named; the rest are counted.
        const NAMED: usize = 8;
        let sources = self.sources.iter().filter(|s| s.acked_not_held > 0);
        let mut each: Vec<String> = sources
            .map(|s| format!("{} {}", s.label(), s.acked_not_held))
            .collect();
        if each.len() > NAMED {
            let more = each.len() - NAMED;
            each.truncate(NAMED);
            each.push(format!("{more} more sources"));
        }
        format!(
            "note: {total} frames acknowledged by a daemon were behind the resume point another \
             daemon gave (acknowledged, not held any more), or the same daemon after it lost \
             them; they were not sent again: {}",
            each.join(", ")
        )
    }

    /// Whether the run succeeded: every source completed (so nothing was refused for good), and,
    /// when `require_all_acked`, no generated frame is left unacknowledged.
    pub fn is_success(&self, require_all_acked: bool) -> bool {
        let t = self.totals();
        self.problems().next().is_none() && (!require_all_acked || t.unacked == 0)
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.totals();
        self.write_table(f, &t)?;
        self.write_notes(f, &t)?;
        self.write_summary(f, &t)
    }
}

impl SimReport {
    /// A row per source, and one of the totals.
    fn write_table(&self, f: &mut fmt::Formatter<'_>, t: &Totals) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>7} {:>7} {:>5} {:>6}  {:<24} outcome",
            "source",
            "sent",
            "acked",
            "resent",
            "refused",
            "conns",
            "emerg",
            "emerg ack ms p50/p99/max"
        )?;
        for s in &self.sources {
            writeln!(
                f,
                "{:<12} {:>9} {:>9} {:>7} {:>7} {:>5} {:>6}  {:<24} {}",
                s.label(),
                s.sent,
                s.acked,
                s.resent,
                s.refused,
                s.connections,
                s.emergency_acked,
                s.emergency_latency.summary(),
                s.outcome
            )?;
        }
        writeln!(
            f,
            "{:<12} {:>9} {:>9} {:>7} {:>7} {:>5} {:>6}  {:<24} {}/{} completed",
            "total",
            t.sent,
            t.acked,
            t.resent,
            t.refused,
            t.connections,
            t.emergency_acked,
            t.emergency_latency.summary(),
            t.completed,
            t.sources
        )
    }

    /// What the figures do not say themselves: the latency's reach, the catalog, the resent frames.
    fn write_notes(&self, f: &mut fmt::Formatter<'_>, t: &Totals) -> fmt::Result {
        if !t.emergency_latency.is_empty() {
            writeln!(f, "{LATENCY_NOTE}")?;
        }
        writeln!(f, "{}", self.catalog_line())?;
        if self.shows_failover(t) {
            writeln!(f, "failovers: {}", t.failovers)?;
        }
        if t.acked_not_held > 0 {
            writeln!(f, "{}", self.acked_not_held_note(t.acked_not_held))?;
        }
        if t.resent > 0 {
            writeln!(
                f,
                "note: {} frames were written again after a reconnection (resent); sent, acked and \
                 acked_per_s count each frame once, so resent frames are not new throughput. The \
                 daemon stores each sequence once: a resent frame it had already stored is \
                 acknowledged without being stored again, and counted in its duplicates (drain \
                 summary, /stats): only the daemon knows how many of them it already had",
                t.resent
            )?;
        }
        Ok(())
    }

    /// The `sim total:` line, every figure as `key=value` for scripts.
    fn write_summary(&self, f: &mut fmt::Formatter<'_>, t: &Totals) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            t.acked as f64 / secs
        } else {
            0.0
        };
        let q = |q: f64| {
            t.emergency_latency
                .quantile(q)
                .map_or("-".to_string(), |d| format!("{:.3}", ms(d)))
        };
        write!(
            f,
            "sim total: sources={} completed={} connections={} sent={} acked={} unacked={} resent={} refused={} \
             emergency_acked={} emergency_ack_ms_p50={} emergency_ack_ms_p99={} emergency_ack_ms_max={} \
             ack_gap_ms_max={:.3} elapsed_ms={} acked_per_s={:.0}",
            t.sources,
            t.completed,
            t.connections,
            t.sent,
            t.acked,
            t.unacked,
            t.resent,
            t.refused,
            t.emergency_acked,
            q(0.5),
            q(0.99),
            q(1.0),
            ms(self.longest_ack_gap),
            self.elapsed.as_millis(),
            rate
        )?;
        if self.shows_failover(t) {
            write!(
                f,
                " failovers={} acked_not_held={}",
                t.failovers, t.acked_not_held
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let mut l = Latencies::default();
        for us in 1..=100 {
            l.record(Duration::from_micros(us));
        }
        assert_eq!(l.quantile(0.5), Some(Duration::from_micros(50)));
        assert_eq!(l.quantile(0.99), Some(Duration::from_micros(99)));
        assert_eq!(l.quantile(1.0), Some(Duration::from_micros(100)));
        assert_eq!(Latencies::default().quantile(0.5), None);
    }

    /// A report of a source that sent nothing and ended with `outcome`.
    fn source(outcome: Outcome) -> SourceReport {
        let (uplinks, _) = crate::sim::Scenario::Brief.profiles();
        let spec = &uplinks.sources(SourceKind::LiveUplink, 1)[0];
        SourceReport {
            outcome,
            ..SourceReport::failed(spec, String::new())
        }
    }

    fn unreachable(address: &str) -> Outcome {
        Outcome::Unreachable {
            address: address.into(),
            error: "Connection refused".into(),
        }
    }

    #[test]
    fn an_unreachable_address_is_named_once() {
        let report = SimReport {
            sources: vec![
                source(unreachable("127.0.0.1:7700")),
                source(unreachable("127.0.0.1:7700")),
                source(unreachable("127.0.0.1:7701")),
            ],
            elapsed: Duration::from_secs(3),
            longest_ack_gap: Duration::ZERO,
            daemons: 1,
        };
        let addresses: Vec<_> = report.unreachable().into_keys().collect();
        assert_eq!(addresses, ["127.0.0.1:7700", "127.0.0.1:7701"]);
        assert!(report.reached_none());

        let mut some = report.clone();
        some.sources[2].outcome = Outcome::Completed;
        assert_eq!(some.unreachable().len(), 1);
        assert!(!some.reached_none());
    }

    #[test]
    fn the_summary_explains_the_latency_and_the_resent_frames() {
        let mut reached = source(Outcome::Completed);
        let report = |s: &SourceReport| {
            SimReport {
                sources: vec![s.clone()],
                elapsed: Duration::from_secs(1),
                longest_ack_gap: Duration::from_millis(25),
                daemons: 1,
            }
            .to_string()
        };
        let plain = report(&reached);
        assert!(!plain.contains("note:"), "{plain}");
        assert!(plain.contains(" ack_gap_ms_max=25.000 "), "{plain}");

        reached.emergency_latency.record(Duration::from_millis(21));
        reached.resent = 7;
        let noted = report(&reached);
        assert!(
            noted.contains("includes the archive's sync interval")
                && noted.contains("archive.sync_interval_ms, 20 ms by default"),
            "{noted}"
        );
        assert!(
            noted.contains("note: 7 frames were written again after a reconnection"),
            "{noted}"
        );
        assert!(noted.lines().last().unwrap().starts_with("sim total:"));
    }

    #[test]
    fn the_summary_counts_failovers_and_frames_acknowledged_not_held() {
        let mut moved = source(Outcome::Completed);
        let one_daemon = SimReport {
            sources: vec![moved.clone()],
            elapsed: Duration::from_secs(1),
            longest_ack_gap: Duration::ZERO,
            daemons: 1,
        };
        let plain = one_daemon.to_string();
        assert!(!plain.contains("failovers"), "{plain}");
        assert!(!plain.contains("acked_not_held"), "{plain}");

        let two = SimReport {
            daemons: 2,
            ..one_daemon.clone()
        };
        let text = two.to_string();
        assert!(text.contains("\nfailovers: 0\n"), "{text}");
        assert!(text.ends_with(" failovers=0 acked_not_held=0"), "{text}");

        moved.failovers = 1;
        moved.acked_not_held = 12;
        let lost = SimReport {
            sources: vec![moved],
            ..one_daemon
        };
        let text = lost.to_string();
        assert!(
            text.contains(
                "note: 12 frames acknowledged by a daemon were behind the resume point another \
                 daemon gave (acknowledged, not held any more)"
            ) && text.contains("not sent again: uplink-0 12\n"),
            "{text}"
        );
        assert!(text.ends_with(" failovers=1 acked_not_held=12"), "{text}");
        assert!(lost.is_success(true), "counted, not a failure");
    }
}
