//! What a frame becomes in the stream: its subject, its `Nats-Msg-Id` and its headers, as
//! `docs/scale-out.md` documents them for consumers. One place, so that the sink that publishes
//! and the daemon that asks where a source stands name a source's messages alike.

use async_nats::jetstream::message::PublishMessage;

use crate::archive::format::FrameRecord;
use crate::config::{Identity, NatsConfig};
use crate::domain::frame::SourceKind;
use crate::domain::reception::Reception;

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
        let kind = kind_token(kind);
        let source = source.to_string();
        let tokens: Vec<&str> = self
            .tokens
            .iter()
            .map(|token| match token.as_str() {
                "{site}" => self.site.as_str(),
                "{kind}" => kind,
                "{source}" => source.as_str(),
                word => word,
            })
            .collect();
        tokens.join(".")
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
