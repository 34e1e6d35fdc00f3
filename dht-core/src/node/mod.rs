//! The node: a loop that feeds the swarm's events and the handle's commands
//! to the parts below, and carries out what they decide.
//!
//! Each part holds one concern's state and decides without I/O: it takes
//! inputs and `now`, and pushes [`Action`](action::Action)s into a queue this
//! loop drains.
//!
//! | part | concern |
//! |---|---|
//! | [`joining`] | bootstrap peers ([`backoff`]), routing-table refreshes, unreachable peers ([`unreachable`](mod@unreachable)) |
//! | [`departures`] | noticing peers of the routing table that went away (broken connections, closed tabs) |
//! | [`queries`] | Kademlia queries in flight and what their results mean |
//! | [`replication`] | sending held records to the peers that became closest to them |
//! | [`membership`] | this node's namespace registrations |
//! | [`discovery`] | finding a namespace's members |
//! | [`links`] | namespace handshakes, heartbeats and retries |
//! | [`messages`] | which inbound messages between linked peers are taken |
//! | [`relays`] | reservations on relays, for nodes that serve through them |
//! | [`reachability`] | dial-back tests, when to use the relays, hole-punched connections |
//! | [`addresses`] | which addresses are dialable ([`reach`]), enter the routing table, or are announced |
//! | [`snapshot`] | routing table, records, registrations and report for callers |
//! | [`subscribers`] | event subscribers with bounded queues |
//!
//! The loop itself reads in four files: this one (its state, start-up, the
//! run loop, timers), `events.rs` (swarm events into the parts),
//! `commands.rs` (the handle's commands) and `execute.rs` (carrying out the
//! actions: the only code that acts on the swarm).
//!
//! [`Node::run`] is a plain future. It needs no runtime of its own: the host
//! spawns it on whatever executor it has (tokio, wasm-bindgen-futures, a
//! `futures` thread pool) and injects the transport through the swarm.

mod action;
pub(crate) mod addresses;
mod backoff;
mod commands;
mod departures;
mod discovery;
pub(crate) mod diversity;
mod events;
mod execute;
mod joining;
mod kept_peers;
mod links;
mod membership;
mod messages;
mod queries;
mod reach;
mod reachability;

pub use reachability::Reachability;
mod relays;
mod replication;
mod snapshot;
mod subscribers;
mod unreachable;

use std::{
    collections::{HashMap, HashSet},
    future::poll_fn,
    num::NonZeroUsize,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use futures::{FutureExt, StreamExt, channel::mpsc};
use futures_timer::Delay;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm,
    core::transport::ListenerId,
    kad,
    request_response::OutboundRequestId,
    swarm::{ConnectionId, SwarmEvent},
};
use web_time::Instant;

use self::{
    action::{Actions, Purpose},
    addresses::Addresses,
    departures::Departures,
    discovery::Discovery,
    diversity::Diversity,
    joining::Joining,
    kept_peers::KeptPeers,
    links::Links,
    membership::Membership,
    messages::Messages,
    queries::{Outcome, Queries},
    reachability::ReachabilityState,
    relays::Relays,
    replication::Replication,
    subscribers::Subscribers,
};
use crate::{
    behaviour::{Behaviour, BehaviourEvent},
    config::{Config, ServerMode},
    error::{DialError, ListenError},
    handle::{Command, EventStream, NodeHandle, PeerAddresses, Reply},
    namespace::Namespace,
    role::{Role, RoleKind},
};

/// How often expired records and registrations are dropped from memory.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// A DHT node: a swarm running [`Behaviour`], driven by [`Node::run`].
#[allow(missing_debug_implementations)]
pub struct Node {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    settings: Settings,
    joining: Joining,
    queries: Queries,
    membership: Membership,
    discovery: Discovery,
    links: Links,
    addresses: Addresses,
    diversity: Diversity,
    relays: Relays,
    reachability: ReachabilityState,
    departures: Departures,
    replication: Replication,
    kept_peers: KeptPeers,
    relay_server: RelayServerCounts,
    messages: Messages,
    subscribers: Subscribers,
    actions: Actions,
    in_flight: InFlight,
    timer: Timer,
    next_prune: Instant,
    poll_round: u8,
    stopping: Option<Reply<()>>,
}

