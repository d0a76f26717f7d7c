//! The Debian package (`cargo deb`: `[package.metadata.deb]` in Cargo.toml, deploy/debian/) in the
//! system tests/systemd.rs boots (Debian bookworm, systemd as PID 1: tests/podman/system.rs):
//! - lintian finds no error in it;
//! - `apt-get install ./PACKAGE.deb` makes the system user `aggregator`, and enables and starts
//!   aggregator.service as that user on the conffile /etc/aggregator/aggregator.toml, with the
//!   archive in /var/lib/aggregator;
//! - a newer package (the same build, the next Debian revision), installed over it while
//!   `uplink-sim`'s 48 uplinks and 2 replay feeds send, restarts the service: every source
//!   resumes, every frame acknowledged (`--ack-log`) is in the archive exactly once (`aggregator
//!   archive export` and `verify --strict`, run as the user), the conffile the test changed before
//!   is kept and in force, and the longest time without an acknowledgement (`ack_gap_ms_max`) is
//!   printed;
//! - `apt-get remove` keeps /var/lib/aggregator and the conffile; `apt-get purge` deletes both.
//!
//! The package holds the binaries this test was built with (`cargo deb --no-build` with their
//! profile): the debug build, so that making it takes seconds, where `cargo deb` packs dist's;
//! `cargo test --profile dist --test package -- --include-ignored` packs dist's too. Needs
//! cargo-deb (crates.io), lintian, podman and runc (Debian packages) and the base image
//! debian:bookworm-slim (`deploy/podman/base-images.sh`); `.ci/run` installs them.

mod podman;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use podman::system::{finish, System};
use podman::{ack_log, field, field_text, output, root, run, wait_until, Scratch};

const PACKAGE: &str = "telemetry-aggregator";
/// The daemon's /stats, on the monitor's port of the shipped conffile.
const STATS: &str = "curl -fsS http://127.0.0.1:7780/stats";
/// The test's change to the conffile before the upgrade: the monitor moves to port 7781.
const MONITOR_SHIPPED: &str = "listen = \"127.0.0.1:7780\"";
const MONITOR_CHANGED: &str = "listen = \"127.0.0.1:7781\"";
/// Seconds the sources send for: the upgrade must be over well before.
const SENDING_S: u64 = 20;

/// `cargo deb --no-build` of the binaries this test was built with, as Debian revision `revision`,
/// into `dir`; the package file's name.
fn build_package(dir: &Path, revision: u32) -> String {
    let cargo = || {
        let mut command = Command::new(env!("CARGO"));
        command.current_dir(root()).arg("deb");
        command
    };
    assert!(
        output(cargo().arg("--version")).status.success(),
        "no cargo-deb (crates.io; .ci/run installs it)"
    );
    // cargo deb takes the profile and finds its binaries in its directory (dev's: target/debug).
    let bin = Path::new(env!("CARGO_BIN_EXE_aggregator"))
        .parent()
        .unwrap();
    let profile = match bin.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let t = Instant::now();
    let out = run(cargo()
        .args(["--no-build", "--fast", "--profile", profile])
        .args(["--deb-revision", &revision.to_string(), "-o"])
        .arg(format!("{}/", dir.display())));
    let path = PathBuf::from(out.trim().lines().last().unwrap());
    assert!(path.is_file(), "cargo deb printed {out:?}");
    eprintln!("cargo deb --profile {profile}: {:.1?}", t.elapsed());
    path.file_name().unwrap().to_str().unwrap().to_string()
}

/// Fails the test if lintian finds an error in `package`; prints what it found.
fn lint(package: &Path) {
    let t = Instant::now();
    let out = output(Command::new("lintian").arg(package));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("lintian ({:.1?}):\n{text}", t.elapsed());
    assert!(
        out.status.success() && !text.lines().any(|l| l.starts_with("E:")),
        "lintian: {}",
        out.status
    );
}

