//! What the bench binaries share: the `aggregator` binary beside them as a child process on free
//! loopback ports, read through its monitor's `/stats`.
#![allow(dead_code)] // Each bench binary uses a part of it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type BenchResult<T> = Result<T, String>;

pub fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A binary built beside this one.
pub fn sibling(name: &str) -> BenchResult<PathBuf> {
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    let path = exe.with_file_name(name);
    match path.is_file() {
        true => Ok(path),
        false => Err(format!("{} is missing: cargo build --bins", path.display())),
    }
}

/// Runs a bench binary's `bench` in a scratch directory of its own (`/tmp/NAME-PID`, removed
/// after): its exit status, its error printed as `NAME: ERROR`.
pub fn run(name: &str, bench: impl FnOnce(&Path) -> BenchResult<()>) -> std::process::ExitCode {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let ran = std::fs::create_dir_all(&dir)
        .map_err(|err| err.to_string())
        .and_then(|()| bench(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    match ran {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A loopback port free now and not handed out before by this process: the listener that found
/// it is closed at once, and the kernel may give the same port to the next bind to port 0 (a
/// daemon's link and its uplink on one port fail its start).
pub fn free_port() -> BenchResult<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
        let port = listener.local_addr().map_err(|err| err.to_string())?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

/// A daemon child, killed if the bench ends early.
pub struct Daemon {
    child: Child,
    monitor: u16,
    replay: u16,
}

impl Daemon {
    /// Starts `aggregator` with `rest` appended to a config of its listeners on free ports;
    /// waits until its monitor answers.
    pub fn start(dir: &Path, uplink: u16, rest: &str) -> BenchResult<Daemon> {
        let (replay, monitor) = (free_port()?, free_port()?);
        let config = dir.join("aggregator.toml");
        let text = format!(
            "[uplink]\nlisten = \"127.0.0.1:{uplink}\"\n[replay]\nlisten = \"127.0.0.1:{replay}\"\n\
             [monitor]\nlisten = \"127.0.0.1:{monitor}\"\n[log]\nlevel = \"warn\"\n{rest}"
        );
        std::fs::write(&config, text).map_err(|err| err.to_string())?;
        let child = Command::new(sibling("aggregator")?)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start aggregator: {err}"))?;
        let mut daemon = Daemon {
            child,
            monitor,
            replay,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.stats(["frames_archived"]).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(format!(
                    "the daemon exited while starting ({status}); its log above says why"
                ));
            }
            if Instant::now() > deadline {
                return Err("the daemon's monitor did not answer in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn monitor_port(&self) -> u16 {
        self.monitor
    }

    /// The replay listener's address.
    pub fn replay_address(&self) -> String {
        format!("127.0.0.1:{}", self.replay)
    }

    /// Counters from `/stats`, each of `names` once.
    pub fn stats<const N: usize>(&self, names: [&str; N]) -> BenchResult<[u64; N]> {
        let json = self.json()?;
        let mut values = [0; N];
        for (value, name) in values.iter_mut().zip(names) {
            *value = json["stats"][name]
                .as_u64()
                .ok_or_else(|| format!("no stats.{name} in /stats"))?;
        }
        Ok(values)
    }

    /// `/stats`, whole.
    pub fn json(&self) -> BenchResult<serde_json::Value> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.monitor)).map_err(|err| err.to_string())?;
        write!(stream, "GET /stats HTTP/1.0\r\n\r\n").map_err(|err| err.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|err| err.to_string())?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str(body).map_err(|err| err.to_string())
    }

    /// SIGTERM, and waits for the drain.
    pub fn stop(mut self) -> BenchResult<()> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|err| err.to_string())?;
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().map_err(|err| err.to_string())?;
        match status.success() {
            true => Ok(()),
            false => Err(format!("the daemon exited with {status}")),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
