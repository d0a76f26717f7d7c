//! `query-bench`: asking the archive (`docs/http-api.md`, "Archive queries" and "Completeness") on
//! an archive of a day, beside the daemon's ingest. Results in `docs/bench/queries.md`.
//!
//! ```text
//! cargo build --release --bins
//! python3 bench/random-archive.py /tmp/day --mib 10240 --payload 1024 --shards 2 \
//!     --sources 50 --span 86400
//! target/release/query-bench --archive /tmp/day --shards 2
//! ```
//!
//! The daemon is the `aggregator` binary beside this one, its archive the given one (made by
//! `bench/random-archive.py`: sources `live:0` to `live:49` round robin over 2026-11-24, UTC).
//! Three measurements:
//!
//! - **range**: `GET /archive/frames?format=raw` of one source over 15 minutes, with the archive's
//!   files evicted from the page cache before each: the time to the first frame's bytes and to
//!   the last, the answer's bytes, and what the daemon read from the disk meanwhile (`read_bytes`
//!   of `/proc/PID/io`) beside the answer's and the index files' bytes;
//! - **completeness**: `GET /archive/completeness` of every source over the day, with the archive
//!   evicted and again with it cached;
//! - **passes**: `GET /archive/passes` of the day (the stations' passes `random-archive.py
//!   --stations` wrote), evicted and cached;
//! - **ingest**: the daemon's ingest (`uplink-sim --scenario saturate`, 8 replay feeds of 1 KiB
//!   frames, into the same archive) alone, and beside a loop of range queries and a loop of
//!   `ionice -c 3 nice -n 19 aggregator archive export --format parquet` of an hour, rounds interleaved, each
//!   with a daemon of its own and the archive taken back after it: frames archived per second
//!   over the middle of each run, medians.
//!
//! With `--json FILE` it also writes the figures, which `aggregator-bench run queries` (the
//! scenario `bench/scenarios/queries.toml`) judges against its targets.

// The throttle run's write limit, for `--write-limit-mib`; this uses a part of it.
#[allow(dead_code)]
#[path = "../blkio.rs"]
mod blkio;
mod daemon_child;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::domain::display::unix_ns_to_rfc3339;
use clap::Parser;
use daemon_child::{free_port, median, sibling, BenchResult, Daemon};

/// Asking the archive: time ranges, completeness, and ingest beside them.
#[derive(Debug, Parser)]
#[command(name = "query-bench")]
struct Args {
    /// The archive (made by bench/random-archive.py --sources 50 --span 86400).
    #[arg(long)]
    archive: PathBuf,
    /// Its shards (random-archive.py's --shards).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Its sources.
    #[arg(long, default_value_t = 50)]
    sources: u32,
    /// Range queries measured.
    #[arg(long, default_value_t = 10)]
    queries: u64,
    /// Rounds of ingest alone and beside the queries, interleaved (0: none).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of each ingest run.
    #[arg(long, default_value_t = 8)]
    ingest_s: u64,
    /// The niceness the exports beside ingest run at (`nice -n`), as docs/archive-tools.md
    /// advises beside a busy daemon.
    #[arg(long, default_value_t = 19)]
    export_nice: i32,
    /// The I/O scheduling class of the exports beside ingest (`ionice -c`): 3, idle, as
    /// docs/archive-tools.md advises beside a busy daemon; 2, best effort, the kernel's default.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=3))]
    export_ionice: u8,
    /// Where the exports beside ingest write their Parquet file (default: the temporary
    /// directory). docs/archive-tools.md advises a disk other than the archive's.
    #[arg(long, value_name = "DIR")]
    export_dir: Option<PathBuf>,
    /// Limits the daemon's own writes to the archive's disk to this many MiB/s (a cgroup v1 blkio
    /// throttle, as the throttle run's; root): ingest is then bound by a disk budget the queries
    /// and the export do not share, as on a machine whose cores are not short.
    #[arg(long, value_name = "MIB")]
    write_limit_mib: Option<u64>,
    /// Also write the figures, as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// The figures, as `--json` writes them.
#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    /// The archive's index files, bytes.
    index_bytes: u64,
    /// Each range query, in order.
    ranges: Vec<RangeFigures>,
    /// Completeness of the day, every source: its sources, and the time with the archive evicted
    /// from the page cache and cached.
    completeness_sources: usize,
    completeness_cold_ms: f64,
    completeness_warm_ms: f64,
    /// Passes of the day, every station: how many, and the time with the archive evicted and
    /// cached.
    passes: usize,
    passes_cold_ms: f64,
    passes_warm_ms: f64,
    /// Frames archived per second, medians of the rounds (absent with `--rounds 0`).
    ingest_alone: Option<f64>,
    ingest_beside: Option<f64>,
}

