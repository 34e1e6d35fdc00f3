//! Snapshots of a node's state: its routing table, the records and
//! registrations it holds, and the monitor's summary of the network it sees.

#[cfg(feature = "serde")]
use crate::api::ser;
use std::{fmt, time::Duration};

use libp2p::{Multiaddr, PeerId};

use crate::{namespace::Namespace, node::Reachability, record::display_key, role::RoleKind};

/// The routing table, bucket by bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct RoutingTable {
    /// The node whose table this is.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub local_peer_id: PeerId,
    /// Non-empty buckets, nearest first.
    pub buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// Every peer in the table.
    pub fn peers(&self) -> impl Iterator<Item = &RoutingEntry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Number of peers in the table.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.buckets.iter().all(|b| b.entries.is_empty())
    }
}

/// One k-bucket: the peers at XOR distance `[2^index, 2^(index+1))`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct Bucket {
    /// The bucket index, 0 to 255.
    pub index: u32,
    /// Its peers.
    pub entries: Vec<RoutingEntry>,
}

/// A peer in the routing table.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct RoutingEntry {
    /// The peer.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub peer_id: PeerId,
    /// Addresses known for it.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_all"))]
    pub addresses: Vec<Multiaddr>,
    /// Whether a connection to it is open.
    pub connected: bool,
}

/// A value record held in the local store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct StoredRecord {
    /// The key.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::data"))]
    pub key: Vec<u8>,
    /// The value (without a mutable record's envelope).
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::data"))]
    pub value: Vec<u8>,
    /// The owner, for a mutable record.
    #[cfg_attr(
        feature = "serde",
        serde(
            serialize_with = "ser::display_opt",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub owner: Option<PeerId>,
    /// The version, for a mutable record.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub seq: Option<u64>,
    /// Whether this node holds it for others (it did not write it).
    pub for_others: bool,
    /// Time left before it expires here; `None` for never.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "expiresInMs", serialize_with = "ser::duration_ms_opt")
    )]
    pub expires_in: Option<Duration>,
}

/// A namespace registration held in the local store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct Registration {
    /// The namespace.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub namespace: Namespace,
    /// The registered peer.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub peer_id: PeerId,
    /// The addresses it announced.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_all"))]
    pub addresses: Vec<Multiaddr>,
    /// Time left before it expires unless refreshed; `None` for our own.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "expiresInMs", serialize_with = "ser::duration_ms_opt")
    )]
    pub expires_in: Option<Duration>,
}

/// A confirmed link with another member of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct Link {
    /// The namespace.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub namespace: Namespace,
    /// The other peer.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub peer_id: PeerId,
    /// What it is.
    pub role: RoleKind,
    /// Whether this node started the link.
    pub outbound: bool,
}

/// The monitor's view: what this node sees of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct NetworkReport {
    /// This node.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub local_peer_id: PeerId,
    /// Its role.
    pub role: RoleKind,
    /// Whether it answers DHT requests.
    pub serving: bool,
    /// Time since the node started.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "uptimeMs", serialize_with = "ser::duration_ms")
    )]
    pub uptime: Duration,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Peers per non-empty bucket, nearest first.
    pub buckets: Vec<BucketSize>,
    /// Value records held.
    pub records: usize,
    /// Live registrations held per namespace, by name.
    pub namespaces: Vec<NamespaceSize>,
    /// Namespaces this node is registered in.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_all"))]
    pub registered_in: Vec<Namespace>,
    /// Confirmed namespace links.
    pub links: usize,
    /// Record copies this node's reads discarded because they failed
    /// verification, since it started.
    pub forgeries_discarded: u64,
    /// The relays holding a reservation for this node: others reach it
    /// through them (empty unless it serves through relays).
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_all"))]
    pub relayed_by: Vec<PeerId>,
    /// How peers reach this node.
    pub reachability: Reachability,
    /// Peers connected directly through a hole punch (one of the two
    /// behind a NAT), as well as through a relay.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_all"))]
    pub hole_punched: Vec<PeerId>,
    /// What this node relays for others, if it is a relay.
    pub relay: Option<RelayReport>,
}

/// What a relay holds for others now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct RelayReport {
    /// Reservations held.
    pub reservations: usize,
    /// Circuits open.
    pub circuits: usize,
}

/// How many peers one k-bucket holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BucketSize {
    /// The bucket index, 0 to 255.
    pub index: u32,
    /// Its peers.
    pub peers: usize,
}

/// How many live registrations this node holds for one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct NamespaceSize {
    /// The namespace.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub namespace: Namespace,
    /// Registrations held.
    pub registrations: usize,
}

impl NetworkReport {
    /// Peers in the routing table.
    pub fn routing_table_size(&self) -> usize {
        self.buckets.iter().map(|b| b.peers).sum()
    }
}

impl fmt::Display for NetworkReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({}, {}) up {}s: {} connected, {} in routing table, {} records, {} links",
            self.local_peer_id,
            self.role,
            if self.serving {
                "serving"
            } else {
                "client only"
            },
            self.uptime.as_secs(),
            self.connected_peers,
            self.routing_table_size(),
            self.records,
            self.links,
        )?;
        if !self.buckets.is_empty() {
            let buckets: Vec<String> = self
                .buckets
                .iter()
                .map(|b| format!("{}:{}", b.index, b.peers))
                .collect();
            writeln!(f, "  buckets (index:peers) {}", buckets.join(" "))?;
        }
        for held in &self.namespaces {
            writeln!(
                f,
                "  namespace \"{}\": {} registered peers held here",
                held.namespace, held.registrations
            )?;
        }
        if !self.registered_in.is_empty() {
            let names: Vec<&str> = self.registered_in.iter().map(Namespace::as_str).collect();
            writeln!(f, "  registered in {}", names.join(", "))?;
        }
        writeln!(f, "  reachability: {}", self.reachability)?;
        for relay in &self.relayed_by {
            writeln!(f, "  serving through relay /p2p/{relay}")?;
        }
        for peer in &self.hole_punched {
            writeln!(f, "  connected directly through a hole punch: /p2p/{peer}")?;
        }
        if let Some(relay) = self.relay {
            writeln!(
                f,
                "  relaying for others: {} reservations, {} circuits",
                relay.reservations, relay.circuits
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for StoredRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {}",
            display_key(&self.key),
            display_key(&self.value)
        )
    }
}
