//! `aggregator.toml`: the shipped example parses to the documented defaults, each kind of mistake
//! is reported with the file, the key and the problem, and the binary's `--check-config` and
//! `--version` behave.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aggregator::config::{ConfigError, KissPayload};
use aggregator::Config;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aggregator.toml")
}

/// A config file with `contents` in a directory of its own under the system temp dir; removed
/// on drop.
struct TempConfig {
    dir: PathBuf,
    path: PathBuf,
}

impl TempConfig {
    fn new(contents: &str) -> TempConfig {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aggregator-config-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("aggregator.toml");
        std::fs::write(&path, contents).unwrap();
        TempConfig { dir, path }
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Loads `contents` from a file; the error must name the file and contain every one of `needles`.
fn expect_error(contents: &str, needles: &[&str]) -> String {
    let file = TempConfig::new(contents);
    let err = Config::load(&file.path).expect_err("the config must be rejected");
    let message = err.to_string();
    assert!(
        message.contains(&file.path.display().to_string()),
        "the message names the file: {message}"
    );
    for needle in needles {
        assert!(
            message.contains(needle),
            "the message mentions {needle:?}: {message}"
        );
    }
    message
}

#[test]
fn the_example_config_parses_to_the_documented_defaults() {
    let loaded = Config::load(&example_path()).expect("the example config is valid");
    // `Config` has no `PartialEq`; its `Debug` form shows every field.
    assert_eq!(format!("{loaded:#?}"), format!("{:#?}", Config::default()));
    assert_eq!(
        loaded.pipeline.processor_capacity, 64,
        "the brief's capacity"
    );
    assert_eq!(
        loaded.shutdown.drain_deadline.as_secs(),
        5,
        "the brief's deadline"
    );
    assert!(Config::default().validate().is_ok());
}

#[test]
fn an_empty_config_means_the_defaults() {
    let file = TempConfig::new("");
    let loaded = Config::load(&file.path).expect("every section has a default");
    assert_eq!(format!("{loaded:?}"), format!("{:?}", Config::default()));
}

/// Loads `contents` from a file; it must be valid.
fn load(contents: &str) -> Config {
    let file = TempConfig::new(contents);
    Config::load(&file.path).unwrap_or_else(|err| panic!("{contents:?} is valid: {err}"))
}

#[test]
fn a_listener_section_may_leave_out_any_key() {
    let uplink = load("[uplink]\nlisten = \"127.0.0.1:9000\"\n").uplink;
    assert_eq!(uplink.listen.port(), 9000);
    assert_eq!(uplink.max_connections, 1024, "the uplink's own default");
    let replay = load("[replay]\nmax_connections = 8\n").replay;
    assert_eq!(replay.listen, "127.0.0.1:7701".parse().unwrap());
    assert_eq!(replay.max_connections, 8);
    let replay = load("[replay]\nlisten = \"127.0.0.1:9001\"\n").replay;
    assert_eq!(
        replay.max_connections, 64,
        "the replay's own default, not the uplink's"
    );
    let both = load("[uplink]\n[replay]\n");
    let defaults = Config::default();
    assert_eq!(
        format!("{:?}", (&both.uplink, &both.replay)),
        format!("{:?}", (&defaults.uplink, &defaults.replay))
    );
    expect_error(
        "[replay]\nmax_conections = 9\n",
        &[":2: replay.max_conections", "unknown field"],
    );
}

#[test]
fn every_key_of_the_example_may_be_given_alone() {
    // The example shows every key with its default: each one alone in its section must load, and
    // leave every other key at its default.
    let example = std::fs::read_to_string(example_path()).unwrap();
    let mut section = "";
    let mut keys = 0;
    for line in example.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if !line.starts_with('#') && line.contains('=') {
            let loaded = load(&format!("{section}\n{line}\n"));
            assert_eq!(
                format!("{loaded:?}"),
                format!("{:?}", Config::default()),
                "{section} {line}"
            );
            keys += 1;
        }
    }
    assert!(keys >= 30, "only {keys} keys found in the example");
}

#[test]
fn an_unknown_key_is_rejected() {
    expect_error(
        "[uplink]\nlisten = \"127.0.0.1:7700\"\nmax_conections = 9\n",
        &[":3: uplink.max_conections", "unknown field"],
    );
    expect_error(
        "[pipelin]\nprocessor_capacity = 8\n",
        &["pipelin", "unknown field"],
    );
    expect_error(
        "[pipeline]\nprocesor_capacity = 8\n",
        &["pipeline.procesor_capacity", "unknown field"],
    );
}

/// The example config/aggregator.toml of earlier builds (`tests/fixtures/config/`, each named by
/// its commit: the archive's first, and the last of archive formats 3 and 4) still loads: a key
/// since removed (`pipeline.dashboard_capacity`, in 03ea247's) is ignored and named with a
/// warning, as docs/compatibility.md promises for a major release.
#[test]
fn every_earlier_builds_example_config_still_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config");
    for commit in ["03ea247", "489c6c0", "b608eb4"] {
        let path = dir.join(format!("aggregator-{commit}.toml"));
        let config = Config::load(&path).unwrap_or_else(|err| panic!("{commit}: {err}"));
        let warned: Vec<_> = (config.ineffective_settings().iter())
            .filter(|w| w.contains("is no longer read"))
            .collect();
        let removed = std::fs::read_to_string(&path)
            .unwrap()
            .contains("dashboard_capacity");
        assert_eq!(warned.len(), usize::from(removed), "{commit}: {warned:?}");
    }
    let config = load("[pipeline]\ndashboard_capacity = 64\n");
    assert_eq!(
        config.ineffective_settings(),
        [
            "pipeline.dashboard_capacity is no longer read (the stats log no longer follows every \
          frame) and is ignored; remove it: the next major release refuses it"
        ]
    );
}

