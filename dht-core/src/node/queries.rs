//! Kademlia queries in flight, and what their results mean: a get, put,
//! closest-peers lookup or registration becomes its caller's reply; a
//! lookup started by another part (a discovery, a routing-table refresh)
//! becomes an [`Outcome`] for that part.

use std::{collections::HashMap, num::NonZeroUsize};

use libp2p::{
    PeerId,
    kad::{self, GetClosestPeersError, GetClosestPeersOk, QueryId, QueryResult, Record, RecordKey},
};

use super::{
    action::{Action, Actions, Query},
    discovery::DiscoveryId,
};
use crate::{
    error::{ClosestPeersError, GetRecordError, PutRecordError, RegisterError},
    event::Event,
    handle::{GetRecordOk, PeerAddresses, PutRecordOk, QueryStats, Reply},
    namespace::Namespace,
    record::{StoreError, display_key},
};

/// What a query is for, and who waits for it.
#[derive(Debug)]
pub(crate) enum Pending {
    /// A caller's write, which succeeds once `required` peers confirmed.
    Put {
        key: Vec<u8>,
        required: usize,
        reply: Reply<Result<PutRecordOk, PutRecordError>>,
    },
    /// A caller's read, which succeeds once `required` copies were found.
    Get {
        key: Vec<u8>,
        required: usize,
        found: Vec<kad::PeerRecord>,
        reply: Reply<Result<GetRecordOk, GetRecordError>>,
    },
    /// A caller's closest-peers lookup.
    Closest {
        key: Vec<u8>,
        reply: Reply<Result<Vec<PeerAddresses>, ClosestPeersError>>,
    },
    /// The announcement of this node's registration in a namespace, with
    /// the caller's reply if a caller asked for it.
    Register {
        namespace: Namespace,
        reply: Option<Reply<Result<(), RegisterError>>>,
    },
    /// A discovery's lookup of the peers that store its namespace.
    Holders(DiscoveryId),
    /// A routing-table refresh started while joining or staying joined.
    Refresh,
}

/// Why a query could not start.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The local store refused the record to put.
    Store(StoreError),
    /// The local store refused this node's own registration.
    ProvideRefused,
    /// The routing table is empty: there is nobody to ask.
    NoKnownPeers,
}

/// What a finished query means for another part of the node.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The peers that store a discovery's namespace are known.
    Holders {
        discovery: DiscoveryId,
        holders: Vec<PeerAddresses>,
        timed_out: bool,
    },
    /// A refresh finished.
    Refreshed,
    /// A refresh could not start: the routing table is empty.
    RefreshImpossible,
    /// The local store has no room for this node's own registration.
    RegistrationRefused(Namespace),
}

/// The queries in flight.
#[derive(Debug, Default)]
pub(crate) struct Queries {
    pending: HashMap<QueryId, Pending>,
}

impl Queries {
    /// A caller's write of `value` under `key`, done once `required` peers
    /// besides this node confirmed.
    pub(crate) fn put(
        key: Vec<u8>,
        value: Vec<u8>,
        required: NonZeroUsize,
        reply: Reply<Result<PutRecordOk, PutRecordError>>,
        out: &mut Actions,
    ) {
        let quorum = if required.get() == 1 {
            kad::Quorum::One
        } else {
            kad::Quorum::N(required)
        };
        out.push(Action::Query {
            query: Query::PutRecord(Record::new(RecordKey::new(&key), value), quorum),
            pending: Pending::Put {
                key,
                required: required.get(),
                reply,
            },
        });
    }

    /// A caller's read of `key`, done once `required` copies were found.
    pub(crate) fn get(
        key: Vec<u8>,
        required: NonZeroUsize,
        reply: Reply<Result<GetRecordOk, GetRecordError>>,
        out: &mut Actions,
    ) {
        out.push(Action::Query {
            query: Query::GetRecord(RecordKey::new(&key)),
            pending: Pending::Get {
                key,
                required: required.get(),
                found: Vec::new(),
                reply,
            },
        });
    }

    /// A caller's lookup of the peers closest to `key`.
    pub(crate) fn closest(
        key: Vec<u8>,
        reply: Reply<Result<Vec<PeerAddresses>, ClosestPeersError>>,
        out: &mut Actions,
    ) {
        out.push(Action::Query {
            query: Query::ClosestPeers(key.clone()),
            pending: Pending::Closest { key, reply },
        });
    }

