//! The `native-node` binary as real processes on 127.0.0.1: a bootstrap,
//! listeners and dialers over TCP and over QUIC, crashes and restarts, and
//! bad input.

use std::{collections::BTreeSet, time::Duration};

use dht_tests::process::{
    MISSING_KEY, NodeProcess, error_code, free_port, run_once, stored_key, temp_dir,
};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(40);

fn bootstrap(name: &str, key_file: &str, listen: &[String]) -> NodeProcess {
    let mut args = vec![
        "bootstrap",
        "--key-file",
        key_file,
        "--report-interval",
        "0",
        "--no-http",
    ];
    for address in listen {
        args.extend(["--listen", address.as_str()]);
    }
    NodeProcess::start(name, &args)
}

fn member(role: &str, name: &str, bootstrap: &str, listen: &str) -> NodeProcess {
    let mut args = vec![
        role,
        "--namespace",
        "chat",
        "--bootstrap",
        bootstrap,
        "--listen",
        listen,
    ];
    if role == "dialer" {
        args.extend(["--discover-interval", "1s"]);
    }
    NodeProcess::start(name, &args)
}

fn is_link(event: &Value, peer: &str) -> bool {
    event["type"] == "namespace-linked" && event["peer"] == peer
}

/// Dialers find every listener through the namespace and link to it, over
/// the given transport alone; a crashed listener is noticed and the other
/// links stay up.
fn listeners_and_dialers_over(transport: &str, listen: &str) {
    let dir = temp_dir(&format!("members-{transport}"));
    let key = dir.join("bootstrap.key");
    let mut boot = bootstrap(
        &format!("bootstrap-{transport}"),
        key.to_str().expect("utf-8 path"),
        &[listen.to_owned()],
    );
    let boot_address = boot.started().address(transport);

    let mut listeners: Vec<NodeProcess> = (0..3)
        .map(|i| member("listener", &format!("listener-{i}"), &boot_address, listen))
        .collect();
    let started: Vec<_> = listeners.iter_mut().map(|l| l.started()).collect();
    let listener_ids: Vec<String> = started.iter().map(|s| s.peer_id.clone()).collect();
    for node in &started {
        assert!(
            node.addresses.iter().all(|a| a.contains(transport)),
            "only {transport}: {:?}",
            node.addresses
        );
    }
    let mut dialers: Vec<NodeProcess> = (0..2)
        .map(|i| member("dialer", &format!("dialer-{i}"), &boot_address, listen))
        .collect();
    let dialer_ids: Vec<String> = dialers.iter_mut().map(|d| d.started().peer_id).collect();

    for dialer in &mut dialers {
        for id in &listener_ids {
            let link = dialer.wait_for(LONG, &format!("a link to listener {id}"), |e| {
                is_link(e, id)
            });
            assert_eq!(link["role"], "listener");
            assert_eq!(link["outbound"], true);
        }
    }

    // Crash one listener: every dialer notices, and keeps the other links.
    let crashed = listener_ids[0].clone();
    listeners[0].kill();
    for dialer in &mut dialers {
        let lost = dialer.wait_for(LONG, "the crashed listener's link to end", |e| {
            e["type"] == "namespace-link-lost" && e["peer"] == crashed.as_str()
        });
        assert_eq!(lost["namespace"], "chat");
        let later = dialer.drain(Duration::from_secs(3));
        for event in later {
            assert!(
                !(event["type"] == "namespace-link-lost" && event["peer"] != crashed.as_str()),
                "{}: another link was disturbed: {event}",
                dialer.name
            );
        }
    }
    for listener in listeners.iter_mut().skip(1) {
        // The survivors accepted every dialer's link.
        for id in &dialer_ids {
            listener.wait_for(LONG, &format!("the link from dialer {id}"), |e| {
                is_link(e, id) && e["outbound"] == false
            });
        }
    }
    assert!(
        boot.terminate().success(),
        "the bootstrap stops cleanly on SIGTERM"
    );
}

