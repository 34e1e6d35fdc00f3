//! When a peer that cannot be reached leaves the routing table.
//!
//! Kademlia keeps peers whose dials fail, so every later lookup near a dead
//! peer waits for a dial that cannot work. Dropping it at the first failure,
//! though, lets a short partition (or one lossy minute) drain the table of
//! every peer on the other side. So a peer leaves only after `failures`
//! consecutive failed dials spread over at least `span`, and only while
//! other peers answer (the fault is then theirs, not our own network's). A
//! connection forgives everything; a live peer that was dropped comes back
//! the next time it contacts anyone.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use libp2p::{PeerId, swarm::DialError};
use web_time::Instant;

use crate::error::DialFailure;

/// Peers whose failures are counted at most; the oldest are forgotten first.
pub(crate) const CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Strikes {
    count: u32,
    first: Instant,
}

/// The failed dials of peers not yet dropped.
#[derive(Debug)]
pub(crate) struct Unreachable {
    failures: u32,
    span: Duration,
    strikes: HashMap<PeerId, Strikes>,
    order: VecDeque<PeerId>,
}

impl Unreachable {
    /// A peer leaves after `failures` failed dials at least `span` apart
    /// from first to last.
    pub(crate) fn new(failures: u32, span: Duration) -> Self {
        Self {
            failures,
            span,
            strikes: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// A dial of `peer` failed with `error`; `others_connected` says whether
    /// other peers answer. Returns whether `peer` should leave the routing
    /// table now.
    pub(crate) fn on_dial_failed(
        &mut self,
        peer: PeerId,
        error: &DialFailure,
        others_connected: bool,
        now: Instant,
    ) -> bool {
        // An aborted or refused-by-us dial says nothing about the peer.
        let unreachable = matches!(
            error.as_ref(),
            DialError::Transport(_) | DialError::WrongPeerId { .. }
        );
        if !unreachable || !others_connected {
            return false;
        }
        let strikes = match self.strikes.get_mut(&peer) {
            Some(strikes) => strikes,
            None => {
                self.order.push_back(peer);
                while self.order.len() > CAPACITY {
                    if let Some(oldest) = self.order.pop_front() {
                        self.strikes.remove(&oldest);
                    }
                }
                self.strikes.entry(peer).or_insert(Strikes {
                    count: 0,
                    first: now,
                })
            }
        };
        strikes.count += 1;
        let gone = strikes.count >= self.failures
            && now.saturating_duration_since(strikes.first) >= self.span;
        if gone {
            self.forget(&peer);
        }
        gone
    }

    /// A connection to `peer` opened: it is reachable after all.
    pub(crate) fn on_connected(&mut self, peer: &PeerId) {
        self.forget(peer);
    }

    fn forget(&mut self, peer: &PeerId) {
        if self.strikes.remove(peer).is_some() {
            self.order.retain(|p| p != peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{io, sync::Arc};

    use libp2p::{Multiaddr, core::transport::TransportError};

    use super::*;

    const SPAN: Duration = Duration::from_secs(30);

    fn refused() -> DialFailure {
        let address: Multiaddr = "/ip4/192.0.2.1/tcp/1".parse().unwrap();
        Arc::new(DialError::Transport(vec![(
            address,
            TransportError::Other(io::Error::from(io::ErrorKind::ConnectionRefused)),
        )]))
    }

    /// Regression: one failed dial used to drop a peer, so a partition
    /// drained the routing table of everyone on the other side.
    #[test]
    fn a_burst_of_failures_does_not_drop_a_peer() {
        let mut unreachable = Unreachable::new(3, SPAN);
        let peer = PeerId::random();
        let now = Instant::now();
        for _ in 0..10 {
            assert!(!unreachable.on_dial_failed(peer, &refused(), true, now));
        }
        assert!(!unreachable.on_dial_failed(peer, &refused(), true, now + SPAN / 2));
    }

    #[test]
    fn a_peer_that_keeps_failing_for_the_span_is_dropped() {
        let mut unreachable = Unreachable::new(3, SPAN);
        let peer = PeerId::random();
        let now = Instant::now();
        assert!(!unreachable.on_dial_failed(peer, &refused(), true, now));
        assert!(!unreachable.on_dial_failed(peer, &refused(), true, now + SPAN / 2));
        assert!(unreachable.on_dial_failed(peer, &refused(), true, now + SPAN));
        // Its count starts over if it comes back into the table.
        assert!(!unreachable.on_dial_failed(peer, &refused(), true, now + SPAN * 2));
    }

    #[test]
    fn a_connection_forgives_and_our_own_outage_counts_nothing() {
        let mut unreachable = Unreachable::new(2, SPAN);
        let peer = PeerId::random();
        let now = Instant::now();
        unreachable.on_dial_failed(peer, &refused(), true, now);
        unreachable.on_connected(&peer);
        assert!(!unreachable.on_dial_failed(peer, &refused(), true, now + SPAN));
        assert!(!unreachable.on_dial_failed(peer, &refused(), false, now + SPAN * 3));
        assert!(!unreachable.on_dial_failed(
            peer,
            &Arc::new(DialError::Aborted),
            true,
            now + SPAN * 3
        ));
        assert!(unreachable.on_dial_failed(peer, &refused(), true, now + SPAN * 3));
    }

    #[test]
    fn the_peers_counted_are_bounded() {
        let mut unreachable = Unreachable::new(2, SPAN);
        let now = Instant::now();
        for _ in 0..CAPACITY + 10 {
            unreachable.on_dial_failed(PeerId::random(), &refused(), true, now);
        }
        assert_eq!(unreachable.strikes.len(), CAPACITY);
        assert_eq!(unreachable.order.len(), CAPACITY);
    }
}
