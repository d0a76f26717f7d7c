//! The amounts people write: sizes (`"400GiB"`), durations (`"30d"`) and times (RFC 3339), as the
//! config file and the tools' flags take them. One parser for each, so that `[archive.retention]`
//! and `aggregator archive prune` read `"30d"` alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The suffixes a size may carry, with their multipliers: decimal (`kB`, `MB`, ...) and binary
/// (`KiB`, `MiB`, ...), as `df -h` and `du --si` print them, and `B` alone.
const SIZE_UNITS: [(&str, u64); 10] = [
    ("B", 1),
    ("kB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("PiB", 1 << 50),
];

/// A size: a whole number of bytes (`"1048576"`), or a number with a unit (`"400GiB"`, `"1.5TB"`,
/// `"64 MiB"`). The error says what was expected.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = (&trimmed[..split], trimmed[split..].trim());
    let expected = || {
        format!(
            "{text:?} is not a size: expected bytes, or a number with one of the units B, kB, MB, \
             GB, TB, KiB, MiB, GiB, TiB, PiB (such as \"400GiB\")"
        )
    };
    let multiplier = match unit {
        "" => 1,
        unit => SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(expected)?,
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| format!("{text:?} is more bytes than can be counted"));
    }
    let value: f64 = number.parse().map_err(|_| expected())?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is more bytes than can be counted"));
    }
    Ok(bytes.round() as u64)
}

/// A duration as people write one: `"30d"`, `"12h"`, `"90s"`, `"1h 30m"` (humantime's units:
/// `ms`, `s`, `m`, `h`, `d`, `w`, ...).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|err| {
        format!("{text:?} is not a duration ({err}): expected a number and a unit, such as \"30d\", \"12h\" or \"15m\"")
    })
}

/// A time: RFC 3339 (`"2026-11-24T10:00:00Z"`, fractions and offsets allowed), or a time before
/// `now` written as `-` and a duration (`"-15m"`). Nanoseconds since the Unix epoch.
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, String> {
    let trimmed = text.trim();
    let time = match trimmed.strip_prefix('-') {
        Some(ago) => now
            .checked_sub(parse_duration(ago)?)
            .ok_or_else(|| format!("{text:?} is before the Unix epoch"))?,
        None => {
            let ns = rfc3339_ns(trimmed).ok_or_else(|| {
                format!(
                    "{text:?} is not a time: expected RFC 3339, such as \
                     \"2026-11-24T10:00:00Z\" or \"2026-11-24T12:00:00.5+02:00\", or a time \
                     ago such as \"-15m\""
                )
            })?;
            return match u64::try_from(ns) {
                Ok(ns) => Ok(ns),
                Err(_) if ns < 0 => Err(format!("{text:?} is before the Unix epoch")),
                Err(_) => Err(format!(
                    "{text:?} is after 2554-07-21T23:34:33Z, the last time the archive holds"
                )),
            };
        }
    };
    unix_ns(time).ok_or_else(|| format!("{text:?} is before the Unix epoch"))
}

/// An RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, `T` or a space
/// between date and time) in nanoseconds since the Unix epoch, negative before it.
fn rfc3339_ns(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let digits = |at: usize, len: usize| -> Option<i128> {
        let part = b.get(at..at + len)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, d| n * 10 + i128::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, sep)| b.get(at) != Some(&sep))
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0;
    if b.get(at) == Some(&b'.') {
        let len = b[at + 1..]
            .iter()
            .take_while(|d| d.is_ascii_digit())
            .count();
        if len == 0 {
            return None;
        }
        // RFC 3339 allows any number of digits: those past nanoseconds are dropped.
        let kept = len.min(9);
        nanos = digits(at + 1, kept)? * 10i128.pow(9 - kept as u32);
        at += 1 + len;
    }
    let offset_s = match (b.get(at), b.len() - at) {
        (Some(b'Z' | b'z'), 1) => 0,
        (Some(sign @ (b'+' | b'-')), 6) if b[at + 3] == b':' => {
            let minutes = digits(at + 1, 2)? * 60 + digits(at + 4, 2)?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_s;
    Some(seconds * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i128, month: i128, day: i128) -> i128 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `time` in nanoseconds since the Unix epoch; `None` before it (or past what a u64 holds).
pub fn unix_ns(time: SystemTime) -> Option<u64> {
    let since = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes(" 64 MiB "), Ok(64 << 20));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("2TiB"), Ok(2 << 40));
        assert_eq!(parse_bytes("10B"), Ok(10));
        for bad in ["", "MiB", "12 apples", "1.2.3GB", "-5MB", "99999999999PiB"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} was taken");
        }
        let why = parse_bytes("12 apples").unwrap_err();
        assert!(why.contains("\"12 apples\" is not a size"), "{why}");
    }

    #[test]
    fn durations_take_humantime_units() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3_600)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        let why = parse_duration("30 days ago").unwrap_err();
        assert!(why.contains("is not a duration"), "{why}");
        assert!(parse_duration("12").is_err(), "a unit is needed");
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert_eq!(
            parse_time("2026-11-24T10:00:00Z", now),
            Ok(1_795_514_400_000_000_000)
        );
        assert_eq!(
            parse_time("2026-11-24T10:00:00.5+01:00", now),
            Ok(1_795_510_800_500_000_000)
        );
        assert_eq!(parse_time("-15m", now), Ok(1_799_999_100_000_000_000));
        assert_eq!(parse_time("1970-01-01 00:00:01z", now), Ok(1_000_000_000));
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-24T10:00:00",
            "2026-11-24T10:00:00.Z",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad:?} was taken");
        }
        assert!(
            parse_time("1969-12-31T23:59:59Z", now).is_err(),
            "before the epoch"
        );
        assert!(parse_time("-60000d", now).is_err(), "before the epoch");
        let why = parse_time("2600-01-01T00:00:00Z", now).unwrap_err();
        assert!(why.contains("is after 2554-07-21T23:34:33Z"), "{why}");
        assert_eq!(
            parse_time("2554-07-21T23:34:33Z", now),
            Ok(18_446_744_073_000_000_000),
            "the last second a u64 of nanoseconds holds"
        );
        assert_eq!(
            parse_time("1970-01-01T00:00:00.1234567891234Z", now),
            Ok(123_456_789),
            "digits past nanoseconds are dropped"
        );
    }
}