#[test]
fn listeners_and_dialers_find_each_other_over_tcp() {
    listeners_and_dialers_over("tcp", "/ip4/127.0.0.1/tcp/0");
}

#[test]
fn listeners_and_dialers_find_each_other_over_quic() {
    listeners_and_dialers_over("quic-v1", "/ip4/127.0.0.1/udp/0/quic-v1");
}

/// A restarted bootstrap keeps its peer id and address, and the nodes that
/// lost it reconnect on their own.
#[test]
fn a_restarted_bootstrap_keeps_its_identity_and_its_peers_come_back() {
    let dir = temp_dir("restart");
    let key = dir.join("bootstrap.key");
    let key = key.to_str().expect("utf-8 path");
    let port = free_port();
    let listen = vec![format!("/ip4/127.0.0.1/tcp/{port}")];

    let mut boot = bootstrap("bootstrap", key, &listen);
    let first = boot.started();
    let address = first.address("tcp");
    let mut listener = member("listener", "listener", &address, "/ip4/127.0.0.1/tcp/0");
    listener.wait_for(LONG, "the first connection", |e| {
        e["type"] == "bootstrap-peer-connected"
    });

    assert!(boot.terminate().success());
    listener.wait_for(LONG, "the loss of the bootstrap", |e| {
        e["type"] == "bootstrap-peer-lost"
    });

    let mut again = bootstrap("bootstrap-again", key, &listen);
    let second = again.started();
    assert_eq!(
        second.peer_id, first.peer_id,
        "same identity after a restart"
    );
    assert_eq!(
        second.address("tcp"),
        address,
        "same address after a restart"
    );

    listener.wait_for(LONG, "the reconnection", |e| {
        e["type"] == "bootstrap-peer-connected"
    });
    // The restarted bootstrap learns the listener's registration again.
    again.wait_for(LONG, "the listener's registration", |e| {
        e["type"] == "registration-stored"
    });
}

