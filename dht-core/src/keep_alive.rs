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
//!
//! Any peer can open such a stream, so holding the remote end is bounded:
//! a node holds at most `max_pinned_by_others` connections open for peers
//! it has not pinned itself (its clients, when it is their bootstrap); the
//! stream of one more is dropped at once, and that connection closes when
//! idle like any other. Together with the per-address cap this keeps a
//! flood of peers from holding this node's connection slots forever.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    convert::Infallible,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
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

/// How many connections may be held open for peers this node has not
/// pinned, shared by every connection's handler.
#[derive(Debug, Clone)]
struct Budget {
    held: Arc<AtomicUsize>,
    limit: usize,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Self {
            held: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Takes one slot, if one is left.
    fn take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.limit).then_some(held + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_sub(1)
            });
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// Keeps connections to pinned peers open.
#[derive(Debug)]
pub struct Behaviour {
    pinned: HashSet<PeerId>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    pending: VecDeque<ToSwarm<Infallible, bool>>,
    budget: Budget,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_PINNED_BY_OTHERS)
    }
}

/// The default of [`ConnectionLimits::max_pinned_by_others`](crate::ConnectionLimits::max_pinned_by_others).
pub const DEFAULT_MAX_PINNED_BY_OTHERS: usize = 1024;

impl Behaviour {
    /// Holds at most `max_pinned_by_others` connections open for peers this
    /// node has not pinned.
    pub fn new(max_pinned_by_others: usize) -> Self {
        Self {
            pinned: HashSet::new(),
            connections: HashMap::new(),
            pending: VecDeque::new(),
            budget: Budget::new(max_pinned_by_others),
        }
    }

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
        Handler::new(self.pinned.contains(peer), self.budget.clone())
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
    /// Whether the held inbound stream takes a slot of the budget (this
    /// node did not pin the peer).
    charged: bool,
    budget: Budget,
}

impl Handler {
    fn new(wanted: bool, budget: Budget) -> Self {
        Self {
            wanted,
            outbound: None,
            outbound_requested: false,
            outbound_failed: false,
            inbound: None,
            charged: false,
            budget,
        }
    }

    /// Holds the remote's stream if this node pinned the peer too, or if a
    /// slot is left for peers it did not pin.
    fn hold_inbound(&mut self, stream: Stream) {
        if self.inbound.is_none() && !self.wanted {
            if !self.budget.take() {
                tracing::debug!("no slot left to keep a connection open for its peer");
                return;
            }
            self.charged = true;
        }
        // One held stream per connection is enough; a newer one replaces it.
        self.inbound = Some(stream);
    }

    fn release_inbound(&mut self) {
        self.inbound = None;
        self.uncharge();
    }

    fn uncharge(&mut self) {
        if self.charged {
            self.charged = false;
            self.budget.give_back();
        }
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        self.uncharge();
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
            self.release_inbound();
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
        if wanted {
            // Held for this node's own reason now.
            self.uncharge();
        } else {
            self.outbound = None;
            if self.inbound.is_some() && !self.charged {
                if self.budget.take() {
                    self.charged = true;
                } else {
                    self.inbound = None;
                }
            }
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<'_, Self::InboundProtocol, Self::OutboundProtocol, (), ()>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(inbound) => self.hold_inbound(inbound.protocol),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_held_for_others_are_bounded_and_slots_come_back() {
        let budget = Budget::new(2);
        assert!(budget.take() && budget.take());
        assert!(!budget.take(), "a third peer is not held open");
        budget.give_back();
        assert_eq!(budget.held(), 1);
        assert!(budget.take());
        // A handler gives its slot back when its connection ends.
        let mut handler = Handler::new(false, budget.clone());
        handler.charged = true;
        drop(handler);
        assert_eq!(budget.held(), 1);
        // Giving back more than was taken cannot underflow.
        budget.give_back();
        budget.give_back();
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn pinning_a_peer_frees_the_slot_its_connection_took() {
        let budget = Budget::new(1);
        let mut handler = Handler::new(false, budget.clone());
        assert!(budget.take());
        handler.charged = true;
        handler.on_behaviour_event(true);
        assert_eq!(budget.held(), 0, "held for this node's own reason now");
        assert!(!handler.charged);
    }
}