/// One range query: its first frame's and its last bytes' time, its frames and bytes, and the
/// bytes the daemon read for it.
#[derive(Debug, serde::Serialize)]
struct RangeFigures {
    first_ms: f64,
    all_ms: f64,
    frames: u64,
    answer_bytes: u64,
    read_bytes: u64,
}

/// 2026-11-24T00:00:00Z, the archive's first received time, in seconds.
const DAY: u64 = 1_795_478_400;
const QUARTER_HOUR: u64 = 15 * 60;

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("query-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> BenchResult<()> {
    let work = std::env::temp_dir().join(format!("query-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|err| err.to_string())?;
    // What the ingest rounds add is removed after each: the archive stays the day it was.
    let before = segment_lengths(&args.archive)?;
    let config = format!(
        "[archive]\ndir = {:?}\n[runtime]\nshards = {}\n",
        args.archive, args.shards
    );
    let daemon = Daemon::start(&work, free_port()?, &config)?;
    // The first reading of each segment writes its index: made before anything is timed.
    let (warmup, _) = timed_get(&daemon, &day_path("completeness"))?;
    let mut figures = Figures {
        index_bytes: index_bytes(&args.archive)?,
        ..Figures::default()
    };
    println!(
        "indexes: {} bytes; first completeness (indexes built): {warmup:?}",
        figures.index_bytes
    );
    figures.ranges = ranges(args, &daemon, figures.index_bytes)?;
    for cold in [true, false] {
        let (took, sources) = day_query(args, &daemon, &day_path("completeness"), "sources", cold)?;
        figures.completeness_sources = sources;
        match cold {
            true => figures.completeness_cold_ms = ms(took),
            false => figures.completeness_warm_ms = ms(took),
        }
    }
    for cold in [true, false] {
        let (took, passes) = day_query(args, &daemon, &day_path("passes"), "passes", cold)?;
        figures.passes = passes;
        match cold {
            true => figures.passes_cold_ms = ms(took),
            false => figures.passes_warm_ms = ms(took),
        }
    }
    daemon.stop()?;
    if args.rounds > 0 {
        let (alone, beside) = ingest(args, &work, &config, &before)?;
        figures.ingest_alone = Some(alone);
        figures.ingest_beside = Some(beside);
    }
    let _ = std::fs::remove_dir_all(&work);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&figures).map_err(|err| err.to_string())?;
        std::fs::write(path, json + "\n")
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    }
    Ok(())
}

/// `/archive/{query}` of the day.
fn day_path(query: &str) -> String {
    format!(
        "/archive/{query}?from={}&to={}",
        rfc3339(DAY),
        rfc3339(DAY + 86_400 - 1)
    )
}

/// Asks `path` of the day, with the archive evicted first when `cold`: its time, and the length
/// of the answer's array `items`.
fn day_query(
    args: &Args,
    daemon: &Daemon,
    path: &str,
    items: &str,
    cold: bool,
) -> BenchResult<(Duration, usize)> {
    if cold {
        evict(&args.archive)?;
    }
    let (took, body) = timed_get(daemon, path)?;
    let answer: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let count = answer[items].as_array().map_or(0, Vec::len);
    let label = if cold { "cold" } else { "warm" };
    println!("{path}, {label}: {took:?}, {count} {items}");
    Ok((took, count))
}

/// Query `i`'s path: a quarter of an hour of one source, spread over the day.
fn range_path(args: &Args, i: u64) -> String {
    let start = DAY + (i * 37 % 95) * QUARTER_HOUR + 60;
    let source = (i * 7) % u64::from(args.sources);
    format!(
        "/archive/frames?from={}&to={}&source=live:{source}&format=raw",
        rfc3339(start),
        rfc3339(start + QUARTER_HOUR)
    )
}

