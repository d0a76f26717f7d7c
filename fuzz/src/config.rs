//! The config file: any text is a config or an error that names where it went wrong.

use std::path::Path;

use aggregator::config::Config;

/// Input that is not UTF-8 is not a config the daemon could read (`read_to_string` refuses it).
pub(crate) fn parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = Config::parse(text, Path::new("fuzz.toml")) {
        assert!(!err.to_string().is_empty());
    }
}
