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

/// A duration as people write one: `"30d"`, `"12h"`, `"90s"`, `"1h 30m"`, `"1.5h"` (humantime's
/// forms and units: `ms`, `s`, `m`, `h`, `d`, `w`, `M`, ...), its decimals exact to the nearest
/// nanosecond.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let ns = match text.trim() {
        "0" => Ok(0),
        trimmed => DurationText::new(trimmed).read(),
    };
    let to_duration = |ns: u128| {
        let seconds = u64::try_from(ns / 1_000_000_000).ok()?;
        Some(Duration::new(seconds, (ns % 1_000_000_000) as u32))
    };
    let why = match ns.map(to_duration) {
        Ok(Some(duration)) => return Ok(duration),
        Ok(None) | Err(humantime::DurationError::NumberOverflow) => "number is too large".into(),
        Err(err) => err.to_string(),
    };
    Err(format!(
        "{text:?} is not a duration ({why}): expected a number and a unit, such as \"30d\", \"12h\" \
         or \"15m\""
    ))
}

/// The units a duration may carry, by humantime's names, in nanoseconds (a month is 30.44 days
/// and a year 365.25 days, as humantime counts them).
const DURATION_UNITS: [(&[&str], u128); 10] = [
    (&["nanos", "nsec", "ns"], 1),
    (&["usec", "us", "µs"], 1_000),
    (&["millis", "msec", "ms"], 1_000_000),
    (&["seconds", "second", "secs", "sec", "s"], 1_000_000_000),
    (&["minutes", "minute", "min", "mins", "m"], 60_000_000_000),
    (&["hours", "hour", "hr", "hrs", "h"], 3_600_000_000_000),
    (&["days", "day", "d"], 86_400_000_000_000),
    (&["weeks", "week", "wk", "wks", "w"], 604_800_000_000_000),
    (&["months", "month", "M"], 2_630_016_000_000_000),
    (&["years", "year", "yr", "yrs", "y"], 31_557_600_000_000_000),
];

/// A duration's text, read as `humantime::parse_duration` reads it (the same forms, the same
/// errors at the same offsets) but with exact decimals. humantime turns a fraction of an hour, a
/// day, a month or a year into whole seconds and refuses it as "values below 1ns" when it is not
/// one (`"0.002h"` is 7.2 s); here a number is its integer digits scaled in integer nanoseconds.
struct DurationText<'a> {
    text: &'a str,
    chars: std::str::Chars<'a>,
}

/// A number as written: its whole part and its decimals.
struct Decimal {
    whole: u64,
    fraction: Option<Fraction>,
}

/// The digits after a decimal point: `digits` of them as one integer, the first
/// `Fraction::KEPT` exactly and any further ones only by whether one was not zero (one more digit,
/// 1 or 0), which is all that rounding to a nanosecond needs.
#[derive(Default)]
struct Fraction {
    numerator: u128,
    digits: u32,
    beyond: bool,
}

impl Fraction {
    /// Enough digits for a nanosecond of a year (10^-17 of one), with room for rounding.
    const KEPT: u32 = 20;

    fn push(&mut self, digit: u32) {
        if self.digits < Self::KEPT {
            self.numerator = self.numerator * 10 + u128::from(digit);
            self.digits += 1;
        } else {
            self.beyond |= digit != 0;
        }
    }

    /// This fraction of `unit` nanoseconds, to the nearest nanosecond (halves up). At most
    /// 10^21 * 3.2 * 10^16, well inside a u128.
    fn of(&self, unit: u128) -> u128 {
        let (numerator, digits) = match self.beyond {
            true => (self.numerator * 10 + 1, self.digits + 1),
            false => (self.numerator, self.digits),
        };
        let denominator = 10u128.pow(digits);
        let product = numerator * unit;
        product / denominator + u128::from(product % denominator * 2 >= denominator)
    }
}

