//! What an operator installs to be woken (`deploy/prometheus/aggregator-alerts.yml`) and to look
//! (`deploy/grafana/aggregator.json`) names only metrics the daemon exports: a daemon with a link of
//! transfer frames and a TM server, so that every family is there, is scraped, and each metric
//! name in the rules' and the panels' PromQL is looked for in the answer. The rules pass
//! `promtool check rules` and their unit tests `promtool test rules`, and the panels' queries
//! parse as PromQL. A damaged record a query meets is counted, as AggregatorArchiveDamaged needs.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use aggregator::config::Config;
use aggregator::{Daemon, SourceKind};
use common::{archive_config, http_get, serve_monitor, Client, TempDir, TestDaemon, PATIENCE};
use serde_json::Value;

const RULES: &str = "deploy/prometheus/aggregator-alerts.yml";
const RULE_TESTS: &str = "deploy/prometheus/aggregator-alerts.test.yml";
const DASHBOARD: &str = "deploy/grafana/aggregator.json";

/// PromQL's keywords and aggregation operators: no metric, whatever follows them.
const KEYWORDS: [&str; 27] = [
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The keywords followed by a list of label names in parentheses.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The metric names a PromQL expression reads: its identifiers, less functions (an identifier
/// before `(`), keywords, and what strings, label matchers `{..}`, ranges `[..]`, label lists
/// (`by (..)`, `on (..)`), numbers, durations and Grafana's `$variables` hold.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut at = 0;
    while let Some(&c) = chars.get(at) {
        at = match c {
            '"' | '\'' | '`' => past_string(&chars, at),
            '{' => past(&chars, at, '}'),
            '[' => past(&chars, at, ']'),
            '$' => past_word(&chars, at + 1),
            c if c.is_ascii_digit() || c == '.' => past_word(&chars, at),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end = past_word(&chars, at);
                let word: String = chars[at..end].iter().collect();
                let next = (end..chars.len()).find(|&i| !chars[i].is_whitespace());
                match next.filter(|&i| chars[i] == '(') {
                    Some(open) if LABEL_LISTS.contains(&word.as_str()) => past(&chars, open, ')'),
                    Some(_) => end,
                    None if KEYWORDS.contains(&word.as_str()) => end,
                    None => {
                        names.insert(word);
                        end
                    }
                }
            }
            _ => at + 1,
        };
    }
    names
}

/// Where the word (an identifier, a number or a duration) starting at `at` ends.
fn past_word(chars: &[char], at: usize) -> usize {
    let word = |c: &&char| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.');
    at + chars[at..].iter().take_while(word).count()
}

/// Past the string opening at `at` (its quote there), escapes included.
fn past_string(chars: &[char], at: usize) -> usize {
    let quote = chars[at];
    let mut i = at + 1;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' if quote != '`' => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// Past `close`, from the bracket at `at`, passing over strings on the way.
fn past(chars: &[char], at: usize, close: char) -> usize {
    let mut i = at + 1;
    while let Some(&c) = chars.get(i) {
        match c {
            '"' | '\'' | '`' => i = past_string(chars, i),
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The metric names a `/metrics` answer exports: each family of `# TYPE` (with a histogram's
/// `_bucket`, `_sum` and `_count`, a summary's `_sum` and `_count`) and each sample's name.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let mut parts = typed.split_whitespace();
            let (Some(name), kind) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                Some("histogram") => &["", "_bucket", "_sum", "_count"],
                Some("summary") => &["", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Each name of `exprs` not among `exported`, with the expression that uses it.
fn unknown(exprs: &[String], exported: &BTreeSet<String>) -> Vec<(String, String)> {
    let used = exprs
        .iter()
        .flat_map(|expr| metric_names(expr).into_iter().map(move |name| (name, expr)));
    used.filter(|(name, _)| !exported.contains(name))
        .map(|(name, expr)| (name, expr.clone()))
        .collect()
}

/// Every `expr:` of a rules file, a block scalar (`>-`, `|`) joined into one line.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with(['>', '|']) {
            let block = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent(l) > indent(line));
            exprs.push(block.map(|l| l.trim()).collect::<Vec<_>>().join(" "));
        } else {
            exprs.push(value.trim_matches(['"', '\'']).to_string());
        }
    }
    exprs
}

