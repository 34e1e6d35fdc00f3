//! Noticing that peers of the routing table went away.
//!
//! A peer that crashes, or a tab that closes, leaves without a word, and
//! Kademlia keeps a peer until a full bucket replaces it. Two things tell:
//!
//! - the last connection to a peer of the routing table breaking (rather
//!   than being closed for being idle): the peer is dialed [`GRACE`] later,
//!   at most once per `interval` (a tab closing an idle connection breaks it
//!   too, and must not cost a dial every idle timeout). A failed dial is
//!   what [`super::unreachable`] counts towards removing a peer, and what
//!   makes [`super::replication`] send the records near it elsewhere;
//! - for a peer reachable only through relays (a browser tab), its relay's
//!   answer: a dial that every relay answers "no reservation" removes the
//!   peer at once (the relay was reached, and the peer is not behind it; a
//!   relay that cannot be reached is no such answer). Such a peer is also
//!   dialed when nothing was heard from it for `interval`.
//!
//! So a closed tab leaves the routing table of a node connected to it within
//! [`GRACE`] plus one circuit dial ([`crate::CIRCUIT_DIAL_TIMEOUT`] at most),
//! and of every node within `interval` plus [`SWEEP_EVERY`] plus one dial.
//! A live tab costs each node whose table holds it at most two circuits per
//! `interval`; a live native peer at most one dial per `interval`, after a
//! break.

use std::{collections::HashMap, io, time::Duration};

use libp2p::{
    Multiaddr, PeerId, core::transport::TransportError, multiaddr::Protocol,
    relay::outbound::hop::ConnectError, swarm::DialError,
};
use web_time::Instant;

use super::{
    action::{Action, Actions},
    addresses::relay_of,
};
use crate::{
    error::{DialFailure, find_cause},
    event::PeerGone,
    report::RoutingEntry,
};

/// How often the routing table is looked through for relayed peers due a
/// check.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How long after a peer's connection broke it is checked: a relayed peer's
/// relay learns that the peer left from the same break, and a check that
/// reaches the relay first is answered as if the peer were still there.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// When each relayed peer of the routing table was last heard from, and the
/// checks of broken connections to any peer of it. Three maps of one type (the one
/// other parts use too), which costs the browser build no new hash-map code.
#[derive(Debug)]
pub(crate) struct Departures {
    interval: Duration,
    /// Last connected to, or when it entered the table, for relayed peers;
    /// bounded by the routing table: peers not in it are dropped each sweep.
    heard: HashMap<PeerId, Instant>,
    /// When a break of its connection was last checked; bounded like `heard`.
    break_checked: HashMap<PeerId, Instant>,
    /// When a break of its connection is due a check; bounded like `heard`.
    check_at: HashMap<PeerId, Instant>,
    next_sweep: Instant,
}

