//! The AX.25 UI frame (AX.25 2.2, section 3) that a TNC's KISS data frame holds: TNCs, Direwolf
//! and SDR decoders hand over the frame as it was on the air, so a KISS link with
//! `kiss_payload = "ax25"` takes the space packet from behind its header.
//!
//! Only the header is read: the address field (destination, source, then up to 8 repeaters,
//! 7 bytes each, ended by the low bit of an address's last byte), control `03` (UI) and PID `F0`
//! (no layer 3). The FCS is the TNC's: a KISS frame carries none. The source callsign is kept, as
//! it tells which station or spacecraft sent the frame; the repeaters only count towards the
//! header's length.

pub use crate::domain::reception::Callsign;

/// The bytes of one address: 6 callsign characters shifted left by one, then the SSID byte.
pub(crate) const ADDRESS: usize = 7;
/// Destination and source, then at most 8 repeaters.
pub const MAX_ADDRESSES: usize = 10;
/// Control: an unnumbered information frame.
pub const UI: u8 = 0x03;
/// Protocol identifier: no layer 3 protocol.
pub(crate) const NO_LAYER_3: u8 = 0xF0;

/// The shortest header: destination, source, control and PID.
const LEAST: usize = 2 * ADDRESS + 2;

/// Why a KISS frame's bytes are not an AX.25 UI frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ax25Error {
    #[error("an AX.25 frame of {0} bytes, below the {LEAST} of its header")]
    TooShort(usize),
    #[error("no end of the AX.25 address field within {MAX_ADDRESSES} addresses")]
    NoAddressEnd,
    #[error("the AX.25 address field ends after the destination: no source")]
    NoSource,
    #[error("AX.25 control 0x{0:02X}, PID 0x{1:02X}: not a UI frame (03) without layer 3 (F0)")]
    NotUi(u8, u8),
}

/// What the header of a UI frame says, and where the information field starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UiHeader {
    pub destination: Callsign,
    pub source: Callsign,
    /// Repeaters in the address field (0 to 8).
    pub repeaters: usize,
    /// The header's length: the information field starts here.
    pub len: usize,
}

/// Decodes one 7-byte address: 6 characters shifted left by one, then the SSID byte.
fn decode_address(address: &[u8; ADDRESS]) -> Callsign {
    let mut call = [b' '; 6];
    for (c, &byte) in call.iter_mut().zip(address) {
        *c = byte >> 1;
    }
    Callsign::from_parts(call, (address[6] >> 1) & 0x0F)
}

/// Encodes `callsign` as one address; `last` sets the end-of-field bit.
fn encode_address(callsign: Callsign, last: bool, out: &mut Vec<u8>) {
    let (call, ssid) = callsign.parts();
    out.extend(call.iter().map(|c| c << 1));
    out.push(0x60 | (ssid << 1) | u8::from(last));
}

/// Reads the header of the UI frame `frame` starts with.
pub fn parse(frame: &[u8]) -> Result<UiHeader, Ax25Error> {
    if frame.len() < LEAST {
        return Err(Ax25Error::TooShort(frame.len()));
    }
    let ends = frame
        .chunks_exact(ADDRESS)
        .take(MAX_ADDRESSES)
        .position(|address| address[ADDRESS - 1] & 1 == 1);
    let addresses = match ends {
        Some(0) => return Err(Ax25Error::NoSource),
        Some(last) => last + 1,
        // Cut within the address field.
        None if frame.len() < MAX_ADDRESSES * ADDRESS => {
            return Err(Ax25Error::TooShort(frame.len()))
        }
        None => return Err(Ax25Error::NoAddressEnd),
    };
    let len = addresses * ADDRESS + 2;
    let (&control, &pid) = match frame.get(len - 2..len) {
        Some([control, pid]) => (control, pid),
        _ => return Err(Ax25Error::TooShort(frame.len())),
    };
    if (control, pid) != (UI, NO_LAYER_3) {
        return Err(Ax25Error::NotUi(control, pid));
    }
    let address = |i: usize| {
        let mut bytes = [0; ADDRESS];
        bytes.copy_from_slice(&frame[i * ADDRESS..(i + 1) * ADDRESS]);
        decode_address(&bytes)
    };
    Ok(UiHeader {
        destination: address(0),
        source: address(1),
        repeaters: addresses - 2,
        len,
    })
}

