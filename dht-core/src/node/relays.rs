//! Serving through relays: a node nobody can dial
//! ([`crate::ServerMode::Relayed`]) takes reservations on relays it dialed
//! directly, announces the `/p2p-circuit` addresses, and answers DHT
//! requests (Kademlia server mode) while at least one reservation holds.
//! A node that finds out its reachability ([`crate::ServerMode::Auto`])
//! keeps the relays on standby until a dial-back test failed; Kademlia's
//! own mode then follows its external addresses, circuits included.
//!
//! A relay is any peer this node dialed (not through a relay) whose
//! identify lists the circuit relay v2 hop protocol. Up to `wanted` relays
//! are held at once, so that losing one does not unplug the node; a relay
//! that refused or failed a reservation is asked again only after
//! [`RETRY_DELAY`], and others are tried meanwhile; one whose connection
//! closed is asked again as soon as it is reconnected. libp2p's relay client
//! renews a held reservation on its own before it expires.

use std::{collections::HashMap, time::Duration};

use libp2p::{
    Multiaddr, PeerId,
    core::{ConnectedPoint, transport::ListenerId},
    kad::Mode,
    multiaddr::Protocol,
};
use web_time::Instant;

use super::{
    action::{Action, Actions},
    addresses::strip_p2p,
};
use crate::event::{Event, RelayLost};

/// How long a relay that refused or failed this node's reservation is left
/// alone before it is asked again.
pub(crate) const RETRY_DELAY: Duration = Duration::from_secs(30);

/// Relays remembered as candidates at most; the first found are kept.
const MAX_CANDIDATES: usize = 16;

/// Circuit addresses announced per reservation at most: a relay names its
/// own addresses in the reservation, and a lying one could name thousands.
const MAX_ADDRESSES_PER_RESERVATION: usize = 8;

/// The reservations of a node and the relays it may take them on.
#[derive(Debug)]
pub(crate) struct Relays {
    /// Relays to hold at once; 0 for nodes that do not serve through relays.
    wanted: usize,
    /// Peers this node dialed directly, at the address that worked.
    dialed: HashMap<PeerId, Multiaddr>,
    /// Relays to choose from, in the order found.
    candidates: Vec<PeerId>,
    reservations: HashMap<PeerId, Reservation>,
    /// Relays not to ask again before the time given.
    resting: HashMap<PeerId, Instant>,
    serving: bool,
    /// Whether reservations are taken now (a node on standby only gathers
    /// candidates).
    active: bool,
    /// Whether the reservations decide Kademlia's mode (else Kademlia's
    /// auto mode does, from the external addresses).
    sets_mode: bool,
}

#[derive(Debug)]
struct Reservation {
    /// The listener the swarm opened for it, once it did.
    listener: Option<ListenerId>,
    held: bool,
    /// The circuit addresses announced for it.
    addresses: Vec<Multiaddr>,
}

impl Relays {
    /// A node that holds reservations on up to `wanted` relays (0: none).
    pub(crate) fn new(wanted: usize) -> Self {
        Self {
            wanted,
            dialed: HashMap::new(),
            candidates: Vec::new(),
            reservations: HashMap::new(),
            resting: HashMap::new(),
            serving: false,
            active: true,
            sets_mode: true,
        }
    }

    /// A node that may need reservations on up to `wanted` relays: it takes
    /// them once [`activate`](Self::activate)d, and leaves Kademlia's mode
    /// to Kademlia.
    pub(crate) fn standby(wanted: usize) -> Self {
        Self {
            active: false,
            sets_mode: false,
            ..Self::new(wanted)
        }
    }

    /// Takes reservations from now on (or, `false`, no new ones: those
    /// held are kept and renewed).
    pub(crate) fn activate(&mut self, active: bool, now: Instant, out: &mut Actions) {
        self.active = active;
        self.fill(now, out);
    }

    /// Whether reservations are taken now.
    #[cfg(test)]
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// Whether at least one reservation holds.
    pub(crate) fn serving(&self) -> bool {
        self.serving
    }

