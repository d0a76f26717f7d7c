//! Backfill as a station does it: Kiruna's recording of a pass, uploaded into its link's spool
//! directory the way rsync or scp is told to (written, then renamed), and the import's counters
//! on `/stats`. Shared by the backfill tests and the downstream tests that read what a backfill
//! stored (COSMOS).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use aggregator::Config;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::stations::{self, framed};
use super::{wait_until_async, TempDir, TestDaemon, PATIENCE};

/// Kiruna's recording of counts `counts`, as its station writes its stream to a file.
pub fn recording(counts: impl IntoIterator<Item = u16>) -> Vec<u8> {
    counts
        .into_iter()
        .flat_map(|count| framed(count, u64::from(count)))
        .collect()
}

/// Writes `bytes` into the spool the way a station's upload does: a `.part` file, renamed.
pub fn upload(spool: &Path, name: &str, bytes: &[u8]) {
    let part = spool.join(format!("{name}.part"));
    std::fs::write(&part, bytes).unwrap();
    std::fs::rename(&part, spool.join(name)).unwrap();
}

/// A scratch directory named `name` with an empty `spool` in it.
pub fn spooled(name: &str) -> (TempDir, PathBuf) {
    let dir = TempDir::new(name);
    let spool = dir.0.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    (dir, spool)
}

/// Kiruna and Svalbard ([`stations`]) storing into `dir`, Kiruna's link with `spool` as its
/// `spool_dir`, the rest of the config as `tune` leaves it; the monitor served.
pub async fn kiruna_spooled(
    dir: &Path,
    spool: &Path,
    tune: impl FnOnce(&mut Config),
) -> (TestDaemon, SocketAddr, CancellationToken) {
    let spool = spool.to_owned();
    let with_spool = move |config: &mut Config| {
        let kiruna = config.links.iter_mut().find(|l| l.name == "Kiruna");
        kiruna.expect("Kiruna's link").spool_dir = Some(spool);
        tune(config);
    };
    let (daemon, monitor, stop, _) = stations::start(dir, with_spool).await;
    (daemon, monitor, stop)
}

/// Kiruna's link on `/stats`.
pub async fn kiruna(monitor: SocketAddr) -> Value {
    let stats = super::http_get_json(monitor, "/stats").await;
    let links = stats["links"].as_array().cloned().unwrap_or_default();
    let kiruna = links.into_iter().find(|l| l["name"] == "Kiruna");
    kiruna.unwrap_or_default()
}

/// Kiruna's `backfill` object on `/stats`.
pub async fn kiruna_backfill(monitor: SocketAddr) -> Value {
    kiruna(monitor).await["backfill"].clone()
}

/// Waits until Kiruna's spool counts `done` files done and `failed` failed; its `backfill` then.
pub async fn wait_files(monitor: SocketAddr, done: u64, failed: u64) -> Value {
    let settled = || async move {
        let backfill = kiruna_backfill(monitor).await;
        backfill["files_done"] == done && backfill["files_failed"] == failed
    };
    wait_until_async("the spool's files settled", PATIENCE, settled).await;
    kiruna_backfill(monitor).await
}
