//! Nodes nobody can dial, served through circuit relay v2, in process: each
//! relayed node stands in for a browser tab (it listens on nothing and dials
//! out only), the bootstrap node relays. They must do for others everything a
//! native node does: enter routing tables, hold records, answer reads.

use std::{num::NonZeroUsize, time::Duration};

use dht_core::{
    Config, ErrorCode, Event, Quorum, RelayLimits, RelayLost, Role, ServerMode, Write,
    libp2p::{PeerId, identity::Keypair, multiaddr::Protocol},
    record::immutable_key,
    testnet::{Testnet, memory_swarm, xor_closest},
};
use dht_tests::{eventually, pool, run, within};
use futures::{StreamExt, executor::ThreadPool, future::join_all};

const PATIENCE: Duration = Duration::from_secs(30);

/// A network whose bootstrap relays within `limits`, then `natives` native
/// nodes, then `relayed` nodes that serve through the bootstrap.
async fn network(
    pool: &ThreadPool,
    k: usize,
    limits: RelayLimits,
    natives: usize,
    relayed: usize,
) -> Testnet {
    let executor = pool.clone();
    let mut net = Testnet::new(move |task| executor.spawn_ok(task));
    let config = || Config::builder().replication_factor(k);
    net.spawn(config().relay_server(Some(limits)), Role::Bootstrap)
        .await
        .expect("the relay starts");
    for _ in 0..natives {
        net.spawn(config(), Role::ClientHelper)
            .await
            .expect("a native node joins");
    }
    for _ in 0..relayed {
        net.spawn(
            config().server_mode(ServerMode::Relayed),
            Role::ClientHelper,
        )
        .await
        .expect("a relayed node joins and gets a reservation");
    }
    net
}

fn is_circuit(address: &dht_core::libp2p::Multiaddr) -> bool {
    address.iter().any(|p| p == Protocol::P2pCircuit)
}

#[test]
fn a_relayed_node_serves_and_enters_routing_tables_at_its_circuit_address() {
    let pool = pool();
    run(Duration::from_secs(90), "relayed node serves", async {
        let net = network(&pool, 20, RelayLimits::default(), 2, 1).await;
        let relay = &net.nodes()[0];
        let tab = &net.nodes()[3];

        let report = tab.handle.network_report().await.expect("running");
        assert!(report.serving, "a relayed node with a reservation serves");
        assert_eq!(report.relayed_by, vec![relay.peer_id]);
        let relay_report = relay.handle.network_report().await.expect("running");
        assert_eq!(relay_report.relay.map(|r| r.reservations), Some(1));

        for native in &net.nodes()[1..3] {
            let entry = eventually(PATIENCE, "the native routes to the tab", || async {
                // A lookup of the tab's id meets it (or a peer that knows it).
                let _ = native.handle.closest_peers(tab.peer_id.to_bytes()).await;
                let table = native.handle.routing_table().await.expect("running");
                table.peers().find(|e| e.peer_id == tab.peer_id).cloned()
            })
            .await;
            assert!(
                entry.addresses.iter().all(is_circuit),
                "only circuit addresses are known for a tab: {:?}",
                entry.addresses
            );
            assert!(
                entry
                    .addresses
                    .iter()
                    .any(|a| a.iter().any(|p| p == Protocol::P2p(relay.peer_id))),
                "the circuit goes through the relay: {:?}",
                entry.addresses
            );
        }
        net.shutdown().await;
    });
}