impl<'a> DurationText<'a> {
    fn new(text: &'a str) -> Self {
        DurationText {
            text,
            chars: text.chars(),
        }
    }

    fn offset(&self) -> usize {
        self.text.len() - self.chars.as_str().len()
    }

    /// The sum of the numbers with their units, in nanoseconds.
    fn read(mut self) -> Result<u128, humantime::DurationError> {
        let mut first = self.first_digit()?.ok_or(humantime::DurationError::Empty)?;
        let mut total = 0u128;
        loop {
            let (number, unit_start) = self.number(first)?;
            let (unit_end, next) = self.unit()?;
            let term = Self::term(
                number,
                &self.text[unit_start..unit_end],
                unit_start,
                unit_end,
            )?;
            total = total
                .checked_add(term)
                .ok_or(humantime::DurationError::NumberOverflow)?;
            first = match next {
                Some(digit) => digit,
                None => match self.first_digit()? {
                    Some(digit) => digit,
                    None => return Ok(total),
                },
            };
        }
    }

    /// The first digit of the next number, after any whitespace; `None` at the end.
    fn first_digit(&mut self) -> Result<Option<u64>, humantime::DurationError> {
        let at = self.offset();
        for c in self.chars.by_ref() {
            match c {
                '0'..='9' => return Ok(Some(u64::from(c as u8 - b'0'))),
                c if c.is_whitespace() => {}
                _ => return Err(humantime::DurationError::NumberExpected(at)),
            }
        }
        Ok(None)
    }

    /// The rest of a number whose first digit was read (whitespace inside it ignored, as
    /// humantime does), and where its unit starts.
    fn number(&mut self, first: u64) -> Result<(Decimal, usize), humantime::DurationError> {
        let mut whole = first;
        let mut at = self.offset();
        while let Some(c) = self.chars.next() {
            match c {
                '0'..='9' => {
                    whole = whole
                        .checked_mul(10)
                        .and_then(|w| w.checked_add(u64::from(c as u8 - b'0')))
                        .ok_or(humantime::DurationError::NumberOverflow)?;
                }
                c if c.is_whitespace() => {}
                'a'..='z' | 'A'..='Z' | 'µ' => break,
                '.' => {
                    let fraction = Some(self.fraction(&mut at)?);
                    return Ok((Decimal { whole, fraction }, at));
                }
                _ => return Err(humantime::DurationError::InvalidCharacter(at)),
            }
            at = self.offset();
        }
        let fraction = None;
        Ok((Decimal { whole, fraction }, at))
    }

    /// The digits after a decimal point; `at` ends where the unit starts.
    fn fraction(&mut self, at: &mut usize) -> Result<Fraction, humantime::DurationError> {
        let mut fraction = Fraction::default();
        let mut any = false;
        while let Some(c) = self.chars.next() {
            match c {
                '0'..='9' => {
                    fraction.push(u32::from(c as u8 - b'0'));
                    any = true;
                }
                c if c.is_whitespace() => {}
                'a'..='z' | 'A'..='Z' | 'µ' => break,
                _ => return Err(humantime::DurationError::InvalidCharacter(*at)),
            }
            *at = self.offset();
        }
        match any {
            true => Ok(fraction),
            false => Err(humantime::DurationError::InvalidCharacter(*at)),
        }
    }

    /// Where the unit whose first letter was read ends, and the first digit of the next number
    /// when one follows at once (`"1h30m"`).
    fn unit(&mut self) -> Result<(usize, Option<u64>), humantime::DurationError> {
        let mut at = self.offset();
        while let Some(c) = self.chars.next() {
            match c {
                '0'..='9' => return Ok((at, Some(u64::from(c as u8 - b'0')))),
                c if c.is_whitespace() => break,
                'a'..='z' | 'A'..='Z' | 'µ' => {}
                _ => return Err(humantime::DurationError::InvalidCharacter(at)),
            }
            at = self.offset();
        }
        Ok((at, None))
    }

