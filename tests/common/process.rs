//! The `aggregator` binary as a child process: a config written to a scratch directory, the
//! listener addresses read from its log, its log lines waited on, signals, and its exit.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// The drain deadline the daemon is configured with.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(3);

/// A running `aggregator` child, killed if the test fails before it exits.
pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    /// The directory is the daemon's own, removed when it is dropped.
    owns_dir: bool,
    lines: mpsc::Receiver<String>,
    /// Every line the daemon logged so far.
    pub log: Arc<Mutex<Vec<String>>>,
    pub uplink: SocketAddr,
    pub replay: SocketAddr,
    pub monitor: SocketAddr,
    /// The follow listener, where the config enables it (`consumer.enabled`).
    pub consumer: Option<SocketAddr>,
}

impl Daemon {
    /// Writes a config with both listeners on loopback port 0 and JSON logs, starts the binary,
    /// and reads the listener addresses from its "aggregator listening" log line.
    pub fn start(name: &str) -> Daemon {
        Daemon::start_logging(name, "json")
    }

    /// The same with logs in `format` (`json` or `text`).
    pub fn start_logging(name: &str, format: &str) -> Daemon {
        Daemon::start_configured(name, format, "")
    }

    /// The same with `extra` appended to the config (sections of its own).
    pub fn start_configured(name: &str, format: &str, extra: &str) -> Daemon {
        Daemon::launch(name, format, extra, "", None)
    }

    /// Starts the binary with `monitor` appended to its `[monitor]` section, `extra` to the
    /// config, and with `open_files` as its soft and hard `RLIMIT_NOFILE` if given.
    pub fn launch(
        name: &str,
        format: &str,
        extra: &str,
        monitor: &str,
        open_files: Option<u64>,
    ) -> Daemon {
        let dir = std::env::temp_dir().join(format!(
            "aggregator-binary-test-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("aggregator.toml");
        let text = format!(
            "[uplink]\nlisten = \"127.0.0.1:0\"\nmax_connections = 16\n\
             [replay]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4\n\
             [shutdown]\ndrain_deadline_ms = {}\n\
             [dashboard]\nstats_interval_ms = 50\n\
             [log]\nlevel = \"info\"\nformat = \"{format}\"\n\
             [monitor]\nlisten = \"127.0.0.1:0\"\n{monitor}\n\
             [archive]\ndir = \"{}\"\n{extra}",
            DRAIN_DEADLINE.as_millis(),
            dir.join("archive").display()
        );
        std::fs::write(&config, &text).unwrap();
        Daemon::spawn(dir, format, (open_files, &[]), true)
    }

    /// Starts the binary on the config `text` (JSON logs: it should not set `[log]`), written to
    /// `dir/aggregator.toml`. The directory is the caller's: kept when the daemon is dropped, so
    /// that another daemon can start on what this one left.
    pub fn start_in(dir: &std::path::Path, text: &str) -> Daemon {
        Daemon::start_in_env(dir, text, &[])
    }

    /// [`Daemon::start_in`] with the variables `env` set (libfaketime's, say).
    pub fn start_in_env(dir: &std::path::Path, text: &str, env: &[(&str, String)]) -> Daemon {
        std::fs::write(
            dir.join("aggregator.toml"),
            format!("{text}\n[log]\nformat = \"json\"\n"),
        )
        .unwrap();
        Daemon::start_on(dir, "json", env)
    }

    /// Starts the binary on the config the caller wrote to `dir/aggregator.toml`, whose logs are
    /// in `format`, with the variables `env` set. The directory is the caller's.
    pub fn start_on(dir: &std::path::Path, format: &str, env: &[(&str, String)]) -> Daemon {
        Daemon::spawn(dir.to_path_buf(), format, (None, env), false)
    }

    /// Starts the binary on `dir/aggregator.toml`, with `open_files` as its descriptor limit and
    /// the variables `env`, and reads its listeners from its log.
    fn spawn(
        dir: PathBuf,
        format: &str,
        (open_files, env): (Option<u64>, &[(&str, String)]),
        owns_dir: bool,
    ) -> Daemon {
        let config = dir.join("aggregator.toml");
        let mut command = Command::new(env!("CARGO_BIN_EXE_aggregator"));
        command
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(files) = open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: files as libc::rlim_t,
                rlim_max: files as libc::rlim_t,
            };
            // SAFETY: setrlimit is async-signal-safe and reads a struct copied into the closure.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let mut child = command.spawn().expect("start the aggregator binary");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        // Drain stderr continuously so the daemon never blocks on a full pipe.
        std::thread::spawn({
            let log = Arc::clone(&log);
            move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            }
        });
        let mut daemon = Daemon {
            child,
            dir,
            owns_dir,
            lines,
            log,
            uplink: "0.0.0.0:0".parse().unwrap(),
            replay: "0.0.0.0:0".parse().unwrap(),
            monitor: "0.0.0.0:0".parse().unwrap(),
            consumer: None,
        };
        let listening = daemon.wait_for_line("aggregator listening");
        let field = |key| match format {
            "json" => json_field(&listening, key).to_string(),
            _ => text_field(&listening, key).to_string(),
        };
        daemon.uplink = field("uplink").parse().unwrap();
        daemon.replay = field("replay").parse().unwrap();
        // "disabled" where it is off: the monitor's stays unspecified (0.0.0.0:0).
        if let Ok(monitor) = field("monitor").parse() {
            daemon.monitor = monitor;
        }
        daemon.consumer = field("consumer").parse().ok();
        daemon
    }

