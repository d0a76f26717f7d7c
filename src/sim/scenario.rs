//! The named scenarios: a profile for the live uplinks and one for the replay feeds.
//!
//! A scenario is only a starting point: the command line overrides any field of both profiles, so
//! `--scenario saturate --payload 1024` means "saturate, with 1 KiB payloads". Uplink ids start at
//! 0 and replay ids at 1000, so the daemon's logs (which name the source id, not its kind) never
//! mix the two.

use std::time::Duration;

use crate::domain::frame::SourceKind;

use super::{Amount, EmergencyMix, Rate, SourceSpec};

/// First id of the replay feeds.
pub(crate) const REPLAY_FIRST_ID: u32 = 1000;

/// A named scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The original brief: 4 uplinks x 10 frames, the first 2 of each Emergency, and 1 replay feed
    /// x 5 frames.
    Brief,
    /// 48 uplinks and 2 replay feeds at a realistic rate for a few seconds.
    Default,
    /// 48 uplinks and 2 replay feeds as fast as the daemon accepts, for a few seconds.
    Saturate,
}

/// The sources of one kind in a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub count: u32,
    pub first_id: u32,
    pub rate: Rate,
    pub jitter: f64,
    pub payload: usize,
    pub amount: Amount,
    pub batch: u32,
    pub emergency: EmergencyMix,
}

impl Profile {
    /// One spec per source, each seeded from `seed` and its id.
    pub fn sources(&self, kind: SourceKind, seed: u64) -> Vec<SourceSpec> {
        (0..self.count)
            .map(|i| {
                let id = self.first_id + i;
                SourceSpec {
                    kind,
                    id,
                    rate: self.rate,
                    jitter: self.jitter,
                    payload: self.payload,
                    amount: self.amount,
                    batch: self.batch.max(1),
                    emergency: self.emergency,
                    seed: seed ^ (u64::from(id) << 32) ^ u64::from(kind.to_byte()),
                    recording: None,
                }
            })
            .collect()
    }
}

impl Scenario {
    /// The uplink profile and the replay profile.
    pub fn profiles(self) -> (Profile, Profile) {
        (self.uplinks(), self.replays())
    }

    /// The profile of the live uplinks.
    fn uplinks(self) -> Profile {
        let secs = |s: u64| Amount::Duration(Duration::from_secs(s));
        match self {
            Scenario::Brief => Profile {
                count: 4,
                first_id: 0,
                rate: Rate::PerSecond(200.0),
                jitter: 0.0,
                payload: 32,
                amount: Amount::Frames(10),
                batch: 10,
                emergency: EmergencyMix::FirstOfBatch(2),
            },
            Scenario::Default => Profile {
                count: 48,
                first_id: 0,
                rate: Rate::PerSecond(100.0),
                jitter: 0.2,
                payload: 64,
                amount: secs(3),
                batch: 10,
                emergency: EmergencyMix::Share(0.05),
            },
            Scenario::Saturate => Profile {
                count: 48,
                first_id: 0,
                rate: Rate::Max,
                jitter: 0.0,
                payload: 64,
                amount: secs(3),
                batch: 32,
                emergency: EmergencyMix::Share(0.01),
            },
        }
    }

    /// The profile of the archived replay feeds.
    fn replays(self) -> Profile {
        let secs = |s: u64| Amount::Duration(Duration::from_secs(s));
        match self {
            Scenario::Brief => Profile {
                count: 1,
                first_id: REPLAY_FIRST_ID,
                rate: Rate::PerSecond(200.0),
                jitter: 0.0,
                payload: 32,
                amount: Amount::Frames(5),
                batch: 5,
                emergency: EmergencyMix::FirstOfBatch(0),
            },
            Scenario::Default => Profile {
                count: 2,
                first_id: REPLAY_FIRST_ID,
                rate: Rate::PerSecond(500.0),
                jitter: 0.2,
                payload: 64,
                amount: secs(3),
                batch: 50,
                emergency: EmergencyMix::Share(0.0),
            },
            Scenario::Saturate => Profile {
                count: 2,
                first_id: REPLAY_FIRST_ID,
                rate: Rate::Max,
                jitter: 0.0,
                payload: 64,
                amount: secs(3),
                batch: 32,
                emergency: EmergencyMix::Share(0.0),
            },
        }
    }
}

/// A scenario name this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario {0:?} (expected brief, default or saturate)")]
pub struct UnknownScenario(pub String);

impl std::str::FromStr for Scenario {
    type Err = UnknownScenario;

    fn from_str(s: &str) -> Result<Self, UnknownScenario> {
        match s {
            "brief" => Ok(Scenario::Brief),
            "default" => Ok(Scenario::Default),
            "saturate" => Ok(Scenario::Saturate),
            other => Err(UnknownScenario(other.into())),
        }
    }
}
