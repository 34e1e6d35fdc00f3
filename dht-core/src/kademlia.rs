//! Kademlia, telling the record store who sends what it stores.
//!
//! libp2p's Kademlia stores an inbound record or registration through
//! [`RecordStore::put`](libp2p::kad::store::RecordStore::put) without
//! saying who sent it, and acknowledges the write only if the store took
//! it. To charge each write to its sender's share ([`crate::record::Quota`]),
//! this wrapper sets the store's current [`Source`] (the peer and the
//! subnet of the connection) while Kademlia handles each message from a
//! connection, and clears it afterwards, so that this node's own writes are
//! never charged to anyone. Everything else is Kademlia's own: the wrapper
//! dereferences to it.

use std::{
    collections::HashMap,
    ops::{Deref, DerefMut},
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    kad,
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, DialFailure, FromSwarm, ListenFailure,
        NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
    },
};

use crate::{
    event,
    node::diversity::Group,
    record::{Source, Store, Subnet},
};

/// What the wrapped Kademlia reports.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum KademliaEvent {
    /// Kademlia's own event.
    Kad(kad::Event),
    /// What became of a peer's write (stored, refused, registered).
    Store(event::Event),
}

/// Kademlia over the node's [`Store`], with each inbound write attributed
/// to its sender.
#[allow(missing_debug_implementations)]
pub struct Kademlia {
    inner: kad::Behaviour<Store>,
    /// Where each open connection comes from (bounded by the connection
    /// limits).
    origins: HashMap<ConnectionId, Origin>,
    count_loopback: bool,
}

/// Where a connection comes from.
#[derive(Clone, Copy, Debug)]
struct Origin {
    /// The subnet writes on it are charged to (the store's quotas): the
    /// remote address's, so none for an inbound circuit.
    subnet: Option<Subnet>,
    /// The routing-diversity group of its peer.
    group: Option<Group>,
}

impl Kademlia {
    /// Wraps `inner`; loopback connections have a subnet (and so a subnet
    /// share) only with `count_loopback`.
    pub fn new(inner: kad::Behaviour<Store>, count_loopback: bool) -> Self {
        Self {
            inner,
            origins: HashMap::new(),
            count_loopback,
        }
    }

    /// The routing-diversity group of an open connection's peer, if it has
    /// one that counts.
    pub(crate) fn routing_group_of(&self, connection: &ConnectionId) -> Option<Group> {
        self.origins.get(connection).and_then(|origin| origin.group)
    }

    /// Notes where an established connection comes from: `local` is this
    /// end's address for an inbound connection.
    fn opened(
        &mut self,
        connection: ConnectionId,
        local: Option<&Multiaddr>,
        remote: &Multiaddr,
        handler: Result<THandler<Self>, ConnectionDenied>,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if handler.is_ok() {
            let origin = Origin {
                subnet: Subnet::of(remote, self.count_loopback),
                group: Group::of(local, remote, self.count_loopback),
            };
            self.origins.insert(connection, origin);
        }
        handler
    }
}

impl Deref for Kademlia {
    type Target = kad::Behaviour<Store>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for Kademlia {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl NetworkBehaviour for Kademlia {
    type ConnectionHandler = THandler<kad::Behaviour<Store>>;
    type ToSwarm = KademliaEvent;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let handler = self
            .inner
            .handle_established_inbound_connection(connection, peer, local, remote);
        self.opened(connection, Some(local), remote, handler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(connection, peer, addresses, effective_role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        address: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let handler = self.inner.handle_established_outbound_connection(
            connection,
            peer,
            address,
            role_override,
            port_use,
        );
        self.opened(connection, None, address, handler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match &event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::DialFailure(DialFailure { connection_id, .. }) => {
                self.origins.remove(connection_id);
            }
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        let subnet = self
            .origins
            .get(&connection)
            .and_then(|origin| origin.subnet);
        self.inner
            .store_mut()
            .set_source(Some(Source { peer, subnet }));
        self.inner
            .on_connection_handler_event(peer, connection, event);
        self.inner.store_mut().set_source(None);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        // The swarm polls again after every connection event, so an
        // outcome noted while one was handled is reported right after it.
        if let Some(outcome) = self.inner.store_mut().take_outcome() {
            return Poll::Ready(ToSwarm::GenerateEvent(KademliaEvent::Store(outcome)));
        }
        self.inner
            .poll(cx)
            .map(|event| event.map_out(KademliaEvent::Kad))
    }
}
