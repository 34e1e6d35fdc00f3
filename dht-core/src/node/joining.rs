//! Joining the DHT and staying joined: dialing the bootstrap peers and
//! keeping a pinned connection to each, refreshing the routing table
//! through them, and dropping peers that cannot be reached.
//!
//! Pure state driven by the caller's clock, so the backoff is tested without
//! waiting. A bootstrap peer that cannot be reached is retried after a delay
//! that doubles with each failure up to a maximum; one that was connected and
//! went away is retried after the initial delay. A little jitter, derived from
//! the peer id, keeps many nodes from redialing a restarted bootstrap at the
//! same instant. Each new connection to a bootstrap peer starts a refresh: a
//! bootstrap that restarted knows nobody, and our lookup through it teaches
//! it the network again.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId, swarm::DialError};
use web_time::Instant;

use super::{
    action::{Action, Actions, Query},
    addresses::strip_p2p,
    queries::Pending,
};
use crate::{error::DialFailure, event::Event, handle::Reply};

/// Joining and staying joined.
#[derive(Debug)]
pub(crate) struct Joining {
    peers: BootstrapPeers,
    /// Refreshes this part started that have not finished.
    refreshing: usize,
    /// Callers waiting for the refreshes under way to finish.
    waiters: Vec<Reply<usize>>,
}

impl Joining {
    /// A node that joins through `bootstrap` peers, all to be dialed at
    /// `now`, retried after `initial` doubling up to `max`.
    pub(crate) fn new(
        bootstrap: &[(PeerId, Multiaddr)],
        initial: Duration,
        max: Duration,
        now: Instant,
    ) -> Self {
        Self {
            peers: BootstrapPeers::new(bootstrap, initial, max, now),
            refreshing: 0,
            waiters: Vec::new(),
        }
    }

    /// The bootstrap peers' addresses, for the routing table to start from.
    pub(crate) fn seeds(&self) -> impl Iterator<Item = (PeerId, Multiaddr)> + '_ {
        self.peers
            .addresses()
            .map(|(peer, address)| (peer, strip_p2p(address)))
    }

    /// Whether the node joins through anyone; one without bootstrap peers
    /// is the first node of its network and has joined as it starts.
    pub(crate) fn has_bootstrap_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Whether `peer` is one of the bootstrap peers.
    pub(crate) fn is_bootstrap_peer(&self, peer: &PeerId) -> bool {
        self.peers.contains(peer)
    }

    /// Dials the bootstrap peers due at `now`; `connected` says which of
    /// them a connection is open to already.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        connected: impl Fn(&PeerId) -> bool,
        out: &mut Actions,
    ) {
        for (peer, addresses) in self.peers.take_due(now) {
            if connected(&peer) {
                self.on_connected(peer, out);
            } else {
                tracing::debug!(%peer, "dialing bootstrap peer");
                out.push(Action::Dial {
                    peer,
                    addresses: addresses.iter().map(strip_p2p).collect(),
                });
            }
        }
    }

    /// A connection to `peer` opened.
    pub(crate) fn on_connected(&mut self, peer: PeerId, out: &mut Actions) {
        if !self.peers.on_connected(&peer) {
            return;
        }
        tracing::info!(%peer, "connected to bootstrap peer");
        out.push(Action::Pin(peer));
        out.emit(Event::BootstrapPeerConnected { peer });
        self.refresh(None, out);
    }

    /// A dial of `peer` failed with `error`. A bootstrap peer is dialed
    /// again later. Any other peer that could not be reached at all leaves
    /// the routing table, but only while `others_connected` says the fault
    /// is not our own network's: Kademlia keeps such peers, and every later
    /// lookup near them would wait for a dial that cannot work; a live peer
    /// comes back the next time it contacts anyone.
    pub(crate) fn on_dial_failed(
        &mut self,
        peer: PeerId,
        error: &DialFailure,
        others_connected: bool,
        now: Instant,
        out: &mut Actions,
    ) {
        let unreachable = matches!(
            error.as_ref(),
            DialError::Transport(_) | DialError::WrongPeerId { .. }
        );
        if unreachable && others_connected && !self.peers.contains(&peer) {
            out.push(Action::RemovePeer(peer));
        }
        if let Some(delay) = self.peers.on_dial_failed(&peer, now) {
            tracing::warn!(%peer, %error, retry_in = ?delay, "bootstrap peer unreachable");
            out.emit(Event::BootstrapPeerUnreachable {
                peer,
                error: error.clone(),
                retry_in_ms: millis(delay),
            });
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) fn on_disconnected(&mut self, peer: PeerId, now: Instant, out: &mut Actions) {
        if let Some(delay) = self.peers.on_disconnected(&peer, now) {
            tracing::warn!(%peer, retry_in = ?delay, "lost the bootstrap peer");
            out.emit(Event::BootstrapPeerLost {
                peer,
                retry_in_ms: millis(delay),
            });
        }
    }

    /// Refreshes the routing table; `reply`, if any, gets its size once
    /// every refresh under way has finished.
    pub(crate) fn refresh(&mut self, reply: Option<Reply<usize>>, out: &mut Actions) {
        self.refreshing += 1;
        self.waiters.extend(reply);
        out.push(Action::Query {
            query: Query::Bootstrap,
            pending: Pending::Refresh,
        });
    }

    /// A refresh finished with `table_size` peers in the routing table.
    pub(crate) fn on_refreshed(&mut self, table_size: usize, out: &mut Actions) {
        self.refreshing = self.refreshing.saturating_sub(1);
        tracing::info!(routing_table_size = table_size, "bootstrap finished");
        out.emit(Event::Bootstrapped {
            routing_table_size: table_size,
        });
        if self.refreshing == 0 {
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(table_size);
            }
        }
    }

    /// A refresh could not start: nobody is known to ask.
    pub(crate) fn on_refresh_impossible(&mut self) {
        self.refreshing = self.refreshing.saturating_sub(1);
        if self.refreshing == 0 {
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(0);
            }
        }
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.peers.next_deadline()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// To be dialed at the given instant.
    Due(Instant),
    /// A dial is under way.
    Dialing,
    /// At least one connection is open.
    Connected,
}

