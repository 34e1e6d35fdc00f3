//! Namespace discovery: many members per namespace, found with their
//! addresses, linked by dialers, and forgotten once they leave.

use std::{collections::BTreeSet, time::Duration};

use dht_core::{
    Config, ConfigBuilder, Event, LinkError, Namespace, PeerAddresses, Role, RoleKind,
    libp2p::PeerId, testnet::Testnet,
};
use dht_tests::{eventually, pool, run, sleep, within};
use futures::{StreamExt, executor::ThreadPool};

fn chat() -> Namespace {
    Namespace::new("chat").expect("valid name")
}

fn testnet(pool: &ThreadPool) -> Testnet {
    let executor = pool.clone();
    Testnet::new(move |task| executor.spawn_ok(task))
}

/// Quick dialers so the tests do not wait for the default 10 s.
fn quick() -> ConfigBuilder {
    Config::builder().discover_interval(Duration::from_millis(500))
}

#[test]
fn a_dialer_discovers_and_links_to_ten_listeners() {
    let pool = pool();
    run(Duration::from_secs(120), "ten listeners", async {
        let mut net = testnet(&pool);
        net.spawn(quick(), Role::Bootstrap)
            .await
            .expect("bootstrap");
        // Filler nodes, so registrations live on peers other than the bootstrap.
        for _ in 0..8 {
            net.spawn(quick(), Role::ClientHelper)
                .await
                .expect("filler");
        }
        let mut listeners = BTreeSet::new();
        for _ in 0..10 {
            let node = net
                .spawn(quick(), Role::Listener { namespace: chat() })
                .await
                .expect("listener");
            listeners.insert(node.peer_id);
        }
        let dialer = net
            .spawn(quick(), Role::Dialer { namespace: chat() })
            .await
            .expect("dialer")
            .clone();

        eventually(
            Duration::from_secs(60),
            "the dialer links to all ten listeners",
            || async {
                let links = dialer.handle.links().await.expect("running");
                let linked: BTreeSet<PeerId> = links
                    .iter()
                    .filter(|l| l.outbound && l.role == RoleKind::Listener && l.namespace == chat())
                    .map(|l| l.peer_id)
                    .collect();
                (linked == listeners).then_some(())
            },
        )
        .await;

        // Each listener accepted the dialer, and each link is a live connection.
        let connected: BTreeSet<PeerId> = dialer
            .handle
            .connected_peers()
            .await
            .expect("running")
            .into_iter()
            .collect();
        assert!(listeners.is_subset(&connected));
        for node in net
            .nodes()
            .iter()
            .filter(|n| listeners.contains(&n.peer_id))
        {
            let links = node.handle.links().await.expect("running");
            assert!(
                links.iter().any(|l| l.peer_id == dialer.peer_id
                    && !l.outbound
                    && l.role == RoleKind::Dialer),
                "listener {} accepted the dialer: {links:?}",
                node.index
            );
        }
        net.shutdown().await;
    });
}

#[test]
fn discovered_members_come_with_addresses_that_work() {
    let pool = pool();
    run(Duration::from_secs(60), "dialable members", async {
        let mut net = testnet(&pool);
        net.spawn(quick(), Role::Bootstrap)
            .await
            .expect("bootstrap");
        for _ in 0..6 {
            net.spawn(quick(), Role::ClientHelper)
                .await
                .expect("filler");
        }
        let mut members = BTreeSet::new();
        for _ in 0..3 {
            let node = net
                .spawn(quick(), Role::Listener { namespace: chat() })
                .await
                .expect("listener");
            members.insert((node.peer_id, node.address.clone()));
        }
        let seeker = net
            .spawn(quick(), Role::ClientHelper)
            .await
            .expect("seeker")
            .clone();

        let found: Vec<PeerAddresses> = eventually(
            Duration::from_secs(20),
            "all three are discovered",
            || async {
                let found = seeker.handle.discover(&chat()).await.ok()?;
                (found.len() == members.len()).then_some(found)
            },
        )
        .await;
        for (peer, address) in &members {
            let entry = found
                .iter()
                .find(|p| p.peer_id == *peer)
                .expect("member found");
            let mut listen = address.clone();
            listen.pop(); // without /p2p/
            assert!(
                entry.addresses.contains(&listen),
                "{peer}: {:?} lacks {listen}",
                entry.addresses
            );
        }

        // A node outside the network, knowing nothing but these addresses,
        // reaches each member.
        let mut elsewhere = testnet(&pool);
        let newcomer = elsewhere
            .spawn(quick(), Role::ClientHelper)
            .await
            .expect("newcomer")
            .clone();
        for entry in &found {
            for address in &entry.addresses {
                let reached = newcomer
                    .handle
                    .dial(address.clone())
                    .await
                    .expect("address works");
                assert_eq!(reached, entry.peer_id);
            }
        }
        elsewhere.shutdown().await;
        net.shutdown().await;
    });
}

