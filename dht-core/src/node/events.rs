//! The node loop's handling of swarm events: each is translated into the
//! inputs of the parts it concerns.

use std::sync::Arc;

use libp2p::{
    Multiaddr, PeerId,
    core::ConnectedPoint,
    identify, kad, relay, request_response,
    swarm::{ConnectionError, SwarmEvent},
};
use web_time::Instant;

use super::{
    Node,
    action::{Action, Purpose},
    addresses, discovery, known_addresses, snapshot, stored_members,
};
use crate::{
    behaviour::BehaviourEvent,
    error::{DialError, DialFailure, ListenError},
    event::{Event, RelayLost},
    handle::{PeerAddresses, QueryStats},
    kademlia::KademliaEvent,
    message::{MessageError, MessageStatus},
    namespace::{NamespaceRequest, NamespaceResponse},
};

impl Node {
    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>, now: Instant) {
        self.on_event(event, now);
        self.reachability
            .update(self.relays.serving(), &mut self.actions);
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>, now: Instant) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(KademliaEvent::Kad(event))) => {
                self.on_kad_event(event, now)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(KademliaEvent::Store(event))) => {
                self.actions.emit(event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                connection_id,
            })) => {
                tracing::debug!(
                    peer = %peer_id,
                    kad = info.protocols.contains(&self.settings.kad_protocol),
                    addresses = info.listen_addrs.len(),
                    "identified"
                );
                let relays = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
                self.relays
                    .on_identify(peer_id, relays, now, &mut self.actions);
                let kad = &mut self.swarm.behaviour_mut().kad;
                let held = snapshot::routing_addresses(kad, &peer_id);
                // A peer new to the table enters only if its group (its
                // subnet, or its relay's) has room.
                let may_enter = !held.is_empty()
                    || !info.protocols.contains(&self.settings.kad_protocol)
                    || snapshot::bucket_of(kad, &peer_id).is_some_and(|bucket| {
                        let group = kad.routing_group_of(&connection_id);
                        let table = snapshot::table_entries(kad);
                        self.diversity.admit(peer_id, group, bucket, &table)
                    });
                self.addresses.on_identify(
                    peer_id,
                    info.listen_addrs,
                    &info.protocols,
                    &held,
                    may_enter,
                    &mut self.actions,
                )
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(_) | BehaviourEvent::Ping(_)) => {}
            SwarmEvent::Behaviour(BehaviourEvent::Namespace(event)) => {
                self.on_namespace_event(event, now)
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(
                relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
            )) => {
                let was_serving = self.relays.serving();
                self.relays.on_accepted(relay_peer_id, &mut self.actions);
                if !was_serving && self.relays.serving() {
                    // Registrations made before carry no address anyone
                    // can dial: announce them again with the circuit's.
                    self.membership.on_joined(&mut self.actions);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Native(event)) => {
                self.on_native_event(event, now)
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                self.reachability
                    .on_expired(&address, &mut self.relays, now, &mut self.actions)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Limits(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::IpLimits(never)) => match never {},
            SwarmEvent::Behaviour(BehaviourEvent::KeepAlive(never)) => match never {},
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                self.in_flight.listeners.insert(listener_id);
                let listening: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                self.addresses.on_listening(&listening);
                let relayed = self
                    .relays
                    .on_new_address(listener_id, &address, &mut self.actions);
                if self.settings.advertise_listen_addresses && !relayed {
                    let external: Vec<Multiaddr> =
                        self.swarm.external_addresses().cloned().collect();
                    addresses::advertise(&address, &listening, &external, &mut self.actions);
                }
                if let Some((_, reply)) = self.in_flight.listens.remove(&listener_id) {
                    let _ = reply.send(Ok(address.clone()));
                }
                self.actions.emit(Event::Listening { address });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let listening: Vec<Multiaddr> = self.swarm.listeners().cloned().collect();
                self.addresses.on_listening(&listening);
                self.actions
                    .push(Action::RemoveExternalAddress(address.clone()));
                self.actions.emit(Event::ListenAddressExpired { address });
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                self.in_flight.listeners.remove(&listener_id);
                self.relays.on_listener_closed(
                    listener_id,
                    RelayLost::from_listener_closed(&reason),
                    now,
                    &mut self.actions,
                );
                if let Some((address, reply)) = self.in_flight.listens.remove(&listener_id) {
                    let error = match reason {
                        Ok(()) => ListenError::Closed { address },
                        Err(error) => ListenError::Failed {
                            address,
                            source: Arc::new(error),
                        },
                    };
                    let _ = reply.send(Err(error));
                }
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!(%error, "listener error");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                if let Some((_, reply)) = self.in_flight.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.addresses.on_connected(peer_id, &endpoint);
                self.relays.on_connected(peer_id, &endpoint);
                self.departures.on_connected(&peer_id, now);
                self.replication.on_connected(&peer_id);
                if num_established.get() == 1 {
                    let (address, inbound) = match endpoint {
                        ConnectedPoint::Dialer { address, .. } => (address, false),
                        ConnectedPoint::Listener { send_back_addr, .. } => (send_back_addr, true),
                    };
                    self.actions.emit(Event::PeerConnected {
                        peer: peer_id,
                        address,
                        inbound,
                    });
                }
                self.joining.on_connected(peer_id, &mut self.actions);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                self.reachability.on_connection_closed(connection_id);
                if num_established > 0 {
                    return;
                }
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
                self.addresses.on_disconnected(&peer_id);
                self.relays.on_disconnected(&peer_id);
                let routing =
                    snapshot::routing_addresses(&mut self.swarm.behaviour_mut().kad, &peer_id);
                // Closed here for being idle, or broken.
                let broke = matches!(cause, Some(ConnectionError::IO(_)));
                self.departures
                    .on_disconnected(peer_id, broke, &routing, now);
                self.messages.forget(&peer_id);
                self.actions.emit(Event::PeerDisconnected { peer: peer_id });
                self.links.on_disconnected(peer_id, now, &mut self.actions);
                self.joining
                    .on_disconnected(peer_id, now, &mut self.actions);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(peer = ?peer_id, ?error, "dial failed");
                let error = Arc::new(error);
                if let Some((address, reply)) = self.in_flight.dials.remove(&connection_id) {
                    let _ = reply.send(Err(DialError::Failed {
                        address,
                        source: error.clone(),
                    }));
                }
                if let Some(peer) = peer_id
                    && !self.swarm.is_connected(&peer)
                {
                    self.on_dial_failed(peer, &error, now);
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "inbound connection failed");
            }
            _ => {}
        }
    }

    pub(super) fn on_dial_failed(&mut self, peer: PeerId, error: &DialFailure, now: Instant) {
        if !snapshot::routing_addresses(&mut self.swarm.behaviour_mut().kad, &peer).is_empty() {
            self.replication.on_gone(peer, now);
        }
        if !self.joining.is_bootstrap_peer(&peer)
            && self
                .departures
                .on_dial_failed(peer, error, &mut self.actions)
        {
            return;
        }
        let others_connected = self.swarm.connected_peers().next().is_some();
        self.joining
            .on_dial_failed(peer, error, others_connected, now, &mut self.actions);
    }

    fn on_kad_event(&mut self, event: kad::Event, now: Instant) {
        match event {
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                stats,
                step,
            } => {
                let stats = QueryStats::from(&stats);
                if let Some(outcome) =
                    self.queries
                        .on_progress(id, result, stats, step.last, &mut self.actions)
                {
                    self.on_outcome(outcome, now);
                }
            }
            // The store reports what became of inbound writes (see
            // `KademliaEvent::Store`).
            kad::Event::InboundRequest { .. } => {}
            kad::Event::RoutingUpdated {
                peer,
                is_new_peer,
                bucket_range,
                old_peer,
                addresses,
            } => {
                if is_new_peer {
                    self.replication.on_joined(peer, now);
                }
                self.kept_peers.keep(peer, addresses.into_vec());
                if let Some(evicted) = old_peer {
                    self.replication.on_gone(evicted, now);
                    self.kept_peers.forget(&evicted);
                }
                self.actions.emit(Event::RoutingUpdated {
                    peer,
                    bucket: bucket_range.0.ilog2().unwrap_or(0),
                    new_peer: is_new_peer,
                })
            }
            // Only in Kademlia's auto mode (`ServerMode::Auto`), when the
            // node gained its first external address or lost its last.
            kad::Event::ModeChanged { new_mode } => {
                tracing::info!(mode = %new_mode, "DHT mode changed");
                self.actions.emit(Event::ServingChanged {
                    serving: new_mode == kad::Mode::Server,
                });
                // See `Action::SetKadMode`.
                let connected: Vec<_> = self.swarm.connected_peers().copied().collect();
                self.swarm.behaviour_mut().identify.push(connected);
            }
            _ => {}
        }
    }

    /// The role's own discovery found members: the links act on them.
    pub(super) fn on_found(&mut self, found: discovery::Found, now: Instant) {
        let Self {
            swarm,
            links,
            actions,
            ..
        } = self;
        links.on_discovered(found, now, |peer| swarm.is_connected(peer), actions);
    }

    fn on_namespace_event(
        &mut self,
        event: request_response::Event<NamespaceRequest, NamespaceResponse>,
        now: Instant,
    ) {
        use request_response::{Event as RrEvent, Message};
        match event {
            RrEvent::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let (response, accepted) = match request {
                    NamespaceRequest::Hello(hello) => {
                        let registered = self.membership.contains(&hello.namespace);
                        (self.links.answer(registered), registered.then_some(hello))
                    }
                    NamespaceRequest::Members { namespace } => {
                        let members =
                            stored_members(&mut self.swarm, self.settings.local, &namespace, now);
                        (NamespaceResponse::Members(members), None)
                    }
                    NamespaceRequest::Message(data) => {
                        let linked = self.links.is_linked(&peer);
                        let status = self.messages.on_inbound(peer, linked, now);
                        if status == MessageStatus::Delivered {
                            self.actions
                                .emit(Event::MessageReceived { from: peer, data });
                        }
                        (NamespaceResponse::Message(status), None)
                    }
                };
                let sent = self
                    .swarm
                    .behaviour_mut()
                    .namespace
                    .send_response(channel, response);
                if let (Ok(()), Some(hello)) = (sent, accepted) {
                    self.links.on_accepted(peer, hello, &mut self.actions);
                }
            }
            RrEvent::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => match self.in_flight.requests.remove(&request_id) {
                Some(Purpose::Members(discovery)) => {
                    let members = match response {
                        NamespaceResponse::Members(members) => Some(members),
                        _ => {
                            tracing::debug!(%peer, "answered a members request with something else");
                            None
                        }
                    };
                    self.on_members(discovery, members, now);
                }
                Some(Purpose::Handshake(handshake)) => {
                    self.links
                        .on_answer(peer, handshake, &response, now, &mut self.actions)
                }
                Some(Purpose::Message { peer, reply }) => {
                    let result = match response {
                        NamespaceResponse::Message(status) => {
                            MessageError::from_status(peer, status).map_or(Ok(()), Err)
                        }
                        _ => Err(MessageError::BadAnswer { peer }),
                    };
                    let _ = reply.send(result);
                }
                None => {}
            },
            RrEvent::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => match self.in_flight.requests.remove(&request_id) {
                Some(Purpose::Members(discovery)) => {
                    tracing::debug!(%peer, %error, "members request failed");
                    self.on_members(discovery, None, now);
                }
                Some(Purpose::Handshake(handshake)) => {
                    self.links
                        .on_failure(peer, handshake, error, now, &mut self.actions)
                }
                Some(Purpose::Message { peer, reply }) => {
                    let _ = reply.send(Err(MessageError::Failed {
                        peer,
                        source: Arc::new(error),
                    }));
                }
                None => {}
            },
            RrEvent::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound namespace request failed");
            }
            RrEvent::ResponseSent { .. } => {}
        }
    }

    fn on_members(
        &mut self,
        id: discovery::DiscoveryId,
        members: Option<Vec<PeerAddresses>>,
        now: Instant,
    ) {
        let Self {
            swarm,
            discovery,
            addresses,
            ..
        } = self;
        let known = |peer: &PeerId| known_addresses(swarm, addresses, peer);
        let reach = addresses.reach();
        if let Some(found) = discovery.on_members(id, members, reach, known) {
            self.on_found(found, now);
        }
    }
}