/// A `[consumer]` section that sets `listen` (or any key) without `enabled = true` listens nowhere:
/// the start says so instead of staying silent.
#[test]
fn consumer_keys_without_enabled_are_named_as_ineffective() {
    let file = TempConfig::new("[consumer]\nlisten = \"127.0.0.1:7702\"\nmax_connections = 8\n");
    let config = Config::load(&file.path).expect("valid");
    assert!(!config.consumer.enabled);
    let named = config.ineffective_settings();
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(named
        .iter()
        .all(|n| n.contains("consumer.enabled is not true")));
    assert!(named[0].starts_with("consumer.listen") || named[1].starts_with("consumer.listen"));
    for enabled in [
        "[consumer]\nenabled = true\nlisten = \"127.0.0.1:7702\"\n",
        "[consumer]\nenabled = false\n",
        "[monitor]\nlisten = \"127.0.0.1:7780\"\n",
    ] {
        let file = TempConfig::new(enabled);
        let config = Config::load(&file.path).expect("valid");
        assert!(config.ineffective_settings().is_empty(), "{enabled}");
    }
}

/// The monitor beyond loopback with neither a token nor TLS is warned about like the source
/// listeners: anyone who reaches it may read the feed and publish catalogs.
#[test]
fn an_open_monitor_beyond_loopback_is_warned_about() {
    let file = TempConfig::new("[monitor]\nlisten = \"0.0.0.0:7780\"\n");
    let config = Config::load(&file.path).expect("valid");
    let warnings = config.exposure_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("monitor listener on 0.0.0.0:7780"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("publish catalogs"), "{warnings:?}");
    let guarded = TempConfig::new("[monitor]\nlisten = \"0.0.0.0:7780\"\ntoken_file = \"/x\"\n");
    let config = Config::load(&guarded.path).expect("valid");
    assert!(config.exposure_warnings().is_empty());
}

#[test]
fn a_bad_address_is_rejected() {
    expect_error(
        "[uplink]\nlisten = \"localhost:7700\"\nmax_connections = 9\n",
        &[
            ":2: uplink.listen",
            "localhost:7700",
            "invalid socket address",
        ],
    );
    expect_error(
        "[replay]\nlisten = \"127.0.0.1\"\nmax_connections = 9\n",
        &["replay.listen", "invalid socket address"],
    );
    // Both listeners on one address.
    expect_error(
        "[uplink]\nlisten = \"127.0.0.1:7700\"\nmax_connections = 9\n\
         [replay]\nlisten = \"127.0.0.1:7700\"\nmax_connections = 9\n",
        &["replay.listen", "127.0.0.1:7700"],
    );
}

#[test]
fn a_zero_capacity_is_rejected() {
    for key in [
        "processor_capacity",
        "emergency_capacity",
        "archive_capacity",
        "max_batch_frames",
        "emergency_streak",
    ] {
        let file = TempConfig::new(&format!("[pipeline]\n{key} = 0\n"));
        match Config::load(&file.path) {
            Err(err @ ConfigError::Invalid { .. }) => {
                let message = err.to_string();
                assert!(
                    message.contains(&file.path.display().to_string()),
                    "{message}"
                );
                assert!(message.contains(&format!("pipeline.{key}")), "{message}");
                assert!(message.contains("must be at least 1"), "{message}");
            }
            other => panic!("pipeline.{key} = 0 gave {other:?}"),
        }
    }
    expect_error(
        "[uplink]\nlisten = \"127.0.0.1:7700\"\nmax_connections = 0\n",
        &["uplink.max_connections", "must be at least 1"],
    );
    expect_error(
        "[connection]\nhandshake_timeout_ms = 0\n",
        &["connection.handshake_timeout_ms", "at least 1 ms"],
    );
    expect_error(
        "[shutdown]\ndrain_deadline_ms = 0\n",
        &["shutdown.drain_deadline_ms", "at least 1 ms"],
    );
}

