//! The DHT as a whole, many nodes in one process over `MemoryTransport`
//! (noise + yamux, as in production) on a `futures` thread pool.
//!
//! Each network is built the way the spec's intensive test builds it: node 0
//! is the bootstrap and every other node joins through it.

use std::{collections::HashSet, time::Duration};

use dht_core::{
    Config, ConfigBuilder,
    libp2p::PeerId,
    record::Write,
    testnet::{TestNode, xor_closest},
};
use dht_tests::{eventually, network, pool, refresh_all, run};
use futures::future::join_all;

fn record_value(index: usize) -> Vec<u8> {
    format!("value written by node {index}").into_bytes()
}

/// The record every node writes: signed with its own key, so only it can
/// change it.
fn record_of(node: &TestNode) -> Write {
    Write::mutable(&node.keypair, "record", record_value(node.index))
}

fn record_key(node: &TestNode) -> Vec<u8> {
    record_of(node).key().expect("a valid record name")
}

/// The specification every network size must meet: every node writes a
/// record, every other node reads it, the records sit exactly at the `k`
/// nodes closest to their key (plus the writer), and closest-peer lookups
/// agree with a brute-force sort of all node ids. What a put places is
/// checked on its own: re-replication, which acts on each holder's view of
/// the network (in a network this small, a partial view of the key's
/// neighbours), is off (durability.rs tests it).
fn every_record_is_stored_at_the_k_closest_and_found_by_everyone(size: usize, k: usize) {
    let pool = pool();
    run(Duration::from_secs(300), "network checks", async {
        let started = std::time::Instant::now();
        let config = || {
            Config::builder()
                .replication_factor(k)
                .rereplicate_after(None)
        };
        let net = network(&pool, size, config).await;
        eprintln!("{size} nodes joined in {:?}", started.elapsed());
        let started = std::time::Instant::now();
        refresh_all(&net).await;
        eprintln!("refresh in {:?}", started.elapsed());
        let started = std::time::Instant::now();
        let nodes = net.nodes();
        let ids: Vec<PeerId> = nodes.iter().map(|n| n.peer_id).collect();

        let puts = join_all(nodes.iter().map(|n| n.handle.put(record_of(n)))).await;
        for (node, put) in nodes.iter().zip(puts) {
            match put {
                // A put returns once all k closest answered.
                Ok(put) => assert_eq!(put.stored, k, "node {} stored at all k", node.index),
                Err(error) => panic!("node {} could not store its record: {error}", node.index),
            }
        }

        eprintln!("{size} puts in {:?}", started.elapsed());
        // Right after the puts returned, with nothing waited for: exactly the
        // writer and the k closest hold each record.
        let mut stores = Vec::new();
        for node in nodes {
            let keys: HashSet<Vec<u8>> = node
                .handle
                .records()
                .await
                .expect("node is running")
                .into_iter()
                .map(|r| r.key)
                .collect();
            stores.push(keys);
        }
        for writer in nodes {
            let key = record_key(writer);
            let others = ids.iter().copied().filter(|id| *id != writer.peer_id);
            let mut expected: HashSet<PeerId> = xor_closest(&key, others, k).into_iter().collect();
            expected.insert(writer.peer_id);
            let holders: HashSet<PeerId> = nodes
                .iter()
                .filter(|n| stores[n.index].contains(&key))
                .map(|n| n.peer_id)
                .collect();
            assert_eq!(
                holders, expected,
                "holders of node {}'s record",
                writer.index
            );
        }

        let started = std::time::Instant::now();
        for reader in nodes {
            let gets = join_all(nodes.iter().filter(|w| w.index != reader.index).map(
                |writer| async move {
                    (
                        writer.index,
                        reader.handle.get_record(record_key(writer)).await,
                    )
                },
            ))
            .await;
            for (writer, got) in gets {
                match got {
                    Ok(found) => assert_eq!(
                        found.value,
                        record_value(writer),
                        "node {} read node {writer}'s record",
                        reader.index
                    ),
                    Err(error) => panic!(
                        "node {} could not read node {writer}'s record: {error}",
                        reader.index
                    ),
                }
            }
        }

        eprintln!("{} gets in {:?}", size * (size - 1), started.elapsed());

        for node in nodes {
            // A few record keys and a peer id from every node's point of view.
            let targets = [
                record_key(&nodes[(node.index + 1) % size]),
                record_key(&nodes[(node.index + size / 2) % size]),
                ids[(node.index + 3) % size].to_bytes(),
            ];
            for target in targets {
                let found: Vec<PeerId> = node
                    .handle
                    .closest_peers(target.clone())
                    .await
                    .unwrap_or_else(|e| panic!("node {}: closest peers failed: {e}", node.index))
                    .into_iter()
                    .map(|p| p.peer_id)
                    .collect();
                let others = ids.iter().copied().filter(|id| *id != node.peer_id);
                assert_eq!(
                    found,
                    xor_closest(&target, others, k),
                    "closest peers seen from node {}",
                    node.index
                );
            }
        }
        net.shutdown().await;
    });
}

