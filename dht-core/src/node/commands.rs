//! The node loop's answers to the handle's commands: each becomes a call
//! into the part it concerns, or a read of the state for a snapshot.

use std::sync::Arc;

use libp2p::{Multiaddr, PeerId, TransportError, swarm::dial_opts::DialOpts};
use web_time::{Instant, SystemTime};

use super::{Node, action::Purpose, discovery::Origin, queries::Queries, snapshot, stored_members};
use crate::{
    error::{DialError, ListenError},
    handle::{Command, Reply},
    message::MessageError,
    namespace::NamespaceRequest,
    record::Sealed,
};

/// The wall clock in milliseconds since the Unix epoch: the default
/// sequence number of a mutable record (0 if the clock is before 1970).
fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

impl Node {
    pub(super) fn on_command(&mut self, command: Command, now: Instant) {
        let out = &mut self.actions;
        let kad = &mut self.swarm.behaviour_mut().kad;
        match command {
            Command::PutRecord {
                write,
                quorum,
                reply,
            } => {
                let store = kad.store_mut();
                let held = write.key().ok().and_then(|key| store.sequence_held(&key));
                let max_size = store.limits().max_value_size;
                match write.seal(held, unix_millis(), max_size) {
                    Ok(Sealed { key, stored, seq }) => {
                        let required = quorum.resolve(self.settings.k);
                        Queries::put(key, stored, seq, required, self.settings.k, reply, out)
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error.into()));
                    }
                }
            }
            Command::GetRecord { key, quorum, reply } => {
                Queries::get(key, quorum.resolve(self.settings.k), reply, out)
            }
            Command::ClosestPeers { key, reply } => Queries::closest(key, reply, out),
            Command::Bootstrap { reply } => self.joining.refresh(Some(reply), out),
            Command::Register { namespace, reply } => {
                self.membership.register(namespace, Some(reply), out)
            }
            Command::Unregister { namespace, reply } => {
                self.membership.unregister(&namespace, out);
                let _ = reply.send(());
            }
            Command::Discover { namespace, reply } => {
                let stored = stored_members(&mut self.swarm, self.settings.local, &namespace, now);
                self.discovery
                    .start(namespace, Origin::Caller(reply), stored, &mut self.actions);
            }
            Command::Link {
                namespace,
                peer,
                reply,
            } => self.links.link(namespace, &peer, reply, out),
            Command::SendMessage { peer, data, reply } => {
                if self.links.is_linked(&peer) {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .namespace
                        .send_request(&peer, NamespaceRequest::Message(data));
                    self.in_flight
                        .requests
                        .insert(id, Purpose::Message { peer, reply });
                } else {
                    let _ = reply.send(Err(MessageError::NotLinked { peer }));
                }
            }
            Command::Dial { address, reply } => self.dial_address(address, reply),
            Command::ListenOn { address, reply } => self.listen_on(address, reply),
            Command::RoutingTable { reply } => {
                let _ = reply.send(snapshot::routing_table(kad, self.settings.local));
            }
            Command::Records { reply } => {
                let local = self.settings.local;
                let _ = reply.send(snapshot::stored_records(kad.store_mut(), local, now));
            }
            Command::Registrations { reply } => {
                let _ = reply.send(snapshot::registrations(kad.store_mut(), now));
            }
            Command::Links { reply } => {
                let _ = reply.send(self.links.snapshot());
            }
            Command::ListenAddresses { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::ConnectedPeers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::NetworkReport { reply } => {
                let vitals = snapshot::Vitals {
                    local: self.settings.local,
                    role: self.settings.role,
                    uptime: now.saturating_duration_since(self.settings.started),
                    connected_peers: self.swarm.connected_peers().count(),
                    registered_in: self.membership.namespaces().cloned().collect(),
                    links: self.links.len(),
                    forgeries: self.queries.forgeries(),
                    relayed_by: self.relays.held(),
                    reachability: self.reachability.current(self.relays.serving()),
                    hole_punched: self.reachability.hole_punched(),
                    relay: self
                        .swarm
                        .behaviour()
                        .is_relay()
                        .then(|| self.relay_server.report()),
                };
                let kad = &mut self.swarm.behaviour_mut().kad;
                let _ = reply.send(snapshot::network_report(kad, vitals, now));
            }
            Command::Subscribe { reply } => {
                let _ = reply.send(self.subscribers.subscribe());
            }
            Command::Shutdown { reply } => self.stopping = Some(reply),
        }
    }

    fn dial_address(&mut self, address: Multiaddr, reply: Reply<Result<PeerId, DialError>>) {
        let opts = DialOpts::unknown_peer_id().address(address.clone()).build();
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.in_flight.dials.insert(connection, (address, reply));
            }
            Err(error) => {
                let _ = reply.send(Err(DialError::Failed {
                    address,
                    source: Arc::new(error),
                }));
            }
        }
    }

    fn listen_on(&mut self, address: Multiaddr, reply: Reply<Result<Multiaddr, ListenError>>) {
        match self.swarm.listen_on(address.clone()) {
            Ok(id) => {
                self.in_flight.listens.insert(id, (address, reply));
            }
            Err(TransportError::MultiaddrNotSupported(address)) => {
                let _ = reply.send(Err(ListenError::Unsupported { address }));
            }
            Err(TransportError::Other(error)) => {
                let _ = reply.send(Err(ListenError::Failed {
                    address,
                    source: Arc::new(error),
                }));
            }
        }
    }
}
