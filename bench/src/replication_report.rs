//! The replication run's report: each round's windows, the ratios by payload, where the machine's
//! CPU went, and the targets on its throughput.

use std::fmt::Write as _;

use aggregator::sinks::message::Layout;

use crate::control::{Fill, LatencySummary};
use crate::emergency;
use crate::results::{Plan, ReplicationResult, ReplicationRound, SinkWindow};
use crate::stream_check::StreamCheck;
use crate::summary::Stat;
use crate::targets::{Goals, Target};

/// Milliseconds of a latency in nanoseconds.
fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The payloads of the rounds, in the order they ran.
fn payloads(rounds: &[ReplicationRound]) -> Vec<usize> {
    crate::summary::distinct(rounds.iter().map(|r| r.payload))
}

/// The rounds at `payload`.
fn at(rounds: &[ReplicationRound], payload: usize) -> impl Iterator<Item = &ReplicationRound> {
    rounds.iter().filter(move |r| r.payload == payload)
}

/// A judged figure: its target key, what it is, how a round gives it, its unit.
type Judged = (
    &'static str,
    &'static str,
    fn(&ReplicationRound) -> f64,
    &'static str,
);

/// Per payload, the median of the rounds' `replicated / plain`, `replicated / local`, replicated
/// frames/s and payload MB/s against the scenario's targets (`KEY_64b` for one payload, else
/// `KEY`); a skipped run is a target not met, never one passed.
pub fn targets(goals: &Goals, result: Option<&ReplicationResult>) -> Vec<Target> {
    let Some(result) = result else {
        return Vec::new();
    };
    if let Some(why) = &result.skipped {
        return vec![Target {
            name: "replication run (`ack = \"replicated\"` on a JetStream cluster)".into(),
            target: "measured".into(),
            measured: format!("skipped: {why}"),
            met: false,
        }];
    }
    let mut out = Vec::new();
    for payload in payloads(&result.rounds) {
        let median = |of: fn(&ReplicationRound) -> f64| {
            let values: Vec<f64> = at(&result.rounds, payload).map(of).collect();
            (Stat::of(values.clone()).median, values.len())
        };
        let judged: [Judged; 5] = [
            (
                "replicated_over_plain",
                "acknowledged frames/s, `ack = \"replicated\"` / plain publisher",
                ReplicationRound::replicated_over_plain,
                "x",
            ),
            (
                "replicated_over_local",
                "acknowledged frames/s, `ack = \"replicated\"` / `ack = \"local\"`",
                ReplicationRound::replicated_over_local,
                "x",
            ),
            (
                "replicated_frames_per_s",
                "acknowledged frames/s, `ack = \"replicated\"`",
                |r| r.replicated.acked_frames_per_s,
                "frames/s",
            ),
            (
                "replicated_payload_mb_per_s",
                "acknowledged payload MB/s, `ack = \"replicated\"`",
                |r| r.replicated.acked_frames_per_s * r.payload as f64 / 1e6,
                "MB/s",
            ),
            (
                "replicated_emergency_ack_p99_ms",
                "emergency-only sources' ACK p99, `ack = \"replicated\"`",
                |r| ms(r.replicated.emergency_only.ack_latency.p99_ns),
                "ms",
            ),
        ];
        for (key, what, of, unit) in judged {
            let (value, rounds) = median(of);
            let name = format!("{payload} B {what} (median of {rounds} rounds)");
            // A key of one payload (`replicated_frames_per_s_64b`) before the key of every one.
            let of_payload = format!("{key}_{payload}b");
            let judged = (goals.judge(&of_payload, name.clone(), value, unit))
                .or_else(|| goals.judge(key, name, value, unit));
            out.extend(judged);
        }
    }
    out.push(stream_target(result));
    out
}

