//! Node configuration: one builder fills every default, `build` validates.
//!
//! ```
//! use std::time::Duration;
//!
//! let config = dht_core::Config::builder()
//!     .replication_factor(8)
//!     .namespace_ttl(Duration::from_secs(120))
//!     .namespace_refresh_interval(Duration::from_secs(45))
//!     .build()
//!     .expect("valid configuration");
//! assert_eq!(config.replication_factor().get(), 8);
//!
//! // Values that cannot work are refused with a reason and a stable code.
//! use dht_core::ErrorCode;
//! let err = dht_core::Config::builder().replication_factor(0).build().unwrap_err();
//! assert_eq!(err.code(), "zero-setting");
//! assert_eq!(err.to_string(), "replication factor must not be zero");
//! ```

use std::{num::NonZeroUsize, time::Duration};

use libp2p::{Multiaddr, PeerId, StreamProtocol, swarm};

mod builder;
mod relay;

pub use builder::ConfigBuilder;
pub use relay::{CIRCUIT_DIAL_TIMEOUT, DEFAULT_RELAY_RESERVATIONS, RelayLimits};

use crate::{
    message::MessageLimits,
    record::{StoreLimits, storage::StorageHandle},
};

/// The Kademlia protocol this project speaks unless told otherwise.
///
/// It is private to this network on purpose: a node never joins someone
/// else's DHT (such as IPFS's `/ipfs/kad/1.0.0`) by accident. Any libp2p
/// implementation joins ours by configuring its Kademlia with this protocol
/// name (see the crate documentation).
pub const DEFAULT_KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ns-dht/kad/1.0.0");

/// The identify protocol version nodes announce.
pub const IDENTIFY_PROTOCOL_VERSION: &str = "/ns-dht/1.0.0";

/// Whether a node answers DHT requests from others (Kademlia server mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServerMode {
    /// Always answer DHT requests and be added to others' routing tables.
    /// Right for any node others can dial.
    #[default]
    Always,
    /// Never: only query. Right for nodes nobody can dial, such as browser tabs,
    /// which others would otherwise add to their routing tables in vain.
    Never,
    /// Find out (native hosts; for nodes that may be behind a NAT): ask
    /// peers to dial this node back at the address they see it at (AutoNAT
    /// v2), only query until one answered, serve at an address a dial-back
    /// reached, and through relays (as [`Relayed`](Self::Relayed), with a
    /// transport that has the relay client) once a dial-back failed with
    /// none confirmed. Peers reached through a relay are dialed directly at
    /// once from both sides (DCUtR, which every native node speaks unless
    /// it is [`Relayed`](Self::Relayed), like a tab). Kademlia's mode follows the confirmed
    /// external addresses, circuits included. In the browser, which cannot
    /// be dialed back, the node only queries, as with
    /// [`Never`](Self::Never).
    Auto,
    /// Serve through circuit relays: take a reservation on relays this node
    /// is connected to (up to [`ConfigBuilder::relay_reservations`]), announce
    /// the `/p2p-circuit` addresses, and answer DHT requests while at least
    /// one reservation holds; only query while none does. Right for nodes
    /// nobody can dial directly, such as browser tabs.
    Relayed,
}