/// What the loop itself needs from the configuration and the role.
struct Settings {
    local: PeerId,
    role: RoleKind,
    k: NonZeroUsize,
    kad_protocol: StreamProtocol,
    advertise_listen_addresses: bool,
    started: Instant,
}

/// What the swarm owes an answer for, by the id it handed out.
#[derive(Default)]
struct InFlight {
    requests: HashMap<OutboundRequestId, Purpose>,
    dials: HashMap<ConnectionId, (Multiaddr, Reply<Result<PeerId, DialError>>)>,
    listens: HashMap<ListenerId, (Multiaddr, Reply<Result<Multiaddr, ListenError>>)>,
    listeners: HashSet<ListenerId>,
}

/// What this node's relay server holds for others now.
#[derive(Debug, Default)]
pub(crate) struct RelayServerCounts {
    pub(crate) reservations: usize,
    pub(crate) circuits: usize,
}

impl RelayServerCounts {
    fn report(&self) -> crate::report::RelayReport {
        crate::report::RelayReport {
            reservations: self.reservations,
            circuits: self.circuits,
        }
    }

    /// Counts what `event` changed; returns the peer whose reservation
    /// ended, if one did.
    #[cfg(not(target_arch = "wasm32"))]
    fn on(&mut self, event: &libp2p::relay::Event) -> Option<PeerId> {
        use libp2p::relay::Event as Relay;
        match event {
            Relay::ReservationReqAccepted { renewed: false, .. } => self.reservations += 1,
            Relay::ReservationClosed { src_peer_id }
            | Relay::ReservationTimedOut { src_peer_id } => {
                self.reservations = self.reservations.saturating_sub(1);
                return Some(*src_peer_id);
            }
            Relay::CircuitReqAccepted { .. } => self.circuits += 1,
            Relay::CircuitClosed { .. } => self.circuits = self.circuits.saturating_sub(1),
            _ => {}
        }
        None
    }
}

/// The one timer of the loop, armed for the earliest deadline of the parts.
struct Timer {
    delay: Delay,
    at: Instant,
}

/// One thing the run loop woke up for; it lives for one iteration only, so
/// its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Step {
    Command(Option<Command>),
    Swarm(SwarmEvent<BehaviourEvent>),
    Tick,
}