fn ranges(args: &Args, daemon: &Daemon, index_bytes: u64) -> BenchResult<Vec<RangeFigures>> {
    println!(
        "| query | first frame ms | all ms | frames | answer bytes | read bytes | read / answer |"
    );
    println!("|---|---|---|---|---|---|---|");
    let (mut firsts, mut ratios, mut figures) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.queries {
        evict(&args.archive)?;
        let before = read_bytes(daemon.pid())?;
        let answer = stream_get(daemon, &range_path(args, i))?;
        let read = read_bytes(daemon.pid())? - before;
        let ratio = read as f64 / answer.bytes as f64;
        println!(
            "| {i} | {:.1} | {:.1} | {} | {} | {read} | {ratio:.2} |",
            ms(answer.first),
            ms(answer.all),
            answer.frames,
            answer.bytes
        );
        firsts.push(ms(answer.first));
        ratios.push(ratio);
        figures.push(RangeFigures {
            first_ms: ms(answer.first),
            all_ms: ms(answer.all),
            frames: answer.frames,
            answer_bytes: answer.bytes,
            read_bytes: read,
        });
    }
    println!(
        "range: first frame median {:.1} ms, max {:.1} ms; read / answer median {:.2}, max {:.2} \
         (the target: at most 2 + the indexes' {index_bytes} bytes / answer)",
        median(&mut firsts.clone()),
        firsts.iter().copied().fold(0.0, f64::max),
        median(&mut ratios.clone()),
        ratios.iter().copied().fold(0.0, f64::max)
    );
    Ok(figures)
}

/// Ingest alone and beside queries and exports: the medians of the rounds, frames per second.
/// Each round has a daemon of its own, and the archive is taken back to `before` after it: the
/// rounds together never need more disk than one round writes (a fast disk fills otherwise, and
/// the daemon then holds its frames until space comes back).
fn ingest(
    args: &Args,
    work: &Path,
    config: &str,
    before: &HashMap<PathBuf, u64>,
) -> BenchResult<(f64, f64)> {
    let (mut alone, mut beside) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        let uplink = free_port()?;
        let daemon = Daemon::start(work, uplink, config)?;
        let throttle = match args.write_limit_mib {
            Some(mib) => {
                let pid = i32::try_from(daemon.pid()).map_err(|err| err.to_string())?;
                Some(blkio::WriteThrottle::apply(pid, &args.archive, mib << 20)?)
            }
            None => None,
        };
        let rates = ingest_round(args, &daemon, uplink, round);
        let stopped = daemon.stop();
        if let Some(written) = throttle.as_ref().and_then(|t| t.written_bytes()) {
            println!(
                "  the throttle counted {} MiB of the daemon's writes",
                written >> 20
            );
        }
        drop(throttle);
        restore(&args.archive, before)?;
        stopped?;
        for (with, rate) in rates? {
            match with {
                true => beside.push(rate),
                false => alone.push(rate),
            }
        }
    }
    let (alone, beside) = (median(&mut alone), median(&mut beside));
    println!(
        "ingest: alone {alone:.0} frames/s, beside queries and an export {beside:.0} ({:.2} x)",
        beside / alone
    );
    Ok((alone, beside))
}

/// One round: ingest alone and beside queries and exports, as (beside, frames/s) pairs.
fn ingest_round(
    args: &Args,
    daemon: &Daemon,
    uplink: u16,
    round: usize,
) -> BenchResult<[(bool, f64); 2]> {
    let mut rates = [(false, 0.0); 2];
    // Which comes first alternates, so that the machine's drift falls on both.
    for (slot, with) in rates.iter_mut().zip([round % 2 == 1, round % 2 == 0]) {
        let rate = match with {
            false => ingest_rate(args, daemon, uplink)?,
            true => {
                let stop = Arc::new(AtomicBool::new(false));
                let (queried, exported) = (Arc::default(), Arc::default());
                let queries = spawn_queries(args, daemon, &stop, &queried);
                let exports = spawn_exports(args, &stop, &exported)?;
                let rate = ingest_rate(args, daemon, uplink);
                stop.store(true, Ordering::Relaxed);
                let _ = queries.join();
                let _ = exports.join();
                println!(
                    "  beside: {} range queries answered, {} exports of an hour written",
                    queried.load(Ordering::Relaxed),
                    exported.load(Ordering::Relaxed)
                );
                rate?
            }
        };
        let label = if with { "beside" } else { "alone" };
        println!("ingest round {round} {label}: {rate:.0} frames/s");
        *slot = (with, rate);
    }
    Ok(rates)
}

