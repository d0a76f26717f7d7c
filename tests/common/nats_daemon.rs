//! An `aggregator` child with `[sinks.nats]`, on the [`process::Daemon`] harness: its config
//! written once, with listener ports that a restart keeps (a simulator reconnects to the same
//! addresses), its log kept across restarts for a failure's message, and its monitor asked.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::process::Daemon;
use super::{free_port, http_get_json_blocking, Sim};

/// The longest a daemon's drain may take after SIGTERM, or its exit after SIGKILL.
const EXIT_PATIENCE: Duration = Duration::from_secs(60);

/// A daemon publishing its archive into NATS, into the sink's default stream (`TELEMETRY`).
pub struct NatsDaemon {
    /// The config, `DIR/aggregator.toml`, less the `[log]` section the harness adds.
    config: String,
    dir: PathBuf,
    /// The daemon's archive directory, `DIR/archive`.
    pub archive: PathBuf,
    pub uplink: u16,
    pub replay: u16,
    pub monitor: u16,
    process: Option<Daemon>,
    /// The lines logged by earlier runs of this daemon.
    earlier_log: Vec<String>,
}

impl NatsDaemon {
    /// A daemon in `dir` with the site `site` that publishes to the server at `url`.
    pub fn start(dir: &Path, site: &str, url: &str) -> NatsDaemon {
        NatsDaemon::start_with(dir, site, url, "")
    }

    /// The same whose `[archive]` section ends with `archive_keys` (keys, then tables of its own,
    /// such as `[archive.retention]`).
    pub fn start_with(dir: &Path, site: &str, url: &str, archive_keys: &str) -> NatsDaemon {
        NatsDaemon::start_in(dir, site, &[url.to_string()], "", archive_keys)
    }

    /// A daemon in `dir` with the site `site` that publishes to the servers `urls` (one cluster's),
    /// with `sink_keys` added to `[sinks.nats]` and `archive_keys` to `[archive]`.
    pub fn start_in(
        dir: &Path,
        site: &str,
        urls: &[String],
        sink_keys: &str,
        archive_keys: &str,
    ) -> NatsDaemon {
        let (uplink, replay, monitor) = (free_port(), free_port(), free_port());
        let archive = dir.join("archive");
        let urls: Vec<String> = urls.iter().map(|url| format!("\"{url}\"")).collect();
        let config = format!(
            "[uplink]\nlisten = \"127.0.0.1:{uplink}\"\n\
             [replay]\nlisten = \"127.0.0.1:{replay}\"\n\
             [monitor]\nlisten = \"127.0.0.1:{monitor}\"\n\
             [dashboard]\nstats_interval_ms = 50\n\
             [sinks.nats]\nurl = [{}]\nsite = \"{site}\"\n\
             max_lag_ms = 2000\n{sink_keys}\n\
             [archive]\ndir = \"{}\"\n{archive_keys}",
            urls.join(", "),
            archive.display()
        );
        let mut daemon = NatsDaemon {
            config,
            dir: dir.to_owned(),
            archive,
            uplink,
            replay,
            monitor,
            process: None,
            earlier_log: Vec::new(),
        };
        daemon.restart();
        daemon
    }

    /// Starts the binary (again, on the same config and archive) and waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.process.is_none(), "the daemon is running");
        self.process = Some(Daemon::start_in(&self.dir, &self.config));
    }

    /// Every line the daemon logged, in this run and the earlier ones.
    pub fn log(&self) -> String {
        let mut lines = self.earlier_log.clone();
        if let Some(process) = &self.process {
            lines.extend(process.log.lock().expect("log lock").iter().cloned());
        }
        lines.join("\n")
    }

    /// SIGKILL: no drain, no last save of the sink's cursor.
    pub fn kill(&mut self) {
        self.end(libc::SIGKILL);
    }

    /// SIGTERM, and the exit status after the drain.
    pub fn terminate(&mut self) -> ExitStatus {
        self.end(libc::SIGTERM)
    }

    fn end(&mut self, signal: libc::c_int) -> ExitStatus {
        let mut process = self.process.take().expect("a running daemon");
        process.signal(signal);
        let (status, _) = process.wait_exit(EXIT_PATIENCE);
        let log = process.log.lock().expect("log lock").clone();
        self.earlier_log.extend(log);
        status
    }

    /// `GET path` on the monitor: the status code and the JSON body.
    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        http_get_json_blocking(self.monitor, path)
            .unwrap_or_else(|err| panic!("GET {path} from the monitor: {err}"))
    }

    /// A counter from `/stats`.
    pub fn stat(&self, name: &str) -> u64 {
        let (_, body) = self.get("/stats");
        body["stats"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats.{name} in {body}"))
    }

    /// The uplink listener, as `uplink-sim --uplink` takes it.
    pub fn uplink_addr(&self) -> String {
        format!("127.0.0.1:{}", self.uplink)
    }

    /// The replay listener, as `uplink-sim --replay` takes it.
    pub fn replay_addr(&self) -> String {
        format!("127.0.0.1:{}", self.replay)
    }

    /// Starts an `uplink-sim` of 4 uplinks and a replay feed, each at `rate` frames/s for
    /// `seconds`, that must see every frame acknowledged (it waits through a daemon restart).
    pub fn sim(&self, rate: u32, seconds: u32) -> Sim {
        let (uplink, replay) = (self.uplink_addr(), self.replay_addr());
        Sim::four_and_one(&uplink, &replay, rate, seconds, &["--require-all-acked"])
    }
}
