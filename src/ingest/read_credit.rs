//! Read credits: which connections read a full buffer now, and which wait their turn.
//!
//! Every socket read costs a task wake, a system call and a decode, whatever it brings in, so
//! throughput comes from large reads. Memory, though, has to stay bounded however many sources
//! connect. A fixed share of the read budget per connection gets both wrong at scale: with 10,000
//! saturating sources each read would be 4 KiB, and the daemon would spend its time on reads,
//! not frames.
//!
//! So the budget is cut into credits of one full read buffer each (`read_budget / read_buffer`).
//! A connection whose socket turns readable takes a credit if one is free and reads a full buffer.
//! If none is free, it reads a small buffer, which is all a source that sends little needs; and
//! a source whose last read came back full (its socket holds more) waits in line for a credit,
//! with its data in the kernel, where TCP flow control holds the sender back. A credit is
//! returned once everything its read staged has been admitted into the fan-in, so the line moves
//! through the sources in turn, and before the connection writes its ACKs and PONGs; a connection
//! waiting in line leaves it when a write has to wait. A write waits for the peer to read: a peer
//! that does not read then holds no credit, and nobody's turn. Waiting is by the semaphore's first-come order, kept across the
//! connection's other wake-ups (ACK timers) by [`PollSemaphore`].
//!
//! The credits are shared out among the shards (at least one each), and a connection draws on its
//! shard's: a credit given back then wakes a connection on the same thread. One line for every
//! shard made each returned credit a wake-up on another shard's thread, and held 10,000 sources
//! on 16 shards to half the pace of 48.
//!
//! Sources that send little never wait in that line, so an emergency on a quiet connection is read
//! as soon as it arrives; an emergency behind a full socket waits for what is ahead of it, as it
//! would with any read size.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{BufMut, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::io::poll_read_buf;
use tokio_util::sync::PollSemaphore;

use crate::tls::stream::Reader;

/// The most a connection reads at once without a credit.
pub(crate) const SMALL_READ: usize = 4096;

/// Makes room for a read of up to `size` bytes. A buffer is allocated only when the free space is
/// down to a quarter of that, so a connection reading little keeps using the buffer it has.
pub(crate) fn make_room(buf: &mut BytesMut, size: usize) {
    if buf.capacity() - buf.len() < size / 4 + 1 {
        buf.reserve(size);
    }
}

/// The credits the connections of one shard share.
#[derive(Debug, Clone)]
pub(crate) struct ReadCredits {
    semaphore: Arc<Semaphore>,
    full: usize,
}

impl ReadCredits {
    /// `credits` reads of `full` bytes at once.
    pub(crate) fn new(credits: usize, full: usize) -> ReadCredits {
        ReadCredits {
            semaphore: Arc::new(Semaphore::new(credits)),
            full,
        }
    }

    /// `credits` reads of `full` bytes at once, shared out among `shards`: each gets its share,
    /// the first ones one more where it does not divide, and every one at least one.
    pub(crate) fn per_shard(credits: usize, shards: usize, full: usize) -> Vec<ReadCredits> {
        let shards = shards.max(1);
        (0..shards)
            .map(|shard| {
                let share = credits / shards + usize::from(shard < credits % shards);
                ReadCredits::new(share.max(1), full)
            })
            .collect()
    }

    /// One connection's place in the read line.
    pub(crate) fn turn(&self) -> ReadTurn {
        ReadTurn {
            credits: PollSemaphore::new(Arc::clone(&self.semaphore)),
            full: self.full,
            small: SMALL_READ.min(self.full),
            backlogged: false,
            held: None,
            unreleased: false,
        }
    }

    /// Credits nobody holds.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.semaphore.available_permits()
    }
}