#[derive(Debug)]
struct Peer {
    id: PeerId,
    addresses: Vec<Multiaddr>,
    state: State,
    failures: u32,
}

/// The bootstrap peers of a node and their reconnection schedule.
#[derive(Debug)]
pub(crate) struct BootstrapPeers {
    peers: Vec<Peer>,
    initial: Duration,
    max: Duration,
}

impl BootstrapPeers {
    /// All peers due at once at `now`; addresses of the same peer are grouped.
    pub(crate) fn new(
        addresses: &[(PeerId, Multiaddr)],
        initial: Duration,
        max: Duration,
        now: Instant,
    ) -> Self {
        let mut peers: Vec<Peer> = Vec::new();
        for (id, address) in addresses {
            match peers.iter_mut().find(|p| p.id == *id) {
                Some(peer) if !peer.addresses.contains(address) => {
                    peer.addresses.push(address.clone())
                }
                Some(_) => {}
                None => peers.push(Peer {
                    id: *id,
                    addresses: vec![address.clone()],
                    state: State::Due(now),
                    failures: 0,
                }),
            }
        }
        Self {
            peers,
            initial,
            max,
        }
    }

    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.peers.iter().any(|p| p.id == *peer)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub(crate) fn addresses(&self) -> impl Iterator<Item = (PeerId, &Multiaddr)> + '_ {
        self.peers
            .iter()
            .flat_map(|p| p.addresses.iter().map(move |a| (p.id, a)))
    }

    /// Peers whose dial is due at `now`; they are marked as being dialed.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        self.peers
            .iter_mut()
            .filter(|p| matches!(p.state, State::Due(at) if at <= now))
            .map(|p| {
                p.state = State::Dialing;
                (p.id, p.addresses.clone())
            })
            .collect()
    }

    /// When the next dial is due, if any is scheduled.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.peers
            .iter()
            .filter_map(|p| match p.state {
                State::Due(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// A connection to `peer` is open. Returns whether it is a bootstrap peer
    /// that was not connected before.
    pub(crate) fn on_connected(&mut self, peer: &PeerId) -> bool {
        match self.peers.iter_mut().find(|p| p.id == *peer) {
            Some(p) if p.state != State::Connected => {
                p.state = State::Connected;
                p.failures = 0;
                true
            }
            _ => false,
        }
    }

    /// The last connection to `peer` closed. Returns the delay before the
    /// next dial if it is a bootstrap peer.
    pub(crate) fn on_disconnected(&mut self, peer: &PeerId, now: Instant) -> Option<Duration> {
        let initial = self.initial;
        let p = self.peers.iter_mut().find(|p| p.id == *peer)?;
        if p.state != State::Connected {
            return None;
        }
        let delay = jittered(initial, &p.id, 0);
        p.state = State::Due(now + delay);
        Some(delay)
    }

    /// A dial of `peer` failed. Returns the delay before the next one if it is
    /// a bootstrap peer that was being dialed.
    pub(crate) fn on_dial_failed(&mut self, peer: &PeerId, now: Instant) -> Option<Duration> {
        let (initial, max) = (self.initial, self.max);
        let p = self.peers.iter_mut().find(|p| p.id == *peer)?;
        if p.state != State::Dialing {
            return None;
        }
        p.failures = p.failures.saturating_add(1);
        let exponent = p.failures.saturating_sub(1).min(20);
        let delay = initial.saturating_mul(1 << exponent).min(max);
        let delay = jittered(delay, &p.id, p.failures).min(max);
        p.state = State::Due(now + delay);
        Some(delay)
    }
}

/// `delay` plus up to a quarter more, fixed for a given peer and attempt.
fn jittered(delay: Duration, peer: &PeerId, attempt: u32) -> Duration {
    let mut hasher = DefaultHasher::new();
    peer.hash(&mut hasher);
    attempt.hash(&mut hasher);
    let fraction = (hasher.finish() % 1000) as u32;
    delay + delay / 4 * fraction / 1000
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    const INITIAL: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    fn one_peer(now: Instant) -> (BootstrapPeers, PeerId) {
        let peer = PeerId::random();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}").parse().unwrap();
        (
            BootstrapPeers::new(&[(peer, address)], INITIAL, MAX, now),
            peer,
        )
    }

    #[test]
    fn every_peer_is_due_at_start_and_addresses_are_grouped() {
        let now = Instant::now();
        let peer = PeerId::random();
        let a: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip4/127.0.0.1/udp/1/quic-v1".parse().unwrap();
        let mut peers = BootstrapPeers::new(
            &[(peer, a.clone()), (peer, b.clone()), (peer, a.clone())],
            INITIAL,
            MAX,
            now,
        );
        assert_eq!(peers.take_due(now), vec![(peer, vec![a, b])]);
        assert!(
            peers.take_due(now).is_empty(),
            "a peer being dialed is not due again"
        );
        assert_eq!(peers.next_deadline(), None);
    }

    #[test]
    fn failed_dials_back_off_exponentially_up_to_the_maximum() {
        let mut now = Instant::now();
        let (mut peers, peer) = one_peer(now);
        let mut delays = Vec::new();
        for _ in 0..8 {
            assert_eq!(peers.take_due(now).len(), 1);
            let delay = peers.on_dial_failed(&peer, now).unwrap();
            delays.push(delay);
            // Not due a moment before the delay ends, due when it ends.
            assert!(
                peers
                    .take_due(now + delay - Duration::from_millis(1))
                    .is_empty()
            );
            now += delay;
        }
        for (attempt, delay) in delays.iter().enumerate() {
            let base = INITIAL.saturating_mul(1 << attempt).min(MAX);
            assert!(
                *delay >= base && *delay <= (base + base / 4).min(MAX),
                "attempt {attempt}: {delay:?}"
            );
        }
        assert_eq!(*delays.last().unwrap(), MAX);
    }

    #[test]
    fn a_connection_resets_the_backoff_and_a_disconnect_schedules_a_quick_redial() {
        let now = Instant::now();
        let (mut peers, peer) = one_peer(now);
        peers.take_due(now);
        peers.on_dial_failed(&peer, now);
        peers.take_due(now + MAX);
        peers.on_dial_failed(&peer, now);
        peers.take_due(now + MAX);
        assert!(peers.on_connected(&peer));
        assert!(
            !peers.on_connected(&peer),
            "a second connection is not news"
        );
        let delay = peers.on_disconnected(&peer, now).unwrap();
        assert!(delay >= INITIAL && delay <= INITIAL + INITIAL / 4);
        assert_eq!(peers.next_deadline(), Some(now + delay));
        // The next failure starts the backoff from the beginning again.
        peers.take_due(now + delay);
        let retry = peers.on_dial_failed(&peer, now).unwrap();
        assert!(retry <= INITIAL + INITIAL / 4);
    }

    #[test]
    fn other_peers_are_ignored() {
        let now = Instant::now();
        let (mut peers, _) = one_peer(now);
        let stranger = PeerId::random();
        assert!(!peers.on_connected(&stranger));
        assert_eq!(peers.on_disconnected(&stranger, now), None);
        assert_eq!(peers.on_dial_failed(&stranger, now), None);
    }
}

#[cfg(test)]
mod joining_tests {
    use std::{io, sync::Arc};

    use futures::channel::oneshot;
    use libp2p::core::transport::TransportError;

    use super::*;

    fn refused(address: &Multiaddr) -> DialFailure {
        Arc::new(DialError::Transport(vec![(
            address.clone(),
            TransportError::Other(io::Error::from(io::ErrorKind::ConnectionRefused)),
        )]))
    }

    fn joining(now: Instant) -> (Joining, PeerId, Multiaddr) {
        let peer = PeerId::random();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}").parse().unwrap();
        let joining = Joining::new(
            &[(peer, address.clone())],
            Duration::from_secs(1),
            Duration::from_secs(60),
            now,
        );
        (joining, peer, address)
    }

    #[test]
    fn a_new_node_dials_its_bootstrap_peer_and_refreshes_once_connected() {
        let now = Instant::now();
        let (mut joining, peer, address) = joining(now);
        let mut out = Actions::default();
        assert_eq!(
            joining.seeds().collect::<Vec<_>>(),
            vec![(peer, strip_p2p(&address))]
        );
        joining.poll(now, |_| false, &mut out);
        assert!(matches!(
            &out.drain()[..],
            [Action::Dial { peer: dialed, addresses }] if *dialed == peer && addresses == &[strip_p2p(&address)]
        ));

        joining.on_connected(peer, &mut out);
        let actions = out.drain();
        assert!(matches!(actions[0], Action::Pin(p) if p == peer));
        assert!(matches!(
            actions[1],
            Action::Emit(Event::BootstrapPeerConnected { .. })
        ));
        assert!(matches!(
            actions[2],
            Action::Query {
                query: Query::Bootstrap,
                pending: Pending::Refresh
            }
        ));
        // A second connection to the same peer is not news.
        joining.on_connected(peer, &mut out);
        assert!(out.drain().is_empty());
    }

    #[test]
    fn a_caller_waits_for_every_refresh_under_way() {
        let now = Instant::now();
        let (mut joining, peer, _) = joining(now);
        let mut out = Actions::default();
        joining.on_connected(peer, &mut out);
        let (reply, mut answer) = oneshot::channel();
        joining.refresh(Some(reply), &mut out);
        joining.on_refreshed(3, &mut out);
        assert!(
            answer.try_recv().unwrap().is_none(),
            "one refresh still runs"
        );
        joining.on_refreshed(5, &mut out);
        assert_eq!(answer.try_recv().unwrap(), Some(5));
        let sizes: Vec<usize> = out
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Bootstrapped { routing_table_size } => Some(routing_table_size),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, vec![3, 5]);

        let (reply, mut answer) = oneshot::channel();
        joining.refresh(Some(reply), &mut out);
        joining.on_refresh_impossible();
        assert_eq!(
            answer.try_recv().unwrap(),
            Some(0),
            "an empty table answers at once"
        );
    }

    #[test]
    fn an_unreachable_bootstrap_peer_is_retried_and_reported_but_kept() {
        let now = Instant::now();
        let (mut joining, peer, address) = joining(now);
        let mut out = Actions::default();
        joining.poll(now, |_| false, &mut out);
        out.drain();
        joining.on_dial_failed(peer, &refused(&address), true, now, &mut out);
        let actions = out.drain();
        assert!(
            !actions.iter().any(|a| matches!(a, Action::RemovePeer(_))),
            "bootstrap peers stay in the routing table"
        );
        assert!(matches!(
            &actions[..],
            [Action::Emit(Event::BootstrapPeerUnreachable { retry_in_ms, .. })] if *retry_in_ms >= 1000
        ));
        assert!(joining.next_deadline().is_some_and(|at| at > now));
    }

    #[test]
    fn an_unreachable_peer_leaves_the_routing_table_only_while_others_answer() {
        let now = Instant::now();
        let (mut joining, _, address) = joining(now);
        let mut out = Actions::default();
        let stranger = PeerId::random();
        joining.on_dial_failed(stranger, &refused(&address), false, now, &mut out);
        assert!(out.drain().is_empty(), "our own network may be down");
        joining.on_dial_failed(stranger, &refused(&address), true, now, &mut out);
        assert!(matches!(&out.drain()[..], [Action::RemovePeer(p)] if *p == stranger));
        // A dial that was aborted says nothing about the peer.
        joining.on_dial_failed(stranger, &Arc::new(DialError::Aborted), true, now, &mut out);
        assert!(out.drain().is_empty());
    }

    #[test]
    fn losing_a_bootstrap_peer_schedules_a_quick_redial() {
        let now = Instant::now();
        let (mut joining, peer, _) = joining(now);
        let mut out = Actions::default();
        joining.poll(now, |_| true, &mut out);
        assert!(
            out.drain().iter().any(|a| matches!(a, Action::Pin(_))),
            "a peer connected already counts as connected"
        );
        joining.on_disconnected(peer, now, &mut out);
        assert!(matches!(
            &out.drain()[..],
            [Action::Emit(Event::BootstrapPeerLost { .. })]
        ));
        let due = joining.next_deadline().expect("a redial is scheduled");
        joining.poll(due, |_| false, &mut out);
        assert!(matches!(&out.drain()[..], [Action::Dial { .. }]));
    }
}
