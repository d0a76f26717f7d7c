//! The consumers run: followers of the durable daemon's archive, from its start, while the main
//! runs' uplinks saturate it (issue 25).
//!
//! Followers read the segment files on a thread of their own, never the pipeline's memory, so
//! ingest should keep at least 0.9 of its pace without them, and each follower should receive
//! every frame: its count equals what the archive stored. So each round measures two fresh
//! daemons, one without followers and one with [`CONSUMERS`] of them (a child of their own,
//! `--role follow`, subscribed before the first frame arrives), over the same window. Then the load
//! stops, the followers catch up with what the archive stored (how long that takes is reported:
//! on a machine where they share the cores with the load, they fall behind), and a SIGTERM ends the
//! daemon: every follower receives the daemon's END and reports how many frames it received.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregator::archive::read::Start;
use aggregator::follow::client::Follower;
use aggregator::follow::protocol::Subscription;

use crate::child::{self, ChildProc};
use crate::control::{emit, ChildMsg, Followed};
use crate::results::{ConsumersRound, ConsumersWindow, Plan, CONSUMERS};
use crate::Variant;
use tokio::sync::mpsc::UnboundedReceiver;

/// Followers of the run, as in the issue.
/// The longest the followers may take to catch up once the load stops.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);
/// Payload bytes per frame: the main runs' smaller size, where the daemon moves the most frames.
pub const PAYLOAD: usize = 64;

/// Runs `plan.runs` rounds, each a window without followers and one with them.
pub fn run(exe: &Path, plan: &Plan) -> Result<Vec<ConsumersRound>, String> {
    let payload = PAYLOAD;
    (1..=plan.runs)
        .map(|round| {
            eprintln!(
                "[bench] consumers: {CONSUMERS} followers from the start, {payload} B, round {round}/{}",
                plan.runs
            );
            Ok(ConsumersRound {
                without: window(exe, plan, payload, 0)?,
                with: window(exe, plan, payload, CONSUMERS)?,
            })
        })
        .collect()
}

/// A fresh durable daemon with `consumers` followers subscribed from its start, the load client's
/// uplinks, a measurement window, then a SIGTERM and the followers' counts.
fn window(
    exe: &Path,
    plan: &Plan,
    payload: usize,
    consumers: usize,
) -> Result<ConsumersWindow, String> {
    let sources = plan.connections;
    let limit = child::child_limit(plan);
    let (mut server, listening) =
        child::start_server_listening(exe, plan, Variant::Daemon, sources, limit)?;
    let addr = listening.addr;
    let mut followers = match (consumers, listening.follow) {
        (0, _) => None,
        (_, Some(follow)) => Some(start_followers(exe, follow, consumers, limit)?),
        (_, None) => return Err("the durable daemon serves no followers".into()),
    };
    let mut client = child::start_client(exe, plan, addr, sources, payload, false, 0)?;
    child::wait_for_sources(&mut server, sources + 1)?;
    std::thread::sleep(plan.warmup);
    let start = server.counts("START")?;
    std::thread::sleep(plan.measure);
    let end = server.counts("END")?;
    client.close_stdin();
    client.wait(Duration::from_secs(10))?;
    child::wait_until(&mut server, "every accepted frame stored", |c| {
        c.in_flight == 0
    })?;
    let stored = server.counts("COUNTS")?.archived.unwrap_or(0);
    let caught_up_s = match &mut followers {
        Some(followers) => Some(catch_up(followers, stored)?),
        None => None,
    };
    let drain = child::terminate(server, client, sources, payload, &start, &end)?;
    let followed = match followers {
        None => None,
        Some(mut followers) => {
            let report = match followers.recv(Duration::from_secs(60))? {
                ChildMsg::Followed(report) => report,
                other => return Err(format!("followers: expected their counts, got {other:?}")),
            };
            followers.wait(Duration::from_secs(10))?;
            Some(report)
        }
    };
    Ok(ConsumersWindow {
        frames_per_s: drain.frames_per_s_before,
        archived: drain.archived_total,
        drain_clean: drain.clean(),
        caught_up_s,
        followed,
    })
}