impl Departures {
    /// Checks each relayed peer nothing was heard from for `interval`; the
    /// first sweep is at `now`.
    pub(crate) fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            heard: HashMap::new(),
            break_checked: HashMap::new(),
            check_at: HashMap::new(),
            next_sweep: now,
        }
    }

    /// When [`poll`](Self::poll) or [`sweep`](Self::sweep) is due.
    pub(crate) fn next_deadline(&self) -> Instant {
        self.check_at
            .values()
            .copied()
            .fold(self.next_sweep, Instant::min)
    }

    /// Whether [`sweep`](Self::sweep) is due.
    pub(crate) fn sweep_due(&self, now: Instant) -> bool {
        now >= self.next_sweep
    }

    /// A connection to `peer` opened: it is there.
    pub(crate) fn on_connected(&mut self, peer: &PeerId, now: Instant) {
        if let Some(heard) = self.heard.get_mut(peer) {
            *heard = now;
        }
        self.check_at.remove(peer);
    }

    /// The last connection to `peer` closed; `broke` says whether it broke
    /// (rather than being closed here for being idle); `routing` is what the
    /// routing table holds for it.
    pub(crate) fn on_disconnected(
        &mut self,
        peer: PeerId,
        broke: bool,
        routing: &[Multiaddr],
        now: Instant,
    ) {
        if !broke || routing.is_empty() {
            return;
        }
        if only_relayed(routing) {
            self.heard.entry(peer).or_insert(now);
        }
        if self
            .break_checked
            .get(&peer)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.interval)
        {
            return;
        }
        self.break_checked.insert(peer, now);
        self.check_at.insert(peer, now + GRACE);
    }

    /// Dials the peers whose break is due a check, at the addresses
    /// `routing` gives for each.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        mut routing: impl FnMut(&PeerId) -> Vec<Multiaddr>,
        out: &mut Actions,
    ) {
        self.check_at.retain(|peer, at| {
            if *at > now {
                return true;
            }
            tracing::debug!(%peer, "checking a peer whose connection broke");
            out.push(Action::Dial {
                peer: *peer,
                addresses: routing(peer),
            });
            false
        });
    }

    /// Forgets everything about `peer`.
    fn forget(&mut self, peer: &PeerId) {
        self.heard.remove(peer);
        self.break_checked.remove(peer);
        self.check_at.remove(peer);
    }

    /// A dial of `peer` failed with `error`. Returns whether it leaves the
    /// routing table for it.
    pub(crate) fn on_dial_failed(
        &mut self,
        peer: PeerId,
        error: &DialFailure,
        out: &mut Actions,
    ) -> bool {
        if !no_relay_holds(error) {
            return false;
        }
        tracing::debug!(%peer, "no relay holds a reservation for it: leaves the routing table");
        self.forget(&peer);
        out.push(Action::RemovePeer {
            peer,
            reason: PeerGone::NoReservation,
        });
        true
    }

    /// This node's relay server no longer holds a reservation for `peer`
    /// (its connection closed, or it did not renew): the circuit addresses
    /// through this node in `routing` are dead. Removes them, and the peer
    /// when they were all it had.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn on_reservation_ended(
        &mut self,
        peer: PeerId,
        local: PeerId,
        routing: Vec<Multiaddr>,
        out: &mut Actions,
    ) {
        let (through_us, elsewhere): (Vec<_>, Vec<_>) = routing
            .into_iter()
            .partition(|address| relay_of(address) == Some(local));
        if through_us.is_empty() {
            return;
        }
        if elsewhere.is_empty() {
            tracing::debug!(%peer, "its reservation here ended: leaves the routing table");
            self.forget(&peer);
            out.push(Action::RemovePeer {
                peer,
                reason: PeerGone::ReservationEnded,
            });
        } else {
            for address in through_us {
                out.push(Action::RemoveAddress { peer, address });
            }
        }
    }

    /// Looks through the routing table's `entries` if due, and dials the
    /// relayed peers nothing was heard from for the interval.
    pub(crate) fn sweep(
        &mut self,
        now: Instant,
        entries: impl IntoIterator<Item = RoutingEntry>,
        out: &mut Actions,
    ) {
        if !self.sweep_due(now) {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        let mut heard = HashMap::with_capacity(self.heard.len());
        let mut in_table = Vec::new();
        for RoutingEntry {
            peer_id: peer,
            addresses,
            connected,
        } in entries
        {
            in_table.push(peer);
            if !only_relayed(&addresses) {
                continue;
            }
            // A peer new to the table was just heard from.
            let mut last = self.heard.get(&peer).copied().unwrap_or(now);
            if connected {
                last = now;
            } else if now.saturating_duration_since(last) >= self.interval {
                tracing::debug!(%peer, "checking a relayed peer not heard from");
                out.push(Action::Dial { peer, addresses });
                last = now;
            }
            heard.insert(peer, last);
        }
        self.break_checked.retain(|peer, _| in_table.contains(peer));
        self.check_at.retain(|peer, _| in_table.contains(peer));
        self.heard = heard;
    }
}

/// Whether a peer's addresses are all circuits (and there is one).
fn only_relayed(addresses: &[Multiaddr]) -> bool {
    !addresses.is_empty()
        && addresses
            .iter()
            .all(|address| address.iter().any(|p| p == Protocol::P2pCircuit))
}

/// Whether every address of a failed dial was a relay answering that it
/// holds no reservation for the peer.
fn no_relay_holds(error: &DialFailure) -> bool {
    let DialError::Transport(attempts) = error.as_ref() else {
        return false;
    };
    !attempts.is_empty()
        && attempts.iter().all(|(_, error)| match error {
            TransportError::Other(error) => says_no_reservation(error),
            TransportError::MultiaddrNotSupported(_) => false,
        })
}

