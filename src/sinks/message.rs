//! What a frame becomes in the stream: its subject, its `Nats-Msg-Id` and its headers, as
//! `docs/scale-out.md` documents them for consumers, and the frame a message holds
//! ([`Naming::frame`]). One place, so that the sink that publishes, the daemon that asks where a
//! source stands and `aggregator nats read` name a source's messages alike.

use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use bytes::Bytes;

use super::gaps::Gaps;
pub use super::layout::Layout;
use super::pack::{self, Packer, COMPRESSION, ZSTD};
use crate::archive::format::{
    decode_message_records, encode_frame_records, FrameRecord, NotFrameRecords,
};
use crate::config::{Identity, NatsConfig};
use crate::domain::frame::{Priority, SourceKey, SourceKind};
use crate::domain::reception::{Ax25Addresses, Callsign, Delivery, Received, Reception};

/// The header of each message published with `ack = "replicated"`: its source's acknowledgement
/// when it was published, up to which every frame of the source is in the stream.
pub(super) const REPLICATED_THROUGH: &str = "Aggregator-Replicated-Through";

/// The daemon that published a message (`sinks.nats.site`).
pub(super) const SITE: &str = "Aggregator-Site";

/// The header that names a message's layout; a message without it is of layout `frame/1`.
pub(super) const LAYOUT: &str = "Aggregator-Layout";

/// The headers of a `records/1` or `records/2` message: its frames, and the highest sequence of
/// each priority of its subject in the stream with it.
pub(super) const FRAMES: &str = "Aggregator-Frames";
pub(super) const ROUTINE_THROUGH: &str = "Aggregator-Routine-Through";
pub(super) const EMERGENCY_THROUGH: &str = "Aggregator-Emergency-Through";
/// The header of a `records/1` message that names the routine sequences below its subject's
/// mark that the stream lacks with it.
pub(super) const ROUTINE_GAPS: &str = "Aggregator-Routine-Gaps";

/// The highest sequence of each priority of a source in the stream, and the routine sequences
/// below its mark that the stream lacks ([`Gaps`]): every other frame up to a mark is there. The
/// sink publishes each priority of a source in sequence order but a backfill's frames, which
/// fill the gaps (they are routine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Through {
    pub(super) routine: Option<u64>,
    pub(super) emergency: Option<u64>,
    pub(super) routine_gaps: Gaps,
}

impl Through {
    /// Whether the stream holds `frame`: at or below its priority's mark, and in no gap.
    pub(super) fn holds(&self, frame: &FrameRecord) -> bool {
        let below = |mark: Option<u64>| mark.is_some_and(|mark| frame.sequence <= mark);
        match frame.priority {
            Priority::Routine => below(self.routine) && !self.routine_gaps.contains(frame.sequence),
            Priority::Emergency => below(self.emergency),
        }
    }

    /// Adds `frame`: above its priority's mark it raises the mark (a routine frame opens a gap
    /// of what it passes over); below, it closes its gap.
    pub(super) fn add(&mut self, frame: &FrameRecord) {
        let sequence = frame.sequence;
        let mark = match frame.priority {
            Priority::Routine => &mut self.routine,
            Priority::Emergency => &mut self.emergency,
        };
        let passed = match *mark {
            Some(mark) if sequence <= mark => None,
            Some(mark) => Some(mark + 1),
            None => Some(0),
        };
        if passed.is_some() {
            *mark = Some(sequence);
        }
        if frame.priority == Priority::Routine {
            match passed {
                Some(from) if from < sequence => self.routine_gaps.open(from, sequence - 1),
                Some(_) => {}
                None => self.routine_gaps.close(sequence),
            }
        }
    }

