//! Messages between linked peers, in process: both ways between a dialer and
//! a listener, between two nodes that serve only through a relay (stand-ins
//! for two browser tabs), and the bounds: only linked peers, a size limit,
//! each sender's share.

use std::time::Duration;

use dht_core::{
    Config, ConfigBuilder, ErrorCode, Event, EventStream, MessageError, MessageLimits, Namespace,
    RelayLimits, Role, ServerMode,
    libp2p::PeerId,
    testnet::{TestNode, Testnet},
};
use dht_tests::{eventually, pool, run, within};
use futures::{StreamExt, executor::ThreadPool};

const PATIENCE: Duration = Duration::from_secs(30);

fn chat() -> Namespace {
    Namespace::new("chat").expect("valid name")
}

fn quick() -> ConfigBuilder {
    Config::builder().discover_interval(Duration::from_millis(500))
}

/// A bootstrap that relays, then a listener and a dialer of "chat" built by
/// `member`; returns once the dialer linked to the listener.
async fn linked_pair(
    pool: &ThreadPool,
    member: impl Fn() -> ConfigBuilder,
) -> (Testnet, TestNode, TestNode) {
    let executor = pool.clone();
    let mut net = Testnet::new(move |task| executor.spawn_ok(task));
    net.spawn(
        quick().relay_server(Some(RelayLimits::default())),
        Role::Bootstrap,
    )
    .await
    .expect("bootstrap");
    let listener = net
        .spawn(member(), Role::Listener { namespace: chat() })
        .await
        .expect("listener")
        .clone();
    let dialer = net
        .spawn(member(), Role::Dialer { namespace: chat() })
        .await
        .expect("dialer")
        .clone();
    for (node, other) in [(&dialer, &listener), (&listener, &dialer)] {
        eventually(PATIENCE, "the two are linked", || async {
            let links = node.handle.links().await.expect("running");
            links
                .iter()
                .any(|l| l.peer_id == other.peer_id)
                .then_some(())
        })
        .await;
    }
    (net, listener, dialer)
}

/// The next message `events` delivers.
async fn next_message(events: &mut EventStream) -> (PeerId, Vec<u8>) {
    within(PATIENCE, "a message arrives", async {
        while let Some(event) = events.next().await {
            if let Event::MessageReceived { from, data } = event {
                return (from, data);
            }
        }
        panic!("the node stopped")
    })
    .await
}

async fn exchange(listener: &TestNode, dialer: &TestNode) {
    let mut at_listener = listener.handle.subscribe().await.expect("running");
    let mut at_dialer = dialer.handle.subscribe().await.expect("running");
    dialer
        .handle
        .send_message(listener.peer_id, "hello listener")
        .await
        .expect("delivered");
    assert_eq!(
        next_message(&mut at_listener).await,
        (dialer.peer_id, b"hello listener".to_vec())
    );
    listener
        .handle
        .send_message(dialer.peer_id, vec![0xff, 0x00])
        .await
        .expect("delivered");
    assert_eq!(
        next_message(&mut at_dialer).await,
        (listener.peer_id, vec![0xff, 0x00])
    );
}

#[test]
fn linked_peers_exchange_messages_both_ways() {
    let pool = pool();
    run(Duration::from_secs(90), "messages both ways", async {
        let (net, listener, dialer) = linked_pair(&pool, quick).await;
        exchange(&listener, &dialer).await;
        net.shutdown().await;
    });
}

#[test]
fn two_nodes_reachable_only_through_a_relay_find_each_other_link_and_talk() {
    let pool = pool();
    run(Duration::from_secs(90), "relayed members talk", async {
        let relayed = || quick().server_mode(ServerMode::Relayed);
        let (net, listener, dialer) = linked_pair(&pool, relayed).await;
        let links = dialer.handle.links().await.expect("running");
        assert!(
            links
                .iter()
                .any(|l| l.peer_id == listener.peer_id && l.outbound)
        );
        exchange(&listener, &dialer).await;
        net.shutdown().await;
    });
}

#[test]
fn messages_go_to_linked_peers_only_within_size_and_share() {
    let pool = pool();
    run(Duration::from_secs(90), "message bounds", async {
        let limits = MessageLimits {
            max_bytes: 64,
            burst: 2,
            per_second: 1,
        };
        let (net, listener, dialer) = linked_pair(&pool, || quick().message_limits(limits)).await;

        let error = dialer
            .handle
            .send_message(listener.peer_id, vec![0; 65])
            .await
            .expect_err("too large");
        assert!(matches!(
            error,
            MessageError::TooLarge { size: 65, max: 64 }
        ));
        assert_eq!(error.code(), "message-too-large");

        let bootstrap = net.nodes()[0].peer_id;
        let error = dialer
            .handle
            .send_message(bootstrap, "not linked")
            .await
            .expect_err("not linked");
        assert_eq!(error.code(), "not-linked");

        // A burst of 2, then 1 a second: six at once cannot all pass.
        let mut delivered = 0;
        let mut limited = 0;
        for i in 0..6 {
            match dialer
                .handle
                .send_message(listener.peer_id, format!("{i}"))
                .await
            {
                Ok(()) => delivered += 1,
                Err(error) => {
                    assert_eq!(error.code(), "rate-limited", "{error}");
                    limited += 1;
                }
            }
        }
        assert!((2..6).contains(&delivered), "{delivered} delivered");
        assert_eq!(delivered + limited, 6);
        net.shutdown().await;
    });
}
