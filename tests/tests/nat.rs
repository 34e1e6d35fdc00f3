//! A `native-node` behind a real NAT (a router namespace masquerading with
//! nftables; needs root): nobody outside can open a connection to it, and
//! with `--reachability relayed` a public dialer finds it at circuit
//! addresses, links to it through the bootstrap's relay and the two
//! exchange messages.

use std::time::Duration;

use dht_tests::{
    netns::{Nat, Testbed},
    process::{NodeProcess, error_code, run_once_in, start_bootstrap_in},
};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(40);
const PORT: u16 = 4001;

fn is_link(event: &Value, peer: &str) -> bool {
    event["type"] == "namespace-linked" && event["peer"] == peer
}

#[test]
fn a_node_behind_a_nat_is_reached_only_through_a_relay() {
    let mut bed = Testbed::new("nat", 2)
        .unwrap_or_else(|e| panic!("this test makes network namespaces (as root): {e}"));
    let natted = bed
        .add_behind_nat(Nat::Cone)
        .unwrap_or_else(|e| panic!("a NAT (nftables): {e}"));
    let listen = |host: usize| format!("/ip4/{}/tcp/{PORT}", bed.hosts()[host].ip);
    let boot = start_bootstrap_in(&bed, 0, PORT, "0");
    let (boot_id, boot_address) = (boot.peer_id.clone(), boot.address.clone());
    let mut dialer = NodeProcess::start_in(
        &bed,
        1,
        "public-dialer",
        &[
            "dialer",
            "--namespace",
            "chat",
            "--bootstrap",
            &boot_address,
            "--listen",
            &listen(1),
            "--discover-interval",
            "1s",
            "--message",
            "from outside",
        ],
    );
    let dialer_id = dialer.started().peer_id;

    // Listening on its private address, it joins (its connections out
    // pass the NAT), but nobody outside can open a connection to it.
    let mut hidden = NodeProcess::start_in(
        &bed,
        natted,
        "hidden-listener",
        &[
            "listener",
            "--namespace",
            "chat",
            "--bootstrap",
            &boot_address,
            "--listen",
            &listen(natted),
        ],
    );
    let hidden_address = format!("{}/p2p/{}", listen(natted), hidden.started().peer_id);
    let (status, stdout, _) = run_once_in(
        &bed,
        1,
        &[
            "--json",
            "client",
            "--bootstrap",
            &hidden_address,
            "--join-timeout",
            "5s",
            "report",
        ],
    );
    assert!(
        !status.success(),
        "joined through a node behind a NAT: {stdout}"
    );
    assert_eq!(error_code(&stdout).as_deref(), Some("join-timeout"));
    assert!(hidden.terminate().success());

    // Serving through the relay, the same host is linked to and talks.
    let mut relayed = NodeProcess::start_in(
        &bed,
        natted,
        "relayed-listener",
        &[
            "listener",
            "--namespace",
            "chat",
            "--bootstrap",
            &boot_address,
            "--reachability=relayed",
            "--message",
            "from behind the NAT",
        ],
    );
    let relayed_id = relayed.started().peer_id;
    let discovered = dialer.wait_for(LONG, "the relayed listener is discovered", |e| {
        e["type"] == "namespace-peer-discovered" && e["peer"] == relayed_id.as_str()
    });
    let addresses = discovered["addresses"].as_array().expect("addresses");
    assert!(
        !addresses.is_empty()
            && addresses
                .iter()
                .all(|a| a.as_str().is_some_and(|a| a.contains("/p2p-circuit"))),
        "it registered circuit addresses only: {addresses:?}"
    );
    let reserved = relayed.wait_for(LONG, "a reservation on the bootstrap", |e| {
        e["type"] == "relay-reserved"
    });
    assert_eq!(reserved["relay"], boot_id.as_str());
    dialer.wait_for(LONG, "a link through the relay", |e| {
        is_link(e, &relayed_id)
    });
    let heard = relayed.wait_for(LONG, "the dialer's message", |e| {
        e["type"] == "message-received" && e["from"] == dialer_id.as_str()
    });
    assert_eq!(heard["data"]["text"], "from outside");
    let heard = dialer.wait_for(LONG, "the message from behind the NAT", |e| {
        e["type"] == "message-received" && e["from"] == relayed_id.as_str()
    });
    assert_eq!(heard["data"]["text"], "from behind the NAT");
}