#[test]
fn a_record_whose_only_holders_are_relayed_nodes_is_stored_and_read_through_the_relay() {
    let pool = pool();
    run(Duration::from_secs(120), "records held by tabs", async {
        let k = 2;
        let mut net = network(&pool, k, RelayLimits::default(), 2, 0).await;
        let value = b"held by tabs".to_vec();
        let key = immutable_key(&value);
        // Two tabs closer to the key than any native node: its k closest.
        let natives: Vec<PeerId> = net.nodes().iter().map(|n| n.peer_id).collect();
        let mut tabs = Vec::new();
        while tabs.len() < 2 {
            let keypair = Keypair::generate_ed25519();
            let peer = keypair.public().to_peer_id();
            let candidates = natives.iter().copied().chain([peer]);
            if xor_closest(&key, candidates, 1) == [peer] {
                tabs.push(peer);
                let tab = Config::builder()
                    .replication_factor(k)
                    .server_mode(ServerMode::Relayed);
                net.spawn_as(tab, Role::ClientHelper, keypair)
                    .await
                    .expect("a relayed node joins and gets a reservation");
            }
        }

        let writer = &net.nodes()[1];
        let put = writer
            .handle
            .put_with_quorum(
                Write::immutable(value.clone()),
                Quorum::N(NonZeroUsize::new(2).expect("non-zero")),
            )
            .await
            .expect("both tabs acknowledge");
        for tab in &net.nodes()[3..5] {
            let records = tab.handle.records().await.expect("running");
            let held = records.iter().find(|r| r.key == put.key);
            assert!(
                held.is_some_and(|r| r.for_others && r.value == value),
                "tab {} holds the record for others",
                tab.index
            );
        }

        // The writer forgets its own copy: only the tabs hold it now.
        let writer = net
            .restart(1, Config::builder().replication_factor(k))
            .await
            .expect("the writer restarts");
        assert!(writer.handle.records().await.expect("running").is_empty());
        for reader in [1, 2] {
            let found = net.nodes()[reader]
                .handle
                .get_record(put.key.clone())
                .await
                .expect("the record is found at the tabs");
            assert_eq!(found.value, value);
            assert!(!found.found_locally);
            assert!(
                found.found_at.iter().all(|p| tabs.contains(p)),
                "answered by the tabs: {:?}",
                found.found_at
            );
        }
        net.shutdown().await;
    });
}

#[test]
fn a_relay_at_its_reservation_limit_refuses_the_next_node_with_a_clear_reason() {
    let pool = pool();
    run(Duration::from_secs(60), "relay at its limit", async {
        let limits = RelayLimits {
            max_reservations: 1,
            ..RelayLimits::default()
        };
        let net = network(&pool, 20, limits, 0, 1).await;
        let relay = &net.nodes()[0];

        // A second relayed node, watched from its first event.
        let keypair = Keypair::generate_ed25519();
        let config = Config::builder()
            .server_mode(ServerMode::Relayed)
            .bootstrap_peer(relay.address.clone())
            .build()
            .expect("valid");
        let swarm = memory_swarm(&keypair, &config, net.spawner()).expect("a swarm");
        let spawner = net.spawner();
        let mut late = dht_core::start(swarm, &config, &Role::ClientHelper, move |t| spawner(t));
        let reason = within(PATIENCE, "the relay refuses", async {
            while let Some(event) = late.events.next().await {
                match event {
                    Event::RelayReservationLost {
                        relay: from,
                        reason,
                    } if from == relay.peer_id => {
                        return reason;
                    }
                    Event::RelayReserved { .. } => panic!("the relay is full"),
                    _ => {}
                }
            }
            panic!("the node stopped")
        })
        .await;
        assert!(matches!(reason, RelayLost::Full), "{reason:?}");
        assert_eq!(reason.code(), "relay-full");
        assert_eq!(reason.to_string(), "the relay is at its reservation limit");
        let report = late.handle.network_report().await.expect("running");
        assert!(
            !report.serving,
            "without a reservation the node only queries"
        );
        assert!(report.relayed_by.is_empty());

        late.handle.shutdown().await;
        net.shutdown().await;
    });
}

