//! The bootstrap's HTTP server for the browser page, on hyper, axum and
//! tower-http: static files from the `www` directory (the page and its built
//! wasm package, with the build's gzip twins for browsers that accept
//! gzip), `/config.json` with this node's dialable addresses, and the API:
//! `/status.json` with its monitor report and `/api/record?key=K`, a DHT
//! lookup done by this node (so a page or a test can check what a native
//! node sees), both [`Answer`]s.
//!
//! The API runs lookups on the node's behalf, so it answers only clients on
//! this host (loopback) unless `--open-api` says otherwise, and only pages
//! from this host may read it across origins (CORS for loopback origins
//! only): a website a user happens to visit cannot use the node.
//!
//! Bounded: [`MAX_CONNECTIONS`] at once, [`MAX_CONNECTIONS_PER_IP`] of them
//! from one address (more wait in the kernel's backlog or are closed),
//! request heads of at most [`MAX_HEAD`] bytes read within
//! [`HEAD_TIMEOUT`] (idle keep-alive connections close then too), no request
//! bodies, answers within [`REQUEST_TIMEOUT`], and every connection closed
//! after [`CONNECTION_LIFETIME`] however slowly its client reads.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use axum::{
    Extension, Json, Router,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderValue, StatusCode, header},
    routing::get,
};
use dht_core::{
    ErrorCode, NodeHandle,
    api::{Answer, ErrorReport},
    libp2p::Multiaddr,
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use serde::Deserialize;
use tokio::{net::TcpListener, sync::Semaphore};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    services::ServeDir,
    set_header::SetResponseHeaderLayer,
    timeout::TimeoutLayer,
};

/// Connections served at once; more wait in the kernel's backlog.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Connections served at once from one IP address; more are closed.
pub(crate) const MAX_CONNECTIONS_PER_IP: usize = 16;
/// Largest request head (request line and headers) read, in bytes.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send a request head, and how long an idle
/// keep-alive connection stays open.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may take: a lookup's own timeout is 30 s.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);
/// How long one connection may live, however slowly its client reads.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// What the server needs to answer.
pub(crate) struct Site {
    pub(crate) root: PathBuf,
    pub(crate) node: NodeHandle,
    pub(crate) addresses: Vec<Multiaddr>,
    /// Whether the API answers clients on other hosts too.
    pub(crate) open_api: bool,
}

/// The address a request came from.
#[derive(Debug, Clone, Copy)]
struct Client(SocketAddr);

/// The page's address was taken or refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve the browser page on {address} (choose another --http-port, or --no-http)")]
pub(crate) struct BindError {
    pub(crate) address: SocketAddr,
    #[source]
    pub(crate) source: io::Error,
}

impl ErrorCode for BindError {
    fn code(&self) -> &'static str {
        "http-bind"
    }
}

/// Binds the server; returns the bound address and the future that serves.
pub(crate) async fn bind(
    address: SocketAddr,
    site: Site,
) -> io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let router = router(site);
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_ip = Arc::new(PerIp::default());
    let serve = async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::debug!(%error, "HTTP accept failed");
                    continue;
                }
            };
            let Some(share) = PerIp::admit(&per_ip, peer.ip()) else {
                tracing::debug!(%peer, "HTTP client over its share of connections");
                continue;
            };
            let service = TowerToHyperService::new(router.clone().layer(Extension(Client(peer))));
            tokio::spawn(async move {
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(MAX_HEAD)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "HTTP connection failed"),
                    Err(_) => tracing::debug!(%peer, "HTTP connection outlived its lifetime"),
                }
                drop((permit, share));
            });
        }
    };
    Ok((bound, serve))
}

fn router(site: Site) -> Router {
    let files = ServeDir::new(&site.root)
        .precompressed_br()
        .precompressed_gzip()
        .append_index_html_on_directories(true);
    let api = Router::new()
        .route("/status.json", get(status))
        .route("/api/record", get(record))
        .layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::predicate(|origin, _| is_local_origin(origin))),
        );
    Router::new()
        .route("/config.json", get(config))
        .merge(api)
        .fallback_service(files)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(RequestBodyLimitLayer::new(0))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .with_state(Arc::new(site))
}

/// `/config.json`: where a page's tab joins.
async fn config(State(site): State<Arc<Site>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "peerId": site.node.local_peer_id().to_string(),
        "addresses": site.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
    }))
}

/// `/status.json`: the monitor's report.
async fn status(
    State(site): State<Arc<Site>>,
    Extension(client): Extension<Client>,
) -> (StatusCode, Json<Answer>) {
    if let Err(refused) = may_use_api(&site, client) {
        return reply(Answer::error(&refused));
    }
    reply(Answer::from_result(
        site.node.network_report().await,
        Answer::Report,
    ))
}