    /// The marks a message's headers give: a `records/1` or `records/2` message's, or a
    /// `frame/1` message's own frame.
    pub(super) fn of_headers(headers: &HeaderMap) -> Result<Through, BadMessage> {
        if header(headers, LAYOUT).is_none() {
            let mut through = Through::default();
            let priority =
                parsed::<Priority>(headers, "Aggregator-Priority", "routine or emergency")?;
            if let (Some(priority), Some(sequence)) = (
                priority,
                parsed(headers, "Aggregator-Sequence", "a sequence")?,
            ) {
                match priority {
                    Priority::Routine => through.routine = Some(sequence),
                    Priority::Emergency => through.emergency = Some(sequence),
                }
            }
            return Ok(through);
        }
        let runs = "runs of sequences";
        Ok(Through {
            routine: parsed(headers, ROUTINE_THROUGH, "a sequence")?,
            emergency: parsed(headers, EMERGENCY_THROUGH, "a sequence")?,
            routine_gaps: parsed(headers, ROUTINE_GAPS, runs)?.unwrap_or_default(),
        })
    }
}

/// How this daemon names and labels each frame's message; public for the benchmark whose plain
/// publisher sends the very messages the sink does.
#[derive(Debug)]
pub struct Naming {
    subject: SubjectTemplate,
    site: String,
    identity: Identity,
}

impl Naming {
    pub fn new(config: &NatsConfig) -> Naming {
        Naming {
            subject: SubjectTemplate::new(config),
            site: config.site.clone(),
            identity: config.identity,
        }
    }

    /// The subject of the source `kind`, `source`.
    pub(super) fn subject(&self, kind: SourceKind, source: u32) -> String {
        self.subject.render(kind, source)
    }

    /// The subject a consumer of source `key` selects: this daemon's subject for it, with every
    /// site's where the subject names the site.
    pub fn source_filter(&self, key: SourceKey) -> String {
        self.subject.render_for(key.0, key.1, "*")
    }

    /// The frame a message of the stream holds, with the site that published it (its
    /// `Aggregator-Site`, absent from messages of builds before the header).
    fn frame(
        &self,
        subject: &str,
        headers: &HeaderMap,
        payload: Bytes,
    ) -> Result<(FrameRecord, Option<String>), BadMessage> {
        let (kind, source_id) = self
            .subject
            .source_of(subject)
            .ok_or_else(|| BadMessage::Subject(subject.to_string()))?;
        let frame = FrameRecord {
            kind,
            priority: required::<Priority>(headers, "Aggregator-Priority", "routine or emergency")?,
            source_id,
            sequence: required(headers, "Aggregator-Sequence", "a sequence")?,
            received_unix_ns: required(
                headers,
                "Aggregator-Received-Unix-Ns",
                "nanoseconds since the Unix epoch",
            )?,
            payload,
            reception: reception(headers)?,
        };
        Ok((frame, header(headers, SITE).map(str::to_string)))
    }

    /// The frames a message of either layout holds, with the site that published it.
    pub fn frames(
        &self,
        subject: &str,
        headers: &HeaderMap,
        payload: Bytes,
    ) -> Result<(Vec<FrameRecord>, Option<String>), BadMessage> {
        match header(headers, LAYOUT) {
            None => self
                .frame(subject, headers, payload)
                .map(|(frame, site)| (vec![frame], site)),
            Some(name) if Layout::named(name).is_some_and(Layout::batches) => {
                let key = (self.subject.source_of(subject))
                    .ok_or_else(|| BadMessage::Subject(subject.to_string()))?;
                let compression = header(headers, COMPRESSION);
                if compression.is_some() && name != Layout::Compressed.name() {
                    return Err(BadMessage::Body(format!("{COMPRESSION} in layout {name}")));
                }
                let payload = pack::unpack(compression, payload).map_err(BadMessage::Body)?;
                let frames = decode_message_records(&payload).map_err(BadMessage::Records)?;
                let count: usize = required(headers, FRAMES, "a count of frames")?;
                if count != frames.len() {
                    let why = format!("{} frames, where {FRAMES} says {count}", frames.len());
                    return Err(BadMessage::Body(why));
                }
                if let Some(other) = frames.iter().find(|f| (f.kind, f.source_id) != key) {
                    let why = format!(
                        "a frame of source {}, not of its subject's",
                        other.source_id
                    );
                    return Err(BadMessage::Body(why));
                }
                Ok((frames, header(headers, SITE).map(str::to_string)))
            }
            Some(name) => Err(BadMessage::Layout(name.to_string())),
        }
    }

