//! The web dashboard: one page for an operator's wall screen, served by the monitor at `GET /`.
//!
//! The page, its style sheet and its script are compiled into the binary (`include_str!`), so a
//! deployed daemon needs no files beside it, there is no build step, and the page fetches nothing
//! from the internet: its Content-Security-Policy allows only the daemon itself. Everything it
//! shows comes from the monitor's own endpoints, read by the browser: `/stats`, polled every
//! second (health, uptime, counters, the sources table, kept client side to draw the rate plot and
//! each source's rate), the live feed's WebSocket, `/feed?priority=emergency` (the latest
//! emergency frames), both reconnecting by themselves, with backoff, when the daemon restarts; and
//! `/archive/completeness?from=-1h&buckets=N`, every 10 s, for a bar per source over the chosen
//! window (hidden where the daemon keeps no archive files and answers 404). The passes panel
//! (`passes.js`) reads `/archive/passes?from=-24h` (or the chosen window), every 30 s at most and
//! never twice at once, for a row per station and a bar per pass coloured by how complete it is,
//! whose click shows the pass's report (a message in its place where the query is refused).
//!
//! Every response says `Cache-Control: no-cache`: after an upgrade the browser revalidates, so it
//! never pairs a new daemon with an old script.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("index.html");
const DASHBOARD_CSS: &str = include_str!("dashboard.css");
const DASHBOARD_JS: &str = include_str!("dashboard.js");
const PASSES_JS: &str = include_str!("passes.js");

/// Only the daemon itself: scripts, styles, `fetch` and the WebSocket (`'self'` covers `ws:` on
/// the same host and port); the favicon is an inline `data:` URL so the browser asks for no other.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/// The dashboard's routes, to be merged into the monitor's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/dashboard.css",
            get(|| asset("text/css; charset=utf-8", DASHBOARD_CSS)),
        )
        .route(
            "/dashboard.js",
            get(|| asset("text/javascript; charset=utf-8", DASHBOARD_JS)),
        )
        .route(
            "/passes.js",
            get(|| asset("text/javascript; charset=utf-8", PASSES_JS)),
        )
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        body,
    )
}