    /// A number with its unit in nanoseconds: at most u64::MAX years, about 5.8 * 10^35.
    fn term(
        number: Decimal,
        unit: &str,
        start: usize,
        end: usize,
    ) -> Result<u128, humantime::DurationError> {
        let Some(&(_, unit_ns)) = DURATION_UNITS
            .iter()
            .find(|(names, _)| names.contains(&unit))
        else {
            return Err(humantime::DurationError::UnknownUnit {
                start,
                end,
                unit: unit.to_owned(),
                value: number.whole,
            });
        };
        let fraction = number.fraction.map_or(0, |fraction| fraction.of(unit_ns));
        Ok(u128::from(number.whole) * unit_ns + fraction)
    }
}

/// A time: RFC 3339 (`"2026-11-24T10:00:00Z"`, fractions and offsets allowed), or a time before
/// `now` written as `-` and a duration (`"-15m"`). Nanoseconds since the Unix epoch.
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, String> {
    text.parse::<GivenTime>()?.at(now)
}

/// A time as a flag gives it, before any clock is read ([`parse_time`]'s forms). A command reads
/// its clock once and counts each of its times ago back from that reading ([`GivenTime::at`]):
/// reading it for each flag would put `--from -7d` and `--to -1d` six days and some microseconds
/// apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GivenTime {
    /// Nanoseconds since the Unix epoch.
    At(u64),
    /// This long before the reading; `text` is kept for the error when that is before the epoch.
    Ago { ago: Duration, text: String },
}

impl std::str::FromStr for GivenTime {
    type Err = String;

    fn from_str(text: &str) -> Result<GivenTime, String> {
        match text.trim().strip_prefix('-') {
            Some(ago) => Ok(GivenTime::Ago {
                ago: parse_duration(ago)?,
                text: text.to_owned(),
            }),
            None => rfc3339_time(text).map(GivenTime::At),
        }
    }
}

impl GivenTime {
    /// The time, a time ago counted back from `now`, the one reading of the clock.
    pub fn at(&self, now: SystemTime) -> Result<u64, String> {
        match self {
            GivenTime::At(ns) => Ok(*ns),
            GivenTime::Ago { ago, text } => (now.checked_sub(*ago))
                .and_then(unix_ns)
                .ok_or_else(|| format!("{text:?} is before the Unix epoch")),
        }
    }
}