/// The gap that ends a pass: ten minutes unless written, a second to a day.
#[test]
fn the_pass_gap_is_ten_minutes_and_bounded() {
    let gap = |ms: u64| {
        load(&format!("[archive]\npass_gap_ms = {ms}\n"))
            .archive
            .pass_gap
    };
    assert_eq!(Config::default().archive.pass_gap, Duration::from_secs(600));
    assert_eq!(gap(90_000), Duration::from_secs(90));
    for ms in [0, 999, 86_400_001] {
        let message = expect_error(
            &format!("[archive]\npass_gap_ms = {ms}\n"),
            &["archive.pass_gap_ms"],
        );
        assert!(
            message.contains("1000") || message.contains("86400000"),
            "{message}"
        );
    }
}

/// One address holds half of a listener's connections unless its own limit is written, and never
/// more than all of them.
#[test]
fn one_address_holds_half_of_a_listener_unless_configured() {
    let config = load("[uplink]\nmax_connections = 9\n[monitor]\nmax_connections = 1\n");
    assert_eq!(config.uplink.limits().per_address, 4);
    assert_eq!(config.replay.limits().per_address, 32);
    assert_eq!(config.monitor.limits().per_address, 1, "at least one");
    let config = load("[uplink]\nmax_connections = 48\nmax_connections_per_address = 48\n");
    assert_eq!(config.uplink.limits().per_address, 48);
    for table in ["uplink", "replay", "consumer", "monitor"] {
        expect_error(
            &format!("[{table}]\nmax_connections = 8\nmax_connections_per_address = 9\n"),
            &[
                &format!("{table}.max_connections_per_address"),
                "9",
                "one address holds at most all of the listener's connections",
            ],
        );
    }
    expect_error(
        "[[tm_servers]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nmax_connections_per_address = 0\n",
        &["tm_servers.max_connections_per_address", "at least 1"],
    );
}

/// An "unlimited" written as a huge number is refused before anything starts, naming the key and
/// the bound: it would abort the start in a semaphore or an allocation.
#[test]
fn a_value_past_its_bound_is_rejected() {
    for (table, key, bound) in [
        ("uplink", "max_connections", "1048576"),
        ("consumer", "max_connections", "1048576"),
        ("pipeline", "archive_capacity", "1048576"),
        ("connection", "read_buffer", "67108864"),
        ("connection", "read_budget", "68719476736"),
        ("feed", "max_subscribers", "65536"),
        ("runtime", "shards", "64"),
        ("runtime", "worker_threads", "1024"),
    ] {
        let huge = i64::MAX;
        expect_error(
            &format!("[{table}]\n{key} = {huge}\n"),
            &[&format!("{table}.{key}"), &huge.to_string(), bound],
        );
    }
}

#[test]
fn a_batch_larger_than_a_capacity_is_rejected() {
    expect_error(
        "[pipeline]\nmax_batch_frames = 65\n",
        &["pipeline.max_batch_frames", "65", "64"],
    );
    expect_error(
        "[pipeline]\narchive_capacity = 16\nmax_batch_frames = 32\n",
        &["pipeline.max_batch_frames", "32", "16"],
    );
    expect_error(
        "[connection]\nmax_frame_length = 4\n",
        &["connection.max_frame_length", "4"],
    );
}

#[test]
fn a_bad_log_level_is_rejected() {
    expect_error(
        "[log]\nlevel = \"aggregator=loud\"\n",
        &["log.level", "aggregator=loud", "not a valid filter"],
    );
    // Each of these passes as a tracing filter that lets nothing of the daemon through: a bare
    // word is a target with every level enabled, and an empty filter enables nothing.
    for level in ["debgu", "info,aggregatr", "", "aggregator="] {
        expect_error(
            &format!("[log]\nlevel = \"{level}\"\n"),
            &[
                "log.level",
                &format!("{level:?}"),
                "trace, debug, info, warn, error or off",
                "info,aggregator=debug",
            ],
        );
    }
    expect_error(
        "[log]\nformat = \"xml\"\n",
        &["format", "xml", "unknown variant"],
    );
}

#[test]
fn log_filter_directives_are_accepted() {
    for level in [
        "debug",
        "WARN",
        "off",
        "info,aggregator=debug",
        "warn,aggregator::ingest::connection=trace",
        "info,[connection]=debug",
    ] {
        assert_eq!(
            load(&format!("[log]\nlevel = \"{level}\"\n")).log.level,
            level
        );
    }
}

#[test]
fn a_value_of_the_wrong_type_is_rejected() {
    expect_error(
        "[replay]\nlisten = \"127.0.0.1:7701\"\nmax_connections = \"many\"\n",
        &["replay.max_connections", "invalid type", "many"],
    );
    expect_error(
        "[connection]\nidle_timeout_ms = -5\n",
        &["connection.idle_timeout_ms", "-5"],
    );
    expect_error(
        "[pipeline]\nprocessor_capacity = 6.5\n",
        &["pipeline.processor_capacity", "invalid type"],
    );
}