    /// The next log line containing `needle`; fails the test if none comes in time.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(err) => panic!(
                    "no log line with {needle:?} ({err}); log so far:\n{}",
                    self.log.lock().unwrap().join("\n")
                ),
            }
        }
    }

    /// The port the TM server `name` listens on, from its "tm server listening" log line.
    pub fn tm_port(&self, name: &str) -> u16 {
        let name_field = format!("\"name\":\"{name}\"");
        loop {
            if let Some(line) = self.logged(&["tm server listening", &name_field]) {
                let address = json_field(&line, "address");
                let port = address.rsplit_once(':').map(|(_, port)| port.parse());
                return port
                    .and_then(Result::ok)
                    .unwrap_or_else(|| panic!("no port in {line}"));
            }
            self.wait_for_line("tm server listening");
        }
    }

    /// A line matching `matches`, logged so far or to come; fails the test if none comes in time
    /// or the daemon exits first.
    pub fn wait_for(&self, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        // Each line is in the log before it is sent: a line received has been looked at, or is
        // looked at in the next turn.
        let (mut ended, mut seen) = (None, 0);
        loop {
            let log = self.log.lock().unwrap();
            if let Some(line) = log[seen..].iter().find(|l| matches(l)) {
                return line.clone();
            }
            seen = log.len();
            drop(log);
            if let Some(err) = ended {
                let log = self.log.lock().unwrap().join("\n");
                panic!("no matching log line ({err}); log so far:\n{log}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            ended = self.lines.recv_timeout(left).err();
        }
    }

    /// SIGKILL: the daemon gets no chance to drain, flush or close its archive.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the daemon");
        self.child.wait().expect("reap the daemon");
    }

    /// A line logged so far (waited for or not) that contains every one of `needles`.
    pub fn logged(&self, needles: &[&str]) -> Option<String> {
        let log = self.log.lock().unwrap();
        let found = log
            .iter()
            .find(|line| needles.iter().all(|n| line.contains(n)));
        found.cloned()
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: sending a signal to our own child process.
        assert_eq!(
            unsafe { libc::kill(pid, signal) },
            0,
            "kill({pid}, {signal})"
        );
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < limit,
                "the daemon did not exit within {limit:?}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The value of `"key":` in a JSON log line, as text (quotes stripped).
pub fn json_field<'a>(line: &'a str, key: &str) -> &'a str {
    let pattern = format!("\"{key}\":");
    let start = line
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key:?} in {line}"))
        + pattern.len();
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        &quoted[..quoted.find('"').unwrap()]
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        rest[..end].trim()
    }
}

/// The value of `key=` in a text log line.
pub fn text_field<'a>(line: &'a str, key: &str) -> &'a str {
    let pattern = format!(" {key}=");
    let start = line
        .find(&pattern)
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
        + pattern.len();
    line[start..].split(' ').next().unwrap_or_default()
}

pub fn json_u64(line: &str, key: &str) -> u64 {
    json_field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key:?} is not a number in {line}"))
}

/// An outside program running beside a test (a Python client, a peer's tool), its stdout read
/// line by line; killed on drop. Every wait is bounded by its `patience`.
pub struct Program {
    name: String,
    child: Child,
    /// The program's stdin, held open until [`Program::close_stdin`] (or the drop).
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    patience: Duration,
}

impl Program {
    /// Starts `command` with its stdin, stdout and stderr piped; fails the test if it cannot.
    pub fn spawn(name: &str, mut command: Command, patience: Duration) -> Program {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {name}: {err}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            text
        });
        Program {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            stderr: Some(stderr),
            patience,
        }
    }

    /// The next line of stdout; fails the test, with the program's stderr, if none comes in time
    /// or the program exits first.
    pub fn next_line(&mut self, what: &str) -> String {
        self.try_next_line()
            .unwrap_or_else(|why| panic!("{}: no line with {what}: {why}", self.name))
    }

    /// The next line of stdout, or why none came (the program's exit and stderr); the program is
    /// killed then.
    pub fn try_next_line(&mut self) -> Result<String, String> {
        match self.lines.recv_timeout(self.patience) {
            Ok(line) => Ok(line),
            Err(err) => Err(format!("{err}; {}", self.kill())),
        }
    }

    /// `Some(its exit and stderr)` once the program has exited.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().unwrap()?;
        Some(format!("it exited {status}:\n{}", self.stderr_text()))
    }

    /// Kills it; its exit and stderr.
    fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        format!("it exited {status}:\n{}", self.stderr_text())
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the exit; the status, the rest of stdout and stderr.
    pub fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + self.patience;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let why = self.kill();
                panic!(
                    "{} did not exit within {:?}; {why}",
                    self.name, self.patience
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let rest = self.lines.try_iter().collect();
        (status, rest, self.stderr_text())
    }

    /// Everything the program wrote to stderr (once it has exited).
    fn stderr_text(&mut self) -> String {
        let handle = self.stderr.take();
        handle
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