#[test]
fn a_registration_lives_while_refreshed_and_expires_after_its_peer_leaves() {
    let pool = pool();
    run(Duration::from_secs(60), "registration expiry", async {
        let ttl = Duration::from_secs(2);
        let config = || {
            quick()
                .namespace_ttl(ttl)
                .namespace_refresh_interval(Duration::from_millis(700))
        };
        let mut net = testnet(&pool);
        net.spawn(config(), Role::Bootstrap)
            .await
            .expect("bootstrap");
        for _ in 0..4 {
            net.spawn(config(), Role::ClientHelper)
                .await
                .expect("filler");
        }
        let listener = net
            .spawn(config(), Role::Listener { namespace: chat() })
            .await
            .expect("listener")
            .clone();
        let seeker = net
            .spawn(config(), Role::ClientHelper)
            .await
            .expect("seeker")
            .clone();
        let members = || async {
            seeker
                .handle
                .discover(&chat())
                .await
                .expect("discovery works")
        };

        eventually(
            Duration::from_secs(10),
            "the listener is discoverable",
            || async {
                members()
                    .await
                    .iter()
                    .any(|p| p.peer_id == listener.peer_id)
                    .then_some(())
            },
        )
        .await;
        // Well past one TTL, refreshes keep it alive.
        sleep(ttl * 2).await;
        assert!(
            members()
                .await
                .iter()
                .any(|p| p.peer_id == listener.peer_id),
            "refreshed registration survives"
        );

        listener.handle.shutdown().await;
        let left = std::time::Instant::now();
        eventually(ttl * 4, "the registration expires", || async {
            members()
                .await
                .iter()
                .all(|p| p.peer_id != listener.peer_id)
                .then_some(())
        })
        .await;
        // It cannot have vanished before its last refresh expired.
        assert!(
            left.elapsed() >= ttl - Duration::from_millis(700),
            "gone after {:?}",
            left.elapsed()
        );
        net.shutdown().await;
    });
}

#[test]
fn only_members_accept_the_handshake_and_dialers_notice_an_unregistration() {
    let pool = pool();
    run(Duration::from_secs(60), "handshake", async {
        let config = || quick().heartbeat_interval(Duration::from_millis(300));
        let mut net = testnet(&pool);
        net.spawn(config(), Role::Bootstrap)
            .await
            .expect("bootstrap");
        let outsider = net
            .spawn(config(), Role::ClientHelper)
            .await
            .expect("outsider")
            .clone();
        let member = net
            .spawn(config(), Role::Listener { namespace: chat() })
            .await
            .expect("member")
            .clone();
        let dialer = net
            .spawn(config(), Role::ClientHelper)
            .await
            .expect("dialer")
            .clone();
        let mut events = dialer.handle.subscribe().await.expect("running");

        let not_member = dialer
            .handle
            .link(
                &chat(),
                PeerAddresses {
                    peer_id: outsider.peer_id,
                    addresses: vec![without_p2p(&outsider.address)],
                },
            )
            .await;
        assert!(
            matches!(not_member, Err(LinkError::NotRegistered { .. })),
            "{not_member:?}"
        );

        let role = dialer
            .handle
            .link(
                &chat(),
                PeerAddresses {
                    peer_id: member.peer_id,
                    addresses: vec![without_p2p(&member.address)],
                },
            )
            .await
            .expect("member accepts");
        assert_eq!(role, RoleKind::Listener);

        // The member leaves the namespace; the next heartbeat ends the link.
        member.handle.unregister(&chat()).await.expect("running");
        within(Duration::from_secs(10), "the link is lost", async {
            while let Some(event) = events.next().await {
                if let Event::NamespaceLinkLost { peer, .. } = event {
                    assert_eq!(peer, member.peer_id);
                    return;
                }
            }
            panic!("event stream ended");
        })
        .await;
        assert!(dialer.handle.links().await.expect("running").is_empty());
        net.shutdown().await;
    });
}

fn without_p2p(address: &dht_core::libp2p::Multiaddr) -> dht_core::libp2p::Multiaddr {
    let mut address = address.clone();
    address.pop();
    address
}
