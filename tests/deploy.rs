//! The deployment files: the systemd unit passes `systemd-analyze verify`, and the unit, the
//! Dockerfile and the compose file agree with the configs they ship (ports, drain deadline), so an
//! operator's stop never kills a drain that is still within its deadline; the Debian package's
//! config and drop-in are the repository's config and unit with the package's paths.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aggregator::Config;

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|err| panic!("{path}: {err}"))
}

fn config(path: &str) -> Config {
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|err| panic!("{err}"))
}

/// The value of `key=` in a unit file.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

#[test]
#[ignore = "needs systemd-analyze (Debian package systemd); .ci/run runs it"]
fn systemd_unit_passes_systemd_analyze_verify() {
    // verify checks that ExecStart exists: point it at the binary this build produced.
    let unit = read("deploy/aggregator.service").replace(
        "/usr/local/bin/aggregator",
        env!("CARGO_BIN_EXE_aggregator"),
    );
    let dir = std::env::temp_dir().join(format!("aggregator-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("aggregator.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|err| {
            panic!("systemd-analyze (Debian package systemd; .ci/run installs it): {err}")
        });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_unit_is_a_notify_service_that_outwaits_the_drain() {
    let unit = read("deploy/aggregator.service");
    assert_eq!(unit_value(&unit, "Type"), "notify");
    assert_eq!(unit_value(&unit, "KillSignal"), "SIGTERM");
    assert!(unit_value(&unit, "ExecStart").contains("--config /etc/aggregator/aggregator.toml"));
    let stop: u64 = unit_value(&unit, "TimeoutStopSec").parse().unwrap();
    let drain = config("config/aggregator.toml").shutdown.drain_deadline;
    assert!(
        Duration::from_secs(stop) > drain,
        "TimeoutStopSec={stop}s must exceed the drain deadline {drain:?}"
    );
    for hardening in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
    ] {
        assert!(unit.lines().any(|l| l == hardening), "missing {hardening}");
    }
}

#[test]
fn container_config_is_valid_and_matches_the_image() {
    let config = config("deploy/docker/aggregator.toml");
    let dockerfile = read("deploy/Dockerfile");
    let exposed: Vec<u16> = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|ports| ports.split_whitespace().map(|p| p.parse().unwrap()))
        .collect();
    for (what, addr) in [
        ("uplink", config.uplink.listen),
        ("replay", config.replay.listen),
        ("monitor", config.monitor.listen),
    ] {
        assert!(
            addr.ip().is_unspecified(),
            "{what} must listen on all interfaces in a container"
        );
        assert!(
            exposed.contains(&addr.port()),
            "EXPOSE lacks the {what} port"
        );
    }
    assert!(dockerfile.contains("STOPSIGNAL SIGTERM"));
    let health = format!("http://127.0.0.1:{}/healthz", config.monitor.listen.port());
    assert!(
        dockerfile.contains(&health),
        "HEALTHCHECK must probe {health}"
    );

    let compose = read("deploy/docker-compose.yml");
    let grace: u64 = compose
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("stop_grace_period: ")?
                .strip_suffix('s')
        })
        .and_then(|s| s.parse().ok())
        .expect("stop_grace_period in seconds");
    assert!(Duration::from_secs(grace) > config.shutdown.drain_deadline);
}

#[test]
fn the_debian_package_ships_the_config_and_the_unit_with_its_paths() {
    // The conffile: config/aggregator.toml with the archive in the unit's state directory.
    let unit = read("deploy/aggregator.service");
    let archive = format!("/var/lib/{}/archive", unit_value(&unit, "StateDirectory"));
    assert_eq!(
        read("deploy/debian/aggregator.toml"),
        read("config/aggregator.toml")
            .replace("\ndir = \"archive\"\n", &format!("\ndir = \"{archive}\"\n")),
        "deploy/debian/aggregator.toml must be config/aggregator.toml with dir = \"{archive}\""
    );
    let config = config("deploy/debian/aggregator.toml");
    assert_eq!(config.archive.dir, Path::new(&archive));
    // The drop-in: the unit's commands, reset, then again with the package's binary.
    let drop_in = read("deploy/debian/aggregator.service.d/00-package.conf");
    for key in ["ExecStartPre", "ExecStart"] {
        let commands: Vec<&str> = drop_in
            .lines()
            .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .collect();
        let packaged = unit_value(&unit, key).replace("/usr/local/bin/", "/usr/bin/");
        assert_eq!(commands, ["", packaged.as_str()], "{key}");
    }
}

