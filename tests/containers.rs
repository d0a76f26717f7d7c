//! `deploy/Dockerfile` and `deploy/docker-compose.yml`, built and run with podman (no Docker
//! engine runs on these machines; `deploy/podman/containers.conf` holds the settings podman needs
//! here), with the commands docs/operations.md gives:
//! - the container: the image builds from the Dockerfile; with the shipped container config, a
//!   read-only root file system and the archive on a named volume, it becomes healthy, runs as the
//!   unprivileged user, `uplink-sim` on the host fills it through the published ports with every
//!   frame acknowledged, `podman stop` drains it and it exits 0 within the stop timeout; the volume
//!   outlives `podman rm` and a new container resumes every source from it;
//! - compose: the default profile comes up and its simulator's frames are all acknowledged; the
//!   scale-out profile brings up NATS and two sites, both fed by their simulators, and a consumer
//!   here finds every frame in the stream exactly once, also after one site was killed
//!   (`podman kill`) under load and started again.
//!
//! The image is built once (the dist profile: minutes) and shared by both tests, which run one
//! after the other. Needs podman, runc and podman-compose (Debian packages; podman-compose 1.1 or
//! later, for profiles: PyPI's) and the base images (`deploy/podman/base-images.sh`); `.ci/run`
//! installs them.

mod nats_stream;
mod podman;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use podman::{ack_log, field, podman, root, run, wait_until, Cleanup, Scratch};

const SIM: &str = env!("CARGO_BIN_EXE_uplink-sim");
const IMAGE: &str = "telemetry-aggregator";

/// One test at a time: the image is built by the first, and the two do not compete for the CPU.
static ONE_AT_A_TIME: Mutex<bool> = Mutex::new(false);

/// `docker build -f deploy/Dockerfile -t telemetry-aggregator .`, once, with the release profile:
/// what is tested is the image and its container, and `dist`'s fat LTO would take twice the time.
fn build_image(built: &mut bool) {
    if *built {
        return;
    }
    podman::require_base_images(&["rust:1-bookworm", "debian:bookworm-slim"]);
    let started = Instant::now();
    run(podman().current_dir(root()).args([
        "build",
        "--format",
        "docker",
        "--build-arg",
        "PROFILE=release",
        "-f",
        "deploy/Dockerfile",
        "-t",
        IMAGE,
        ".",
    ]));
    eprintln!("podman build: {:.1?}", started.elapsed());
    *built = true;
}

fn podman_out(args: &[&str]) -> String {
    run(podman().args(args)).trim().to_string()
}

/// The host address a container port is published on.
fn published(container: &str, port: u16) -> String {
    let out = podman_out(&["port", container, &format!("{port}/tcp")]);
    out.lines().next().unwrap().replace("0.0.0.0", "127.0.0.1")
}

/// Waits until the image's HEALTHCHECK passes (podman runs it on request, systemd not being the
/// host's init).
fn wait_healthy(container: &str) -> Duration {
    wait_until(&format!("{container}'s HEALTHCHECK"), || {
        podman::output(podman().args(["healthcheck", "run", container]))
            .status
            .success()
    })
}

/// `uplink-sim --scenario default` from the host; fails the test unless every frame was
/// acknowledged; its output.
fn sim(uplink: &str, replay: &str, extra: &[&str]) -> String {
    let out = podman::output(
        Command::new(SIM)
            .args(["--uplink", uplink, "--replay", replay])
            .args([
                "--scenario",
                "default",
                "--require-all-acked",
                "--progress",
                "off",
            ])
            .args(extra),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "uplink-sim: {}\n{text}", out.status);
    assert_eq!(field(&text, "sim total:", "unacked"), 0, "{text}");
    text
}