#[derive(Deserialize)]
struct RecordQuery {
    key: Option<String>,
}

/// The API was asked from another host.
#[derive(Debug, thiserror::Error)]
#[error(
    "the API answers clients on this host only (start the node with --open-api to change that)"
)]
struct NotLocal;

impl ErrorCode for NotLocal {
    fn code(&self) -> &'static str {
        "api-not-local"
    }
}

fn may_use_api(site: &Site, client: Client) -> Result<(), NotLocal> {
    if site.open_api || client.0.ip().is_loopback() {
        Ok(())
    } else {
        Err(NotLocal)
    }
}

/// Whether a page's `Origin` is on this host: `http(s)://127.x.x.x`,
/// `[::1]` or `localhost`, any port.
fn is_local_origin(origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => rest.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Connections per client address, so that one cannot hold every slot.
#[derive(Debug, Default)]
struct PerIp {
    open: std::sync::Mutex<std::collections::HashMap<IpAddr, usize>>,
}

/// One admitted connection; its slot frees when dropped.
#[derive(Debug)]
struct Share {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A share for a connection from `ip`, unless it has all of its own.
    fn admit(per_ip: &Arc<PerIp>, ip: IpAddr) -> Option<Share> {
        let mut open = per_ip
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= MAX_CONNECTIONS_PER_IP {
            return None;
        }
        *count += 1;
        Some(Share {
            per_ip: per_ip.clone(),
            ip,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut open = self
            .per_ip
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A query string the server cannot use.
#[derive(Debug, thiserror::Error)]
enum BadQuery {
    #[error("missing ?key=")]
    MissingKey,
    #[error("the query string is malformed")]
    Malformed(#[source] QueryRejection),
}

impl ErrorCode for BadQuery {
    fn code(&self) -> &'static str {
        "bad-request"
    }
}

/// `/api/record?key=K`: the record under the text key `K`, looked up by
/// this node.
async fn record(
    State(site): State<Arc<Site>>,
    Extension(client): Extension<Client>,
    query: Result<Query<RecordQuery>, QueryRejection>,
) -> (StatusCode, Json<Answer>) {
    if let Err(refused) = may_use_api(&site, client) {
        return reply(Answer::error(&refused));
    }
    let key = match query {
        Ok(Query(RecordQuery { key: Some(key) })) => key,
        Ok(_) => return reply(Answer::error(&BadQuery::MissingKey)),
        Err(rejection) => return reply(Answer::error(&BadQuery::Malformed(rejection))),
    };
    reply(Answer::from_result(
        site.node.get_record(key).await,
        Answer::Record,
    ))
}

/// An answer with the HTTP status its outcome means.
fn reply(answer: Answer) -> (StatusCode, Json<Answer>) {
    let status = match &answer {
        Answer::Error(error) => status_of(error),
        _ => StatusCode::OK,
    };
    (status, Json(answer))
}

fn status_of(error: &ErrorReport) -> StatusCode {
    match error.code {
        "not-found" => StatusCode::NOT_FOUND,
        "bad-request"
        | "empty-key"
        | "key-too-large"
        | "unknown-record-kind"
        | "bad-record-name"
        | "owner-key-not-inline" => StatusCode::BAD_REQUEST,
        "timeout" | "quorum-failed" => StatusCode::GATEWAY_TIMEOUT,
        "api-not-local" => StatusCode::FORBIDDEN,
        "node-stopped" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pages_from_this_host_may_read_the_api() {
        for local in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1",
            "https://localhost:3000",
            "http://[::1]:8080",
        ] {
            assert!(is_local_origin(&HeaderValue::from_static(local)), "{local}");
        }
        for foreign in [
            "https://evil.example",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example:80",
            "null",
            "http://192.168.1.2:8080",
        ] {
            assert!(
                !is_local_origin(&HeaderValue::from_static(foreign)),
                "{foreign}"
            );
        }
    }

    /// Regression: 64 slow clients from one address held every slot.
    #[test]
    fn one_address_gets_its_share_of_connections() {
        let per_ip = Arc::new(PerIp::default());
        let flood: IpAddr = "203.0.113.5".parse().unwrap();
        let shares: Vec<Share> = (0..MAX_CONNECTIONS_PER_IP + 5)
            .filter_map(|_| PerIp::admit(&per_ip, flood))
            .collect();
        assert_eq!(shares.len(), MAX_CONNECTIONS_PER_IP);
        assert!(PerIp::admit(&per_ip, "203.0.113.6".parse().unwrap()).is_some());
        drop(shares);
        assert!(PerIp::admit(&per_ip, flood).is_some());
    }
}
