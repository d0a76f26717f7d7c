//! Questions asked of the whole archive, answered through the read side: which sequences each
//! source's frames hold and what is missing ([`completeness`]), the passes of stations found in
//! them ([`passes`]), the frames and bytes each station delivered of each source ([`volume`]), and
//! the frames as rows for people and other programs ([`export`]).

pub mod completeness;
pub mod export;
pub mod last_seen;
pub mod passes;
pub mod payload_crcs;
pub mod volume;
