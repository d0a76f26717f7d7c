//! Backfill: a station's recordings of passes its network missed, stored into its link as if
//! the station delivered them now, exactly once beside what the archive holds
//! (`docs/ground-segment.md`, "Backfill").
//!
//! Why through the link: its rules map each APID to its source, its merge group says which
//! stations' sources hold the same packets, and its station names the reception; a file of the
//! station's and a connection of the station's then store the same frames. What differs is
//! what the live merge cannot see: a recording lies hours or days behind the group's counts, far
//! outside the merge's window, so what the group holds is asked of the archive instead, and the
//! recording's counts are placed where they meet it.
//!
//! Rooms, bottom up: `place.rs` places a recording's counts in the group's; `holdings.rs` asks
//! the archive what the group holds and decides the cycle; `packets.rs` turns its frames into
//! the link's packets; `import.rs` stores one file; `spool.rs` watches a link's spool
//! directory.

mod holdings;
mod import;
mod packets;
mod place;
mod spool;

pub(crate) use holdings::{Crcs, FrameAt, Holdings, Window};
pub(crate) use import::Backfill;
pub(crate) use spool::{on_disk, place, takes_name, watch, UPLOADING};