#[test]
#[ignore = "needs podman (Debian packages podman, runc) and deploy/podman/base-images.sh; .ci/run runs it"]
fn the_container_runs_drains_and_resumes_from_its_volume() {
    let mut built = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_image(&mut built);
    let started = Instant::now();
    let name = format!("aggregator-test-{}", std::process::id());
    let volume = format!("{name}-archive");
    let volume_rm = ["podman", "volume", "rm", "-f", &volume].map(String::from);
    let _cleanup = Cleanup::container(&name, vec![volume_rm.to_vec()]);
    let scratch = Scratch::new("aggregator-container");

    // docs/operations.md's `docker run`, with a read-only root (no tmpfs added, as Docker's
    // --read-only), the archive on a named volume, and ports of the host's choosing.
    let start = || {
        run(podman()
            .args([
                "run",
                "-d",
                "--name",
                &name,
                "--read-only",
                "--read-only-tmpfs=false",
            ])
            .args(["-v", &format!("{volume}:/var/lib/aggregator")])
            .args([
                "-p",
                "127.0.0.1::7700",
                "-p",
                "127.0.0.1::7701",
                "-p",
                "127.0.0.1::7780",
            ])
            .arg(IMAGE));
        let healthy = wait_healthy(&name);
        eprintln!("healthy after {healthy:.1?}");
        (published(&name, 7700), published(&name, 7701))
    };
    let (uplink, replay) = start();

    // The unprivileged user, and nothing written outside the volume.
    let status = podman_out(&["exec", &name, "cat", "/proc/1/status"]);
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|id| id == "10001"),
        "{uid}"
    );
    assert!(
        !podman::output(podman().args(["exec", &name, "touch", "/etc/aggregator/x"]))
            .status
            .success()
    );

    let first = scratch.0.join("first.acks");
    sim(&uplink, &replay, &["--ack-log", first.to_str().unwrap()]);

    // docker stop -t 15: SIGTERM, the drain, exit status 0, well within the timeout.
    let t = Instant::now();
    run(podman().args(["stop", "-t", "15", &name]));
    let stop = t.elapsed();
    eprintln!("podman stop: {stop:.1?}");
    assert!(stop < Duration::from_secs(15), "stop took {stop:?}");
    assert_eq!(
        podman_out(&["inspect", "--format", "{{.State.ExitCode}}", &name]),
        "0"
    );
    // The daemon logs to stderr, which `podman logs` writes to its own.
    let logs = podman::output(podman().args(["logs", &name]));
    let logs = String::from_utf8_lossy(&logs.stderr);
    let drained = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "drain complete")
        .unwrap_or_else(|| panic!("no JSON 'drain complete' line:\n{logs}"));
    assert_eq!(drained["fields"]["unacknowledged"], 0);

    // The volume outlives the container; a new one resumes each source after what it stored.
    run(podman().args(["rm", &name]));
    run(podman().args(["volume", "exists", &volume]));
    let (uplink, replay) = start();
    let second = scratch.0.join("second.acks");
    sim(&uplink, &replay, &["--ack-log", second.to_str().unwrap()]);
    let acked = ack_log(&first, "ack");
    let welcomed = ack_log(&second, "welcome");
    assert_eq!(acked.len(), 50, "48 uplinks and 2 replay feeds");
    assert_eq!(
        welcomed, acked,
        "each source resumes after its last acknowledged frame"
    );
    run(podman().args(["stop", "-t", "15", &name]));
    assert_eq!(
        podman_out(&["inspect", "--format", "{{.State.ExitCode}}", &name]),
        "0"
    );
    eprintln!(
        "the container test took {:.1?} after the build",
        started.elapsed()
    );
}

/// podman-compose on deploy/docker-compose.yml as project `project`.
fn compose(project: &str) -> Command {
    // The open-file limit the compose file asks for, within this machine's hard limit.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let mut command = Command::new("podman-compose");
    command
        .env(
            "CONTAINERS_CONF",
            root().join("deploy/podman/containers.conf"),
        )
        .env("AGGREGATOR_NOFILE", limit.rlim_max.min(65536).to_string())
        // Should it build the image: in Docker's format, which has HEALTHCHECK (OCI's has not).
        .env("BUILDAH_FORMAT", "docker")
        .current_dir(root())
        // A service's own `ulimits` replace containers.conf's limits, and podman's defaults
        // (above this machine's) fill in the rest: the other limit, and both of the services
        // that set none.
        .args([
            "--podman-run-args=--ulimit=nofile=1024:1024",
            "--podman-run-args=--ulimit=nproc=1024:1024",
        ])
        .args(["-p", project, "-f", "deploy/docker-compose.yml"]);
    command
}

/// The container of `service` in compose project `project`.
fn container(project: &str, service: &str) -> String {
    let name = podman_out(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        &format!("label=com.docker.compose.service={service}"),
        "--format",
        "{{.Names}}",
    ]);
    assert!(!name.is_empty(), "no container of {service}");
    name
}

/// Waits for a simulator container to exit; fails the test unless it succeeded; its sent count.
fn simulator_sent(container: &str) -> u64 {
    let code = podman_out(&["wait", container]);
    let all = run(podman().args(["logs", container]));
    assert_eq!(code, "0", "{container}:\n{all}");
    // The summary of its last run (`podman logs` keeps every run's).
    let logs = &all[all.rfind("sim total:").expect("a summary")..];
    assert_eq!(
        field(logs, "sim total:", "acked"),
        field(logs, "sim total:", "sent"),
        "{logs}"
    );
    field(logs, "sim total:", "sent")
}

/// A counter of a daemon's /stats, through its published monitor port (0 while it does not answer).
fn stat(port: u16, name: &str) -> u64 {
    let out = Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/stats")])
        .output();
    out.ok()
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .and_then(|stats| stats["stats"][name].as_u64())
        .unwrap_or(0)
}

/// Each site's `(kind, source, seq)` in the compose project's stream with how many times it is
/// there, once the stream holds `expected` messages (`None`: as many as it holds now).
fn stream_contents(expected: Option<u64>) -> nats_stream::Contents {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(nats_stream::stream_contents(
        "nats://127.0.0.1:4222",
        expected,
    ))
}