impl Node {
    /// Wraps a swarm built with [`Behaviour::new`] from the same `config`.
    /// Returns the node, to be run with [`Node::run`], and a handle to it.
    /// Hosts usually call [`crate::start`], which also spawns it.
    pub fn new(mut swarm: Swarm<Behaviour>, config: &Config, role: &Role) -> (Self, NodeHandle) {
        let now = Instant::now();
        let local = *swarm.local_peer_id();
        swarm
            .behaviour_mut()
            .kad
            .set_mode(role.kad_mode(config.server_mode));
        let mut joining = Joining::new(
            &config.bootstrap_peers,
            config.reconnect_initial_delay,
            config.reconnect_max_delay,
            unreachable::Unreachable::new(config.unreachable_failures, config.unreachable_span),
            now,
        );
        for (peer, address) in joining.seeds() {
            swarm.behaviour_mut().kad.add_address(&peer, address);
        }
        let mut actions = Actions::default();
        let kept_peers = KeptPeers::new(config.storage.clone());
        let known = kept_peers.load();
        if !known.is_empty() {
            tracing::info!(
                peers = known.len(),
                "rejoining through the kept routing table"
            );
            for saved in known {
                for address in saved.addresses {
                    swarm.behaviour_mut().kad.add_address(&saved.peer, address);
                }
            }
            // Whether or not the bootstrap peers answer.
            joining.refresh(None, &mut actions);
        }
        let mut membership = Membership::default();
        if let Some(namespace) = role.namespace() {
            // Stored locally at once; announced again once joined.
            membership.register(namespace.clone(), None, &mut actions);
        }
        let relayed = config.server_mode == ServerMode::Relayed;
        if relayed && !swarm.behaviour().has_relay_client() {
            tracing::warn!(
                "server mode `relayed` needs a transport with the relay client \
                 (Behaviour::with_relay_client): this node only queries"
            );
        }
        let auto = config.server_mode == ServerMode::Auto;
        let relays = match (relayed || auto) && swarm.behaviour().has_relay_client() {
            true if auto => Relays::standby(config.relay_reservations),
            true => Relays::new(config.relay_reservations),
            false => Relays::new(0),
        };
        let mut discovery =
            Discovery::new(local, role.discovers().cloned(), config.discover_interval);
        if !joining.has_bootstrap_peers() {
            // The first node of a network has nobody to join through.
            discovery.on_joined(now);
        }

        let (command_tx, command_rx) = mpsc::channel(config.command_buffer);
        let handle = NodeHandle::new(
            local,
            command_tx,
            Arc::new(config.store_limits.clone()),
            config.message_limits.max_bytes,
        );
        let node = Self {
            swarm,
            commands: command_rx,
            settings: Settings {
                local,
                role: role.kind(),
                k: config.replication_factor,
                kad_protocol: config.kad_protocol.clone(),
                // A node that finds out announces only what a peer dialed.
                advertise_listen_addresses: config.advertise_listen_addresses && !auto,
                started: now,
            },
            joining,
            queries: Queries::default(),
            membership,
            discovery,
            links: Links::new(
                local,
                role.kind(),
                links::LinkSettings {
                    retry_delay: config.discover_interval,
                    heartbeat_interval: config.heartbeat_interval,
                    new_per_round: config.max_new_links_per_round,
                },
                now,
            ),
            addresses: Addresses::new(config.kad_protocol.clone(), config.max_addresses_per_peer),
            diversity: Diversity::new(
                config.routing_diversity.per_bucket,
                config.routing_diversity.per_table,
            ),
            relays,
            reachability: ReachabilityState::new(match role.kad_mode(config.server_mode) {
                // A bootstrap node serves whatever the configuration says.
                Some(kad::Mode::Server) => ServerMode::Always,
                _ => config.server_mode,
            }),
            departures: Departures::new(config.relayed_peer_check_interval, now),
            replication: Replication::new(config.rereplication_delay),
            kept_peers,
            relay_server: RelayServerCounts::default(),
            messages: Messages::new(config.message_limits),
            subscribers: Subscribers::new(config.event_buffer),
            actions,
            in_flight: InFlight::default(),
            timer: Timer {
                delay: Delay::new(Duration::ZERO),
                at: now,
            },
            next_prune: now + PRUNE_INTERVAL,
            poll_round: 0,
            stopping: None,
        };
        (node, handle)
    }

    /// A stream of events from the very start, for callers that must not miss
    /// the first ones (such as [`crate::Event::Bootstrapped`]). Call before [`run`](Self::run).
    pub fn subscribe(&mut self) -> EventStream {
        self.subscribers.subscribe()
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.settings.local
    }

