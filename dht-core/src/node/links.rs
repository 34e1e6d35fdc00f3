//! Namespace links: the handshake that turns a discovered member into a
//! confirmed peer, the heartbeats that keep confirming it, and the retries.
//!
//! A dialer sends a [`Hello`] to each member its search found; a member
//! registered in the namespace answers `Welcome` and both sides record the
//! link. The dialer pins the connection and repeats the handshake every
//! heartbeat interval; a member that answers `NotRegistered`, does not
//! answer, or disconnects loses the link, and the dialer waits one discover
//! interval before trying it again.
//!
//! Every set here is bounded by something a peer cannot grow alone: links
//! and handshakes exist only over open connections (bounded by the
//! connection limits) and only in namespaces this node is in; the retry
//! times and the discovered members are pruned each round to the members
//! that round found.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use libp2p::{Multiaddr, PeerId, request_response::OutboundFailure};
use web_time::Instant;

use super::{
    action::{Action, Actions, Purpose},
    addresses::strip_p2p,
    discovery::Found,
};
use crate::{
    error::LinkError,
    event::{Event, LinkLost},
    handle::{PeerAddresses, Reply},
    namespace::{Hello, Namespace, NamespaceRequest, NamespaceResponse},
    report::Link,
    role::RoleKind,
};

/// A handshake in flight, and the caller waiting for it, if any.
#[derive(Debug)]
pub(crate) struct Handshake {
    namespace: Namespace,
    reply: Option<Reply<Result<RoleKind, LinkError>>>,
}

#[derive(Debug, Clone, Copy)]
struct LinkState {
    role: RoleKind,
    outbound: bool,
}

/// The node's namespace links.
#[derive(Debug)]
pub(crate) struct Links {
    local: PeerId,
    role: RoleKind,
    links: BTreeMap<(PeerId, Namespace), LinkState>,
    /// Handshakes in flight per peer; a busy peer gets no second one.
    handshaking: HashMap<PeerId, usize>,
    /// Peers not to try again before the given instant.
    retry_at: HashMap<PeerId, Instant>,
    /// Members already reported as discovered, from the latest round.
    discovered: HashSet<(PeerId, Namespace)>,
    retry_delay: Duration,
    heartbeat_interval: Duration,
    next_heartbeat: Instant,
}

impl Links {
    /// Links of the node `local`, whose role is `role`; a lost peer is
    /// retried after `retry_delay`, linked peers are confirmed every
    /// `heartbeat_interval`.
    pub(crate) fn new(
        local: PeerId,
        role: RoleKind,
        retry_delay: Duration,
        heartbeat_interval: Duration,
        now: Instant,
    ) -> Self {
        Self {
            local,
            role,
            links: BTreeMap::new(),
            handshaking: HashMap::new(),
            retry_at: HashMap::new(),
            discovered: HashSet::new(),
            retry_delay,
            heartbeat_interval,
            next_heartbeat: now + heartbeat_interval,
        }
    }

    /// A caller asks to link to `peer` in `namespace`.
    pub(crate) fn link(
        &mut self,
        namespace: Namespace,
        peer: &PeerAddresses,
        reply: Reply<Result<RoleKind, LinkError>>,
        out: &mut Actions,
    ) {
        self.send_hello(namespace, peer.peer_id, &peer.addresses, Some(reply), out);
    }

