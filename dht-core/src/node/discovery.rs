//! Namespace discovery: finding the members of a namespace through the DHT.
//!
//! A search looks up the `k` peers closest to the namespace key (the peers
//! that store its registrations), asks each of them for the members it
//! holds, and merges the answers with the registrations this node stores
//! itself. A caller's search answers the caller; a dialer's own search,
//! repeated every discover interval, hands what it found to the links
//! ([`Found`]).

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId, kad::store::RecordStore};
use web_time::Instant;

use super::{
    action::{Action, Actions, Purpose, Query},
    addresses::{merge_member_addresses, strip_p2p},
    queries::Pending,
    reach::Reach,
};
use crate::{
    error::DiscoverError,
    handle::{PeerAddresses, Reply},
    namespace::{MAX_ADDRESSES_PER_MEMBER, MAX_MEMBERS_PER_REPLY, Namespace, NamespaceRequest},
    record::Store,
};

/// Names one search while it runs.
pub(crate) type DiscoveryId = u64;

/// Who asked for a search.
#[derive(Debug)]
pub(crate) enum Origin {
    /// A caller, through the handle.
    Caller(Reply<Result<Vec<PeerAddresses>, DiscoverError>>),
    /// The node's role: a dialer searching its namespace.
    Role,
}

/// What the role's own search found, for the links to act on.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) namespace: Namespace,
    pub(crate) members: Vec<PeerAddresses>,
}

#[derive(Debug)]
struct Search {
    namespace: Namespace,
    origin: Origin,
    /// Members found so far, each with at most
    /// [`MAX_ADDRESSES_PER_MEMBER`] addresses. At most `k` holders answer
    /// with at most [`MAX_MEMBERS_PER_REPLY`] members each, which bounds it.
    members: BTreeMap<PeerId, Vec<Multiaddr>>,
    /// Holders asked that have not answered.
    awaiting: usize,
    timed_out: bool,
}

/// The role's repeated search.
#[derive(Debug)]
struct RoleSearch {
    namespace: Namespace,
    interval: Duration,
    /// When the next round is due; `None` until the node has joined.
    next: Option<Instant>,
    running: bool,
}

/// The searches under way.
#[derive(Debug)]
pub(crate) struct Discovery {
    local: PeerId,
    searches: HashMap<DiscoveryId, Search>,
    next_id: DiscoveryId,
    role: Option<RoleSearch>,
}

impl Discovery {
    /// Discovery for the node `local`; `role` is the namespace its role
    /// searches every `interval`, if any.
    pub(crate) fn new(local: PeerId, role: Option<Namespace>, interval: Duration) -> Self {
        Self {
            local,
            searches: HashMap::new(),
            next_id: 0,
            role: role.map(|namespace| RoleSearch {
                namespace,
                interval,
                next: None,
                running: false,
            }),
        }
    }

    /// Starts a search of `namespace` for `origin`; `stored` are the
    /// registrations of it this node holds itself.
    pub(crate) fn start(
        &mut self,
        namespace: Namespace,
        origin: Origin,
        stored: Vec<PeerAddresses>,
        out: &mut Actions,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        out.push(Action::Query {
            query: Query::ClosestPeers(namespace.record_key().to_vec()),
            pending: Pending::Holders(id),
        });
        let members = stored
            .into_iter()
            .filter(|m| m.peer_id != self.local)
            .map(|m| (m.peer_id, m.addresses))
            .collect();
        self.searches.insert(
            id,
            Search {
                namespace,
                origin,
                members,
                awaiting: 0,
                timed_out: false,
            },
        );
    }

    /// The node (re)joined: the role's search runs now, then every interval.
    pub(crate) fn on_joined(&mut self, now: Instant) {
        if let Some(role) = &mut self.role {
            role.next = Some(now);
        }
    }

