//! Holding a stream to what the simulators were told: every frame an `uplink-sim --ack-log` says
//! was acknowledged is in the stream, once, and each source's frames are in the stream in the
//! order of their sequences, within each priority: the daemon stores a batch's Emergency frames
//! before its Routine ones (`Aggregator-Priority` says which a message is), so an Emergency frame
//! may come before Routine frames of lower sequences, and that is no disorder.
//!
//! An ack log has a line per WELCOME and per acknowledgement (`src/sim/ack_log.rs`):
//!
//! ```text
//! welcome KIND ID RESUME_AFTER   # "-" when the WELCOME had none
//! ack KIND ID SEQUENCE
//! ```
//!
//! ACKs are cumulative: `ack KIND ID N` says every frame of that source up to `N` is stored. A
//! generated source numbers its frames one by one from 0, or, when the daemon's first WELCOME said
//! it already stored up to `R` (a restarted source), from `R + 1` (`Outbox::continue_after` in
//! `src/sim/outbox.rs`); a later WELCOME never renumbers. So one run acknowledged exactly the
//! sequences from its start to its highest ACK, and several runs' logs add up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use super::{Frame, StreamMessage};

/// A source: `(kind, id)`, `kind` `live` or `replay`.
pub type Source = (String, u32);

/// How many offenders of each sort [`Audit`]'s `Display` names.
const NAMED: usize = 5;

/// What ack logs say was acknowledged: each source's sequences.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    sources: BTreeMap<Source, BTreeSet<u64>>,
}

/// One run's view of one source: where its numbering starts and its highest ACK.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    start: Option<u64>,
    highest: Option<u64>,
}

impl Acknowledged {
    /// The acknowledgements of the ack logs at `paths`, one per simulator run; fails the test on
    /// a file it cannot read or a line it cannot parse.
    pub fn read(paths: &[&Path]) -> Acknowledged {
        let mut acknowledged = Acknowledged::default();
        for path in paths {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|err| panic!("read the ack log {}: {err}", path.display()));
            acknowledged
                .add_log(&text)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        }
        acknowledged
    }

    /// Adds one simulator run's ack log; an error names a line that is not a WELCOME or an ACK.
    pub fn add_log(&mut self, text: &str) -> Result<(), String> {
        let mut runs: BTreeMap<Source, Run> = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let bad = |why: &str| format!("line {}: {why}: {line:?}", number + 1);
            let parts: Vec<&str> = line.split(' ').collect();
            // A simulator that knows several daemons adds the one that answered.
            let (&[what, kind, id, value] | &[what, kind, id, value, _]) = &parts[..] else {
                return Err(bad("neither four fields nor five"));
            };
            if kind != "live" && kind != "replay" {
                return Err(bad("the kind is neither live nor replay"));
            }
            let id = id.parse().map_err(|_| bad("the source id is no number"))?;
            let run = runs.entry((kind.to_string(), id)).or_default();
            match (what, value) {
                ("welcome", "-") => {
                    run.start.get_or_insert(0);
                }
                ("welcome", stored) => {
                    let stored: u64 = stored.parse().map_err(|_| bad("resume_after"))?;
                    run.start.get_or_insert(stored + 1);
                }
                ("ack", sequence) => {
                    let sequence = sequence.parse().map_err(|_| bad("the sequence"))?;
                    run.highest = run.highest.max(Some(sequence));
                }
                _ => return Err(bad("neither welcome nor ack")),
            }
        }
        for (source, run) in runs {
            let sequences = self.sources.entry(source).or_default();
            if let Some(highest) = run.highest {
                sequences.extend(run.start.unwrap_or(0)..=highest);
            }
        }
        Ok(())
    }

    /// How many frames were acknowledged, over every source.
    pub fn frames(&self) -> u64 {
        self.sources.values().map(|s| s.len() as u64).sum()
    }
}

/// One source's findings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SourceAudit {
    /// Frames acknowledged.
    pub acknowledged: u64,
    /// Acknowledged sequences the stream does not hold.
    pub missing: Vec<u64>,
    /// Sequences the stream holds more than once, acknowledged or not.
    pub duplicated: Vec<u64>,
    /// Sequences the stream holds after a higher sequence of the same source and priority.
    pub out_of_order: Vec<u64>,
    /// Messages of frames no ACK covered (sent, and stored, but the ACK never came): allowed.
    pub beyond_acks: u64,
}

