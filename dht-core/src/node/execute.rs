//! The node loop carrying out what the parts decided ([`Action`]s), in
//! order. This is the only place that acts on the swarm.

use std::sync::Arc;

use libp2p::{
    kad::{self, QueryId},
    swarm::{
        DialError as SwarmDialError,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use web_time::Instant;

use super::{
    Node,
    action::{Action, Query},
    queries::{Pending, StartError},
};
use crate::{
    event::Event,
    record::{Store, StoreError},
};

impl Node {
    /// Carries out every queued action; an action may queue more.
    pub(super) fn carry_out_actions(&mut self) {
        while let Some(action) = self.actions.pop() {
            self.carry_out(action);
        }
    }

    fn carry_out(&mut self, action: Action) {
        let behaviour = self.swarm.behaviour_mut();
        match action {
            Action::Emit(event) => self.subscribers.publish(&event),
            Action::Dial { peer, addresses } => {
                let opts = DialOpts::peer_id(peer)
                    .addresses(addresses)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                match self.swarm.dial(opts) {
                    // Another dial of this peer is under way; its outcome counts.
                    Ok(()) | Err(SwarmDialError::DialPeerConditionFalse(_)) => {}
                    Err(error) => self.on_dial_failed(peer, &Arc::new(error), Instant::now()),
                }
            }
            Action::Pin(peer) => behaviour.keep_alive.pin(peer),
            Action::Unpin(peer) => {
                // Bootstrap peers stay pinned for as long as the node runs.
                if !self.joining.is_bootstrap_peer(&peer) {
                    behaviour.keep_alive.unpin(&peer);
                }
            }
            Action::AddAddress { peer, address } => {
                behaviour.kad.add_address(&peer, address);
            }
            Action::RemoveAddress { peer, address } => {
                if behaviour.kad.remove_address(&peer, &address).is_some() {
                    self.replication.on_gone(peer, Instant::now());
                    self.kept_peers.forget(&peer);
                }
            }
            Action::RemovePeer { peer, reason } => {
                if behaviour.kad.remove_peer(&peer).is_some() {
                    self.replication.on_gone(peer, Instant::now());
                    self.kept_peers.forget(&peer);
                    tracing::debug!(%peer, %reason, "removed from the routing table");
                    self.subscribers
                        .publish(&Event::RoutingRemoved { peer, reason });
                }
            }
            Action::AddExternalAddress(address) => self.swarm.add_external_address(address),
            Action::RemoveExternalAddress(address) => self.swarm.remove_external_address(&address),
            Action::ListenVia { relay, address } => {
                let listener = match self.swarm.listen_on(address) {
                    Ok(id) => Some(id),
                    Err(error) => {
                        tracing::debug!(%relay, %error, "could not listen through the relay");
                        None
                    }
                };
                self.relays
                    .on_listen_started(relay, listener, Instant::now(), &mut self.actions);
            }
            Action::SetKadMode(mode) => {
                behaviour.kad.set_mode(Some(mode));
                // Identify pushes a change of protocols only on connections
                // whose first exchange is over; a switch during it would go
                // unseen for the identify interval (5 minutes).
                let connected: Vec<_> = self.swarm.connected_peers().copied().collect();
                self.swarm.behaviour_mut().identify.push(connected);
            }
            Action::Query { query, pending } => self.start_query(query, pending),
            Action::FinishQuery(id) => finish_query(&mut behaviour.kad, id),
            Action::StopProviding(key) => behaviour.kad.stop_providing(&key),
            Action::Request {
                peer,
                addresses,
                request,
                purpose,
            } => {
                let id = behaviour
                    .namespace
                    .send_request_with_addresses(&peer, request, addresses);
                self.in_flight.requests.insert(id, purpose);
            }
        }
    }

    fn start_query(&mut self, query: Query, pending: Pending) {
        let kad = &mut self.swarm.behaviour_mut().kad;
        let started = match query {
            Query::GetRecord(key) => Ok(kad.get_record(key)),
            // The store is asked first, for its reasons if it refuses;
            // Kademlia then stores the record (as published by this node)
            // and sends it out.
            Query::PutRecord(record, quorum) => match kad.store_mut().check(&record) {
                Ok(()) => {
                    let limits = kad.store_mut().limits();
                    let full = StoreError::Full {
                        max_records: limits.max_records,
                        max_bytes: limits.max_record_bytes,
                    };
                    kad.put_record(record, quorum).map_err(|_| {
                        // What `check` could not foresee: the storage failed.
                        StartError::Store(kad.store_mut().take_refusal().unwrap_or(full))
                    })
                }
                Err(error) => Err(StartError::Store(error)),
            },
            Query::Repair {
                record,
                peers,
                here,
            } => {
                if here && let Err(reason) = kad.store_mut().insert(record.clone()) {
                    tracing::debug!(%reason, "could not update the local copy");
                }
                if peers.is_empty() {
                    return;
                }
                Ok(kad.put_record_to(record, peers.into_iter(), kad::Quorum::One))
            }
            Query::ClosestPeers(key) => Ok(kad.get_n_closest_peers(key, self.settings.k)),
            Query::Provide(key) => kad
                .start_providing(key)
                .map_err(|_| StartError::ProvideRefused),
            Query::Bootstrap => kad.bootstrap().map_err(|_| StartError::NoKnownPeers),
        };
        match started {
            Ok(id) => self.queries.track(id, pending),
            Err(error) => {
                if let Some(outcome) = self.queries.on_start_failed(pending, error) {
                    self.on_outcome(outcome, Instant::now());
                }
            }
        }
    }
}

fn finish_query(kad: &mut kad::Behaviour<Store>, id: QueryId) {
    if let Some(mut query) = kad.query_mut(&id) {
        query.finish();
    }
}
