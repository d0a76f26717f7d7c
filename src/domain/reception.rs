//! What a ground station knows of a frame's reception, carried from the link that took it to the
//! archive and every reader of it (`docs/ground-segment.md`, "Reception metadata").
//!
//! The daemon's own received time says when a frame reached the daemon; an operator asking what a
//! pass delivered needs what the station saw: when the antenna received it (the earth-receive
//! time, from a TNC's KISS command `09` or the station's header), which station and link delivered
//! it (redundant stations fill each other's losses), whether it was realtime telemetry or a
//! playback of the spacecraft's recorder, for AX.25 who sent it to whom, and for a frame a
//! backfill read from a station's recording, the recording's file. Only link frames carry it; the
//! ingest protocol's sources have none.
//!
//! A record of the archive holds one source's frames of one read of one link, so the link and the
//! station are kept once per record ([`Delivery`]) and the rest per frame ([`Received`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::display::unix_ns_to_rfc3339;

/// The link and the ground station that delivered a record's frames.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// The `[[links]]` name.
    pub link: Arc<str>,
    /// The link's `station`, or its name when none is set.
    pub station: Arc<str>,
    /// The name of the recording a backfill read the frames from (`docs/ground-segment.md`,
    /// "Backfill"); `None` for frames the link received live.
    pub recording: Option<Arc<str>>,
}

impl Delivery {
    /// A link's and a station's delivery of live frames.
    pub fn live(link: &str, station: &str) -> Delivery {
        Delivery {
            link: link.into(),
            station: station.into(),
            recording: None,
        }
    }

    /// The same link and station, the frames read from the recording `name`: its name as every
    /// output shows it, a control character (a line end in a file's name) and a backslash as
    /// `\xHH`, so that two names within the 255 bytes never show alike, cut to 255 bytes at a
    /// character.
    pub fn from_recording(&self, name: &str) -> Delivery {
        let mut shown = String::with_capacity(name.len());
        for c in name.chars() {
            let add = match c.is_control() || c == '\\' {
                true => format!("\\x{:02X}", u32::from(c)),
                false => c.to_string(),
            };
            if shown.len() + add.len() > 255 {
                break;
            }
            shown.push_str(&add);
        }
        Delivery {
            recording: Some(shown.into()),
            ..self.clone()
        }
    }
}

/// What a station said of one frame's reception.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// When the station received the frame, in nanoseconds since the Unix epoch, if it said.
    pub earth_unix_ns: Option<u64>,
    /// Played back from the spacecraft's recorder rather than received as it was made.
    pub playback: bool,
    /// The AX.25 sender and addressee, for a frame that came in an AX.25 UI frame.
    pub ax25: Option<Ax25Addresses>,
}

/// An AX.25 frame's source and destination callsigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ax25Addresses {
    pub from: Callsign,
    pub to: Callsign,
}

/// A frame's reception: the record's delivery and the frame's own part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reception {
    pub delivery: Arc<Delivery>,
    pub received: Received,
}

/// The names of a reception's fields, in the order every output lists them: `tail`, the follow
/// and HTTP rows, exports, the feed and NATS headers.
pub(crate) const FIELDS: [&str; 7] = [
    "link",
    "station",
    "mode",
    "earth_received",
    "ax25_from",
    "ax25_to",
    "recording",
];

impl Reception {
    /// Its fields as text, named as [`FIELDS`]: `None` where the station said nothing (the
    /// earth-receive time, AX.25 addresses) and for a live frame's recording. The earth-receive
    /// time is RFC 3339 with nanoseconds.
    pub fn text_fields(&self) -> [(&'static str, Option<String>); 7] {
        let r = &self.received;
        let ax25 = |pick: fn(&Ax25Addresses) -> Callsign| r.ax25.map(|a| pick(&a).to_string());
        let values = [
            Some(self.delivery.link.to_string()),
            Some(self.delivery.station.to_string()),
            Some(r.mode().to_string()),
            r.earth_unix_ns.map(unix_ns_to_rfc3339),
            ax25(|a| a.from),
            ax25(|a| a.to),
            self.delivery.recording.as_deref().map(str::to_string),
        ];
        let mut fields = FIELDS.map(|name| (name, None));
        for (field, value) in fields.iter_mut().zip(values) {
            field.1 = value;
        }
        fields
    }
}

impl Reception {
    /// The fields that are known as ` name=value` pairs, for one-line text (`tail`, `archive
    /// inspect`); a value with a space, a quote or a backslash is quoted.
    pub fn line_fields(&self) -> String {
        let mut line = String::new();
        for (name, value) in self.text_fields() {
            let Some(value) = value else { continue };
            match value.contains([' ', '"', '\\']) {
                true => line.push_str(&format!(" {name}={value:?}")),
                false => line.push_str(&format!(" {name}={value}")),
            }
        }
        line
    }

