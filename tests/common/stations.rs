//! Two ground stations of one merge group, as the passes and volume tests run them: Kiruna and
//! Svalbard, both of group `pass`, each a length-prefixed stream whose header gives each packet's
//! earth-receive time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::{Config, Daemon};
use tokio_util::sync::CancellationToken;

use super::{archive_config, serve_monitor, TestDaemon};

/// The earth-receive time of the spacecraft's count 0, in milliseconds since the Unix epoch.
pub const T0_MS: u64 = 1_800_000_000_000;

/// Two stations of group `pass`, Kiruna's APID 7 source live:10007 and Svalbard's live:20007,
/// each a length-prefixed stream: 4 bytes of the packet's length, 8 of its earth time in ms.
pub fn links() -> String {
    link("Kiruna", 10_000) + &link("Svalbard", 20_000)
}

/// `station`'s link of group `pass` (its APID 7 source `apid_base + 7`), a length-prefixed
/// stream listening on a loopback port of the system's choice: one `[[links]]` table.
pub fn link(station: &str, apid_base: u32) -> String {
    format!(
        "[[links]]\nname = \"{station}\"\nstation = \"{station}\"\ntransport = \"tcp-listen\"\n\
         address = \"127.0.0.1:0\"\nframing = \"length-prefix\"\ngroup = \"pass\"\n\
         apid_base = {apid_base}\nlength = {{ offset = 0, size = 4, adjustment = 12, strip = 12 }}\n\
         earth_time = {{ offset = 4, unit = \"ms\" }}\n"
    )
}

/// The 14-bit counts' cycle.
pub const CYCLE: u64 = 16_384;

/// A station's recording of `packets` packets of APID 7 as its link reads it ([`framed`]),
/// counts wrapping every [`CYCLE`], a thousand a second.
pub fn recording(packets: u64) -> Vec<u8> {
    (0..packets)
        .flat_map(|i| framed((i % CYCLE) as u16, i / 1000))
        .collect()
}

/// The packet of `count` (APID 7, 106 bytes), received on earth `second`s after T0, framed as
/// the links read it.
pub fn framed(count: u16, second: u64) -> Vec<u8> {
    framed_at(count, T0_MS + second * 1000)
}

/// The spacecraft's packet of `count`: APID 7, 100 bytes of data, each the count's low byte.
pub fn packet(count: u16) -> Vec<u8> {
    let header = PrimaryHeader::telemetry(7, count, 100).encode();
    header.into_iter().chain([count as u8; 100]).collect()
}

/// The packet of `count`, received on earth at `earth_ms`, framed as the links read it.
pub fn framed_at(count: u16, earth_ms: u64) -> Vec<u8> {
    let packet = packet(count);
    let mut wire = (packet.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(&earth_ms.to_be_bytes());
    wire.extend_from_slice(&packet);
    wire
}

/// A daemon with the two stations' links (their config written to `dir/links.toml`, returned),
/// storing into an archive in `dir/archive`, as `tune` leaves the config; its monitor served.
pub async fn start(
    dir: &Path,
    tune: impl FnOnce(&mut Config),
) -> (TestDaemon, SocketAddr, CancellationToken, PathBuf) {
    let config_file = dir.join("links.toml");
    std::fs::write(&config_file, links()).unwrap();
    let mut config = archive_config(&dir.join("archive"));
    let parsed = Config::parse(&links(), &config_file);
    config.links = parsed.expect("valid [[links]]").links;
    tune(&mut config);
    let opened = aggregator::archive::write::open(&config.archive, config.runtime.shards)
        .expect("open the archive");
    let build = |config| Daemon::new(config, opened);
    let (daemon, state) = TestDaemon::start_built(config, build, Daemon::monitor_state).await;
    let (monitor, stop) = serve_monitor(state).await;
    (daemon, monitor, stop, config_file)
}
