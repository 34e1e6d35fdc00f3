//! Records survive: when holders crash or a closer peer joins, the remaining
//! holders send their records on, within the re-replication delay of
//! noticing, long before the hourly replication; and a node restarted on
//! its storage holds what it held and rejoins through the peers it knew.

use std::{collections::HashSet, sync::Arc, time::Duration};

use dht_core::{
    Config, ConfigBuilder, PutRecordError, Role, Write,
    libp2p::{PeerId, identity::Keypair},
    record::MemoryStorage,
    testnet::{TestNode, xor_closest},
};
use dht_tests::{eventually, network, pool, refresh_all, run};
use futures::future::join_all;

const K: usize = 3;

/// Changes are acted on 1 s after they are noticed. Nothing else is sped
/// up: a crash is noticed through the connections it breaks.
fn config() -> ConfigBuilder {
    Config::builder()
        .replication_factor(K)
        .rereplicate_after(Some(Duration::from_secs(1)))
}

/// The nodes among `alive` whose store holds `key`.
async fn holders(alive: &[TestNode], key: &[u8]) -> HashSet<PeerId> {
    let stores = join_all(alive.iter().map(|node| node.handle.records())).await;
    alive
        .iter()
        .zip(stores)
        .filter(|(_, records)| {
            records
                .as_ref()
                .is_ok_and(|records| records.iter().any(|r| r.key == key))
        })
        .map(|(node, _)| node.peer_id)
        .collect()
}

/// Waits until each of the `k` nodes of `alive` closest to `key` holds it.
async fn held_by_the_k_closest(alive: &[TestNode], key: &[u8], what: &str) {
    let expected = xor_closest(key, alive.iter().map(|n| n.peer_id), K);
    eventually(Duration::from_secs(30), what, || async {
        let held = holders(alive, key).await;
        expected
            .iter()
            .all(|peer| held.contains(peer))
            .then_some(())
    })
    .await
}

#[test]
fn a_record_whose_holders_crash_is_copied_to_the_next_closest_peers() {
    let pool = pool();
    run(Duration::from_secs(120), "crash test", async {
        let net = network(&pool, 12, config).await;
        refresh_all(&net).await;
        let writer = net.nodes()[1].clone();
        let write = Write::mutable(&writer.keypair, "survivor", b"still here".to_vec());
        let key = write.key().expect("a valid record name");
        let put = writer.handle.put(write).await.expect("put succeeds");
        assert_eq!(put.stored, K);

        // A third of the network crashes: the writer, the two holders
        // closest to the key, and one node that holds nothing. One holder
        // is left.
        let others = net
            .nodes()
            .iter()
            .map(|n| n.peer_id)
            .filter(|p| *p != writer.peer_id);
        let closest = xor_closest(&key, others, K);
        let bystander = net
            .nodes()
            .iter()
            .skip(1)
            .find(|n| n.peer_id != writer.peer_id && !closest.contains(&n.peer_id))
            .expect("a node that holds nothing")
            .peer_id;
        let crashed: HashSet<PeerId> = [writer.peer_id, closest[0], closest[1], bystander].into();
        for node in net.nodes().iter().filter(|n| crashed.contains(&n.peer_id)) {
            node.handle.shutdown().await;
        }
        let alive: Vec<TestNode> = net
            .nodes()
            .iter()
            .filter(|n| !crashed.contains(&n.peer_id))
            .cloned()
            .collect();
        assert_eq!(holders(&alive, &key).await, HashSet::from([closest[2]]));

        held_by_the_k_closest(&alive, &key, "the k closest survivors hold the record").await;
        let reader = alive.last().expect("survivors");
        let found = reader.handle.get_record(key).await.expect("still readable");
        assert_eq!(found.value, b"still here");
        net.shutdown().await;
    })
}

/// A keypair whose peer id is closer to `key` than every peer of `peers`.
fn closer_than_all(key: &[u8], peers: &[PeerId]) -> Keypair {
    loop {
        let keypair = Keypair::generate_ed25519();
        let id = keypair.public().to_peer_id();
        let candidates = peers.iter().copied().chain([id]);
        if xor_closest(key, candidates, 1) == [id] {
            return keypair;
        }
    }
}

