//! The cloneable handle applications use to drive a running [`crate::Node`].
//!
//! Every operation is a message on a bounded channel to the node and an
//! answer on a one-shot channel back; when the node has stopped, operations
//! return their `NodeStopped` error instead of waiting forever.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

#[cfg(feature = "serde")]
use crate::api::ser;
use futures::{
    SinkExt, Stream,
    channel::{mpsc, oneshot},
};
use libp2p::{Multiaddr, PeerId, kad};

use crate::{
    error::{
        ClosestPeersError, DialError, DiscoverError, GetRecordError, LinkError, ListenError,
        NodeStopped, PutRecordError, RegisterError,
    },
    event::Event,
    message::MessageError,
    namespace::Namespace,
    record::{Quorum, StoreLimits, Write, check_key, check_record_key, check_value},
    report::{Link, NetworkReport, Registration, RoutingTable, StoredRecord},
    role::RoleKind,
};

/// A peer and the addresses it can be dialed at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct PeerAddresses {
    /// The peer.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display"))]
    pub peer_id: PeerId,
    /// Its addresses; empty when none could be found (for example a browser
    /// tab, which cannot be dialed).
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_all"))]
    pub addresses: Vec<Multiaddr>,
}

/// What a lookup cost, from Kademlia's query statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct QueryStats {
    /// Requests sent.
    pub requests: u32,
    /// Requests answered.
    pub successes: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// Time from start to end.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "durationMs", serialize_with = "ser::duration_ms_opt")
    )]
    pub duration: Option<Duration>,
}

impl From<&kad::QueryStats> for QueryStats {
    fn from(stats: &kad::QueryStats) -> Self {
        Self {
            requests: stats.num_requests(),
            successes: stats.num_successes(),
            failures: stats.num_failures(),
            duration: stats.duration(),
        }
    }
}

/// A successful write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct PutRecordOk {
    /// The key written.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::data"))]
    pub key: Vec<u8>,
    /// The version written, for a mutable record.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub seq: Option<u64>,
    /// How many peers besides this node stored it: of the `k` closest the
    /// lookup found, those that acknowledged.
    pub stored: usize,
    /// What the write cost.
    pub stats: QueryStats,
}

/// A successful read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "camelCase")
)]
pub struct GetRecordOk {
    /// The key read.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::data"))]
    pub key: Vec<u8>,
    /// The value: of the newest version found in enough copies, checked
    /// against its owner's signature or its hash.
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
    /// Whether this version was in this node's own store.
    pub found_locally: bool,
    /// The peers that sent this version.
    #[cfg_attr(feature = "serde", serde(serialize_with = "ser::display_all"))]
    pub found_at: Vec<PeerId>,
    /// Copies discarded because they failed verification (under another
    /// key, a bad signature, a wrong hash).
    pub forgeries: usize,
    /// What the read cost.
    pub stats: QueryStats,
}

pub(crate) type Reply<T> = oneshot::Sender<T>;

#[derive(Debug)]
pub(crate) enum Command {
    PutRecord {
        write: Write,
        quorum: Quorum,
        reply: Reply<Result<PutRecordOk, PutRecordError>>,
    },
    GetRecord {
        key: Vec<u8>,
        quorum: Quorum,
        reply: Reply<Result<GetRecordOk, GetRecordError>>,
    },
    ClosestPeers {
        key: Vec<u8>,
        reply: Reply<Result<Vec<PeerAddresses>, ClosestPeersError>>,
    },
    Bootstrap {
        reply: Reply<usize>,
    },
    Register {
        namespace: Namespace,
        reply: Reply<Result<(), RegisterError>>,
    },
    Unregister {
        namespace: Namespace,
        reply: Reply<()>,
    },
    Discover {
        namespace: Namespace,
        reply: Reply<Result<Vec<PeerAddresses>, DiscoverError>>,
    },
    Link {
        namespace: Namespace,
        peer: PeerAddresses,
        reply: Reply<Result<RoleKind, LinkError>>,
    },
    SendMessage {
        peer: PeerId,
        data: Vec<u8>,
        reply: Reply<Result<(), MessageError>>,
    },
    Dial {
        address: Multiaddr,
        reply: Reply<Result<PeerId, DialError>>,
    },
    ListenOn {
        address: Multiaddr,
        reply: Reply<Result<Multiaddr, ListenError>>,
    },
    RoutingTable {
        reply: Reply<RoutingTable>,
    },
    Records {
        reply: Reply<Vec<StoredRecord>>,
    },
    Registrations {
        reply: Reply<Vec<Registration>>,
    },
    Links {
        reply: Reply<Vec<Link>>,
    },
    ListenAddresses {
        reply: Reply<Vec<Multiaddr>>,
    },
    ConnectedPeers {
        reply: Reply<Vec<PeerId>>,
    },
    NetworkReport {
        reply: Reply<NetworkReport>,
    },
    Subscribe {
        reply: Reply<EventStream>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// A cloneable handle to a running [`crate::Node`].
///
/// Dropping every handle stops the node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    local_peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    limits: Arc<StoreLimits>,
    max_message_bytes: usize,
}

impl NodeHandle {
    pub(crate) fn new(
        local_peer_id: PeerId,
        commands: mpsc::Sender<Command>,
        limits: Arc<StoreLimits>,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            local_peer_id,
            commands,
            limits,
            max_message_bytes,
        }
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, NodeStopped> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .clone()
            .send(command(reply))
            .await
            .map_err(|_| NodeStopped)?;
        answer.await.map_err(|_| NodeStopped)
    }