/// `apt-get -y ARGS` in the system; it has no network, so a package's dependencies must be there.
fn apt_get(system: &System, args: &str) {
    let t = Instant::now();
    system.sh(&format!("DEBIAN_FRONTEND=noninteractive apt-get -y {args}"));
    eprintln!("apt-get {args}: {:.1?}", t.elapsed());
}

/// The installed package's version (`dpkg-query`).
fn installed_version(system: &System) -> String {
    system.sh(&format!("dpkg-query -W -f '${{Version}}' {PACKAGE}"))
}

/// The service, enabled and started by the package, runs as the system user it made, on the
/// conffile, its archive owned by that user.
fn check_service(system: &System) {
    assert_eq!(
        system.sh("systemctl is-enabled aggregator").trim(),
        "enabled"
    );
    assert_eq!(system.show("ActiveState"), "active");
    let user = system.sh("getent passwd aggregator");
    let fields: Vec<&str> = user.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{user}");
    let pid = system.show("MainPID");
    for path in [format!("/proc/{pid}"), "/var/lib/aggregator/archive".into()] {
        let owner = system.sh(&format!("stat -c %U {path}"));
        assert_eq!(owner.trim(), "aggregator", "the owner of {path}");
    }
    let conffiles = system.sh(&format!("dpkg-query -W -f '${{Conffiles}}' {PACKAGE}"));
    assert!(
        conffiles.contains("/etc/aggregator/aggregator.toml"),
        "{conffiles}"
    );
    let command = system.sh(&format!("tr '\\0' ' ' < /proc/{pid}/cmdline"));
    assert!(
        command.contains("--config /etc/aggregator/aggregator.toml"),
        "{command}"
    );
    assert!(system.ok("curl -fsS http://127.0.0.1:7780/healthz"));
}

/// Installs `package` over the installed one while `uplink-sim` sends, its acknowledgements
/// logged to /pkg/acks; uplink-sim's report.
fn upgrade_under_load(system: &System, package: &str) -> String {
    let before = system.show("MainPID");
    let sending = Instant::now();
    let load = system.spawn(&format!(
        "uplink-sim --scenario default --duration {SENDING_S} --ack-log /pkg/acks \
         --require-all-acked --progress off"
    ));
    wait_until("50 sources connected", || {
        system.stat(STATS, "active_sources") >= 50
    });
    apt_get(system, &format!("install /pkg/{package}"));
    assert!(
        sending.elapsed() < Duration::from_secs(SENDING_S),
        "the upgrade ended after the sources stopped sending"
    );
    assert_ne!(system.show("MainPID"), before, "the upgrade restarted it");
    let (ok, report) = finish(load);
    assert!(ok, "the sources across the upgrade:\n{report}");
    assert!(
        field(&report, "sim total:", "connections") > field(&report, "sim total:", "sources"),
        "the sources reconnected:\n{report}"
    );
    report
}