    /// The query `id` was started for `pending`.
    pub(crate) fn track(&mut self, id: QueryId, pending: Pending) {
        self.pending.insert(id, pending);
    }

    /// The query for `pending` could not start.
    pub(crate) fn on_start_failed(&self, pending: Pending, error: StartError) -> Option<Outcome> {
        match (pending, error) {
            (Pending::Put { reply, .. }, StartError::Store(error)) => {
                let error = match error {
                    StoreError::Invalid(error) => PutRecordError::InvalidRecord(error),
                    StoreError::Full { max_records, .. } => {
                        PutRecordError::StoreFull { max: max_records }
                    }
                    StoreError::ProviderKeysFull { max }
                    | StoreError::ProvidersFull { max }
                    | StoreError::RegistrationsFull { max } => PutRecordError::StoreFull { max },
                };
                let _ = reply.send(Err(error));
                None
            }
            (Pending::Register { namespace, reply }, _) => {
                tracing::warn!(%namespace, "cannot register: the store is full of registrations");
                if let Some(reply) = reply {
                    let _ = reply.send(Err(RegisterError::StoreFull {
                        namespace: namespace.clone(),
                    }));
                }
                Some(Outcome::RegistrationRefused(namespace))
            }
            (Pending::Refresh, _) => Some(Outcome::RefreshImpossible),
            (pending, error) => {
                tracing::error!(?pending, ?error, "a query that cannot fail to start failed");
                None
            }
        }
    }

    /// Kademlia reports progress of query `id`; `last` says it is over.
    pub(crate) fn on_progress(
        &mut self,
        id: QueryId,
        result: QueryResult,
        stats: QueryStats,
        last: bool,
        out: &mut Actions,
    ) -> Option<Outcome> {
        let pending = self.pending.remove(&id)?;
        match (pending, result) {
            (
                Pending::Put {
                    key,
                    required,
                    reply,
                },
                QueryResult::PutRecord(result),
            ) => {
                let _ = reply.send(put_result(key, required, result, stats));
                None
            }
            (
                Pending::Get {
                    key,
                    required,
                    mut found,
                    reply,
                },
                QueryResult::GetRecord(result),
            ) => {
                let over = match result {
                    Ok(kad::GetRecordOk::FoundRecord(record)) => {
                        found.push(record);
                        found.len() >= required || last
                    }
                    Err(kad::GetRecordError::Timeout { .. }) if found.is_empty() => {
                        let _ = reply.send(Err(GetRecordError::Timeout {
                            key: display_key(&key),
                        }));
                        return None;
                    }
                    // Finished with nothing more, not found, or failed with
                    // some copies found: the read ends with what it has.
                    _ => true,
                };
                if !over {
                    self.pending.insert(
                        id,
                        Pending::Get {
                            key,
                            required,
                            found,
                            reply,
                        },
                    );
                    return None;
                }
                if found.len() >= required && !last {
                    out.push(Action::FinishQuery(id));
                }
                let _ = reply.send(get_result(key, required, found, stats));
                None
            }
            (Pending::Closest { key, reply }, QueryResult::GetClosestPeers(result)) => {
                let result = match result {
                    Ok(GetClosestPeersOk { peers, .. }) => {
                        Ok(peers.into_iter().map(peer_addresses).collect())
                    }
                    Err(GetClosestPeersError::Timeout { peers, .. }) => {
                        Err(ClosestPeersError::Timeout {
                            key: display_key(&key),
                            found: peers.into_iter().map(peer_addresses).collect(),
                        })
                    }
                };
                let _ = reply.send(result);
                None
            }
            (Pending::Register { namespace, reply }, QueryResult::StartProviding(result)) => {
                let result = match result {
                    Ok(_) => {
                        tracing::info!(%namespace, "registration announced");
                        out.emit(Event::Registered {
                            namespace: namespace.clone(),
                        });
                        Ok(())
                    }
                    Err(_) => Err(RegisterError::Timeout { namespace }),
                };
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
                None
            }
            (Pending::Holders(discovery), QueryResult::GetClosestPeers(result)) => {
                let (holders, timed_out) = match result {
                    Ok(GetClosestPeersOk { peers, .. }) => (peers, false),
                    Err(GetClosestPeersError::Timeout { peers, .. }) => (peers, true),
                };
                Some(Outcome::Holders {
                    discovery,
                    holders: holders.into_iter().map(peer_addresses).collect(),
                    timed_out,
                })
            }
            (Pending::Refresh, QueryResult::Bootstrap(_)) => {
                if last {
                    Some(Outcome::Refreshed)
                } else {
                    self.pending.insert(id, Pending::Refresh);
                    None
                }
            }
            (pending, result) => {
                tracing::error!(
                    ?pending,
                    ?result,
                    "query result does not match its operation"
                );
                None
            }
        }
    }
}