    /// Stores a record here and at the `k` closest peers, and returns once
    /// each of those the lookup found has answered (or failed to): a caller
    /// that exits right after leaves no write half done. Succeeds if at
    /// least one peer besides this node stored it; [`PutRecordOk::stored`]
    /// says how many did. Returns the key, which for an immutable record is
    /// where to read it.
    ///
    /// ```no_run
    /// # async fn write(handle: dht_core::NodeHandle, keypair: libp2p::identity::Keypair) {
    /// use dht_core::record::Write;
    /// let put = handle.put(Write::mutable(&keypair, "status", "online")).await.unwrap();
    /// let got = handle.get_record(put.key).await.unwrap();
    /// assert_eq!(got.value, b"online");
    /// # }
    /// ```
    pub async fn put(&self, write: Write) -> Result<PutRecordOk, PutRecordError> {
        self.put_with_quorum(write, Quorum::One).await
    }

    /// Like [`put`](Self::put), succeeding if at least `quorum` peers
    /// besides this node stored it.
    pub async fn put_with_quorum(
        &self,
        write: Write,
        quorum: Quorum,
    ) -> Result<PutRecordOk, PutRecordError> {
        write.key()?;
        check_value(write.value(), self.limits.max_value_size)?;
        self.call(|reply| Command::PutRecord {
            write,
            quorum,
            reply,
        })
        .await
        .unwrap_or(Err(PutRecordError::NodeStopped))
    }

    /// Finds the record under `key`, here or on the path to the `k` closest
    /// peers.
    pub async fn get_record(&self, key: impl Into<Vec<u8>>) -> Result<GetRecordOk, GetRecordError> {
        self.get_record_with_quorum(key, Quorum::One).await
    }

    /// Like [`get_record`](Self::get_record), succeeding once `quorum` copies
    /// were found (the local store counts as one).
    pub async fn get_record_with_quorum(
        &self,
        key: impl Into<Vec<u8>>,
        quorum: Quorum,
    ) -> Result<GetRecordOk, GetRecordError> {
        let key = key.into();
        // Only the two kinds of record exist; nothing else could verify.
        check_record_key(&key)?;
        self.call(|reply| Command::GetRecord { key, quorum, reply })
            .await
            .unwrap_or(Err(GetRecordError::NodeStopped))
    }

    /// The `k` peers closest to `key` in the whole network (excluding this
    /// node), nearest first. For a peer id, pass `peer_id.to_bytes()`.
    pub async fn closest_peers(
        &self,
        key: impl Into<Vec<u8>>,
    ) -> Result<Vec<PeerAddresses>, ClosestPeersError> {
        let key = key.into();
        check_key(&key)?;
        self.call(|reply| Command::ClosestPeers { key, reply })
            .await
            .unwrap_or(Err(ClosestPeersError::NodeStopped))
    }

    /// Refreshes the routing table with a bootstrap lookup now and returns its
    /// size afterwards. Nodes also do this on their own when they join and
    /// every [`crate::ConfigBuilder::bootstrap_interval`].
    pub async fn bootstrap(&self) -> Result<usize, NodeStopped> {
        self.call(|reply| Command::Bootstrap { reply }).await
    }

    /// Registers this node in `namespace` and keeps the registration fresh
    /// until [`unregister`](Self::unregister) or the node stops.
    pub async fn register(&self, namespace: &Namespace) -> Result<(), RegisterError> {
        let namespace = namespace.clone();
        self.call(|reply| Command::Register { namespace, reply })
            .await
            .unwrap_or(Err(RegisterError::NodeStopped))
    }

