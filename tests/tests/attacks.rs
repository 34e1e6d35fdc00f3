//! Hostile peers, as real processes on loopback: each test is one attack
//! and asserts that honest peers keep working through it.

use std::time::Duration;

use dht_tests::process::{NodeProcess, error_code, routing_table_size, run_once, serves, temp_dir};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(40);

/// A bootstrap on 127.0.0.1 and ::1 that counts loopback peers like remote
/// ones (`--limit-loopback`) and reports every second, with `extra`
/// options; returns it with its TCP address on each.
fn loopback_bootstrap(name: &str, extra: &[&str]) -> (NodeProcess, String, String) {
    let key = temp_dir(name).join("bootstrap.key");
    let mut args = vec![
        "bootstrap",
        "--key-file",
        key.to_str().expect("utf-8"),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--listen",
        "/ip6/::1/tcp/0",
        "--no-http",
        "--report-interval",
        "1s",
        "--limit-loopback",
    ];
    args.extend_from_slice(extra);
    let mut boot = NodeProcess::start("bootstrap", &args);
    let started = boot.started();
    let find = |prefix: &str| {
        started
            .addresses
            .iter()
            .find(|a| a.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} address in {:?}", started.addresses))
            .clone()
    };
    let (v4, v6) = (find("/ip4/127.0.0.1/tcp/"), find("/ip6/::1/tcp/"));
    (boot, v4, v6)
}

/// Regression: one address with throwaway peer ids could take every
/// connection slot of a bootstrap. Now it gets its share, and a peer from
/// another address still joins.
#[test]
fn a_flood_from_one_address_leaves_room_for_others() {
    // 127.0.0.1 is the flooding address; ::1 another address of this host.
    let (mut boot, address, other) =
        loopback_bootstrap("flood", &["--max-connections-per-ip", "3"]);
    // Five peers from 127.0.0.1, each keeping its connection open.
    let _flood: Vec<NodeProcess> = (0..5)
        .map(|i| {
            NodeProcess::start(
                &format!("flood-{i}"),
                &[
                    "client",
                    "--bootstrap",
                    &address,
                    "--listen",
                    "/ip4/127.0.0.1/tcp/0",
                    "run",
                ],
            )
        })
        .collect();
    let connected = |report: &Value| report["report"]["connectedPeers"].as_u64().unwrap_or(0);
    // Three connections are admitted (a peer may hold two of them).
    boot.wait_for(LONG, "the address's share of connections", |line| {
        line["type"] == "report" && connected(line) >= 2
    });

    // One more from the flooding address cannot join...
    let (status, stdout, stderr) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &address,
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--join-timeout",
        "4s",
        "get",
        dht_tests::process::MISSING_KEY,
    ]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(error_code(&stdout).as_deref(), Some("join-timeout"));

    // ...while a peer from another address joins and is answered.
    let (status, stdout, stderr) = run_once(&[
        "--json",
        "client",
        "--bootstrap",
        &other,
        "--listen",
        "/ip6/::1/tcp/0",
        "--join-timeout",
        "10s",
        "get",
        dht_tests::process::MISSING_KEY,
    ]);
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert_eq!(error_code(&stdout).as_deref(), Some("not-found"));

    // The flood, retrying all along, never got more than its share (the
    // peer from the other address may still be connected).
    for line in boot.drain(Duration::from_secs(2)) {
        if line["type"] == "report" {
            assert!(connected(&line) <= 4, "{line}");
        }
    }
}

/// Regression: any peer that connected entered the routing table, so one
/// operator's many peer ids could fill it. Now one subnet gets a few
/// entries, and a peer from another subnet still gets in.
#[test]
fn one_subnet_gets_only_a_few_routing_entries() {
    let (mut boot, v4, v6) =
        loopback_bootstrap("diversity", &["--max-routing-peers-per-subnet", "2"]);
    // Four DHT servers from 127.0.0.0/24, and one from ::1 (another subnet).
    let peers = (0..4)
        .map(|_| (&v4, "/ip4/127.0.0.1/tcp/0"))
        .chain([(&v6, "/ip6/::1/tcp/0")]);
    let _nodes: Vec<NodeProcess> = peers
        .enumerate()
        .map(|(i, (bootstrap, listen))| {
            NodeProcess::start(
                &format!("node-{i}"),
                &[
                    "client",
                    "--bootstrap",
                    bootstrap,
                    "--listen",
                    listen,
                    "run",
                ],
            )
        })
        .collect();
    boot.wait_for(LONG, "two of one subnet and the one of another", |line| {
        routing_table_size(line) == Some(3)
    });
    for line in boot.drain(Duration::from_secs(3)) {
        if let Some(size) = routing_table_size(&line) {
            assert_eq!(size, 3, "{line}");
        }
    }
}

/// Regression: peers reached through a relay (tabs) counted against the
/// relay's subnet like its direct peers, so a node kept that subnet's few
/// entries (here 2, the relay's own among them) and knew no more of the
/// relay's tabs, however many there were. Now they are a group of their
/// own, bounded per bucket only: eight relayed nodes spread over several
/// buckets of an observer's table.
#[test]
fn peers_behind_one_relay_are_bounded_per_bucket_not_per_table() {
    let key = temp_dir("relay-diversity").join("relay.key");
    // The relay exempts loopback, so that it holds all of its relayed peers.
    let mut relay = NodeProcess::start(
        "relay",
        &[
            "bootstrap",
            "--key-file",
            key.to_str().expect("utf-8"),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-http",
        ],
    );
    let address = relay.started().address("tcp");
    let mut relayed: Vec<NodeProcess> = (0..8)
        .map(|i| {
            NodeProcess::start(
                &format!("relayed-{i}"),
                &[
                    "listener",
                    "--namespace",
                    "relayed",
                    "--bootstrap",
                    &address,
                    "--reachability=relayed",
                ],
            )
        })
        .collect();
    for node in &mut relayed {
        node.wait_for(LONG, "serving through the relay", serves);
    }
    // The observer counts loopback peers like remote ones, with room for 2
    // direct peers of a subnet in its table.
    let mut observer = NodeProcess::start(
        "observer",
        &[
            "listener",
            "--namespace",
            "observer",
            "--bootstrap",
            &address,
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--limit-loopback",
            "--max-routing-peers-per-subnet",
            "2",
            "--report-interval",
            "1s",
        ],
    );
    // The relay and at least three of the relayed nodes (eight random ids
    // all in one bucket, which would allow only two: about 1 in 256).
    observer.wait_for(LONG, "more relayed peers than a subnet's share", |line| {
        routing_table_size(line).is_some_and(|size| size >= 4)
    });
}
