//! The `native-node` binary as a circuit relay, with real processes on
//! 127.0.0.1: a bootstrap relays by default, and a listener that serves only
//! through it (`--reachability relayed`, as a browser tab would) is found
//! and linked to by a dialer, and the two exchange messages (`--message`);
//! once killed, it leaves the routing tables of its relay and of a native
//! node that knew it.

use std::time::Duration;

use dht_tests::process::{NodeProcess, error_code, run_once, serves, temp_dir};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(40);

/// A bootstrap (which relays by default) listening on `listen`, with its
/// key in a fresh directory named after `test`.
fn relay_bootstrap(test: &str, listen: &[&str]) -> NodeProcess {
    let key = temp_dir(test).join("bootstrap.key");
    let key = key.to_str().expect("utf-8 path");
    let mut args = vec![
        "bootstrap",
        "--key-file",
        key,
        "--report-interval",
        "0",
        "--no-http",
    ];
    for address in listen {
        args.extend(["--listen", address]);
    }
    NodeProcess::start("relay-bootstrap", &args)
}

fn is_link(event: &Value, peer: &str) -> bool {
    event["type"] == "namespace-linked" && event["peer"] == peer
}

#[test]
fn a_dialer_links_to_and_talks_with_a_listener_reachable_only_through_the_relay() {
    let mut boot = relay_bootstrap("relayed-member", &["/ip4/127.0.0.1/tcp/0"]);
    let boot_started = boot.started();
    let boot_address = boot_started.address("tcp");

    let mut listener = NodeProcess::start(
        "relayed-listener",
        &[
            "listener",
            "--namespace",
            "chat",
            "--bootstrap",
            &boot_address,
            "--reachability=relayed",
            "--message",
            "hello dialer",
        ],
    );
    let listener_started = listener.started();
    assert!(
        listener_started.addresses.is_empty(),
        "it listens on nothing of its own: {:?}",
        listener_started.addresses
    );
    let reserved = listener.wait_for(LONG, "a reservation on the bootstrap", |e| {
        e["type"] == "relay-reserved"
    });
    assert_eq!(reserved["relay"], boot_started.peer_id.as_str());
    listener.wait_for(LONG, "serving through the relay", serves);

    let mut dialer = NodeProcess::start(
        "direct-dialer",
        &[
            "dialer",
            "--namespace",
            "chat",
            "--bootstrap",
            &boot_address,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--discover-interval",
            "1s",
            "--message",
            "hello listener",
        ],
    );
    let dialer_id = dialer.started().peer_id;
    let discovered = dialer.wait_for(LONG, "the relayed listener is discovered", |e| {
        e["type"] == "namespace-peer-discovered" && e["peer"] == listener_started.peer_id.as_str()
    });
    let addresses = discovered["addresses"].as_array().expect("addresses");
    assert!(
        !addresses.is_empty()
            && addresses.iter().all(|a| {
                let a = a.as_str().expect("a string");
                a.contains("/p2p-circuit") && a.contains(&boot_started.peer_id)
            }),
        "its registration carries circuit addresses through the relay: {addresses:?}"
    );
    let link = dialer.wait_for(LONG, "a link to the relayed listener", |e| {
        is_link(e, &listener_started.peer_id)
    });
    assert_eq!(link["outbound"], true);
    listener.wait_for(LONG, "the listener accepts the dialer's link", |e| {
        is_link(e, &dialer_id) && e["outbound"] == false
    });
    let heard = listener.wait_for(LONG, "the dialer's message", |e| {
        e["type"] == "message-received" && e["from"] == dialer_id.as_str()
    });
    assert_eq!(heard["data"]["text"], "hello listener");
    let heard = dialer.wait_for(LONG, "the listener's message", |e| {
        e["type"] == "message-received" && e["from"] == listener_started.peer_id.as_str()
    });
    assert_eq!(heard["data"]["text"], "hello dialer");

    assert!(listener.terminate().success());
    assert!(dialer.terminate().success());
    assert!(boot.terminate().success());
}

#[test]
fn serving_through_a_relay_is_refused_where_it_cannot_work() {
    let dir = temp_dir("relayed-refusals");
    let key = dir.join("bootstrap.key");
    let (status, stdout, _) = run_once(&[
        "--json",
        "bootstrap",
        "--key-file",
        key.to_str().expect("utf-8 path"),
        "--reachability=relayed",
    ]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        error_code(&stdout).as_deref(),
        Some("bootstrap-must-be-reachable")
    );
    let (status, stdout, _) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWRBhwfeP2Y4TCx1SM6s9rUoHhR5STiGwxBhgFRcw3UERE",
        "--reachability=relayed",
        "closest",
        "x",
    ]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        error_code(&stdout).as_deref(),
        Some("one-shot-cannot-serve")
    );
    // Nor anything but `public` where every node is on one host.
    // (A localnet that started would run until stopped: bounded here.)
    for how in ["auto", "relayed"] {
        let args = ["localnet", "--reachability", how];
        let mut localnet = NodeProcess::start(&format!("localnet-{how}"), &args);
        let status = localnet.wait_exit(Duration::from_secs(20));
        assert_eq!(status.code(), Some(2), "localnet --reachability {how}");
        let refusal =
            localnet.wait_for(Duration::from_secs(5), "the refusal", |e| e["ok"] == false);
        assert_eq!(refusal["error"]["code"], "bad-request");
    }
}

fn is_removal(event: &Value, peer: &str, reason: &str) -> bool {
    event["type"] == "routing-removed" && event["peer"] == peer && event["reason"]["code"] == reason
}

/// A tab closes without a word; the real transports (circuits through TCP
/// and WebRTC-direct relay addresses) must still carry its relay's "no
/// reservation" answer to the nodes that dial it.
#[test]
fn a_killed_relayed_node_leaves_the_routing_tables_of_its_relay_and_of_others() {
    let mut boot = relay_bootstrap(
        "relayed-leaves",
        &["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/webrtc-direct"],
    );
    let boot_address = boot.started().address("tcp");
    let mut native = NodeProcess::start(
        "native",
        &[
            "client",
            "--bootstrap",
            &boot_address,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--check-relayed-peers-every",
            "5s",
            "run",
        ],
    );
    native.started();
    let mut tab = NodeProcess::start(
        "relayed-listener",
        &[
            "listener",
            "--namespace",
            "leaving",
            "--bootstrap",
            &boot_address,
            "--reachability=relayed",
        ],
    );
    let tab_id = tab.started().peer_id;
    tab.wait_for(LONG, "serving through the relay", serves);
    // Its first lookups meet the native node, which takes it into its table.
    native.wait_for(LONG, "the native node routes to the tab", |e| {
        e["type"] == "routing-updated" && e["peer"] == tab_id.as_str()
    });

    tab.kill();
    boot.wait_for(LONG, "the relay drops the tab", |e| {
        is_removal(e, &tab_id, "reservation-ended")
    });
    native.wait_for(LONG, "the native node drops the tab", |e| {
        is_removal(e, &tab_id, "no-reservation")
    });
    assert!(native.terminate().success());
    assert!(boot.terminate().success());
}