/// The native side: the relay server's, AutoNAT v2's and DCUtR's events.
#[cfg(not(target_arch = "wasm32"))]
impl Node {
    fn on_native_event(&mut self, event: crate::native::NativeEvent, now: Instant) {
        use crate::native::NativeEvent;
        match event {
            NativeEvent::Relay(event) => {
                if let Some(peer) = self.relay_server.on(&event) {
                    let kad = &mut self.swarm.behaviour_mut().kad;
                    let routing = snapshot::routing_addresses(kad, &peer);
                    self.departures.on_reservation_ended(
                        peer,
                        self.settings.local,
                        routing,
                        &mut self.actions,
                    );
                }
            }
            NativeEvent::Tested(test) => self.reachability.on_tested(
                test.tested_addr,
                test.result.is_ok(),
                test.server,
                &mut self.relays,
                now,
                &mut self.actions,
            ),
            NativeEvent::Served(served) => tracing::debug!(
                client = %served.client,
                address = %served.tested_addr,
                ok = served.result.is_ok(),
                "dialed a peer back"
            ),
            NativeEvent::HolePunch(punch) => self.reachability.on_hole_punch(
                punch.remote_peer_id,
                punch.result.map_err(|error| error.to_string()),
                &mut self.actions,
            ),
        }
    }
}

/// The browser's: none of these behaviours run there.
#[cfg(target_arch = "wasm32")]
impl Node {
    fn on_native_event(&mut self, never: std::convert::Infallible, _now: Instant) {
        match never {}
    }
}
