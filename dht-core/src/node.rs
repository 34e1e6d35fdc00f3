//! The node: drives the swarm, answers handle commands, plays its role.
//!
//! [`Node::run`] is a plain future. It needs no runtime of its own: the host
//! spawns it on whatever executor it has (tokio, wasm-bindgen-futures, a
//! `futures` thread pool) and injects the transport through the swarm.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    future::poll_fn,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use futures::{FutureExt, StreamExt, channel::mpsc};
use futures_timer::Delay;
use libp2p::{
    Multiaddr, PeerId, Swarm, TransportError,
    core::ConnectedPoint,
    core::transport::ListenerId,
    identify,
    kad::{
        self, GetClosestPeersError, GetClosestPeersOk, GetRecordOk as KadGetRecordOk,
        InboundRequest, Mode, QueryId, QueryResult, Record, RecordKey, store::RecordStore,
    },
    multiaddr::Protocol,
    request_response::{self, OutboundRequestId},
    swarm::{
        DialError as SwarmDialError, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use web_time::Instant;

use crate::{
    behaviour::{Behaviour, BehaviourEvent},
    bootstrap::BootstrapPeers,
    config::{Config, ServerMode},
    error::{
        ClosestPeersError, DialError, DiscoverError, GetRecordError, LinkError, ListenError,
        PutRecordError, RecordError, RegisterError,
    },
    event::Event,
    handle::{
        Command, EventStream, GetRecordOk, NodeHandle, PeerAddresses, PutRecordOk, QueryStats,
        Reply,
    },
    namespace::{
        Hello, MAX_ADDRESSES_PER_MEMBER, MAX_MEMBERS_PER_REPLY, Namespace, NamespaceRequest,
        NamespaceResponse,
    },
    record::{Quorum, display_key, into_kad_quorum},
    report::{Bucket, Link, NetworkReport, Registration, RoutingEntry, RoutingTable, StoredRecord},
    role::{Role, RoleKind},
};

/// How often expired records and registrations are dropped from memory.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Peers whose self-reported addresses are remembered at most.
const ADDRESS_BOOK_CAPACITY: usize = 4096;

/// A DHT node: a swarm running [`Behaviour`], driven by [`Node::run`].
#[allow(missing_debug_implementations)]
pub struct Node {
    swarm: Swarm<Behaviour>,
    config: Arc<Config>,
    role: Role,
    commands: mpsc::Receiver<Command>,
    subscribers: Subscribers,
    queries: HashMap<QueryId, Pending>,
    discoveries: HashMap<u64, Discovery>,
    next_discovery_id: u64,
    dials: HashMap<libp2p::swarm::ConnectionId, (Multiaddr, Reply<Result<PeerId, DialError>>)>,
    listens: HashMap<ListenerId, (Multiaddr, Reply<Result<Multiaddr, ListenError>>)>,
    listeners: HashSet<ListenerId>,
    /// Connected peers that reached us over loopback, i.e. from this host.
    loopback_peers: HashSet<PeerId>,
    outbound: HashMap<OutboundRequestId, Outbound>,
    registered: BTreeSet<Namespace>,
    links: BTreeMap<(PeerId, Namespace), LinkState>,
    /// Dialer: peers not to try again before the given instant.
    link_retry: HashMap<PeerId, Instant>,
    /// Dialer: members already reported as discovered.
    discovered: HashSet<(PeerId, Namespace)>,
    role_discovery_running: bool,
    bootstrap: BootstrapPeers,
    bootstrap_queries: HashSet<QueryId>,
    bootstrap_waiters: Vec<Reply<usize>>,
    joined: bool,
    addresses: AddressBook,
    timer: Delay,
    timer_at: Instant,
    next_prune: Instant,
    next_discover: Option<Instant>,
    next_heartbeat: Instant,
    started: Instant,
    poll_round: u8,
    stopping: Option<Reply<()>>,
}

#[derive(Debug)]
enum Pending {
    Put {
        key: Vec<u8>,
        required: usize,
        reply: Reply<Result<PutRecordOk, PutRecordError>>,
    },
    Get {
        key: Vec<u8>,
        required: usize,
        found: Vec<kad::PeerRecord>,
        reply: Reply<Result<GetRecordOk, GetRecordError>>,
    },
    Closest {
        key: Vec<u8>,
        reply: Reply<Result<Vec<PeerAddresses>, ClosestPeersError>>,
    },
    Register {
        namespace: Namespace,
        reply: Option<Reply<Result<(), RegisterError>>>,
    },
    /// The peers closest to a namespace key, to ask for its members.
    Holders { discovery: u64 },
}

#[derive(Debug)]
enum Origin {
    Caller(Reply<Result<Vec<PeerAddresses>, DiscoverError>>),
    Role,
}

#[derive(Debug)]
struct Discovery {
    namespace: Namespace,
    origin: Origin,
    members: BTreeMap<PeerId, Vec<Multiaddr>>,
    awaiting: usize,
    timed_out: bool,
}

/// What an outbound request on the namespace protocol was for.
#[derive(Debug)]
enum Outbound {
    Handshake(Handshake),
    Members { discovery: u64 },
}

#[derive(Debug)]
struct Handshake {
    namespace: Namespace,
    peer: PeerId,
    reply: Option<Reply<Result<RoleKind, LinkError>>>,
}

#[derive(Debug, Clone, Copy)]
struct LinkState {
    role: RoleKind,
    outbound: bool,
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
    pub fn new(mut swarm: Swarm<Behaviour>, config: Config, role: Role) -> (Self, NodeHandle) {
        let now = Instant::now();
        let mode = match (&role, config.server_mode) {
            (Role::Bootstrap, _) | (_, ServerMode::Always) => Some(Mode::Server),
            (_, ServerMode::Never) => Some(Mode::Client),
            (_, ServerMode::Auto) => None,
        };
        swarm.behaviour_mut().kad.set_mode(mode);

        let bootstrap = BootstrapPeers::new(
            &config.bootstrap_peers,
            config.reconnect_initial_delay,
            config.reconnect_max_delay,
            now,
        );
        for (peer, address) in bootstrap.addresses() {
            swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, strip_p2p(address));
        }

        let (command_tx, command_rx) = mpsc::channel(config.command_buffer);
        let config = Arc::new(config);
        let handle = NodeHandle::new(
            *swarm.local_peer_id(),
            command_tx,
            Arc::new(config.store_limits.clone()),
        );
        let joined = bootstrap.is_empty();
        let node = Self {
            swarm,
            role,
            commands: command_rx,
            subscribers: Subscribers::new(config.event_buffer),
            queries: HashMap::new(),
            discoveries: HashMap::new(),
            next_discovery_id: 0,
            dials: HashMap::new(),
            listens: HashMap::new(),
            listeners: HashSet::new(),
            loopback_peers: HashSet::new(),
            outbound: HashMap::new(),
            registered: BTreeSet::new(),
            links: BTreeMap::new(),
            link_retry: HashMap::new(),
            discovered: HashSet::new(),
            role_discovery_running: false,
            bootstrap,
            bootstrap_queries: HashSet::new(),
            bootstrap_waiters: Vec::new(),
            joined,
            addresses: AddressBook::new(ADDRESS_BOOK_CAPACITY),
            timer: Delay::new(Duration::ZERO),
            timer_at: now,
            next_prune: now + PRUNE_INTERVAL,
            next_discover: None,
            next_heartbeat: now + config.heartbeat_interval,
            started: now,
            poll_round: 0,
            stopping: None,
            config,
        };
        (node, handle)
    }

    /// A stream of events from the very start, for callers that must not miss
    /// the first ones (such as [`Event::Bootstrapped`]). Call before [`run`](Self::run).
    pub fn subscribe(&mut self) -> EventStream {
        self.subscribers.subscribe()
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Runs the node until [`NodeHandle::shutdown`] is called or every handle
    /// is dropped.
    pub async fn run(mut self) {
        self.start();
        loop {
            let step = poll_fn(|cx| {
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
                            if self.timer.poll_unpin(cx).is_ready() {
                                return Poll::Ready(Step::Tick);
                            }
                        }
                    }
                }
                Poll::Pending
            })
            .await;
            match step {
                Step::Command(Some(command)) => self.on_command(command),
                Step::Command(None) => break,
                Step::Swarm(event) => self.on_swarm_event(event),
                Step::Tick => self.on_tick(Instant::now()),
            }
            if self.stopping.is_some() {
                break;
            }
            self.rearm_timer();
        }
        tracing::info!(peer = %self.local_peer_id(), "node stopped");
        let reply = self.stopping.take();
        // Not every transport frees its address when dropped (the memory
        // transport keeps the port taken), so close listeners explicitly.
        for listener in std::mem::take(&mut self.listeners) {
            self.swarm.remove_listener(listener);
        }
        // Close listeners and connections before confirming, so that a
        // successor can take over the same address at once.
        drop(self);
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    fn start(&mut self) {
        tracing::info!(peer = %self.local_peer_id(), role = %self.role.kind(), "node starting");
        if let Some(namespace) = self.role.namespace().cloned() {
            // Stored locally at once; announced to the network once joined.
            self.register(namespace, None);
        }
        if self.joined {
            self.on_joined();
        }
        self.on_tick(Instant::now());
        self.rearm_timer();
    }

    fn rearm_timer(&mut self) {
        let mut deadline = self.next_prune.min(self.next_heartbeat);
        if let Some(at) = self.next_discover {
            deadline = deadline.min(at);
        }
        if let Some(at) = self.bootstrap.next_deadline() {
            deadline = deadline.min(at);
        }
        if deadline != self.timer_at {
            self.timer_at = deadline;
            self.timer
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
        self.dial_due_bootstrap_peers(now);
        if self.next_discover.is_some_and(|at| at <= now) {
            self.next_discover = Some(now + self.config.discover_interval);
            if let Some(namespace) = self.role.discovers().cloned()
                && !self.role_discovery_running
            {
                self.role_discovery_running = true;
                self.start_discovery(namespace, Origin::Role);
            }
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.config.heartbeat_interval;
            self.send_heartbeats();
        }
        // A timer that fired for nothing (its deadline moved) is re-armed by
        // the caller; forget the old deadline so that it is.
        self.timer_at = now;
    }

    // ----- joining and staying joined -----

    fn dial_due_bootstrap_peers(&mut self, now: Instant) {
        for (peer, addresses) in self.bootstrap.take_due(now) {
            if self.swarm.is_connected(&peer) {
                self.on_bootstrap_connected(peer);
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(addresses.iter().map(strip_p2p).collect())
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            match self.swarm.dial(opts) {
                Ok(()) => tracing::debug!(%peer, "dialing bootstrap peer"),
                // Another dial of this peer is under way; its outcome counts.
                Err(SwarmDialError::DialPeerConditionFalse(_)) => {}
                Err(error) => self.on_bootstrap_dial_failed(peer, describe(&error), now),
            }
        }
    }

    fn on_bootstrap_connected(&mut self, peer: PeerId) {
        if !self.bootstrap.on_connected(&peer) {
            return;
        }
        tracing::info!(%peer, "connected to bootstrap peer");
        self.swarm.behaviour_mut().keep_alive.pin(peer);
        self.subscribers
            .publish(&Event::BootstrapPeerConnected { peer });
        // A bootstrap that restarted knows nobody; our lookup through it
        // teaches it the network again and refreshes our own table.
        self.start_bootstrap_query();
    }

    fn on_bootstrap_dial_failed(&mut self, peer: PeerId, error: String, now: Instant) {
        if let Some(delay) = self.bootstrap.on_dial_failed(&peer, now) {
            tracing::warn!(%peer, %error, retry_in = ?delay, "bootstrap peer unreachable");
            self.subscribers.publish(&Event::BootstrapPeerUnreachable {
                peer,
                error,
                retry_in_ms: millis(delay),
            });
        }
    }

    fn start_bootstrap_query(&mut self) -> bool {
        match self.swarm.behaviour_mut().kad.bootstrap() {
            Ok(id) => {
                self.bootstrap_queries.insert(id);
                true
            }
            Err(_) => false,
        }
    }

    fn on_bootstrap_finished(&mut self, id: QueryId) {
        if !self.bootstrap_queries.remove(&id) {
            return;
        }
        let size = self.routing_table_size();
        tracing::info!(routing_table_size = size, "bootstrap finished");
        self.subscribers.publish(&Event::Bootstrapped {
            routing_table_size: size,
        });
        if self.bootstrap_queries.is_empty() {
            for waiter in self.bootstrap_waiters.drain(..) {
                let _ = waiter.send(size);
            }
        }
        self.on_joined();
    }

    /// The node can reach the network: announce registrations to the peers
    /// now known to be closest, and let a dialer search its namespace.
    fn on_joined(&mut self) {
        self.joined = true;
        for namespace in self.registered.clone() {
            self.announce(namespace, None);
        }
        if self.role.discovers().is_some() {
            self.next_discover = Some(Instant::now());
        }
    }

    // ----- commands -----

    fn on_command(&mut self, command: Command) {
        match command {
            Command::PutRecord {
                key,
                value,
                quorum,
                reply,
            } => self.put_record(key, value, quorum, reply),
            Command::GetRecord { key, quorum, reply } => {
                let required = quorum.resolve(self.config.replication_factor).get();
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(RecordKey::new(&key));
                self.queries.insert(
                    id,
                    Pending::Get {
                        key,
                        required,
                        found: Vec::new(),
                        reply,
                    },
                );
            }
            Command::ClosestPeers { key, reply } => {
                let k = self.config.replication_factor;
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_n_closest_peers(key.clone(), k);
                self.queries.insert(id, Pending::Closest { key, reply });
            }
            Command::Bootstrap { reply } => {
                if self.start_bootstrap_query() {
                    self.bootstrap_waiters.push(reply);
                } else {
                    let _ = reply.send(0);
                }
            }
            Command::Register { namespace, reply } => self.register(namespace, Some(reply)),
            Command::Unregister { namespace, reply } => {
                self.registered.remove(&namespace);
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&namespace.record_key());
                let _ = reply.send(());
            }
            Command::Discover { namespace, reply } => {
                self.start_discovery(namespace, Origin::Caller(reply))
            }
            Command::Link {
                namespace,
                peer,
                reply,
            } => {
                self.send_hello(namespace, peer.peer_id, &peer.addresses, Some(reply));
            }
            Command::Dial { address, reply } => {
                let opts = DialOpts::unknown_peer_id().address(address.clone()).build();
                let connection = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.dials.insert(connection, (address, reply));
                    }
                    Err(error) => {
                        let _ = reply.send(Err(DialError::Failed {
                            address,
                            reason: describe(&error),
                        }));
                    }
                }
            }
            Command::ListenOn { address, reply } => match self.swarm.listen_on(address.clone()) {
                Ok(id) => {
                    self.listens.insert(id, (address, reply));
                }
                Err(TransportError::MultiaddrNotSupported(address)) => {
                    let _ = reply.send(Err(ListenError::Unsupported { address }));
                }
                Err(TransportError::Other(error)) => {
                    let _ = reply.send(Err(ListenError::Failed {
                        address,
                        reason: error.to_string(),
                    }));
                }
            },
            Command::RoutingTable { reply } => {
                let _ = reply.send(self.routing_table());
            }
            Command::Records { reply } => {
                let _ = reply.send(self.stored_records());
            }
            Command::Registrations { reply } => {
                let _ = reply.send(self.registrations());
            }
            Command::Links { reply } => {
                let links = self
                    .links
                    .iter()
                    .map(|((peer, namespace), link)| Link {
                        namespace: namespace.clone(),
                        peer_id: *peer,
                        role: link.role,
                        outbound: link.outbound,
                    })
                    .collect();
                let _ = reply.send(links);
            }
            Command::ListenAddresses { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::NetworkReport { reply } => {
                let _ = reply.send(self.network_report());
            }
            Command::Subscribe { reply } => {
                let _ = reply.send(self.subscribers.subscribe());
            }
            Command::Shutdown { reply } => self.stopping = Some(reply),
        }
    }

    fn put_record(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        quorum: Quorum,
        reply: Reply<Result<PutRecordOk, PutRecordError>>,
    ) {
        let max = self.config.store_limits.max_value_size;
        if value.len() > max {
            let _ = reply.send(Err(RecordError::ValueTooLarge {
                size: value.len(),
                max,
            }
            .into()));
            return;
        }
        let required = quorum.resolve(self.config.replication_factor);
        let record = Record::new(RecordKey::new(&key), value);
        match self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, into_kad_quorum(required))
        {
            Ok(id) => {
                self.queries.insert(
                    id,
                    Pending::Put {
                        key,
                        required: required.get(),
                        reply,
                    },
                );
            }
            Err(kad::store::Error::ValueTooLarge) => {
                let _ = reply.send(Err(RecordError::ValueTooLarge { size: 0, max }.into()));
            }
            Err(_) => {
                let _ = reply.send(Err(PutRecordError::StoreFull {
                    max: self.config.store_limits.max_records,
                }));
            }
        }
    }

    // ----- namespaces -----

    fn register(&mut self, namespace: Namespace, reply: Option<Reply<Result<(), RegisterError>>>) {
        self.registered.insert(namespace.clone());
        self.announce(namespace, reply);
    }

    fn announce(&mut self, namespace: Namespace, reply: Option<Reply<Result<(), RegisterError>>>) {
        match self
            .swarm
            .behaviour_mut()
            .kad
            .start_providing(namespace.record_key())
        {
            Ok(id) => {
                self.queries
                    .insert(id, Pending::Register { namespace, reply });
            }
            Err(_) => {
                tracing::warn!(%namespace, "cannot register: the store is full of registrations");
                self.registered.remove(&namespace);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(RegisterError::StoreFull { namespace }));
                }
            }
        }
    }

    fn start_discovery(&mut self, namespace: Namespace, origin: Origin) {
        let id = self.next_discovery_id;
        self.next_discovery_id += 1;
        let k = self.config.replication_factor;
        let key = namespace.record_key().to_vec();
        let query = self.swarm.behaviour_mut().kad.get_n_closest_peers(key, k);
        self.queries
            .insert(query, Pending::Holders { discovery: id });
        // What this node stores itself counts too.
        let local = self.local_peer_id();
        let members = self
            .stored_members(&namespace)
            .into_iter()
            .filter(|m| m.peer_id != local)
            .map(|m| (m.peer_id, m.addresses))
            .collect();
        self.discoveries.insert(
            id,
            Discovery {
                namespace,
                origin,
                members,
                awaiting: 0,
                timed_out: false,
            },
        );
    }

    /// The holders of a namespace are known: ask each for its members.
    fn ask_holders(&mut self, id: u64, holders: Vec<kad::PeerInfo>, timed_out: bool) {
        let local = self.local_peer_id();
        let Some(namespace) = self.discoveries.get(&id).map(|d| d.namespace.clone()) else {
            return;
        };
        let mut asked = 0;
        for holder in holders.into_iter().filter(|h| h.peer_id != local) {
            let addresses: Vec<Multiaddr> = holder.addrs.iter().map(strip_p2p).collect();
            let request = NamespaceRequest::Members {
                namespace: namespace.clone(),
            };
            let request_id = self
                .swarm
                .behaviour_mut()
                .namespace
                .send_request_with_addresses(&holder.peer_id, request, addresses);
            self.outbound
                .insert(request_id, Outbound::Members { discovery: id });
            asked += 1;
        }
        if let Some(discovery) = self.discoveries.get_mut(&id) {
            discovery.timed_out = timed_out;
            discovery.awaiting = asked;
            if asked == 0 {
                self.finish_discovery(id);
            }
        }
    }

    /// A holder answered (`Some`) or failed to (`None`).
    fn on_members(&mut self, id: u64, members: Option<Vec<PeerAddresses>>) {
        let local = self.local_peer_id();
        let Some(discovery) = self.discoveries.get_mut(&id) else {
            return;
        };
        for member in members.into_iter().flatten().filter(|m| m.peer_id != local) {
            let known = discovery.members.entry(member.peer_id).or_default();
            for address in member
                .addresses
                .iter()
                .filter(|a| is_dialable(a))
                .map(strip_p2p)
            {
                if !known.contains(&address) && known.len() < MAX_ADDRESSES_PER_MEMBER {
                    known.push(address);
                }
            }
        }
        discovery.awaiting = discovery.awaiting.saturating_sub(1);
        if discovery.awaiting == 0 {
            self.finish_discovery(id);
        }
    }

    /// The live registrations of `namespace` in the local store, ours with
    /// our current external addresses.
    fn stored_members(&mut self, namespace: &Namespace) -> Vec<PeerAddresses> {
        let now = Instant::now();
        let local = self.local_peer_id();
        let external: Vec<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        let key = namespace.record_key();
        self.swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .providers(&key)
            .into_iter()
            .filter(|p| !p.is_expired(now))
            .map(|p| PeerAddresses {
                peer_id: p.provider,
                addresses: if p.provider == local {
                    external.clone()
                } else {
                    p.addresses
                },
            })
            .take(MAX_MEMBERS_PER_REPLY)
            .collect()
    }

    fn finish_discovery(&mut self, id: u64) {
        let Some(discovery) = self.discoveries.remove(&id) else {
            return;
        };
        let mut peers = Vec::with_capacity(discovery.members.len());
        for (peer_id, mut addresses) in discovery.members {
            // A member stored without addresses may still be known here.
            if addresses.is_empty() {
                addresses = self.known_addresses(&peer_id);
            }
            peers.push(PeerAddresses { peer_id, addresses });
        }
        match discovery.origin {
            Origin::Caller(reply) => {
                let result = if peers.is_empty() && discovery.timed_out {
                    Err(DiscoverError::Timeout {
                        namespace: discovery.namespace,
                    })
                } else {
                    Ok(peers)
                };
                let _ = reply.send(result);
            }
            Origin::Role => {
                self.role_discovery_running = false;
                self.link_to_discovered(&discovery.namespace, peers);
            }
        }
    }

    /// Dialer: link to every member found that is not linked yet.
    fn link_to_discovered(&mut self, namespace: &Namespace, peers: Vec<PeerAddresses>) {
        let now = Instant::now();
        let busy = self.handshaking_peers();
        for peer in peers {
            let key = (peer.peer_id, namespace.clone());
            if self.discovered.insert(key.clone()) {
                self.subscribers.publish(&Event::NamespacePeerDiscovered {
                    namespace: namespace.clone(),
                    peer: peer.peer_id,
                    addresses: peer.addresses.clone(),
                });
            }
            if self.links.contains_key(&key) || busy.contains(&peer.peer_id) {
                continue;
            }
            if self
                .link_retry
                .get(&peer.peer_id)
                .is_some_and(|at| *at > now)
            {
                continue;
            }
            if peer.addresses.is_empty() && !self.swarm.is_connected(&peer.peer_id) {
                tracing::debug!(peer = %peer.peer_id, "member has no known address; cannot dial it");
                continue;
            }
            self.send_hello(namespace.clone(), peer.peer_id, &peer.addresses, None);
        }
    }

    fn send_hello(
        &mut self,
        namespace: Namespace,
        peer: PeerId,
        addresses: &[Multiaddr],
        reply: Option<Reply<Result<RoleKind, LinkError>>>,
    ) {
        if peer == self.local_peer_id() {
            if let Some(reply) = reply {
                let _ = reply.send(Err(LinkError::Failed {
                    peer,
                    namespace,
                    reason: "that is this node".into(),
                }));
            }
            return;
        }
        let hello = NamespaceRequest::Hello(Hello {
            namespace: namespace.clone(),
            role: self.role.kind(),
        });
        let addresses = addresses.iter().map(strip_p2p).collect();
        let request = self
            .swarm
            .behaviour_mut()
            .namespace
            .send_request_with_addresses(&peer, hello, addresses);
        self.outbound.insert(
            request,
            Outbound::Handshake(Handshake {
                namespace,
                peer,
                reply,
            }),
        );
    }

    fn handshaking_peers(&self) -> HashSet<PeerId> {
        self.outbound
            .values()
            .filter_map(|o| match o {
                Outbound::Handshake(h) => Some(h.peer),
                Outbound::Members { .. } => None,
            })
            .collect()
    }

    fn send_heartbeats(&mut self) {
        let busy = self.handshaking_peers();
        let outbound: Vec<(PeerId, Namespace)> = self
            .links
            .iter()
            .filter(|(_, link)| link.outbound)
            .map(|(key, _)| key.clone())
            .filter(|(peer, _)| !busy.contains(peer))
            .collect();
        for (peer, namespace) in outbound {
            self.send_hello(namespace, peer, &[], None);
        }
    }

    fn on_namespace_event(
        &mut self,
        event: request_response::Event<NamespaceRequest, NamespaceResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let (response, accepted) = match &request {
                    NamespaceRequest::Hello(hello)
                        if self.registered.contains(&hello.namespace) =>
                    {
                        let role = self.role.kind();
                        (NamespaceResponse::Welcome { role }, Some(hello.clone()))
                    }
                    NamespaceRequest::Hello(_) => (NamespaceResponse::NotRegistered, None),
                    NamespaceRequest::Members { namespace } => (
                        NamespaceResponse::Members(self.stored_members(namespace)),
                        None,
                    ),
                };
                if self
                    .swarm
                    .behaviour_mut()
                    .namespace
                    .send_response(channel, response)
                    .is_err()
                {
                    return;
                }
                if let Some(hello) = accepted {
                    self.on_accepted(peer, hello);
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => match (self.outbound.remove(&request_id), response) {
                (Some(Outbound::Members { discovery }), NamespaceResponse::Members(members)) => {
                    self.on_members(discovery, Some(members));
                }
                (Some(Outbound::Members { discovery }), _) => {
                    tracing::debug!(%peer, "answered a members request with something else");
                    self.on_members(discovery, None);
                }
                (Some(Outbound::Handshake(handshake)), NamespaceResponse::Welcome { role }) => {
                    self.on_welcomed(peer, handshake, role);
                }
                (Some(Outbound::Handshake(handshake)), _) => {
                    self.drop_link(
                        peer,
                        &handshake.namespace,
                        "the peer is not registered in the namespace",
                    );
                    if let Some(reply) = handshake.reply {
                        let _ = reply.send(Err(LinkError::NotRegistered {
                            peer,
                            namespace: handshake.namespace,
                        }));
                    }
                }
                (None, _) => {}
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => match self.outbound.remove(&request_id) {
                Some(Outbound::Members { discovery }) => {
                    tracing::debug!(%peer, %error, "members request failed");
                    self.on_members(discovery, None);
                }
                Some(Outbound::Handshake(handshake)) => {
                    let reason = error.to_string();
                    tracing::debug!(%peer, %reason, "namespace handshake failed");
                    self.drop_link(peer, &handshake.namespace, &reason);
                    if let Some(reply) = handshake.reply {
                        let _ = reply.send(Err(LinkError::Failed {
                            peer,
                            namespace: handshake.namespace,
                            reason,
                        }));
                    }
                }
                None => {}
            },
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound namespace request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// A peer's handshake was accepted: it is linked to us.
    fn on_accepted(&mut self, peer: PeerId, hello: Hello) {
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
        self.subscribers.publish(&Event::NamespaceLinked {
            namespace: hello.namespace,
            peer,
            role: hello.role,
            outbound: false,
        });
    }

    /// Our handshake was accepted: we are linked to the peer.
    fn on_welcomed(&mut self, peer: PeerId, handshake: Handshake, role: RoleKind) {
        self.link_retry.remove(&peer);
        self.swarm.behaviour_mut().keep_alive.pin(peer);
        let key = (peer, handshake.namespace.clone());
        if self
            .links
            .insert(
                key,
                LinkState {
                    role,
                    outbound: true,
                },
            )
            .is_none()
        {
            tracing::info!(%peer, namespace = %handshake.namespace, %role, "linked to a namespace peer");
            self.subscribers.publish(&Event::NamespaceLinked {
                namespace: handshake.namespace,
                peer,
                role,
                outbound: true,
            });
        }
        if let Some(reply) = handshake.reply {
            let _ = reply.send(Ok(role));
        }
    }

    /// Ends a link (if any) and keeps the dialer from retrying at once.
    fn drop_link(&mut self, peer: PeerId, namespace: &Namespace, reason: &str) {
        self.link_retry
            .insert(peer, Instant::now() + self.config.discover_interval);
        if self.links.remove(&(peer, namespace.clone())).is_some() {
            tracing::info!(%peer, %namespace, %reason, "namespace link lost");
            self.subscribers.publish(&Event::NamespaceLinkLost {
                namespace: namespace.clone(),
                peer,
                reason: reason.to_owned(),
            });
        }
        self.unpin_if_unused(peer);
    }

    fn unpin_if_unused(&mut self, peer: PeerId) {
        let linked = self.links.keys().any(|(p, _)| *p == peer);
        if !linked && !self.bootstrap.contains(&peer) {
            self.swarm.behaviour_mut().keep_alive.unpin(&peer);
        }
    }

    // ----- swarm events -----

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(event)) => self.on_identify_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Namespace(event)) => {
                self.on_namespace_event(event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::KeepAlive(never)) => match never {},
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                self.listeners.insert(listener_id);
                if self.config.advertise_listen_addresses {
                    self.advertise(&address);
                }
                if let Some((_, reply)) = self.listens.remove(&listener_id) {
                    let _ = reply.send(Ok(address.clone()));
                }
                self.subscribers.publish(&Event::Listening { address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.swarm.remove_external_address(&address);
                self.subscribers
                    .publish(&Event::ListenAddressExpired { address });
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                self.listeners.remove(&listener_id);
                if let Some((address, reply)) = self.listens.remove(&listener_id) {
                    let reason = match reason {
                        Ok(()) => "the listener closed".to_owned(),
                        Err(error) => error.to_string(),
                    };
                    let _ = reply.send(Err(ListenError::Failed { address, reason }));
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some((_, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if is_loopback(endpoint.get_remote_address()) {
                    self.loopback_peers.insert(peer_id);
                }
                let (address, inbound) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => {
                        self.addresses.insert(peer_id, vec![strip_p2p(address)]);
                        (address.clone(), false)
                    }
                    ConnectedPoint::Listener { send_back_addr, .. } => {
                        (send_back_addr.clone(), true)
                    }
                };
                if num_established.get() == 1 {
                    self.subscribers.publish(&Event::PeerConnected {
                        peer: peer_id,
                        address,
                        inbound,
                    });
                }
                self.on_bootstrap_connected(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                if num_established > 0 {
                    return;
                }
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
                self.loopback_peers.remove(&peer_id);
                self.subscribers
                    .publish(&Event::PeerDisconnected { peer: peer_id });
                let lost: Vec<Namespace> = self
                    .links
                    .keys()
                    .filter(|(p, _)| *p == peer_id)
                    .map(|(_, ns)| ns.clone())
                    .collect();
                for namespace in lost {
                    self.drop_link(peer_id, &namespace, "disconnected");
                }
                // A peer that left may come back at once; do not hold it off.
                self.link_retry.remove(&peer_id);
                if let Some(delay) = self.bootstrap.on_disconnected(&peer_id, Instant::now()) {
                    tracing::warn!(peer = %peer_id, retry_in = ?delay, "lost the bootstrap peer");
                    self.subscribers.publish(&Event::BootstrapPeerLost {
                        peer: peer_id,
                        retry_in_ms: millis(delay),
                    });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                let reason = describe(&error);
                if let Some((address, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(DialError::Failed {
                        address,
                        reason: reason.clone(),
                    }));
                }
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    self.forget_if_unreachable(peer, &error);
                    self.on_bootstrap_dial_failed(peer, reason, Instant::now());
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "inbound connection failed");
            }
            _ => {}
        }
    }

    /// Drops a peer that could not be reached at any address from the routing
    /// table. Kademlia keeps such peers (so that a node whose own network is
    /// down does not flush its table), and every later lookup near them then
    /// waits for a dial that cannot work. We drop them only while other peers
    /// are connected, which tells the fault is theirs; a live peer comes back
    /// the next time it contacts anyone. Bootstrap peers are kept and redialed.
    fn forget_if_unreachable(&mut self, peer: PeerId, error: &SwarmDialError) {
        let unreachable = matches!(
            error,
            SwarmDialError::Transport(_) | SwarmDialError::WrongPeerId { .. }
        );
        if unreachable
            && !self.bootstrap.contains(&peer)
            && self.swarm.connected_peers().next().is_some()
            && self.swarm.behaviour_mut().kad.remove_peer(&peer).is_some()
        {
            tracing::debug!(%peer, "removed an unreachable peer from the routing table");
        }
    }

    /// Announces a listen address as an external one. Loopback addresses
    /// are announced only while the node listens on nothing else: to a peer
    /// on another host they name that peer's own machine, and dialing them
    /// wastes a lookup's time or reaches the wrong node.
    fn advertise(&mut self, address: &Multiaddr) {
        if is_loopback(address) {
            if self.swarm.listeners().any(|a| !is_loopback(a) && is_ip(a)) {
                return;
            }
        } else if is_ip(address) {
            let loopback: Vec<Multiaddr> = self
                .swarm
                .external_addresses()
                .filter(|a| is_loopback(a))
                .cloned()
                .collect();
            for stale in loopback {
                self.swarm.remove_external_address(&stale);
            }
        }
        self.swarm.add_external_address(address.clone());
    }

    fn on_identify_event(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        // A peer that reached us from another host cannot be dialed at its
        // loopback addresses: those would lead to our own machine.
        let same_host = self.loopback_peers.contains(&peer_id);
        let addresses: Vec<Multiaddr> = info
            .listen_addrs
            .into_iter()
            .filter(is_dialable)
            .filter(|a| same_host || !is_loopback(a))
            .take(self.config.max_addresses_per_peer)
            .collect();
        // Only peers that serve our DHT belong in the routing table; the
        // others are remembered for dialing only.
        if info
            .protocols
            .iter()
            .any(|p| p == &self.config.kad_protocol)
        {
            for address in &addresses {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer_id, address.clone());
            }
        }
        if !addresses.is_empty() {
            self.addresses.insert(peer_id, addresses);
        }
    }

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                stats,
                step,
            } => self.on_query_progress(id, result, QueryStats::from(&stats), step.last),
            kad::Event::InboundRequest { request } => self.on_inbound_request(request),
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer,
                bucket_range,
                ..
            } => {
                self.subscribers.publish(&Event::RoutingUpdated {
                    peer,
                    bucket: bucket_range.0.ilog2().unwrap_or(0),
                    new_peer: is_new_peer,
                });
            }
            kad::Event::ModeChanged { new_mode } => {
                tracing::info!(mode = %new_mode, "DHT mode changed")
            }
            _ => {}
        }
    }

    fn on_inbound_request(&mut self, request: InboundRequest) {
        match request {
            InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                let key = record.key.to_vec();
                match self.swarm.behaviour_mut().kad.store_mut().put(record) {
                    Ok(()) => self
                        .subscribers
                        .publish(&Event::RecordStored { key, from: source }),
                    Err(error) => {
                        tracing::debug!(peer = %source, key = %display_key(&key), %error, "refused a record");
                        self.subscribers.publish(&Event::RecordRejected {
                            key,
                            from: source,
                            reason: error.to_string(),
                        });
                    }
                }
            }
            InboundRequest::AddProvider {
                record: Some(record),
            } => {
                let peer = record.provider;
                let namespace = Namespace::from_record_key(&record.key);
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_provider(record)
                {
                    Ok(()) => {
                        if let Some(namespace) = namespace {
                            self.subscribers
                                .publish(&Event::RegistrationStored { namespace, peer });
                        }
                    }
                    Err(error) => tracing::debug!(%peer, %error, "refused a registration"),
                }
            }
            _ => {}
        }
    }

    fn on_query_progress(
        &mut self,
        id: QueryId,
        result: QueryResult,
        stats: QueryStats,
        last: bool,
    ) {
        if let QueryResult::Bootstrap(_) = result {
            if last {
                self.on_bootstrap_finished(id);
            }
            return;
        }
        let Some(pending) = self.queries.remove(&id) else {
            return;
        };
        match (pending, result) {
            (
                Pending::Put {
                    key,
                    required,
                    reply,
                },
                QueryResult::PutRecord(result),
            ) => {
                let result = match result {
                    Ok(_) => Ok(PutRecordOk { key, stats }),
                    Err(kad::PutRecordError::QuorumFailed { success, .. }) => {
                        Err(PutRecordError::QuorumFailed {
                            key: display_key(&key),
                            stored: success.len(),
                            required,
                        })
                    }
                    Err(kad::PutRecordError::Timeout { success, .. }) => {
                        Err(PutRecordError::Timeout {
                            key: display_key(&key),
                            stored: success.len(),
                            required,
                        })
                    }
                };
                let _ = reply.send(result);
            }
            (
                Pending::Get {
                    key,
                    required,
                    mut found,
                    reply,
                },
                QueryResult::GetRecord(result),
            ) => {
                let finished = match result {
                    Ok(KadGetRecordOk::FoundRecord(record)) => {
                        found.push(record);
                        if found.len() >= required {
                            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                                query.finish();
                            }
                            true
                        } else {
                            last
                        }
                    }
                    Ok(KadGetRecordOk::FinishedWithNoAdditionalRecord { .. }) => true,
                    Err(kad::GetRecordError::NotFound { .. }) => true,
                    Err(kad::GetRecordError::Timeout { .. }) if found.is_empty() => {
                        let _ = reply.send(Err(GetRecordError::Timeout {
                            key: display_key(&key),
                        }));
                        return;
                    }
                    Err(_) => true,
                };
                if !finished {
                    self.queries.insert(
                        id,
                        Pending::Get {
                            key,
                            required,
                            found,
                            reply,
                        },
                    );
                    return;
                }
                let result = if found.len() >= required {
                    let first = &found[0].record;
                    Ok(GetRecordOk {
                        key: key.clone(),
                        value: first.value.clone(),
                        publisher: first.publisher,
                        found_at: found.iter().map(|r| r.peer).collect(),
                        stats,
                    })
                } else if found.is_empty() {
                    Err(GetRecordError::NotFound {
                        key: display_key(&key),
                    })
                } else {
                    Err(GetRecordError::QuorumFailed {
                        key: display_key(&key),
                        found: found.len(),
                        required,
                    })
                };
                let _ = reply.send(result);
            }
            (Pending::Closest { key, reply }, QueryResult::GetClosestPeers(result)) => {
                let result = match result {
                    Ok(GetClosestPeersOk { peers, .. }) => {
                        Ok(peers.into_iter().map(peer_addresses).collect())
                    }
                    Err(GetClosestPeersError::Timeout { peers, .. }) => {
                        Err(ClosestPeersError::Timeout {
                            key: display_key(&key),
                            found: peers.into_iter().map(peer_addresses).collect(),
                        })
                    }
                };
                let _ = reply.send(result);
            }
            (Pending::Holders { discovery }, QueryResult::GetClosestPeers(result)) => {
                let (holders, timed_out) = match result {
                    Ok(GetClosestPeersOk { peers, .. }) => (peers, false),
                    Err(GetClosestPeersError::Timeout { peers, .. }) => (peers, true),
                };
                self.ask_holders(discovery, holders, timed_out);
            }
            (Pending::Register { namespace, reply }, QueryResult::StartProviding(result)) => {
                let result = match result {
                    Ok(_) => {
                        tracing::info!(%namespace, "registration announced");
                        self.subscribers.publish(&Event::Registered {
                            namespace: namespace.clone(),
                        });
                        Ok(())
                    }
                    Err(_) => Err(RegisterError::Timeout { namespace }),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
            (pending, result) => {
                tracing::error!(
                    ?pending,
                    ?result,
                    "query result does not match its operation"
                );
            }
        }
    }

    // ----- snapshots -----

    fn known_addresses(&mut self, peer: &PeerId) -> Vec<Multiaddr> {
        let mut addresses: Vec<Multiaddr> = Vec::new();
        if let Some(bucket) = self.swarm.behaviour_mut().kad.kbucket(*peer) {
            for entry in bucket.iter() {
                if entry.node.key.preimage() == peer {
                    addresses.extend(entry.node.value.iter().map(strip_p2p));
                }
            }
        }
        addresses.extend(self.addresses.get(peer).map(strip_p2p));
        let mut unique = Vec::with_capacity(addresses.len());
        for address in addresses {
            if !unique.contains(&address) {
                unique.push(address);
            }
        }
        unique
    }

    fn routing_table_size(&mut self) -> usize {
        self.swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .map(|b| b.num_entries())
            .sum()
    }

    fn routing_table(&mut self) -> RoutingTable {
        let local_peer_id = self.local_peer_id();
        let buckets = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .filter(|bucket| bucket.num_entries() > 0)
            .map(|bucket| Bucket {
                index: bucket.range().0.ilog2().unwrap_or(0),
                entries: bucket
                    .iter()
                    .map(|entry| RoutingEntry {
                        peer_id: *entry.node.key.preimage(),
                        addresses: entry.node.value.iter().cloned().collect(),
                        connected: matches!(entry.status, kad::NodeStatus::Connected),
                    })
                    .collect(),
            })
            .collect();
        RoutingTable {
            local_peer_id,
            buckets,
        }
    }

    fn stored_records(&mut self) -> Vec<StoredRecord> {
        let now = Instant::now();
        self.swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .records()
            .filter(|r| !r.is_expired(now))
            .map(|r| StoredRecord {
                key: r.key.to_vec(),
                value: r.value.clone(),
                publisher: r.publisher,
                expires_in: r.expires.map(|at| at.saturating_duration_since(now)),
            })
            .collect()
    }

    fn registrations(&mut self) -> Vec<Registration> {
        let now = Instant::now();
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let keys: Vec<RecordKey> = store
            .provider_keys(now)
            .map(|(key, _)| key.clone())
            .collect();
        let mut registrations = Vec::new();
        for key in keys {
            let Some(namespace) = Namespace::from_record_key(&key) else {
                continue;
            };
            for record in store
                .providers(&key)
                .into_iter()
                .filter(|p| !p.is_expired(now))
            {
                registrations.push(Registration {
                    namespace: namespace.clone(),
                    peer_id: record.provider,
                    addresses: record.addresses,
                    expires_in: record.expires.map(|at| at.saturating_duration_since(now)),
                });
            }
        }
        registrations.sort_by(|a, b| (&a.namespace, a.peer_id).cmp(&(&b.namespace, b.peer_id)));
        registrations
    }

    fn network_report(&mut self) -> NetworkReport {
        let now = Instant::now();
        let local_peer_id = self.local_peer_id();
        let serving = self.swarm.behaviour_mut().kad.mode() == Mode::Server;
        let buckets = self
            .swarm
            .behaviour_mut()
            .kad
            .kbuckets()
            .filter(|b| b.num_entries() > 0)
            .map(|b| (b.range().0.ilog2().unwrap_or(0), b.num_entries()))
            .collect();
        let store = self.swarm.behaviour_mut().kad.store_mut();
        let mut namespaces: Vec<(String, usize)> = store
            .provider_keys(now)
            .filter_map(|(key, live)| Some((Namespace::from_record_key(key)?.to_string(), live)))
            .collect();
        namespaces.sort();
        let records = store.record_count();
        NetworkReport {
            local_peer_id,
            role: self.role.kind(),
            serving,
            uptime: now.saturating_duration_since(self.started),
            connected_peers: self.swarm.connected_peers().count(),
            buckets,
            records,
            namespaces,
            registered_in: self.registered.iter().map(ToString::to_string).collect(),
            links: self.links.len(),
        }
    }
}

