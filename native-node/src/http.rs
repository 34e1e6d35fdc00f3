//! The bootstrap's HTTP server for the browser page, on hyper, axum and
//! tower-http: static files from the `www` directory (the page and its built
//! wasm package, with the build's gzip twins for browsers that accept
//! gzip), `/config.json` with this node's dialable addresses, `/status.json`
//! with its monitor report, and `/api/record?key=K`, a DHT lookup done by
//! this node (so a page or a test can check what a native node sees). The
//! JSON answers are [`Answer`]s and allow any origin: they hold nothing a
//! peer of the DHT could not learn anyway.
//!
//! Bounded: [`MAX_CONNECTIONS`] at once (more wait in the kernel's backlog),
//! request heads of at most [`MAX_HEAD`] bytes read within
//! [`HEAD_TIMEOUT`] (idle keep-alive connections close then too), no request
//! bodies, answers within [`REQUEST_TIMEOUT`], and every connection closed
//! after [`CONNECTION_LIFETIME`] however slowly its client reads.

use std::{io, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Json, Router,
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
    cors::CorsLayer, limit::RequestBodyLimitLayer, services::ServeDir,
    set_header::SetResponseHeaderLayer, timeout::TimeoutLayer,
};

/// Connections served at once; more wait in the kernel's backlog.
pub(crate) const MAX_CONNECTIONS: usize = 64;
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
}

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
    let service = TowerToHyperService::new(router(site));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
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
            let service = service.clone();
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
                drop(permit);
            });
        }
    };
    Ok((bound, serve))
}

fn router(site: Site) -> Router {
    let files = ServeDir::new(&site.root)
        .precompressed_gzip()
        .append_index_html_on_directories(true);
    let api = Router::new()
        .route("/config.json", get(config))
        .route("/status.json", get(status))
        .route("/api/record", get(record))
        .layer(CorsLayer::new().allow_origin(tower_http::cors::Any));
    api.fallback_service(files)
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
async fn status(State(site): State<Arc<Site>>) -> (StatusCode, Json<Answer>) {
    reply(Answer::from_result(
        site.node.network_report().await,
        Answer::Report,
    ))
}

#[derive(Deserialize)]
struct RecordQuery {
    key: Option<String>,
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
    query: Result<Query<RecordQuery>, QueryRejection>,
) -> (StatusCode, Json<Answer>) {
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
        "bad-request" | "empty-key" | "key-too-large" => StatusCode::BAD_REQUEST,
        "timeout" | "quorum-failed" => StatusCode::GATEWAY_TIMEOUT,
        "node-stopped" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