/// With k = 20 every node of a 16-node network would be among the closest, so
/// the placement checks only mean something with k well below the size.
#[test]
fn sixteen_nodes_with_k_4() {
    every_record_is_stored_at_the_k_closest_and_found_by_everyone(16, 4);
}

/// The default replication factor on a network three times its size.
#[test]
fn sixty_four_nodes_with_the_default_k() {
    every_record_is_stored_at_the_k_closest_and_found_by_everyone(
        64,
        Config::default().replication_factor().get(),
    );
}

/// A node that never had a connection to any holder of a record still finds
/// it: the lookup is routed through peers that know the holders.
#[test]
fn lookups_route_through_peers_that_know_the_holders() {
    let pool = pool();
    run(Duration::from_secs(120), "routing test", async {
        let config = || Config::builder().replication_factor(4);
        let mut net = network(&pool, 24, config).await;
        refresh_all(&net).await;

        // Records whose holders do not include the bootstrap node 0.
        let mut candidates = Vec::new();
        for writer in net.nodes().iter().skip(1) {
            writer
                .handle
                .put(record_of(writer))
                .await
                .expect("put succeeds");
        }
        for writer in net.nodes().iter().skip(1) {
            let key = record_key(writer);
            let mut holders = HashSet::new();
            for node in net.nodes() {
                let records = node.handle.records().await.expect("running");
                if records.iter().any(|r| r.key == key) {
                    holders.insert(node.peer_id);
                }
            }
            if !holders.contains(&net.nodes()[0].peer_id) {
                candidates.push((writer.index, holders));
            }
        }
        assert!(!candidates.is_empty(), "some record avoids node 0");

        // A newcomer that drops every idle connection after a second keeps
        // only its pinned connection to the bootstrap node.
        let newcomer = net
            .spawn(
                config().idle_connection_timeout(Duration::from_secs(1)),
                dht_core::Role::ClientHelper,
            )
            .await
            .expect("newcomer joins")
            .clone();
        let bootstrap = net.nodes()[0].peer_id;
        eventually(
            Duration::from_secs(20),
            "newcomer keeps only the bootstrap connection",
            || async {
                let connected = newcomer.handle.connected_peers().await.expect("running");
                (connected == vec![bootstrap]).then_some(())
            },
        )
        .await;

        let (writer, holders) = &candidates[0];
        let connected = newcomer.handle.connected_peers().await.expect("running");
        assert!(
            connected.iter().all(|peer| !holders.contains(peer)),
            "newcomer is connected to no holder"
        );
        let found = newcomer
            .handle
            .get_record(record_key(&net.nodes()[*writer]))
            .await
            .expect("record is found");
        assert_eq!(found.value, record_value(*writer));
        assert!(
            found.stats.requests >= 2,
            "the lookup needed more than the bootstrap: {:?}",
            found.stats
        );
        net.shutdown().await;
    });
}

/// A restarted bootstrap (same identity and address, empty routing table)
/// learns the network again from the nodes that reconnect to it.
#[test]
fn nodes_reconnect_to_a_restarted_bootstrap_and_repopulate_it() {
    let pool = pool();
    run(Duration::from_secs(120), "bootstrap restart", async {
        let config = || -> ConfigBuilder {
            Config::builder().reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        };
        let mut net = network(&pool, 6, config).await;
        let before = net.nodes()[0]
            .handle
            .routing_table()
            .await
            .expect("running");
        assert_eq!(before.len(), 5);

        let restarted = net
            .restart(0, config())
            .await
            .expect("bootstrap restarts")
            .clone();
        let peer_ids: HashSet<PeerId> = net.nodes().iter().skip(1).map(|n| n.peer_id).collect();
        eventually(
            Duration::from_secs(30),
            "every node is back in the bootstrap's table",
            || async {
                let table = restarted.handle.routing_table().await.expect("running");
                let known: HashSet<PeerId> = table.peers().map(|e| e.peer_id).collect();
                (known == peer_ids).then_some(())
            },
        )
        .await;
        net.shutdown().await;
    });
}