    /// The relays holding a reservation for this node.
    pub(crate) fn held(&self) -> Vec<PeerId> {
        let mut held: Vec<PeerId> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.held)
            .map(|(peer, _)| *peer)
            .collect();
        held.sort();
        held
    }

    /// A connection to `peer` opened: remember the address if this node
    /// dialed it directly, the only kind of address a reservation can use.
    pub(crate) fn on_connected(&mut self, peer: PeerId, endpoint: &ConnectedPoint) {
        if self.wanted == 0 {
            return;
        }
        if let ConnectedPoint::Dialer { address, .. } = endpoint
            && !endpoint.is_relayed()
        {
            self.dialed.insert(peer, strip_p2p(address));
        }
    }

    /// The last connection to `peer` closed. A reservation on it ends with
    /// its listener ([`on_listener_closed`](Self::on_listener_closed)).
    pub(crate) fn on_disconnected(&mut self, peer: &PeerId) {
        self.dialed.remove(peer);
        self.candidates.retain(|c| c != peer);
    }

    /// `peer` said (identify) whether it relays. A relay this node dialed
    /// becomes a candidate and, if a reservation is missing, gets asked.
    pub(crate) fn on_identify(
        &mut self,
        peer: PeerId,
        relays: bool,
        now: Instant,
        out: &mut Actions,
    ) {
        if self.wanted == 0 || !relays || !self.dialed.contains_key(&peer) {
            return;
        }
        if !self.candidates.contains(&peer) && self.candidates.len() < MAX_CANDIDATES {
            self.candidates.push(peer);
        }
        self.fill(now, out);
    }

    /// The swarm opened `listener` for the reservation on `relay` (or could
    /// not: `None`).
    pub(crate) fn on_listen_started(
        &mut self,
        relay: PeerId,
        listener: Option<ListenerId>,
        now: Instant,
        out: &mut Actions,
    ) {
        match listener {
            Some(id) => {
                if let Some(reservation) = self.reservations.get_mut(&relay) {
                    reservation.listener = Some(id);
                }
            }
            None => self.lose(
                relay,
                RelayLost::Failed("could not listen".into()),
                now,
                out,
            ),
        }
    }

    /// `relay` accepted (or renewed) this node's reservation.
    pub(crate) fn on_accepted(&mut self, relay: PeerId, out: &mut Actions) {
        let Some(reservation) = self.reservations.get_mut(&relay) else {
            return;
        };
        if reservation.held {
            return;
        }
        reservation.held = true;
        out.emit(Event::RelayReserved { relay });
        if !self.serving {
            self.serving = true;
            if self.sets_mode {
                out.push(Action::SetKadMode(Mode::Server));
                out.emit(Event::ServingChanged { serving: true });
            }
        }
    }

    /// The listener of a reservation reports an address: announce it.
    /// Returns whether `listener` is a reservation's.
    pub(crate) fn on_new_address(
        &mut self,
        listener: ListenerId,
        address: &Multiaddr,
        out: &mut Actions,
    ) -> bool {
        let Some(reservation) = self
            .reservations
            .values_mut()
            .find(|r| r.listener == Some(listener))
        else {
            return false;
        };
        if !reservation.addresses.contains(address)
            && reservation.addresses.len() < MAX_ADDRESSES_PER_RESERVATION
        {
            reservation.addresses.push(address.clone());
            out.push(Action::AddExternalAddress(address.clone()));
        }
        true
    }

    /// A listener closed: if it was a reservation's, the reservation is gone.
    pub(crate) fn on_listener_closed(
        &mut self,
        listener: ListenerId,
        reason: RelayLost,
        now: Instant,
        out: &mut Actions,
    ) {
        let relay = self
            .reservations
            .iter()
            .find(|(_, r)| r.listener == Some(listener))
            .map(|(peer, _)| *peer);
        if let Some(relay) = relay {
            self.lose(relay, reason, now, out);
        }
    }

    /// Time passed: relays that rested long enough may be asked again.
    pub(crate) fn on_tick(&mut self, now: Instant, out: &mut Actions) {
        self.resting.retain(|_, until| *until > now);
        self.fill(now, out);
    }

    /// When a resting relay may be asked again, if any is resting while a
    /// reservation is missing.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if !self.active || self.reservations.len() >= self.wanted {
            return None;
        }
        self.resting.values().min().copied()
    }

    fn lose(&mut self, relay: PeerId, reason: RelayLost, now: Instant, out: &mut Actions) {
        let Some(reservation) = self.reservations.remove(&relay) else {
            return;
        };
        for address in reservation.addresses {
            out.push(Action::RemoveExternalAddress(address));
        }
        // A relay that went away is asked again as soon as it is back (its
        // identify says so); one that refused or failed is left to rest.
        if !matches!(reason, RelayLost::Disconnected) {
            self.resting.insert(relay, now + RETRY_DELAY);
        }
        out.emit(Event::RelayReservationLost { relay, reason });
        if self.serving && !self.reservations.values().any(|r| r.held) {
            self.serving = false;
            if self.sets_mode {
                out.push(Action::SetKadMode(Mode::Client));
                out.emit(Event::ServingChanged { serving: false });
            }
        }
        self.fill(now, out);
    }

    /// Asks candidates for reservations until `wanted` are held or asked.
    fn fill(&mut self, now: Instant, out: &mut Actions) {
        if !self.active {
            return;
        }
        for relay in &self.candidates {
            if self.reservations.len() >= self.wanted {
                return;
            }
            let resting = self.resting.get(relay).is_some_and(|until| *until > now);
            if resting || self.reservations.contains_key(relay) {
                continue;
            }
            let Some(address) = self.dialed.get(relay) else {
                continue;
            };
            let circuit = address
                .clone()
                .with(Protocol::P2p(*relay))
                .with(Protocol::P2pCircuit);
            self.reservations.insert(
                *relay,
                Reservation {
                    listener: None,
                    held: false,
                    addresses: Vec::new(),
                },
            );
            out.push(Action::ListenVia {
                relay: *relay,
                address: circuit,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use libp2p::core::{Endpoint, transport::PortUse};

    use super::*;

    fn dialed(address: &str) -> ConnectedPoint {
        ConnectedPoint::Dialer {
            address: address.parse().unwrap(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::New,
        }
    }

    /// The reservations the actions ask for, as (relay, address).
    fn asked(out: &mut Actions) -> Vec<(PeerId, Multiaddr)> {
        out.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::ListenVia { relay, address } => Some((relay, address)),
                _ => None,
            })
            .collect()
    }

    fn modes(out: &mut Actions) -> Vec<Mode> {
        out.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::SetKadMode(mode) => Some(mode),
                _ => None,
            })
            .collect()
    }

    /// A node wanting `wanted` relays, connected to `n` relays it dialed.
    fn with_relays(wanted: usize, n: usize, now: Instant) -> (Relays, Vec<PeerId>, Actions) {
        let mut relays = Relays::new(wanted);
        let mut out = Actions::default();
        let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().enumerate() {
            relays.on_connected(*peer, &dialed(&format!("/ip4/10.0.0.{i}/tcp/4001/ws")));
            relays.on_identify(*peer, true, now, &mut out);
        }
        (relays, peers, out)
    }

    #[test]
    fn a_node_reserves_on_as_many_relays_as_it_wants_and_serves_once_one_accepts() {
        let now = Instant::now();
        let (mut relays, peers, mut out) = with_relays(2, 3, now);
        let asked = asked(&mut out);
        assert_eq!(asked.len(), 2, "only two of three relays are asked");
        assert_eq!(
            asked[0].1,
            format!("/ip4/10.0.0.0/tcp/4001/ws/p2p/{}/p2p-circuit", peers[0])
                .parse::<Multiaddr>()
                .unwrap()
        );
        assert!(!relays.serving(), "asking is not holding");

        relays.on_listen_started(peers[0], Some(ListenerId::next()), now, &mut out);
        relays.on_accepted(peers[0], &mut out);
        assert!(relays.serving());
        let events = out.take_events();
        assert!(matches!(events[0], Event::RelayReserved { relay } if relay == peers[0]));
        assert!(matches!(events[1], Event::ServingChanged { serving: true }));
        assert_eq!(modes(&mut out), [Mode::Server]);

        relays.on_accepted(peers[1], &mut out);
        assert!(
            out.take_events()
                .iter()
                .all(|e| !matches!(e, Event::ServingChanged { .. }))
        );
        assert_eq!(relays.held(), {
            let mut both = vec![peers[0], peers[1]];
            both.sort();
            both
        });
    }

    #[test]
    fn only_relays_this_node_dialed_directly_are_candidates() {
        let now = Instant::now();
        let mut relays = Relays::new(2);
        let mut out = Actions::default();
        let inbound = PeerId::random();
        relays.on_connected(
            inbound,
            &ConnectedPoint::Listener {
                local_addr: "/ip4/10.0.0.1/tcp/1".parse().unwrap(),
                send_back_addr: "/ip4/10.0.0.2/tcp/2".parse().unwrap(),
            },
        );
        relays.on_identify(inbound, true, now, &mut out);
        let through_relay = PeerId::random();
        relays.on_connected(
            through_relay,
            &dialed(&format!(
                "/ip4/10.0.0.3/tcp/1/p2p/{}/p2p-circuit",
                PeerId::random()
            )),
        );
        relays.on_identify(through_relay, true, now, &mut out);
        let not_a_relay = PeerId::random();
        relays.on_connected(not_a_relay, &dialed("/ip4/10.0.0.4/tcp/1"));
        relays.on_identify(not_a_relay, false, now, &mut out);
        assert!(asked(&mut out).is_empty());
    }

    #[test]
    fn losing_the_last_reservation_stops_serving_and_tries_another_relay() {
        let now = Instant::now();
        let (mut relays, peers, mut out) = with_relays(1, 2, now);
        assert_eq!(asked(&mut out)[0].0, peers[0]);
        let listener = ListenerId::next();
        relays.on_listen_started(peers[0], Some(listener), now, &mut out);
        relays.on_accepted(peers[0], &mut out);
        let circuit: Multiaddr = format!("/ip4/10.0.0.0/tcp/4001/p2p/{}/p2p-circuit", peers[0])
            .parse()
            .unwrap();
        assert!(relays.on_new_address(listener, &circuit, &mut out));
        out.drain();

        relays.on_disconnected(&peers[0]);
        relays.on_listener_closed(listener, RelayLost::Disconnected, now, &mut out);
        let actions = out.drain();
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::RemoveExternalAddress(a) if *a == circuit))
        );
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::SetKadMode(Mode::Client)))
        );
        assert!(actions.iter().any(|a| matches!(
            a,
            Action::Emit(Event::RelayReservationLost {
                reason: RelayLost::Disconnected,
                ..
            })
        )));
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::ListenVia { relay, .. } if *relay == peers[1])),
            "the other relay is asked at once"
        );
        assert!(!relays.serving());
    }

    #[test]
    fn a_relay_that_refused_is_asked_again_only_after_resting() {
        let now = Instant::now();
        let (mut relays, peers, mut out) = with_relays(1, 1, now);
        let listener = ListenerId::next();
        relays.on_listen_started(peers[0], Some(listener), now, &mut out);
        out.drain();
        relays.on_listener_closed(listener, RelayLost::Full, now, &mut out);
        assert!(asked(&mut out).is_empty(), "not asked again at once");
        assert_eq!(relays.next_deadline(), Some(now + RETRY_DELAY));

        relays.on_tick(now + RETRY_DELAY / 2, &mut out);
        assert!(asked(&mut out).is_empty());
        relays.on_tick(now + RETRY_DELAY, &mut out);
        assert_eq!(asked(&mut out).len(), 1);
        assert_eq!(
            relays.next_deadline(),
            None,
            "nothing missing, nothing to wake for"
        );
    }

    #[test]
    fn a_relay_that_went_away_is_asked_again_as_soon_as_it_is_back() {
        let now = Instant::now();
        let (mut relays, peers, mut out) = with_relays(1, 1, now);
        let listener = ListenerId::next();
        relays.on_listen_started(peers[0], Some(listener), now, &mut out);
        relays.on_accepted(peers[0], &mut out);
        relays.on_disconnected(&peers[0]);
        relays.on_listener_closed(listener, RelayLost::Disconnected, now, &mut out);
        out.drain();
        relays.on_connected(peers[0], &dialed("/ip4/10.0.0.0/tcp/4001/ws"));
        relays.on_identify(peers[0], true, now, &mut out);
        assert_eq!(asked(&mut out).len(), 1, "no rest after a disconnection");
    }

    #[test]
    fn a_relay_cannot_make_a_node_announce_more_than_a_few_addresses() {
        let now = Instant::now();
        let (mut relays, peers, mut out) = with_relays(1, 1, now);
        let listener = ListenerId::next();
        relays.on_listen_started(peers[0], Some(listener), now, &mut out);
        out.drain();
        for port in 1..=100 {
            let address: Multiaddr =
                format!("/ip4/10.0.0.0/tcp/{port}/p2p/{}/p2p-circuit", peers[0])
                    .parse()
                    .unwrap();
            assert!(relays.on_new_address(listener, &address, &mut out));
        }
        let announced = out
            .drain()
            .into_iter()
            .filter(|a| matches!(a, Action::AddExternalAddress(_)))
            .count();
        assert_eq!(announced, MAX_ADDRESSES_PER_RESERVATION);
    }

    #[test]
    fn a_node_that_wants_no_relays_asks_none() {
        let now = Instant::now();
        let (relays, _, mut out) = with_relays(0, 2, now);
        assert!(asked(&mut out).is_empty());
        assert!(!relays.serving());
    }

    #[test]
    fn a_node_on_standby_asks_no_relay_until_activated_and_leaves_the_mode_to_kademlia() {
        let now = Instant::now();
        let mut out = Actions::default();
        let mut relays = Relays::standby(1);
        let relay = PeerId::random();
        relays.on_connected(relay, &dialed("/ip4/10.0.0.1/tcp/4001"));
        relays.on_identify(relay, true, now, &mut out);
        assert!(asked(&mut out).is_empty(), "on standby");
        assert_eq!(relays.next_deadline(), None);

        relays.activate(true, now, &mut out);
        assert_eq!(asked(&mut out).len(), 1, "the relay found before is asked");
        relays.on_accepted(relay, &mut out);
        assert!(relays.serving());
        assert!(
            modes(&mut out).is_empty(),
            "Kademlia's auto mode follows the circuit addresses"
        );
    }
}
