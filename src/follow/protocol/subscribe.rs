//! SUBSCRIBE: where a consumer's reading starts, which frames it wants, and what to do when its
//! next frames were deleted; encoded by the consumer, decoded (or refused) by the daemon.

use bytes::{Buf, BufMut, BytesMut};

use super::refusal::SubscribeError;
use super::wire::{get_position, put_position, OLDEST_VERSION, VERSION};
use super::wire::{ON_GAP_OLDEST, SHARD_POSITION_LEN, SUBSCRIBE, SUBSCRIBE_FIXED_LEN};
use super::wire::{WINDOW, WINDOW_LEN};
use crate::archive::read::{OnGap, Start};
use crate::domain::filter::FrameFilter;
use crate::domain::frame::{Priority, SourceKey, SourceKind};
use crate::domain::position::{Positions, ShardPosition};
use crate::domain::shard::MAX_SHARDS;

/// A consumer's SUBSCRIBE: where to start, which frames it wants, and what to do when its next
/// frames were deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub start: Start,
    /// Its sources (every source when none) and its priority (both when none).
    pub filter: FrameFilter,
    /// END(SegmentDeleted), or SKIPPED and on at the oldest segment left.
    pub on_gap: OnGap,
    /// The protocol version it speaks: from 4 on, a link's frames come with their RECEPTION.
    pub version: u8,
}

impl Subscription {
    /// A subscription of `sources` (every source when empty) and `priority` (both when `None`).
    pub fn new(start: Start, sources: Vec<SourceKey>, priority: Option<Priority>) -> Subscription {
        Subscription {
            start,
            filter: FrameFilter {
                sources,
                priority,
                ..FrameFilter::default()
            },
            on_gap: OnGap::End,
            version: VERSION,
        }
    }

    /// The same subscription, of the frames received from `since` to `until` (inclusive;
    /// nanoseconds since the Unix epoch): it ends with END(Until) once none can come any more.
    pub fn within(self, since: Option<u64>, until: Option<u64>) -> Subscription {
        Subscription {
            filter: FrameFilter {
                since,
                until,
                ..self.filter
            },
            ..self
        }
    }

    /// The same subscription, going on past deleted segments after a SKIPPED notice.
    pub fn going_on_past_gaps(self) -> Subscription {
        Subscription {
            on_gap: OnGap::Oldest,
            ..self
        }
    }

    /// Appends the SUBSCRIBE message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        let window = self.filter.has_window();
        let positions = match &self.start {
            Start::After(positions) => positions.clone(),
            _ => Positions::new(),
        };
        let sources = &self.filter.sources;
        let len = SUBSCRIBE_FIXED_LEN
            + 5 * sources.len()
            + SHARD_POSITION_LEN * positions.len()
            + usize::from(window) * WINDOW_LEN;
        dst.put_u32(len as u32);
        dst.put_slice(&[
            SUBSCRIBE,
            self.version,
            self.start_code(),
            self.priority_code(),
        ]);
        dst.put_u16(sources.len() as u16);
        dst.put_u8(positions.len() as u8);
        self.put_sources(dst);
        for at in positions.iter() {
            dst.put_u8(at.shard as u8);
            put_position(dst, at.position);
        }
        if window {
            let received = self.filter.received();
            dst.put_u64(*received.start());
            dst.put_u64(*received.end());
        }
    }

    /// The start byte: the start, what to do on a gap, and whether a time window follows.
    fn start_code(&self) -> u8 {
        let start = match self.start {
            Start::Oldest => 0,
            Start::Now => 1,
            Start::After(_) => 2,
        };
        let on_gap = match self.on_gap {
            OnGap::End => 0,
            OnGap::Oldest => ON_GAP_OLDEST,
        };
        let window = if self.filter.has_window() { WINDOW } else { 0 };
        start | on_gap | window
    }

    fn priority_code(&self) -> u8 {
        match self.filter.priority {
            None => 0,
            Some(Priority::Routine) => 1,
            Some(Priority::Emergency) => 2,
        }
    }

    fn put_sources(&self, dst: &mut BytesMut) {
        for &(kind, id) in &self.filter.sources {
            dst.put_u8(kind.to_byte());
            dst.put_u32(id);
        }
    }

    /// Decodes a SUBSCRIBE body; an error is the refusal to send.
    pub fn decode(body: &[u8]) -> Result<Subscription, SubscribeError> {
        if body.first() != Some(&SUBSCRIBE) {
            return Err(SubscribeError::NotSubscribe(body.first().copied()));
        }
        let Some(&version) = body.get(1) else {
            return Err(SubscribeError::NoVersion);
        };
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(SubscribeError::UnsupportedVersion(version));
        }
        Self::decode_body(body, version)
    }

    /// The fields after the version: a position per shard, after the sources.
    fn decode_body(mut body: &[u8], version: u8) -> Result<Subscription, SubscribeError> {
        let len = body.len();
        if len < SUBSCRIBE_FIXED_LEN {
            return Err(SubscribeError::Short(len));
        }
        body.advance(2);
        let code = body.get_u8();
        let window = code & WINDOW != 0;
        let priority = priority_filter(body.get_u8())?;
        let sources = usize::from(body.get_u16());
        let positions = usize::from(body.get_u8());
        check_length(len, sources, positions, window)?;
        let from = code & !(ON_GAP_OLDEST | WINDOW);
        if from != 2 && positions != 0 {
            return Err(SubscribeError::PositionsWithoutAfter {
                positions,
                start: from,
            });
        }
        let sources = get_sources(&mut body, sources)?;
        let positions = get_positions(&mut body, positions)?;
        let (since, until) = match window {
            true => get_window(&mut body)?,
            false => (None, None),
        };
        Ok(Subscription {
            start: start(from, || positions)?,
            filter: FrameFilter {
                sources,
                priority,
                since,
                until,
                ..FrameFilter::default()
            },
            on_gap: match code & ON_GAP_OLDEST {
                0 => OnGap::End,
                _ => OnGap::Oldest,
            },
            version,
        })
    }
}

