//! The replication run's report: each round's windows, the ratios by payload, where the machine's
//! CPU went, and the target on `replicated / plain`.

use std::fmt::Write as _;

use crate::control::LatencySummary;
use crate::emergency;
use crate::results::{Plan, ReplicationResult, ReplicationRound, SinkWindow};
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

/// `replicated / plain` against `replicated_over_plain`, per payload (the median of the rounds'
/// ratios); a skipped run is a target not met, never one passed.
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
        let ratios: Vec<f64> = at(&result.rounds, payload)
            .map(ReplicationRound::replicated_over_plain)
            .collect();
        let name = format!(
            "{payload} B acknowledged frames/s, `ack = \"replicated\"` / plain publisher (median of {} rounds)",
            ratios.len()
        );
        let median = Stat::of(ratios).median;
        out.extend(goals.judge("replicated_over_plain", name, median, "x"));
    }
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
        "\nReplication ({n} `nats-server` nodes on loopback, {server}; an R{n} stream per window; {w} publishes awaiting their PubAck, plain publisher and sinks alike; plain: {m} messages, first publish to last PubAck; daemons: `identity = \"fleet\"`, {c} saturating uplinks and {e} emergency-only sources ({f} frames/s each), ACKs counted at the load client over {ws:.1} s after {wu:.1} s; latencies p50 / p99 in ms):\n",
        n = settings.nodes,
        server = result.server.as_deref().unwrap_or("unknown"),
        w = settings.window,
        m = settings.messages,
        c = plan.connections,
        e = emergency::SOURCES,
        f = emergency::FRAMES_PER_S,
        ws = plan.measure.as_secs_f64(),
        wu = plan.warmup.as_secs_f64(),
    );
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
        "\nThe same windows: frames/s the daemon processed and JetStream acknowledged to its sink, frames whose ACK waited for JetStream's at the window's end, the stream's leader, and CPU in cores of the machine's {nproc} (the daemon, of it the sink's thread at nice 10 and the share of the window that thread was ready and waited for a CPU, the nats-servers together, the load client or the plain publisher):\n"
    );
    let _ = writeln!(o, "| payload | round | window | processed/s | published/s | unreplicated at end | leader | daemon | of it sink | sink waited for a CPU | nats-servers | client or publisher |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    let show = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.2}"));
    for r in rounds {
        let p = &r.plain;
        let _ = writeln!(
            o,
            "| {} B | {} | plain | | {:.0} | | {} | | | | {} | {} |",
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
        "| {} B | {} | {} | {:.0} | {:.0} | {} | {} | {:.2} | {:.2} | {:.0} % | {} | {} |",
        r.payload,
        r.run,
        w.ack,
        w.processed_per_s,
        w.published_per_s,
        w.unreplicated_at_end,
        w.leader.as_deref().unwrap_or("?"),
        w.daemon_cores,
        w.sink_thread_cores,
        w.sink_runqueue_share * 100.0,
        show(w.nats_cores),
        show(w.client_cores),
    );
}