/// An RFC 3339 time in nanoseconds since the Unix epoch; the error says what was expected, or
/// that the time is outside what the archive holds.
fn rfc3339_time(text: &str) -> Result<u64, String> {
    let ns = rfc3339_ns(text.trim()).ok_or_else(|| {
        format!(
            "{text:?} is not a time: expected RFC 3339, such as \
             \"2026-11-24T10:00:00Z\" or \"2026-11-24T12:00:00.5+02:00\", or a time \
             ago such as \"-15m\""
        )
    })?;
    match u64::try_from(ns) {
        Ok(ns) => Ok(ns),
        Err(_) if ns < 0 => Err(format!("{text:?} is before the Unix epoch")),
        Err(_) => Err(format!(
            "{text:?} is after 2554-07-21T23:34:33Z, the last time the archive holds"
        )),
    }
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

    /// Decimals are exact, to the nearest nanosecond: floating point (or humantime's whole
    /// seconds for a fraction of an hour) refused these as "values below 1ns".
    #[test]
    fn durations_take_exact_decimals() {
        let ns = |text: &str| parse_duration(text).map(|d| d.as_nanos());
        let hour = 3_600_000_000_000u128;
        let day = 24 * hour;
        let month = 2_630_016_000_000_000u128; // humantime's 30.44 days
        for (text, want) in [
            ("0.002h", 2 * hour / 1_000),
            ("0.001h", hour / 1_000),
            ("2.139h", 2_139 * hour / 1_000),
            ("0.3h", 3 * hour / 10),
            ("0.1h", hour / 10),
            ("0.001d", day / 1_000),
            ("1.7d", 17 * day / 10),
            ("0.1M", month / 10),
            ("1.1M", 11 * month / 10),
            ("0.125M", month / 8),
            ("2.5M", 5 * month / 2),
            ("1.5y", 47_336_400_000_000_000),
            ("0.0000001w", 60_480_000),
            ("1.5ns", 2),
            ("0.4ns", 0),
            ("1.0000000005s", 1_000_000_001),
            ("1.00000000049999999999999999s", 1_000_000_000),
            ("0.000000000000000000000000001y", 0),
            ("1.5h 0.25m", 3 * hour / 2 + 15_000_000_000),
            (
                "18446744073709551615s",
                18_446_744_073_709_551_615_000_000_000,
            ),
        ] {
            assert_eq!(ns(text), Ok(want), "{text:?}");
        }
        let why = parse_duration("18446744073709551615s 1s").unwrap_err();
        assert!(
            why.contains("is not a duration (number is too large)"),
            "{why}"
        );
        let why = parse_duration("1.s").unwrap_err();
        assert!(
            why.contains("is not a duration (invalid character at 1)"),
            "{why}"
        );
    }

    /// Every text humantime reads is read the same, and every one it refuses is refused with its
    /// error, but for those it refused as "values below 1ns" (now exact) or too large.
    #[test]
    fn durations_read_as_humantime_reads_them() {
        const ALPHABET: [char; 13] = [
            '0', '1', '5', '.', ' ', 'h', 'm', 's', 'n', 'M', 'µ', 'x', '-',
        ];
        let mut texts: Vec<String> = [
            "1hour 12min 5s",
            "2 hours 1 min",
            "2 hours min",
            "1 2 h",
            "1.5 h",
            "1. 5h",
            "3 secs",
            "4.25 days",
            "1w1d",
            "1h 30m",
            "1h30m",
            "1h  -5m",
            "1h,5m",
            "10 months",
            "2yrs",
            "7µs",
            "999999999999999999999s",
            "1.99999999999999999999999s",
            "18446744073709551615y",
        ]
        .map(String::from)
        .to_vec();
        let mut last = vec![String::new()];
        for _ in 0..5 {
            last = last
                .iter()
                .flat_map(|text| ALPHABET.iter().map(move |c| format!("{text}{c}")))
                .collect();
            texts.extend(last.iter().cloned());
        }
        for text in &texts {
            let ours = parse_duration(text);
            let why =
                |err: &humantime::DurationError| format!("{text:?} is not a duration ({err})");
            match humantime::parse_duration(text.trim()) {
                Ok(duration) => assert_eq!(ours, Ok(duration), "{text:?}"),
                Err(humantime::DurationError::NumberOverflow) => {}
                Err(err) => {
                    let ours = ours.expect_err(text);
                    assert!(ours.starts_with(&why(&err)), "{text:?}: {ours}");
                }
            }
        }
    }

    #[test]
    fn times_ago_take_exact_decimals() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ago = |ms: u64| 1_800_000_000_000_000_000 - ms * 1_000_000;
        for (text, ms) in [
            ("-0.002h", 7_200),
            ("-0.001h", 3_600),
            ("-2.139h", 7_700_400),
            ("-0.001d", 86_400),
            ("-0.1M", 263_001_600),
            ("-1.1M", 2_893_017_600),
            ("-0.1h", 360_000),
            ("-0.125M", 328_752_000),
            ("-0.3h", 1_080_000),
            ("-1.7d", 146_880_000),
            ("-2.5M", 6_575_040_000),
            ("-1.5h", 5_400_000),
            ("-1h30m", 5_400_000),
            ("-2 days", 172_800_000),
            ("-10.75y", 339_244_200_000),
        ] {
            assert_eq!(parse_time(text, now), Ok(ago(ms)), "{text:?}");
        }
        assert!(parse_time("-57.05y", now).is_err(), "before the epoch");
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