fn put_result(
    key: Vec<u8>,
    required: usize,
    result: kad::PutRecordResult,
    stats: QueryStats,
) -> Result<PutRecordOk, PutRecordError> {
    match result {
        Ok(_) => Ok(PutRecordOk { key, stats }),
        Err(kad::PutRecordError::QuorumFailed { success, .. }) => {
            Err(PutRecordError::QuorumFailed {
                key: display_key(&key),
                stored: success.len(),
                required,
            })
        }
        Err(kad::PutRecordError::Timeout { success, .. }) => Err(PutRecordError::Timeout {
            key: display_key(&key),
            stored: success.len(),
            required,
        }),
    }
}

/// The reply to a read that is over, from the copies it found.
fn get_result(
    key: Vec<u8>,
    required: usize,
    found: Vec<kad::PeerRecord>,
    stats: QueryStats,
) -> Result<GetRecordOk, GetRecordError> {
    if found.is_empty() {
        return Err(GetRecordError::NotFound {
            key: display_key(&key),
        });
    }
    if found.len() < required {
        return Err(GetRecordError::QuorumFailed {
            key: display_key(&key),
            found: found.len(),
            required,
        });
    }
    let found_locally = found.iter().any(|r| r.peer.is_none());
    let found_at: Vec<PeerId> = found.iter().filter_map(|r| r.peer).collect();
    let first = found.into_iter().next().map(|r| r.record);
    let (value, publisher) = first.map(|r| (r.value, r.publisher)).unwrap_or_default();
    Ok(GetRecordOk {
        key,
        value,
        publisher,
        found_locally,
        found_at,
        stats,
    })
}

fn peer_addresses(info: kad::PeerInfo) -> PeerAddresses {
    PeerAddresses {
        peer_id: info.peer_id,
        addresses: info.addrs,
    }
}

#[cfg(test)]
mod tests {
    use futures::channel::oneshot;
    use libp2p::kad::PeerRecord;

    use super::*;

    /// Query ids come only from a Kademlia behaviour; one without a swarm
    /// hands them out all the same.
    fn query_ids(count: usize) -> Vec<QueryId> {
        let local = PeerId::random();
        let store = kad::store::MemoryStore::new(local);
        let mut kad = kad::Behaviour::new(local, store);
        (0..count)
            .map(|i| kad.get_closest_peers(vec![i as u8]))
            .collect()
    }

