//! The links part driven by hand: handshakes, heartbeats, retries and
//! the bounds on what a discovery round may start.

use futures::channel::oneshot;

use super::*;

const RETRY: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(20);

fn chat() -> Namespace {
    Namespace::new("chat").unwrap()
}

const SETTINGS: LinkSettings = LinkSettings {
    retry_delay: RETRY,
    heartbeat_interval: HEARTBEAT,
    new_per_round: 4,
};

fn dialer(now: Instant) -> Links {
    Links::new(PeerId::random(), RoleKind::Dialer, SETTINGS, now)
}

fn found(peers: &[PeerId]) -> Found {
    Found {
        namespace: chat(),
        members: peers
            .iter()
            .map(|peer| PeerAddresses {
                peer_id: *peer,
                addresses: vec!["/ip4/192.0.2.1/tcp/1".parse().unwrap()],
            })
            .collect(),
    }
}

/// The handshakes queued, with the peer each goes to.
fn hellos(out: &mut Actions) -> Vec<(PeerId, Handshake)> {
    out.drain()
        .into_iter()
        .filter_map(|action| match action {
            Action::Request {
                peer,
                request: NamespaceRequest::Hello(hello),
                purpose: Purpose::Handshake(handshake),
                ..
            } => {
                assert_eq!(hello.role, RoleKind::Dialer);
                Some((peer, handshake))
            }
            _ => None,
        })
        .collect()
}

fn welcome() -> NamespaceResponse {
    NamespaceResponse::Welcome {
        role: RoleKind::Listener,
    }
}

#[test]
fn a_dialer_links_to_each_member_found_once() {
    let now = Instant::now();
    let mut links = dialer(now);
    let mut out = Actions::default();
    let members = [PeerId::random(), PeerId::random()];
    links.on_discovered(found(&members), now, |_| false, &mut out);
    let events = out.take_events();
    assert_eq!(events.len(), 2, "each member is reported: {events:?}");
    let sent = hellos(&mut out);
    assert_eq!(sent.len(), 2);

    // While the handshakes run, the next round sends none and reports none.
    links.on_discovered(found(&members), now, |_| false, &mut out);
    assert!(out.drain().is_empty());

    for (peer, handshake) in sent {
        links.on_answer(peer, handshake, &welcome(), now, &mut out);
    }
    let actions = out.drain();
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Pin(_)))
            .count(),
        2,
        "a linked peer's connection is kept open"
    );
    assert_eq!(links.len(), 2);
    links.on_discovered(found(&members), now, |_| false, &mut out);
    assert!(out.drain().is_empty(), "linked members are left alone");
}

#[test]
fn heartbeats_confirm_links_and_an_unregistered_peer_is_dropped_then_retried() {
    let now = Instant::now();
    let mut links = dialer(now);
    let mut out = Actions::default();
    let peer = PeerId::random();
    links.on_discovered(found(&[peer]), now, |_| false, &mut out);
    let (_, handshake) = hellos(&mut out).remove(0);
    links.on_answer(peer, handshake, &welcome(), now, &mut out);
    out.drain();

    links.poll(now + HEARTBEAT - Duration::from_millis(1), &mut out);
    assert!(out.drain().is_empty(), "not before the interval");
    let later = now + HEARTBEAT;
    links.poll(later, &mut out);
    let (_, heartbeat) = hellos(&mut out).remove(0);
    links.on_answer(
        peer,
        heartbeat,
        &NamespaceResponse::NotRegistered,
        later,
        &mut out,
    );
    let events = out.take_events();
    assert!(matches!(
        &events[..],
        [Event::NamespaceLinkLost {
            reason: LinkLost::Unregistered,
            ..
        }]
    ));
    assert!(matches!(&out.drain()[..], [Action::Unpin(p)] if *p == peer));

    links.on_discovered(found(&[peer]), later, |_| false, &mut out);
    assert!(hellos(&mut out).is_empty(), "not retried at once");
    links.on_discovered(found(&[peer]), later + RETRY, |_| false, &mut out);
    assert_eq!(hellos(&mut out).len(), 1, "retried after the delay");
}

