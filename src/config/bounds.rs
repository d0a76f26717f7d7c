//! The numeric bounds of the file, as tables: each section lists its keys with their value and
//! the range they may take, and [`check`] reports the first one outside it.
//!
//! The upper bounds are not tuning advice: past them a value is a typo, or an "unlimited" that
//! would abort the start in an allocation or a semaphore (a listener's slots, a queue's frames).

use std::ops::RangeInclusive;
use std::time::Duration;

use super::error::{Invalid, Problem, Unit};
use crate::net::Limits;

/// Connections one listener accepts at once.
const MAX_CONNECTIONS: u64 = 1 << 20;

/// No upper bound but the type's.
pub(super) const UNBOUNDED: u64 = u64::MAX;

/// One row of a section's table: a key, its value and the range it may take.
#[derive(Debug, Clone)]
pub(super) struct Bound {
    pub key: &'static str,
    pub value: u64,
    pub range: RangeInclusive<u64>,
    pub unit: Unit,
    /// Why the lower bound is what it is, when the number alone does not say.
    pub least_because: Option<&'static str>,
    /// Why the upper bound is what it is, when the number alone does not say.
    pub most_because: Option<&'static str>,
}

impl Bound {
    /// A count of at least 1 and at most `most`.
    pub(crate) fn count(key: &'static str, value: impl TryInto<u64>, most: u64) -> Bound {
        Bound {
            key,
            value: value.try_into().unwrap_or(u64::MAX),
            range: 1..=most,
            unit: Unit::Count,
            least_because: None,
            most_because: None,
        }
    }

    /// A number from 0 to `most` (an identifier, where 0 is one like any other).
    pub(crate) fn up_to(key: &'static str, value: impl TryInto<u64>, most: u64) -> Bound {
        Bound {
            range: 0..=most,
            ..Bound::count(key, value, most)
        }
    }

    /// Bytes from `least` to `most`.
    pub(crate) fn bytes(
        key: &'static str,
        value: impl TryInto<u64>,
        range: RangeInclusive<u64>,
    ) -> Bound {
        Bound {
            key,
            value: value.try_into().unwrap_or(u64::MAX),
            range,
            unit: Unit::Bytes,
            least_because: None,
            most_because: None,
        }
    }

    /// A duration in milliseconds (a key ending in `_ms`) of at least 1 ms.
    pub(crate) fn millis(key: &'static str, value: Duration) -> Bound {
        Bound {
            key,
            value: u64::try_from(value.as_millis()).unwrap_or(u64::MAX),
            range: 1..=UNBOUNDED,
            unit: Unit::Millis,
            least_because: None,
            most_because: None,
        }
    }

    /// A duration in seconds (a key ending in `_s`) of at least 1 s.
    pub(crate) fn seconds(key: &'static str, value: Duration) -> Bound {
        Bound {
            key,
            value: value.as_secs(),
            range: 1..=UNBOUNDED,
            unit: Unit::Seconds,
            least_because: None,
            most_because: None,
        }
    }

    /// The same row, taking values in `range` only.
    pub(crate) fn within(self, range: RangeInclusive<u64>) -> Bound {
        Bound { range, ..self }
    }

    /// The same row, with the reason for its lower bound.
    pub(crate) fn least_because(self, note: &'static str) -> Bound {
        Bound {
            least_because: Some(note),
            ..self
        }
    }

    /// The same row, with the reason for its upper bound.
    pub(crate) fn most_because(self, note: &'static str) -> Bound {
        Bound {
            most_because: Some(note),
            ..self
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        let (value, unit) = (self.value, self.unit);
        let problem = if value < *self.range.start() {
            Problem::TooSmall {
                value,
                least: *self.range.start(),
                unit,
                note: self.least_because,
            }
        } else if value > *self.range.end() {
            Problem::TooLarge {
                value,
                most: *self.range.end(),
                unit,
                note: self.most_because,
            }
        } else {
            return Ok(());
        };
        Err(Invalid::new(self.key, problem))
    }
}

/// The keys of a listener's connection limits: `max_connections`, and one address's share of them.
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnectionKeys {
    pub total: &'static str,
    pub per_address: &'static str,
}

/// The rows of a listener's connection limits, under `keys`.
pub(super) fn connections(keys: ConnectionKeys, limits: Limits) -> [Bound; 2] {
    [
        Bound::count(keys.total, limits.total, MAX_CONNECTIONS),
        Bound::count(keys.per_address, limits.per_address, limits.total as u64)
            .most_because("one address holds at most all of the listener's connections"),
    ]
}

/// The first row of `table` whose value is outside its range.
pub(super) fn check(table: &[Bound]) -> Result<(), Invalid> {
    table.iter().try_for_each(Bound::check)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(row: Bound) -> String {
        check(&[row]).unwrap_err().to_string()
    }

    #[test]
    fn a_row_outside_its_range_names_the_key_the_value_and_the_bound() {
        assert!(check(&[Bound::count("a.b", 5usize, 5)]).is_ok());
        assert_eq!(
            message(Bound::count("a.b", 0usize, 5)),
            "a.b: must be at least 1"
        );
        assert_eq!(
            message(Bound::millis("a.b_ms", Duration::ZERO)),
            "a.b_ms: must be at least 1 ms"
        );
        assert_eq!(
            message(Bound::count("a.b", 6usize, 5)),
            "a.b: 6 is above the most accepted, 5"
        );
        let row = Bound::bytes("a.buffer", 1024usize, 4096..=UNBOUNDED);
        assert_eq!(
            message(row.least_because("leave it out")),
            "a.buffer: 1024 is below the least accepted, 4096 bytes (leave it out)"
        );
    }
}