    fn copy(from: Option<PeerId>, value: &[u8]) -> kad::QueryResult {
        QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(PeerRecord {
            peer: from,
            record: Record::new(RecordKey::new(b"k"), value.to_vec()),
        })))
    }

    /// Tracks a read of `k` that needs `required` copies; returns where its
    /// answer arrives.
    fn track_get(
        queries: &mut Queries,
        id: QueryId,
        required: usize,
    ) -> oneshot::Receiver<Result<GetRecordOk, GetRecordError>> {
        let (reply, answer) = oneshot::channel();
        queries.track(
            id,
            Pending::Get {
                key: b"k".to_vec(),
                required,
                found: Vec::new(),
                reply,
            },
        );
        answer
    }

    fn finished() -> kad::QueryResult {
        QueryResult::GetRecord(Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord {
            cache_candidates: Default::default(),
        }))
    }

    #[test]
    fn a_read_ends_at_its_quorum_and_stops_the_query() {
        let mut queries = Queries::default();
        let mut out = Actions::default();
        let id = query_ids(1)[0];
        let mut answer = track_get(&mut queries, id, 2);
        let holder = PeerId::random();
        queries.on_progress(id, copy(None, b"v"), QueryStats::default(), false, &mut out);
        assert!(answer.try_recv().unwrap().is_none(), "one copy of two");
        assert!(out.drain().is_empty());

        queries.on_progress(
            id,
            copy(Some(holder), b"v"),
            QueryStats::default(),
            false,
            &mut out,
        );
        assert!(matches!(&out.drain()[..], [Action::FinishQuery(stopped)] if *stopped == id));
        let found = answer.try_recv().unwrap().unwrap().unwrap();
        assert_eq!(found.value, b"v");
        assert!(found.found_locally);
        assert_eq!(found.found_at, vec![holder]);
        assert!(queries.pending.is_empty());
    }

    #[test]
    fn a_read_that_finds_too_few_copies_says_how_many() {
        let mut queries = Queries::default();
        let mut out = Actions::default();
        let ids = query_ids(2);
        let mut short_answer = track_get(&mut queries, ids[0], 3);
        queries.on_progress(
            ids[0],
            copy(Some(PeerId::random()), b"v"),
            QueryStats::default(),
            false,
            &mut out,
        );
        queries.on_progress(ids[0], finished(), QueryStats::default(), true, &mut out);
        assert!(matches!(
            short_answer.try_recv().unwrap().unwrap(),
            Err(GetRecordError::QuorumFailed {
                found: 1,
                required: 3,
                ..
            })
        ));

        let mut missing_answer = track_get(&mut queries, ids[1], 1);
        let not_found = QueryResult::GetRecord(Err(kad::GetRecordError::NotFound {
            key: RecordKey::new(b"k"),
            closest_peers: Vec::new(),
        }));
        queries.on_progress(ids[1], not_found, QueryStats::default(), true, &mut out);
        let error = missing_answer.try_recv().unwrap().unwrap().unwrap_err();
        assert_eq!(crate::error::ErrorCode::code(&error), "not-found");
    }

    #[test]
    fn a_write_reports_how_many_peers_confirmed() {
        let mut queries = Queries::default();
        let mut out = Actions::default();
        let id = query_ids(1)[0];
        let (reply, mut answer) = oneshot::channel();
        queries.track(
            id,
            Pending::Put {
                key: b"k".to_vec(),
                required: 3,
                reply,
            },
        );
        let result = QueryResult::PutRecord(Err(kad::PutRecordError::QuorumFailed {
            key: RecordKey::new(b"k"),
            success: vec![PeerId::random()],
            quorum: NonZeroUsize::new(3).unwrap(),
        }));
        queries.on_progress(id, result, QueryStats::default(), true, &mut out);
        assert!(matches!(
            answer.try_recv().unwrap().unwrap(),
            Err(PutRecordError::QuorumFailed {
                stored: 1,
                required: 3,
                ..
            })
        ));
    }

    #[test]
    fn lookups_of_other_parts_become_outcomes() {
        let mut queries = Queries::default();
        let mut out = Actions::default();
        let ids = query_ids(2);
        queries.track(ids[0], Pending::Holders(7));
        let holder = PeerId::random();
        let result = QueryResult::GetClosestPeers(Err(GetClosestPeersError::Timeout {
            key: vec![1],
            peers: vec![kad::PeerInfo {
                peer_id: holder,
                addrs: Vec::new(),
            }],
        }));
        match queries.on_progress(ids[0], result, QueryStats::default(), true, &mut out) {
            Some(Outcome::Holders {
                discovery: 7,
                holders,
                timed_out: true,
            }) => assert_eq!(holders[0].peer_id, holder),
            other => panic!("expected the holders, got {other:?}"),
        }

        queries.track(ids[1], Pending::Refresh);
        let step = || {
            QueryResult::Bootstrap(Ok(kad::BootstrapOk {
                peer: PeerId::random(),
                num_remaining: 1,
            }))
        };
        assert!(
            queries
                .on_progress(ids[1], step(), QueryStats::default(), false, &mut out)
                .is_none()
        );
        assert!(matches!(
            queries.on_progress(ids[1], step(), QueryStats::default(), true, &mut out),
            Some(Outcome::Refreshed)
        ));
    }

    #[test]
    fn a_registration_the_store_refuses_is_reported_to_its_caller_and_its_part() {
        let queries = Queries::default();
        let namespace = Namespace::new("chat").unwrap();
        let (reply, mut answer) = oneshot::channel();
        let outcome = queries.on_start_failed(
            Pending::Register {
                namespace: namespace.clone(),
                reply: Some(reply),
            },
            StartError::ProvideRefused,
        );
        assert!(matches!(outcome, Some(Outcome::RegistrationRefused(ns)) if ns == namespace));
        assert!(matches!(
            answer.try_recv().unwrap().unwrap(),
            Err(RegisterError::StoreFull { .. })
        ));
    }
}