/// Whether a transport's error carries a relay's "no reservation" answer.
fn says_no_reservation(error: &io::Error) -> bool {
    matches!(
        find_cause::<ConnectError>(error),
        Some(ConnectError::NoReservation)
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use libp2p::relay::client::transport::Error as RelayTransportError;

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(600);

    fn circuit(relay: u8) -> Multiaddr {
        circuit_through(relay, PeerId::random())
    }

    fn circuit_through(relay: u8, peer: PeerId) -> Multiaddr {
        format!("/ip4/192.0.2.{relay}/tcp/4001/p2p/{peer}/p2p-circuit")
            .parse()
            .unwrap()
    }

    fn direct() -> Multiaddr {
        "/ip4/192.0.2.9/tcp/4001".parse().unwrap()
    }

    /// A dial failure as the transports build it: the relay's answer inside
    /// the relay transport's error, inside an `io::Error`.
    fn relay_answered(answer: ConnectError) -> io::Error {
        io::Error::other(RelayTransportError::Connect(answer))
    }

    fn failed(errors: Vec<io::Error>) -> DialFailure {
        Arc::new(DialError::Transport(
            errors
                .into_iter()
                .enumerate()
                .map(|(i, error)| (circuit(i as u8), TransportError::Other(error)))
                .collect(),
        ))
    }

    fn entry(peer_id: PeerId, addresses: Vec<Multiaddr>, connected: bool) -> RoutingEntry {
        RoutingEntry {
            peer_id,
            addresses,
            connected,
        }
    }

    fn dialed(actions: &mut Actions) -> Vec<PeerId> {
        actions
            .drain()
            .into_iter()
            .filter_map(|action| match action {
                Action::Dial { peer, .. } => Some(peer),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_peer_no_relay_holds_leaves_at_once() {
        let mut peers = Departures::new(INTERVAL, Instant::now());
        let mut out = Actions::default();
        let peer = PeerId::random();
        let gone = failed(vec![
            relay_answered(ConnectError::NoReservation),
            // Wrapped once more, as the boxed transport stack does.
            io::Error::other(relay_answered(ConnectError::NoReservation)),
        ]);
        assert!(peers.on_dial_failed(peer, &gone, &mut out));
        assert!(
            matches!(out.drain()[..], [Action::RemovePeer { peer: p, reason: PeerGone::NoReservation }] if p == peer)
        );
    }

    #[test]
    fn a_relay_that_cannot_answer_or_holds_it_elsewhere_removes_nothing() {
        let mut peers = Departures::new(INTERVAL, Instant::now());
        let mut out = Actions::default();
        let peer = PeerId::random();
        let one_relay_unreachable = failed(vec![
            relay_answered(ConnectError::NoReservation),
            io::Error::from(io::ErrorKind::ConnectionRefused),
        ]);
        let busy = failed(vec![relay_answered(ConnectError::ResourceLimitExceeded)]);
        for error in [one_relay_unreachable, busy, Arc::new(DialError::Aborted)] {
            assert!(!peers.on_dial_failed(peer, &error, &mut out));
        }
        assert!(out.drain().is_empty());
    }

    #[test]
    fn a_broken_connection_to_a_peer_of_the_table_is_checked_after_the_grace_once_per_interval() {
        let start = Instant::now();
        let mut peers = Departures::new(INTERVAL, start);
        let mut out = Actions::default();
        let tab = PeerId::random();
        peers.on_disconnected(tab, false, &[circuit(1)], start);
        peers.on_disconnected(PeerId::random(), true, &[], start);
        peers.poll(start + INTERVAL, |_| vec![circuit(1)], &mut out);
        assert!(
            dialed(&mut out).is_empty(),
            "idle closes and peers not in the table"
        );

        let native = PeerId::random();
        peers.on_disconnected(native, true, &[direct()], start);
        peers.poll(start + GRACE, |_| vec![direct()], &mut out);
        assert_eq!(dialed(&mut out), vec![native], "a crash looks like this");

        peers.sweep(start, Vec::new(), &mut out);
        peers.on_disconnected(tab, true, &[circuit(1), circuit(2)], start);
        assert_eq!(peers.next_deadline(), start + GRACE);
        peers.poll(start + GRACE / 2, |_| vec![circuit(1)], &mut out);
        assert!(dialed(&mut out).is_empty(), "its relay may not know yet");
        peers.poll(start + GRACE, |_| vec![circuit(1)], &mut out);
        assert_eq!(dialed(&mut out), vec![tab]);

        // It was there and broke again (a tab closing an idle connection):
        // not checked again within the interval.
        peers.on_connected(&tab, start + GRACE);
        peers.on_disconnected(tab, true, &[circuit(1)], start + INTERVAL / 2);
        peers.poll(start + INTERVAL, |_| vec![circuit(1)], &mut out);
        assert!(dialed(&mut out).is_empty());
        peers.on_disconnected(tab, true, &[circuit(1)], start + INTERVAL);
        peers.poll(start + INTERVAL + GRACE, |_| vec![circuit(1)], &mut out);
        assert_eq!(dialed(&mut out), vec![tab]);
    }

    #[test]
    fn a_reconnection_within_the_grace_cancels_the_check() {
        let start = Instant::now();
        let mut peers = Departures::new(INTERVAL, start);
        let mut out = Actions::default();
        let tab = PeerId::random();
        peers.on_disconnected(tab, true, &[circuit(1)], start);
        peers.on_connected(&tab, start + GRACE / 2);
        peers.poll(start + GRACE, |_| vec![circuit(1)], &mut out);
        assert!(dialed(&mut out).is_empty());
    }

    #[test]
    fn a_relayed_peer_not_heard_from_for_the_interval_is_checked_once_per_interval() {
        let start = Instant::now();
        let mut peers = Departures::new(INTERVAL, start);
        let mut out = Actions::default();
        let (quiet, connected, native) = (PeerId::random(), PeerId::random(), PeerId::random());
        let table = |connected_now: bool| {
            vec![
                entry(quiet, vec![circuit(1)], false),
                entry(connected, vec![circuit(2)], connected_now),
                entry(native, vec![direct()], false),
            ]
        };
        peers.sweep(start, table(true), &mut out);
        assert!(
            dialed(&mut out).is_empty(),
            "peers new to the table were just heard from"
        );
        assert_eq!(peers.next_deadline(), start + SWEEP_EVERY);

        // Not due before the next sweep, whatever the time.
        peers.sweep(start + SWEEP_EVERY / 2, table(false), &mut out);
        assert!(dialed(&mut out).is_empty());

        // `connected` was connected until the interval's middle.
        let middle = start + INTERVAL / 2;
        peers.sweep(middle, table(true), &mut out);
        let due = start + INTERVAL;
        peers.sweep(due, table(false), &mut out);
        assert_eq!(dialed(&mut out), vec![quiet]);
        peers.sweep(due + SWEEP_EVERY, table(false), &mut out);
        assert!(dialed(&mut out).is_empty(), "checked once per interval");
        peers.sweep(middle + INTERVAL, table(false), &mut out);
        assert_eq!(dialed(&mut out), vec![connected]);

        // A connection counts as hearing from it.
        peers.on_connected(&quiet, due + INTERVAL - SWEEP_EVERY);
        peers.sweep(due + INTERVAL, table(false), &mut out);
        assert!(dialed(&mut out).is_empty());
    }

    #[test]
    fn a_relay_forgets_the_circuits_through_it_whose_reservation_ended() {
        let mut peers = Departures::new(INTERVAL, Instant::now());
        let mut out = Actions::default();
        let (local, other_relay) = (PeerId::random(), PeerId::random());
        let (only_here, also_elsewhere) = (PeerId::random(), PeerId::random());

        peers.on_reservation_ended(only_here, local, vec![circuit_through(1, local)], &mut out);
        assert!(
            matches!(out.drain()[..], [Action::RemovePeer { peer: p, reason: PeerGone::ReservationEnded }] if p == only_here)
        );

        let here = circuit_through(1, local);
        let there = circuit_through(2, other_relay);
        peers.on_reservation_ended(
            also_elsewhere,
            local,
            vec![here.clone(), there.clone()],
            &mut out,
        );
        assert!(matches!(
            &out.drain()[..],
            [Action::RemoveAddress { peer, address }] if *peer == also_elsewhere && *address == here
        ));

        // Not through this node: nothing to forget.
        peers.on_reservation_ended(PeerId::random(), local, vec![there, direct()], &mut out);
        assert!(out.drain().is_empty());
    }

    #[test]
    fn peers_that_left_the_table_are_forgotten() {
        let start = Instant::now();
        let mut peers = Departures::new(INTERVAL, start);
        let mut out = Actions::default();
        let tab = PeerId::random();
        peers.sweep(start, vec![entry(tab, vec![circuit(1)], false)], &mut out);
        assert_eq!(peers.heard.len(), 1);
        peers.sweep(start + SWEEP_EVERY, Vec::new(), &mut out);
        assert!(peers.heard.is_empty());
        // Back in the table much later: new, so not checked at once.
        peers.sweep(
            start + INTERVAL * 3,
            vec![entry(tab, vec![circuit(1)], false)],
            &mut out,
        );
        assert!(dialed(&mut out).is_empty());

        // A native peer's checked break is kept while it is in the table.
        let native = PeerId::random();
        let later = start + INTERVAL * 4;
        peers.on_disconnected(native, true, &[direct()], later);
        peers.sweep(later, vec![entry(native, vec![direct()], false)], &mut out);
        assert!(peers.break_checked.contains_key(&native));
        peers.sweep(later + SWEEP_EVERY, Vec::new(), &mut out);
        assert!(peers.break_checked.is_empty() && peers.check_at.is_empty());
    }
}
