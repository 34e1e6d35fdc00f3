//! What a running node reports to its subscribers.

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId, request_response::OutboundFailure};

#[cfg(feature = "serde")]
use crate::api::ser;
use crate::{
    error::{DialFailure, ErrorCode, RecordError, find_cause},
    namespace::Namespace,
    node::Reachability,
    record::StoreError,
    role::RoleKind,
};

/// Something that happened at the node, delivered by
/// [`crate::NodeHandle::subscribe`].
///
/// With the `serde` feature events serialize as objects tagged by `type`
/// (kebab-case) with camelCase fields, in the shapes of `dht_core::api`:
/// peer ids, addresses and namespaces as strings, keys as `{"text"}` or
/// `{"base64"}`, errors as `{"code", "message"}`.
#[derive(Clone, Debug)]
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
    /// This node removed a peer from its routing table.
    RoutingRemoved {
        /// The peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// Why.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::error"))]
        reason: PeerGone,
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
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::dial_failure"))]
        error: DialFailure,
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
    /// A bootstrap lookup of this node's own id finished: the node knows its
    /// neighbourhood in the DHT (the lookups that fill its other buckets go
    /// on).
    Bootstrapped {
        /// Peers in the routing table afterwards.
        routing_table_size: usize,
    },
    /// A peer stored a record at this node.
    RecordStored {
        /// The record key.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::data"))]
        key: Vec<u8>,
        /// Who sent it.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        from: PeerId,
    },
    /// A peer's record was refused (not acknowledged): it is invalid or
    /// forged, older than the version held, or the store or the sender's
    /// share of it is full.
    RecordRejected {
        /// The record key.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::data"))]
        key: Vec<u8>,
        /// Who sent it.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        from: PeerId,
        /// Why.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::error"))]
        reason: StoreError,
    },
    /// A read discarded a copy that failed verification: under another
    /// key than asked, with a bad signature or a wrong hash.
    RecordForged {
        /// The key read.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::data"))]
        key: Vec<u8>,
        /// Who sent the copy (`None`: this node's own store).
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_opt"))]
        from: Option<PeerId>,
        /// What was wrong with it.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::error"))]
        reason: RecordError,
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
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::error"))]
        reason: LinkLost,
    },
    /// A linked peer sent a message (see [`crate::message`]).
    MessageReceived {
        /// The sender.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        from: PeerId,
        /// What it sent.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::data"))]
        data: Vec<u8>,
    },
    /// A relay accepted this node's reservation: peers reach it at the
    /// relay's `/p2p-circuit` addresses (renewals are not reported).
    RelayReserved {
        /// The relay.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        relay: PeerId,
    },
    /// A reservation on a relay was refused or ended; another relay is
    /// tried, and this one again later.
    RelayReservationLost {
        /// The relay.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        relay: PeerId,
        /// Why.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::error"))]
        reason: RelayLost,
    },
    /// The node started or stopped answering DHT requests from others
    /// (Kademlia server or client mode). A [`crate::ServerMode::Relayed`]
    /// node serves while it holds a relay reservation.
    ServingChanged {
        /// Whether it serves now.
        serving: bool,
    },
    /// A peer tried to dial this node back at `address` (AutoNAT v2), to
    /// find out whether others can reach it there.
    AddressTested {
        /// The address tested.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        address: Multiaddr,
        /// Whether the dial worked.
        reachable: bool,
        /// The peer that dialed.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        tester: PeerId,
    },
    /// How peers reach this node changed.
    ReachabilityChanged {
        /// How they reach it now.
        reachability: Reachability,
    },
    /// A peer this node was linked to through a relay is now connected
    /// directly as well: both dialed each other at once (DCUtR).
    HolePunched {
        /// The peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
    },
    /// A hole punch to a peer failed; the connection through the relay stays.
    HolePunchFailed {
        /// The peer.
        #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
        peer: PeerId,
        /// Why, as libp2p says.
        reason: String,
    },
    /// This subscriber fell behind and `missed` events were dropped for it.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// Why a namespace link ended.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkLost {
    /// The last connection to the peer closed.
    #[error("the connection to the peer closed")]
    Disconnected,
    /// The peer answered a heartbeat: it is no longer registered.
    #[error("the peer is no longer registered in the namespace")]
    Unregistered,
    /// The peer did not answer a heartbeat.
    #[error("the peer did not answer the heartbeat")]
    Unanswered(#[source] Arc<OutboundFailure>),
}

impl ErrorCode for LinkLost {
    fn code(&self) -> &'static str {
        match self {
            LinkLost::Disconnected => "disconnected",
            LinkLost::Unregistered => "unregistered",
            LinkLost::Unanswered(_) => "unanswered",
        }
    }
}

/// Why a relay reservation was refused or ended.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayLost {
    /// The relay holds as many reservations as it allows (in total or for
    /// this peer), or this peer asked too often.
    #[error("the relay is at its reservation limit")]
    Full,
    /// The relay refused for another reason.
    #[error("the relay refused the reservation")]
    Refused,
    /// The peer does not relay.
    #[error("the peer does not relay")]
    Unsupported,
    /// The connection to the relay closed.
    #[error("the connection to the relay closed")]
    Disconnected,
    /// The reservation failed on the wire.
    #[error("the reservation failed: {0}")]
    Failed(String),
}

impl ErrorCode for RelayLost {
    fn code(&self) -> &'static str {
        match self {
            RelayLost::Full => "relay-full",
            RelayLost::Refused => "relay-refused",
            RelayLost::Unsupported => "relay-unsupported",
            RelayLost::Disconnected => "relay-disconnected",
            RelayLost::Failed(_) => "relay-failed",
        }
    }
}

impl RelayLost {
    /// Why the relay listener closed with `reason`: the reservation error
    /// found among the error's sources, else a failure with its message.
    pub(crate) fn from_listener_closed(reason: &Result<(), std::io::Error>) -> Self {
        use libp2p::relay::outbound::hop::ReserveError;
        let Err(error) = reason else {
            return RelayLost::Disconnected;
        };
        match find_cause::<ReserveError>(error) {
            Some(ReserveError::ResourceLimitExceeded) => RelayLost::Full,
            Some(ReserveError::Refused) => RelayLost::Refused,
            Some(ReserveError::Unsupported) => RelayLost::Unsupported,
            Some(other) => RelayLost::Failed(other.to_string()),
            None => RelayLost::Failed(error.to_string()),
        }
    }
}

/// Why a peer left the routing table (besides a full bucket replacing it,
/// which Kademlia does without telling).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerGone {
    /// Dials kept failing while other peers answered (see
    /// [`crate::ConfigBuilder::drop_unreachable_after`]).
    #[error("dials to the peer kept failing")]
    Unreachable,
    /// The peer is reachable only through relays, and every one of them
    /// answered that it holds no reservation for it: a closed tab.
    #[error("no relay holds a reservation for the peer any more")]
    NoReservation,
    /// The peer was reachable only through this node's relay, and its
    /// reservation here ended.
    #[error("the peer's reservation on this relay ended")]
    ReservationEnded,
}

impl ErrorCode for PeerGone {
    fn code(&self) -> &'static str {
        match self {
            PeerGone::Unreachable => "unreachable",
            PeerGone::NoReservation => "no-reservation",
            PeerGone::ReservationEnded => "reservation-ended",
        }
    }
}
