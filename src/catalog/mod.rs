//! Catalog updates: reference data (TLE sets and the like) that operators publish and every
//! connected source must hold, the newest version only.
//!
//! The latest catalog is a value with many readers, so it lives in a `watch` channel: every
//! connection holds a receiver, and a connection that has not yet written one version to its
//! socket when the next arrives simply sends the newer one (watch semantics, never the history).
//! The CATALOG message is encoded once per publication and shared, so 10,000 connections hold
//! 10,000 reference counts, not 10,000 copies. Publications are serialised, numbered one above the
//! last, and stored ([`store`]) before they are announced, so a version once answered survives a
//! crash and never goes backwards.

pub mod push;
pub mod store;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::{watch, Mutex};

use crate::domain::catalog::Catalog;
use crate::protocol::ingest::ServerMessage;
use store::{LoadError, Store};

/// Longest content type accepted (it travels in one length byte).
pub(crate) const MAX_CONTENT_TYPE: usize = 255;

/// A publication as connections send it: the catalog and its CATALOG message, encoded once.
#[derive(Debug)]
pub(crate) struct Published {
    pub catalog: Catalog,
    /// The whole CATALOG message, length prefix included.
    pub message: Bytes,
}

impl Published {
    fn new(catalog: Catalog) -> Published {
        let mut message = BytesMut::new();
        ServerMessage::Catalog {
            version: catalog.version,
            content_type: catalog.content_type.clone(),
            body: catalog.body.clone(),
        }
        .encode(&mut message);
        Published {
            catalog,
            message: message.freeze(),
        }
    }
}

/// Why a publication was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the catalog is empty")]
    Empty,
    #[error("the catalog is {size} bytes, above catalog.max_bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("content type {0:?}: expected 1 to 255 printable ASCII characters")]
    BadContentType(String),
    #[error("the catalog could not be stored: {0}")]
    Store(#[from] std::io::Error),
}

/// The latest catalog: publish to it, or watch it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CatalogHandle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None`: kept in memory only (tests, and archives that keep nothing on disk).
    store: Option<Store>,
    max_bytes: usize,
    latest: watch::Sender<Option<Arc<Published>>>,
    /// One publication at a time, so that versions are numbered and stored in order.
    publishing: Mutex<()>,
}

impl CatalogHandle {
    /// A catalog kept in memory only: a restart forgets it.
    pub fn in_memory(max_bytes: usize) -> CatalogHandle {
        Self::with(None, None, max_bytes)
    }

    /// The catalog stored in `store`, loaded now.
    pub fn open(store: Store, max_bytes: usize) -> Result<CatalogHandle, LoadError> {
        let latest = store.load()?;
        Ok(Self::with(Some(store), latest, max_bytes))
    }

    fn with(store: Option<Store>, latest: Option<Catalog>, max_bytes: usize) -> CatalogHandle {
        let (latest, _) = watch::channel(latest.map(|c| Arc::new(Published::new(c))));
        CatalogHandle {
            inner: Arc::new(Inner {
                store,
                max_bytes,
                latest,
                publishing: Mutex::new(()),
            }),
        }
    }

    /// Stores `body` as the next version and announces it to every subscriber; returns the
    /// version once it is durable.
    pub async fn publish(&self, content_type: &str, body: Bytes) -> Result<u64, PublishError> {
        if body.is_empty() {
            return Err(PublishError::Empty);
        }
        if body.len() > self.inner.max_bytes {
            return Err(PublishError::TooLarge {
                size: body.len(),
                max: self.inner.max_bytes,
            });
        }
        let printable = |c: char| c.is_ascii_graphic() || c == ' ';
        if content_type.is_empty()
            || content_type.len() > MAX_CONTENT_TYPE
            || !content_type.chars().all(printable)
        {
            return Err(PublishError::BadContentType(content_type.into()));
        }
        let _turn = self.inner.publishing.lock().await;
        let catalog = Catalog {
            version: self.version().map_or(1, |v| v + 1),
            content_type: content_type.into(),
            body,
            published_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        if let Some(store) = self.inner.store.clone() {
            let stored = catalog.clone();
            tokio::task::spawn_blocking(move || store.save(&stored))
                .await
                .map_err(std::io::Error::other)??;
        }
        let version = catalog.version;
        self.inner
            .latest
            .send_replace(Some(Arc::new(Published::new(catalog))));
        Ok(version)
    }

    /// The largest body [`CatalogHandle::publish`] accepts (`catalog.max_bytes`).
    pub fn max_bytes(&self) -> usize {
        self.inner.max_bytes
    }

    /// The latest publication, and its changes from now on.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.inner.latest.subscribe()
    }

    /// The latest version; `None` before the first publication.
    pub(crate) fn version(&self) -> Option<u64> {
        self.inner
            .latest
            .borrow()
            .as_ref()
            .map(|p| p.catalog.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn versions_count_up_and_subscribers_see_only_the_newest() {
        let catalog = CatalogHandle::in_memory(1024);
        let mut rx = catalog.subscribe();
        assert!(rx.borrow_and_update().is_none());
        assert_eq!(catalog.publish("text/plain", "a".into()).await.unwrap(), 1);
        assert_eq!(catalog.publish("text/plain", "b".into()).await.unwrap(), 2);
        assert!(rx.has_changed().unwrap());
        let latest = rx.borrow_and_update().clone().unwrap();
        assert_eq!(latest.catalog.version, 2);
        assert_eq!(latest.catalog.body, "b");
        assert_eq!(catalog.version(), Some(2));
    }

    #[tokio::test]
    async fn bad_publications_are_refused_with_the_reason() {
        let catalog = CatalogHandle::in_memory(4);
        let refused = |r: Result<u64, PublishError>| r.unwrap_err().to_string();
        assert!(refused(catalog.publish("text/plain", Bytes::new()).await).contains("empty"));
        assert!(refused(catalog.publish("text/plain", "12345".into()).await)
            .contains("catalog.max_bytes (4)"));
        assert!(refused(catalog.publish("", "1".into()).await).contains("content type"));
        assert!(refused(catalog.publish("t\u{7f}", "1".into()).await).contains("content type"));
        assert_eq!(catalog.version(), None);
    }

    #[tokio::test]
    async fn a_stored_catalog_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("catalog-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let catalog = CatalogHandle::open(Store::in_dir(&dir), 1024).unwrap();
        catalog
            .publish("application/json", "{}".into())
            .await
            .unwrap();
        catalog
            .publish("application/json", "[]".into())
            .await
            .unwrap();
        drop(catalog);
        let reopened = CatalogHandle::open(Store::in_dir(&dir), 1024).unwrap();
        assert_eq!(reopened.version(), Some(2));
        assert_eq!(reopened.publish("text/plain", "x".into()).await.unwrap(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