fn peer_addresses(info: kad::PeerInfo) -> PeerAddresses {
    PeerAddresses {
        peer_id: info.peer_id,
        addresses: info.addrs,
    }
}

/// An error with its chain of causes, which libp2p's messages often leave out.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `address` without a trailing `/p2p/<peer id>`.
fn strip_p2p(address: &Multiaddr) -> Multiaddr {
    let mut address = address.clone();
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address.pop();
    }
    address
}

/// Whether an address starts with an IP protocol.
fn is_ip(address: &Multiaddr) -> bool {
    matches!(
        address.iter().next(),
        Some(Protocol::Ip4(_) | Protocol::Ip6(_))
    )
}

/// Whether an address is on the loopback interface (or names `localhost`).
fn is_loopback(address: &Multiaddr) -> bool {
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        Some(Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name)) => {
            name == "localhost"
        }
        _ => false,
    }
}

/// Whether a reported address could be dialed at all: no unspecified IP, no
/// port 0. What a peer says about itself is not trusted further than that.
fn is_dialable(address: &Multiaddr) -> bool {
    address.iter().all(|protocol| match protocol {
        Protocol::Ip4(ip) => !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast(),
        Protocol::Ip6(ip) => !ip.is_unspecified() && !ip.is_multicast(),
        Protocol::Tcp(0) | Protocol::Udp(0) => false,
        _ => true,
    }) && !address.is_empty()
}

