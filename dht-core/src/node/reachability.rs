//! How peers reach this node, and what the node does about it.
//!
//! A node told it is reachable ([`ServerMode::Always`]) is public from the
//! start; one that serves through relays ([`ServerMode::Relayed`]) is
//! relayed while a reservation holds. A node that finds out
//! ([`ServerMode::Auto`]) asks peers to dial it back at the addresses they
//! see it at (AutoNAT v2): one that worked makes it public (Kademlia's auto
//! mode then serves at it); one that failed, with none confirmed, turns its
//! relays on (it serves through them once a reservation holds, and stays a
//! client until then). A later success makes it public even so: the relays
//! take no new reservations, the ones held are kept.
//!
//! Direct connections a hole punch (DCUtR) made are tracked per
//! connection, so that the report can say which peers are reached directly
//! although one side is behind a NAT.

use std::fmt;

use libp2p::{Multiaddr, PeerId, swarm::ConnectionId};
use web_time::Instant;

use super::{action::Actions, relays::Relays};
use crate::{config::ServerMode, event::Event, native::MAX_CANDIDATES};

/// How peers reach a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum Reachability {
    /// At its own addresses: the node was configured so
    /// ([`ServerMode::Always`]), or a peer dialed it back at one.
    Public,
    /// Only through relays: a reservation holds and the node serves at
    /// its `/p2p-circuit` addresses.
    Relayed,
    /// Not at all for now: it serves nobody, or a dial-back test failed and
    /// no relay reservation holds yet.
    Private,
    /// Not known yet: no dial-back test has answered.
    Unknown,
}

impl fmt::Display for Reachability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Relayed => "relayed",
            Self::Private => "private",
            Self::Unknown => "unknown",
        })
    }
}

/// What this node knows of its own reachability.
#[derive(Debug)]
pub(crate) struct ReachabilityState {
    mode: ServerMode,
    /// Addresses a peer dialed this node back at (at most
    /// [`MAX_CANDIDATES`]: only that many are ever tested).
    confirmed: Vec<Multiaddr>,
    /// Whether a dial-back test failed.
    failed: bool,
    /// The reachability last announced.
    announced: Reachability,
    /// Direct connections made by a hole punch, still open (bounded by the
    /// connection limits).
    hole_punched: Vec<(PeerId, ConnectionId)>,
}

impl ReachabilityState {
    pub(crate) fn new(mode: ServerMode) -> Self {
        let mut state = Self {
            mode,
            confirmed: Vec::new(),
            failed: false,
            announced: Reachability::Unknown,
            hole_punched: Vec::new(),
        };
        state.announced = state.current(false);
        state
    }

    /// How peers reach this node now; `relayed`: a relay reservation holds.
    pub(crate) fn current(&self, relayed: bool) -> Reachability {
        match self.mode {
            ServerMode::Always => Reachability::Public,
            ServerMode::Auto if !self.confirmed.is_empty() => Reachability::Public,
            _ if relayed => Reachability::Relayed,
            ServerMode::Auto if !self.failed => Reachability::Unknown,
            _ => Reachability::Private,
        }
    }