    /// A `records/1` message of `frames` (`records/2` where `packer` compresses), all of the
    /// source `key`, in their order: its subject and message. `through`: its subject's marks
    /// with these frames; `replicated_through`: the source's acknowledgement; `last`: the stream
    /// sequence of the subject's last message, which JetStream checks (0: the subject has none).
    pub(super) fn build_records<'a>(
        &self,
        key: SourceKey,
        frames: impl IntoIterator<Item = &'a FrameRecord>,
        through: &Through,
        replicated_through: Option<u64>,
        last: u64,
        packer: &mut Packer,
    ) -> (String, PublishMessage) {
        let mut body = Vec::new();
        let mut count = 0;
        encode_frame_records(&mut body, frames.into_iter().inspect(|_| count += 1));
        let layout = match packer.compresses() {
            true => Layout::Compressed,
            false => Layout::Records,
        };
        let (body, compressed) = packer.pack(key, body);
        let mut message = PublishMessage::build()
            .payload(body)
            .expected_last_subject_sequence(last)
            .header(LAYOUT, layout.name())
            .header(SITE, self.site.as_str())
            .header(FRAMES, count.to_string());
        if compressed {
            message = message.header(COMPRESSION, ZSTD);
        }
        let marks = [
            (ROUTINE_THROUGH, through.routine),
            (EMERGENCY_THROUGH, through.emergency),
            (REPLICATED_THROUGH, replicated_through),
        ];
        for (name, mark) in marks {
            if let Some(mark) = mark {
                message = message.header(name, mark.to_string());
            }
        }
        if !through.routine_gaps.is_empty() {
            message = message.header(ROUTINE_GAPS, through.routine_gaps.to_string());
        }
        (self.subject(key.0, key.1), message)
    }

    /// The frame's subject and message; `replicated_through`: its source's acknowledgement.
    pub fn build(
        &self,
        frame: &FrameRecord,
        replicated_through: Option<u64>,
    ) -> (String, PublishMessage) {
        let series = format!(
            "{}.{}.{}",
            kind_token(frame.kind),
            frame.source_id,
            frame.sequence
        );
        let id = match self.identity {
            Identity::Site => format!("{}.{series}", self.site),
            Identity::Fleet => series,
        };
        let mut message = PublishMessage::build()
            .payload(frame.payload.clone())
            .message_id(id)
            .header(SITE, self.site.as_str())
            .header("Aggregator-Priority", frame.priority.as_str())
            .header("Aggregator-Sequence", frame.sequence.to_string())
            .header(
                "Aggregator-Received-Unix-Ns",
                frame.received_unix_ns.to_string(),
            );
        if let Some(through) = replicated_through {
            message = message.header(REPLICATED_THROUGH, through.to_string());
        }
        let reception = frame.reception.as_deref();
        for (name, value) in reception.into_iter().flat_map(reception_headers) {
            message = message.header(name, value);
        }
        (self.subject(frame.kind, frame.source_id), message)
    }
}

/// Why a message of the stream is not a frame the sink published: the header or subject at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMessage {
    #[error(
        "subject {0:?} is not one of sinks.nats.subject's (KIND and SOURCE where it has them)"
    )]
    Subject(String),
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("layout {0:?} is none this build reads (frame/1, records/1, records/2)")]
    Layout(String),
    #[error("body: {0}")]
    Body(String),
    /// The body of a `records/1` message is not frame records back to back.
    #[error("body: {0}")]
    Records(NotFrameRecords),
    #[error("header {name} {text:?} is not {what}")]
    Header {
        name: &'static str,
        text: String,
        what: &'static str,
    },
}

/// A header's text, where the message has it.
fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    headers.get(name).map(|value| value.as_str())
}

/// A header that must be there, parsed; `what` names what it should be, for the error.
fn parsed<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &'static str,
    what: &'static str,
) -> Result<Option<T>, BadMessage> {
    let Some(text) = header(headers, name) else {
        return Ok(None);
    };
    let bad = || BadMessage::Header {
        name,
        text: text.to_string(),
        what,
    };
    text.parse().map(Some).map_err(|_| bad())
}

/// A header that every frame's message has, parsed.
fn required<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &'static str,
    what: &'static str,
) -> Result<T, BadMessage> {
    parsed(headers, name, what)?.ok_or(BadMessage::Missing(name))
}