    /// Starts the role's search if it is due at `now` and not running;
    /// `stored` gives the registrations this node holds of a namespace.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        stored: impl FnOnce(&Namespace) -> Vec<PeerAddresses>,
        out: &mut Actions,
    ) {
        let Some(role) = &mut self.role else {
            return;
        };
        if role.next.is_none_or(|at| at > now) {
            return;
        }
        role.next = Some(now + role.interval);
        if role.running {
            return;
        }
        role.running = true;
        let namespace = role.namespace.clone();
        let members = stored(&namespace);
        self.start(namespace, Origin::Role, members, out);
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.role.as_ref().and_then(|role| role.next)
    }

    /// The holders of search `id`'s namespace are known: ask each for its
    /// members. `known` gives the addresses this node knows for a peer, for
    /// members stored without any.
    pub(crate) fn on_holders(
        &mut self,
        id: DiscoveryId,
        holders: Vec<PeerAddresses>,
        timed_out: bool,
        known: impl FnMut(&PeerId) -> Vec<Multiaddr>,
        out: &mut Actions,
    ) -> Option<Found> {
        let search = self.searches.get_mut(&id)?;
        search.timed_out = timed_out;
        for holder in holders.into_iter().filter(|h| h.peer_id != self.local) {
            out.push(Action::Request {
                peer: holder.peer_id,
                addresses: holder.addresses.iter().map(strip_p2p).collect(),
                request: NamespaceRequest::Members {
                    namespace: search.namespace.clone(),
                },
                purpose: Purpose::Members(id),
            });
            search.awaiting += 1;
        }
        if search.awaiting == 0 {
            return self.finish(id, known);
        }
        None
    }

    /// A holder answered search `id` with `members`, or failed to (`None`).
    /// Only addresses within `reach` are kept.
    pub(crate) fn on_members(
        &mut self,
        id: DiscoveryId,
        members: Option<Vec<PeerAddresses>>,
        reach: Reach,
        known: impl FnMut(&PeerId) -> Vec<Multiaddr>,
    ) -> Option<Found> {
        let search = self.searches.get_mut(&id)?;
        for member in members.into_iter().flatten() {
            if member.peer_id == self.local {
                continue;
            }
            let addresses = search.members.entry(member.peer_id).or_default();
            merge_member_addresses(
                addresses,
                &member.addresses,
                MAX_ADDRESSES_PER_MEMBER,
                reach,
            );
        }
        search.awaiting = search.awaiting.saturating_sub(1);
        if search.awaiting == 0 {
            return self.finish(id, known);
        }
        None
    }

    fn finish(
        &mut self,
        id: DiscoveryId,
        mut known: impl FnMut(&PeerId) -> Vec<Multiaddr>,
    ) -> Option<Found> {
        let search = self.searches.remove(&id)?;
        let members: Vec<PeerAddresses> = search
            .members
            .into_iter()
            .map(|(peer_id, addresses)| PeerAddresses {
                peer_id,
                // A member registered without addresses may be known here.
                addresses: if addresses.is_empty() {
                    known(&peer_id)
                } else {
                    addresses
                },
            })
            .collect();
        match search.origin {
            Origin::Caller(reply) => {
                let result = if members.is_empty() && search.timed_out {
                    Err(DiscoverError::Timeout {
                        namespace: search.namespace,
                    })
                } else {
                    Ok(members)
                };
                let _ = reply.send(result);
                None
            }
            Origin::Role => {
                if let Some(role) = &mut self.role {
                    role.running = false;
                }
                Some(Found {
                    namespace: search.namespace,
                    members,
                })
            }
        }
    }
}

/// The live registrations of `namespace` in `store`, at most
/// [`MAX_MEMBERS_PER_REPLY`]; this node's own (`local`) with its current
/// `external` addresses. What a holder answers to a members request.
pub(crate) fn stored_members(
    store: &Store,
    namespace: &Namespace,
    local: PeerId,
    external: &[Multiaddr],
    now: Instant,
) -> Vec<PeerAddresses> {
    store
        .providers(&namespace.record_key())
        .into_iter()
        .filter(|p| !p.is_expired(now))
        .map(|p| PeerAddresses {
            peer_id: p.provider,
            addresses: if p.provider == local {
                external.to_vec()
            } else {
                p.addresses
            },
        })
        .take(MAX_MEMBERS_PER_REPLY)
        .collect()
}

#[cfg(test)]
mod tests {
    use futures::channel::oneshot;
    use libp2p::kad::ProviderRecord;

    use super::*;
    use crate::record::StoreLimits;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    fn chat() -> Namespace {
        Namespace::new("chat").unwrap()
    }

    fn member(peer: PeerId, addresses: &[&str]) -> PeerAddresses {
        PeerAddresses {
            peer_id: peer,
            addresses: addresses.iter().map(|a| addr(a)).collect(),
        }
    }

