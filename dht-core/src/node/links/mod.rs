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
    /// Handshakes a discovery round may start, so that a members list full
    /// of made-up peers cannot turn this node into a dialing machine.
    new_per_round: usize,
}

/// How a node's links behave: see [`Links::new`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkSettings {
    /// A lost peer is tried again after this long.
    pub(crate) retry_delay: Duration,
    /// Linked peers are confirmed this often.
    pub(crate) heartbeat_interval: Duration,
    /// Handshakes one discovery round starts at most.
    pub(crate) new_per_round: usize,
}

impl Links {
    /// Links of the node `local`, whose role is `role`.
    pub(crate) fn new(local: PeerId, role: RoleKind, settings: LinkSettings, now: Instant) -> Self {
        let LinkSettings {
            retry_delay,
            heartbeat_interval,
            new_per_round,
        } = settings;
        Self {
            local,
            role,
            new_per_round,
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
    /// members not linked, not busy and not waiting for a retry, at most
    /// `new_per_round` of them (the rest wait for later rounds).
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
        let mut started = 0;
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
            if started == self.new_per_round {
                continue;
            }
            started += 1;
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

    /// Whether this node is linked with `peer` in any namespace.
    pub(crate) fn is_linked(&self, peer: &PeerId) -> bool {
        self.links.keys().any(|(linked, _)| linked == peer)
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
mod tests;
