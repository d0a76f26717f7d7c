//! A catalog publication (`PUT /catalog`): its content type and body as an operator sends them,
//! taken or refused by `CatalogHandle::publish`, then sent to sources in a CATALOG message and
//! kept in the catalog file.

use std::cell::RefCell;

use aggregator::catalog::{store, CatalogHandle};
use aggregator::domain::catalog::Catalog;
use aggregator::protocol::ingest::{ClientCodec, ServerMessage};
use bytes::{Bytes, BytesMut};
use tokio::runtime::Runtime;
use tokio_util::codec::Decoder;

/// The body limit (`catalog.max_bytes`) of the fuzzed handle: small, so that it is reached.
const MAX_BYTES: usize = 256;

thread_local! {
    /// One runtime per process: a publication awaits the handle's lock.
    static RUNTIME: Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime builds");
    /// One handle per process: versions go on counting across inputs, as they do in a daemon.
    static HANDLE: RefCell<CatalogHandle> = RefCell::new(CatalogHandle::in_memory(MAX_BYTES));
}

/// The first byte is the content type's length, then the content type (lossy UTF-8, as the HTTP
/// header is taken only when it is text), then the body. A publication is taken exactly when the
/// body is 1 to `MAX_BYTES` bytes and the content type 1 to 255 printable ASCII characters; one
/// taken goes to sources and into the catalog file unchanged.
pub(crate) fn publish_and_store(data: &[u8]) {
    let Some((&type_len, rest)) = data.split_first() else {
        return;
    };
    let (content_type, body) = rest.split_at(usize::from(type_len).min(rest.len()));
    let content_type = String::from_utf8_lossy(content_type).into_owned();
    let body = Bytes::copy_from_slice(body);
    let handle = HANDLE.with(|handle| handle.borrow().clone());
    let published = RUNTIME.with(|rt| rt.block_on(handle.publish(&content_type, body.clone())));
    let acceptable = !body.is_empty()
        && body.len() <= MAX_BYTES
        && (1..=255).contains(&content_type.len())
        && content_type
            .chars()
            .all(|c| c.is_ascii_graphic() || c == ' ');
    assert_eq!(published.is_ok(), acceptable, "{published:?}");
    let Ok(version) = published else {
        return;
    };
    let message = ServerMessage::Catalog {
        version,
        content_type: content_type.clone(),
        body: body.clone(),
    };
    let mut encoded = BytesMut::new();
    message.encode(&mut encoded);
    let decoded = ClientCodec::default().decode(&mut encoded);
    assert_eq!(decoded.ok().flatten(), Some(message));
    let catalog = Catalog {
        version,
        content_type,
        body,
        published_unix_ms: 0,
    };
    assert_eq!(store::decode(store::encode(&catalog).freeze()), Ok(catalog));
}
