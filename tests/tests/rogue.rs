//! Hostile peers in process: a rogue peer (`dht_core::testnet::Rogue`)
//! speaks the DHT's protocols and lies, and each test is one of its attacks.
//! Every test asserts that honest nodes keep what they stored and keep
//! answering with it.

use std::{collections::HashSet, num::NonZeroUsize, time::Duration};

use dht_core::{
    Config, ConfigBuilder, ConnectionLimits, Event, Namespace, NodeHandle, PeerAddresses, Quorum,
    Role, Write,
    libp2p::{
        Multiaddr, PeerId,
        kad::{Record, RecordKey},
        multiaddr::Protocol,
    },
    record::{Quota, StoreLimits, immutable_key, sign_mutable},
    testnet::{Rogue, Testnet, xor_closest},
};
use dht_tests::{eventually, network, pool, run, sleep, within};
use futures::{StreamExt, future::join_all};

const PATIENCE: Duration = Duration::from_secs(30);

/// Five honest nodes and a rogue that every one of them has in its routing
/// table.
async fn honest_network_with_a_rogue(
    pool: &futures::executor::ThreadPool,
    config: impl Fn() -> ConfigBuilder,
) -> (Testnet, Rogue) {
    let net = network(pool, 5, &config).await;
    let rogue = net
        .rogue(&config().build().expect("a valid config"))
        .await
        .expect("the rogue starts");
    for node in net.nodes() {
        eventually(PATIENCE, "every node routes to the rogue", || async {
            let table = node.handle.routing_table().await.expect("running");
            table
                .peers()
                .any(|e| e.peer_id == rogue.peer_id)
                .then_some(())
        })
        .await;
    }
    (net, rogue)
}

/// Writes `value` as node 1's record "profile", and waits until every
/// honest node holds that version.
async fn write_profile(net: &Testnet, value: &str) -> Vec<u8> {
    let writer = &net.nodes()[1];
    let quorum = Quorum::N(NonZeroUsize::new(3).expect("non-zero"));
    let put = writer
        .handle
        .put_with_quorum(Write::mutable(&writer.keypair, "profile", value), quorum)
        .await
        .expect("the owner can write");
    for node in net.nodes() {
        eventually(PATIENCE, "every node holds the new version", || async {
            (held(&node.handle, &put.key).await.as_deref() == Some(value.as_bytes())).then_some(())
        })
        .await;
    }
    put.key
}

/// The value `handle`'s node holds under `key`.
async fn held(handle: &NodeHandle, key: &[u8]) -> Option<Vec<u8>> {
    let records = handle.records().await.expect("running");
    records.into_iter().find(|r| r.key == key).map(|r| r.value)
}

/// The honest nodes a rogue sends to: all but the owner of node 1's
/// record, which acknowledges any copy of its own record (Kademlia's rule:
/// the publisher's copy is never replaced) without storing it.
fn honest(net: &Testnet) -> Vec<(PeerId, Multiaddr)> {
    let owner = net.nodes()[1].peer_id;
    net.addresses()
        .into_iter()
        .filter(|(peer, _)| *peer != owner)
        .collect()
}

/// Regression: an inbound PUT_VALUE replaced whatever a node held, so any
/// peer could overwrite any record.
#[test]
fn nobody_but_the_owner_can_overwrite_a_record() {
    let pool = pool();
    run(Duration::from_secs(120), "foreign overwrite", async {
        let (net, rogue) = honest_network_with_a_rogue(&pool, Config::builder).await;
        let key = write_profile(&net, "mine").await;

        // Its own signature under the owner's key, no signature at all, and
        // a made-up envelope with the highest sequence there is.
        let (_, signed_by_rogue) =
            sign_mutable(&rogue.keypair, b"profile", u64::MAX, b"pwned").expect("signs");
        let mut made_up = vec![1];
        made_up.extend(u64::MAX.to_be_bytes());
        made_up.push(64);
        made_up.extend([7; 64]);
        made_up.extend(b"pwned");
        for value in [signed_by_rogue, b"pwned".to_vec(), made_up] {
            let forged = Record::new(RecordKey::new(&key), value);
            let acked = rogue.send(forged, &honest(&net)).await;
            assert!(
                acked.is_empty(),
                "honest nodes acknowledged a forgery: {acked:?}"
            );
        }
        for node in net.nodes() {
            assert_eq!(
                held(&node.handle, &key).await.as_deref(),
                Some(&b"mine"[..])
            );
            let read = node.handle.get_record(key.clone()).await.expect("readable");
            assert_eq!(read.value, b"mine");
        }
        net.shutdown().await;
    });
}

