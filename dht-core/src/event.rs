//! What a running node reports to its subscribers.

use libp2p::{Multiaddr, PeerId};

use crate::{namespace::Namespace, role::RoleKind};

/// Something that happened at the node, delivered by
/// [`crate::NodeHandle::subscribe`].
///
/// With the `serde` feature events serialize as objects tagged by `type`
/// (kebab-case) with camelCase fields, with peer ids, addresses and namespaces as strings and record
/// keys as text or `0x`-hex.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(
        tag = "type",
        rename_all = "kebab-case",
        rename_all_fields = "camelCase"
    )
)]
#[non_exhaustive]
pub enum Event {
    /// The node listens on a new address.
    Listening {
        /// The address, without `/p2p/`.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        address: Multiaddr,
    },
    /// An address the node listened on is gone.
    ListenAddressExpired {
        /// The address.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        address: Multiaddr,
    },
    /// The first connection to a peer opened.
    PeerConnected {
        /// The peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// The peer's address on this connection.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        address: Multiaddr,
        /// Whether the peer dialed us.
        inbound: bool,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
    },
    /// A peer entered the routing table or its entry changed.
    RoutingUpdated {
        /// The peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// Its bucket: the integer log2 of its XOR distance to this node.
        bucket: u32,
        /// Whether it was not in the table before.
        new_peer: bool,
    },
    /// A connection to a bootstrap peer opened.
    BootstrapPeerConnected {
        /// The bootstrap peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
    },
    /// A bootstrap peer could not be reached; it is dialed again later.
    BootstrapPeerUnreachable {
        /// The bootstrap peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// Why.
        error: String,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// The connection to a bootstrap peer was lost; it is dialed again later.
    BootstrapPeerLost {
        /// The bootstrap peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// Milliseconds until the next attempt.
        retry_in_ms: u64,
    },
    /// A bootstrap lookup finished: the node has filled its routing table
    /// from the network.
    Bootstrapped {
        /// Peers in the routing table afterwards.
        routing_table_size: usize,
    },
    /// A peer stored a record at this node.
    RecordStored {
        /// The record key.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::key"))]
        key: Vec<u8>,
        /// Who sent it.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        from: PeerId,
    },
    /// A peer's record was refused (the store is full or it is too large).
    RecordRejected {
        /// The record key.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::key"))]
        key: Vec<u8>,
        /// Who sent it.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        from: PeerId,
        /// Why.
        reason: String,
    },
    /// A peer registered in a namespace at this node.
    RegistrationStored {
        /// The namespace.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        namespace: Namespace,
        /// The peer registered.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
    },
    /// This node's registration in a namespace was announced to the peers
    /// closest to the namespace key.
    Registered {
        /// The namespace.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        namespace: Namespace,
    },
    /// A dialer found a new member of its namespace.
    NamespacePeerDiscovered {
        /// The namespace.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        namespace: Namespace,
        /// The member.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// Its addresses.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_all"))]
        addresses: Vec<Multiaddr>,
    },
    /// A namespace handshake succeeded: the two peers are linked.
    NamespaceLinked {
        /// The namespace.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        namespace: Namespace,
        /// The other peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// What the other peer is.
        role: RoleKind,
        /// Whether this node started the handshake.
        outbound: bool,
    },
    /// A link ended: the peer left, stopped answering or unregistered.
    NamespaceLinkLost {
        /// The namespace.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        namespace: Namespace,
        /// The other peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// This subscriber fell behind and `missed` events were dropped for it.
    Lagged {
        /// How many.
        missed: u64,
    },
}

#[cfg(feature = "serde")]
pub(crate) mod ser {
    use std::fmt::Display;

    use serde::{Serializer, ser::SerializeSeq};

    pub(crate) fn display<S: Serializer, T: Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(crate) fn display_opt<S: Serializer, T: Display>(
        value: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.collect_str(value),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn display_all<S: Serializer, T: Display>(
        values: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(values.len()))?;
        for value in values {
            seq.serialize_element(&value.to_string())?;
        }
        seq.end()
    }

    pub(crate) fn key<S: Serializer>(key: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::record::display_key(key))
    }

    pub(crate) fn duration_ms<S: Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn duration_ms_opt<S: Serializer>(
        d: &Option<std::time::Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration_ms(d, s),
            None => s.serialize_none(),
        }
    }
}
