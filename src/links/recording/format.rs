//! A recording's format, named by an operator or told by the bytes: named in the words of the
//! links' `framing`, so that a station's file and its link are described alike.

use std::fmt;
use std::str::FromStr;

use super::detect::{self, Undetected};
use crate::config::{FramingName, LinkConfig};
use crate::protocol::ccsds::LengthField;
use crate::protocol::transfer_frames::{TransferFrameKind, MAX_TRANSFER_FRAME};

/// A recording's format by name: a link `framing`'s name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatName {
    Kiss,
    Ccsds,
    CcsdsAsm,
    LengthPrefix,
    TmFrames,
    AosFrames,
}

const NAMES: [(FormatName, &str); 6] = [
    (FormatName::Kiss, "kiss"),
    (FormatName::Ccsds, "ccsds"),
    (FormatName::CcsdsAsm, "ccsds-asm"),
    (FormatName::LengthPrefix, "length-prefix"),
    (FormatName::TmFrames, "tm-frames"),
    (FormatName::AosFrames, "aos-frames"),
];

impl FormatName {
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(name, _)| *name == self)
            .map_or("", |(_, text)| text)
    }
}

impl fmt::Display for FormatName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no format's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no recording format {0:?}: kiss, ccsds, ccsds-asm, length-prefix, tm-frames or aos-frames"
)]
pub struct UnknownFormat(String);

impl FromStr for FormatName {
    type Err = UnknownFormat;

    fn from_str(text: &str) -> Result<FormatName, UnknownFormat> {
        (NAMES.iter().find(|(_, name)| *name == text))
            .map(|(format, _)| *format)
            .ok_or_else(|| UnknownFormat(text.to_owned()))
    }
}

/// What an operator (or a link's config) says of a recording; detection fills in the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Naming {
    /// The format; `None` to detect it.
    pub format: Option<FormatName>,
    /// Transfer frames' length, marker excluded; told by the markers' spacing when not given.
    pub frame_length: Option<usize>,
    /// Named transfer frames lie each behind the ASM (`true`) or back to back.
    pub frame_marker: bool,
    /// Reed-Solomon check symbols the station left after each transfer frame (passed over).
    pub check_symbols: usize,
    /// The length field of `length-prefix`.
    pub length: Option<LengthField>,
}

impl Default for Naming {
    fn default() -> Naming {
        Naming {
            format: None,
            frame_length: None,
            frame_marker: true,
            check_symbols: 0,
            length: None,
        }
    }
}

impl Naming {
    /// What a link's config says of its station's recordings: they are in its framing, with
    /// its frames' length, marker and check symbols, or its length field.
    pub fn of_link(link: &LinkConfig) -> Naming {
        let format = match link.framing {
            FramingName::Kiss => FormatName::Kiss,
            FramingName::Ccsds => FormatName::Ccsds,
            FramingName::CcsdsAsm => FormatName::CcsdsAsm,
            FramingName::LengthPrefix => FormatName::LengthPrefix,
            FramingName::TmFrames => FormatName::TmFrames,
            FramingName::AosFrames => FormatName::AosFrames,
        };
        Naming {
            format: Some(format),
            frame_length: link.frame_length,
            frame_marker: link.frame_marker,
            check_symbols: link.rs_check_symbols_length,
            length: link.length.map(|l| LengthField {
                offset: l.offset,
                size: l.size,
                adjustment: l.adjustment,
                strip: l.strip,
            }),
        }
    }

    /// Transfer frames' length: named, or else the markers' spacing in `head` less the check
    /// symbols.
    pub(super) fn frame_length_in(&self, head: &[u8]) -> Option<usize> {
        self.frame_length.or_else(|| {
            let spacing = detect::marker_spacing(head)?;
            spacing.checked_sub(self.check_symbols)
        })
    }
}

/// Why a named format cannot be read so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error("transfer frames back to back need their length named")]
    NoFrameLength,
    #[error(
        "the transfer frames' markers are not evenly spaced in the first bytes: name their length"
    )]
    Spacing,
    #[error("a frame length of {0} bytes: transfer frames have 1 to 2048")]
    FrameLength(usize),
    #[error("length-prefix needs its length field named (offset, size, adjustment, strip)")]
    NoLengthField,
    #[error("a length field of {size} bytes at {offset}, stripping {strip}: sizes are 1 to 4, offset and strip at most 65,536")]
    LengthField {
        offset: usize,
        size: usize,
        strip: usize,
    },
}