    /// Adds the fields that are known to a JSON object (`tail --json`, the HTTP API's and
    /// exports' NDJSON rows, the feed).
    pub fn add_to(&self, object: &mut serde_json::Map<String, serde_json::Value>) {
        for (name, value) in self.text_fields() {
            if let Some(value) = value {
                object.insert(name.into(), value.into());
            }
        }
    }
}

impl Received {
    /// `realtime` or `playback`: the names the tools, the HTTP API and exports print.
    pub fn mode(&self) -> &'static str {
        match self.playback {
            true => "playback",
            false => "realtime",
        }
    }

    /// The flags byte the archive's RECEIVED FRAMES records and the follow protocol's RECEPTION
    /// carry before each frame's fields: what follows it, and whether it was played back.
    pub fn flags(&self) -> ReceptionFlags {
        let bit = |set: bool, bit: u8| if set { bit } else { 0 };
        ReceptionFlags(
            bit(self.earth_unix_ns.is_some(), ReceptionFlags::EARTH_TIME)
                | bit(self.playback, ReceptionFlags::PLAYBACK)
                | bit(self.ax25.is_some(), ReceptionFlags::AX25),
        )
    }
}

/// A received frame's flags byte: one codec for the archive and the follow protocol, which each
/// write the fields it announces in their own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceptionFlags(u8);

impl ReceptionFlags {
    /// An earth-receive time follows.
    const EARTH_TIME: u8 = 0x01;
    /// Played back from the recorder.
    const PLAYBACK: u8 = 0x02;
    /// AX.25 source and destination follow.
    const AX25: u8 = 0x04;

    /// The flags `byte` holds; the byte itself when it sets a bit no flag has.
    pub fn from_byte(byte: u8) -> Result<ReceptionFlags, u8> {
        match byte & !(Self::EARTH_TIME | Self::PLAYBACK | Self::AX25) {
            0 => Ok(ReceptionFlags(byte)),
            _ => Err(byte),
        }
    }

    pub fn byte(self) -> u8 {
        self.0
    }

    pub fn earth_time(self) -> bool {
        self.0 & Self::EARTH_TIME != 0
    }

    pub fn playback(self) -> bool {
        self.0 & Self::PLAYBACK != 0
    }

    pub fn ax25(self) -> bool {
        self.0 & Self::AX25 != 0
    }
}

/// A station's callsign and SSID, shown as `N0CALL-1` (`N0CALL` for SSID 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Callsign {
    /// The characters, space-padded, as on the air once shifted back.
    call: [u8; 6],
    ssid: u8,
}

/// Why a configured callsign is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a callsign: 1 to 6 letters and digits, then -SSID (0 to 15) or nothing")]
pub struct NotACallsign(pub String);

impl Callsign {
    /// The callsign of six characters (space-padded) and an SSID (its low 4 bits).
    pub(crate) fn from_parts(call: [u8; 6], ssid: u8) -> Callsign {
        Callsign {
            call,
            ssid: ssid & 0x0F,
        }
    }

    /// Its characters (space-padded) and SSID.
    pub(crate) fn parts(&self) -> ([u8; 6], u8) {
        (self.call, self.ssid)
    }

