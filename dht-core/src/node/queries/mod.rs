//! Kademlia queries in flight, and what their results mean: a get, put,
//! closest-peers lookup or registration becomes its caller's reply; a
//! lookup started by another part (a discovery, a routing-table refresh)
//! becomes an [`Outcome`] for that part.

use std::{collections::HashMap, num::NonZeroUsize};

use libp2p::kad::{
    self, GetClosestPeersError, GetClosestPeersOk, QueryId, QueryResult, Record, RecordKey,
};

mod read;

pub(crate) use read::Read;

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
    /// A caller's write to the `k` closest peers, which succeeds if
    /// `required` of them stored it.
    Put {
        key: Vec<u8>,
        /// The version written, for a mutable record.
        seq: Option<u64>,
        required: usize,
        k: usize,
        reply: Reply<Result<PutRecordOk, PutRecordError>>,
    },
    /// A caller's read, which succeeds once `required` valid copies of one
    /// version were found.
    Get {
        key: Vec<u8>,
        required: usize,
        read: Read,
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
    /// A routing-table refresh started while joining or staying joined,
    /// until its lookup of this node's own id ends.
    Refresh,
    /// The rest of a refresh: a lookup of a random id per bucket; nobody
    /// waits for it.
    RefreshBuckets,
    /// The repair of stale copies a read found, or a re-replication;
    /// nobody waits for it.
    Repair,
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
    /// A refresh's lookup of this node's own id finished: the node knows
    /// its neighbourhood, which is what joining takes (the lookups that
    /// fill the other buckets go on).
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
    /// Copies discarded by reads because they failed verification, since
    /// the node started.
    forgeries: u64,
}

impl Queries {
    /// Copies discarded by reads because they failed verification.
    pub(crate) fn forgeries(&self) -> u64 {
        self.forgeries
    }

    /// A caller's write of `value` under `key` to the `k` closest peers the
    /// lookup finds. Done once each of them answered or its request failed
    /// (Kademlia's own query would end at the quorum, and a caller that
    /// exits then cuts the other writes short); it succeeds if at least
    /// `required` stored it.
    pub(crate) fn put(
        key: Vec<u8>,
        value: Vec<u8>,
        seq: Option<u64>,
        required: NonZeroUsize,
        k: NonZeroUsize,
        reply: Reply<Result<PutRecordOk, PutRecordError>>,
        out: &mut Actions,
    ) {
        out.push(Action::Query {
            query: Query::PutRecord(Record::new(RecordKey::new(&key), value), kad::Quorum::All),
            pending: Pending::Put {
                key,
                seq,
                required: required.get(),
                k: k.get(),
                reply,
            },
        });
    }

    /// A caller's read of `key` (see [`Read`] for when it is done).
    pub(crate) fn get(
        key: Vec<u8>,
        required: NonZeroUsize,
        reply: Reply<Result<GetRecordOk, GetRecordError>>,
        out: &mut Actions,
    ) {
        out.push(Action::Query {
            query: Query::GetRecord(RecordKey::new(&key)),
            pending: Pending::Get {
                read: Read::new(&key),
                key,
                required: required.get(),
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
                    refused => PutRecordError::Refused(refused),
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
            // Never started on its own: it is the rest of a refresh.
            (Pending::RefreshBuckets, _) => None,
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
                    seq,
                    required,
                    k,
                    reply,
                },
                QueryResult::PutRecord(result),
            ) => {
                let written = Written {
                    key,
                    seq,
                    required,
                    k,
                };
                let _ = reply.send(written.result(result, stats));
                None
            }
            (
                Pending::Get {
                    key,
                    required,
                    mut read,
                    reply,
                },
                QueryResult::GetRecord(result),
            ) => {
                let over = match result {
                    Ok(kad::GetRecordOk::FoundRecord(copy)) => {
                        let from = copy.peer;
                        if let Err(reason) = read.add(&key, &copy) {
                            self.forgeries += 1;
                            tracing::debug!(peer = ?from, key = %display_key(&key), %reason, "discarded a forged copy");
                            out.emit(Event::RecordForged {
                                key: key.clone(),
                                from,
                                reason,
                            });
                        }
                        read.is_enough(required) || last
                    }
                    Err(kad::GetRecordError::Timeout { .. }) if read.is_empty() => {
                        let _ = reply.send(Err(GetRecordError::Timeout {
                            key: display_key(&key),
                            forgeries: read.forgeries,
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
                            read,
                            reply,
                        },
                    );
                    return None;
                }
                if read.is_enough(required) && !last {
                    out.push(Action::FinishQuery(id));
                }
                if let Some(query) = read.repair(required) {
                    out.push(Action::Query {
                        query,
                        pending: Pending::Repair,
                    });
                }
                let _ = reply.send(read.result(key, required, stats));
                None
            }
            (Pending::Repair, QueryResult::PutRecord(result)) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "a repair reached fewer peers than asked");
                }
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
            // Kademlia reports the lookup of the own id as the first step,
            // then one step per bucket. Waiting for the buckets would make
            // joining as slow as the slowest of them: behind a partition
            // each meets the same dead peers again.
            (Pending::Refresh, QueryResult::Bootstrap(_)) => {
                if !last {
                    self.pending.insert(id, Pending::RefreshBuckets);
                }
                Some(Outcome::Refreshed)
            }
            (Pending::RefreshBuckets, QueryResult::Bootstrap(_)) => {
                if !last {
                    self.pending.insert(id, Pending::RefreshBuckets);
                }
                None
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

/// A write whose query ended, and what it needed.
struct Written {
    key: Vec<u8>,
    seq: Option<u64>,
    required: usize,
    /// The replication factor: every peer asked stored it when the query
    /// succeeded outright.
    k: usize,
}

impl Written {
    /// The caller's answer: how many stored it, judged against `required`.
    fn result(
        self,
        result: kad::PutRecordResult,
        stats: QueryStats,
    ) -> Result<PutRecordOk, PutRecordError> {
        let (stored, timed_out) = match result {
            Ok(_) => (self.k, false),
            // Fewer than k found or answered: what counts is how many did.
            Err(kad::PutRecordError::QuorumFailed { success, .. }) => (success.len(), false),
            Err(kad::PutRecordError::Timeout { success, .. }) => (success.len(), true),
        };
        let key = self.key;
        if stored >= self.required {
            return Ok(PutRecordOk {
                key,
                seq: self.seq,
                stored,
                stats,
            });
        }
        let (key, required) = (display_key(&key), self.required);
        Err(match timed_out {
            false => PutRecordError::QuorumFailed {
                key,
                stored,
                required,
            },
            true => PutRecordError::Timeout {
                key,
                stored,
                required,
            },
        })
    }
}

fn peer_addresses(info: kad::PeerInfo) -> PeerAddresses {
    PeerAddresses {
        peer_id: info.peer_id,
        addresses: info.addrs,
    }
}

#[cfg(test)]
mod tests;