/// That a body of `len` bytes holds `sources` sources, `positions` positions and a time window
/// if it has one, and nothing else.
fn check_length(
    len: usize,
    sources: usize,
    positions: usize,
    window: bool,
) -> Result<(), SubscribeError> {
    let expected = SUBSCRIBE_FIXED_LEN
        + 5 * sources
        + SHARD_POSITION_LEN * positions
        + usize::from(window) * WINDOW_LEN;
    match len == expected {
        true => Ok(()),
        false => Err(SubscribeError::Length {
            len,
            sources,
            positions,
            window,
            expected,
        }),
    }
}

/// `held` positions, at most one per shard, whose bytes the caller checked are there.
fn get_positions(body: &mut &[u8], held: usize) -> Result<Positions, SubscribeError> {
    let mut positions = Positions::new();
    for _ in 0..held {
        let shard = usize::from(body.get_u8());
        let position = get_position(body);
        if shard >= MAX_SHARDS {
            return Err(SubscribeError::Shard(shard));
        }
        if positions.get(shard).is_some() {
            return Err(SubscribeError::TwoPositions(shard));
        }
        positions.set(ShardPosition { shard, position });
    }
    Ok(positions)
}

/// A time window, whose 16 bytes the caller checked are there: since (0: any time) and until
/// (`u64::MAX`: no end), since at most until.
fn get_window(body: &mut &[u8]) -> Result<(Option<u64>, Option<u64>), SubscribeError> {
    let (since, until) = (body.get_u64(), body.get_u64());
    if since > until {
        return Err(SubscribeError::Window { since, until });
    }
    Ok((
        (since > 0).then_some(since),
        (until < u64::MAX).then_some(until),
    ))
}

/// SUBSCRIBE's start code, with the positions `after` gives for start 2.
fn start(code: u8, after: impl FnOnce() -> Positions) -> Result<Start, SubscribeError> {
    match code {
        0 => Ok(Start::Oldest),
        1 => Ok(Start::Now),
        2 => Ok(Start::After(after())),
        other => Err(SubscribeError::Start(other)),
    }
}

fn priority_filter(code: u8) -> Result<Option<Priority>, SubscribeError> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(Priority::Routine)),
        2 => Ok(Some(Priority::Emergency)),
        other => Err(SubscribeError::Priority(other)),
    }
}

/// `count` sources, whose bytes the caller checked are there.
fn get_sources(body: &mut &[u8], count: usize) -> Result<Vec<SourceKey>, SubscribeError> {
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        let byte = body.get_u8();
        let kind = SourceKind::from_byte(byte).ok_or(SubscribeError::SourceKind(byte))?;
        sources.push((kind, body.get_u32()));
    }
    Ok(sources)
}