    /// The role's search found `found`: report new members and link to
    /// every member not linked, not busy and not waiting for a retry.
    /// `connected` says which peers a connection is open to (a member
    /// without addresses can only be reached over one).
    pub(crate) fn on_discovered(
        &mut self,
        found: Found,
        now: Instant,
        connected: impl Fn(&PeerId) -> bool,
        out: &mut Actions,
    ) {
        let Found { namespace, members } = found;
        self.retry_at.retain(|_, at| *at > now);
        // Remember this round's members only, so that the set stays bounded;
        // a member is reported when it was not in the previous round.
        let previous: HashSet<PeerId> = self
            .discovered
            .iter()
            .filter(|(_, ns)| *ns == namespace)
            .map(|(peer, _)| *peer)
            .collect();
        self.discovered.retain(|(_, ns)| *ns != namespace);
        for member in members {
            let peer = member.peer_id;
            let key = (peer, namespace.clone());
            self.discovered.insert(key.clone());
            if !previous.contains(&peer) {
                out.emit(Event::NamespacePeerDiscovered {
                    namespace: namespace.clone(),
                    peer,
                    addresses: member.addresses.clone(),
                });
            }
            if self.links.contains_key(&key)
                || self.handshaking.contains_key(&peer)
                || self.retry_at.contains_key(&peer)
            {
                continue;
            }
            if member.addresses.is_empty() && !connected(&peer) {
                tracing::debug!(%peer, "member has no known address; cannot dial it");
                continue;
            }
            self.send_hello(namespace.clone(), peer, &member.addresses, None, out);
        }
    }

    /// What to answer a peer's `hello`: welcome if this node is
    /// `registered` in the namespace.
    pub(crate) fn answer(&self, registered: bool) -> NamespaceResponse {
        if registered {
            NamespaceResponse::Welcome { role: self.role }
        } else {
            NamespaceResponse::NotRegistered
        }
    }

    /// We welcomed `peer`'s `hello`: it is linked to us.
    pub(crate) fn on_accepted(&mut self, peer: PeerId, hello: Hello, out: &mut Actions) {
        let key = (peer, hello.namespace.clone());
        if self.links.contains_key(&key) {
            return;
        }
        self.links.insert(
            key,
            LinkState {
                role: hello.role,
                outbound: false,
            },
        );
        tracing::info!(%peer, namespace = %hello.namespace, role = %hello.role, "accepted a namespace peer");
        out.emit(Event::NamespaceLinked {
            namespace: hello.namespace,
            peer,
            role: hello.role,
            outbound: false,
        });
    }

    /// `peer` answered our handshake.
    pub(crate) fn on_answer(
        &mut self,
        peer: PeerId,
        handshake: Handshake,
        response: &NamespaceResponse,
        now: Instant,
        out: &mut Actions,
    ) {
        self.done_handshaking(&peer);
        let Handshake { namespace, reply } = handshake;
        let &NamespaceResponse::Welcome { role } = response else {
            self.drop_link(peer, &namespace, LinkLost::Unregistered, now, out);
            if let Some(reply) = reply {
                let _ = reply.send(Err(LinkError::NotRegistered { peer, namespace }));
            }
            return;
        };
        self.retry_at.remove(&peer);
        out.push(Action::Pin(peer));
        let state = LinkState {
            role,
            outbound: true,
        };
        if self
            .links
            .insert((peer, namespace.clone()), state)
            .is_none()
        {
            tracing::info!(%peer, %namespace, %role, "linked to a namespace peer");
            out.emit(Event::NamespaceLinked {
                namespace,
                peer,
                role,
                outbound: true,
            });
        }
        if let Some(reply) = reply {
            let _ = reply.send(Ok(role));
        }
    }

    /// Our handshake with `peer` failed on the way.
    pub(crate) fn on_failure(
        &mut self,
        peer: PeerId,
        handshake: Handshake,
        error: OutboundFailure,
        now: Instant,
        out: &mut Actions,
    ) {
        self.done_handshaking(&peer);
        tracing::debug!(%peer, %error, "namespace handshake failed");
        let error = Arc::new(error);
        let Handshake { namespace, reply } = handshake;
        self.drop_link(
            peer,
            &namespace,
            LinkLost::Unanswered(error.clone()),
            now,
            out,
        );
        if let Some(reply) = reply {
            let _ = reply.send(Err(LinkError::Failed {
                peer,
                namespace,
                source: error,
            }));
        }
    }

