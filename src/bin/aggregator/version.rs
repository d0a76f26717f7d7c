//! `aggregator --version`: the release, the commit it was built from, and what it reads and
//! writes, so that an operator planning an upgrade (docs/compatibility.md) sees both sides at once.

use std::sync::LazyLock;

use aggregator::archive::format::{FORMAT_VERSION, READ_VERSIONS};
use aggregator::{follow, protocol};

/// `-V`: the release and the commit.
pub(crate) const SHORT: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("AGGREGATOR_COMMIT"),
    ")"
);

/// `--version`: [`SHORT`], then a line per format and protocol.
pub(crate) static LONG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{SHORT}\n\
         archive format: writes {FORMAT_VERSION}, reads {} to {}\n\
         ingest protocol: {}\n\
         follow protocol: speaks {} to {}",
        READ_VERSIONS.start(),
        READ_VERSIONS.end(),
        protocol::ingest::VERSION,
        follow::protocol::OLDEST_VERSION,
        follow::protocol::VERSION,
    )
});