/// Regression: a node took the TTL of whoever sent a record last, so a
/// replay with a 2-second TTL deleted it everywhere.
#[test]
fn a_replay_with_a_short_life_cannot_shorten_a_record() {
    let pool = pool();
    run(Duration::from_secs(120), "TTL shortening", async {
        let (net, rogue) = honest_network_with_a_rogue(&pool, Config::builder).await;
        let key = write_profile(&net, "lasting").await;
        let mut copy = eventually(PATIENCE, "the rogue holds a copy", || async {
            rogue.received(&key)
        })
        .await;
        // A TTL of 2 s on the wire (whole seconds; under 1 s would be sent as
        // none). A valid copy is accepted (it is one), but it shortens nothing.
        copy.expires = Some(std::time::Instant::now() + Duration::from_millis(2900));
        let acked = rogue.send(copy, &honest(&net)).await;
        assert_eq!(acked.len(), honest(&net).len(), "every copy was taken");
        // Stored now; on the old code its expiry was 2 s away.
        for node in net.nodes() {
            let records = node.handle.records().await.expect("running");
            let record = records
                .iter()
                .find(|r| r.key == key)
                .unwrap_or_else(|| panic!("node {} lost the record", node.index));
            // The writer's own copy never expires (it republishes it).
            let left = record.expires_in.unwrap_or(Duration::MAX);
            assert!(
                left > Duration::from_secs(3600),
                "node {}: {left:?} left",
                node.index
            );
        }
        net.shutdown().await;
    });
}

/// Regression: a replayed older version replaced the newer one.
#[test]
fn an_old_version_replayed_is_refused() {
    let pool = pool();
    run(Duration::from_secs(120), "stale sequence replay", async {
        let (net, rogue) = honest_network_with_a_rogue(&pool, Config::builder).await;
        let key = write_profile(&net, "first").await;
        let first = eventually(PATIENCE, "the rogue holds a copy", || async {
            rogue.received(&key)
        })
        .await;
        write_profile(&net, "second").await;
        let acked = rogue.send(first, &honest(&net)).await;
        assert!(
            acked.is_empty(),
            "an old version was acknowledged by {acked:?}"
        );
        for node in net.nodes() {
            assert_eq!(
                held(&node.handle, &key).await.as_deref(),
                Some(&b"second"[..])
            );
            let read = node.handle.get_record(key.clone()).await.expect("readable");
            assert_eq!(read.value, b"second");
        }
        net.shutdown().await;
    });
}

/// Regression: a read returned the first copy any peer sent, whatever its
/// key or signature (on the old code a reader that held no copy took the
/// rogue's lie 9 times in 10).
#[test]
fn forged_and_misdirected_answers_are_discarded_and_counted() {
    let pool = pool();
    run(Duration::from_secs(120), "lying answers", async {
        // With k = 2, records live at two nodes and a reader that holds no
        // copy must ask; keys are chosen so the rogue is the closest peer.
        let config = || Config::builder().replication_factor(2);
        let (net, rogue) = honest_network_with_a_rogue(&pool, config).await;
        let ids: Vec<PeerId> = net.addresses().into_iter().map(|(peer, _)| peer).collect();
        let nearest_is_rogue = |key: &[u8]| {
            let everyone = ids.iter().copied().chain([rogue.peer_id]);
            xor_closest(key, everyone, 1) == vec![rogue.peer_id]
        };
        let writer = &net.nodes()[1];
        let write = (0..)
            .map(|i| Write::mutable(&writer.keypair, format!("profile-{i}"), "true"))
            .find(|w| nearest_is_rogue(&w.key().expect("a valid name")))
            .expect("some name is nearest to the rogue");
        let key = writer.handle.put(write).await.expect("stored").key;
        let reader = non_holder(&net, &key).await;

        // A tampered copy of the real record, then a valid record of the
        // rogue's own under another key.
        let mut tampered = eventually(PATIENCE, "the rogue holds a copy", || async {
            rogue.received(&key)
        })
        .await;
        if let Some(last) = tampered.value.last_mut() {
            *last ^= 1;
        }
        let (own_key, own) = sign_mutable(&rogue.keypair, b"elsewhere", 1, b"lie").expect("signs");
        let mut discarded = 0;
        for lie in [tampered, Record::new(RecordKey::new(&own_key), own)] {
            rogue.answer_with(&key, lie);
            let read = reader.get_record(key.clone()).await.expect("honest copies");
            assert_eq!(read.value, b"true");
            assert!(!read.found_at.contains(&rogue.peer_id));
            assert!(read.forgeries >= 1, "the rogue's answer was counted");
            discarded += read.forgeries;
        }
        let report = reader.network_report().await.expect("running");
        assert_eq!(report.forgeries_discarded, discarded as u64);

        // An immutable record answered with other content.
        let content = (0..)
            .map(|i| format!("the content {i}"))
            .find(|c| nearest_is_rogue(&immutable_key(c.as_bytes())))
            .expect("some content is nearest to the rogue");
        let blob = net.nodes()[2]
            .handle
            .put(Write::immutable(content.clone()))
            .await
            .expect("stored");
        rogue.answer_with(
            &blob.key,
            Record::new(RecordKey::new(&blob.key), b"other".to_vec()),
        );
        let reader = non_holder(&net, &blob.key).await;
        for _ in 0..5 {
            let read = reader.get_record(blob.key.clone()).await.expect("found");
            assert_eq!(read.value, content.as_bytes());
        }
        net.shutdown().await;
    });
}

