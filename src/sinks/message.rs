//! What a frame becomes in the stream: its subject, its `Nats-Msg-Id` and its headers, as
//! `docs/scale-out.md` documents them for consumers, and the frame a message holds
//! ([`Naming::frame`]). One place, so that the sink that publishes, the daemon that asks where a
//! source stands and `aggregator nats read` name a source's messages alike.

use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage;
use async_nats::HeaderMap;
use bytes::Bytes;

use crate::archive::format::FrameRecord;
use crate::config::{Identity, NatsConfig};
use crate::domain::frame::{Priority, SourceKey, SourceKind};
use crate::domain::reception::{Ax25Addresses, Callsign, Delivery, Received, Reception};

/// The header of each message published with `ack = "replicated"`: its source's acknowledgement
/// when it was published, up to which every frame of the source is in the stream.
pub(super) const REPLICATED_THROUGH: &str = "Aggregator-Replicated-Through";

/// The daemon that published a message (`sinks.nats.site`).
pub(super) const SITE: &str = "Aggregator-Site";

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
    pub fn frame(
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
    Ok(Some(Box::new(Reception {
        delivery: Arc::new(Delivery {
            link: link.into(),
            station: station.into(),
        }),
        received: Received {
            earth_unix_ns: parsed(headers, earth, "nanoseconds since the Unix epoch")?,
            playback,
            ax25,
        },
    })))
}

/// A link frame's reception as headers: `Aggregator-Link`, `-Station`, `-Mode`, and where known
/// `-Earth-Received-Unix-Ns`, `-Ax25-From`, `-Ax25-To`.
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

    /// A link's frame's reception as docs/scale-out.md names the headers; unknown fields absent.
    #[test]
    fn a_reception_becomes_the_documented_headers() {
        let delivery = std::sync::Arc::new(crate::domain::reception::Delivery {
            link: "uhf".into(),
            station: "Kiruna".into(),
        });
        let mut reception = Reception {
            delivery,
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
            ])
        );
        reception.received = Default::default();
        let headers = reception_headers(&reception);
        let expected = [
            ("Aggregator-Link", "uhf"),
            ("Aggregator-Station", "Kiruna"),
            ("Aggregator-Mode", "realtime"),
        ];
        assert_eq!(headers, named(&expected));
    }

    /// The headers the sink writes, read back into the frame; a header missing or wrong named.
    #[test]
    fn a_message_reads_back_as_its_frame_and_a_bad_header_is_named() {
        let config: crate::Config =
            toml::from_str("[sinks.nats]\nurl = \"nats://127.0.0.1:4222\"\nsite = \"north\"\n")
                .unwrap();
        let naming = Naming::new(&config.sinks.nats.unwrap());
        let reception = Reception {
            delivery: Arc::new(Delivery {
                link: "uhf".into(),
                station: "Kiruna".into(),
            }),
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
