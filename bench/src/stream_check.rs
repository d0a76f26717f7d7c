//! The replication run's checker: after a window with `ack = "replicated"`, the stream read back
//! and every frame the load client saw acknowledged looked for there, once.
//!
//! Why: an ACK with `replicated` promises that the frame is in the stream (`docs/scale-out.md`),
//! and a rate measured with frames missing or stored twice would count for nothing. The stream is
//! read with the shipped reader (`aggregator::sinks::reader`, that of `aggregator nats read`), so
//! that what is checked is what a consumer of the stream gets.

use std::collections::HashMap;
use std::time::Instant;

use aggregator::config::NatsConfig;
use aggregator::domain::filter::FrameFilter;
use aggregator::domain::frame::SourceKey;
use aggregator::sinks::reader::read_stream;
use aggregator::SourceKind;
use serde::Serialize;

/// What the stream held of what the load client saw acknowledged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamCheck {
    /// Messages and frames read back.
    pub messages: u64,
    pub frames: u64,
    /// Frames the load client saw acknowledged: every sequence up to each source's last ACK.
    pub acknowledged: u64,
    /// Of those, the ones the stream lacks.
    pub missing: u64,
    /// Copies past the first of a frame the stream holds more than once.
    pub duplicates: u64,
    /// Messages that are no frame of the sink's.
    pub not_frames: u64,
    /// The first fault found, named.
    pub first_fault: Option<String>,
    /// Reading and checking, in seconds.
    pub seconds: f64,
}

impl StreamCheck {
    /// Every frame acknowledged is in the stream once, and nothing else is wrong with it.
    pub fn holds_every_acknowledged_frame_once(&self) -> bool {
        self.acknowledged > 0 && self.missing == 0 && self.duplicates == 0 && self.not_frames == 0
    }
}

/// Reads the stream of `config` and checks it against `through`: (live uplink id, highest
/// acknowledged sequence), the sources' sequences starting at 1.
pub async fn check(config: &NatsConfig, through: &[(u32, u64)]) -> Result<StreamCheck, String> {
    let started = Instant::now();
    let mut seen: HashMap<SourceKey, Vec<u64>> = HashMap::new();
    let (mut not_frames, mut first_bad) = (0, None);
    let messages = read_stream(config, &FrameFilter::default(), |read| {
        match read {
            Ok(read) => {
                let key = (read.frame.kind, read.frame.source_id);
                seen.entry(key).or_default().push(read.frame.sequence);
            }
            Err((sequence, why)) => {
                not_frames += 1;
                first_bad.get_or_insert(format!("stream sequence {sequence}: {why}"));
            }
        }
        true
    })
    .await
    .map_err(|e| format!("reading the stream back: {e}"))?;
    let mut check = tally(seen, through);
    check.messages = messages;
    check.not_frames = not_frames;
    check.first_fault = first_bad.or(check.first_fault);
    check.seconds = started.elapsed().as_secs_f64();
    Ok(check)
}

/// The frames `seen` (each source's sequences, in any order) against `through`.
fn tally(seen: HashMap<SourceKey, Vec<u64>>, through: &[(u32, u64)]) -> StreamCheck {
    let mut check = StreamCheck::default();
    let mut sequences: HashMap<SourceKey, Vec<u64>> = HashMap::new();
    let mut seen: Vec<_> = seen.into_iter().collect();
    // By source, so that the fault named first is the same from run to run.
    seen.sort_unstable_by_key(|(key, _)| *key);
    for (key, mut held) in seen {
        check.frames += held.len() as u64;
        held.sort_unstable();
        let before = held.len();
        if let Some(twice) = held.windows(2).find(|w| w[0] == w[1]) {
            let fault = format!("source {}: sequence {} more than once", key.1, twice[0]);
            check.first_fault.get_or_insert(fault);
        }
        held.dedup();
        check.duplicates += (before - held.len()) as u64;
        sequences.insert(key, held);
    }
    for &(id, last) in through {
        check.acknowledged += last;
        let held = sequences.get(&(SourceKind::LiveUplink, id));
        let held = held.map_or(&[][..], Vec::as_slice);
        let below = &held[held.partition_point(|&s| s < 1)..];
        let present = below.partition_point(|&s| s <= last) as u64;
        check.missing += last - present;
        if present < last {
            // The first sequence from 1 not held: where the held ones stop counting up.
            let gap = ((1..).zip(below).find(|&(want, &got)| want != got))
                .map_or(present + 1, |(want, _)| want);
            let fault = format!("source {id}: sequence {gap} acknowledged, not in the stream");
            check.first_fault.get_or_insert(fault);
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(of: &[(u32, &[u64])]) -> HashMap<SourceKey, Vec<u64>> {
        (of.iter())
            .map(|(id, s)| ((SourceKind::LiveUplink, *id), s.to_vec()))
            .collect()
    }

    #[test]
    fn every_acknowledged_frame_once_passes_and_frames_past_the_ack_are_no_fault() {
        let check = tally(seen(&[(1, &[3, 1, 2, 4, 5]), (2, &[1])]), &[(1, 4), (2, 1)]);
        assert!(check.holds_every_acknowledged_frame_once(), "{check:?}");
        assert_eq!((check.frames, check.acknowledged), (6, 5));
    }

    #[test]
    fn a_missing_frame_and_a_second_copy_are_counted_and_named() {
        let check = tally(seen(&[(1, &[1, 2, 4, 4, 5])]), &[(1, 5)]);
        assert_eq!((check.missing, check.duplicates), (1, 1), "{check:?}");
        assert!(!check.holds_every_acknowledged_frame_once());
        let check = tally(seen(&[(1, &[1, 2, 4, 5])]), &[(1, 5), (7, 2)]);
        assert_eq!(check.missing, 3, "{check:?}");
        let fault = check.first_fault.unwrap_or_default();
        assert_eq!(
            fault,
            "source 1: sequence 3 acknowledged, not in the stream"
        );
    }

    #[test]
    fn nothing_acknowledged_is_no_pass() {
        assert!(!tally(seen(&[(1, &[1])]), &[]).holds_every_acknowledged_frame_once());
    }
}