/// A recording's format, wholly known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingFormat {
    /// KISS frames; time frames give the next data frame's earth-receive time.
    Kiss,
    /// Space packets back to back, or each behind the ASM.
    Packets { marker: bool },
    /// Frames behind a length field.
    LengthPrefix(LengthField),
    /// Transfer frames of `length` bytes, behind the ASM or back to back, each followed by
    /// `check_symbols` bytes that are not the frame's.
    Frames {
        kind: TransferFrameKind,
        length: usize,
        marker: bool,
        check_symbols: usize,
    },
}

impl RecordingFormat {
    /// The format's name, as a link's `framing`.
    pub fn name(&self) -> FormatName {
        match self {
            RecordingFormat::Kiss => FormatName::Kiss,
            RecordingFormat::Packets { marker: false } => FormatName::Ccsds,
            RecordingFormat::Packets { marker: true } => FormatName::CcsdsAsm,
            RecordingFormat::LengthPrefix(_) => FormatName::LengthPrefix,
            RecordingFormat::Frames {
                kind: TransferFrameKind::Tm,
                ..
            } => FormatName::TmFrames,
            RecordingFormat::Frames { .. } => FormatName::AosFrames,
        }
    }
}

impl fmt::Display for RecordingFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            RecordingFormat::Frames {
                length,
                marker,
                check_symbols,
                ..
            } => {
                let lie = if *marker { "behind" } else { "without" };
                write!(f, "{name} ({length} bytes, {lie} the ASM")?;
                match check_symbols {
                    0 => write!(f, ")"),
                    n => write!(f, ", {n} check symbols after each)"),
                }
            }
            RecordingFormat::LengthPrefix(l) => write!(
                f,
                "{name} (offset {}, size {}, adjustment {}, strip {})",
                l.offset, l.size, l.adjustment, l.strip
            ),
            _ => write!(f, "{name}"),
        }
    }
}

/// Whether a recording was compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Plain,
    Gzip,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Plain => "plain",
            Compression::Gzip => "gzip",
        }
    }
}

/// Why no format was chosen.
pub(super) enum Refused {
    Undetected(Undetected),
    Named(FormatName, NamingError),
}

/// The format `naming` names, completed from `head` (the first bytes, the whole file when
/// `whole`), or the one `head` shows; and whether it was detected.
pub(super) fn choose(
    naming: &Naming,
    head: &[u8],
    whole: bool,
) -> Result<(RecordingFormat, bool), Refused> {
    let Some(name) = naming.format else {
        let format = detect::detect(head, whole, naming).map_err(Refused::Undetected)?;
        if let RecordingFormat::Frames { length, .. } = format {
            checked_length(length).map_err(|why| Refused::Named(format.name(), why))?;
        }
        return Ok((format, true));
    };
    let named = named(name, naming, head).map_err(|why| Refused::Named(name, why))?;
    Ok((named, false))
}

fn named(name: FormatName, naming: &Naming, head: &[u8]) -> Result<RecordingFormat, NamingError> {
    let kind = match name {
        FormatName::Kiss => return Ok(RecordingFormat::Kiss),
        FormatName::Ccsds => return Ok(RecordingFormat::Packets { marker: false }),
        FormatName::CcsdsAsm => return Ok(RecordingFormat::Packets { marker: true }),
        FormatName::LengthPrefix => {
            let field = naming.length.ok_or(NamingError::NoLengthField)?;
            return checked_field(field).map(RecordingFormat::LengthPrefix);
        }
        FormatName::TmFrames => TransferFrameKind::Tm,
        FormatName::AosFrames => TransferFrameKind::Aos,
    };
    let marker = naming.frame_marker;
    let length = match (naming.frame_length, marker) {
        (None, false) => return Err(NamingError::NoFrameLength),
        _ => naming.frame_length_in(head).ok_or(NamingError::Spacing)?,
    };
    checked_length(length)?;
    Ok(RecordingFormat::Frames {
        kind,
        length,
        marker,
        check_symbols: naming.check_symbols,
    })
}

/// A transfer frame length a link's config allows.
fn checked_length(length: usize) -> Result<(), NamingError> {
    match (1..=MAX_TRANSFER_FRAME).contains(&length) {
        true => Ok(()),
        false => Err(NamingError::FrameLength(length)),
    }
}

/// A length field within the limits a link's config has.
fn checked_field(field: LengthField) -> Result<LengthField, NamingError> {
    let most = 65_536;
    match (1..=4).contains(&field.size) && field.offset <= most && field.strip <= most {
        true => Ok(field),
        false => Err(NamingError::LengthField {
            offset: field.offset,
            size: field.size,
            strip: field.strip,
        }),
    }
}