/// A node that holds no copy of `key`.
async fn non_holder(net: &Testnet, key: &[u8]) -> NodeHandle {
    for node in net.nodes() {
        if held(&node.handle, key).await.is_none() {
            return node.handle.clone();
        }
    }
    panic!("every node holds the record");
}

/// Regression: one peer could fill every record slot of a node.
#[test]
fn one_peer_cannot_fill_a_store() {
    let pool = pool();
    run(Duration::from_secs(120), "store flood", async {
        let limits = StoreLimits {
            per_peer: Quota {
                records: 8,
                ..StoreLimits::default().per_peer
            },
            ..StoreLimits::default()
        };
        let config = || Config::builder().store_limits(limits.clone());
        let (net, rogue) = honest_network_with_a_rogue(&pool, config).await;
        let target = &net.nodes()[2];
        let to = [(target.peer_id, target.address.clone())];
        let sends = (0..20).map(|round| {
            let value = format!("flood {round}").into_bytes();
            let record = Record::new(RecordKey::new(&immutable_key(&value)), value);
            rogue.send(record, &to)
        });
        let acked: usize = join_all(sends).await.iter().map(Vec::len).sum();
        assert_eq!(acked, 8, "the rogue got exactly its share");

        // An honest writer still gets its records stored there.
        let put = net.nodes()[4]
            .handle
            .put(Write::immutable("honest"))
            .await
            .expect("stored");
        eventually(PATIENCE, "the target holds the honest record", || async {
            let records = target.handle.records().await.expect("running");
            records.iter().any(|r| r.key == put.key).then_some(())
        })
        .await;
        net.shutdown().await;
    });
}

/// Regression: registrations kept addresses of any length.
#[test]
fn registrations_keep_no_oversized_addresses() {
    let pool = pool();
    run(
        Duration::from_secs(120),
        "oversized provider addresses",
        async {
            let (net, rogue) = honest_network_with_a_rogue(&pool, Config::builder).await;
            let chat = dht_core::Namespace::new("chat").expect("a namespace");
            let long: Multiaddr = format!("/dns4/{}.example/tcp/1", "a".repeat(300))
                .parse()
                .expect("a multiaddr");
            let short: Multiaddr = "/ip4/203.0.113.9/tcp/4001".parse().expect("a multiaddr");
            rogue
                .register(chat.record_key(), vec![long, short.clone()])
                .await;
            let bootstrap = &net.nodes()[0].handle;
            let registration =
                eventually(PATIENCE, "the bootstrap holds the registration", || async {
                    let all = bootstrap.registrations().await.expect("running");
                    all.into_iter().find(|r| r.peer_id == rogue.peer_id)
                })
                .await;
            assert!(
                registration.addresses.iter().all(|a| a.len() <= 255),
                "{registration:?}"
            );
            let kept = short.with(Protocol::P2p(rogue.peer_id));
            assert!(registration.addresses.contains(&kept), "{registration:?}");
            net.shutdown().await;
        },
    );
}