/// The run's tables, or why it was skipped.
pub fn render(o: &mut String, result: &ReplicationResult, plan: &Plan, nproc: usize) {
    let (Some(settings), None) = (plan.replication, &result.skipped) else {
        let why = result.skipped.as_deref().unwrap_or("no replication plan");
        let _ = writeln!(o, "\nReplication: skipped: {why}");
        return;
    };
    let _ = writeln!(
        o,
        "\nReplication ({n} `nats-server` nodes on loopback{far}, {server}; an R{n} stream per window; {w} publishes awaiting their PubAck, plain publisher and sinks alike; plain: {m} messages, first publish to last PubAck; daemons: `identity = \"fleet\"`{wait}, {c} saturating uplinks{fill} and {e} emergency-only sources ({f} frames/s each), ACKs counted at the load client over {ws:.1} s after {wu:.1} s; latencies p50 / p99 in ms):\n",
        n = settings.nodes,
        far = (settings.far_ms).map_or(String::new(), |ms| {
            format!(", each behind a proxy that holds every byte {ms} ms each way")
        }),
        server = result.server.as_deref().unwrap_or("unknown"),
        w = settings.window,
        m = settings.messages,
        wait = (settings.emergency_wait_ms).map_or(String::new(), |ms| {
            format!(", `emergency_wait_ms = {ms}`")
        }) + &(settings.layout).map_or(String::new(), |layout| {
            format!(", streams and `layout` {}", Layout::created(layout).name())
        }),
        c = plan.connections,
        fill = match plan.fill {
            Fill::Constant => "",
            Fill::Random => " of random payloads (the plain publisher's too)",
            Fill::Telemetry => {
                " of telemetry-like payloads, half of each 16 bytes random (the plain publisher's too)"
            }
        },
        e = emergency::SOURCES,
        f = emergency::FRAMES_PER_S,
        ws = plan.measure.as_secs_f64(),
        wu = plan.warmup.as_secs_f64(),
    );
    if let Some(ballast) = result.ballast {
        let gib = ballast.bytes as f64 / (1u64 << 30) as f64;
        let _ = writeln!(
            o,
            "Page cache filled before each window (`fill_page_cache`): {gib:.0} GiB written over the run, {:.0} s.\n",
            ballast.seconds
        );
    }
    let _ = writeln!(o, "| payload | round | order | plain msg/s | PubAck | replicated frames/s acked | ACK | emergency ACK | local frames/s acked | ACK | emergency ACK | replicated / plain | replicated / local |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let pair = |l: &LatencySummary| format!("{:.1} / {:.1}", ms(l.p50_ns), ms(l.p99_ns));
    for r in &result.rounds {
        let (p, a, b) = (&r.plain, &r.replicated, &r.local);
        let _ = writeln!(
            o,
            "| {} B | {} | {} | {:.0} | {} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2}x | {:.3}x |",
            r.payload,
            r.run,
            r.order.join(", "),
            p.acked_per_s,
            pair(&p.pub_ack_latency),
            a.acked_frames_per_s,
            pair(&a.ack_latency),
            pair(&a.emergency_only.ack_latency),
            b.acked_frames_per_s,
            pair(&b.ack_latency),
            pair(&b.emergency_only.ack_latency),
            r.replicated_over_plain(),
            r.replicated_over_local(),
        );
    }
    render_medians(o, &result.rounds);
    render_cpu(o, &result.rounds, nproc);
    render_checks(o, &result.rounds);
}

/// Each window's stream read back: what it held of what the load client saw acknowledged.
fn render_checks(o: &mut String, rounds: &[ReplicationRound]) {
    let _ = writeln!(
        o,
        "\nEach window's stream read back once the daemon stopped (`aggregator nats read`'s reader), against every sequence up to each source's last ACK at the window's end (`local` acknowledges before JetStream has a frame: what its stream lacks is no fault):\n"
    );
    let _ = writeln!(o, "| payload | round | window | messages | frames | acknowledged | missing | twice | not frames | seconds | first fault |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
    for (r, w) in rounds
        .iter()
        .flat_map(|r| [(r, &r.replicated), (r, &r.local)])
    {
        let Some(c) = &w.stream_check else {
            let _ = writeln!(
                o,
                "| {} B | {} | {} | not read | | | | | | | |",
                r.payload, r.run, w.ack
            );
            continue;
        };
        let _ = writeln!(
            o,
            "| {} B | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            r.payload,
            r.run,
            w.ack,
            c.messages,
            c.frames,
            c.acknowledged,
            c.missing,
            c.duplicates,
            c.not_frames,
            c.seconds,
            c.first_fault.as_deref().unwrap_or("none"),
        );
    }
}

/// Every replicated window's stream held every frame the load client saw acknowledged, once.
fn stream_target(result: &ReplicationResult) -> Target {
    let checks: Vec<_> = (result.rounds.iter())
        .filter_map(|r| r.replicated.stream_check.as_ref())
        .collect();
    let sum = |of: fn(&StreamCheck) -> u64| checks.iter().map(|c| of(c)).sum::<u64>();
    let fault = checks.iter().find_map(|c| c.first_fault.as_deref());
    Target {
        name: "`ack = \"replicated\"`: the stream holds every acknowledged frame once".into(),
        target: "read back after every replicated window".into(),
        measured: format!(
            "{} of {} windows read: {} frames; of {} acknowledged {} missing, {} twice, {} messages not frames{}",
            checks.len(),
            result.rounds.len(),
            sum(|c| c.frames),
            sum(|c| c.acknowledged),
            sum(|c| c.missing),
            sum(|c| c.duplicates),
            sum(|c| c.not_frames),
            fault.map_or(String::new(), |f| format!(" (first: {f})")),
        ),
        met: result.stream_complete(),
    }
}

/// Per payload: the medians (min-max) of the ratios and of the latencies.
fn render_medians(o: &mut String, rounds: &[ReplicationRound]) {
    let _ = writeln!(o);
    for payload in payloads(rounds) {
        let of = |f: &dyn Fn(&ReplicationRound) -> f64| Stat::of(at(rounds, payload).map(f));
        let p99 = |l: &LatencySummary| ms(l.p99_ns);
        let _ = writeln!(
            o,
            "{payload} B: replicated / plain {}x, replicated / local {}x; acked frames/s plain {}, replicated {}, local {}; ACK p99 replicated {} ms, local {} ms; emergency ACK p99 replicated {} ms, local {} ms; PubAck p99 {} ms  ",
            of(&ReplicationRound::replicated_over_plain).show(1.0, 2),
            of(&ReplicationRound::replicated_over_local).show(1.0, 3),
            of(&|r| r.plain.acked_per_s).show(1.0, 0),
            of(&|r| r.replicated.acked_frames_per_s).show(1.0, 0),
            of(&|r| r.local.acked_frames_per_s).show(1.0, 0),
            of(&|r| p99(&r.replicated.ack_latency)).show(1.0, 1),
            of(&|r| p99(&r.local.ack_latency)).show(1.0, 1),
            of(&|r| p99(&r.replicated.emergency_only.ack_latency)).show(1.0, 1),
            of(&|r| p99(&r.local.emergency_only.ack_latency)).show(1.0, 1),
            of(&|r| p99(&r.plain.pub_ack_latency)).show(1.0, 1),
        );
    }
}

/// Where each window's time went: the daemon's pace, its sink's, and the CPU of each process.
fn render_cpu(o: &mut String, rounds: &[ReplicationRound], nproc: usize) {
    let _ = writeln!(
        o,
        "\nThe same windows: frames/s the daemon processed and JetStream acknowledged to its sink, frames whose ACK waited for JetStream's and the sink's room in flight (KiB) at the window's end, the stream's leader (\"sink's\" where the sink published through it at the window's end), and CPU in cores of the machine's {nproc} (the daemon, of it the sink's thread at nice 10 and the share of the window that thread was ready and waited for a CPU, the nats-servers together, the load client or the plain publisher):\n"
    );
    let _ = writeln!(o, "| payload | round | window | processed/s | published/s | unreplicated at end | room at end | leader | daemon | of it sink | sink waited for a CPU | nats-servers | client or publisher |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let show = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.2}"));
    for r in rounds {
        let p = &r.plain;
        let _ = writeln!(
            o,
            "| {} B | {} | plain | | {:.0} | | | {} | | | | {} | {} |",
            r.payload,
            r.run,
            p.acked_per_s,
            p.leader.as_deref().unwrap_or("?"),
            show(p.nats_cores),
            show(p.publisher_cores),
        );
        for w in [&r.replicated, &r.local] {
            render_sink_cpu(o, r, w, &show);
        }
    }
}

fn render_sink_cpu(
    o: &mut String,
    r: &ReplicationRound,
    w: &SinkWindow,
    show: &dyn Fn(Option<f64>) -> String,
) {
    let _ = writeln!(
        o,
        "| {} B | {} | {} | {:.0} | {:.0} | {} | {} | {}{} | {:.2} | {:.2} | {:.0} % | {} | {} |",
        r.payload,
        r.run,
        w.ack,
        w.processed_per_s,
        w.published_per_s,
        w.unreplicated_at_end,
        w.room_at_end >> 10,
        w.leader.as_deref().unwrap_or("?"),
        if w.at_leader_at_end { ", sink's" } else { "" },
        w.daemon_cores,
        w.sink_thread_cores,
        w.sink_runqueue_share * 100.0,
        show(w.nats_cores),
        show(w.client_cores),
    );
}