#[test]
fn a_peer_that_joins_closer_to_a_record_than_its_holders_gets_it() {
    let pool = pool();
    run(Duration::from_secs(120), "join test", async {
        let mut net = network(&pool, 8, config).await;
        refresh_all(&net).await;
        let writer = net.nodes()[1].clone();
        let write = Write::mutable(&writer.keypair, "follows", b"to the newcomer".to_vec());
        let key = write.key().expect("a valid record name");
        writer.handle.put(write).await.expect("put succeeds");

        let ids: Vec<PeerId> = net.nodes().iter().map(|n| n.peer_id).collect();
        let keypair = closer_than_all(&key, &ids);
        let newcomer = net
            .spawn_as(config(), Role::ClientHelper, keypair)
            .await
            .expect("newcomer joins")
            .clone();
        held_by_the_k_closest(net.nodes(), &key, "the newcomer holds the record").await;
        assert!(holders(&[newcomer], &key).await.len() == 1);
        net.shutdown().await;
    })
}

/// A node's storage outlives it: a node restarted on the same storage holds
/// the records it held, and rejoins through the peers it kept when its
/// bootstrap peer is gone.
#[test]
fn a_restarted_node_holds_its_records_and_rejoins_without_its_bootstrap() {
    let pool = pool();
    run(Duration::from_secs(120), "restart test", async {
        let storage = MemoryStorage::new();
        let kept = || config().storage(Arc::new(storage.clone()));
        let mut net = network(&pool, 5, config).await;
        let index = net.nodes().len();
        net.spawn(kept(), Role::ClientHelper).await.expect("joins");
        refresh_all(&net).await;
        // k = 3 of 6 nodes: written until the kept node holds some.
        let mut held = Vec::new();
        for i in 0..12 {
            let writer = &net.nodes()[1 + i % 4];
            let write = Write::immutable(format!("record {i}").into_bytes());
            let key = write.key().expect("a valid record");
            writer.handle.put(write).await.expect("put succeeds");
            if holders(&net.nodes()[index..], &key).await.len() == 1 {
                held.push(key);
            }
        }
        assert!(!held.is_empty(), "the kept node holds some of 12 records");

        // The bootstrap goes, then the kept node stops and starts again.
        net.nodes()[0].handle.shutdown().await;
        let restarted = net
            .restart(index, kept())
            .await
            .expect("rejoins through the peers it kept")
            .clone();
        for key in &held {
            let records = restarted.handle.records().await.expect("running");
            assert!(records.iter().any(|r| &r.key == key), "still held");
        }
        let table = restarted.handle.routing_table().await.expect("running");
        assert!(table.buckets.iter().map(|b| b.entries.len()).sum::<usize>() >= 3);
        net.shutdown().await;
    })
}

/// A write the storage cannot keep is refused, not acknowledged: the
/// writer's put does not count the node.
#[test]
fn a_node_whose_storage_fails_does_not_acknowledge_writes() {
    let pool = pool();
    run(Duration::from_secs(60), "failing storage test", async {
        let storage = MemoryStorage::new();
        let one = || Config::builder().replication_factor(1);
        let mut net = network(&pool, 1, one).await;
        let failing = net
            .spawn(one().storage(Arc::new(storage.clone())), Role::ClientHelper)
            .await
            .expect("joins")
            .clone();
        storage.fail_writes(true);
        let writer = net.nodes()[0].clone();
        // With k = 1 and two nodes, the failing node is the only peer asked.
        let error = writer
            .handle
            .put(Write::immutable(b"not kept".to_vec()))
            .await
            .expect_err("nobody else stored it");
        assert!(
            matches!(error, PutRecordError::QuorumFailed { stored: 0, .. }),
            "{error}"
        );
        assert!(failing.handle.records().await.expect("running").is_empty());
        net.shutdown().await;
    })
}