/// Bounds on connections, applied by `libp2p::connection_limits` and
/// [`crate::ip_limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Established connections at most, inbound and outbound. Default 4096.
    pub max_established: u32,
    /// Established inbound connections at most, so that peers dialing in
    /// cannot take the slots this node's own lookups need. Default 3072.
    pub max_established_incoming: u32,
    /// Established connections to one peer at most. Default 3: two peers
    /// that dial each other at once open two, and a hole punch adds a
    /// direct one to a relayed one (two relayed ones when both peers are
    /// behind NATs and dialed each other through the relay).
    pub max_established_per_peer: u32,
    /// Inbound connections still being negotiated at most. Default 256.
    pub max_pending_incoming: u32,
    /// Inbound connections, pending or established, from one IPv4 address
    /// or IPv6 /64 at most, however many peer ids it uses. Default 64.
    pub max_incoming_per_ip: u32,
    /// Whether [`max_incoming_per_ip`](Self::max_incoming_per_ip) applies
    /// to loopback connections, which come from this host's own processes.
    /// Default false: local test networks run hundreds of nodes on
    /// 127.0.0.1.
    pub limit_loopback: bool,
    /// Connections kept open while idle because the remote pinned them
    /// (it uses this node as its bootstrap) though this node did not; more
    /// close when idle like any other. Default 1024.
    pub max_pinned_by_others: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_established: 4096,
            max_established_incoming: 3072,
            max_established_per_peer: 3,
            max_pending_incoming: 256,
            max_incoming_per_ip: 64,
            limit_loopback: false,
            max_pinned_by_others: crate::keep_alive::DEFAULT_MAX_PINNED_BY_OTHERS,
        }
    }
}

/// How many routing-table entries one subnet (an IPv4 /24 or IPv6 /48,
/// where the peer answered from) may hold; see the node's diversity rule.
/// Peers reached through a relay circuit count against the relay's subnet,
/// in a group apart from its direct peers, bounded per bucket only (so that
/// the tabs of one relay can each be known near their own ids). Loopback
/// peers are exempt unless [`ConnectionLimits::limit_loopback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingDiversity {
    /// Peers of one subnet (or reached through one relay subnet) in one
    /// bucket at most. Default 2.
    pub per_bucket: usize,
    /// Peers connected directly from one subnet in the whole table at most.
    /// Default 8.
    pub per_table: usize,
}

impl Default for RoutingDiversity {
    fn default() -> Self {
        Self {
            per_bucket: 2,
            per_table: 8,
        }
    }
}

/// A validated node configuration. Build one with [`Config::builder`];
/// [`Config::default`] is the builder's defaults.
#[derive(Clone, Debug)]
pub struct Config {
    pub(crate) kad_protocol: StreamProtocol,
    pub(crate) replication_factor: NonZeroUsize,
    pub(crate) parallelism: NonZeroUsize,
    pub(crate) query_timeout: Duration,
    pub(crate) record_ttl: Option<Duration>,
    pub(crate) record_republish_interval: Option<Duration>,
    pub(crate) record_replication_interval: Option<Duration>,
    pub(crate) rereplication_delay: Option<Duration>,
    pub(crate) store_limits: StoreLimits,
    pub(crate) max_message_size: usize,
    pub(crate) namespace_ttl: Duration,
    pub(crate) namespace_refresh_interval: Duration,
    pub(crate) discover_interval: Duration,
    pub(crate) heartbeat_interval: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_new_links_per_round: usize,
    pub(crate) bootstrap_peers: Vec<(PeerId, Multiaddr)>,
    pub(crate) bootstrap_interval: Option<Duration>,
    pub(crate) reconnect_initial_delay: Duration,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) unreachable_failures: u32,
    pub(crate) unreachable_span: Duration,
    pub(crate) relayed_peer_check_interval: Duration,
    pub(crate) idle_connection_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) connection_limits: ConnectionLimits,
    pub(crate) server_mode: ServerMode,
    pub(crate) advertise_listen_addresses: bool,
    pub(crate) agent_version: String,
    pub(crate) command_buffer: usize,
    pub(crate) event_buffer: usize,
    pub(crate) max_addresses_per_peer: usize,
    pub(crate) routing_diversity: RoutingDiversity,
    pub(crate) relay_server: Option<RelayLimits>,
    pub(crate) relay_reservations: usize,
    pub(crate) message_limits: MessageLimits,
    pub(crate) storage: Option<StorageHandle>,
}

impl Default for Config {
    fn default() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }
}