/// Every query of a dashboard: each target's `expr`, and the metric of each variable's
/// `label_values(METRIC, LABEL)`.
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    ("definition", Value::String(query)) => {
                        let inner = query.strip_prefix("label_values(");
                        let metric = inner.and_then(|q| Some(q.rsplit_once(',')?.0));
                        out.push(metric.unwrap_or(query).to_string());
                    }
                    _ => dashboard_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| dashboard_exprs(item, out)),
        _ => {}
    }
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON")
}

/// The parser finds metric names and nothing else, and a name the daemon does not export is
/// reported, so the test below can fail.
#[test]
fn an_expression_names_its_metrics_and_an_unexported_one_is_reported() {
    let expr = r#"sum by (instance, state) (rate(aggregator_a_total{state=~"x|}y", instance=~"$instance"}[$__rate_interval] offset 1d))
        / on(instance) group_left(link) aggregator_b > bool 0.05 and aggregator_made_up_metric
        or histogram_quantile(0.99, sum without (le) (rate(aggregator_h_bucket[5m]))) unless time() - aggregator_c:ratio @ 1609746000"#;
    let names: Vec<_> = metric_names(expr).into_iter().collect();
    assert_eq!(
        names,
        [
            "aggregator_a_total",
            "aggregator_b",
            "aggregator_c:ratio",
            "aggregator_h_bucket",
            "aggregator_made_up_metric"
        ]
    );
    let text = "# HELP aggregator_a_total A.\n# TYPE aggregator_a_total counter\n\
                aggregator_a_total 1\n# TYPE aggregator_h histogram\naggregator_b{x=\"1\"} 2\n\
                aggregator_c:ratio 0.5\n";
    let missing = unknown(&[expr.to_string()], &exported(text));
    let missing: Vec<_> = missing.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(missing, ["aggregator_made_up_metric"]);
}

/// The files hold what the test reads: an expression for each rule, and a dashboard whose
/// panels each query the datasource variable's Prometheus.
#[test]
fn every_rule_and_panel_has_a_query_on_the_datasource_variable() {
    let rules = read(RULES);
    let alerts = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"));
    assert_eq!(rule_exprs(&rules).len(), alerts.count());
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["type"] == "datasource"
        && v["query"] == "prometheus"
        && v["name"] == "datasource"));
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{panel}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{panel}");
        assert!(targets.iter().all(|t| t["expr"].is_string()), "{panel}");
    }
}

/// A `[[links]]` entry of TM transfer frames and a `[[tm_servers]]` entry, on loopback port 0:
/// with them the daemon exports its link, frame quality and TM families too.
const LINK_AND_TM_SERVER: &str = "[[links]]\nname = \"sat\"\ntransport = \"udp\"\n\
    address = \"127.0.0.1:0\"\nframing = \"tm-frames\"\napid_base = 10000\nframe_length = 64\n\
    spacecraft_id = 42\nvirtual_channels = [1]\n\n\
    [[tm_servers]]\nname = \"mc\"\nlisten = \"127.0.0.1:0\"\n";

/// A daemon on `config` with its archive opened as the binary opens it, and its monitor served.
async fn start(config: Config) -> (TestDaemon, SocketAddr, tokio_util::sync::CancellationToken) {
    let opened = aggregator::archive::write::open(&config.archive, config.runtime.shards)
        .expect("open the archive");
    let build = |config| Daemon::new(config, opened);
    let (daemon, state) = TestDaemon::start_built(config, build, Daemon::monitor_state).await;
    let (monitor, stop) = serve_monitor(state).await;
    (daemon, monitor, stop)
}