#[test]
fn a_relayed_node_stops_serving_when_its_relay_dies_and_serves_again_when_it_returns() {
    let pool = pool();
    run(Duration::from_secs(90), "relay restart", async {
        let mut net = network(&pool, 20, RelayLimits::default(), 1, 1).await;
        let tab = net.nodes()[2].clone();
        let mut events = tab.handle.subscribe().await.expect("running");
        let relay = net.nodes()[0].peer_id;

        let down = std::time::Instant::now();
        net.restart(
            0,
            Config::builder().relay_server(Some(RelayLimits::default())),
        )
        .await
        .expect("the relay restarts");
        let mut lost = None;
        within(
            PATIENCE,
            "the tab serves again through the restarted relay",
            async {
                while let Some(event) = events.next().await {
                    match event {
                        Event::RelayReservationLost {
                            relay: from,
                            reason,
                        } if from == relay => {
                            assert_eq!(reason.code(), "relay-disconnected");
                            lost = Some(down.elapsed());
                        }
                        Event::ServingChanged { serving: false } => {
                            assert!(lost.is_some(), "client mode follows the loss");
                        }
                        Event::RelayReserved { relay: from } if from == relay => {
                            assert!(lost.is_some(), "the reservation was lost first");
                            break;
                        }
                        _ => {}
                    }
                }
            },
        )
        .await;
        eprintln!(
            "relay restart: reservation lost {:?} and taken again {:?} after the restart began",
            lost.unwrap_or_default(),
            down.elapsed()
        );
        let report = tab.handle.network_report().await.expect("running");
        assert!(report.serving);
        assert_eq!(report.relayed_by, vec![relay]);
        net.shutdown().await;
    });
}

/// libp2p-relay 0.22 sets up at most 10 circuits at once to one relayed node
/// and drops the rest unanswered; their dials must fail at the circuit dial
/// timeout instead of waiting for the relay's 60 s stream timeout.
#[test]
fn circuits_the_relay_drops_fail_at_the_dial_timeout_not_a_minute_later() {
    let pool = pool();
    run(Duration::from_secs(90), "sixteen circuits at once", async {
        let limits = RelayLimits {
            circuits_per_ip_per_minute: 100_000,
            ..RelayLimits::default()
        };
        let mut net = network(&pool, 20, limits, 0, 1).await;
        let tab = net.nodes()[1].clone();
        let mut dialers = Vec::new();
        for _ in 0..16 {
            let node = net
                .spawn(
                    Config::builder().server_mode(ServerMode::Never),
                    Role::ClientHelper,
                )
                .await
                .expect("a dialer joins");
            dialers.push(node.handle.clone());
        }
        // Well below the relay's 60 s, well above the dial timeout.
        let bound = dht_core::CIRCUIT_DIAL_TIMEOUT * 4;
        let dials = dialers
            .iter()
            .map(|handle| handle.dial(tab.address.clone()));
        let results = within(bound, "every dial ends", join_all(dials)).await;
        let connected = results.iter().filter(|r| r.is_ok()).count();
        assert!(connected >= 10, "{connected} of 16 connected");
        net.shutdown().await;
    });
}

/// Whether `node`'s routing table holds `peer`.
async fn routes_to(node: &dht_core::testnet::TestNode, peer: PeerId) -> bool {
    let table = node.handle.routing_table().await.expect("running");
    table.peers().any(|e| e.peer_id == peer)
}

/// Whether `node` is connected to `peer`.
async fn connected(node: &dht_core::testnet::TestNode, peer: PeerId) -> bool {
    let peers = node.handle.connected_peers().await.expect("running");
    peers.contains(&peer)
}

