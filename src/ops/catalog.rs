//! The catalog on the monitor: `PUT /catalog` publishes, and `/stats` and `/metrics` say which
//! version each source holds and how many hold the newest.
//!
//! The body is read up to `catalog.max_bytes` and no further, so an oversize upload costs the
//! daemon that much memory at most before it is refused with 413. The answer comes only once the
//! catalog is stored ([`crate::catalog`]): a 200 means the version survives a crash.

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::catalog::{CatalogHandle, PublishError};
use crate::domain::source::SourceSnapshot;

/// The content type of a catalog sent without one.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// `PUT /catalog`: stores the body as the next version and fans it out.
pub(crate) async fn put(
    State(catalog): State<CatalogHandle>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = catalog.max_bytes();
    let too_large = |size: String| {
        let reason = format!("the catalog is {size} bytes, above catalog.max_bytes ({max})\n");
        (StatusCode::PAYLOAD_TOO_LARGE, reason).into_response()
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(size) = declared.filter(|size| *size > max) {
        return too_large(size.to_string());
    }
    let body = match to_bytes(body, max).await {
        Ok(body) => body,
        Err(_) => return too_large("more than".into()),
    };
    let content_type = match headers.get(header::CONTENT_TYPE).map(|v| v.to_str()) {
        None => DEFAULT_CONTENT_TYPE,
        Some(Ok(text)) => text,
        Some(Err(_)) => {
            let reason = "content type: not printable ASCII\n";
            return (StatusCode::BAD_REQUEST, reason).into_response();
        }
    };
    match catalog.publish(content_type, body).await {
        Ok(version) => {
            tracing::info!(version, content_type, "catalog published");
            Json(serde_json::json!({ "version": version })).into_response()
        }
        Err(err @ PublishError::Store(_)) => {
            tracing::error!(error = %err, "catalog not published");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response()
        }
        Err(err @ PublishError::TooLarge { .. }) => {
            (StatusCode::PAYLOAD_TOO_LARGE, format!("{err}\n")).into_response()
        }
        Err(err) => (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response(),
    }
}

/// The catalog in `/stats`.
#[derive(Debug, Serialize)]
pub(crate) struct CatalogBody {
    /// The newest version; `null` before the first publication.
    version: Option<u64>,
    content_type: Option<String>,
    bytes: Option<usize>,
    published_unix_ms: Option<u64>,
    /// Connected sources whose protocol version takes catalogs.
    sources: usize,
    /// Those of them that acknowledged the newest version.
    holding_latest: usize,
}

impl CatalogBody {
    pub(crate) fn of(catalog: &CatalogHandle, sources: &[SourceSnapshot]) -> CatalogBody {
        let latest = catalog.subscribe().borrow().clone();
        let version = latest.as_ref().map(|p| p.catalog.version);
        let takers = sources.iter().filter(|s| s.takes_catalogs);
        CatalogBody {
            version,
            content_type: latest.as_ref().map(|p| p.catalog.content_type.clone()),
            bytes: latest.as_ref().map(|p| p.catalog.body.len()),
            published_unix_ms: latest.as_ref().map(|p| p.catalog.published_unix_ms),
            sources: takers.clone().count(),
            holding_latest: takers
                .filter(|s| version.is_some() && s.catalog_version == version)
                .count(),
        }
    }

    /// The catalog's gauges for `/metrics`: name, help, value.
    pub(crate) fn gauges(&self) -> [(&'static str, &'static str, u64); 3] {
        [
            (
                "aggregator_catalog_version",
                "The newest catalog version (0 before the first).",
                self.version.unwrap_or(0),
            ),
            (
                "aggregator_catalog_sources",
                "Connected sources whose protocol version takes catalogs.",
                self.sources as u64,
            ),
            (
                "aggregator_catalog_sources_current",
                "Connected sources that acknowledged the newest catalog.",
                self.holding_latest as u64,
            ),
        ]
    }
}