/// The value of the sample line `series` (the name with its labels, as rendered).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_rules_and_the_dashboard_name_only_metrics_the_daemon_exports() {
    let dir = TempDir::new("alerts-names");
    let mut config = archive_config(&dir.0.join("archive"));
    let extra = Config::parse(LINK_AND_TM_SERVER, Path::new("alerts.toml")).expect("valid");
    (config.links, config.tm_servers) = (extra.links, extra.tm_servers);
    let (daemon, monitor, stop) = start(config).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 3).await;
    client.send_routine(0..10).await;
    let stats = || daemon.stats.snapshot();
    common::wait_until("10 frames archived", PATIENCE, || {
        stats().frames_archived == 10
    })
    .await;
    common::wait_until("retention's first look at the disk", PATIENCE, || {
        stats().archive_filesystem_bytes > 0
    })
    .await;

    let (status, _, text) = http_get(monitor, "/metrics").await;
    assert_eq!(status, 200);
    let exported = exported(&text);
    let mut exprs = rule_exprs(&read(RULES));
    dashboard_exprs(&dashboard(), &mut exprs);
    let missing = unknown(&exprs, &exported);
    assert!(missing.is_empty(), "not exported: {missing:#?}");
    // The figures the new alerts read are there, with their labels.
    let source = "{source=\"3\",kind=\"live_uplink\"}";
    for family in ["silence_seconds", "longest_silence_seconds"] {
        let series = format!("aggregator_source_{family}{source}");
        assert!(sample(&text, &series).is_some(), "no {series} in:\n{text}");
    }
    let size = sample(&text, "aggregator_archive_filesystem_bytes").unwrap();
    let free = sample(&text, "aggregator_archive_free_bytes").unwrap();
    assert!(size > 0.0 && free <= size, "free {free} of {size}");

    client.finish_sending().await;
    client.read_to_close().await;
    daemon.shutdown().await;
    stop.cancel();
}

/// Every byte of the damage test's payloads.
const PAYLOAD_BYTE: u8 = 0x5a;

/// A byte of the archive changed under a running daemon: the query that reads over it names the
/// damaged record, and `archive_damage_found` counts each one named.
#[tokio::test]
async fn a_damaged_record_a_query_meets_is_counted() {
    let dir = TempDir::new("alerts-damage");
    let root = dir.0.join("archive");
    let (daemon, monitor, stop) = start(archive_config(&root)).await;
    let payloads = vec![vec![PAYLOAD_BYTE; 200]; 20];
    for round in 0..10 {
        Client::store(
            daemon.uplink,
            SourceKind::LiveUplink,
            5,
            round * 20,
            &payloads,
        )
        .await;
    }
    let segments: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    let [segment] = &segments[..] else {
        panic!("one segment: {segments:?}")
    };
    flip_middle_byte(segment);

    let (status, _, body) = http_get(monitor, "/archive/frames?format=ndjson").await;
    assert_eq!(status, 200);
    let named = body
        .lines()
        .filter(|l| l.starts_with("{\"damaged\""))
        .count();
    assert!(named > 0, "no damage named in:\n{body}");
    assert_eq!(daemon.stats.snapshot().archive_damage_found, named as u64);
    let (_, _, text) = http_get(monitor, "/metrics").await;
    let counted = sample(&text, "aggregator_archive_damage_found_total");
    assert_eq!(counted, Some(named as f64));
    daemon.shutdown().await;
    stop.cancel();
}

/// Changes a payload byte past the middle of `path` in place, as a failing disk would: inside a
/// run of `PAYLOAD_BYTE`s, so that it is a record's payload (its CRC then fails), never a length.
fn flip_middle_byte(path: &Path) {
    use std::os::unix::fs::FileExt;
    let bytes = std::fs::read(path).unwrap();
    let run = [PAYLOAD_BYTE; 100];
    let middle = bytes.len() / 2;
    let found = bytes[middle..].windows(run.len()).position(|w| w == run);
    let at = (middle + found.expect("a payload past the middle") + run.len() / 2) as u64;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&[!PAYLOAD_BYTE], at).unwrap();
}

/// `promtool check rules` and `promtool test rules` pass, and every panel's query is PromQL that
/// Prometheus parses (each checked as a recording rule, Grafana's variables given values).
#[test]
#[ignore = "needs promtool (Debian package prometheus); .ci/run runs it"]
fn promtool_passes_the_rules_their_tests_and_the_dashboards_queries() {
    promtool(&["check", "rules", RULES]);
    promtool(&["test", "rules", RULE_TESTS]);
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard(), &mut exprs);
    let dir = TempDir::new("alerts-promtool");
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (n, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        let quoted = serde_json::to_string(&expr).unwrap();
        rules.push_str(&format!(
            "      - record: panel_{n}\n        expr: {quoted}\n"
        ));
    }
    let path = dir.0.join("dashboard-queries.yml");
    std::fs::write(&path, rules).unwrap();
    promtool(&["check", "rules", path.to_str().unwrap()]);
}

/// Runs promtool from the repository's root with `args`; panics with its output unless it
/// succeeds.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo(""))
        .output()
        .expect("promtool is not installed (Debian package prometheus; .ci/run installs it)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{report}");
}