/// Waits until every follower has received `stored` frames; returns how long that took.
fn catch_up(followers: &mut ChildProc, stored: u64) -> Result<f64, String> {
    let started = Instant::now();
    loop {
        let progress = followers.ask("COUNTS", "their counts", |msg| match msg {
            ChildMsg::Followed(progress) => Ok(progress),
            other => Err(other),
        })?;
        if let Some(err) = progress.first_error {
            return Err(format!("a follower failed: {err}"));
        }
        if progress.frames.iter().all(|&frames| frames >= stored) {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > CATCH_UP_LIMIT {
            return Err(format!(
                "the followers had {:?} of {stored} frames after {CATCH_UP_LIMIT:?}",
                progress.frames
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the followers' child and waits until every follower has subscribed.
fn start_followers(
    exe: &Path,
    follow: SocketAddr,
    consumers: usize,
    limit: Duration,
) -> Result<ChildProc, String> {
    let args = [
        "--role",
        "follow",
        "--addr",
        &follow.to_string(),
        "--connections",
        &consumers.to_string(),
        "--limit-secs",
        &limit.as_secs().to_string(),
    ]
    .map(String::from);
    let followers = ChildProc::spawn(exe, &args, "followers".into())?;
    match followers.recv(Duration::from_secs(20))? {
        ChildMsg::Connected {
            failed,
            first_error,
            ..
        } if failed > 0 => Err(format!(
            "followers: {failed} could not subscribe; first: {}",
            first_error.unwrap_or_default()
        )),
        ChildMsg::Connected { .. } => Ok(followers),
        other => Err(format!("followers: expected Connected, got {other:?}")),
    }
}

/// The `--role follow` child: `consumers` followers of the archive at `addr`, from its start, each
/// counting frames until the daemon's END; `COUNTS` on `commands` asks how far they are.
pub async fn follow(addr: SocketAddr, consumers: usize, mut commands: UnboundedReceiver<String>) {
    let from_start = Subscription::new(Start::Oldest, Vec::new(), None);
    let mut subscribed = Vec::with_capacity(consumers);
    let mut first_error = None;
    for _ in 0..consumers {
        match Follower::subscribe(addr, &from_start, None).await {
            Ok(follower) => subscribed.push(follower),
            Err(err) => {
                first_error.get_or_insert(err.to_string());
            }
        }
    }
    emit(&ChildMsg::Connected {
        sources: subscribed.len() as u64,
        failed: (consumers - subscribed.len()) as u64,
        first_error: first_error.clone(),
    });
    let counts: Vec<Arc<AtomicU64>> = (0..subscribed.len()).map(|_| Arc::default()).collect();
    let counting: Vec<_> = subscribed
        .into_iter()
        .zip(&counts)
        .map(|(mut follower, count)| {
            let count = Arc::clone(count);
            tokio::spawn(async move {
                loop {
                    match follower.next().await {
                        Ok(Some(_)) => count.fetch_add(1, Relaxed),
                        Ok(None) => return None,
                        Err(err) => return Some(err.to_string()),
                    };
                }
            })
        })
        .collect();
    let counts_now = {
        let counts = counts.clone();
        move || counts.iter().map(|c| c.load(Relaxed)).collect::<Vec<u64>>()
    };
    // Answers `COUNTS` until the process ends (the parent closes stdin after the last report).
    tokio::spawn(async move {
        while let Some(command) = commands.recv().await {
            if command.trim() == "COUNTS" {
                emit(&ChildMsg::Followed(Followed {
                    frames: counts_now(),
                    first_error: None,
                }));
            }
        }
    });
    for task in counting {
        let error = task
            .await
            .unwrap_or_else(|err| Some(format!("follower task failed: {err}")));
        if let Some(error) = error {
            first_error.get_or_insert(error);
        }
    }
    let frames = counts.iter().map(|c| c.load(Relaxed)).collect();
    emit(&ChildMsg::Followed(Followed {
        frames,
        first_error,
    }));
}
