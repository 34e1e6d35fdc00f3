//! A small HTTP/1.1 server for the browser page: static files from the `www`
//! directory (the page and its built wasm package), `/config.json` with this
//! node's dialable addresses, `/status.json` with its monitor report, and
//! `/api/record?key=K`, a DHT lookup done by this node (so a page or a test
//! can check what a native node sees). The JSON answers allow any origin:
//! they hold nothing a peer of the DHT could not learn anyway.
//!
//! Deliberately minimal: GET and HEAD only, one request per connection,
//! bounded request size, read timeout and concurrency, no path outside the
//! served directory.

use std::{
    io,
    path::{Component, Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use dht_core::{NodeHandle, libp2p::Multiaddr};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};

/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// Connections served at once; more wait.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest file served.
const MAX_FILE: u64 = 32 * 1024 * 1024;

/// What the server needs to answer.
pub(crate) struct Site {
    pub(crate) root: PathBuf,
    pub(crate) node: NodeHandle,
    pub(crate) addresses: Vec<Multiaddr>,
}

/// Binds the server; returns the bound address and the future that serves.
pub(crate) async fn bind(
    address: std::net::SocketAddr,
    site: Site,
) -> io::Result<(std::net::SocketAddr, impl Future<Output = ()>)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let site = Arc::new(site);
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
            let site = site.clone();
            tokio::spawn(async move {
                if let Err(error) = handle(stream, &site).await {
                    tracing::debug!(%peer, %error, "HTTP request failed");
                }
                drop(permit);
            });
        }
    };
    Ok((bound, serve))
}

async fn handle(mut stream: TcpStream, site: &Site) -> io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) => {
            return respond(&mut stream, 431, "text/plain", b"request too large\n", true).await;
        }
        Ok(Err(error)) => return Err(error),
        Err(_) => return respond(&mut stream, 408, "text/plain", b"request timeout\n", true).await,
    };
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let with_body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut stream,
            405,
            "text/plain",
            b"only GET and HEAD\n",
            with_body,
        )
        .await;
    }
    let path = target.split(['?', '#']).next().unwrap_or("/");
    match path {
        "/config.json" => {
            let body = json!({
                "peerId": site.node.local_peer_id().to_string(),
                "addresses": site.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
            });
            respond(
                &mut stream,
                200,
                "application/json",
                body.to_string().as_bytes(),
                with_body,
            )
            .await
        }
        "/api/record" => {
            let key = target
                .split_once('?')
                .and_then(|(_, query)| query.split('&').find_map(|pair| pair.strip_prefix("key=")))
                .and_then(percent_decode)
                .filter(|key| !key.is_empty());
            let Some(key) = key else {
                let body = json!({ "found": false, "error": "missing ?key=" });
                return respond(
                    &mut stream,
                    400,
                    "application/json",
                    body.to_string().as_bytes(),
                    with_body,
                )
                .await;
            };
            let (status, body) = match site.node.get_record(key.clone().into_bytes()).await {
                Ok(found) => (
                    200,
                    json!({
                        "found": true,
                        "key": key,
                        "value": String::from_utf8_lossy(&found.value),
                        "publisher": found.publisher.map(|p| p.to_string()),
                    }),
                ),
                Err(error) => (
                    404,
                    json!({ "found": false, "key": key, "error": error.to_string() }),
                ),
            };
            respond(
                &mut stream,
                status,
                "application/json",
                body.to_string().as_bytes(),
                with_body,
            )
            .await
        }
        "/status.json" => match site.node.network_report().await {
            Ok(report) => {
                let body = serde_json::to_vec(&report).unwrap_or_default();
                respond(&mut stream, 200, "application/json", &body, with_body).await
            }
            Err(_) => {
                respond(
                    &mut stream,
                    503,
                    "text/plain",
                    b"the node has stopped\n",
                    with_body,
                )
                .await
            }
        },
        _ => match resolve(&site.root, path) {
            Some(file) => {
                let gzip = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .any(|(name, value)| {
                        name.eq_ignore_ascii_case("accept-encoding") && value.contains("gzip")
                    });
                serve_file(&mut stream, &file, gzip, with_body).await
            }
            None => respond(&mut stream, 404, "text/plain", b"not found\n", with_body).await,
        },
    }
}