#[test]
fn bad_input_is_a_clear_error_and_never_a_panic() {
    let dir = temp_dir("bad-input");
    let corrupt = dir.join("corrupt.key");
    std::fs::write(&corrupt, b"certainly not a key").expect("write");
    let unreadable = dir.join("a-directory.key");
    std::fs::create_dir_all(&unreadable).expect("mkdir");
    let big = "x".repeat(70_000);
    let corrupt = corrupt.to_str().expect("utf-8");
    let unreadable = unreadable.to_str().expect("utf-8");
    let boot = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWEPTK1qWbbdU13mQGfXcFZ1RYofvEFje7quTUWHvhGKC6";

    // (arguments, exit status, the error code printed with --json)
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec![
                "client",
                "--bootstrap",
                "/ip4/127.0.0.1/tcp/1",
                "get",
                MISSING_KEY,
            ],
            2,
            "bootstrap-without-peer-id",
        ),
        (
            vec!["client", "--bootstrap", boot, "put", "k", &big],
            2,
            "value-too-large",
        ),
        (
            vec!["client", "--bootstrap", boot, "get", ""],
            2,
            "empty-key",
        ),
        (
            vec![
                "bootstrap",
                "--key-file",
                corrupt,
                "--port",
                "0",
                "--no-http",
            ],
            3,
            "identity-corrupt",
        ),
        (
            vec![
                "bootstrap",
                "--key-file",
                unreadable,
                "--port",
                "0",
                "--no-http",
            ],
            3,
            "identity-unreadable",
        ),
        (vec!["client", "get", MISSING_KEY], 2, "no-bootstrap"),
        (
            vec![
                "client",
                "--bootstrap",
                boot,
                "--listen",
                "/dns4/example.org/tcp/1",
                "get",
                MISSING_KEY,
            ],
            1,
            "listen-unsupported",
        ),
    ];
    for (args, status, code) in cases {
        let json: Vec<&str> = std::iter::once("--json")
            .chain(args.iter().copied())
            .collect();
        let (exit, stdout, stderr) = run_once(&json);
        assert_eq!(exit.code(), Some(status), "{args:?}\n{stderr}");
        assert_eq!(
            error_code(&stdout).as_deref(),
            Some(code),
            "{args:?}: {stdout}"
        );
        assert!(
            stderr.lines().any(|line| line.starts_with("error: ")),
            "{args:?}: a message for people too:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    }
    // What the command line itself refuses never reaches the node.
    for args in [
        &[
            "client",
            "--bootstrap",
            "/ip4/not-an-ip/tcp/1",
            "get",
            MISSING_KEY,
        ][..],
        &["listener", "--namespace", "", "--bootstrap", boot],
    ] {
        let (exit, _, stderr) = run_once(args);
        assert_eq!(exit.code(), Some(2), "{args:?}\n{stderr}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
    }
    // The corrupt key was left as it was.
    assert_eq!(
        std::fs::read(corrupt).expect("read"),
        b"certainly not a key"
    );
}

/// A client that cannot reach any bootstrap says so and exits with status 1
/// after its join timeout, instead of hanging.
#[test]
fn an_unreachable_bootstrap_fails_the_client_in_time() {
    let port = free_port();
    let boot = format!(
        "/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWEPTK1qWbbdU13mQGfXcFZ1RYofvEFje7quTUWHvhGKC6"
    );
    let (status, stdout, stderr) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &boot,
        "--join-timeout",
        "2s",
        "get",
        MISSING_KEY,
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        error_code(&stdout).as_deref(),
        Some("join-timeout"),
        "{stdout}"
    );
    assert!(
        stderr.contains("Connection refused"),
        "the message says why no bootstrap answered: {stderr}"
    );
}

/// The client helper stores and reads records for a script, with the exit
/// status telling a missing record apart.
#[test]
fn the_client_helper_puts_and_gets_for_scripts() {
    let dir = temp_dir("client");
    let key = dir.join("bootstrap.key");
    let mut boot = bootstrap(
        "bootstrap",
        key.to_str().expect("utf-8"),
        &["/ip4/127.0.0.1/tcp/0".to_owned()],
    );
    let address = boot.started().address("tcp");
    // A few ordinary nodes so records have somewhere to go.
    let _nodes: Vec<NodeProcess> = (0..3)
        .map(|i| {
            NodeProcess::start(
                &format!("node-{i}"),
                &["client", "--bootstrap", &address, "run"],
            )
        })
        .collect();

    // A signed record of the writer's identity, kept in a key file so a
    // later run can write a new version.
    let writer_key = dir.join("writer.key");
    let writer_key = writer_key.to_str().expect("utf-8");
    let put = |json: bool, value: &str| {
        let args = [
            "client",
            "--bootstrap",
            &address,
            "--key-file",
            writer_key,
            "put",
            "greeting",
            value,
        ];
        let args: Vec<&str> = json.then_some("--json").into_iter().chain(args).collect();
        let (status, stdout, stderr) = run_once(&args);
        assert!(status.success(), "{stderr}");
        stdout
    };
    let text = put(false, "hello");
    assert!(text.starts_with("stored /ns-dht/m/"), "{text}");
    assert!(
        text.contains("/greeting at "),
        "says how many peers stored it: {text}"
    );
    let again = put(true, "hello again");
    let key = stored_key(&again);
    assert!(key.ends_with("/greeting"), "{key}");
    let answer: serde_json::Value = serde_json::from_str(again.trim()).expect("JSON");
    assert!(
        answer["stored"]["stored"].as_u64().is_some_and(|n| n >= 1),
        "{again}"
    );

    let (status, stdout, stderr) = run_once(&["client", "--bootstrap", &address, "get", &key]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "hello again", "the newer version wins");

    let (status, stdout, stderr) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &address,
        "get",
        MISSING_KEY,
    ]);
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert_eq!(error_code(&stdout).as_deref(), Some("not-found"));
    // A key of no known kind is refused before the node starts.
    let (status, stdout, _) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &address,
        "get",
        "greeting",
    ]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(error_code(&stdout).as_deref(), Some("unknown-record-kind"));

    // Values are carried exactly: bytes as they are for a script, and as
    // base64 in JSON when they are not text.
    let binary = dir.join("binary.value");
    std::fs::write(&binary, [0xff, 0x0a, 0x00]).expect("write");
    let (status, stdout, stderr) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &address,
        "put-immutable",
        "--value-file",
        binary.to_str().expect("utf-8"),
    ]);
    assert!(status.success(), "{stderr}");
    let binary_key = stored_key(&stdout);
    // The SHA-256 of ff 0a 00.
    assert_eq!(
        binary_key,
        "/ns-dht/i/012e4089a992fc6160c0ce888ab59d200d8a480811d1d7f40bec704f61c59861"
    );
    let output = std::process::Command::new(dht_tests::process::native_node())
        .args(["client", "--bootstrap", &address, "get", &binary_key])
        .env_remove("DHT_BOOTSTRAP")
        .output()
        .expect("native-node runs");
    assert_eq!(output.stdout, [0xff, 0x0a, 0x00]);
    let (_, stdout, _) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &address,
        "get",
        &binary_key,
    ]);
    let answer: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(answer["ok"], true);
    assert_eq!(
        answer["record"]["value"],
        serde_json::json!({ "base64": "/woA" })
    );
    assert_eq!(
        answer["record"]["key"],
        serde_json::json!({ "text": binary_key })
    );
    assert_eq!(answer["record"]["forgeries"], 0);

    let (status, stdout, _) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &address,
        "closest",
        "greeting",
    ]);
    assert!(status.success());
    let closest: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    let peers: BTreeSet<&str> = closest["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["peerId"].as_str().expect("id"))
        .collect();
    assert_eq!(
        peers.len(),
        4,
        "the bootstrap and the three nodes: {closest}"
    );
}