/// A connection's reads: when it may read, and how much.
#[derive(Debug)]
pub(crate) struct ReadTurn {
    credits: PollSemaphore,
    full: usize,
    small: usize,
    /// The last read filled what it asked for, or with a credit more than half of it: the socket
    /// (most likely) holds more, so the next read waits for a credit rather than taking a small
    /// bite.
    backlogged: bool,
    /// The credit of the read whose frames are still being admitted.
    held: Option<OwnedSemaphorePermit>,
    /// A read came back since the last [`ReadTurn::release`].
    unreleased: bool,
}

impl ReadTurn {
    /// Waiting in line for a credit: not idle, however long the wait.
    pub(crate) fn is_waiting(&self) -> bool {
        self.backlogged && self.held.is_none()
    }

    /// Gives up the connection's place in the read line, if it holds one, before it waits for
    /// something else (a write its peer does not read): a credit freed meanwhile goes to the next
    /// in line instead of waiting, unclaimed, for this connection. Its next read queues again.
    pub(crate) fn leave_line(&mut self) {
        if self.is_waiting() {
            self.credits = PollSemaphore::new(self.credits.clone_inner());
        }
    }

    /// Reads once from `reader` into `buf`, after waiting for data and, when the socket is known
    /// to hold more than a small read, for a credit. Cancel-safe: dropped while waiting, it keeps
    /// its place in the line, and it never holds a credit across an await.
    pub(crate) async fn read(
        &mut self,
        reader: &mut Reader,
        buf: &mut BytesMut,
    ) -> io::Result<usize> {
        loop {
            if self.is_waiting() {
                let permit = poll_fn(|cx| self.credits.poll_acquire(cx)).await;
                // `None` only if the semaphore were closed, which nothing does: read small then.
                self.held = permit;
            } else if self.held.is_none() {
                if !reader.readable().await? {
                    return self.read_small(reader, buf).await;
                }
                self.held = self.credits.clone_inner().try_acquire_owned().ok();
            }
            let size = if self.held.is_some() {
                self.full
            } else {
                self.small
            };
            make_room(buf, size);
            // One attempt, through `AsyncRead`: a short read tells Tokio the socket is drained,
            // so the next wait is for new data, not a system call that finds none.
            let attempt = poll_fn(|cx| {
                let mut limited = (&mut *buf).limit(size);
                Poll::Ready(poll_read_buf(Pin::new(&mut *reader), cx, &mut limited))
            })
            .await;
            match attempt {
                Poll::Ready(Ok(n)) => {
                    // A small read that came back full left more behind. So, most likely, did a
                    // full read that brought more than half a buffer: its source sends faster than
                    // its turns come round, and a small bite in between would only cost a read.
                    self.backlogged = match self.held {
                        Some(_) => n > self.full / 2,
                        None => n == self.small,
                    };
                    self.unreleased = true;
                    return Ok(n);
                }
                Poll::Pending => {
                    // Nothing there after all: give the credit back, and the full buffer made
                    // ready for it, and wait for data. Kept, small reads would fill that buffer a
                    // bite at a time, each keeping all of it alive.
                    self.held = None;
                    self.backlogged = false;
                    fit(buf);
                }
                Poll::Ready(Err(err)) => return Err(err),
            }
        }
    }

    /// A read of a small buffer that waits for data, for a stream whose readiness cannot be known
    /// before reading (TLS). Cancel-safe: a read that has not completed has taken nothing.
    async fn read_small(&mut self, reader: &mut Reader, buf: &mut BytesMut) -> io::Result<usize> {
        make_room(buf, self.small);
        let n = (&mut *reader).take(self.small as u64).read_buf(buf).await?;
        self.backlogged = n == self.small;
        self.unreleased = true;
        Ok(n)
    }

    /// Returns the credit once everything the read staged is admitted. A connection about to wait
    /// its turn (it had a credit, or needs one next) moves its leftover partial frame out of the
    /// read's allocation, which the staged batches alone then keep alive: while it waits it holds
    /// no more than that fragment. Once per read: the connection calls this at every wake-up.
    pub(crate) fn release(&mut self, buf: &mut BytesMut) {
        let had_credit = self.held.take().is_some();
        if std::mem::take(&mut self.unreleased) && (had_credit || self.backlogged) {
            fit(buf);
        }
    }
}

