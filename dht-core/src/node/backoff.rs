//! The reconnection schedule of the bootstrap peers.
//!
//! Pure state driven by the caller's clock, so the backoff is tested without
//! waiting. A bootstrap peer that cannot be reached is retried after a delay
//! that doubles with each failure up to a maximum; one that was connected and
//! went away is retried after the initial delay. A little jitter, derived from
//! the peer id, keeps many nodes from redialing a restarted bootstrap at the
//! same instant.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId};
use web_time::Instant;

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
mod tests {
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