/// Addresses peers reported for themselves, for the peers most recently heard
/// from; bounded so that a flood of identities cannot grow it.
#[derive(Debug)]
struct AddressBook {
    capacity: usize,
    entries: HashMap<PeerId, Vec<Multiaddr>>,
    order: VecDeque<PeerId>,
}

impl AddressBook {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        let entry = self.entries.entry(peer).or_default();
        let fresh = entry.is_empty();
        for address in addresses {
            if !entry.contains(&address) {
                entry.push(address);
            }
        }
        // Newest last; a peer's own list stays bounded by dropping its oldest.
        let excess = entry.len().saturating_sub(16);
        entry.drain(..excess);
        if fresh {
            self.order.push_back(peer);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    fn get(&self, peer: &PeerId) -> impl Iterator<Item = &Multiaddr> {
        self.entries.get(peer).into_iter().flatten()
    }
}

/// Subscribers to node events, each with a bounded queue. A subscriber that
/// falls behind loses events and is told how many.
#[derive(Debug)]
struct Subscribers {
    capacity: usize,
    list: Vec<Subscriber>,
}

#[derive(Debug)]
struct Subscriber {
    sender: mpsc::Sender<Event>,
    missed: u64,
}

impl Subscribers {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            list: Vec::new(),
        }
    }

    fn subscribe(&mut self) -> EventStream {
        let (sender, events) = mpsc::channel(self.capacity);
        self.list.push(Subscriber { sender, missed: 0 });
        EventStream { events }
    }

    fn publish(&mut self, event: &Event) {
        self.list.retain_mut(|subscriber| {
            if subscriber.missed > 0 {
                match subscriber.sender.try_send(Event::Lagged {
                    missed: subscriber.missed,
                }) {
                    Ok(()) => subscriber.missed = 0,
                    Err(e) if e.is_disconnected() => return false,
                    Err(_) => {
                        subscriber.missed += 1;
                        return true;
                    }
                }
            }
            match subscriber.sender.try_send(event.clone()) {
                Ok(()) => true,
                Err(e) if e.is_disconnected() => false,
                Err(_) => {
                    subscriber.missed += 1;
                    true
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plausible_addresses_are_dialable() {
        for good in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip6/::1/udp/4001/quic-v1",
            "/dns4/example.org/tcp/443/wss",
            "/memory/7",
        ] {
            assert!(is_dialable(&good.parse().unwrap()), "{good}");
        }
        for bad in [
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::/tcp/1",
            "/ip4/127.0.0.1/tcp/0",
            "/ip4/224.0.0.1/udp/1/quic-v1",
        ] {
            assert!(!is_dialable(&bad.parse().unwrap()), "{bad}");
        }
        assert!(!is_dialable(&Multiaddr::empty()));
    }

    #[test]
    fn loopback_addresses_are_recognised() {
        for local in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/127.8.9.10/udp/1/quic-v1",
            "/ip6/::1/tcp/1",
            "/dns4/localhost/tcp/1",
        ] {
            assert!(is_loopback(&local.parse().unwrap()), "{local}");
        }
        for remote in [
            "/ip4/192.168.1.2/tcp/1",
            "/ip6/2001:db8::1/tcp/1",
            "/dns4/example.org/tcp/1",
            "/memory/5",
        ] {
            assert!(!is_loopback(&remote.parse().unwrap()), "{remote}");
        }
    }

    #[test]
    fn the_address_book_forgets_the_oldest_peers_first() {
        let mut book = AddressBook::new(2);
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let address: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        for peer in &peers {
            book.insert(*peer, vec![address.clone()]);
        }
        assert_eq!(book.get(&peers[0]).count(), 0);
        assert_eq!(book.get(&peers[2]).count(), 1);
        // Re-inserting a known address does not duplicate it.
        book.insert(peers[2], vec![address.clone()]);
        assert_eq!(book.get(&peers[2]).count(), 1);
    }

    #[test]
    fn a_slow_subscriber_is_told_what_it_missed() {
        let mut subscribers = Subscribers::new(1);
        let mut stream = subscribers.subscribe();
        // mpsc gives each sender one slot beyond the capacity: two fit.
        for _ in 0..5 {
            subscribers.publish(&Event::Bootstrapped {
                routing_table_size: 1,
            });
        }
        let mut received = Vec::new();
        while let Ok(event) = stream.events.try_recv() {
            received.push(event);
        }
        assert_eq!(received.len(), 2);
        subscribers.publish(&Event::Bootstrapped {
            routing_table_size: 2,
        });
        let lagged = stream.events.try_recv().unwrap();
        assert_eq!(lagged, Event::Lagged { missed: 3 });
        assert_eq!(
            stream.events.try_recv().unwrap(),
            Event::Bootstrapped {
                routing_table_size: 2
            }
        );
    }

    #[test]
    fn closed_subscribers_are_dropped() {
        let mut subscribers = Subscribers::new(4);
        drop(subscribers.subscribe());
        subscribers.publish(&Event::Bootstrapped {
            routing_table_size: 0,
        });
        assert!(subscribers.list.is_empty());
    }
}