/// Regression: every address a peer pushed through identify was added to
/// its routing entry.
#[test]
fn identify_pushes_cannot_grow_a_routing_entry() {
    let pool = pool();
    run(
        Duration::from_secs(120),
        "identify-push address growth",
        async {
            let (net, rogue) = honest_network_with_a_rogue(&pool, Config::builder).await;
            let more = (1..=40u64)
                .map(|i| {
                    format!("/memory/{}", 7_000_000 + i)
                        .parse()
                        .expect("a multiaddr")
                })
                .collect();
            rogue.listen_on(more).await;
            let bootstrap = &net.nodes()[0].handle;
            let entry_size = || async {
                let table = bootstrap.routing_table().await.expect("running");
                let entry = table.peers().find(|e| e.peer_id == rogue.peer_id).cloned();
                entry.map_or(0, |e| e.addresses.len())
            };
            let max = 16;
            eventually(PATIENCE, "the pushed addresses arrive", || async {
                (entry_size().await >= max).then_some(())
            })
            .await;
            // That it stops there can only be seen over a while: no message
            // says the last push was handled.
            sleep(Duration::from_secs(1)).await;
            assert_eq!(entry_size().await, max, "bounded however much it pushes");
            net.shutdown().await;
        },
    );
}

/// Regression: any peer could keep its connections open forever by
/// opening the keep-alive stream. A node now holds only
/// `max_pinned_by_others` such connections for peers it did not pin; the
/// others close when idle (and their peers reconnect).
#[test]
fn peers_cannot_hold_more_connections_open_than_their_share() {
    let pool = pool();
    run(Duration::from_secs(120), "keep-alive slot holding", async {
        let executor = pool.clone();
        let mut net = Testnet::new(move |task| executor.spawn_ok(task));
        let bootstrap = Config::builder()
            .idle_connection_timeout(Duration::from_secs(1))
            .connection_limits(ConnectionLimits {
                max_pinned_by_others: 1,
                ..ConnectionLimits::default()
            });
        net.spawn(bootstrap, Role::Bootstrap)
            .await
            .expect("bootstrap");
        let mut events = net.nodes()[0]
            .handle
            .subscribe()
            .await
            .expect("running")
            .fuse();
        // Three clients, each pinning the bootstrap (its bootstrap peer).
        for _ in 0..3 {
            net.spawn(Config::builder(), Role::ClientHelper)
                .await
                .expect("client joins");
        }
        let clients: HashSet<PeerId> = net.nodes()[1..].iter().map(|n| n.peer_id).collect();
        // The two clients without a slot are let go when idle (and come back
        // and are let go again); the one with the slot never is.
        let mut dropped = HashSet::new();
        within(PATIENCE, "two clients are let go", async {
            while dropped.len() < 2 {
                match events.next().await {
                    Some(Event::PeerDisconnected { peer, .. }) if clients.contains(&peer) => {
                        dropped.insert(peer);
                    }
                    Some(_) => {}
                    None => panic!("the bootstrap stopped"),
                }
            }
        })
        .await;
        assert_eq!(dropped.len(), 2, "one client keeps the only slot");
        net.shutdown().await;
    });
}

/// Regression: a holder could answer a members request with made-up members
/// and the dialer dialed every one of them, every round. Now it starts a
/// bounded number of new links per round (16 by default).
#[test]
fn a_flood_of_fake_members_is_dialed_a_few_at_a_time() {
    let pool = pool();
    run(Duration::from_secs(120), "fake-member flood", async {
        let (mut net, rogue) = honest_network_with_a_rogue(&pool, Config::builder).await;
        // 64 made-up members, each "at" an address where the rogue counts
        // every connection and answers none.
        let fakes: Vec<Multiaddr> = (0..64u64)
            .map(|i| {
                format!("/memory/{}", 8_000_000 + i)
                    .parse()
                    .expect("a multiaddr")
            })
            .collect();
        rogue
            .sink(&fakes, &net.spawner())
            .expect("the sink listens");
        rogue.answer_members_with(
            fakes
                .iter()
                .cloned()
                .map(|address| PeerAddresses {
                    peer_id: PeerId::random(),
                    addresses: vec![address],
                })
                .collect(),
        );
        let chat = Namespace::new("chat").expect("a namespace");
        net.spawn(
            Config::builder().discover_interval(Duration::from_secs(60)),
            Role::Dialer { namespace: chat },
        )
        .await
        .expect("the dialer joins");
        // One discovery round; the fakes fail their handshakes and wait a
        // full interval before they are tried again.
        eventually(PATIENCE, "the dialer tries the first fakes", || async {
            (rogue.connections_at(&fakes) >= 16).then_some(())
        })
        .await;
        // That no more come can only be seen over a while (the next round
        // is 60 s away).
        sleep(Duration::from_secs(3)).await;
        assert_eq!(rogue.connections_at(&fakes), 16, "16 new links per round");
        net.shutdown().await;
    });
}
