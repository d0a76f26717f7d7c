//! How frames are shown to people: payloads in hex, timestamps in RFC 3339. The archive tools,
//! `aggregator tail` and the HTTP API print them alike.

use std::fmt::Write as _;

/// Bytes of payload shown in hex.
const PAYLOAD_SHOWN: usize = 16;

/// `bytes` in lower-case hex, two digits a byte: how the tools, `tail --json` and `/feed` write
/// payloads.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A payload's first bytes in hex, `..` when there are more, `-` when it is empty: what `inspect`
/// and `aggregator tail` print.
pub fn payload_preview(payload: &[u8]) -> String {
    if payload.is_empty() {
        return "-".into();
    }
    let mut hex = hex(&payload[..payload.len().min(PAYLOAD_SHOWN)]);
    if payload.len() > PAYLOAD_SHOWN {
        hex.push_str("..");
    }
    hex
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC) for nanoseconds since the Unix epoch.
pub fn unix_ns_to_rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), in u64 since the
    // epoch is the earliest time a u64 of nanoseconds can name.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(unix_ns_to_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            unix_ns_to_rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            unix_ns_to_rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }
}