/// Appends a UI frame from `source` to `destination` through `repeaters` (at most 8), holding
/// `info`: what a TNC sends in a KISS data frame (for the tests and the simulator).
pub fn encode(
    destination: Callsign,
    source: Callsign,
    repeaters: &[Callsign],
    info: &[u8],
    out: &mut Vec<u8>,
) {
    let repeaters = &repeaters[..repeaters.len().min(MAX_ADDRESSES - 2)];
    encode_address(destination, false, out);
    encode_address(source, repeaters.is_empty(), out);
    for (i, &repeater) in repeaters.iter().enumerate() {
        encode_address(repeater, i + 1 == repeaters.len(), out);
    }
    out.extend_from_slice(&[UI, NO_LAYER_3]);
    out.extend_from_slice(info);
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy;

    use super::*;

    fn call(text: &str) -> Callsign {
        text.parse().unwrap()
    }

    /// The example of docs/ground-segment.md: a UI frame from N0CALL-1 to CQ through WIDE2-2,
    /// holding the packet of APID 100, count 5, data `DE AD BE EF`.
    #[test]
    fn the_documented_frame_reads_as_documented() {
        let frame = hex(
            "86 A2 40 40 40 40 60 9C 60 86 82 98 98 62 AE 92 88 8A 64 40 65 03 F0 \
             00 64 C0 05 00 03 DE AD BE EF",
        );
        let header = parse(&frame).unwrap();
        assert_eq!(header.destination.to_string(), "CQ");
        assert_eq!(header.source.to_string(), "N0CALL-1");
        assert_eq!((header.repeaters, header.len), (1, 23));
        assert_eq!(&frame[header.len..], hex("00 64 C0 05 00 03 DE AD BE EF"));
        let mut encoded = Vec::new();
        encode(
            call("CQ"),
            call("N0CALL-1"),
            &[call("WIDE2-2")],
            &frame[23..],
            &mut encoded,
        );
        assert_eq!(encoded, frame);
    }

    /// As Direwolf 1.6 sent it from `gen_packets` (the C/R and reserved bits set).
    #[test]
    fn direwolfs_frame_reads_with_its_command_bits() {
        let frame = hex("86 A2 40 40 40 40 E0 9C 60 86 82 98 98 E3 03 F0 00 64");
        let header = parse(&frame).unwrap();
        assert_eq!(
            (header.destination, header.source),
            (call("CQ"), call("N0CALL-1"))
        );
        assert_eq!((header.repeaters, header.len), (0, 16));
    }

    #[test]
    fn frames_that_are_not_ui_frames_are_refused() {
        let mut frame = Vec::new();
        encode(call("CQ"), call("N0CALL"), &[], b"x", &mut frame);
        assert_eq!(parse(&frame[..15]), Err(Ax25Error::TooShort(15)));
        let mut i_frame = frame.clone();
        i_frame[14] = 0x10;
        assert_eq!(parse(&i_frame), Err(Ax25Error::NotUi(0x10, 0xF0)));
        let mut other_pid = frame.clone();
        other_pid[15] = 0xCC;
        assert_eq!(parse(&other_pid), Err(Ax25Error::NotUi(0x03, 0xCC)));
        // No end bit in 10 addresses.
        let endless = vec![0x82; MAX_ADDRESSES * ADDRESS + 2];
        assert_eq!(parse(&endless), Err(Ax25Error::NoAddressEnd));
        // The end bit on the destination: no source.
        let mut one = frame.clone();
        one[6] |= 1;
        assert_eq!(parse(&one), Err(Ax25Error::NoSource));
        // A field that ends where the control byte should be.
        let mut cut = Vec::new();
        encode(
            call("CQ"),
            call("N0CALL"),
            &[call("WIDE1-1")],
            b"",
            &mut cut,
        );
        cut.truncate(2 * ADDRESS + 2);
        cut[13] &= !1;
        assert_eq!(parse(&cut), Err(Ax25Error::TooShort(16)));
    }

    #[test]
    fn callsigns_are_checked_as_written() {
        assert_eq!(call("N0CALL-15").to_string(), "N0CALL-15");
        assert_eq!(call("CQ-0").to_string(), "CQ");
        for wrong in [
            "",
            "n0call",
            "TOOLONG1",
            "N0CALL-16",
            "N0CALL-",
            "N0CALL-+1",
            "A-B-1",
        ] {
            assert!(wrong.parse::<Callsign>().is_err(), "{wrong:?}");
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    fn any_callsign() -> impl Strategy<Value = Callsign> {
        ("[A-Z0-9]{1,6}", 0u8..16).prop_map(|(text, ssid)| call(&format!("{text}-{ssid}")))
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(128))]

        /// Any addresses, repeaters included, read back as encoded, and the information field
        /// starts right after the header.
        #[test]
        fn any_address_list_round_trips(
            destination in any_callsign(),
            source in any_callsign(),
            repeaters in proptest::collection::vec(any_callsign(), 0..=8),
            info in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..32),
        ) {
            let mut frame = Vec::new();
            encode(destination, source, &repeaters, &info, &mut frame);
            let header = parse(&frame).unwrap();
            proptest::prop_assert_eq!(header.destination, destination);
            proptest::prop_assert_eq!(header.source, source);
            proptest::prop_assert_eq!(header.repeaters, repeaters.len());
            proptest::prop_assert_eq!(&frame[header.len..], &info[..]);
            proptest::prop_assert_eq!(header.source.to_string().parse::<Callsign>(), Ok(source));
        }

        /// Any bytes read as a header within them, or are refused, never a panic.
        #[test]
        fn any_bytes_give_a_header_or_a_refusal(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
        ) {
            if let Ok(header) = parse(&bytes) {
                proptest::prop_assert!(header.len <= bytes.len());
                proptest::prop_assert_eq!(header.len, (header.repeaters + 2) * ADDRESS + 2);
            }
        }
    }
}