    /// Runs the node until [`NodeHandle::shutdown`] is called or every handle
    /// is dropped.
    pub async fn run(mut self) {
        tracing::info!(peer = %self.settings.local, role = %self.settings.role, "node starting");
        self.on_tick(Instant::now());
        loop {
            self.carry_out_actions();
            if self.stopping.is_some() {
                break;
            }
            self.rearm_timer();
            let step = poll_fn(|cx| {
                // Take turns, so that no source can starve the others.
                self.poll_round = (self.poll_round + 1) % 3;
                for source in 0..3 {
                    match (self.poll_round + source) % 3 {
                        0 => {
                            if let Poll::Ready(command) = self.commands.poll_next_unpin(cx) {
                                return Poll::Ready(Step::Command(command));
                            }
                        }
                        1 => {
                            if let Poll::Ready(Some(event)) = self.swarm.poll_next_unpin(cx) {
                                return Poll::Ready(Step::Swarm(event));
                            }
                        }
                        _ => {
                            if self.timer.delay.poll_unpin(cx).is_ready() {
                                return Poll::Ready(Step::Tick);
                            }
                        }
                    }
                }
                Poll::Pending
            })
            .await;
            let now = Instant::now();
            match step {
                Step::Command(Some(command)) => self.on_command(command, now),
                Step::Command(None) => break,
                Step::Swarm(event) => self.on_swarm_event(event, now),
                Step::Tick => self.on_tick(now),
            }
        }
        tracing::info!(peer = %self.settings.local, "node stopped");
        let reply = self.stopping.take();
        // Not every transport frees its address when dropped (the memory
        // transport keeps the port taken), so close listeners explicitly.
        for listener in std::mem::take(&mut self.in_flight.listeners) {
            self.swarm.remove_listener(listener);
        }
        // Close listeners and connections before confirming, so that a
        // successor can take over the same address at once.
        drop(self);
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    fn rearm_timer(&mut self) {
        let deadline = [
            Some(self.next_prune),
            Some(self.links.next_deadline()),
            self.joining.next_deadline(),
            self.discovery.next_deadline(),
            self.relays.next_deadline(),
            Some(self.departures.next_deadline()),
            self.replication.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.next_prune);
        if deadline != self.timer.at {
            self.timer.at = deadline;
            self.timer
                .delay
                .reset(deadline.saturating_duration_since(Instant::now()));
        }
    }

    fn on_tick(&mut self, now: Instant) {
        if now >= self.next_prune {
            self.swarm
                .behaviour_mut()
                .kad
                .store_mut()
                .prune_expired(now);
            self.next_prune = now + PRUNE_INTERVAL;
        }
        let Self {
            swarm,
            joining,
            discovery,
            links,
            actions,
            settings,
            ..
        } = self;
        joining.poll(now, |peer| swarm.is_connected(peer), actions);
        discovery.poll(
            now,
            |namespace| stored_members(swarm, settings.local, namespace, now),
            actions,
        );
        links.poll(now, actions);
        self.relays.on_tick(now, &mut self.actions);
        let kad = &mut self.swarm.behaviour_mut().kad;
        self.departures.poll(
            now,
            |peer| snapshot::routing_addresses(kad, peer),
            &mut self.actions,
        );
        if self.departures.sweep_due(now) {
            let kad = &mut self.swarm.behaviour_mut().kad;
            let table = snapshot::routing_table(kad, self.settings.local);
            let entries = table.buckets.into_iter().flat_map(|b| b.entries);
            self.departures.sweep(now, entries, &mut self.actions);
        }
        if let Some(changes) = self.replication.take_due(now) {
            let kad = &mut self.swarm.behaviour_mut().kad;
            let (local, k) = (self.settings.local, self.settings.k.get());
            replication::replicate(kad, local, &changes, k, now, &mut self.actions);
        }
        // A timer that fired for nothing (its deadline moved) must be re-armed.
        self.timer.at = now;
    }

    /// The node (re)joined the network.
    fn on_joined(&mut self, now: Instant) {
        self.membership.on_joined(&mut self.actions);
        self.discovery.on_joined(now);
    }

    /// A query of another part finished.
    fn on_outcome(&mut self, outcome: Outcome, now: Instant) {
        match outcome {
            Outcome::Holders {
                discovery,
                holders,
                timed_out,
            } => {
                let Self {
                    swarm,
                    discovery: part,
                    addresses,
                    actions,
                    ..
                } = self;
                let known = |peer: &PeerId| known_addresses(swarm, addresses, peer);
                if let Some(found) = part.on_holders(discovery, holders, timed_out, known, actions)
                {
                    self.on_found(found, now);
                }
            }
            // Every peer asked was gone (a node rejoining through the peers
            // it kept, all of which left): joined nobody.
            Outcome::Refreshed if self.swarm.connected_peers().next().is_none() => {
                self.joining.on_refresh_impossible()
            }
            Outcome::Refreshed => {
                let size = snapshot::routing_table_size(&mut self.swarm.behaviour_mut().kad);
                self.joining.on_refreshed(size, &mut self.actions);
                self.on_joined(now);
            }
            Outcome::RefreshImpossible => self.joining.on_refresh_impossible(),
            Outcome::RegistrationRefused(namespace) => self.membership.on_refused(&namespace),
        }
    }
}

/// The registrations of `namespace` this node holds, its own with its
/// current external addresses.
fn stored_members(
    swarm: &mut Swarm<Behaviour>,
    local: PeerId,
    namespace: &Namespace,
    now: Instant,
) -> Vec<PeerAddresses> {
    let external: Vec<Multiaddr> = swarm.external_addresses().cloned().collect();
    let store = swarm.behaviour_mut().kad.store_mut();
    discovery::stored_members(store, namespace, local, &external, now)
}

/// Every address this node knows for `peer`.
fn known_addresses(
    swarm: &mut Swarm<Behaviour>,
    addresses: &Addresses,
    peer: &PeerId,
) -> Vec<Multiaddr> {
    let routing = snapshot::routing_addresses(&mut swarm.behaviour_mut().kad, peer);
    addresses.known(peer, routing)
}