    fn holders(out: &mut Actions) -> Vec<PeerId> {
        out.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::Request {
                    peer,
                    request: NamespaceRequest::Members { .. },
                    purpose: Purpose::Members(_),
                    ..
                } => Some(peer),
                _ => None,
            })
            .collect()
    }

    fn nothing_known(_: &PeerId) -> Vec<Multiaddr> {
        Vec::new()
    }

    #[test]
    fn a_caller_gets_the_members_every_holder_knows_merged() {
        let local = PeerId::random();
        let mut discovery = Discovery::new(local, None, Duration::from_secs(10));
        let mut out = Actions::default();
        let (reply, mut answer) = oneshot::channel();
        let (a, b, tab) = (PeerId::random(), PeerId::random(), PeerId::random());
        discovery.start(
            chat(),
            Origin::Caller(reply),
            vec![member(a, &["/ip4/192.0.2.1/tcp/1"]), member(local, &[])],
            &mut out,
        );
        assert!(matches!(
            &out.drain()[..],
            [Action::Query {
                query: Query::ClosestPeers(_),
                pending: Pending::Holders(0)
            }]
        ));

        let (h1, h2) = (PeerId::random(), PeerId::random());
        let found = discovery.on_holders(
            0,
            vec![member(h1, &[]), member(h2, &[]), member(local, &[])],
            false,
            nothing_known,
            &mut out,
        );
        assert!(found.is_none());
        assert_eq!(holders(&mut out), vec![h1, h2], "we do not ask ourselves");

        discovery.on_members(
            0,
            Some(vec![
                member(a, &["/ip4/192.0.2.1/tcp/2", "/ip4/0.0.0.0/tcp/9"]),
                member(b, &["/ip4/192.0.2.2/tcp/1"]),
                member(tab, &[]),
                member(local, &["/ip4/192.0.2.9/tcp/1"]),
            ]),
            Reach::default(),
            nothing_known,
        );
        assert!(
            answer.try_recv().unwrap().is_none(),
            "one holder still to answer"
        );
        // A holder that fails counts as answered.
        discovery.on_members(0, None, Reach::default(), |peer: &PeerId| {
            assert_eq!(*peer, tab, "only a member without addresses is looked up");
            vec![addr("/ip4/192.0.2.3/tcp/1")]
        });
        let mut members = answer.try_recv().unwrap().unwrap().unwrap();
        members.sort_by_key(|m| m.peer_id);
        let mut expected = vec![
            member(a, &["/ip4/192.0.2.1/tcp/1", "/ip4/192.0.2.1/tcp/2"]),
            member(b, &["/ip4/192.0.2.2/tcp/1"]),
            member(tab, &["/ip4/192.0.2.3/tcp/1"]),
        ];
        expected.sort_by_key(|m| m.peer_id);
        assert_eq!(members, expected);
    }

    #[test]
    fn a_search_that_found_nothing_before_the_timeout_fails() {
        let mut discovery = Discovery::new(PeerId::random(), None, Duration::from_secs(10));
        let mut out = Actions::default();
        let (reply, mut answer) = oneshot::channel();
        discovery.start(chat(), Origin::Caller(reply), Vec::new(), &mut out);
        discovery.on_holders(0, Vec::new(), true, nothing_known, &mut out);
        assert!(matches!(
            answer.try_recv().unwrap().unwrap(),
            Err(DiscoverError::Timeout { .. })
        ));
    }

    #[test]
    fn the_roles_search_runs_once_joined_every_interval_never_twice_at_once() {
        let interval = Duration::from_secs(10);
        let mut discovery = Discovery::new(PeerId::random(), Some(chat()), interval);
        let mut out = Actions::default();
        let now = Instant::now();
        discovery.poll(now, |_| Vec::new(), &mut out);
        assert!(out.drain().is_empty(), "not before the node joined");
        assert_eq!(discovery.next_deadline(), None);

        discovery.on_joined(now);
        discovery.poll(now, |_| Vec::new(), &mut out);
        assert_eq!(out.drain().len(), 1);
        assert_eq!(discovery.next_deadline(), Some(now + interval));
        // Due again while the first round runs: skipped.
        discovery.poll(now + interval, |_| Vec::new(), &mut out);
        assert!(out.drain().is_empty());

        let member_id = PeerId::random();
        let found = discovery
            .on_holders(0, Vec::new(), false, |_: &PeerId| Vec::new(), &mut out)
            .expect("the role's search ends with what it found");
        assert_eq!(found.namespace, chat());
        assert!(found.members.is_empty());
        discovery.poll(
            now + interval * 2,
            |_| vec![member(member_id, &[])],
            &mut out,
        );
        assert_eq!(out.drain().len(), 1, "the next round runs");
    }

    #[test]
    fn a_holder_answers_with_live_registrations_and_our_own_current_addresses() {
        let local = PeerId::random();
        let mut store = Store::new(local, StoreLimits::default());
        let now = Instant::now();
        let other = PeerId::random();
        let key = chat().record_key();
        for (provider, expires) in [
            (local, None),
            (other, Some(now + Duration::from_secs(60))),
            (PeerId::random(), Some(now - Duration::from_secs(1))),
        ] {
            store
                .insert_provider(ProviderRecord {
                    key: key.clone(),
                    provider,
                    expires,
                    addresses: vec![addr("/ip4/192.0.2.1/tcp/1")],
                })
                .unwrap();
        }
        let external = [addr("/ip4/192.0.2.7/tcp/7")];
        let mut members = stored_members(&store, &chat(), local, &external, now);
        members.sort_by_key(|m| m.peer_id);
        let mut expected = vec![
            member(local, &["/ip4/192.0.2.7/tcp/7"]),
            member(other, &["/ip4/192.0.2.1/tcp/1"]),
        ];
        expected.sort_by_key(|m| m.peer_id);
        assert_eq!(members, expected);
    }
}