/// The reception of a link frame's message: `None` without `Aggregator-Link`.
fn reception(headers: &HeaderMap) -> Result<Option<Box<Reception>>, BadMessage> {
    let Some(link) = header(headers, "Aggregator-Link") else {
        return Ok(None);
    };
    let station =
        header(headers, "Aggregator-Station").ok_or(BadMessage::Missing("Aggregator-Station"))?;
    let playback = match header(headers, "Aggregator-Mode") {
        Some("playback") => true,
        Some("realtime") => false,
        Some(text) => {
            return Err(BadMessage::Header {
                name: "Aggregator-Mode",
                text: text.to_string(),
                what: "realtime or playback",
            })
        }
        None => return Err(BadMessage::Missing("Aggregator-Mode")),
    };
    let callsign = |name: &'static str| match header(headers, name) {
        None => Ok(None),
        Some(text) => Callsign::from_shown(text)
            .map(Some)
            .ok_or(BadMessage::Header {
                name,
                text: text.to_string(),
                what: "a callsign",
            }),
    };
    let ax25 = match (
        callsign("Aggregator-Ax25-From")?,
        callsign("Aggregator-Ax25-To")?,
    ) {
        (Some(from), Some(to)) => Some(Ax25Addresses { from, to }),
        _ => None,
    };
    let earth = "Aggregator-Earth-Received-Unix-Ns";
    let mut delivery = Delivery::live(link, station);
    delivery.recording = header(headers, "Aggregator-Recording").map(Arc::from);
    Ok(Some(Box::new(Reception {
        delivery: Arc::new(delivery),
        received: Received {
            earth_unix_ns: parsed(headers, earth, "nanoseconds since the Unix epoch")?,
            playback,
            ax25,
        },
    })))
}

/// A link frame's reception as headers: `Aggregator-Link`, `-Station`, `-Mode`, and where known
/// `-Earth-Received-Unix-Ns`, `-Ax25-From`, `-Ax25-To`, `-Recording`.
fn reception_headers(reception: &Reception) -> Vec<(&'static str, String)> {
    let r = &reception.received;
    let mut headers = vec![
        ("Aggregator-Link", reception.delivery.link.to_string()),
        ("Aggregator-Station", reception.delivery.station.to_string()),
        ("Aggregator-Mode", r.mode().to_string()),
    ];
    if let Some(time) = r.earth_unix_ns {
        headers.push(("Aggregator-Earth-Received-Unix-Ns", time.to_string()));
    }
    if let Some(ax25) = r.ax25 {
        headers.push(("Aggregator-Ax25-From", ax25.from.to_string()));
        headers.push(("Aggregator-Ax25-To", ax25.to.to_string()));
    }
    if let Some(recording) = &reception.delivery.recording {
        headers.push(("Aggregator-Recording", recording.to_string()));
    }
    // A line end would end the header: only a damaged or forged archive holds one in a name.
    for (_, value) in &mut headers {
        if value.contains(['\r', '\n']) {
            *value = value.replace('\r', "\\x0D").replace('\n', "\\x0A");
        }
    }
    headers
}

/// The `{kind}` of subjects and message ids.
fn kind_token(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::LiveUplink => "live",
        SourceKind::ArchivedReplay => "replay",
    }
}

/// `sinks.nats.subject`, taken apart once.
#[derive(Debug)]
struct SubjectTemplate {
    site: String,
    tokens: Vec<String>,
}

impl SubjectTemplate {
    fn new(config: &NatsConfig) -> SubjectTemplate {
        SubjectTemplate {
            site: config.site.clone(),
            tokens: config.subject.split('.').map(str::to_string).collect(),
        }
    }

    /// The subject of a frame of source `source` of kind `kind`.
    fn render(&self, kind: SourceKind, source: u32) -> String {
        self.render_for(kind, source, &self.site)
    }

    /// The subject of source `source` of kind `kind` published by `site` (`*`: any).
    fn render_for(&self, kind: SourceKind, source: u32, site: &str) -> String {
        let source = source.to_string();
        self.fill(site, kind_token(kind), &source)
    }

    fn fill(&self, site: &str, kind: &str, source: &str) -> String {
        let tokens: Vec<&str> = self
            .tokens
            .iter()
            .map(|token| match token.as_str() {
                "{site}" => site,
                "{kind}" => kind,
                "{source}" => source,
                word => word,
            })
            .collect();
        tokens.join(".")
    }

