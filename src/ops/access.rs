//! The monitor's bearer token (`monitor.token_file`): who may read `/stats`, `/feed` and the
//! dashboard, and publish with `PUT /catalog`.
//!
//! `/healthz` and `/metrics` stay open for load balancers and Prometheus unless
//! `monitor.protect_all` is set. A request presents the token as `Authorization: Bearer TOKEN`,
//! or (for the dashboard in a browser, whose WebSocket cannot set headers) once as `?token=TOKEN`
//! on the page: the answer then sets it as an `HttpOnly`, `SameSite=Strict` cookie, which the
//! page's own requests (`/stats`, the `/feed` WebSocket) carry from then on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The cookie the dashboard's requests carry the token in.
const COOKIE: &str = "aggregator_token";

/// The query parameter a browser that cannot set a header gives the token in: every route that
/// reads its query passes it over.
pub(crate) const QUERY_TOKEN: &str = "token";

/// Why the token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("monitor.token_file: cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An empty token would let anyone in.
    #[error("monitor.token_file: {} is empty", path.display())]
    Empty { path: PathBuf },
}

/// The token, and which paths it guards.
#[derive(Debug)]
pub struct Access {
    token: String,
    protect_all: bool,
}

impl Access {
    /// Reads the token from `path` (surrounding whitespace ignored); an empty file is an error,
    /// since it would let anyone in.
    pub fn load(path: &Path, protect_all: bool) -> Result<Access, AccessError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            path: path.to_owned(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            let path = path.to_owned();
            return Err(AccessError::Empty { path });
        }
        Ok(Access {
            token: token.to_string(),
            protect_all,
        })
    }

    fn guards(&self, path: &str) -> bool {
        self.protect_all || !matches!(path, "/healthz" | "/metrics")
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    fn is_token(&self, presented: &str) -> bool {
        let (a, b) = (self.token.as_bytes(), presented.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0, |diff, (x, y)| diff | (x ^ y)) == 0
    }
}

/// How a request presented the token.
enum Presented<'a> {
    Header(&'a str),
    Cookie(&'a str),
    Query(String),
}

impl Presented<'_> {
    fn token(&self) -> &str {
        match self {
            Presented::Header(token) | Presented::Cookie(token) => token,
            Presented::Query(token) => token,
        }
    }
}

/// Every token the request presents: its bearer header (the scheme's name in any case), its
/// cookies of the name, its query's. Any valid one lets it in: a cookie of a token rotated away
/// does not hide the new one given in the query, whose answer sets the cookie anew.
fn presented(request: &Request) -> Vec<Presented<'_>> {
    let headers = request.headers();
    let bearer = (headers.get_all(header::AUTHORIZATION).iter())
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| Presented::Header(token.trim()));
    let cookies = (headers.get_all(header::COOKIE).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .map(Presented::Cookie);
    let query = form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .filter(|(key, _)| key == QUERY_TOKEN)
        .map(|(_, value)| Presented::Query(value.into_owned()));
    bearer.chain(cookies).chain(query).collect()
}

/// The middleware: a guarded path without the token is answered 401.
pub(crate) async fn require_token(
    State(access): State<Arc<Access>>,
    request: Request,
    next: Next,
) -> Response {
    if !access.guards(request.uri().path()) {
        return next.run(request).await;
    }
    let presented = presented(&request);
    let valid = presented.iter().find(|p| access.is_token(p.token()));
    let Some(valid) = valid else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (monitor.token_file)\n",
        )
            .into_response();
    };
    let from_query = matches!(valid, Presented::Query(_));
    let mut response = next.run(request).await;
    if from_query {
        let cookie = format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            access.token
        );
        if let Ok(cookie) = HeaderValue::from_str(&cookie) {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
    }
    response
}