    /// Stops refreshing this node's registration in `namespace`; it expires at
    /// the other peers within the namespace TTL.
    pub async fn unregister(&self, namespace: &Namespace) -> Result<(), NodeStopped> {
        let namespace = namespace.clone();
        self.call(|reply| Command::Unregister { namespace, reply })
            .await
    }

    /// The other members of `namespace` and the addresses to dial them at.
    pub async fn discover(
        &self,
        namespace: &Namespace,
    ) -> Result<Vec<PeerAddresses>, DiscoverError> {
        let namespace = namespace.clone();
        self.call(|reply| Command::Discover { namespace, reply })
            .await
            .unwrap_or(Err(DiscoverError::NodeStopped))
    }

    /// Connects to a member of `namespace` (found with
    /// [`discover`](Self::discover)) and confirms, with the namespace
    /// handshake, that it is registered there. Returns its role.
    pub async fn link(
        &self,
        namespace: &Namespace,
        peer: PeerAddresses,
    ) -> Result<RoleKind, LinkError> {
        let namespace = namespace.clone();
        self.call(|reply| Command::Link {
            namespace,
            peer,
            reply,
        })
        .await
        .unwrap_or(Err(LinkError::NodeStopped))
    }

    /// Sends `data` to `peer`, which must be linked with this node (in any
    /// namespace; see [`link`](Self::link)), and returns once it answered
    /// that the message reached its application. A peer takes at most
    /// [`crate::MessageLimits`] from each sender; see [`crate::message`].
    pub async fn send_message(
        &self,
        peer: PeerId,
        data: impl Into<Vec<u8>>,
    ) -> Result<(), MessageError> {
        let data = data.into();
        if data.len() > self.max_message_bytes {
            return Err(MessageError::TooLarge {
                size: data.len(),
                max: self.max_message_bytes,
            });
        }
        self.call(|reply| Command::SendMessage { peer, data, reply })
            .await
            .unwrap_or(Err(MessageError::NodeStopped))
    }

    /// Connects to `address` and returns the peer found there.
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, DialError> {
        self.call(|reply| Command::Dial { address, reply })
            .await
            .unwrap_or(Err(DialError::NodeStopped))
    }

    /// Starts listening on `address` and returns the first concrete address
    /// the listener got (a port 0 resolved, for example).
    pub async fn listen_on(&self, address: Multiaddr) -> Result<Multiaddr, ListenError> {
        self.call(|reply| Command::ListenOn { address, reply })
            .await
            .unwrap_or(Err(ListenError::NodeStopped))
    }

    /// The routing table now.
    pub async fn routing_table(&self) -> Result<RoutingTable, NodeStopped> {
        self.call(|reply| Command::RoutingTable { reply }).await
    }

    /// The value records held here now.
    pub async fn records(&self) -> Result<Vec<StoredRecord>, NodeStopped> {
        self.call(|reply| Command::Records { reply }).await
    }

    /// The namespace registrations held here now (ours and others').
    pub async fn registrations(&self) -> Result<Vec<Registration>, NodeStopped> {
        self.call(|reply| Command::Registrations { reply }).await
    }

    /// The confirmed namespace links now.
    pub async fn links(&self) -> Result<Vec<Link>, NodeStopped> {
        self.call(|reply| Command::Links { reply }).await
    }

    /// The addresses this node listens on, without `/p2p/`.
    pub async fn listen_addresses(&self) -> Result<Vec<Multiaddr>, NodeStopped> {
        self.call(|reply| Command::ListenAddresses { reply }).await
    }

    /// The peers with an open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NodeStopped> {
        self.call(|reply| Command::ConnectedPeers { reply }).await
    }

    /// The monitor's summary of the network this node sees.
    pub async fn network_report(&self) -> Result<NetworkReport, NodeStopped> {
        self.call(|reply| Command::NetworkReport { reply }).await
    }

    /// A stream of this node's events from now on.
    pub async fn subscribe(&self) -> Result<EventStream, NodeStopped> {
        self.call(|reply| Command::Subscribe { reply }).await
    }

    /// Stops the node and waits until it has.
    pub async fn shutdown(&self) {
        // An error means it has stopped already.
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
    }

    /// Largest stored value accepted by [`put`](Self::put) (a mutable
    /// record's envelope counts).
    pub fn max_record_size(&self) -> usize {
        self.limits.max_value_size
    }
}

/// A stream of node [`Event`]s; ends when the node stops.
#[derive(Debug)]
pub struct EventStream {
    pub(crate) events: mpsc::Receiver<Event>,
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        Pin::new(&mut self.events).poll_next(cx)
    }
}
