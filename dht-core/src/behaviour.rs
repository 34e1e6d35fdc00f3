//! The network behaviour every node runs, whatever its role or host.

// The derive generates `BehaviourEvent`, one variant per field, undocumented.
#![allow(missing_docs)]

use libp2p::{
    StreamProtocol, connection_limits, identify,
    identity::Keypair,
    kad::{self, BucketInserts, Caching, StoreInserts},
    ping, relay, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
};

use crate::{
    config::{Config, IDENTIFY_PROTOCOL_VERSION, ServerMode},
    ip_limits,
    kademlia::Kademlia,
    keep_alive,
    namespace::{NAMESPACE_PROTOCOL, NamespaceCodec},
    native,
    record::Store,
};

/// Kademlia with a bounded record store, identify (wired to Kademlia by the
/// [`crate::Node`]), ping, the namespace handshake, pinned connections,
/// connection limits (in total, inbound, per peer and per IP address),
/// the circuit relay v2 client (if the host's transport can dial circuits),
/// and on native hosts what a node needs of the relay server, AutoNAT v2 and
/// DCUtR ([`crate::native`]).
///
/// Hosts build it inside `SwarmBuilder::with_behaviour` with
/// [`Behaviour::new`] (or, after `with_relay_client`,
/// [`Behaviour::with_relay_client`]) and hand the swarm to
/// [`crate::Node::new`].
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) ip_limits: ip_limits::Behaviour,
    pub(crate) kad: Kademlia,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) namespace: request_response::Behaviour<NamespaceCodec>,
    pub(crate) keep_alive: keep_alive::Behaviour,
    pub(crate) relay_client: Toggle<relay::client::Behaviour>,
    pub(crate) native: Toggle<native::NativeBehaviour>,
}

impl Behaviour {
    /// The behaviour of a node with identity `keypair` and configuration
    /// `config`, for a transport that cannot dial or listen through relays:
    /// the node neither reaches peers behind relays nor serves through one.
    pub fn new(keypair: &Keypair, config: &Config) -> Self {
        Self::build(keypair, config, None)
    }

    /// The behaviour for a transport built with libp2p's relay client
    /// transport (`SwarmBuilder::with_relay_client`, or
    /// `relay::client::new` by hand), whose behaviour half is `relay_client`:
    /// the node dials `/p2p-circuit` addresses and, in
    /// [`crate::ServerMode::Relayed`], serves through relays.
    pub fn with_relay_client(
        keypair: &Keypair,
        config: &Config,
        relay_client: relay::client::Behaviour,
    ) -> Self {
        Self::build(keypair, config, Some(relay_client))
    }

    fn build(
        keypair: &Keypair,
        config: &Config,
        relay_client: Option<relay::client::Behaviour>,
    ) -> Self {
        let local_peer_id = keypair.public().to_peer_id();

        let mut kad_config = kad::Config::new(config.kad_protocol.clone());
        kad_config
            .set_replication_factor(config.replication_factor)
            .set_parallelism(config.parallelism)
            .set_query_timeout(config.query_timeout)
            .set_record_ttl(config.record_ttl)
            .set_publication_interval(config.record_republish_interval)
            .set_replication_interval(config.record_replication_interval)
            .set_provider_record_ttl(Some(config.namespace_ttl))
            .set_provider_publication_interval(Some(config.namespace_refresh_interval))
            .set_max_packet_size(config.max_message_size)
            // Kademlia stores inbound writes directly and acknowledges only
            // those the store takes, so a writer's quorum never counts a
            // node that refused its record. The store checks every record
            // and charges it to its sender (see `Kademlia`).
            .set_record_filtering(StoreInserts::Unfiltered)
            .set_caching(Caching::Disabled)
            // Peers enter the routing table only through the node, once they
            // answered identify and their subnet has room (node/diversity.rs).
            .set_kbucket_inserts(BucketInserts::Manual)
            .set_periodic_bootstrap_interval(config.bootstrap_interval);
        let limits = config.store_limits.clone();
        let store = match &config.storage {
            // Unreachable in the browser, whose storage handle has no values.
            #[cfg_attr(target_arch = "wasm32", allow(unreachable_code))]
            Some(storage) => Store::with_storage(local_peer_id, limits, storage.clone()),
            None => Store::new(local_peer_id, limits),
        };
        let bounds = &config.connection_limits;
        let kad = Kademlia::new(
            kad::Behaviour::with_config(local_peer_id, store, kad_config),
            bounds.limit_loopback,
        );

        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
                .with_agent_version(config.agent_version.clone())
                .with_push_listen_addr_updates(true),
        );

        let namespace = request_response::Behaviour::with_codec(
            NamespaceCodec::new(config.message_limits.max_bytes),
            [(NAMESPACE_PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.handshake_timeout)
                .with_max_concurrent_streams(64),
        );

        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(bounds.max_established))
                .with_max_established_incoming(Some(bounds.max_established_incoming))
                .with_max_established_per_peer(Some(bounds.max_established_per_peer))
                .with_max_pending_incoming(Some(bounds.max_pending_incoming)),
        );

        // Nodes that serve test the reachability of others; nodes that must
        // find out their own ask. A node that reaches peers through relays
        // tries to reach them directly too (a hole punch), unless it serves
        // only through relays as a browser tab does, which cannot.
        let mode = config.server_mode;
        let auto = mode == ServerMode::Auto;
        let native = native::behaviour(
            local_peer_id,
            config.relay_server,
            auto,
            auto || mode == ServerMode::Always,
            relay_client.is_some() && mode != ServerMode::Relayed,
        );

        Self {
            limits,
            ip_limits: ip_limits::Behaviour::new(bounds.max_incoming_per_ip, bounds.limit_loopback),
            kad,
            identify,
            ping: ping::Behaviour::new(ping::Config::new().with_interval(config.ping_interval)),
            namespace,
            keep_alive: keep_alive::Behaviour::new(bounds.max_pinned_by_others),
            relay_client: relay_client.into(),
            native: native.into(),
        }
    }

    /// Whether this node relays for others.
    pub(crate) fn is_relay(&self) -> bool {
        relays(&self.native)
    }

    /// Whether the node can dial and listen through relays.
    pub fn has_relay_client(&self) -> bool {
        self.relay_client.is_enabled()
    }

    /// The Kademlia protocol names this behaviour speaks.
    pub fn kad_protocols(&self) -> &[StreamProtocol] {
        self.kad.protocol_names()
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn relays(native: &Toggle<native::NativeBehaviour>) -> bool {
    native.as_ref().is_some_and(|n| n.relay.is_enabled())
}

#[cfg(target_arch = "wasm32")]
fn relays(_native: &Toggle<native::NativeBehaviour>) -> bool {
    false
}
