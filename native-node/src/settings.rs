//! What the command line's node options mean for the core: the
//! configuration they build (with the `--data-dir` store), the relay's
//! limits, the identity file and the listen addresses. `cli.rs` says what
//! the options are; this file, what they do.

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use dht_core::{
    Config, ConfigBuilder, ConnectionLimits, RelayLimits, RoutingDiversity, ServerMode,
    libp2p::Multiaddr,
};
use native_node::{ListenSet, storage::DiskStorage};

use crate::{
    cli::{NodeArgs, ReachabilityChoice, RelayArgs},
    exit::Failure,
};

/// The identity file's name in a --data-dir.
const KEY_FILE: &str = "node.key";

impl RelayArgs {
    /// The relay's limits.
    pub(crate) fn limits(&self) -> RelayLimits {
        RelayLimits {
            max_reservations: self.relay_max_reservations,
            max_reservations_per_peer: self.relay_max_reservations_per_peer,
            reservation_duration: self.relay_reservation_duration,
            max_circuits: self.relay_max_circuits,
            max_circuits_per_peer: self.relay_max_circuits_per_peer,
            max_circuit_duration: self.relay_circuit_duration,
            max_circuit_bytes: self.relay_circuit_bytes,
            circuits_per_peer_per_minute: self.relay_circuits_per_peer_per_minute,
            circuits_per_ip_per_minute: self.relay_circuits_per_ip_per_minute,
            reservations_per_ip_per_minute: self.relay_reservations_per_ip_per_minute,
        }
    }
}

impl NodeArgs {
    /// The bootstrap addresses given; an empty `DHT_BOOTSTRAP` means none.
    pub(crate) fn bootstrap_addresses(&self) -> Vec<Multiaddr> {
        self.bootstrap
            .iter()
            .filter(|a| !a.is_empty())
            .cloned()
            .collect()
    }

    /// The identity file: --key-file, else `node.key` in the --data-dir.
    pub(crate) fn key_file(&self) -> Option<PathBuf> {
        let in_data_dir = || self.data_dir.as_ref().map(|dir| dir.join(KEY_FILE));
        self.key_file.clone().or_else(in_data_dir)
    }

    /// The core configuration these options describe; `relay` says whether
    /// this node relays for others. Opens the --data-dir's store.
    pub(crate) fn config(&self, relay: bool) -> Result<ConfigBuilder, Failure> {
        let mut config = self.settings(relay);
        if let Some(dir) = &self.data_dir {
            let storage = DiskStorage::open_dir(dir).map_err(Failure::of)?;
            config = config.storage(Arc::new(storage));
        }
        Ok(config)
    }

    fn settings(&self, relay: bool) -> ConfigBuilder {
        let config = Config::builder()
            .bootstrap_peers(self.bootstrap_addresses())
            .kad_protocol(self.kad_protocol.clone())
            .replication_factor(self.replication_factor)
            .query_timeout(self.query_timeout)
            .rereplicate_after(Some(self.rereplicate_after).filter(|d| !d.is_zero()))
            .max_record_size(self.max_record_size)
            .max_message_size(self.max_record_size.saturating_add(192 * 1024))
            .namespace_ttl(self.namespace_ttl)
            .namespace_refresh_interval(self.namespace_refresh)
            .idle_connection_timeout(self.idle_timeout)
            .check_relayed_peers_every(self.check_relayed_peers_every)
            .connection_limits(ConnectionLimits {
                max_incoming_per_ip: self.max_connections_per_ip,
                limit_loopback: self.limit_loopback,
                max_pinned_by_others: self.max_pinned_by_others,
                ..ConnectionLimits::default()
            })
            .routing_diversity(RoutingDiversity {
                per_table: self.max_routing_peers_per_subnet as usize,
                per_bucket: RoutingDiversity::default()
                    .per_bucket
                    .min(self.max_routing_peers_per_subnet as usize),
            })
            .agent_version(concat!("ns-dht-native/", env!("CARGO_PKG_VERSION")))
            .relay_server((relay || self.relay.relay).then(|| self.relay.limits()));
        match self.reachability {
            ReachabilityChoice::Public => config,
            ReachabilityChoice::Auto => config.server_mode(ServerMode::Auto),
            // Its own addresses are not reachable: only the circuits are.
            ReachabilityChoice::Relayed => config
                .server_mode(ServerMode::Relayed)
                .advertise_listen_addresses(false),
        }
    }

    /// The addresses to listen on: `--listen` if given, else `set` on
    /// `--ip`.
    pub(crate) fn listen_addresses(&self, set: impl FnOnce(IpAddr) -> ListenSet) -> Vec<Multiaddr> {
        if self.listen.is_empty() && self.reachability == ReachabilityChoice::Relayed {
            Vec::new()
        } else if self.listen.is_empty() {
            set(self.ip).addresses()
        } else {
            self.listen.clone()
        }
    }
}