#[test]
fn a_caller_learns_why_a_link_failed() {
    let now = Instant::now();
    let mut links = dialer(now);
    let mut out = Actions::default();
    let peer = PeerId::random();
    let (reply, mut answer) = oneshot::channel();
    links.link(
        chat(),
        &PeerAddresses {
            peer_id: peer,
            addresses: Vec::new(),
        },
        reply,
        &mut out,
    );
    let (_, handshake) = hellos(&mut out).remove(0);
    links.on_failure(peer, handshake, OutboundFailure::Timeout, now, &mut out);
    let error = answer.try_recv().unwrap().unwrap().unwrap_err();
    assert_eq!(crate::error::ErrorCode::code(&error), "link-failed");

    let (reply, mut answer) = oneshot::channel();
    let own = PeerAddresses {
        peer_id: links.local,
        addresses: Vec::new(),
    };
    links.link(chat(), &own, reply, &mut out);
    assert!(matches!(
        answer.try_recv().unwrap().unwrap(),
        Err(LinkError::OwnPeer { .. })
    ));
}

#[test]
fn members_answer_hellos_and_record_who_linked() {
    let now = Instant::now();
    let mut listener = Links::new(PeerId::random(), RoleKind::Listener, SETTINGS, now);
    let mut out = Actions::default();
    assert!(matches!(
        listener.answer(false),
        NamespaceResponse::NotRegistered
    ));
    assert!(matches!(
        listener.answer(true),
        NamespaceResponse::Welcome {
            role: RoleKind::Listener
        }
    ));
    let peer = PeerId::random();
    let hello = Hello {
        namespace: chat(),
        role: RoleKind::Dialer,
    };
    listener.on_accepted(peer, hello.clone(), &mut out);
    listener.on_accepted(peer, hello, &mut out);
    assert_eq!(out.take_events().len(), 1, "a heartbeat is not a new link");
    assert!(!listener.snapshot()[0].outbound);

    listener.on_disconnected(peer, now, &mut out);
    assert!(matches!(
        &out.take_events()[..],
        [Event::NamespaceLinkLost {
            reason: LinkLost::Disconnected,
            ..
        }]
    ));
    assert_eq!(listener.len(), 0);
}

/// Regression: a holder could answer with 256 made-up members and the
/// dialer dialed every one of them, every round.
#[test]
fn a_flood_of_members_is_dialed_a_few_per_round() {
    let now = Instant::now();
    let mut links = dialer(now);
    let mut out = Actions::default();
    let flood: Vec<PeerId> = (0..256).map(|_| PeerId::random()).collect();
    links.on_discovered(found(&flood), now, |_| false, &mut out);
    let first = hellos(&mut out);
    assert_eq!(first.len(), 4);
    // They never answer: each is held off for the retry delay, and the
    // next rounds go on a few at a time.
    for (peer, handshake) in first {
        links.on_failure(peer, handshake, OutboundFailure::DialFailure, now, &mut out);
    }
    out.drain();
    links.on_discovered(found(&flood), now, |_| false, &mut out);
    assert_eq!(hellos(&mut out).len(), 4);
}

#[test]
fn members_without_addresses_are_linked_only_over_an_open_connection() {
    let now = Instant::now();
    let mut links = dialer(now);
    let mut out = Actions::default();
    let tab = PeerId::random();
    let without_address = Found {
        namespace: chat(),
        members: vec![PeerAddresses {
            peer_id: tab,
            addresses: Vec::new(),
        }],
    };
    links.on_discovered(without_address, now, |_| false, &mut out);
    assert!(hellos(&mut out).is_empty());
    let again = Found {
        namespace: chat(),
        members: vec![PeerAddresses {
            peer_id: tab,
            addresses: Vec::new(),
        }],
    };
    links.on_discovered(again, now, |peer| *peer == tab, &mut out);
    assert_eq!(hellos(&mut out).len(), 1);
}
