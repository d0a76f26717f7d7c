//! A Debian bookworm system booted with systemd as PID 1 in a privileged container
//! (`deploy/podman/systemd-host.Containerfile`; privileged, so that the unit's sandboxing can set
//! up its namespaces), without a network: tests/systemd.rs installs the daemon in it by hand,
//! tests/package.rs as the Debian package.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::{output, podman, require_base_images, root, run, wait_until, Cleanup};

const IMAGE: &str = "aggregator-systemd-host";

/// The running system, removed when dropped: commands in it, as root.
pub struct System {
    name: String,
    _cleanup: Cleanup,
}

/// `-v FROM:TO:ro`, a directory of the host in the system.
pub fn read_only(from: &Path, to: &str) -> String {
    format!("{}:{to}:ro", from.display())
}

impl System {
    /// Builds the image (podman's layer cache makes that quick after the first time), starts a
    /// container `name` from it with `volumes` (`-v` arguments), and waits until it has booted.
    pub fn boot(name: &str, volumes: &[String]) -> System {
        require_base_images(&["debian:bookworm-slim"]);
        let started = Instant::now();
        run(podman()
            .args(["build", "--network", "host", "-q", "-t", IMAGE, "-f"])
            .arg(root().join("deploy/podman/systemd-host.Containerfile"))
            .arg(root().join("deploy/podman")));
        let system = System {
            name: name.to_string(),
            _cleanup: Cleanup::container(name, Vec::new()),
        };
        let mut command = podman();
        command.args([
            "run",
            "-d",
            "--name",
            name,
            "--systemd=always",
            "--privileged",
        ]);
        command.args(["--network", "none"]);
        for volume in volumes {
            command.args(["-v", volume]);
        }
        run(command.arg(IMAGE));
        wait_until("the system to boot", || {
            let state = output(&mut system.exec("systemctl is-system-running"));
            matches!(
                String::from_utf8_lossy(&state.stdout).trim(),
                "running" | "degraded"
            )
        });
        eprintln!("built and booted in {:.1?}", started.elapsed());
        system
    }

    pub fn exec(&self, script: &str) -> Command {
        let mut command = podman();
        command.args(["exec", &self.name, "sh", "-c", script]);
        command
    }

    /// Runs `script` in the system; fails the test unless it succeeded; its stdout.
    pub fn sh(&self, script: &str) -> String {
        run(&mut self.exec(script))
    }

    /// Whether `script` succeeded.
    pub fn ok(&self, script: &str) -> bool {
        output(&mut self.exec(script)).status.success()
    }

    /// `script` in the background, its output piped (for [`finish`]).
    pub fn spawn(&self, script: &str) -> Child {
        self.exec(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A property of aggregator.service (`systemctl show -P`).
    pub fn show(&self, property: &str) -> String {
        self.sh(&format!("systemctl show -P {property} aggregator"))
            .trim()
            .to_string()
    }

    /// A counter of the daemon's /stats, read with `curl` (a curl command line with the URL);
    /// 0 while the daemon does not answer.
    pub fn stat(&self, curl: &str, name: &str) -> u64 {
        let out = output(&mut self.exec(curl));
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|stats| stats["stats"][name].as_u64())
            .unwrap_or(0)
    }

    pub fn journal(&self) -> String {
        self.sh("journalctl -u aggregator -o cat --no-pager")
    }
}

/// Waits for a command of [`System::spawn`]: whether it succeeded, and its stdout and stderr.
pub fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