#[test]
fn a_missing_file_is_reported() {
    let file = TempConfig::new("");
    let missing = file.dir.join("nowhere.toml");
    let message = Config::load(&missing).unwrap_err().to_string();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("cannot read"), "{message}");
}

fn aggregator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(args)
        .output()
        .expect("run the aggregator binary")
}

#[test]
fn check_config_exits_2_with_the_message_for_a_bad_file() {
    for (contents, needles) in [
        (
            "[pipeline]\nprocessor_capacity = 0\n",
            &["pipeline.processor_capacity"][..],
        ),
        (
            "[uplink]\nlisten = \"nowhere\"\nmax_connections = 1\n",
            &["invalid socket address"],
        ),
        ("[uplink]\nbacklog = 5\n", &["backlog"]),
        (
            "[tls]\ncert = \"/nonexistent/server.pem\"\nkey = \"/nonexistent/server.key\"\n",
            &["tls.cert: cannot read /nonexistent/server.pem"],
        ),
        (
            "[monitor]\ntoken_file = \"/nonexistent/token\"\n",
            &["monitor.token_file: cannot read /nonexistent/token"],
        ),
        (
            "[log]\nlevel = \"debgu\"\n",
            &[
                "log.level",
                "\"debgu\"",
                "trace, debug, info, warn, error or off",
            ],
        ),
    ] {
        let file = TempConfig::new(contents);
        let output = aggregator(&["--check-config", "--config", file.path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{contents}: {stderr}");
        assert!(
            stderr.contains(&file.path.display().to_string()),
            "{stderr}"
        );
        for needle in needles {
            assert!(stderr.contains(needle), "{stderr}");
        }
    }
    let file = TempConfig::new("");
    let missing = file.dir.join("nowhere.toml");
    let output = aggregator(&["--check-config", "--config", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn check_config_accepts_the_example() {
    let output = aggregator(&[
        "--check-config",
        "--config",
        example_path().to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid"));
}

#[test]
fn a_bad_config_stops_the_daemon_before_it_binds() {
    let file = TempConfig::new(
        "[uplink]\nlisten = \"127.0.0.1:0\"\nmax_connections = 1\n\
         [replay]\nlisten = \"127.0.0.1:0\"\nmax_connections = 1\n\
         [pipeline]\nemergency_capacity = 0\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["--config", file.path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the aggregator binary");
    // Should the daemon start after all, do not let it run on.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the daemon started with an invalid config");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pipeline.emergency_capacity"), "{stderr}");
}

#[test]
fn version_prints_the_package_version() {
    let output = aggregator(&["--version"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("aggregator {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
}

#[test]
fn the_read_budget_is_cut_into_full_read_credits() {
    let mut config = Config::default();
    config.connection.read_buffer = 128 * 1024;
    config.connection.read_budget = 32 * 1024 * 1024;
    assert_eq!(config.read_credits(), 256);
    config.connection.read_budget = 128 * 1024 + 1;
    assert_eq!(config.read_credits(), 1, "a remainder buys no credit");
}

#[test]
fn by_default_every_source_of_the_reference_deployment_reads_a_full_buffer() {
    // 48 uplinks and the demo's 2 replay feeds: with fewer credits than sources, saturating
    // sources would take turns even in the deployment the defaults are tuned for.
    let config = Config::default();
    assert!(config.read_credits() >= 50, "{}", config.read_credits());
}

#[test]
fn a_read_budget_below_one_read_buffer_is_rejected() {
    expect_error(
        "[connection]\nread_buffer = 131072\nread_budget = 65536\n",
        &["connection.read_budget", "65536", "131072"],
    );
}

#[test]
fn a_receive_buffer_is_optional_and_too_small_one_is_rejected() {
    assert_eq!(Config::default().connection.receive_buffer, None);
    let config = load("[connection]\nreceive_buffer = 262144\n");
    assert_eq!(config.connection.receive_buffer, Some(262144));
    expect_error(
        "[connection]\nreceive_buffer = 1024\n",
        &["connection.receive_buffer", "1024", "4096"],
    );
}

#[test]
fn ack_interval_stretches_to_keep_the_ack_budget() {
    let mut config = Config::default();
    config.connection.ack_interval = Duration::from_millis(10);
    config.connection.ack_budget_per_sec = 20_000;
    assert_eq!(config.ack_interval(48).as_millis(), 10);
    assert_eq!(config.ack_interval(1_000).as_millis(), 50);
    assert_eq!(config.ack_interval(10_000).as_millis(), 500);
}

#[test]
fn the_consumer_section_is_checked_like_the_others() {
    let consumer = load("[consumer]\nenabled = true\nlisten = \"127.0.0.1:9702\"\n").consumer;
    assert!(consumer.enabled);
    assert_eq!(consumer.listen, "127.0.0.1:9702".parse().unwrap());
    assert_eq!(consumer.max_connections, 64, "the default");
    expect_error(
        "[consumer]\nmax_connection = 9\n",
        &["consumer.max_connection", "unknown field"],
    );
    expect_error(
        "[consumer]\nmax_connections = 0\n",
        &["consumer.max_connections", "at least 1"],
    );
    expect_error(
        "[consumer]\nlisten = \"localhost:7702\"\n",
        &["consumer.listen", "invalid socket address"],
    );
    expect_error(
        "[consumer]\nenabled = true\nlisten = \"127.0.0.1:7700\"\n",
        &["consumer.listen", "127.0.0.1:7700", "another listener"],
    );
    // A disabled listener binds nothing, so its address may be any.
    load("[consumer]\nenabled = false\nlisten = \"127.0.0.1:7780\"\n");
}

#[test]
fn the_nats_sink_takes_its_defaults_and_names_the_key_of_each_mistake() {
    let nats = load("[sinks.nats]\nurl = \"nats://127.0.0.1:4222\"\nsite = \"gs-north\"\n")
        .sinks
        .nats
        .expect("the section");
    assert_eq!(nats.url, ["nats://127.0.0.1:4222"]);
    assert_eq!(
        (nats.stream.as_str(), nats.subject.as_str(), nats.window),
        ("TELEMETRY", "telemetry.{site}.{kind}.{source}", 256)
    );
    assert_eq!(nats.duplicate_window.as_secs(), 600);
    let secret = load(
        "[sinks.nats]\nurl = \"nats://h:4222\"\nsite = \"s\"\nuser = \"u\"\npassword = \"hunter2\"\n",
    );
    let nats = secret.sinks.nats.expect("the section");
    assert_eq!(nats.password.as_ref().map(|p| p.expose()), Some("hunter2"));
    assert!(!format!("{nats:?}").contains("hunter2"), "{nats:?}");
    let several =
        load("[sinks.nats]\nurl = [\"nats://a:4222\", \"nats://b:4222\"]\nsite = \"s\"\n");
    assert_eq!(several.sinks.nats.expect("the section").url.len(), 2);
    let url = "url = \"nats://127.0.0.1:4222\"\n";
    for (keys, needles) in [
        (url.to_string(), &["sinks.nats", "missing field `site`"][..]),
        (
            format!("{url}site = \"a.b\"\n"),
            &["sinks.nats.site", "\"a.b\""],
        ),
        (
            "url = \"http://[::1\"\nsite = \"s\"\n".into(),
            &["sinks.nats.url"],
        ),
        (
            format!("{url}site = \"s\"\nsubject = \"t.{{site}}.{{kind}}\"\n"),
            &["sinks.nats.subject", "{source}"],
        ),
        (
            format!("{url}site = \"s\"\nsubject = \"t.{{site}}-x.{{kind}}.{{source}}\"\n"),
            &["sinks.nats.subject", "{site}-x"],
        ),
        (
            format!("{url}site = \"s\"\nuser = \"u\"\n"),
            &["sinks.nats.password"],
        ),
        (
            format!("{url}site = \"s\"\nwindow = 0\n"),
            &["sinks.nats.window"],
        ),
        (
            format!("{url}site = \"s\"\nsubjct = \"x\"\n"),
            &["sinks.nats.subjct", "unknown field"],
        ),
    ] {
        expect_error(&format!("[sinks.nats]\n{keys}"), needles);
    }
    expect_error(
        &format!("[archive]\nkind = \"count\"\n[sinks.nats]\n{url}site = \"s\"\n"),
        &["sinks.nats", "archive.kind"],
    );
    let file = TempConfig::new("[sinks.nats]\nurl = \"nats://127.0.0.1:4222\"\nsite = \"\"\n");
    let output = aggregator(&["--check-config", "--config", file.path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("sinks.nats.site"), "{stderr}");
}

/// `ack`, `identity`, `replicas`, `max_unreplicated_frames`, `emergency_wait_ms` and `layout`:
/// today's meaning by default, and each mistake named by its key.
#[test]
fn replicated_acknowledgements_and_a_fleet_identity_are_keys_of_the_nats_sink() {
    let base = "[sinks.nats]\nurl = \"nats://127.0.0.1:4222\"\nsite = \"a\"\n";
    let nats = load(base).sinks.nats.expect("the section");
    assert_eq!(
        (format!("{:?} {:?}", nats.ack, nats.identity), nats.replicas),
        ("Local Site".to_string(), 1)
    );
    assert_eq!(nats.max_unreplicated_frames, 65_536);
    assert_eq!(nats.emergency_wait.as_millis(), 200);
    assert_eq!(nats.layout, aggregator::config::StreamLayout::Records2);
    let nats = load(&format!("{base}layout = \"records/1\"\n")).sinks.nats;
    let layout = nats.expect("the section").layout;
    assert_eq!(layout, aggregator::config::StreamLayout::Records1);
    let fleet = format!(
        "{base}ack = \"replicated\"\nidentity = \"fleet\"\nreplicas = 3\n\
         subject = \"telemetry.{{kind}}.{{source}}\"\n"
    );
    let nats = load(&format!("{fleet}emergency_wait_ms = 10\n"))
        .sinks
        .nats
        .expect("the section");
    assert_eq!(
        (format!("{:?} {:?}", nats.ack, nats.identity), nats.replicas),
        ("Replicated Fleet".to_string(), 3)
    );
    assert_eq!(nats.emergency_wait.as_millis(), 10);
    for (keys, needles) in [
        (
            "ack = \"quorum\"\n",
            &["sinks.nats.ack", "unknown variant"][..],
        ),
        ("replicas = 7\n", &["sinks.nats.replicas", "at most 5"]),
        (
            "layout = \"frame/1\"\n",
            &["sinks.nats.layout", "unknown variant", "records/2"],
        ),
        (
            "max_unreplicated_frames = 0\n",
            &["sinks.nats.max_unreplicated_frames"],
        ),
        (
            "emergency_wait_ms = 5\n",
            &["sinks.nats.emergency_wait_ms", "least accepted, 10 ms"],
        ),
        (
            "emergency_wait_ms = 201\n",
            &["sinks.nats.emergency_wait_ms", "200 ms"],
        ),
        (
            "identity = \"fleet\"\n",
            &["sinks.nats.subject", "identity = \"fleet\"", "{site}"],
        ),
    ] {
        expect_error(&format!("{base}{keys}"), needles);
    }
    expect_error(
        &format!("{base}ack = \"replicated\"\n[archive.retention]\nmax_age = \"1d\"\n"),
        &["archive.retention.max_age", "protect = [\"nats\"]"],
    );
    load(&format!(
        "{base}ack = \"replicated\"\n[archive.retention]\nmax_age = \"1d\"\nprotect = [\"nats\"]\n"
    ));
}

/// `[[links]]` mistakes name the link and what is wrong: a link with no source rule, UDP with a
/// stream framing, a length prefix without its field, and two links that could register one
/// source.
#[test]
fn link_mistakes_name_the_link_and_the_rule() {
    let link = |extra: &str| {
        format!(
            "[[links]]\nname = \"gs\"\ntransport = \"tcp-listen\"\naddress = \"127.0.0.1:0\"\n\
             framing = \"ccsds\"\n{extra}\n"
        )
    };
    expect_error(&link(""), &["links.source_id", "\"gs\"", "apid_base"]);
    let udp = "[[links]]\nname = \"u\"\ntransport = \"udp\"\naddress = \"127.0.0.1:0\"\n\
               framing = \"kiss\"\nsource_id = 1\n";
    expect_error(udp, &["links.framing", "one packet per datagram"]);
    let prefix = link("source_id = 1").replace("\"ccsds\"", "\"length-prefix\"");
    expect_error(&prefix, &["links.length", "offset, size"]);
    let far = link("source_id = 1\nlength = { offset = 1000000000, size = 2 }")
        .replace("\"ccsds\"", "\"length-prefix\"");
    expect_error(&far, &["links.length", "past 65536 bytes of frame header"]);
    let overlap = format!(
        "{}{}",
        link("apid_base = 100"),
        link("source_id = 150").replace("\"gs\"", "\"gs2\"")
    );
    expect_error(&overlap, &["\"gs2\"", "live:150", "\"gs\""]);
    expect_error(&link("source_id = 1\nframing_x = 1"), &["framing_x"]);
    // An APID is looked up as it is written in decimal: a key no packet could match is refused.
    for key in ["0100", "+100", "2048"] {
        let table = format!("apid_sources = {{ \"{key}\" = 700 }}");
        expect_error(&link(&table), &["links.apid_sources", key, "0 to 2047"]);
    }
    // Two links watching one spool would both import each file.
    let shared = format!(
        "{}{}",
        link("source_id = 1\nspool_dir = \"/srv/spool\""),
        link("source_id = 2\nspool_dir = \"/srv/spool\"").replace("\"gs\"", "\"gs2\"")
    );
    expect_error(&shared, &["links.spool_dir", "\"gs2\"", "/srv/spool"]);
}

/// The KISS keys: AX.25 payloads and ports only with KISS framing, callsigns only with AX.25
/// payloads and written as callsigns; `callsign_sources` alone is a link's source rule.
#[test]
fn kiss_keys_are_checked_where_they_apply() {
    let link = |framing: &str, extra: &str| {
        format!(
            "[[links]]\nname = \"tnc\"\ntransport = \"tcp-connect\"\naddress = \"127.0.0.1:8001\"\n\
             framing = \"{framing}\"\n{extra}\n"
        )
    };
    let ax25 = "kiss_payload = \"ax25\"\n";
    expect_error(
        &link("ccsds", &format!("source_id = 1\n{ax25}")),
        &["links.kiss_payload", "\"tnc\""],
    );
    expect_error(
        &link("kiss", "source_id = 1\nkiss_port = 16"),
        &["links.kiss_port", "16"],
    );
    expect_error(
        &link("ccsds", "source_id = 1\nkiss_port = 1"),
        &["links.kiss_port"],
    );
    let callsigns = "callsign_sources = { \"N0CALL-1\" = 500 }";
    expect_error(
        &link("kiss", callsigns),
        &["links.callsign_sources", "\"ax25\""],
    );
    for wrong in ["n0call", "N0CALL-16", "TOOLONG"] {
        let table = format!("{ax25}callsign_sources = {{ \"{wrong}\" = 500 }}");
        expect_error(&link("kiss", &table), &["links.callsign_sources", wrong]);
    }
    let twice = format!("{ax25}callsign_sources = {{ \"N0CALL\" = 5, \"N0CALL-0\" = 6 }}");
    expect_error(&link("kiss", &twice), &["links.callsign_sources", "twice"]);
    let toml = link(
        "kiss",
        &format!("{ax25}{callsigns}\nkiss_port = 15\nsource_id = 7"),
    );
    let config = Config::parse(&toml, Path::new("kiss.toml")).expect("callsigns and source_id");
    assert_eq!(config.links[0].kiss_payload, KissPayload::Ax25);
}

/// The transfer frame keys: needed with a frame framing, refused without one, AOS' keys only
/// for AOS, each value within what the frame header holds; udp takes frames.
#[test]
fn frame_keys_are_checked_where_they_apply() {
    let link = |transport: &str, framing: &str, extra: &str| {
        format!(
            "[[links]]\nname = \"sat\"\ntransport = \"{transport}\"\naddress = \"127.0.0.1:8002\"\n\
             framing = \"{framing}\"\nsource_id = 1\n{extra}\n"
        )
    };
    let tm = "frame_length = 1115\nspacecraft_id = 42\nvirtual_channels = [0, 7]";
    let config = Config::parse(&link("udp", "tm-frames", tm), Path::new("f.toml"))
        .expect("a udp link of TM frames");
    assert_eq!(config.links[0].frame_length, Some(1115));
    assert!(
        config.links[0].frame_marker,
        "frames follow the marker by default"
    );
    let aos = "frame_length = 892\nspacecraft_id = 255\nvirtual_channels = [62]\nocf = true\n\
               frame_header_error_control = true\ninsert_zone_length = 4\nframe_marker = false";
    Config::parse(&link("tcp-listen", "aos-frames", aos), Path::new("f.toml")).expect("AOS keys");
    let cases = [
        (
            "tm-frames",
            "spacecraft_id = 1\nvirtual_channels = [0]",
            "links.frame_length",
        ),
        (
            "tm-frames",
            "frame_length = 100\nvirtual_channels = [0]",
            "links.spacecraft_id",
        ),
        (
            "tm-frames",
            "frame_length = 100\nspacecraft_id = 1",
            "links.virtual_channels",
        ),
        (
            "tm-frames",
            "frame_length = 100\nspacecraft_id = 1024\nvirtual_channels = [0]",
            "1023",
        ),
        (
            "tm-frames",
            "frame_length = 100\nspacecraft_id = 1\nvirtual_channels = [8]",
            "0 to 7",
        ),
        (
            "aos-frames",
            "frame_length = 100\nspacecraft_id = 1\nvirtual_channels = [63]",
            "0 to 62",
        ),
        (
            "tm-frames",
            "frame_length = 2049\nspacecraft_id = 1\nvirtual_channels = [0]",
            "2048",
        ),
        (
            "tm-frames",
            "frame_length = 8\nspacecraft_id = 1\nvirtual_channels = [0]\nfecf = true",
            "data field",
        ),
        (
            "tm-frames",
            "frame_length = 100\nspacecraft_id = 1\nvirtual_channels = [0]\nocf = true",
            "links.ocf",
        ),
        (
            "tm-frames",
            "frame_length = 100\nspacecraft_id = 1\nvirtual_channels = [0]\nrs_check_symbols_length = 257",
            "links.rs_check_symbols_length",
        ),
        ("ccsds", "rs_check_symbols_length = 32", "tm-frames"),
        ("ccsds", "fecf = true", "tm-frames"),
        ("ccsds", "frame_length = 100", "links.frame_length"),
        (
            "tm-frames",
            "frame_length = 100\nspacecraft_id = 1\nvirtual_channels = [0]\nplayback_virtual_channels = [1]",
            "1 is not in virtual_channels",
        ),
        ("ccsds", "playback_virtual_channels = [1]", "links.playback_virtual_channels"),
        ("ccsds", "station = \"\"", "links.station"),
        ("ccsds", "earth_time = { offset = 0, unit = \"ms\" }", "links.earth_time"),
        (
            "length-prefix",
            "length = { size = 4, strip = 4 }\nearth_time = { offset = 0, unit = \"ms\" }",
            "run past the 4 header bytes",
        ),
        ("ccsds", "station = \"a\\nb\"", "control characters"),
    ];
    for (framing, extra, named) in cases {
        expect_error(&link("tcp-listen", framing, extra), &[named, "\"sat\""]);
    }
    expect_error(&link("udp", "kiss", ""), &["links.framing", "aos-frames"]);
}

/// Links and TM servers have no TLS: bound beyond loopback, each is named in the exposure
/// warnings, with `[tls]` or without.
#[test]
fn links_and_tm_servers_beyond_loopback_are_exposure_warnings() {
    let text = "[uplink]\nlisten = \"127.0.0.1:7700\"\n[replay]\nlisten = \"127.0.0.1:7701\"\n\
                [[links]]\nname = \"gs\"\ntransport = \"tcp-listen\"\naddress = \"0.0.0.0:7810\"\n\
                framing = \"ccsds\"\nsource_id = 1\n\
                [[links]]\nname = \"local\"\ntransport = \"udp\"\naddress = \"127.0.0.1:7811\"\n\
                framing = \"ccsds\"\nsource_id = 2\n\
                [[tm_servers]]\nname = \"mcs\"\nlisten = \"0.0.0.0:10015\"\n";
    let config = Config::parse(text, Path::new("exposed.toml")).expect("valid");
    let warnings = config.exposure_warnings();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("link \"gs\" on 0.0.0.0:7810"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("TM server \"mcs\" on 0.0.0.0:10015"),
        "{warnings:?}"
    );
}

/// `[archive.retention]`: sizes and ages with units, each mistake named with its key and reason,
/// and a `max_bytes` below two segments per shard refused with the arithmetic.
#[test]
fn retention_takes_units_and_names_each_mistake() {
    let retention = load(
        "[archive.retention]\nmax_age = \"30d\"\nmax_bytes = \"400GiB\"\nmin_free_bytes = 1048576\n\
         min_free_ratio = 0.05\n",
    )
    .archive
    .retention;
    assert_eq!(
        retention.max_age,
        Some(std::time::Duration::from_secs(30 * 86_400))
    );
    assert_eq!(retention.max_bytes, Some(400 << 30));
    assert_eq!(retention.min_free_bytes, Some(1 << 20));
    assert_eq!(retention.min_free_ratio, Some(0.05));
    assert!(retention.is_bounded());
    assert!(
        !Config::default().archive.retention.is_bounded(),
        "none by default"
    );
    let least = "[runtime]\nshards = 2\n[archive]\nsegment_bytes = 1048576\n[archive.retention]\n";
    load(&format!("{least}max_bytes = \"4MiB\"\n"));
    for (keys, needles) in [
        (
            format!("{least}max_bytes = \"3MiB\"\n"),
            &[
                "archive.retention.max_bytes",
                "4194304",
                "two segments per shard",
            ][..],
        ),
        (
            "[archive.retention]\nmax_age = \"30 days ago\"\n".into(),
            &["archive.retention.max_age", "not a duration"],
        ),
        (
            "[archive.retention]\nmax_age = \"500ms\"\n".into(),
            &["archive.retention.max_age", "at least 1 s"],
        ),
        (
            "[archive.retention]\nmax_age = \"200years\"\n".into(),
            &["archive.retention.max_age", "100 years"],
        ),
        (
            "[archive.retention]\nmax_bytes = \"12 apples\"\n".into(),
            &["archive.retention.max_bytes", "not a size"],
        ),
        (
            "[archive.retention]\nmin_free_ratio = 1.5\n".into(),
            &["archive.retention.min_free_ratio", "below 1"],
        ),
        (
            "[archive.retention]\nmin_free_bytes = 0\n".into(),
            &["archive.retention.min_free_bytes", "at least 1"],
        ),
        (
            "[archive.retention]\nprotect = [\"nats\"]\n".into(),
            &["archive.retention.protect", "[sinks.nats]"],
        ),
        (
            "[archive.retention]\nprotect = [\"tail\"]\n".into(),
            &["archive.retention.protect", "unknown variant"],
        ),
        (
            "[archive]\nkind = \"count\"\n[archive.retention]\nmax_age = \"1d\"\n".into(),
            &["archive.retention", "archive.kind"],
        ),
        (
            "[archive.retention]\nmax_ages = \"1d\"\n".into(),
            &["unknown field"],
        ),
    ] {
        expect_error(&keys, needles);
    }
}
