//! The builder of [`Config`]: every setter with its default, and the
//! checks `build` makes of the values together.

use std::{num::NonZeroUsize, time::Duration};

use libp2p::{Multiaddr, StreamProtocol, multiaddr::Protocol};

use super::{Config, ConnectionLimits, RelayLimits, RoutingDiversity, ServerMode};
use crate::{
    error::ConfigError,
    record::{MAX_KEY_LEN, StoreLimits},
};

/// Bytes a Kademlia message needs beyond the record value it carries.
const MESSAGE_OVERHEAD: usize = 4096;

/// Builds a [`Config`]. Every setter documents its default; [`build`](Self::build)
/// checks the values together and says what is wrong.
#[derive(Clone, Debug)]
#[must_use]
pub struct ConfigBuilder {
    pub(super) config: Config,
    pub(super) errors: Vec<ConfigError>,
}

impl ConfigBuilder {
    /// The Kademlia protocol name. Default [`super::DEFAULT_KAD_PROTOCOL`].
    /// Nodes only talk DHT with peers that use the same name.
    pub fn kad_protocol(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        match StreamProtocol::try_from_owned(name.clone()) {
            Ok(protocol) => self.config.kad_protocol = protocol,
            Err(_) => self.errors.push(ConfigError::InvalidProtocol { name }),
        }
        self
    }

    /// `k`, the replication factor: records are stored at the `k` peers closest
    /// to their key, lookups return `k` peers, buckets hold `k` entries.
    /// Default 20.
    pub fn replication_factor(mut self, k: usize) -> Self {
        match NonZeroUsize::new(k) {
            Some(k) => self.config.replication_factor = k,
            None => self.errors.push(ConfigError::Zero {
                field: "replication factor",
            }),
        }
        self
    }

    /// `α`, the number of requests a lookup keeps in flight. Default 3.
    pub fn parallelism(mut self, alpha: usize) -> Self {
        match NonZeroUsize::new(alpha) {
            Some(alpha) => self.config.parallelism = alpha,
            None => self.errors.push(ConfigError::Zero {
                field: "parallelism",
            }),
        }
        self
    }

