//! Where the archive's readers run: a thread and runtime of their own at a lower scheduling
//! priority ([`spawn_low_priority`], or [`LowPriorityRuntime`] for readers that come and go), and
//! tasks kept apart from the pipeline's ([`ReaderTasks`]).
//!
//! Why apart: followers, TM outputs, sinks and archive queries encode and write frames for peers
//! outside, at the pace those peers read. On the runtime that runs ingest and the archive (one
//! thread by default) they would take its time; at a lower priority, when the cores are short,
//! ingest goes first and the readers only fall further behind in the files. And at a drain the
//! pipeline's tasks must finish, while a reader whose peer stopped reading must not delay the
//! drain or change its report: each sends what became durable up to the archive's close, and is
//! cut off at the drain deadline.

use std::io;

use tokio::runtime::{Handle, Runtime};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Tasks that read the archive for a peer outside (followers, TM outputs), kept apart from the
/// pipeline's: a drain waits for them until its deadline and then cuts them off, so a peer that
/// stopped reading never delays the drain or changes its report.
#[derive(Debug, Default)]
pub(crate) struct ReaderTasks {
    pub tracker: TaskTracker,
    /// Cancelled at the drain deadline: every task ends.
    pub cut_off: CancellationToken,
}

impl ReaderTasks {
    /// Waits for every task until `deadline`, then cuts off those still running.
    pub(crate) async fn finish(self, deadline: Instant) {
        self.tracker.close();
        if tokio::time::timeout_at(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            self.cut_off.cancel();
            self.tracker.wait().await;
        }
    }
}

/// Runs `task` on a thread of its own, at a lower scheduling priority ([`READERS_NICE`]), in a
/// current-thread runtime of its own: the archive's readers (followers, TM outputs, sinks) encode
/// and write frames without taking the time of the runtime that runs ingest and the archive (one
/// thread by default), and when the cores are short ingest goes first. The thread ends when
/// `task` does.
pub(crate) fn spawn_low_priority<F, T>(name: &str, task: T) -> io::Result<()>
where
    T: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    spawn_reader(name, true, task)
}

/// Runs `task` as [`spawn_low_priority`] does, at the readers' priority when `lowered`, else at
/// the daemon's: a reader the acknowledgements wait for (the NATS sink with `ack =
/// "replicated"`) is on the ingest path and must not be the first to wait for a core.
pub(crate) fn spawn_reader<F, T>(name: &str, lowered: bool, task: T) -> io::Result<()>
where
    T: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    run_on_thread(name, current_thread_runtime()?, lowered, task)
}

/// Runs `task` on `runtime`, on a thread of its own, at [`READERS_NICE`] when `lowered`.
fn run_on_thread<F, T>(name: &str, runtime: Runtime, lowered: bool, task: T) -> io::Result<()>
where
    T: FnOnce() -> F + Send + 'static,
    F: std::future::Future<Output = ()>,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            if lowered {
                lower_priority();
            }
            runtime.block_on(task());
        })
        .map(drop)
}

/// A runtime on a thread of its own at the readers' priority, for readers that come and go (the
/// monitor's archive queries): each is spawned on it through [`LowPriorityRuntime::handle`], from
/// any runtime, and reads and encodes there, at [`READERS_NICE`], as the followers do. The thread
/// and the tasks still on it end when this is dropped.
#[derive(Debug)]
pub(crate) struct LowPriorityRuntime {
    handle: Handle,
    stop: CancellationToken,
}

impl LowPriorityRuntime {
    pub(crate) fn start(name: &str) -> io::Result<LowPriorityRuntime> {
        let runtime = current_thread_runtime()?;
        let (handle, stop) = (runtime.handle().clone(), CancellationToken::new());
        let stopped = stop.clone();
        run_on_thread(name, runtime, true, move || async move {
            stopped.cancelled().await
        })?;
        Ok(LowPriorityRuntime { handle, stop })
    }

    /// Where to spawn a reader. Its `spawn_blocking` calls, made on the runtime's thread, start
    /// blocking threads that inherit the thread's priority.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for LowPriorityRuntime {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn current_thread_runtime() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// The readers' threads' nice value: when the cores are short, the kernel gives ingest's threads
/// about nine times the time it gives the readers, which then only fall further behind in the
/// files.
const READERS_NICE: libc::c_int = 10;

/// Lowers this thread's scheduling priority to [`READERS_NICE`]; the threads it starts (the
/// runtime's blocking pool, which reads the files) inherit it. Only advice: a failure is logged.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers; `who` is this thread.
        let lowered = unsafe {
            let thread = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread, READERS_NICE)
        };
        if lowered != 0 {
            let err = std::io::Error::last_os_error();
            tracing::warn!(error = %err, "cannot lower a reader thread's priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// This thread's nice value.
    fn nice() -> libc::c_int {
        // SAFETY: gettid and getpriority take and return plain integers; `who` is this thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[tokio::test]
    async fn readers_and_their_blocking_reads_run_at_the_readers_priority() {
        let before = nice();
        let readers = LowPriorityRuntime::start("test-readers").unwrap();
        let nices = readers.handle().spawn(async {
            let blocking = tokio::task::spawn_blocking(nice).await.unwrap();
            (nice(), blocking)
        });
        assert_eq!(nices.await.unwrap(), (READERS_NICE, READERS_NICE));
        assert_eq!(
            nice(),
            before,
            "the runtime that spawned them keeps its priority"
        );
    }

    #[tokio::test]
    async fn dropping_the_runtime_ends_its_tasks() {
        let readers = LowPriorityRuntime::start("test-readers").unwrap();
        let pending = readers.handle().spawn(std::future::pending::<()>());
        drop(readers);
        assert!(pending.await.unwrap_err().is_cancelled());
    }
}
