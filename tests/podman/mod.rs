//! What tests/containers.rs, tests/systemd.rs and tests/package.rs share: podman with this
//! repository's settings (`deploy/podman/containers.conf`), commands that must succeed, containers
//! removed at the end of a test whatever happens, waiting with a deadline, the system booted with
//! systemd ([`system`]), and reading what `uplink-sim` reports.
#![allow(dead_code)]

pub mod system;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

/// The longest any one wait may take: generous, the machine is shared.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The repository's root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// podman with `deploy/podman/containers.conf` (runc, cgroupfs, limits at the machine's).
pub fn podman() -> Command {
    let mut command = Command::new("podman");
    command.env(
        "CONTAINERS_CONF",
        root().join("deploy/podman/containers.conf"),
    );
    command
}

/// The output of `command`; fails the test, naming the Debian package, if `program` is missing.
pub fn output(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|err| {
        panic!(
            "{:?}: {err} (Debian package {}; .ci/run installs it)",
            command.get_program(),
            match command.get_program().to_str() {
                Some("podman-compose") => "podman-compose, or PyPI's",
                Some(program) => program,
                None => "?",
            }
        )
    })
}

/// Runs `command`; fails the test with its output unless it succeeded; returns its stdout.
pub fn run(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "{command:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `done` every 100 ms until it holds; fails the test with `what` after [`PATIENCE`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
    started.elapsed()
}

/// Fails the test unless the base images made by `deploy/podman/base-images.sh` are there.
pub fn require_base_images(images: &[&str]) {
    for image in images {
        let out = output(podman().args(["image", "exists", image]));
        assert!(
            out.status.success(),
            "no image {image}: run deploy/podman/base-images.sh (.ci/run does), or pull it"
        );
    }
}

/// A container (or a compose project) removed, with its volumes, when the test ends.
pub struct Cleanup(pub Vec<Vec<String>>);

impl Cleanup {
    /// `podman rm -f -t 0 NAME` at the end, then each of `more`.
    pub fn container(name: &str, more: Vec<Vec<String>>) -> Cleanup {
        let rm = ["podman", "rm", "-f", "-t", "0", name];
        let mut argvs = vec![rm.iter().map(|a| a.to_string()).collect()];
        argvs.extend(more);
        Cleanup(argvs)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for argv in &self.0 {
            let _ = Command::new(&argv[0])
                .args(&argv[1..])
                .env(
                    "CONTAINERS_CONF",
                    root().join("deploy/podman/containers.conf"),
                )
                .output();
        }
    }
}

/// A scratch directory of the test's own, removed at the end.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The number in `key=N` on the line of `text` that starts with `line_prefix` (uplink-sim's
/// summary line).
pub fn field(text: &str, line_prefix: &str, key: &str) -> u64 {
    field_text(text, line_prefix, key).parse().unwrap()
}

/// The value of `key=value` on the line of `text` that starts with `line_prefix`, the line's
/// fields separated by whitespace.
pub fn field_text<'a>(text: &'a str, line_prefix: &str, key: &str) -> &'a str {
    let line = text
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .unwrap_or_else(|| panic!("no {line_prefix:?} line in:\n{text}"));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

/// Each `(kind, id)`'s last acknowledgement (`ack`) or first WELCOME value (`welcome`) in an
/// `uplink-sim --ack-log` file.
pub fn ack_log(path: &Path, what: &str) -> BTreeMap<(String, u32), String> {
    let mut values = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        if parts[0] == what {
            let key = (parts[1].to_string(), parts[2].parse().unwrap());
            if what == "ack" || !values.contains_key(&key) {
                values.insert(key, parts[3].to_string());
            }
        }
    }
    values
}