    /// How long one lookup (get, put, closest peers, discovery) may take.
    /// Default 30 s.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.config.query_timeout = timeout;
        self
    }

    /// How long a value record lives at the peers that store it; `None` means
    /// forever. Default 48 h.
    pub fn record_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.config.record_ttl = ttl;
        self
    }

    /// How often a publisher re-publishes its own records (`None`: never).
    /// Default 22 h.
    pub fn record_republish_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.record_republish_interval = interval;
        self
    }

    /// How often a node re-replicates the records it holds to the current
    /// closest peers (`None`: never). Default 1 h.
    pub fn record_replication_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.record_replication_interval = interval;
        self
    }

    /// How long after the peers closest to a held record change (a closer
    /// peer entered the routing table; one of them left it or could not be
    /// reached) this node sends the record to the peers that now belong to
    /// the `k` closest. Changes are gathered this long, so that a burst of
    /// them costs one pass over the store. `None`: only the periodic
    /// replication ([`record_replication_interval`](Self::record_replication_interval))
    /// repairs them. Default 10 s.
    pub fn rereplicate_after(mut self, delay: Option<Duration>) -> Self {
        self.config.rereplication_delay = delay;
        self
    }

    /// Keep the node's records, the registrations it holds for others and
    /// its routing table in `storage`, and start from what it kept: a write
    /// from a peer is acknowledged only once `storage` has it, and a node
    /// whose bootstrap peers are gone rejoins through the peers it kept.
    /// Default: none (everything is lost when the node stops). Not in the
    /// browser, where tabs keep nothing.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn storage(mut self, storage: std::sync::Arc<dyn crate::record::Storage>) -> Self {
        self.config.storage = Some(storage);
        self
    }

    /// Bounds of the local record store. Defaults in [`StoreLimits`].
    pub fn store_limits(mut self, limits: StoreLimits) -> Self {
        self.config.store_limits = limits;
        self
    }

    /// Largest value accepted in a record, in bytes; a shortcut into
    /// [`StoreLimits::max_value_size`], which also raises
    /// [`StoreLimits::max_record_bytes`] to hold at least one such record.
    /// Default 64 KiB.
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        let limits = &mut self.config.store_limits;
        limits.max_value_size = bytes;
        limits.max_record_bytes = limits
            .max_record_bytes
            .max(bytes.saturating_add(MAX_KEY_LEN));
        self
    }

    /// Largest DHT message sent or accepted, in bytes. It must hold the largest
    /// record plus framing, and a provider list. Default 256 KiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// How long a namespace registration lives at the peers that store it
    /// without a refresh. Default 10 min.
    pub fn namespace_ttl(mut self, ttl: Duration) -> Self {
        self.config.namespace_ttl = ttl;
        self
    }

    /// How often a node re-announces its namespace registrations; shorter than
    /// the TTL. Default 4 min.
    pub fn namespace_refresh_interval(mut self, interval: Duration) -> Self {
        self.config.namespace_refresh_interval = interval;
        self
    }

    /// How often a [`crate::Role::Dialer`] looks for new members of its
    /// namespace. Default 10 s.
    pub fn discover_interval(mut self, interval: Duration) -> Self {
        self.config.discover_interval = interval;
        self
    }

    /// How often a dialer repeats the handshake with linked peers to learn that
    /// they are still registered. Default 20 s.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat_interval = interval;
        self
    }

    /// How long a namespace handshake may take. Default 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How many new members one discovery round of a dialer links to at
    /// most; the others wait for later rounds. A members list is what a
    /// storing peer says, so this bounds the dials a lying peer can cause.
    /// Default 16.
    pub fn max_new_links_per_round(mut self, count: usize) -> Self {
        self.config.max_new_links_per_round = count;
        self
    }

    /// Adds a bootstrap peer. The address must end in `/p2p/<peer id>` so the
    /// node knows whom it reaches. No default.
    pub fn bootstrap_peer(mut self, address: Multiaddr) -> Self {
        match address.iter().last() {
            Some(Protocol::P2p(peer)) => self.config.bootstrap_peers.push((peer, address)),
            _ => self
                .errors
                .push(ConfigError::BootstrapWithoutPeerId { address }),
        }
        self
    }

    /// Adds several bootstrap peers, see [`bootstrap_peer`](Self::bootstrap_peer).
    pub fn bootstrap_peers(self, addresses: impl IntoIterator<Item = Multiaddr>) -> Self {
        addresses.into_iter().fold(self, Self::bootstrap_peer)
    }

    /// How often the node refreshes its routing table with a bootstrap lookup
    /// (`None`: only when it joins). Default 5 min.
    pub fn bootstrap_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.bootstrap_interval = interval;
        self
    }

    /// Delay before the first reconnection to a bootstrap peer that went away;
    /// it doubles after each failure up to `max`. Defaults 1 s and 60 s.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.reconnect_initial_delay = initial;
        self.config.reconnect_max_delay = max;
        self
    }

    /// When a peer that cannot be reached leaves the routing table: after
    /// `failures` failed dials at least `span` apart from first to last,
    /// while other peers answer. Dropping dead peers keeps lookups from
    /// waiting on them; waiting for several failures over a while keeps a
    /// short partition from draining the table. Defaults 3 and 30 s.
    pub fn drop_unreachable_after(mut self, failures: u32, span: Duration) -> Self {
        self.config.unreachable_failures = failures;
        self.config.unreachable_span = span;
        self
    }

    /// How long a peer reachable only through relays (a browser tab) stays
    /// in the routing table with nothing heard from it before it is dialed
    /// to check that it is still there. A check that every relay answers
    /// with "no reservation" removes it; so does the same answer to any
    /// other dial, and a relayed peer whose connection breaks is checked 2 s
    /// later (at most once per interval). A closed tab therefore leaves
    /// every routing table within this interval plus about 15 s; each live
    /// tab costs each node that holds it at most two circuits per interval.
    /// Default 5 minutes.
    pub fn check_relayed_peers_every(mut self, interval: Duration) -> Self {
        self.config.relayed_peer_check_interval = interval;
        self
    }

    /// How long a connection with nothing to do stays open. Connections to
    /// bootstrap peers and linked namespace peers are kept regardless.
    /// Default 60 s.
    pub fn idle_connection_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_connection_timeout = timeout;
        self
    }

    /// How often each connection is pinged to check it is alive and to
    /// measure its round-trip time. Every open connection pays for it, so
    /// with many connections it is a real share of a node's idle CPU.
    /// Default 60 s (libp2p's default is 15 s).
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_interval = interval;
        self
    }

    /// Connection bounds. Defaults in [`ConnectionLimits`].
    pub fn connection_limits(mut self, limits: ConnectionLimits) -> Self {
        self.config.connection_limits = limits;
        self
    }

    /// Whether the node answers DHT requests. Default [`ServerMode::Always`];
    /// a [`crate::Role::Bootstrap`] node always serves.
    pub fn server_mode(mut self, mode: ServerMode) -> Self {
        self.config.server_mode = mode;
        self
    }

    /// Relay for others (circuit relay v2) within `limits`, or not at all
    /// (`None`). Default `None`; the native host turns it on for bootstrap
    /// nodes, since every tab is connected to one. A browser cannot relay:
    /// there `build` refuses it.
    pub fn relay_server(mut self, limits: Option<RelayLimits>) -> Self {
        self.config.relay_server = limits;
        self
    }

    /// Bounds on messages between linked peers: size, and each peer's burst
    /// and rate. Defaults in [`crate::MessageLimits`].
    pub fn message_limits(mut self, limits: crate::MessageLimits) -> Self {
        self.config.message_limits = limits;
        self
    }

    /// How many relays a [`ServerMode::Relayed`] node holds reservations on
    /// at once. Default [`super::DEFAULT_RELAY_RESERVATIONS`] (2).
    pub fn relay_reservations(mut self, relays: usize) -> Self {
        self.config.relay_reservations = relays;
        self
    }

    /// Whether the node's listen addresses are announced as its external
    /// addresses (in namespace registrations and identify). Right when others
    /// reach the node at the addresses it listens on, as on a LAN or loopback.
    /// Default true. Not in [`ServerMode::Auto`], which announces only the
    /// addresses a peer dialed it back at.
    pub fn advertise_listen_addresses(mut self, advertise: bool) -> Self {
        self.config.advertise_listen_addresses = advertise;
        self
    }

    /// The agent version sent in identify. Default `ns-dht/<version>`.
    pub fn agent_version(mut self, agent: impl Into<String>) -> Self {
        self.config.agent_version = agent.into();
        self
    }

    /// Commands that may wait for the node before callers wait too. Default 64.
    pub fn command_buffer(mut self, capacity: usize) -> Self {
        self.config.command_buffer = capacity;
        self
    }

    /// Events buffered per subscriber; a subscriber that falls further behind
    /// is told how many it missed. Default 1024.
    pub fn event_buffer(mut self, capacity: usize) -> Self {
        self.config.event_buffer = capacity;
        self
    }

    /// Addresses kept from what a peer reports about itself. Default 16.
    pub fn max_addresses_per_peer(mut self, count: usize) -> Self {
        self.config.max_addresses_per_peer = count;
        self
    }

    /// How many routing-table entries one subnet may hold, per bucket and in
    /// all. Default 2 and 8.
    pub fn routing_diversity(mut self, diversity: RoutingDiversity) -> Self {
        self.config.routing_diversity = diversity;
        self
    }

    /// Checks the values together and returns the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let Self { config, mut errors } = self;
        if !errors.is_empty() {
            return Err(errors.remove(0));
        }
        let durations = [
            ("query timeout", config.query_timeout),
            ("namespace TTL", config.namespace_ttl),
            (
                "namespace refresh interval",
                config.namespace_refresh_interval,
            ),
            ("discover interval", config.discover_interval),
            ("heartbeat interval", config.heartbeat_interval),
            ("handshake timeout", config.handshake_timeout),
            ("initial reconnect delay", config.reconnect_initial_delay),
            ("idle connection timeout", config.idle_connection_timeout),
            ("ping interval", config.ping_interval),
            (
                "relayed peer check interval",
                config.relayed_peer_check_interval,
            ),
        ];
        let optional_durations = [
            ("record TTL", config.record_ttl),
            (
                "record republish interval",
                config.record_republish_interval,
            ),
            (
                "record replication interval",
                config.record_replication_interval,
            ),
            ("re-replication delay", config.rereplication_delay),
            ("bootstrap interval", config.bootstrap_interval),
        ];
        for (field, value) in durations.into_iter().chain(
            optional_durations
                .into_iter()
                .filter_map(|(f, d)| Some((f, d?))),
        ) {
            if value.is_zero() {
                return Err(ConfigError::Zero { field });
            }
        }
        let counts = [
            ("max records", config.store_limits.max_records),
            ("max record size", config.store_limits.max_value_size),
            ("max provider keys", config.store_limits.max_provider_keys),
            (
                "max providers per key",
                config.store_limits.max_providers_per_key,
            ),
            (
                "max addresses per provider",
                config.store_limits.max_addresses_per_provider,
            ),
            ("command buffer", config.command_buffer),
            ("event buffer", config.event_buffer),
            ("max addresses per peer", config.max_addresses_per_peer),
            (
                "routing peers per subnet and bucket",
                config.routing_diversity.per_bucket,
            ),
            (
                "routing peers per subnet",
                config.routing_diversity.per_table,
            ),
            ("max new links per round", config.max_new_links_per_round),
            (
                "failures before an unreachable peer is dropped",
                config.unreachable_failures as usize,
            ),
            (
                "max established connections",
                config.connection_limits.max_established as usize,
            ),
            (
                "max connections per peer",
                config.connection_limits.max_established_per_peer as usize,
            ),
            (
                "max inbound connections",
                config.connection_limits.max_established_incoming as usize,
            ),
            (
                "max inbound connections per IP",
                config.connection_limits.max_incoming_per_ip as usize,
            ),
            ("max record bytes", config.store_limits.max_record_bytes),
            ("relay reservations", config.relay_reservations),
            ("max message bytes", config.message_limits.max_bytes),
            ("message burst", config.message_limits.burst as usize),
            (
                "messages per second",
                config.message_limits.per_second as usize,
            ),
            (
                "max provider records",
                config.store_limits.max_provider_records,
            ),
        ];
        let relay_counts = config.relay_server.iter().flat_map(RelayLimits::counts);
        if let Some((field, _)) = counts
            .into_iter()
            .chain(relay_counts)
            .find(|(_, n)| *n == 0)
        {
            return Err(ConfigError::Zero { field });
        }
        if cfg!(target_arch = "wasm32") && config.relay_server.is_some() {
            return Err(ConfigError::RelayInBrowser);
        }
        if config.namespace_refresh_interval >= config.namespace_ttl {
            return Err(ConfigError::RefreshNotBeforeTtl {
                refresh: config.namespace_refresh_interval,
                ttl: config.namespace_ttl,
            });
        }
        if config.reconnect_max_delay < config.reconnect_initial_delay {
            return Err(ConfigError::BackoffOrder {
                initial: config.reconnect_initial_delay,
                max: config.reconnect_max_delay,
            });
        }
        let needed = config
            .store_limits
            .max_value_size
            .saturating_add(MESSAGE_OVERHEAD);
        if config.max_message_size < needed {
            return Err(ConfigError::MessageTooSmall {
                message: config.max_message_size,
                needed,
            });
        }
        let largest = config
            .store_limits
            .max_value_size
            .saturating_add(MAX_KEY_LEN);
        if config.store_limits.max_record_bytes < largest {
            return Err(ConfigError::RecordBytesTooSmall {
                bytes: config.store_limits.max_record_bytes,
                needed: largest,
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use libp2p::PeerId;

    use super::*;
    use crate::config::DEFAULT_KAD_PROTOCOL;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = Config::default();
        assert_eq!(config.kad_protocol(), &DEFAULT_KAD_PROTOCOL);
        assert_eq!(config.replication_factor().get(), 20);
        assert_eq!(config.namespace_ttl(), Duration::from_secs(600));
        assert_eq!(
            config.namespace_refresh_interval(),
            Duration::from_secs(240)
        );
        assert_eq!(config.server_mode(), ServerMode::Always);
    }

    #[test]
    fn invalid_values_are_refused_with_a_reason() {
        let refresh_after_ttl = Config::builder()
            .namespace_ttl(Duration::from_secs(60))
            .namespace_refresh_interval(Duration::from_secs(60))
            .build();
        assert!(matches!(
            refresh_after_ttl,
            Err(ConfigError::RefreshNotBeforeTtl { .. })
        ));

        let tiny_budget = Config::builder()
            .store_limits(StoreLimits {
                max_record_bytes: 1000,
                ..StoreLimits::default()
            })
            .build();
        assert!(matches!(
            tiny_budget,
            Err(ConfigError::RecordBytesTooSmall { .. })
        ));

        let tiny_messages = Config::builder().max_message_size(1024).build();
        assert!(matches!(
            tiny_messages,
            Err(ConfigError::MessageTooSmall { .. })
        ));

        let no_peer_id = Config::builder()
            .bootstrap_peer("/ip4/127.0.0.1/tcp/4001".parse().unwrap())
            .build();
        assert!(matches!(
            no_peer_id,
            Err(ConfigError::BootstrapWithoutPeerId { .. })
        ));

        let bad_protocol = Config::builder().kad_protocol("kad").build();
        assert!(matches!(
            bad_protocol,
            Err(ConfigError::InvalidProtocol { .. })
        ));

        let zero = Config::builder().query_timeout(Duration::ZERO).build();
        assert_eq!(
            zero.unwrap_err(),
            ConfigError::Zero {
                field: "query timeout"
            }
        );

        let backwards = Config::builder()
            .reconnect_backoff(Duration::from_secs(10), Duration::from_secs(1))
            .build();
        assert!(matches!(backwards, Err(ConfigError::BackoffOrder { .. })));
    }

    #[test]
    fn bootstrap_peers_keep_their_peer_id() {
        let peer = PeerId::random();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        let config = Config::builder()
            .bootstrap_peer(address.clone())
            .build()
            .unwrap();
        assert_eq!(config.bootstrap_peers(), &[(peer, address)]);
    }
}
