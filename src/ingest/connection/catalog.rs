//! Sending the latest catalog on a connection while its frames keep flowing.
//!
//! A catalog may be a megabyte, and the peer may read it slowly or not at all, so it is not
//! written with one `write_all` that would stop the connection's reads: the ingest loop writes it
//! a piece at a time, whenever the socket takes more, between its reads. ACKs and PONGs cannot go
//! inside a message, so they wait until the catalog's last byte is written and then go out at
//! once (the frames they cover are read and stored meanwhile). The connection holds the shared,
//! once-encoded message and how much of it was written, never a copy; a version published while
//! an older one is being written is sent right after it, and of several such only the newest
//! (watch semantics).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::catalog::Published;
use crate::tls::stream::Writer;

/// A connection's catalog sender.
pub(super) struct CatalogOut {
    /// `None` once the catalog's publisher is gone, or the socket failed.
    latest: Option<watch::Receiver<Option<Arc<Published>>>>,
    /// The message being written and how much of it is.
    writing: Option<Writing>,
    /// The newest version written whole.
    sent: Option<u64>,
}

struct Writing {
    version: u64,
    message: Bytes,
    written: usize,
}

impl Writing {
    fn is_written(&self) -> bool {
        self.written == self.message.len()
    }
}

/// What one [`CatalogOut::step`] did.
pub(super) enum Step {
    /// Part of the message went out.
    Wrote,
    /// The catalog changed, to nothing newer than what was sent.
    Unchanged,
    /// A newer catalog is waiting to be written.
    Started,
    /// The catalog publisher is gone: nothing more to send.
    Closed,
    /// The socket failed: nothing more can be written.
    Failed(io::Error),
}

impl CatalogOut {
    /// A sender for `latest`, which starts with the catalog published so far, if any.
    pub(super) fn new(mut latest: watch::Receiver<Option<Arc<Published>>>) -> CatalogOut {
        if latest.borrow().is_some() {
            latest.mark_changed();
        }
        CatalogOut {
            latest: Some(latest),
            writing: None,
            sent: None,
        }
    }

    /// Whether [`CatalogOut::step`] has anything to wait for.
    pub(super) fn is_active(&self) -> bool {
        self.latest.is_some() || self.writing.is_some()
    }

    /// Whether a message is part-written: nothing else may be written until it is done.
    pub(super) fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Writes what the socket takes of the message in progress, or waits for a newer catalog.
    /// Cancel-safe: a write that has not completed has written nothing.
    /// Once every byte is written, a last step flushes (a no-op on plain TCP; a TLS session may
    /// hold the last record), which is as cancel-safe.
    pub(super) async fn step(&mut self, writer: &mut Writer) -> Step {
        if let Some(writing) = &mut self.writing {
            if writing.is_written() {
                return match writer.flush().await {
                    Ok(()) => {
                        self.sent = Some(writing.version);
                        self.writing = None;
                        Step::Wrote
                    }
                    Err(err) => self.fail(err),
                };
            }
            return match writer.write(&writing.message[writing.written..]).await {
                Ok(0) => self.fail(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    writing.written += n;
                    Step::Wrote
                }
                Err(err) => self.fail(err),
            };
        }
        let Some(latest) = &mut self.latest else {
            return std::future::pending().await;
        };
        if latest.changed().await.is_err() {
            self.latest = None;
            return Step::Closed;
        }
        let newest = latest.borrow_and_update().clone();
        match newest {
            Some(published) if Some(published.catalog.version) > self.sent => {
                self.writing = Some(Writing {
                    version: published.catalog.version,
                    message: published.message.clone(),
                    written: 0,
                });
                Step::Started
            }
            _ => Step::Unchanged,
        }
    }

    fn fail(&mut self, err: io::Error) -> Step {
        self.writing = None;
        self.latest = None;
        Step::Failed(err)
    }

    /// The rest of the message in progress, which must be written before anything else.
    pub(super) fn take_rest(&mut self) -> Option<Bytes> {
        let writing = self.writing.take()?;
        self.sent = Some(writing.version);
        Some(writing.message.slice(writing.written..))
    }

    /// Whether `version`, named by a CATALOG_ACK, was sent on this connection.
    pub(super) fn was_sent(&self, version: u64) -> bool {
        self.sent.is_some_and(|sent| (1..=sent).contains(&version))
    }
}