/// Frames archived per second over the middle of a saturating run of `args.ingest_s` seconds.
fn ingest_rate(args: &Args, daemon: &Daemon, uplink: u16) -> BenchResult<f64> {
    let mut sim = Command::new(sibling("uplink-sim")?)
        .args(["--scenario", "saturate", "--uplinks", "0", "--replays", "8"])
        .args(["--payload", "1024", "--duration"])
        .arg(args.ingest_s.to_string())
        .arg("--uplink")
        .arg(format!("127.0.0.1:{uplink}"))
        .arg("--replay")
        .arg(daemon.replay_address())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start uplink-sim: {err}"))?;
    let window = Duration::from_secs(args.ingest_s) / 2;
    std::thread::sleep(window / 2);
    let [start] = daemon.stats(["frames_archived"])?;
    let at = Instant::now();
    std::thread::sleep(window);
    let [end] = daemon.stats(["frames_archived"])?;
    let rate = (end - start) as f64 / at.elapsed().as_secs_f64();
    let status = sim.wait().map_err(|err| err.to_string())?;
    match status.success() {
        true => Ok(rate),
        false => Err(format!("uplink-sim exited with {status}")),
    }
}

/// Range queries one after another until `stop`.
fn spawn_queries(
    args: &Args,
    daemon: &Daemon,
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let paths: Vec<String> = (0..100).map(|i| range_path(args, i)).collect();
    let monitor = daemon.monitor_port();
    let (stop, done) = (Arc::clone(stop), Arc::clone(done));
    std::thread::spawn(move || {
        for path in paths.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if get(monitor, path).is_ok() {
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// Exports of an hour to Parquet, read-only beside the daemon, one after another until `stop`,
/// each under `ionice` and `nice`.
fn spawn_exports(
    args: &Args,
    stop: &Arc<AtomicBool>,
    done: &Arc<AtomicU64>,
) -> BenchResult<std::thread::JoinHandle<()>> {
    let (exe, nice) = (sibling("aggregator")?, args.export_nice);
    let ionice = args.export_ionice;
    let (archive, stop, done) = (args.archive.clone(), Arc::clone(stop), Arc::clone(done));
    let out = args
        .export_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("query-bench-{}.parquet", std::process::id()));
    Ok(std::thread::spawn(move || {
        for hour in (0..24).cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let from = DAY + hour * 3600;
            let exported = Command::new("ionice")
                .args(["-c", &ionice.to_string(), "nice", "-n", &nice.to_string()])
                .arg(&exe)
                .args(["archive", "export"])
                .arg(&archive)
                .args(["--format", "parquet", "--from", &rfc3339(from)])
                .args(["--to", &rfc3339(from + 3599), "-o"])
                .arg(&out)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if exported.is_ok_and(|s| s.success()) {
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
        let _ = std::fs::remove_file(&out);
    }))
}

/// What a streamed answer took: to its first body bytes and to its end, and its frames and bytes.
struct Answer {
    first: Duration,
    all: Duration,
    frames: u64,
    bytes: u64,
}

/// `GET path` of a `format=raw` answer, read as it streams.
fn stream_get(daemon: &Daemon, path: &str) -> BenchResult<Answer> {
    let at = Instant::now();
    let (mut reader, _) = request(daemon.monitor_port(), path)?;
    let mut first = None;
    let mut body = Vec::new();
    while let Some(chunk) = next_chunk(&mut reader)? {
        first.get_or_insert_with(|| at.elapsed());
        body.extend_from_slice(&chunk);
    }
    let all = at.elapsed();
    let mut frames = 0;
    let mut rest = &body[..];
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        rest = tail.get(len..).ok_or("a raw answer cut inside a payload")?;
        frames += 1;
    }
    Ok(Answer {
        first: first.unwrap_or(all),
        all,
        frames,
        bytes: body.len() as u64,
    })
}

/// `GET path`, whole: how long it took, and the body.
fn timed_get(daemon: &Daemon, path: &str) -> BenchResult<(Duration, Vec<u8>)> {
    let at = Instant::now();
    let body = get(daemon.monitor_port(), path)?;
    Ok((at.elapsed(), body))
}

fn get(monitor: u16, path: &str) -> BenchResult<Vec<u8>> {
    let (mut reader, length) = request(monitor, path)?;
    if let Some(length) = length {
        let mut body = vec![0; length];
        reader
            .read_exact(&mut body)
            .map_err(|err| err.to_string())?;
        return Ok(body);
    }
    let mut body = Vec::new();
    while let Some(chunk) = next_chunk(&mut reader)? {
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends `GET path` and reads the answer's head, which must be a 200: its body's length, or
/// `None` for a chunked body.
fn request(monitor: u16, path: &str) -> BenchResult<(BufReader<TcpStream>, Option<usize>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", monitor)).map_err(|err| err.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )
    .map_err(|err| err.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|err| err.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let head = head.to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok());
    match head.starts_with("http/1.1 200") {
        true => Ok((reader, length)),
        false => Err(format!("GET {path}: {head}")),
    }
}

/// The next chunk of a chunked body; `None` after the last.
fn next_chunk(reader: &mut BufReader<TcpStream>) -> BenchResult<Option<Vec<u8>>> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|err| err.to_string())?;
    let size =
        usize::from_str_radix(line.trim(), 16).map_err(|_| format!("a chunk size of {line:?}"))?;
    let mut chunk = vec![0; size + 2];
    reader
        .read_exact(&mut chunk)
        .map_err(|err| err.to_string())?;
    chunk.truncate(size);
    Ok((size > 0).then_some(chunk))
}

/// Evicts every file of the archive from the page cache (`POSIX_FADV_DONTNEED`), and nothing
/// else: dropping the whole cache would also have the daemon's own code read back from the disk,
/// which is not the query's doing.
fn evict(archive: &Path) -> BenchResult<()> {
    for path in archive_files(archive)? {
        let file = std::fs::File::open(&path).map_err(|err| err.to_string())?;
        // Dirty pages stay cached through DONTNEED, and an archive just written is still being
        // written back: both would fall on the first timed query.
        file.sync_data()
            .map_err(|err| format!("cannot sync {}: {err}", path.display()))?;
        // SAFETY: posix_fadvise reads no memory; `file` keeps the descriptor open for the call.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    Ok(())
}

/// The bytes process `pid` has had read from storage.
fn read_bytes(pid: u32) -> BenchResult<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).map_err(|err| err.to_string())?;
    io.lines()
        .find_map(|line| line.strip_prefix("read_bytes: "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "no read_bytes in /proc/PID/io".into())
}

/// Every file of the archive, every shard's.
fn archive_files(archive: &Path) -> BenchResult<Vec<PathBuf>> {
    let (mut files, mut dirs) = (Vec::new(), vec![archive.to_path_buf()]);
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|err| err.to_string())? {
            let path = entry.map_err(|err| err.to_string())?.path();
            match path.is_dir() {
                true => dirs.push(path),
                false => files.push(path),
            }
        }
    }
    Ok(files)
}

/// Each segment of the archive, with its length.
fn segment_lengths(archive: &Path) -> BenchResult<HashMap<PathBuf, u64>> {
    archive_files(archive)?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "seg"))
        .map(|path| {
            let len = path.metadata().map_err(|err| err.to_string())?.len();
            Ok((path, len))
        })
        .collect()
}