    /// The source a subject of this template names: its `{kind}` and `{source}` tokens.
    fn source_of(&self, subject: &str) -> Option<SourceKey> {
        let parts: Vec<&str> = subject.split('.').collect();
        if parts.len() != self.tokens.len() {
            return None;
        }
        let (mut kind, mut source) = (None, None);
        for (token, part) in self.tokens.iter().zip(parts) {
            match token.as_str() {
                "{kind}" => kind = Some(part.parse::<SourceKind>().ok()?),
                "{source}" => source = Some(part.parse::<u32>().ok()?),
                "{site}" => {}
                word if word == part => {}
                _ => return None,
            }
        }
        Some((kind?, source?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::format::encode_frame;
    use crate::stats::Stats;

    /// A link's frame's reception as docs/scale-out.md names the headers; unknown fields absent.
    #[test]
    fn a_reception_becomes_the_documented_headers() {
        let delivery = Delivery::live("uhf", "Kiruna").from_recording("pass-7.kiss");
        let mut reception = Reception {
            delivery: Arc::new(delivery),
            received: crate::domain::reception::Received {
                earth_unix_ns: Some(7),
                playback: true,
                ax25: Some(crate::domain::reception::Ax25Addresses {
                    from: "N0CALL-1".parse().unwrap(),
                    to: "CQ".parse().unwrap(),
                }),
            },
        };
        let headers = reception_headers(&reception);
        let named = |pairs: &[(&'static str, &str)]| {
            (pairs.iter())
                .map(|&(name, value)| (name, value.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            headers,
            named(&[
                ("Aggregator-Link", "uhf"),
                ("Aggregator-Station", "Kiruna"),
                ("Aggregator-Mode", "playback"),
                ("Aggregator-Earth-Received-Unix-Ns", "7"),
                ("Aggregator-Ax25-From", "N0CALL-1"),
                ("Aggregator-Ax25-To", "CQ"),
                ("Aggregator-Recording", "pass-7.kiss"),
            ])
        );
        reception.received = Default::default();
        reception.delivery = Arc::new(Delivery::live("uhf", "Kiruna"));
        let headers = reception_headers(&reception);
        let expected = [
            ("Aggregator-Link", "uhf"),
            ("Aggregator-Station", "Kiruna"),
            ("Aggregator-Mode", "realtime"),
        ];
        assert_eq!(headers, named(&expected));
    }

    /// The naming of site `north` with the default subject.
    fn north() -> Naming {
        let config: crate::Config =
            toml::from_str("[sinks.nats]\nurl = \"nats://127.0.0.1:4222\"\nsite = \"north\"\n")
                .unwrap();
        Naming::new(&config.sinks.nats.unwrap())
    }

    /// A frame of source live:3 with the payload `xy`.
    fn frame(priority: Priority, sequence: u64) -> FrameRecord {
        FrameRecord {
            kind: SourceKind::LiveUplink,
            priority,
            source_id: 3,
            sequence,
            received_unix_ns: 10,
            payload: Bytes::from_static(b"xy"),
            reception: None,
        }
    }

    /// The routine sequences a mark passed over are gaps, held by nothing until a frame (a
    /// backfill's) fills them; the message names them, and they read back.
    #[test]
    fn a_mark_s_gaps_are_not_held_until_filled() {
        let routine = |sequence| frame(Priority::Routine, sequence);
        let mut through = Through::default();
        [5, 6, 40, 41, 100]
            .iter()
            .for_each(|s| through.add(&routine(*s)));
        through.add(&frame(Priority::Emergency, 7));
        assert_eq!(through.routine_gaps.to_string(), "0-4,7-39,42-99");
        assert!(through.holds(&routine(41)) && !through.holds(&routine(50)));
        assert!(through.holds(&frame(Priority::Emergency, 7)));
        [50, 51, 52, 60]
            .iter()
            .for_each(|s| through.add(&routine(*s)));
        assert_eq!(through.routine, Some(100), "a fill leaves the mark");
        assert!(through.holds(&routine(50)) && !through.holds(&routine(53)));
        let key = (SourceKind::LiveUplink, 3);
        let packer = &mut Packer::new(true, Stats::new());
        let (_, message) = north().build_records(key, &[routine(50)], &through, None, 5, packer);
        let headers = message.outbound_message(String::new()).headers.unwrap();
        let gaps = headers.get(ROUTINE_GAPS).map(|v| v.as_str());
        assert_eq!(gaps, Some("0-4,7-39,42-49,53-59,61-99"));
        assert_eq!(Through::of_headers(&headers), Ok(through));
    }

    /// The headers the sink writes, read back into the frame; a header missing or wrong named.
    #[test]
    fn a_message_reads_back_as_its_frame_and_a_bad_header_is_named() {
        let naming = north();
        let reception = Reception {
            delivery: Arc::new(Delivery::live("uhf", "Kiruna").from_recording("a b.kiss")),
            received: Received {
                earth_unix_ns: Some(7),
                playback: true,
                ax25: None,
            },
        };
        let frame = FrameRecord {
            kind: SourceKind::ArchivedReplay,
            priority: Priority::Emergency,
            source_id: 12,
            sequence: 99,
            received_unix_ns: 1_800_000_000_000_000_001,
            payload: Bytes::from_static(b"abc"),
            reception: Some(Box::new(reception.clone())),
        };
        let mut headers = HeaderMap::new();
        headers.insert(SITE, "north");
        headers.insert("Aggregator-Priority", "emergency");
        headers.insert("Aggregator-Sequence", "99");
        headers.insert("Aggregator-Received-Unix-Ns", "1800000000000000001");
        for (name, value) in reception_headers(&reception) {
            headers.insert(name, value.as_str());
        }
        let subject = naming.subject(SourceKind::ArchivedReplay, 12);
        assert_eq!(
            naming.source_filter((SourceKind::ArchivedReplay, 12)),
            "telemetry.*.replay.12"
        );
        let read = naming.frame(&subject, &headers, frame.payload.clone());
        assert_eq!(read, Ok((frame, Some("north".to_string()))));
        let other = naming.frame("telemetry.north.replay", &headers, Bytes::new());
        assert_eq!(
            other,
            Err(BadMessage::Subject("telemetry.north.replay".into()))
        );
        headers.insert("Aggregator-Sequence", "x");
        let bad = naming.frame(&subject, &headers, Bytes::new()).unwrap_err();
        assert_eq!(
            bad.to_string(),
            "header Aggregator-Sequence \"x\" is not a sequence"
        );
    }

    /// A `records/1` message reads back as its frames, with its subject's marks; a body that
    /// disagrees with its headers or its subject is named.
    #[test]
    fn a_records_message_reads_back_and_a_bad_one_is_named() {
        let naming = north();
        let frames = [frame(Priority::Emergency, 9), frame(Priority::Routine, 4)];
        let mut through = Through::default();
        frames.iter().for_each(|f| through.add(f));
        let key = (SourceKind::LiveUplink, 3);
        let packer = &mut Packer::new(false, Stats::new());
        let (subject, message) = naming.build_records(key, &frames, &through, Some(2), 17, packer);
        assert_eq!(subject, "telemetry.north.live.3");
        let message = message.outbound_message(subject.clone());
        let headers = message.headers.clone().unwrap_or_default();
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
        assert_eq!(header(LAYOUT).as_deref(), Some("records/1"));
        assert_eq!(header(FRAMES).as_deref(), Some("2"));
        let expected = headers.get(async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE);
        assert_eq!(expected.map(|v| v.as_str()), Some("17"));
        let marks = Through::of_headers(&headers).unwrap();
        assert_eq!((marks.routine, marks.emergency), (Some(4), Some(9)));
        assert!(marks.holds(&frames[1]) && !marks.holds(&frame(Priority::Routine, 5)));
        let read = naming.frames(&subject, &headers, message.payload.clone());
        assert_eq!(read, Ok((frames.to_vec(), Some("north".to_string()))));

        let other = naming.frames("telemetry.north.live.4", &headers, message.payload.clone());
        let other = other.unwrap_err().to_string();
        assert_eq!(other, "body: a frame of source 3, not of its subject's");
        let mut miscounted = headers.clone();
        miscounted.insert(FRAMES, "3");
        let miscounted = naming.frames(&subject, &miscounted, message.payload.clone());
        let miscounted = miscounted.unwrap_err().to_string();
        assert_eq!(miscounted, "body: 2 frames, where Aggregator-Frames says 3");
        let cut = message.payload.slice(..message.payload.len() - 1);
        let cut = naming
            .frames(&subject, &headers, cut)
            .unwrap_err()
            .to_string();
        // Two records (one a priority) of 8 + 19 + 12 + 2 bytes: the second is cut.
        assert_eq!(
            cut,
            "body: record at byte 41: record body cut short (32 of 33 bytes)"
        );
        let mut later = headers.clone();
        later.insert(LAYOUT, "records/3");
        let later = naming
            .frames(&subject, &later, message.payload.clone())
            .unwrap_err();
        assert_eq!(later, BadMessage::Layout("records/3".into()));
        let mut packed = headers.clone();
        packed.insert(COMPRESSION, ZSTD);
        let packed = naming.frames(&subject, &packed, message.payload.clone());
        let packed = packed.unwrap_err().to_string();
        assert_eq!(packed, "body: Aggregator-Compression in layout records/1");
        // A FRAME record (type 1), the archive's and no layout's: refused, as in Python.
        let mut single = Vec::new();
        let f = &frames[1];
        encode_frame(&mut single, f.kind, f.priority, 3, 4, 5, &f.payload);
        let mut one = headers.clone();
        one.insert(FRAMES, "1");
        let single = naming.frames(&subject, &one, single.into()).unwrap_err();
        let why = "body: record at byte 0: type 1, not a frame record taken here";
        assert_eq!(single.to_string(), why);
    }

    /// A `records/2` message of frames that repeat themselves is compressed, says so, and reads
    /// back as its frames; one whose body is not what its header says is named.
    #[test]
    fn a_compressed_records_message_reads_back() {
        let naming = north();
        let frames: Vec<_> = (0..200).map(|s| frame(Priority::Routine, s)).collect();
        let mut through = Through::default();
        frames.iter().for_each(|f| through.add(f));
        let key = (SourceKind::LiveUplink, 3);
        let packer = &mut Packer::new(true, Stats::new());
        let (subject, message) = naming.build_records(key, &frames, &through, None, 1, packer);
        let message = message.outbound_message(subject.clone());
        let headers = message.headers.clone().unwrap_or_default();
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
        assert_eq!(header(LAYOUT).as_deref(), Some("records/2"));
        assert_eq!(header(COMPRESSION).as_deref(), Some("zstd"));
        let mut raw = Vec::new();
        encode_frame_records(&mut raw, &frames);
        assert!(
            message.payload.len() * 4 < raw.len(),
            "{}",
            message.payload.len()
        );
        let read = naming.frames(&subject, &headers, message.payload.clone());
        assert_eq!(read, Ok((frames.clone(), Some("north".to_string()))));

        let mut as_is = HeaderMap::new();
        for name in [LAYOUT, SITE, FRAMES] {
            as_is.insert(name, header(name).unwrap().as_str());
        }
        let read = naming.frames(&subject, &as_is, Bytes::from(raw));
        assert_eq!(read, Ok((frames, Some("north".to_string()))));
        let not_packed = naming.frames(&subject, &headers, Bytes::from_static(b"\0\0\0\x08"));
        let not_packed = not_packed.unwrap_err().to_string();
        assert_eq!(not_packed, "body: not a zstd frame");
    }

    #[test]
    fn the_subject_template_fills_in_site_kind_and_source() {
        let config: crate::Config = toml::from_str(
            "[sinks.nats]\nurl = \"nats://127.0.0.1:4222\"\nsite = \"gs-north\"\n\
             subject = \"tm.{kind}.{site}.raw.{source}\"\n",
        )
        .unwrap();
        let nats = config.sinks.nats.unwrap();
        let template = SubjectTemplate::new(&nats);
        assert_eq!(
            template.render(SourceKind::LiveUplink, 17),
            "tm.live.gs-north.raw.17"
        );
        assert_eq!(nats.stream_subjects(), "tm.*.*.raw.*");
    }
}