/// A closed tab says nothing; its relay answers "no reservation" for it.
/// A node connected to the tab checks it when the connection breaks, every
/// other node when it has not heard from it for its check interval, and the
/// relay forgets it when its reservation ends.
#[test]
fn a_relayed_node_that_stops_leaves_routing_tables_within_the_check_interval() {
    let pool = pool();
    run(Duration::from_secs(120), "a closed tab leaves", async {
        let executor = pool.clone();
        let mut net = Testnet::new(move |task| executor.spawn_ok(task));
        net.spawn(
            Config::builder().relay_server(Some(RelayLimits::default())),
            Role::Bootstrap,
        )
        .await
        .expect("the relay starts");
        // Checks only when a connection breaks (the default interval is
        // far longer than this test).
        let held = net
            .spawn(Config::builder(), Role::ClientHelper)
            .await
            .expect("a native node joins")
            .clone();
        let interval = Duration::from_secs(2);
        let quiet = net
            .spawn(
                Config::builder()
                    .check_relayed_peers_every(interval)
                    .idle_connection_timeout(Duration::from_secs(1)),
                Role::ClientHelper,
            )
            .await
            .expect("a native node joins")
            .clone();
        let tab = net
            .spawn(
                Config::builder().server_mode(ServerMode::Relayed),
                Role::ClientHelper,
            )
            .await
            .expect("a relayed node joins and gets a reservation")
            .clone();

        let relay = net.nodes()[0].clone();
        for node in [&held, &quiet, &relay] {
            eventually(PATIENCE, "the node routes to the tab", || async {
                let _ = node.handle.closest_peers(tab.peer_id.to_bytes()).await;
                routes_to(node, tab.peer_id).await.then_some(())
            })
            .await;
        }
        held.handle
            .dial(tab.address.clone())
            .await
            .expect("the tab is reachable through the relay");

        // A live tab passes its check and stays: `quiet` idles out, then
        // dials it again once the interval has passed.
        eventually(PATIENCE, "the quiet node idles out", || async {
            (!connected(&quiet, tab.peer_id).await).then_some(())
        })
        .await;
        eventually(PATIENCE, "the quiet node checks the tab", || async {
            connected(&quiet, tab.peer_id).await.then_some(())
        })
        .await;
        assert!(routes_to(&quiet, tab.peer_id).await, "a live tab stays");
        eventually(PATIENCE, "the quiet node idles out again", || async {
            (!connected(&quiet, tab.peer_id).await).then_some(())
        })
        .await;
        assert!(connected(&held, tab.peer_id).await);

        tab.handle.shutdown().await;
        let bound = dht_core::CIRCUIT_DIAL_TIMEOUT + Duration::from_secs(1);
        eventually(
            bound,
            "the connected node drops the tab at once",
            || async { (!routes_to(&held, tab.peer_id).await).then_some(()) },
        )
        .await;
        let bound = interval + Duration::from_secs(10) + dht_core::CIRCUIT_DIAL_TIMEOUT;
        eventually(
            bound,
            "the quiet node drops the tab at its check",
            || async { (!routes_to(&quiet, tab.peer_id).await).then_some(()) },
        )
        .await;
        eventually(bound, "the relay drops the tab", || async {
            (!routes_to(&relay, tab.peer_id).await).then_some(())
        })
        .await;
        // The relay and the other native stay.
        assert!(routes_to(&quiet, held.peer_id).await);
        net.shutdown().await;
    });
}

/// A node that knows nothing but a tab's circuit address finds the rest of
/// the DHT: its lookups go through the tab, which answers them with the
/// peers it knows. The relay is no member of this DHT (it speaks another
/// Kademlia protocol), so the tab is the only peer that can have told it.
#[test]
fn a_native_lookup_is_routed_through_a_tab() {
    let pool = pool();
    run(
        Duration::from_secs(90),
        "a lookup routed through a tab",
        async {
            let executor = pool.clone();
            let mut net = Testnet::new(move |task| executor.spawn_ok(task));
            let relay = net
                .spawn_joining(
                    Config::builder()
                        .kad_protocol("/another-dht/kad/1.0.0")
                        .relay_server(Some(RelayLimits::default())),
                    Role::Bootstrap,
                )
                .await
                .expect("the relay starts")
                .clone();
            let first = net
                .spawn_joining(Config::builder(), Role::ClientHelper)
                .await
                .expect("the DHT's first node starts")
                .clone();
            let tab = net
                .spawn_joining(
                    Config::builder()
                        .server_mode(ServerMode::Relayed)
                        .bootstrap_peer(first.address.clone())
                        .bootstrap_peer(relay.address.clone()),
                    Role::ClientHelper,
                )
                .await
                .expect("the tab joins and serves through the relay")
                .clone();
            let newcomer = net
                .spawn_joining(
                    Config::builder().bootstrap_peer(tab.address.clone()),
                    Role::ClientHelper,
                )
                .await
                .expect("a node joins through the tab")
                .clone();

            let found = newcomer
                .handle
                .closest_peers(first.peer_id.to_bytes())
                .await
                .expect("the lookup finishes");
            assert!(
                found.iter().any(|p| p.peer_id == first.peer_id),
                "the lookup reached the first node through the tab: {found:?}"
            );
            let table = newcomer.handle.routing_table().await.expect("running");
            assert!(
                table.peers().all(|e| e.peer_id != relay.peer_id),
                "the relay is no member of this DHT"
            );
            net.shutdown().await;
        },
    );
}
