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

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
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

type BenchResult<T> = Result<T, String>;

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

fn median(rates: &mut [f64]) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A binary built beside this one.
fn sibling(name: &str) -> BenchResult<PathBuf> {
    let exe = std::env::current_exe().map_err(|err| err.to_string())?;
    let path = exe.with_file_name(name);
    match path.is_file() {
        true => Ok(path),
        false => Err(format!("{} is missing: cargo build --bins", path.display())),
    }
}

fn free_port() -> BenchResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|err| err.to_string())?;
    Ok(listener.local_addr().map_err(|err| err.to_string())?.port())
}

/// A daemon child, killed if the bench ends early.
struct Daemon {
    child: Child,
    monitor: u16,
}

impl Daemon {
    /// Starts `aggregator` with `sinks` appended to a config over `archive`; waits until its
    /// monitor answers.
    fn start(dir: &Path, archive: &Path, uplink: u16, sinks: &str) -> BenchResult<Daemon> {
        let (replay, monitor) = (free_port()?, free_port()?);
        let config = dir.join("aggregator.toml");
        let text = format!(
            "[uplink]\nlisten = \"127.0.0.1:{uplink}\"\n[replay]\nlisten = \"127.0.0.1:{replay}\"\n\
             [monitor]\nlisten = \"127.0.0.1:{monitor}\"\n[log]\nlevel = \"warn\"\n\
             [archive]\ndir = \"{}\"\n{sinks}",
            archive.display()
        );
        std::fs::write(&config, text).map_err(|err| err.to_string())?;
        let child = Command::new(sibling("aggregator")?)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start aggregator: {err}"))?;
        let daemon = Daemon { child, monitor };
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.stats(["frames_archived"]).is_err() {
            if Instant::now() > deadline {
                return Err("the daemon's monitor did not answer in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(daemon)
    }

    /// Counters from `/stats`, each of `names` once.
    fn stats<const N: usize>(&self, names: [&str; N]) -> BenchResult<[u64; N]> {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.monitor)).map_err(|err| err.to_string())?;
        write!(stream, "GET /stats HTTP/1.0\r\n\r\n").map_err(|err| err.to_string())?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .map_err(|err| err.to_string())?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let json: serde_json::Value = serde_json::from_str(body).map_err(|err| err.to_string())?;
        let mut values = [0; N];
        for (value, name) in values.iter_mut().zip(names) {
            *value = json["stats"][name]
                .as_u64()
                .ok_or_else(|| format!("no stats.{name} in /stats"))?;
        }
        Ok(values)
    }

    /// SIGTERM, and waits for the drain.
    fn stop(mut self) -> BenchResult<()> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|err| err.to_string())?;
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = self.child.wait().map_err(|err| err.to_string())?;
        match status.success() {
            true => Ok(()),
            false => Err(format!("the daemon exited with {status}")),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Fills the archive with `frames` frames from 4 uplinks.
fn fill_archive(args: &Args, dir: &Path, archive: &Path) -> BenchResult<()> {
    std::fs::create_dir_all(dir).map_err(|err| err.to_string())?;
    let uplink = free_port()?;
    let daemon = Daemon::start(dir, archive, uplink, "")?;
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
    let daemon = Daemon::start(dir, archive, free_port()?, &sinks)?;
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
    let mut in_flight = VecDeque::with_capacity(args.window);
    let mut span = Span::new(args.frames);
    let mut acked = 0;
    for seq in 0..args.frames {
        if in_flight.len() == args.window {
            if let Some(ack) = in_flight.pop_front() {
                let ack: jetstream::context::PublishAckFuture = ack;
                ack.into_future().await.map_err(|err| err.to_string())?;
                acked += 1;
                span.saw(acked);
            }
        }
        let source = seq % 4;
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(format!("bench.live.{source}.{seq}"))
            .header("Aggregator-Priority", "routine")
            .header("Aggregator-Sequence", seq.to_string())
            .header("Aggregator-Received-Unix-Ns", seq.to_string());
        let subject = format!("bench-plain-{run}.bench.live.{source}");
        let ack = context
            .send_publish(subject, message)
            .await
            .map_err(|err| err.to_string())?;
        in_flight.push_back(ack);
    }
    for ack in in_flight {
        ack.into_future().await.map_err(|err| err.to_string())?;
        acked += 1;
        span.saw(acked);
    }
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