    /// The callsign whose text ([`fmt::Display`]) is `text`, whatever it holds: a follower reads
    /// back what the air gave. `None` where no callsign shows as `text`: each callsign has one
    /// text, so an escape's hex digits are upper case, as the text writes them.
    pub(crate) fn from_shown(text: &str) -> Option<Callsign> {
        let (call, ssid) = match text.split_once('-') {
            // As the text is written: decimal, no leading zero (`-1`, never `-01`).
            Some((call, ssid))
                if ssid.bytes().all(|d| d.is_ascii_digit()) && !ssid.starts_with('0') =>
            {
                (
                    call,
                    ssid.parse::<u8>().ok().filter(|s| (1..=15).contains(s))?,
                )
            }
            Some(_) => return None,
            None => (text, 0),
        };
        let mut padded = [b' '; 6];
        let mut len = 0;
        let mut chars = call.bytes();
        while let Some(c) = chars.next() {
            let byte = match c {
                b'\\' => {
                    let digit = |d: Option<u8>| {
                        let d = d.filter(|d| !d.is_ascii_lowercase())?;
                        char::from(d).to_digit(16)
                    };
                    chars.next().filter(|&x| x == b'x')?;
                    let value = digit(chars.next())? * 16 + digit(chars.next())?;
                    Some(value as u8).filter(|&b| escaped(b))?
                }
                c if !escaped(c) => c,
                _ => return None,
            };
            *padded.get_mut(len)? = byte;
            len += 1;
        }
        // The text leaves out the padding: a space it shows last is none of a callsign's.
        let shown_padding = len > 0 && padded[len - 1] == b' ';
        (!shown_padding).then_some(Callsign { call: padded, ssid })
    }
}

/// Whether [`Callsign`]'s text shows `byte` of its characters as `\xNN`: anything but printable
/// ASCII, and the `-` before the SSID and the `\` of an escape, so that the text reads back as one
/// callsign.
fn escaped(byte: u8) -> bool {
    !byte.is_ascii_graphic() || byte == b'-' || byte == b'\\'
}

impl fmt::Display for Callsign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self
            .call
            .iter()
            .rposition(|&c| c != b' ')
            .map_or(0, |i| i + 1);
        for &c in &self.call[..len] {
            // On the air a callsign may hold anything; a log shows it unambiguously.
            match escaped(c) {
                false => write!(f, "{}", char::from(c))?,
                true => write!(f, "\\x{c:02X}")?,
            }
        }
        match self.ssid {
            0 => Ok(()),
            ssid => write!(f, "-{ssid}"),
        }
    }
}

impl FromStr for Callsign {
    type Err = NotACallsign;

    fn from_str(text: &str) -> Result<Callsign, NotACallsign> {
        let wrong = || NotACallsign(text.to_owned());
        let (call, ssid) = match text.split_once('-') {
            Some((call, ssid)) if !ssid.starts_with('+') => {
                (call, ssid.parse::<u8>().map_err(|_| wrong())?)
            }
            Some(_) => return Err(wrong()),
            None => (text, 0),
        };
        let fits = (1..=6).contains(&call.len()) && ssid <= 15;
        if !fits
            || !call
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(wrong());
        }
        let mut padded = [b' '; 6];
        padded[..call.len()].copy_from_slice(call.as_bytes());
        Ok(Callsign { call: padded, ssid })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// Whatever the air gave, a callsign's text reads back as that callsign, and only as it.
        #[test]
        fn any_callsign_reads_back_from_its_text(
            call in proptest::array::uniform6(proptest::prelude::any::<u8>()),
            ssid in 0u8..16,
        ) {
            let callsign = Callsign::from_parts(call, ssid);
            let text = callsign.to_string();
            proptest::prop_assert_eq!(Callsign::from_shown(&text), Some(callsign), "{}", text);
        }
    }

    #[test]
    fn a_callsign_s_text_escapes_what_would_make_it_another() {
        let shown = |call: &[u8; 6], ssid| Callsign::from_parts(*call, ssid).to_string();
        assert_eq!(shown(b"N0CALL", 1), "N0CALL-1");
        assert_eq!(shown(b"CQ    ", 0), "CQ");
        assert_eq!(shown(b"A-1   ", 0), "A\\x2D1");
        assert_eq!(shown(b"A\\x   ", 2), "A\\x5Cx-2");
        assert_eq!(shown(b"a b\x01  ", 0), "a\\x20b\\x01");
        for text in [
            "N0CALL-0",
            "N0CALL-16",
            "A-1-2",
            "TOOLONG1",
            "A\\x2",
            "A\\xZZ",
            "A\\x41",
            "A\\x20",
            "A B",
            "A-+1",
            "A\\x+1",
            "\\xbB",
        ] {
            assert_eq!(Callsign::from_shown(text), None, "{text:?}");
        }
    }
}