#[test]
#[ignore = "needs podman and podman-compose (Debian packages podman, runc; PyPI's podman-compose) and deploy/podman/base-images.sh; .ci/run runs it"]
fn compose_default_and_scale_out_profiles_deliver_every_frame_once() {
    let mut built = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    build_image(&mut built);
    podman::require_base_images(&["nats:2.9"]);
    let started = Instant::now();
    let project = format!("aggtest{}", std::process::id());
    // Everything of the project, by its label, whatever state the test left it in.
    let label = format!("label=com.docker.compose.project={project}");
    let _cleanup = Cleanup(vec![vec![
        "sh".into(),
        "-c".into(),
        format!(
            "podman ps -aq --filter {label} | xargs -r podman rm -f -v -t 0; \
             podman volume ls -q --filter {label} | xargs -r podman volume rm -f; \
             podman network rm -f {project}_default"
        ),
    ]]);

    // The default profile: the daemon, healthy, then its simulator (podman before 4.6 cannot wait
    // for `service_healthy` itself, so the two are brought up one after the other).
    run(compose(&project).args(["up", "-d", "aggregator"]));
    wait_healthy(&container(&project, "aggregator"));
    run(compose(&project).args(["up", "-d", "--no-deps", "uplink-sim"]));
    let sent = simulator_sent(&container(&project, "uplink-sim"));
    assert!(sent > 0);
    let daemon = container(&project, "aggregator");
    run(compose(&project).args(["stop", "aggregator"]));
    assert_eq!(
        podman_out(&["inspect", "--format", "{{.State.ExitCode}}", &daemon]),
        "0"
    );
    eprintln!("default profile: {sent} frames, {:.1?}", started.elapsed());

    // The scale-out profile: NATS and two sites, each fed by its simulator.
    let scale_out = |args: &[&str]| {
        run(compose(&project)
            .args(["--profile", "scale-out"])
            .args(args));
    };
    scale_out(&["up", "-d", "nats", "aggregator-north", "aggregator-south"]);
    let north = container(&project, "aggregator-north");
    wait_healthy(&north);
    wait_healthy(&container(&project, "aggregator-south"));
    scale_out(&[
        "up",
        "-d",
        "--no-deps",
        "uplink-sim-north",
        "uplink-sim-south",
    ]);
    let mut expected = BTreeMap::new();
    for site in ["north", "south"] {
        let sent = simulator_sent(&container(&project, &format!("uplink-sim-{site}")));
        expected.insert(site.to_string(), sent);
    }
    let contents = stream_contents(Some(expected.values().sum()));
    for (site, frames) in &expected {
        let got = &contents[site];
        assert_eq!(got.len() as u64, *frames, "{site}'s frames in the stream");
        assert!(
            got.values().all(|n| *n == 1),
            "{site}: a frame is there twice"
        );
    }

    // North killed (SIGKILL) while it publishes, and started again. podman gives the restarted
    // container a new address, which the simulator that ran across the kill may not reach again
    // before it gives up: it is stopped and run once more, numbering after what north stored.
    // Then every frame of both sites is in the stream once: north's, each source's sequence
    // numbers without a gap or a repeat, at least its two complete runs.
    let sim_north = container(&project, "uplink-sim-north");
    run(podman().args(["start", &sim_north]));
    let published = stat(7781, "nats_published");
    wait_until("north to publish more", || {
        stat(7781, "nats_published") > published
    });
    run(podman().args(["kill", &north]));
    run(podman().args(["start", &north]));
    wait_healthy(&north);
    let _ = podman::output(podman().args(["kill", &sim_north]));
    let _ = podman::output(podman().args(["wait", &sim_north]));
    run(podman().args(["start", &sim_north]));
    let last_run = simulator_sent(&sim_north);
    wait_until("north's sink to catch up", || {
        stat(7781, "nats_connected") == 1
            && stat(7781, "frames_archived") >= last_run
            && stat(7781, "nats_lag_frames") == 0
    });
    let contents = stream_contents(None);
    let south = &contents["south"];
    assert_eq!(south.len() as u64, expected["south"], "south's frames");
    let north_frames = &contents["north"];
    assert!(
        north_frames.len() as u64 >= expected["north"] + last_run,
        "north's frames: {} of at least {}",
        north_frames.len(),
        expected["north"] + last_run
    );
    for (site, frames) in &contents {
        assert!(
            frames.values().all(|n| *n == 1),
            "{site}: a frame is there twice after the kill"
        );
        let mut sources: BTreeMap<(&str, u32), Vec<u64>> = BTreeMap::new();
        for (kind, source, seq) in frames.keys() {
            sources.entry((kind, *source)).or_default().push(*seq);
        }
        for (source, seqs) in sources {
            let span = seqs.last().unwrap() - seqs.first().unwrap() + 1;
            assert_eq!(span, seqs.len() as u64, "{site} {source:?}: a gap");
        }
    }
    eprintln!(
        "the compose test took {:.1?} after the build",
        started.elapsed()
    );
}
