//! Pinned connections: connections that stay open while idle.
//!
//! libp2p closes a connection once no protocol has used it for the idle
//! timeout, which is right for the many short-lived connections of DHT
//! lookups. Two kinds of connection must outlive that: the one to each
//! bootstrap peer (so a node notices when the bootstrap goes away, and a
//! restarted bootstrap learns the network again from reconnecting nodes) and
//! the links between namespace members. For a pinned peer the local side opens
//! one idle stream on [`KEEP_ALIVE_PROTOCOL`] per connection and holds it; the
//! remote side holds its end. An open stream counts as activity on both sides,
//! so neither closes the connection. Nothing is ever written on the stream;
//! a peer that writes, or closes its end, loses the stream.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use futures::AsyncRead;
use libp2p::{
    Multiaddr, PeerId, Stream, StreamProtocol,
    core::{Endpoint, transport::PortUse, upgrade::ReadyUpgrade},
    swarm::{
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm, handler::ConnectionEvent,
    },
};

/// The protocol of the idle stream that keeps a pinned connection open.
pub const KEEP_ALIVE_PROTOCOL: StreamProtocol = StreamProtocol::new("/ns-dht/keep-alive/1.0.0");

/// Keeps connections to pinned peers open.
#[derive(Debug, Default)]
pub struct Behaviour {
    pinned: HashSet<PeerId>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    pending: VecDeque<ToSwarm<Infallible, bool>>,
}

impl Behaviour {
    /// Keeps every connection to `peer` open, now and in future.
    pub fn pin(&mut self, peer: PeerId) {
        if self.pinned.insert(peer) {
            self.notify(peer, true);
        }
    }

    /// Lets connections to `peer` close when idle again.
    pub fn unpin(&mut self, peer: &PeerId) {
        if self.pinned.remove(peer) {
            self.notify(*peer, false);
        }
    }

    /// Whether `peer` is pinned.
    pub fn is_pinned(&self, peer: &PeerId) -> bool {
        self.pinned.contains(peer)
    }

    fn notify(&mut self, peer: PeerId, wanted: bool) {
        for connection in self.connections.get(&peer).into_iter().flatten() {
            self.pending.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(*connection),
                event: wanted,
            });
        }
    }

    fn handler_for(&self, peer: &PeerId) -> Handler {
        Handler::new(self.pinned.contains(peer))
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler_for(&peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler_for(&peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections
                    .entry(e.peer_id)
                    .or_default()
                    .push(e.connection_id);
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(list) = self.connections.get_mut(&e.peer_id) {
                    list.retain(|c| *c != e.connection_id);
                    if list.is_empty() {
                        self.connections.remove(&e.peer_id);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.pending.pop_front() {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }
}

/// Holds the idle streams of one connection.
#[derive(Debug)]
pub struct Handler {
    wanted: bool,
    outbound: Option<Stream>,
    outbound_requested: bool,
    /// The remote does not speak the protocol or dropped our stream; do not
    /// ask again on this connection.
    outbound_failed: bool,
    inbound: Option<Stream>,
}

impl Handler {
    fn new(wanted: bool) -> Self {
        Self {
            wanted,
            outbound: None,
            outbound_requested: false,
            outbound_failed: false,
            inbound: None,
        }
    }
}

/// Polls a held stream: `true` while it is open and silent.
fn still_idle(stream: &mut Stream, cx: &mut Context<'_>) -> bool {
    let mut byte = [0u8; 1];
    // Anything but "nothing yet" ends the stream: end of stream, an error, or
    // data the protocol does not allow.
    matches!(Pin::new(stream).poll_read(cx, &mut byte), Poll::Pending)
}

impl ConnectionHandler for Handler {
    type FromBehaviour = bool;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(KEEP_ALIVE_PROTOCOL), ())
    }

    fn connection_keep_alive(&self) -> bool {
        self.wanted
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Infallible>> {
        if let Some(stream) = self.inbound.as_mut()
            && !still_idle(stream, cx)
        {
            self.inbound = None;
        }
        if let Some(stream) = self.outbound.as_mut()
            && !still_idle(stream, cx)
        {
            self.outbound = None;
            self.outbound_failed = true;
        }
        if self.wanted
            && self.outbound.is_none()
            && !self.outbound_requested
            && !self.outbound_failed
        {
            self.outbound_requested = true;
            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(KEEP_ALIVE_PROTOCOL), ()),
            });
        }
        Poll::Pending
    }

    fn on_behaviour_event(&mut self, wanted: bool) {
        self.wanted = wanted;
        if !wanted {
            self.outbound = None;
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol, (), ()>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(inbound) => {
                // One held stream per connection is enough; a newer one replaces it.
                self.inbound = Some(inbound.protocol);
            }
            ConnectionEvent::FullyNegotiatedOutbound(outbound) => {
                self.outbound_requested = false;
                if self.wanted {
                    self.outbound = Some(outbound.protocol);
                }
            }
            ConnectionEvent::DialUpgradeError(_) => {
                self.outbound_requested = false;
                self.outbound_failed = true;
            }
            _ => {}
        }
    }
}