/// Takes the archive back to the segments and lengths of `before`: the ingest runs' segments are
/// removed, and the newest segment of each shard, which the daemon went on writing, is cut back.
/// The indexes of both go too (an index is a cache: the next reader writes it again).
fn restore(archive: &Path, before: &HashMap<PathBuf, u64>) -> BenchResult<()> {
    let mut changed = Vec::new();
    for (segment, len) in segment_lengths(archive)? {
        match before.get(&segment) {
            None => std::fs::remove_file(&segment).map_err(|err| err.to_string())?,
            Some(&was) if was < len => std::fs::OpenOptions::new()
                .write(true)
                .open(&segment)
                .and_then(|file| file.set_len(was))
                .map_err(|err| format!("cannot cut {} back: {err}", segment.display()))?,
            Some(_) => continue,
        }
        changed.push(segment.with_extension("index"));
    }
    for index in changed.iter().filter(|index| index.exists()) {
        std::fs::remove_file(index).map_err(|err| err.to_string())?;
    }
    Ok(())
}

/// The bytes of the archive's index files.
fn index_bytes(archive: &Path) -> BenchResult<u64> {
    let indexes = archive_files(archive)?
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "index"));
    Ok(indexes
        .filter_map(|path| path.metadata().ok())
        .map(|m| m.len())
        .sum())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Seconds since the epoch as RFC 3339 UTC.
fn rfc3339(seconds: u64) -> String {
    unix_ns_to_rfc3339(seconds * 1_000_000_000)
}
