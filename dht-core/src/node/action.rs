//! What the parts of a node ask the swarm to do.
//!
//! The parts decide and never touch the swarm: each takes its inputs and
//! `now` and pushes [`Action`]s into an [`Actions`] queue; the node loop
//! ([`super::Node`]) carries them out in order. Tests drive a part by hand
//! and read the queue.

use std::collections::VecDeque;

use libp2p::{
    Multiaddr, PeerId,
    kad::{self, Mode, QueryId, Record, RecordKey},
};

use super::{discovery::DiscoveryId, links::Handshake, queries::Pending};
use crate::{
    event::{Event, PeerGone},
    handle::Reply,
    message::MessageError,
    namespace::NamespaceRequest,
};

/// One thing for the swarm to do.
#[derive(Debug)]
pub(crate) enum Action {
    /// Tell the subscribers.
    Emit(Event),
    /// Dial `peer` at `addresses`, unless it is connected or being dialed.
    Dial {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    },
    /// Keep every connection to `peer` open while idle.
    Pin(PeerId),
    /// Let connections to `peer` close when idle again, unless something
    /// else (a bootstrap peer's pin) still holds them.
    Unpin(PeerId),
    /// Add an address of `peer` to the routing table.
    AddAddress { peer: PeerId, address: Multiaddr },
    /// Remove one address of `peer` from the routing table (and the peer
    /// with its last address). Only a relay does (browsers never do).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    RemoveAddress { peer: PeerId, address: Multiaddr },
    /// Remove `peer` from the routing table, for `reason`.
    RemovePeer { peer: PeerId, reason: PeerGone },
    /// Announce an address as this node's own external address.
    AddExternalAddress(Multiaddr),
    /// Stop announcing an external address.
    RemoveExternalAddress(Multiaddr),
    /// Ask `relay` for a reservation by listening on the circuit `address`
    /// through it.
    ListenVia { relay: PeerId, address: Multiaddr },
    /// Answer DHT requests from others (server) or only query (client).
    SetKadMode(Mode),
    /// Start a Kademlia query; `pending` says what it is for and who waits.
    Query { query: Query, pending: Pending },
    /// End a query early: what it found is enough.
    FinishQuery(QueryId),
    /// Stop announcing this node as a provider of `key` (a namespace).
    StopProviding(RecordKey),
    /// Send a namespace request; `purpose` says what the answer is for.
    Request {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        request: NamespaceRequest,
        purpose: Purpose,
    },
}

/// A Kademlia query to start.
#[derive(Debug)]
pub(crate) enum Query {
    /// Find the record under a key.
    GetRecord(RecordKey),
    /// Store a record here and at the closest peers.
    PutRecord(Record, kad::Quorum),
    /// Send a record to `peers` alone, without a lookup: a newer version to
    /// peers a read found holding an older one (and store it here if this
    /// node's copy was older), or a held record to the peers now closest to
    /// it (re-replication).
    Repair {
        record: Record,
        peers: Vec<PeerId>,
        here: bool,
    },
    /// Find the `k` peers closest to a key.
    ClosestPeers(Vec<u8>),
    /// Announce this node as a provider of a key (a namespace registration).
    Provide(RecordKey),
    /// Refresh the routing table with a lookup of this node's own id.
    Bootstrap,
}

/// What an outbound namespace request was for.
#[derive(Debug)]
pub(crate) enum Purpose {
    /// A discovery asks a holder of the namespace for its members.
    Members(DiscoveryId),
    /// A namespace handshake.
    Handshake(Handshake),
    /// A message to a linked peer; the caller waits for its answer.
    Message {
        peer: PeerId,
        reply: Reply<Result<(), MessageError>>,
    },
}

/// The queue the parts push into and the node loop drains.
#[derive(Debug, Default)]
pub(crate) struct Actions(VecDeque<Action>);

impl Actions {
    pub(crate) fn push(&mut self, action: Action) {
        self.0.push_back(action);
    }

    /// Shorthand for pushing [`Action::Emit`].
    pub(crate) fn emit(&mut self, event: Event) {
        self.push(Action::Emit(event));
    }

    /// The next action, oldest first.
    pub(crate) fn pop(&mut self) -> Option<Action> {
        self.0.pop_front()
    }

    /// Every queued action, oldest first, leaving the queue empty.
    #[cfg(test)]
    pub(crate) fn drain(&mut self) -> Vec<Action> {
        self.0.drain(..).collect()
    }

    /// The events queued so far, leaving the other actions in place.
    #[cfg(test)]
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        self.0.retain(|action| match action {
            Action::Emit(event) => {
                events.push(event.clone());
                false
            }
            _ => true,
        });
        events
    }
}