    /// The last connection to `peer` closed: its links are lost, and it may
    /// be tried again as soon as it comes back.
    pub(crate) fn on_disconnected(&mut self, peer: PeerId, now: Instant, out: &mut Actions) {
        let lost: Vec<Namespace> = self
            .links
            .keys()
            .filter(|(p, _)| *p == peer)
            .map(|(_, ns)| ns.clone())
            .collect();
        for namespace in lost {
            self.drop_link(peer, &namespace, LinkLost::Disconnected, now, out);
        }
        self.retry_at.remove(&peer);
    }

    /// Repeats the handshake with every peer we linked to, when due.
    pub(crate) fn poll(&mut self, now: Instant, out: &mut Actions) {
        if now < self.next_heartbeat {
            return;
        }
        self.next_heartbeat = now + self.heartbeat_interval;
        let due: Vec<(PeerId, Namespace)> = self
            .links
            .iter()
            .filter(|((peer, _), link)| link.outbound && !self.handshaking.contains_key(peer))
            .map(|(key, _)| key.clone())
            .collect();
        for (peer, namespace) in due {
            self.send_hello(namespace, peer, &[], None, out);
        }
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.next_heartbeat
    }

    /// The links now.
    pub(crate) fn snapshot(&self) -> Vec<Link> {
        self.links
            .iter()
            .map(|((peer, namespace), link)| Link {
                namespace: namespace.clone(),
                peer_id: *peer,
                role: link.role,
                outbound: link.outbound,
            })
            .collect()
    }

    /// How many links there are.
    pub(crate) fn len(&self) -> usize {
        self.links.len()
    }

    fn send_hello(
        &mut self,
        namespace: Namespace,
        peer: PeerId,
        addresses: &[Multiaddr],
        reply: Option<Reply<Result<RoleKind, LinkError>>>,
        out: &mut Actions,
    ) {
        if peer == self.local {
            if let Some(reply) = reply {
                let _ = reply.send(Err(LinkError::OwnPeer { peer, namespace }));
            }
            return;
        }
        *self.handshaking.entry(peer).or_default() += 1;
        out.push(Action::Request {
            peer,
            addresses: addresses.iter().map(strip_p2p).collect(),
            request: NamespaceRequest::Hello(Hello {
                namespace: namespace.clone(),
                role: self.role,
            }),
            purpose: Purpose::Handshake(Handshake { namespace, reply }),
        });
    }

    fn done_handshaking(&mut self, peer: &PeerId) {
        if let Some(count) = self.handshaking.get_mut(peer) {
            *count -= 1;
            if *count == 0 {
                self.handshaking.remove(peer);
            }
        }
    }

    /// Ends a link (if any) and keeps the peer from being tried again at once.
    fn drop_link(
        &mut self,
        peer: PeerId,
        namespace: &Namespace,
        reason: LinkLost,
        now: Instant,
        out: &mut Actions,
    ) {
        self.retry_at.insert(peer, now + self.retry_delay);
        if self.links.remove(&(peer, namespace.clone())).is_some() {
            tracing::info!(%peer, %namespace, %reason, "namespace link lost");
            out.emit(Event::NamespaceLinkLost {
                namespace: namespace.clone(),
                peer,
                reason,
            });
        }
        if !self.links.keys().any(|(p, _)| *p == peer) {
            out.push(Action::Unpin(peer));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::channel::oneshot;

    use super::*;

    const RETRY: Duration = Duration::from_secs(10);
    const HEARTBEAT: Duration = Duration::from_secs(20);

    fn chat() -> Namespace {
        Namespace::new("chat").unwrap()
    }

    fn dialer(now: Instant) -> Links {
        Links::new(PeerId::random(), RoleKind::Dialer, RETRY, HEARTBEAT, now)
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
        let mut listener = Links::new(PeerId::random(), RoleKind::Listener, RETRY, HEARTBEAT, now);
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
}