/// Every frame `acked` covers (each source's sequences 0 to its last acknowledgement) is in
/// `rows` (`kind,source,sequence` of `aggregator archive export --format csv`) exactly once.
fn check_stored_once(rows: &str, acked: &BTreeMap<(String, u32), String>) {
    let mut lines = rows.lines();
    assert_eq!(lines.next(), Some("kind,source,sequence"));
    let mut stored: BTreeMap<(&str, u32, u64), u32> = BTreeMap::new();
    for line in lines {
        let mut row = line.split(',');
        let mut next = || row.next().unwrap();
        let key = (next(), next().parse().unwrap(), next().parse().unwrap());
        *stored.entry(key).or_default() += 1;
    }
    assert_eq!(acked.len(), 50, "48 uplinks and 2 replay feeds");
    let mut wrong = Vec::new();
    for ((kind, id), last) in acked {
        for sequence in 0..=last.parse::<u64>().unwrap() {
            match stored.get(&(kind.as_str(), *id, sequence)) {
                Some(1) => {}
                times => wrong.push(format!("{kind} {id} {sequence}: {times:?}")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} acknowledged frames not stored once (stored times), first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
}

/// The stopped daemon's archive, read as its user by its own tools: whole, and every
/// acknowledged frame in it once.
fn check_archive(system: &System, acks: &Path) {
    system.sh("systemctl stop aggregator");
    let tool = "runuser -u aggregator -- aggregator archive";
    let verify = system.sh(&format!(
        "{tool} verify --strict /var/lib/aggregator/archive"
    ));
    eprintln!("{}", verify.lines().last().unwrap_or_default());
    let rows = system.sh(&format!(
        "{tool} export /var/lib/aggregator/archive --format csv -o /tmp/frames.csv \
         && cut -d, -f2-4 /tmp/frames.csv"
    ));
    check_stored_once(&rows, &ack_log(acks, "ack"));
}

/// `apt-get remove` keeps the archive and the conffile; `apt-get purge` deletes them.
fn remove_and_purge(system: &System) {
    let archive = "find /var/lib/aggregator | sort";
    let kept = system.sh(archive);
    assert!(kept.contains("/var/lib/aggregator/archive/"), "{kept}");
    apt_get(system, &format!("remove {PACKAGE}"));
    assert!(!system.ok("test -e /usr/bin/aggregator"));
    assert_eq!(system.sh(archive), kept, "remove kept /var/lib/aggregator");
    assert!(system.ok("test -f /etc/aggregator/aggregator.toml"));
    apt_get(system, &format!("purge {PACKAGE}"));
    assert!(
        !system.ok("test -e /var/lib/aggregator"),
        "purge deleted it"
    );
    assert!(!system.ok("test -e /etc/aggregator/aggregator.toml"));
    assert!(!system.ok(&format!("dpkg -s {PACKAGE}")));
}

#[test]
#[ignore = "needs cargo-deb (crates.io), lintian, podman and runc (Debian packages) and deploy/podman/base-images.sh; .ci/run installs them"]
fn the_package_installs_upgrades_under_load_and_purges() {
    let started = Instant::now();
    let scratch = Scratch::new("aggregator-package");
    let first = build_package(&scratch.0, 1);
    let second = build_package(&scratch.0, 2);
    lint(&scratch.0.join(&first));
    let system = System::boot(
        &format!("aggregator-package-{}", std::process::id()),
        &[format!("{}:/pkg", scratch.0.display())],
    );

    apt_get(&system, &format!("install /pkg/{first}"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(installed_version(&system), format!("{version}-1"));
    check_service(&system);

    // The operator's change to the conffile, which the upgrade must keep.
    system.sh(&format!(
        "sed -i 's/^{MONITOR_SHIPPED}$/{MONITOR_CHANGED}/' /etc/aggregator/aggregator.toml"
    ));
    let report = upgrade_under_load(&system, &second);
    assert_eq!(installed_version(&system), format!("{version}-2"));
    let gap: f64 = field_text(&report, "sim total:", "ack_gap_ms_max")
        .parse()
        .unwrap();
    let total = report
        .lines()
        .find(|l| l.starts_with("sim total:"))
        .unwrap();
    eprintln!("{total}");
    eprintln!("the longest time without an acknowledgement across the upgrade: {gap:.1} ms");
    let conffile = system.sh("cat /etc/aggregator/aggregator.toml");
    assert!(conffile.contains(MONITOR_CHANGED), "the change was kept");
    assert!(
        !system.ok("ls /etc/aggregator/*.dpkg-*"),
        "no new conffile beside it"
    );
    assert!(
        system.ok("curl -fsS http://127.0.0.1:7781/healthz"),
        "the change is in force"
    );

    check_archive(&system, &scratch.0.join("acks"));
    remove_and_purge(&system);
    eprintln!("the package test took {:.1?}", started.elapsed());
}