#[test]
fn the_daemon_tells_systemd_ready_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    use std::process::Stdio;

    let dir = std::env::temp_dir().join(format!("aggregator-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config_path = dir.join("aggregator.toml");
    let config = format!(
        "[uplink]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4\n\
         [replay]\nlisten = \"127.0.0.1:0\"\nmax_connections = 4\n\
         [monitor]\nenabled = false\n\
         [archive]\ndir = \"{}\"\n",
        dir.join("archive").display()
    );
    std::fs::write(&config_path, config).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .arg("--config")
        .arg(&config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut message = [0u8; 256];
    let recv = |buf: &mut [u8]| -> String {
        let n = socket.recv(buf).expect("a notification within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let ready = recv(&mut message);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");

    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    let stopping = recv(&mut message);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    let status = daemon.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{status}");
}

#[test]
fn the_scale_out_profile_runs_two_sites_into_one_stream() {
    let compose = read("deploy/docker-compose.yml");
    let mut sites = Vec::new();
    for site in ["north", "south"] {
        let path = format!("deploy/docker/scale-out-{site}.toml");
        assert!(
            compose.contains(&path[7..]),
            "the compose file mounts {path}"
        );
        let nats = config(&path).sinks.nats.expect("[sinks.nats]");
        assert_eq!(nats.url, ["nats://nats:4222"]);
        sites.push((nats.site, nats.stream));
    }
    assert_ne!(sites[0].0, sites[1].0, "each daemon has a site of its own");
    assert_eq!(sites[0].1, sites[1].1, "both publish into one stream");
    assert!(compose.contains("profiles: [scale-out]") && compose.contains("\"-js\""));
}

#[test]
fn the_failover_profile_runs_two_replicating_daemons_that_sources_know_both_of() {
    let compose = read("deploy/docker-compose.yml");
    let mut sites = Vec::new();
    for daemon in ["a", "b"] {
        let path = format!("deploy/docker/failover-{daemon}.toml");
        assert!(
            compose.contains(&path[7..]),
            "the compose file mounts {path}"
        );
        let nats = config(&path).sinks.nats.expect("[sinks.nats]");
        assert_eq!(nats.url.len(), 3, "{path}: every node of the cluster");
        assert_eq!(
            format!("{:?} {:?} {}", nats.ack, nats.identity, nats.replicas),
            "Replicated Fleet 3",
            "{path}"
        );
        sites.push((nats.site, nats.stream, nats.subject));
    }
    assert_ne!(sites[0].0, sites[1].0, "each daemon has a site of its own");
    assert_eq!(
        (&sites[0].1, &sites[0].2),
        (&sites[1].1, &sites[1].2),
        "one stream, one subject per source"
    );
    assert!(compose.contains("\"aggregator-a:7700,aggregator-b:7700\""));
    assert!(compose.contains("\"aggregator-a:7701,aggregator-b:7701\""));
    for node in ["nats-1", "nats-2", "nats-3"] {
        assert!(compose.contains(&format!("\"-n\", \"{node}\"")), "{node}");
    }
}

/// `deploy/rolling-restart.sh` on this build: a fleet of two daemons under load from `uplink-sim`,
/// each restarted in turn while its sources send. Every frame sent is acknowledged and archived
/// once (the script checks with `archive verify --strict`); it says OK only then.
#[test]
fn a_rolling_restart_of_a_fleet_loses_and_duplicates_nothing() {
    let bin = Path::new(env!("CARGO_BIN_EXE_aggregator"))
        .parent()
        .unwrap();
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rolling-restart.sh"))
        .arg(bin)
        .env("DAEMONS", "2")
        .env("LOAD_SECS", "6")
        .output()
        .expect("run deploy/rolling-restart.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    let verdict = stdout.lines().last().unwrap_or_default();
    assert!(
        verdict.starts_with("rolling-restart: OK daemons=2 "),
        "{verdict}"
    );
    assert_eq!(
        verdict.matches(" lost=0 duplicated=0 ").count(),
        2,
        "{verdict}"
    );
}