    /// A peer dialed this node back at `address` (`reachable`), or could
    /// not.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn on_tested(
        &mut self,
        address: Multiaddr,
        reachable: bool,
        tester: PeerId,
        relays: &mut Relays,
        now: Instant,
        out: &mut Actions,
    ) {
        tracing::info!(%address, %tester, reachable, "dial-back test");
        out.emit(Event::AddressTested {
            address: address.clone(),
            reachable,
            tester,
        });
        if reachable {
            if !self.confirmed.contains(&address) && self.confirmed.len() < MAX_CANDIDATES {
                self.confirmed.push(address);
            }
            relays.activate(false, now, out);
        } else {
            self.failed = true;
            if self.confirmed.is_empty() {
                relays.activate(true, now, out);
            }
        }
    }

    /// A confirmed address of this node expired (its listener closed, or
    /// the swarm dropped it).
    pub(crate) fn on_expired(
        &mut self,
        address: &Multiaddr,
        relays: &mut Relays,
        now: Instant,
        out: &mut Actions,
    ) {
        let before = self.confirmed.len();
        self.confirmed.retain(|a| a != address);
        if before != self.confirmed.len() && self.confirmed.is_empty() && self.failed {
            relays.activate(true, now, out);
        }
    }

    /// A hole punch to `peer` ended: `Ok` with the direct connection it
    /// made, or why it failed.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn on_hole_punch(
        &mut self,
        peer: PeerId,
        result: Result<ConnectionId, String>,
        out: &mut Actions,
    ) {
        match result {
            Ok(connection) => {
                tracing::info!(%peer, "hole punched: connected directly");
                self.hole_punched.push((peer, connection));
                out.emit(Event::HolePunched { peer });
            }
            Err(reason) => {
                tracing::info!(%peer, %reason, "hole punch failed: the link stays relayed");
                out.emit(Event::HolePunchFailed { peer, reason });
            }
        }
    }

    /// A connection closed.
    pub(crate) fn on_connection_closed(&mut self, connection: ConnectionId) {
        self.hole_punched.retain(|(_, c)| *c != connection);
    }

    /// Peers with an open direct connection that a hole punch made.
    pub(crate) fn hole_punched(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = self.hole_punched.iter().map(|(p, _)| *p).collect();
        peers.sort();
        peers.dedup();
        peers
    }

    /// Announces the reachability if it changed.
    pub(crate) fn update(&mut self, relayed: bool, out: &mut Actions) {
        let now = self.current(relayed);
        if now != self.announced {
            tracing::info!(reachability = %now, "reachability changed");
            self.announced = now;
            out.emit(Event::ReachabilityChanged { reachability: now });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::action::Action;

    fn address(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    fn changes(out: &mut Actions) -> Vec<Reachability> {
        out.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::Emit(Event::ReachabilityChanged { reachability }) => Some(reachability),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_node_told_it_is_reachable_is_public_and_a_client_only_node_private() {
        assert_eq!(
            ReachabilityState::new(ServerMode::Always).current(false),
            Reachability::Public
        );
        assert_eq!(
            ReachabilityState::new(ServerMode::Never).current(false),
            Reachability::Private
        );
        let relayed = ReachabilityState::new(ServerMode::Relayed);
        assert_eq!(relayed.current(false), Reachability::Private);
        assert_eq!(relayed.current(true), Reachability::Relayed);
    }

    #[test]
    fn a_failed_dial_back_turns_the_relays_on_and_a_success_makes_the_node_public() {
        let now = Instant::now();
        let mut out = Actions::default();
        let mut relays = Relays::standby(2);
        let mut state = ReachabilityState::new(ServerMode::Auto);
        assert_eq!(state.current(false), Reachability::Unknown);

        state.on_tested(
            address("/ip4/198.51.100.7/tcp/4001"),
            false,
            PeerId::random(),
            &mut relays,
            now,
            &mut out,
        );
        assert!(relays.is_active());
        state.update(false, &mut out);
        assert_eq!(changes(&mut out), [Reachability::Private]);
        state.update(true, &mut out);
        assert_eq!(changes(&mut out), [Reachability::Relayed]);

        let public = address("/ip4/198.51.100.7/tcp/4002");
        state.on_tested(
            public.clone(),
            true,
            PeerId::random(),
            &mut relays,
            now,
            &mut out,
        );
        assert!(!relays.is_active(), "no new reservations once reachable");
        state.update(true, &mut out);
        assert_eq!(changes(&mut out), [Reachability::Public]);

        // The confirmed address goes away: back to the relays.
        state.on_expired(&public, &mut relays, now, &mut out);
        assert!(relays.is_active());
        state.update(false, &mut out);
        assert_eq!(changes(&mut out), [Reachability::Private]);
    }

    #[test]
    fn a_success_first_leaves_the_relays_off() {
        let now = Instant::now();
        let mut out = Actions::default();
        let mut relays = Relays::standby(2);
        let mut state = ReachabilityState::new(ServerMode::Auto);
        let tester = PeerId::random();
        state.on_tested(
            address("/ip4/198.51.100.7/tcp/4001"),
            true,
            tester,
            &mut relays,
            now,
            &mut out,
        );
        // A later failure of another address does not undo it.
        state.on_tested(
            address("/ip4/198.51.100.7/tcp/4002"),
            false,
            tester,
            &mut relays,
            now,
            &mut out,
        );
        assert!(!relays.is_active());
        assert_eq!(state.current(false), Reachability::Public);
    }

    #[test]
    fn a_hole_punched_peer_is_reported_while_its_direct_connection_is_open() {
        let mut out = Actions::default();
        let mut state = ReachabilityState::new(ServerMode::Auto);
        let peer = PeerId::random();
        let connection = ConnectionId::new_unchecked(7);
        state.on_hole_punch(PeerId::random(), Err("no route".into()), &mut out);
        state.on_hole_punch(peer, Ok(connection), &mut out);
        assert_eq!(state.hole_punched(), [peer]);
        state.on_connection_closed(ConnectionId::new_unchecked(8));
        assert_eq!(state.hole_punched(), [peer]);
        state.on_connection_closed(connection);
        assert!(state.hole_punched().is_empty());
    }
}