impl SourceAudit {
    /// Whether the stream holds the source's messages of each priority in increasing sequence
    /// order.
    pub fn in_order(&self) -> bool {
        self.out_of_order.is_empty()
    }
}

/// The stream held to the acknowledgements: per source, and in totals.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Audit {
    pub sources: BTreeMap<Source, SourceAudit>,
    pub acknowledged: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// Messages whose `Nats-Msg-Id` names no frame: no sink of ours published them.
    pub unidentified: u64,
}

impl Audit {
    /// Every acknowledged frame there, once, in order, and nothing foreign.
    pub fn is_clean(&self) -> bool {
        self.missing == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.unidentified == 0
    }
}

/// Holds `messages` (a stream's, in any order: they are taken in stream order) to `acknowledged`.
/// A frame is its `(kind, source, seq)`, whichever site published it.
pub fn audit(acknowledged: &Acknowledged, messages: &[StreamMessage]) -> Audit {
    let mut in_stream_order: Vec<&StreamMessage> = messages.iter().collect();
    in_stream_order.sort_by_key(|m| m.stream_sequence);
    let mut report = Audit::default();
    let mut held: BTreeMap<Source, BTreeMap<u64, u32>> = BTreeMap::new();
    let mut highest: BTreeMap<(Source, Option<&str>), u64> = BTreeMap::new();
    for message in in_stream_order {
        let Some((_, (kind, id, seq))) = message.identity() else {
            report.unidentified += 1;
            continue;
        };
        let source = (kind, id);
        let class = (source.clone(), message.priority.as_deref());
        let highest = highest.entry(class).or_insert(seq);
        if seq < *highest {
            let found = report.sources.entry(source.clone()).or_default();
            found.out_of_order.push(seq);
        }
        *highest = seq.max(*highest);
        *held.entry(source).or_default().entry(seq).or_default() += 1;
    }
    let sources: BTreeSet<&Source> = acknowledged.sources.keys().chain(held.keys()).collect();
    for source in sources {
        let empty = (BTreeSet::new(), BTreeMap::new());
        let acked = acknowledged.sources.get(source).unwrap_or(&empty.0);
        let copies = held.get(source).unwrap_or(&empty.1);
        let found = report.sources.entry(source.clone()).or_default();
        found.acknowledged = acked.len() as u64;
        found.missing = acked
            .iter()
            .copied()
            .filter(|s| !copies.contains_key(s))
            .collect();
        found.duplicated = copies
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(s, _)| *s)
            .collect();
        found.beyond_acks = copies.keys().filter(|s| !acked.contains(s)).count() as u64;
    }
    for found in report.sources.values() {
        report.acknowledged += found.acknowledged;
        report.missing += found.missing.len() as u64;
        report.duplicated += found.duplicated.len() as u64;
        report.out_of_order += found.out_of_order.len() as u64;
    }
    report
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sources, {} frames acknowledged: {} missing, {} duplicated, {} out of order",
            self.sources.len(),
            self.acknowledged,
            self.missing,
            self.duplicated,
            self.out_of_order
        )?;
        if self.unidentified > 0 {
            write!(f, ", {} messages without a frame id", self.unidentified)?;
        }
        let beyond: u64 = self.sources.values().map(|s| s.beyond_acks).sum();
        write!(f, " ({beyond} more stored than acknowledged)")?;
        self.name_first(f, "missing", |s| &s.missing)?;
        self.name_first(f, "duplicated", |s| &s.duplicated)?;
        self.name_first(f, "out of order", |s| &s.out_of_order)
    }
}

impl Audit {
    /// The first [`NAMED`] frames of one sort, as `(kind, source, seq)`.
    fn name_first(
        &self,
        f: &mut fmt::Formatter<'_>,
        what: &str,
        sequences: impl Fn(&SourceAudit) -> &Vec<u64>,
    ) -> fmt::Result {
        let frames: Vec<Frame> = self
            .sources
            .iter()
            .flat_map(|((kind, id), found)| {
                sequences(found).iter().map(|seq| (kind.clone(), *id, *seq))
            })
            .take(NAMED)
            .collect();
        match frames.is_empty() {
            true => Ok(()),
            false => write!(f, "\n  first {what}: {frames:?}"),
        }
    }
}
