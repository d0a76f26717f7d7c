//! Micro-benchmarks of the daemon's hot paths, without a framework (nothing to compile for CI's
//! `clippy --all-targets`): each runs its loop for about a second after a warm-up and prints the
//! time per iteration and per frame.
//!
//! ```text
//! cargo bench -p aggregator-bench --bench hot_paths            # every one
//! cargo bench -p aggregator-bench --bench hot_paths -- walk    # those whose name holds "walk"
//! ```
//!
//! - `walk_data/N`: the ingest protocol's walk over a read of N-byte DATA messages
//!   (`walk_messages`, then `ClientMessage::view` of each), as a connection's intake does it.
//! - `segment_encode/N`: a batch of N-byte frames encoded as one FRAMES record (`encode_frames`),
//!   as the archive writer does it.
//!
//! - `fan_in_admission/N`: a read's worth of batches of N-byte frames staged into the priority
//!   fan-in (`Ingress::stage`) and taken out in priority order (`FanIn::next`), as a connection and
//!   its shard's processor do it.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use aggregator::archive::format::encode_frames;
use aggregator::domain::ledger::Ledger;
use aggregator::domain::source::Source;
use aggregator::pipeline::fan_in::{priority_fan_in, FanIn, Ingress};
use aggregator::protocol::ingest::{encode_data, walk_messages, ClientMessage, MessageView};
use aggregator::{Batch, Priority, SourceKind, Stats};
use bytes::{Bytes, BytesMut};

/// Frames per iteration: about one 64 KiB read of 1 KiB frames, or a batch of small ones.
const FRAMES: usize = 512;

/// Runs `f` for about a second after a warm-up; prints ns per iteration and per frame.
fn bench(name: &str, filter: Option<&str>, mut f: impl FnMut() -> usize) {
    if filter.is_some_and(|f| !name.contains(f)) {
        return;
    }
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_millis(200) {
        black_box(f());
    }
    let (start, mut iterations, mut frames) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(1) {
        frames += black_box(f()) as u64;
        iterations += 1;
    }
    let ns = start.elapsed().as_nanos() as f64;
    println!(
        "{name:<24} {:>10.0} ns/iter {:>8.1} ns/frame ({iterations} iterations)",
        ns / iterations as f64,
        ns / frames.max(1) as f64
    );
}

/// `FRAMES` DATA messages of `payload` bytes, as a client writes them.
fn data_read(payload: usize) -> BytesMut {
    let mut buf = BytesMut::new();
    let body = vec![0xA5; payload];
    for sequence in 0..FRAMES as u64 {
        let priority = match sequence % 100 {
            0 => Priority::Emergency,
            _ => Priority::Routine,
        };
        encode_data(&mut buf, priority, sequence + 1, &body);
    }
    buf
}

fn walk_data(buf: &[u8]) -> usize {
    let mut frames = 0;
    let walk = walk_messages(buf, 1 << 20, |_, body| match ClientMessage::view(body) {
        Ok(MessageView::Data { .. }) => {
            frames += 1;
            ControlFlow::Continue(())
        }
        _ => ControlFlow::Break(()),
    });
    assert_eq!(walk.end, buf.len(), "every message is DATA");
    frames
}

fn segment_encode(out: &mut Vec<u8>, payloads: &[Vec<u8>]) -> usize {
    out.clear();
    let frames = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u64 + 1, &p[..]));
    encode_frames(out, SourceKind::LiveUplink, Priority::Routine, 7, 1, frames);
    payloads.len()
}

/// Batches of 8 frames, one in ten an emergency: what a connection stages per read.
fn batches(source: &Arc<Source>, chunk: &Bytes, payload: usize) -> Vec<Batch> {
    (0..FRAMES / 8)
        .map(|b| {
            let priority = match b % 10 {
                0 => Priority::Emergency,
                _ => Priority::Routine,
            };
            let mut batch = Batch::new(Arc::clone(source), priority, Instant::now(), 8);
            for f in 0..8 {
                let sequence = (b * 8 + f) as u64 + 1;
                batch.push(sequence, f * payload..(f + 1) * payload);
            }
            batch.attach(chunk.clone());
            batch
        })
        .collect()
}

/// Stages `FRAMES` frames in batches into the two lanes and takes every one out in priority order.
fn fan_in_admission(ingress: &Ingress, fan_in: &mut FanIn, batches: Vec<Batch>) -> usize {
    ingress.stage(batches).expect("the fan-in is open");
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = 0;
    while frames < FRAMES {
        match pin!(fan_in.next()).poll(&mut cx) {
            Poll::Ready(Some(admitted)) => frames += admitted.item.len(),
            _ => panic!("an admitted batch is ready at once"),
        }
    }
    frames
}

fn main() {
    // `cargo bench` passes `--bench`; the first other argument filters by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let filter = filter.as_deref();
    for payload in [64, 1024] {
        let read = data_read(payload);
        bench(&format!("walk_data/{payload}"), filter, || walk_data(&read));
    }
    for payload in [64, 1024] {
        let source = Arc::new(Source::new(
            7,
            SourceKind::LiveUplink,
            "127.0.0.1:9".parse().expect("an address"),
            Arc::new(Ledger::new(None)),
        ));
        let chunk = Bytes::from(vec![0xA5; 8 * payload]);
        let (ingress, mut fan_in) = priority_fan_in(FRAMES, FRAMES, 64, Stats::new());
        bench(&format!("fan_in_admission/{payload}"), filter, || {
            fan_in_admission(&ingress, &mut fan_in, batches(&source, &chunk, payload))
        });
    }
    for payload in [64, 1024] {
        let payloads = vec![vec![0x5A; payload]; FRAMES];
        let mut out = Vec::with_capacity(FRAMES * (payload + 64));
        bench(&format!("segment_encode/{payload}"), filter, || {
            segment_encode(&mut out, &payloads)
        });
    }
}
