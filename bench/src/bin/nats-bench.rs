//! `nats-bench`: the NATS sink's throughput beside a plain async-nats publisher with the same
//! window, against the same `nats-server` (`docs/scale-out.md`, results in `docs/bench/nats.md`).
//!
//! ```text
//! nats-server -js -sd /tmp/js -a 127.0.0.1 -p 4222 &
//! cargo build --release --bins
//! target/release/nats-bench --url nats://127.0.0.1:4222 --frames 400000 --payload 64
//! ```
//!
//! It fills an archive with `--frames` frames (the `aggregator` binary beside it, fed by
//! `uplink-sim` with 4 uplinks, then stopped), starts the daemon again on that archive with
//! `[sinks.nats]`, and times the sink publishing the backlog: from 10 % to 90 % of the frames
//! acknowledged, read from `/stats`. The plain publisher sends as many messages of the same size,
//! with the same headers (a `Nats-Msg-Id` each), the same window of PubAcks in flight, into a
//! stream of its own, timed over the same 10 %-90 % span. Each run uses new streams, deleted after.

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use clap::Parser;

/// The NATS sink's throughput beside a plain async-nats publisher.
#[derive(Debug, Parser)]
#[command(name = "nats-bench")]
struct Args {
    /// The nats-server (JetStream on) both publish to.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// Frames in the archive, and messages the plain publisher sends (a multiple of 4).
    #[arg(long, default_value_t = 400_000)]
    frames: u64,
    /// Payload bytes per frame.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// PubAcks in flight, for both.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Runs of each, alternating; every rate is printed, then the medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

mod daemon_child;
#[path = "../publisher.rs"]
mod publisher;

use daemon_child::{free_port, median, sibling, BenchResult, Daemon};
use publisher::publish_windowed;

/// The config's archive section over `archive`, and `rest`.
fn archive_at(archive: &Path, rest: &str) -> String {
    format!("[archive]\ndir = \"{}\"\n{rest}", archive.display())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match bench(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nats-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> BenchResult<()> {
    let dir = std::env::temp_dir().join(format!("nats-bench-{}", std::process::id()));
    let archive = dir.join("archive");
    fill_archive(args, &dir, &archive)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|err| err.to_string())?;
    let (mut plain, mut sink) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let rate = runtime.block_on(plain_publisher(args, run))?;
        println!("run {run}: plain publisher {rate:.0} msg/s");
        plain.push(rate);
        let rate = sink_run(args, &dir, &archive, run)?;
        println!("run {run}: NATS sink       {rate:.0} msg/s");
        sink.push(rate);
        runtime.block_on(delete_streams(&args.url, run))?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (plain, sink) = (median(&mut plain), median(&mut sink));
    println!(
        "median of {} runs, {} frames of {} B, window {}: plain {plain:.0} msg/s, sink {sink:.0} msg/s, sink/plain {:.2}",
        args.runs,
        args.frames,
        args.payload,
        args.window,
        sink / plain
    );
    Ok(())
}

/// Fills the archive with `frames` frames from 4 uplinks.
fn fill_archive(args: &Args, dir: &Path, archive: &Path) -> BenchResult<()> {
    std::fs::create_dir_all(dir).map_err(|err| err.to_string())?;
    let uplink = free_port()?;
    let daemon = Daemon::start(dir, uplink, &archive_at(archive, ""))?;
    let sim = Command::new(sibling("uplink-sim")?)
        .args(["--scenario", "saturate", "--uplinks", "4", "--replays", "0"])
        .args(["--frames", &(args.frames / 4).to_string()])
        .args(["--payload", &args.payload.to_string()])
        .args(["--require-all-acked", "--progress", "off"])
        .args(["--uplink", &format!("127.0.0.1:{uplink}")])
        .stdout(Stdio::null())
        .status()
        .map_err(|err| format!("cannot run uplink-sim: {err}"))?;
    if !sim.success() {
        return Err(format!("uplink-sim failed: {sim}"));
    }
    daemon.stop()
}

/// The 10 % and 90 % marks of `total`, and the rate between them.
struct Span {
    total: u64,
    at_10: Option<Instant>,
    at_90: Option<Instant>,
}

impl Span {
    fn new(total: u64) -> Span {
        Span {
            total,
            at_10: None,
            at_90: None,
        }
    }

    fn saw(&mut self, done: u64) {
        let now = Instant::now();
        if done * 10 >= self.total {
            self.at_10.get_or_insert(now);
        }
        if done * 10 >= self.total * 9 {
            self.at_90.get_or_insert(now);
        }
    }

    fn rate(&self) -> BenchResult<f64> {
        match (self.at_10, self.at_90) {
            (Some(from), Some(to)) if to > from => {
                Ok(0.8 * self.total as f64 / (to - from).as_secs_f64())
            }
            _ => Err("the 10 %-90 % span was not observed".into()),
        }
    }
}

/// Starts the daemon on the filled archive with the sink, and times it publishing the backlog.
fn sink_run(args: &Args, dir: &Path, archive: &Path, run: usize) -> BenchResult<f64> {
    let _ = std::fs::remove_dir_all(archive.join("sinks"));
    let sinks = format!(
        "[sinks.nats]\nurl = \"{}\"\nstream = \"BENCH_SINK_{run}\"\nsite = \"bench\"\n\
         subject = \"bench-sink-{run}.{{site}}.{{kind}}.{{source}}\"\nwindow = {}\n",
        args.url, args.window
    );
    let daemon = Daemon::start(dir, free_port()?, &archive_at(archive, &sinks))?;
    let mut span = Span::new(args.frames);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let [new, again] = daemon.stats(["nats_published", "nats_republished"])?;
        let published = new + again;
        span.saw(published);
        if published >= args.frames {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the sink published {published} in 600 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.stop()?;
    span.rate()
}

/// Publishes `frames` messages like the sink's, with a window of PubAcks, and times them.
async fn plain_publisher(args: &Args, run: usize) -> BenchResult<f64> {
    let client = async_nats::connect(args.url.as_str())
        .await
        .map_err(|err| err.to_string())?;
    let context = jetstream::new(client);
    context
        .create_stream(stream::Config {
            name: format!("BENCH_PLAIN_{run}"),
            subjects: vec![format!("bench-plain-{run}.>")],
            duplicate_window: Duration::from_secs(600),
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|err| err.to_string())?;
    let payload = Bytes::from(vec![0x5a; args.payload]);
    let mut span = Span::new(args.frames);
    let message = |seq: u64| {
        let source = seq % 4;
        let id = format!("bench.live.{source}.{seq}");
        let subject = format!("bench-plain-{run}.bench.live.{source}");
        (subject, sink_message(payload.clone(), id, seq))
    };
    let acked = |acked, _| span.saw(acked);
    publish_windowed(&context, args.frames, args.window, message, acked).await?;
    span.rate()
}

async fn delete_streams(url: &str, run: usize) -> BenchResult<()> {
    let client = async_nats::connect(url)
        .await
        .map_err(|err| err.to_string())?;
    let context = jetstream::new(client);
    for name in [format!("BENCH_PLAIN_{run}"), format!("BENCH_SINK_{run}")] {
        context
            .delete_stream(&name)
            .await
            .map_err(|err| format!("cannot delete stream {name}: {err}"))?;
    }
    Ok(())
}

/// A message like the sink's: `payload`, the `Nats-Msg-Id` `id`, and the sink's priority,
/// sequence and reception headers for a routine frame of sequence `seq` (not `Aggregator-Site`).
fn sink_message(payload: Bytes, id: String, seq: u64) -> PublishMessage {
    PublishMessage::build()
        .payload(payload)
        .message_id(id)
        .header("Aggregator-Priority", "routine")
        .header("Aggregator-Sequence", seq.to_string())
        .header("Aggregator-Received-Unix-Ns", seq.to_string())
}
