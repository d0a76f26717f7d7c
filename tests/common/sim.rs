//! `uplink-sim` as a child process against daemons under test: started with the caller's
//! options, its summary read when it ends.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a simulator may run, from its start: its frames' duration and a daemon restart it
/// waits through fit in it many times over.
const SIM_PATIENCE: Duration = Duration::from_secs(180);

/// A running `uplink-sim`, killed if the test fails before it exits.
pub struct Sim {
    child: Child,
    started: Instant,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// The `sim total:` line of a simulator's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimTotal {
    pub sent: u64,
    pub acked: u64,
}

impl Sim {
    /// Starts `uplink-sim --uplink UPLINK --replay REPLAY` with `args` (several daemons' addresses,
    /// comma-separated, for a simulator that fails over between them).
    pub fn start(uplink: &str, replay: &str, args: &[&str]) -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_uplink-sim"))
            .args(["--uplink", uplink, "--replay", replay])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start uplink-sim");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        Sim {
            child,
            started: Instant::now(),
            stdout: Some(read_all(stdout)),
            stderr: Some(read_all(stderr)),
        }
    }

    /// The default scenario's 4 uplinks and 1 replay feed at `rate` frames/s each for `seconds`,
    /// without progress lines, with `args` added.
    pub fn four_and_one(uplink: &str, replay: &str, rate: u32, seconds: u32, args: &[&str]) -> Sim {
        let (rate, seconds) = (rate.to_string(), seconds.to_string());
        let mut all = vec!["--scenario", "default", "--uplinks", "4", "--replays", "1"];
        all.extend(["--rate", &rate, "--duration", &seconds, "--progress", "off"]);
        all.extend(args);
        Sim::start(uplink, replay, &all)
    }

    /// Waits for the simulator, which must succeed with every frame it sent acknowledged; returns
    /// how many it sent.
    pub fn wait(self) -> u64 {
        let total = self.finish();
        assert_eq!(total.acked, total.sent, "{total:?}");
        total.sent
    }

    /// Waits for the simulator, which must succeed, and returns its totals.
    pub fn finish(self) -> SimTotal {
        let (status, out, err) = self.exit();
        assert!(
            status.success(),
            "uplink-sim failed: {status}\n{out}\n{err}"
        );
        let total = out
            .lines()
            .find(|l| l.starts_with("sim total:"))
            .unwrap_or_else(|| panic!("no summary:\n{out}"));
        let number = |key: &str| -> u64 {
            total
                .split_whitespace()
                .find_map(|t| t.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= in {total}"))
        };
        SimTotal {
            sent: number("sent"),
            acked: number("acked"),
        }
    }

    /// Waits for the simulator to exit, whatever its status, and returns it with what it wrote
    /// to stdout and stderr.
    pub fn exit(mut self) -> (ExitStatus, String, String) {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for uplink-sim") {
                break status;
            }
            if self.started.elapsed() > SIM_PATIENCE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let (out, err) = self.output();
                panic!("uplink-sim ran longer than {SIM_PATIENCE:?}:\n{out}\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (out, err) = self.output();
        (status, out, err)
    }

    /// Everything the simulator wrote to stdout and stderr (once it has exited).
    fn output(&mut self) -> (String, String) {
        let join = |handle: Option<JoinHandle<String>>| {
            handle.map_or_else(String::new, |h| h.join().unwrap_or_default())
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A thread that reads `pipe` to its end, so that the simulator never blocks on a full pipe.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}
