//! Shards: the pipeline once per core, sharing nothing on the data path.
//!
//! One processor, one archive writer and one fan-in serialise every frame, so a daemon with one
//! chain uses about two cores however many it has. A shard is a whole chain (fan-in, processor,
//! archive writer with its own segments) on a thread of its own running a `current_thread`
//! runtime, as Redpanda and ScyllaDB give each core its partitions, queues and files. A source
//! belongs to one shard, chosen from its (kind, id) ([`crate::domain::shard::shard_of`]), and its connection is served
//! on that shard's thread once it has registered: its frames never cross a thread between the
//! socket and the archive, and per-source order, resume points and duplicates are exactly what
//! they are with one shard. Only control messages (registration, stats, the drain) cross shards.
//!
//! Priority needs no coordination: each shard processes its emergencies before its routine
//! frames, and nothing a shard does waits for another shard, so no shard's emergency waits behind
//! any shard's routine frames.

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The shards' threads, each running a `current_thread` runtime until [`ShardThreads::stop`].
#[derive(Debug)]
pub(crate) struct ShardThreads {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl ShardThreads {
    /// Starts `shards` threads (`shard-0`, `shard-1`, ...), each with a runtime that looks at its
    /// sockets every `event_interval` tasks (`runtime.event_interval`).
    pub(crate) fn start(shards: usize, event_interval: u32) -> io::Result<ShardThreads> {
        let mut started = ShardThreads {
            handles: Vec::with_capacity(shards),
            stops: Vec::with_capacity(shards),
            threads: Vec::with_capacity(shards),
        };
        for shard in 0..shards {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .event_interval(event_interval)
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            started.handles.push(runtime.handle().clone());
            started.stops.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("shard-{shard}"))
                .spawn(move || {
                    let _ = runtime.block_on(stopped);
                })?;
            started.threads.push(thread);
        }
        Ok(started)
    }

    /// The runtimes, to spawn a shard's tasks on: `handles()[k]` is shard `k`'s.
    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Runs `task` on shard `shard`'s thread.
    pub(crate) fn spawn<F>(&self, shard: usize, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handles[shard].spawn(task)
    }

    /// Stops every shard's runtime (a task still running there is dropped) and waits for its
    /// thread: call once the drain is over or its deadline passed.
    pub(crate) fn stop(self) {
        drop(self.stops);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_runs_on_its_shards_thread() {
        let shards = ShardThreads::start(2, 8).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        shards.spawn(1, async move {
            let _ = tx.send(std::thread::current().name().map(String::from));
        });
        assert_eq!(rx.recv().unwrap().as_deref(), Some("shard-1"));
        shards.stop();
    }
}