/// Sends one HTTP/1.1 GET and returns the status code and body.
fn http_get(url_base: &str, path: &str) -> (u16, String) {
    let (status, _, body) = http_get_with(url_base, path, "");
    (status, body)
}

/// Sends one HTTP/1.1 GET with extra header lines; returns the status code,
/// the response head and the body.
fn http_get_with(url_base: &str, path: &str, headers: &str) -> (u16, String, String) {
    http_request(url_base, &format!("GET {path} HTTP/1.1"), headers)
}

/// Sends one HTTP/1.1 request line with extra header lines; returns the
/// status code, the response head and the body.
fn http_request(url_base: &str, request_line: &str, headers: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let authority = url_base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).expect("the HTTP server accepts");
    write!(
        stream,
        "{request_line}\r\nhost: {authority}\r\nconnection: close\r\n{headers}\r\n"
    )
    .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let status = response[9..12].parse().expect("a status code");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_owned(), body.to_owned())
}

/// The bootstrap serves the browser page and tells it where to connect; it
/// serves nothing outside its directory, and a taken HTTP port is a clear
/// error rather than a bootstrap without its page.
#[test]
fn the_bootstrap_serves_the_page_and_its_browser_addresses() {
    let dir = temp_dir("http");
    let www = dir.join("www");
    std::fs::create_dir_all(&www).expect("mkdir");
    std::fs::write(www.join("index.html"), "<title>page</title>").expect("write");
    std::fs::write(dir.join("secret.txt"), "not served").expect("write");
    std::fs::write(www.join("app.js"), "plain").expect("write");
    std::fs::write(www.join("app.js.gz"), "compressed twin").expect("write");
    std::fs::write(www.join("app.js.br"), "brotli twin").expect("write");
    let key = dir.join("bootstrap.key");
    let mut boot = NodeProcess::start(
        "bootstrap",
        &[
            "bootstrap",
            "--key-file",
            key.to_str().expect("utf-8"),
            "--port",
            "0",
            "--http-port",
            "0",
            "--www",
            www.to_str().expect("utf-8"),
            "--report-interval",
            "0",
        ],
    );
    let started = boot.started();
    for transport in ["tcp", "quic-v1", "ws", "webrtc-direct"] {
        started.address(transport);
    }
    let http = boot.wait_for(LONG, "the HTTP line", |e| e["type"] == "http");
    let url = http["url"].as_str().expect("url").to_owned();

    let (status, body) = http_get(&url, "/");
    assert_eq!((status, body.as_str()), (200, "<title>page</title>"));
    let (status, body) = http_get(&url, "/config.json");
    assert_eq!(status, 200);
    let config: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(config["peerId"], started.peer_id.as_str());
    let advertised: Vec<&str> = config["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        advertised.iter().any(|a| a.contains("/ws/p2p/")),
        "{advertised:?}"
    );
    assert!(
        advertised
            .iter()
            .any(|a| a.contains("/webrtc-direct/certhash/")),
        "{advertised:?}"
    );
    for escape in ["/../secret.txt", "/%2e%2e/secret.txt", "/missing.html"] {
        assert_eq!(http_get(&url, escape).0, 404, "{escape}");
    }
    // The build's brotli and gzip twins go to clients that accept them, and
    // only to them.
    let (status, head, body) = http_get_with(&url, "/app.js", "accept-encoding: br, gzip\r\n");
    assert_eq!((status, body.as_str()), (200, "brotli twin"));
    assert!(
        head.contains("content-encoding: br") && head.contains("text/javascript"),
        "{head}"
    );
    let (status, head, body) = http_get_with(&url, "/app.js", "accept-encoding: gzip, deflate\r\n");
    assert_eq!((status, body.as_str()), (200, "compressed twin"));
    assert!(
        head.contains("content-encoding: gzip") && head.contains("text/javascript"),
        "{head}"
    );
    let (status, head, body) = http_get_with(&url, "/app.js", "");
    assert_eq!((status, body.as_str()), (200, "plain"));
    assert!(!head.contains("content-encoding"), "{head}");

    let (status, body) = http_get(&url, &format!("/api/record?key={MISSING_KEY}"));
    assert_eq!(status, 404, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["error"]["code"], "not-found");
    let (status, body) = http_get(&url, "/api/record?key=not-a-record-key");
    assert_eq!(status, 400, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["error"]["code"], "unknown-record-kind");
    let (status, body) = http_get(&url, "/api/record");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http_get(&url, "/status.json");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(answer["report"]["localPeerId"], started.peer_id.as_str());
    let (status, _, _) = http_request(&url, "POST / HTTP/1.1", "content-length: 0\r\n");
    assert_eq!(status, 405, "only GET and HEAD");
    let huge = format!("x-padding: {}\r\n", "x".repeat(16 * 1024));
    let (status, _, _) = http_request(&url, "GET / HTTP/1.1", &huge);
    assert_eq!(status, 431, "an oversized request head is refused");

    // A record a client stored at the bootstrap, read through its HTTP API.
    let address = started.address("tcp");
    let (status, stdout, stderr) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &address,
        "put",
        "via-http",
        "hello",
    ]);
    assert!(status.success(), "{stderr}");
    let key = stored_key(&stdout);
    let (status, body) = http_get(&url, &format!("/api/record?key={key}"));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        answer["record"]["value"],
        serde_json::json!({ "text": "hello" })
    );

    let port = url
        .rsplit(':')
        .next()
        .expect("port")
        .trim_end_matches('/')
        .to_owned();
    let other_key = dir.join("other.key");
    let (status, stdout, stderr) = run_once(&[
        "--json",
        "bootstrap",
        "--key-file",
        other_key.to_str().expect("utf-8"),
        "--port",
        "0",
        "--http-port",
        &port,
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        error_code(&stdout).as_deref(),
        Some("http-bind"),
        "{stdout}"
    );
}