/// Reads up to the end of the request head; `None` if it is too large.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Some(String::from_utf8_lossy(&buffer).into_owned()));
        }
        buffer.extend_from_slice(&chunk[..n]);
        if buffer.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(String::from_utf8_lossy(&buffer).into_owned()));
        }
        if buffer.len() > MAX_REQUEST {
            return Ok(None);
        }
    }
}

/// The file under `root` that `path` names, if it is one: no `..`, no
/// absolute parts, `/` means `index.html`.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let relative = decoded.trim_start_matches('/');
    let relative = if relative.is_empty() || relative.ends_with('/') {
        format!("{relative}index.html")
    } else {
        relative.to_owned()
    };
    let relative = Path::new(&relative);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains('\0')).then_some(text)
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Serves `file`, or its gzip-compressed twin `<file>.gz` (made by the
/// build) when the client accepts gzip and the twin is at least as new.
async fn serve_file(
    stream: &mut TcpStream,
    file: &Path,
    gzip: bool,
    with_body: bool,
) -> io::Result<()> {
    let Ok(meta) = tokio::fs::metadata(file).await else {
        return respond(stream, 404, "text/plain", b"not found\n", with_body).await;
    };
    let mut twin = file.as_os_str().to_owned();
    twin.push(".gz");
    let twin = PathBuf::from(twin);
    let compressed = match (gzip, tokio::fs::metadata(&twin).await) {
        (true, Ok(twin_meta)) => match (twin_meta.modified(), meta.modified()) {
            (Ok(twin_time), Ok(time)) => twin_time >= time,
            _ => false,
        },
        _ => false,
    };
    let (source, encoding) = if compressed {
        (twin.as_path(), Some("gzip"))
    } else {
        (file, None)
    };
    match tokio::fs::metadata(source).await {
        Ok(meta) if meta.len() <= MAX_FILE => {}
        _ => return respond(stream, 404, "text/plain", b"not found\n", with_body).await,
    }
    match tokio::fs::read(source).await {
        Ok(body) => {
            respond_encoded(stream, 200, content_type(file), encoding, &body, with_body).await
        }
        Err(_) => respond(stream, 404, "text/plain", b"not found\n", with_body).await,
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    kind: &str,
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    respond_encoded(stream, status, kind, None, body, with_body).await
}

async fn respond_encoded(
    stream: &mut TcpStream,
    status: u16,
    kind: &str,
    encoding: Option<&str>,
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
         cache-control: no-cache\r\nx-content-type-options: nosniff\r\nvary: accept-encoding\r\n\
         connection: close\r\n{}{}\r\n",
        body.len(),
        encoding
            .map(|e| format!("content-encoding: {e}\r\n"))
            .unwrap_or_default(),
        if kind == "application/json" {
            "access-control-allow-origin: *\r\n"
        } else {
            ""
        }
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        let root = std::env::temp_dir().join(format!("ns-dht-http-{}", std::process::id()));
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("index.html"), "page").unwrap();
        std::fs::write(root.join("pkg/app.wasm"), "wasm").unwrap();
        assert_eq!(resolve(&root, "/"), Some(root.join("index.html")));
        assert_eq!(
            resolve(&root, "/pkg/app.wasm"),
            Some(root.join("pkg/app.wasm"))
        );
        assert_eq!(
            resolve(&root, "/pkg/%61pp.wasm"),
            Some(root.join("pkg/app.wasm"))
        );
        for bad in [
            "/../etc/passwd",
            "/pkg/../../x",
            "/%2e%2e/x",
            "//etc/passwd",
            "/missing",
            "/pkg",
            "/%zz",
            "/a%00b",
        ] {
            assert_eq!(resolve(&root, bad), None, "{bad}");
        }
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn wasm_is_served_as_wasm() {
        assert_eq!(content_type(Path::new("x/y.wasm")), "application/wasm");
        assert_eq!(
            content_type(Path::new("index.html")),
            "text/html; charset=utf-8"
        );
    }
}