/// Moves what `buf` holds (a partial frame, or nothing) out of the read's allocation into one of
/// its own size. Its capacity cannot tell whether it shares one: a read that filled its buffer
/// leaves the partial frame at the very end, with no room after it, and left there it would keep
/// the whole read's allocation alive while the connection waits; with 10,000 sources, a full read
/// buffer for each one that ever held a credit.
fn fit(buf: &mut BytesMut) {
    *buf = BytesMut::from(&buf[..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::tcp::OwnedWriteHalf;
    use tokio::net::{TcpListener, TcpStream};

    /// A connected pair: the client and the server's halves.
    async fn pair() -> (TcpStream, Reader, OwnedWriteHalf) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let (read, write) = server.into_split();
        (client, Reader::Plain(read), write)
    }

    #[test]
    fn the_budget_is_shared_out_among_the_shards_at_least_one_each() {
        let shares = |credits, shards| {
            ReadCredits::per_shard(credits, shards, 1024)
                .iter()
                .map(ReadCredits::available)
                .collect::<Vec<_>>()
        };
        assert_eq!(shares(64, 16), [4; 16]);
        assert_eq!(shares(10, 4), [3, 3, 2, 2]);
        assert_eq!(shares(2, 4), [1, 1, 1, 1]);
        assert_eq!(shares(8, 0), [8]);
    }

    #[tokio::test]
    async fn a_free_credit_gives_a_full_read_and_comes_back_on_release() {
        let credits = ReadCredits::new(1, 64 * 1024);
        let (mut client, mut reader, _writer) = pair().await;
        client.write_all(&[7u8; 100]).await.unwrap();
        let mut turn = credits.turn();
        let mut buf = BytesMut::new();
        let n = turn.read(&mut reader, &mut buf).await.unwrap();
        assert_eq!(n, 100);
        assert_eq!(credits.available(), 0, "the read holds the credit");
        assert!(
            !turn.is_waiting(),
            "a partial read means the socket is drained"
        );
        turn.release(&mut buf);
        assert_eq!(credits.available(), 1);
        assert_eq!(buf.len(), 100, "the unconsumed bytes stay");
        assert!(buf.capacity() < 64 * 1024, "moved out of the full buffer");
    }

    /// A full read leaves its partial frame at the very end of the read's allocation: released, the
    /// connection keeps a copy, so the batches alone keep the read alive, and not after them.
    #[tokio::test]
    async fn a_released_full_read_keeps_none_of_its_allocation() {
        let full = 1024;
        let credits = ReadCredits::new(1, full);
        let (mut client, mut reader, _writer) = pair().await;
        client.write_all(&[7u8; 3 * 1024]).await.unwrap();
        for frames_end in [1000, full] {
            let mut turn = credits.turn();
            let mut buf = BytesMut::new();
            let n = turn.read(&mut reader, &mut buf).await.unwrap();
            assert_eq!(
                (n, buf.capacity()),
                (full, full),
                "a read that filled its buffer"
            );
            let chunk = buf.split_to(frames_end).freeze();
            turn.release(&mut buf);
            assert_eq!(buf.len(), full - frames_end, "the partial frame stays");
            assert!(
                chunk.is_unique(),
                "the connection still shares the read's allocation"
            );
            let moved = buf.as_ptr();
            turn.release(&mut buf);
            assert_eq!(buf.as_ptr(), moved, "moved once, not at every release");
        }
    }

    /// Readiness can outlive the data (a read that took all there was did not see the socket
    /// empty): a credit taken for it finds nothing and leaves no full buffer behind.
    #[tokio::test]
    async fn a_credit_that_finds_nothing_leaves_no_full_buffer_behind() {
        let full = 1024;
        let credits = ReadCredits::new(1, full);
        let (mut client, mut reader, _writer) = pair().await;
        client.write_all(&[7u8; 1024]).await.unwrap();
        let mut turn = credits.turn();
        let mut buf = BytesMut::new();
        assert_eq!(turn.read(&mut reader, &mut buf).await.unwrap(), full);
        drop(buf.split_to(full));
        turn.release(&mut buf);
        assert!(turn.is_waiting(), "a full read: the socket may hold more");

        let mut next = Box::pin(turn.read(&mut reader, &mut buf));
        assert!(futures_util::poll!(next.as_mut()).is_pending());
        drop(next);
        assert_eq!(credits.available(), 1, "the credit is back");
        assert_eq!(buf.capacity(), 0, "and so is the buffer it was to fill");
    }

    /// One credit, which a first connection's read holds, and a second connection whose small
    /// read came back full, so that it waits in line for that credit.
    struct Contended {
        credits: ReadCredits,
        first: ReadTurn,
        first_buf: BytesMut,
        second: ReadTurn,
        second_reader: Reader,
        second_buf: BytesMut,
        /// The connections' other ends, kept open.
        _ends: (TcpStream, Reader, OwnedWriteHalf, TcpStream, OwnedWriteHalf),
    }

    async fn contended() -> Contended {
        let credits = ReadCredits::new(1, 64 * 1024);
        let (mut first_client, mut first_reader, first_writer) = pair().await;
        let (mut second_client, mut second_reader, second_writer) = pair().await;
        first_client.write_all(&[1u8; 10]).await.unwrap();
        let mut first = credits.turn();
        let mut first_buf = BytesMut::new();
        first.read(&mut first_reader, &mut first_buf).await.unwrap();
        assert_eq!(credits.available(), 0);

        second_client
            .write_all(&[2u8; 3 * SMALL_READ])
            .await
            .unwrap();
        let mut second = credits.turn();
        let mut second_buf = BytesMut::new();
        let n = second
            .read(&mut second_reader, &mut second_buf)
            .await
            .unwrap();
        assert_eq!(n, SMALL_READ, "no credit free: a small read");
        assert!(
            second.is_waiting(),
            "the socket holds more: wait for a credit"
        );
        Contended {
            credits,
            first,
            first_buf,
            second,
            second_reader,
            second_buf,
            _ends: (
                first_client,
                first_reader,
                first_writer,
                second_client,
                second_writer,
            ),
        }
    }

    #[tokio::test]
    async fn without_a_credit_a_read_is_small_and_a_full_socket_waits_its_turn() {
        let mut line = contended().await;
        let mut next = Box::pin(
            line.second
                .read(&mut line.second_reader, &mut line.second_buf),
        );
        assert!(
            futures_util::poll!(next.as_mut()).is_pending(),
            "no read while the only credit is held"
        );
        line.first.release(&mut line.first_buf);
        let n = next.await.unwrap();
        assert_eq!(n, 2 * SMALL_READ, "with the credit, the rest in one read");
        assert_eq!(line.credits.available(), 0);
    }

    /// A connection waiting in line leaves it when its write has to wait: a credit freed
    /// meanwhile goes to whoever asks next, not to the waiting connection's unpolled request.
    #[tokio::test]
    async fn a_connection_that_leaves_the_line_claims_no_credit_freed_meanwhile() {
        let mut line = contended().await;
        let mut next = Box::pin(
            line.second
                .read(&mut line.second_reader, &mut line.second_buf),
        );
        assert!(futures_util::poll!(next.as_mut()).is_pending(), "in line");
        drop(next);
        line.second.leave_line();

        line.first.release(&mut line.first_buf);
        assert_eq!(
            line.credits.available(),
            1,
            "the freed credit waits for no one"
        );
        assert!(line.second.is_waiting(), "its next read queues again");
        let n = line
            .second
            .read(&mut line.second_reader, &mut line.second_buf)
            .await
            .unwrap();
        assert_eq!(n, 2 * SMALL_READ);
    }
}