impl Config {
    /// A builder holding every default, documented on each setter.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                kad_protocol: DEFAULT_KAD_PROTOCOL,
                replication_factor: NonZeroUsize::new(20).expect("20 > 0"),
                parallelism: NonZeroUsize::new(3).expect("3 > 0"),
                query_timeout: Duration::from_secs(30),
                record_ttl: Some(Duration::from_secs(48 * 60 * 60)),
                record_republish_interval: Some(Duration::from_secs(22 * 60 * 60)),
                record_replication_interval: Some(Duration::from_secs(60 * 60)),
                rereplication_delay: Some(Duration::from_secs(10)),
                store_limits: StoreLimits::default(),
                max_message_size: 256 * 1024,
                namespace_ttl: Duration::from_secs(10 * 60),
                namespace_refresh_interval: Duration::from_secs(4 * 60),
                discover_interval: Duration::from_secs(10),
                heartbeat_interval: Duration::from_secs(20),
                handshake_timeout: Duration::from_secs(10),
                max_new_links_per_round: 16,
                bootstrap_peers: Vec::new(),
                bootstrap_interval: Some(Duration::from_secs(5 * 60)),
                reconnect_initial_delay: Duration::from_secs(1),
                reconnect_max_delay: Duration::from_secs(60),
                unreachable_failures: 3,
                unreachable_span: Duration::from_secs(30),
                relayed_peer_check_interval: Duration::from_secs(5 * 60),
                idle_connection_timeout: Duration::from_secs(60),
                ping_interval: Duration::from_secs(60),
                connection_limits: ConnectionLimits::default(),
                server_mode: ServerMode::Always,
                advertise_listen_addresses: true,
                agent_version: concat!("ns-dht/", env!("CARGO_PKG_VERSION")).to_owned(),
                command_buffer: 64,
                event_buffer: 1024,
                max_addresses_per_peer: 16,
                routing_diversity: RoutingDiversity::default(),
                relay_server: None,
                relay_reservations: DEFAULT_RELAY_RESERVATIONS,
                message_limits: MessageLimits::default(),
                storage: None,
            },
            errors: Vec::new(),
        }
    }

    /// The Kademlia protocol name.
    pub fn kad_protocol(&self) -> &StreamProtocol {
        &self.kad_protocol
    }

    /// `k`: how many peers store each record and answer each lookup.
    pub fn replication_factor(&self) -> NonZeroUsize {
        self.replication_factor
    }

    /// How long after the closest peers of its records change a node sends
    /// them on (`None`: only at the periodic replication).
    pub fn rereplication_delay(&self) -> Option<Duration> {
        self.rereplication_delay
    }

    /// Bounds of the local record store.
    pub fn store_limits(&self) -> &StoreLimits {
        &self.store_limits
    }

    /// How long a namespace registration lives without a refresh.
    pub fn namespace_ttl(&self) -> Duration {
        self.namespace_ttl
    }

    /// How often a node re-announces its namespace registrations.
    pub fn namespace_refresh_interval(&self) -> Duration {
        self.namespace_refresh_interval
    }

    /// The bootstrap peers the node joins through.
    pub fn bootstrap_peers(&self) -> &[(PeerId, Multiaddr)] {
        &self.bootstrap_peers
    }

    /// Whether the node serves DHT requests.
    pub fn server_mode(&self) -> ServerMode {
        self.server_mode
    }

    /// Bounds on messages between linked peers.
    pub fn message_limits(&self) -> &MessageLimits {
        &self.message_limits
    }

    /// Where the node keeps its state across restarts, if anywhere.
    pub fn storage(&self) -> Option<&StorageHandle> {
        self.storage.as_ref()
    }

    /// The limits of this node's circuit relay, if it relays for others.
    pub fn relay_server(&self) -> Option<&RelayLimits> {
        self.relay_server.as_ref()
    }

    /// How long a connection with nothing to do stays open.
    pub fn idle_connection_timeout(&self) -> Duration {
        self.idle_connection_timeout
    }

    /// Applies the swarm settings this configuration implies (the idle
    /// connection timeout) to a host's swarm configuration. Hosts call it from
    /// `SwarmBuilder::with_swarm_config`.
    pub fn swarm_config(&self, base: swarm::Config) -> swarm::Config {
        base.with_idle_connection_timeout(self.idle_connection_timeout)
    }
}
