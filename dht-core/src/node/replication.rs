//! Re-replication: records follow the peers closest to them.
//!
//! A record lives at the `k` peers closest to its key. When that set changes
//! (a closer peer joins, a holder leaves), libp2p's Kademlia does nothing
//! until its hourly replication, so a record whose holders crash within the
//! hour is gone. Here every node that holds a record sends it, `delay` after
//! such a change, to the peers its routing table *now* counts among the `k`
//! closest to the key and did not count before the change: a peer that
//! joined close to the key, or the peers that move up into the places of
//! those that left. Only a node that is itself among the `k` closest by its
//! table does so: those are the nodes whose tables know the key's
//! neighbourhood well (a writer far from its key knows it only roughly, and
//! would send copies to peers that are not among the `k` closest).
//!
//! "Left" is generous on purpose: a peer that left the routing table, and a
//! peer of the table that a dial could not reach (its connection broke and
//! the check failed, or a lookup could not reach it), both count. A peer
//! suspected wrongly (a short partition, one lost dial) costs one extra copy
//! of the records near it; a departure missed would cost the records.
//!
//! Changes are gathered for `delay`, so that a burst (a node's arrival
//! reaches many tables at once, a crash breaks many connections) costs one
//! pass over the store. Each holder acts on its own view, so a peer that
//! joined may get one record from each of its (at most `k`) other holders.
//!
//! Bounds: at most [`MAX_CHANGES`] joined and as many gone peers are kept
//! per pass (later ones wait for the hourly replication); a pass looks once
//! at each record held (at most [`crate::record::StoreLimits::max_records`])
//! and sends each record at most once, to at most `k` peers.

use std::time::Duration;

use libp2p::{
    PeerId,
    kad::{self, KBucketKey, Record, RecordKey},
};
use web_time::Instant;

use super::{
    action::{Action, Actions, Query},
    queries::Pending,
};
use crate::record::Store;

/// Joined peers, and as many gone peers, one pass takes into account.
pub(crate) const MAX_CHANGES: usize = 128;

/// A set of at most [`MAX_CHANGES`] peers. A vector: small enough to scan,
/// and no hash-set code of its own in the browser build.
#[derive(Debug, Default)]
struct Peers(Vec<PeerId>);

impl Peers {
    /// Adds `peer` unless it is in or the set is full.
    fn insert(&mut self, peer: PeerId) {
        if self.0.len() < MAX_CHANGES && !self.contains(&peer) {
            self.0.push(peer);
        }
    }

    /// Removes `peer`; whether it was in.
    fn remove(&mut self, peer: &PeerId) -> bool {
        let before = self.0.len();
        self.0.retain(|p| p != peer);
        self.0.len() < before
    }

    fn contains(&self, peer: &PeerId) -> bool {
        self.0.contains(peer)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Changes to the routing table since the last pass.
#[derive(Debug)]
pub(crate) struct Replication {
    /// How long changes are gathered; `None`: records are not re-replicated
    /// on changes.
    delay: Option<Duration>,
    joined: Peers,
    gone: Peers,
    /// When the pass for the changes gathered so far is due.
    due: Option<Instant>,
}

impl Replication {
    /// Passes run `delay` after the first change since the last pass
    /// (`None`: never).
    pub(crate) fn new(delay: Option<Duration>) -> Self {
        Self {
            delay,
            joined: Peers::default(),
            gone: Peers::default(),
            due: None,
        }
    }

    /// `peer` entered the routing table.
    pub(crate) fn on_joined(&mut self, peer: PeerId, now: Instant) {
        self.gone.remove(&peer);
        self.joined.insert(peer);
        self.schedule(now);
    }

    /// `peer` left the routing table, or is in it but could not be reached.
    pub(crate) fn on_gone(&mut self, peer: PeerId, now: Instant) {
        // Joined and gone within one pass: it holds nothing and needs
        // nothing.
        if self.joined.remove(&peer) {
            return;
        }
        self.gone.insert(peer);
        self.schedule(now);
    }

    /// A connection to `peer` opened: whatever made it look gone is over.
    pub(crate) fn on_connected(&mut self, peer: &PeerId) {
        self.gone.remove(peer);
    }

    fn schedule(&mut self, now: Instant) {
        if let (None, Some(delay)) = (self.due, self.delay) {
            self.due = Some(now + delay);
        }
    }

    /// When the next pass is due, if one is.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.due
    }

    /// The changes of a pass due at `now`, leaving none behind.
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<Changes> {
        if self.due.is_none_or(|due| due > now) {
            return None;
        }
        self.due = None;
        let gone = std::mem::take(&mut self.gone);
        Some(Changes {
            joined: std::mem::take(&mut self.joined),
            gone_keys: gone.0.iter().map(|peer| KBucketKey::from(*peer)).collect(),
            gone,
        })
    }
}

/// The changes one pass acts on.
#[derive(Debug)]
pub(crate) struct Changes {
    joined: Peers,
    gone: Peers,
    /// The gone peers' keys, hashed once for the whole pass.
    gone_keys: Vec<KBucketKey<PeerId>>,
}

impl Changes {
    /// How many of the routing table's peers closest to a key
    /// [`targets`](Self::targets) needs: `k` that are not gone.
    pub(crate) fn wanted(&self, k: usize) -> usize {
        k + self.gone.len()
    }

    /// The peers `local` sends the record under `key` to: those among the
    /// `k` closest to it now (`local` counted among them) that were not
    /// before these changes; none if `local` itself is not among the `k`
    /// closest now. `closest` is the routing table's peers closest to
    /// `key`, nearest first, at least [`wanted`](Self::wanted) of them if
    /// the table has that many. Keys, not peer ids: a key holds its hash,
    /// so distances cost no hashing.
    pub(crate) fn targets(
        &self,
        key: &KBucketKey<RecordKey>,
        k: usize,
        closest: &[KBucketKey<PeerId>],
        local: &KBucketKey<PeerId>,
    ) -> Vec<PeerId> {
        let k_closest = |peers: &mut Vec<KBucketKey<PeerId>>| {
            peers.push(*local);
            peers.sort_by_key(|peer| peer.distance(key));
            peers.truncate(k);
        };
        let mut now: Vec<KBucketKey<PeerId>> = closest
            .iter()
            .filter(|peer| !self.gone.contains(peer.preimage()))
            .take(k)
            .cloned()
            .collect();
        k_closest(&mut now);
        if !now.contains(local) {
            return Vec::new();
        }
        // The table before: without the peers that joined, with every gone
        // peer (still in it, or put back). Exact for every peer of `now`:
        // each peer closer than it is in `closest` or gone.
        let mut before: Vec<KBucketKey<PeerId>> = closest
            .iter()
            .filter(|peer| !self.joined.contains(peer.preimage()))
            .chain(self.gone_keys.iter().filter(|gone| !closest.contains(gone)))
            .cloned()
            .collect();
        k_closest(&mut before);
        now.into_iter()
            .filter(|peer| peer != local && !before.contains(peer))
            .map(|peer| *peer.preimage())
            .collect()
    }
}

/// Runs one pass over the records in `kad`'s store that are live at `now`:
/// each goes to its [`targets`](Changes::targets) in the routing table of
/// `local`, as a write to those peers alone (no lookup; the record keeps its
/// publisher and expiry).
pub(crate) fn replicate(
    kad: &mut kad::Behaviour<Store>,
    local: PeerId,
    changes: &Changes,
    k: usize,
    now: Instant,
    out: &mut Actions,
) {
    use kad::store::RecordStore;

    let keys: Vec<RecordKey> = kad
        .store_mut()
        .records()
        .filter(|record| !record.is_expired(now))
        .map(|record| record.key.clone())
        .collect();
    let mut sent = 0;
    let local = KBucketKey::from(local);
    for key in keys {
        let target = KBucketKey::new(key.clone());
        let closest: Vec<KBucketKey<PeerId>> = kad
            .get_closest_local_peers(&target)
            .take(changes.wanted(k))
            .collect();
        let peers = changes.targets(&target, k, &closest, &local);
        if peers.is_empty() {
            continue;
        }
        let Some(record) = kad.store_mut().get(&key) else {
            continue;
        };
        let record: Record = record.into_owned();
        sent += 1;
        out.push(Action::Query {
            query: Query::Repair {
                record,
                peers,
                here: false,
            },
            pending: Pending::Repair,
        });
    }
    if sent > 0 {
        tracing::debug!(
            records = sent,
            joined = changes.joined.len(),
            gone = changes.gone.len(),
            "re-replicating records to the peers now closest to them"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: usize = 3;
    const DELAY: Duration = Duration::from_secs(10);

    /// A holder of the record under `key` (the nearest of `count + 1`
    /// random peers) and its routing table (the others, nearest first).
    fn holder_and_table(key: &KBucketKey<RecordKey>, count: usize) -> (PeerId, Vec<PeerId>) {
        let mut peers: Vec<PeerId> = (0..=count).map(|_| PeerId::random()).collect();
        peers.sort_by_key(|peer| KBucketKey::from(*peer).distance(key));
        let holder = peers.remove(0);
        (holder, peers)
    }

    fn keys(peers: &[PeerId]) -> Vec<KBucketKey<PeerId>> {
        peers.iter().map(|peer| KBucketKey::from(*peer)).collect()
    }

    fn key() -> KBucketKey<RecordKey> {
        KBucketKey::new(RecordKey::new(&b"a record".to_vec()))
    }

    /// Takes the changes of a pass that must be due at `at`.
    fn due(replication: &mut Replication, at: Instant) -> Changes {
        replication.take_due(at).expect("a pass is due")
    }

    #[test]
    fn a_pass_is_due_one_delay_after_the_first_change() {
        let start = Instant::now();
        let mut replication = Replication::new(Some(DELAY));
        assert_eq!(replication.next_deadline(), None);
        replication.on_joined(PeerId::random(), start);
        replication.on_gone(PeerId::random(), start + Duration::from_secs(4));
        assert_eq!(replication.next_deadline(), Some(start + DELAY));
        assert!(replication.take_due(start + DELAY / 2).is_none());
        let changes = due(&mut replication, start + DELAY);
        assert_eq!((changes.joined.len(), changes.gone.len()), (1, 1));
        assert_eq!(replication.next_deadline(), None, "nothing left over");
    }

    #[test]
    fn no_delay_means_no_passes() {
        let now = Instant::now();
        let mut replication = Replication::new(None);
        replication.on_gone(PeerId::random(), now);
        assert_eq!(replication.next_deadline(), None);
        assert!(replication.take_due(now + DELAY * 100).is_none());
    }

    /// The holder `local` of a record whose table is `table`: what a pass
    /// after the changes `change` makes sends the record to.
    fn targets_after(
        local: PeerId,
        table: &[PeerId],
        change: impl FnOnce(&mut Replication, Instant),
    ) -> Vec<PeerId> {
        let now = Instant::now();
        let mut replication = Replication::new(Some(DELAY));
        change(&mut replication, now);
        let changes = due(&mut replication, now + DELAY);
        changes.targets(&key(), K, &keys(table), &KBucketKey::from(local))
    }

    #[test]
    fn a_joined_peer_among_the_k_closest_gets_the_record() {
        let (local, table) = holder_and_table(&key(), 6);
        let sent = targets_after(local, &table, |r, now| r.on_joined(table[1], now));
        assert_eq!(sent, vec![table[1]]);
    }

    #[test]
    fn a_joined_peer_farther_than_the_k_closest_gets_nothing() {
        let (local, table) = holder_and_table(&key(), 6);
        let sent = targets_after(local, &table, |r, now| r.on_joined(table[K], now));
        assert!(sent.is_empty());
    }

    #[test]
    fn the_peer_that_moves_up_when_a_holder_leaves_gets_the_record() {
        let (local, mut table) = holder_and_table(&key(), 6);
        // Left the routing table: no longer among `closest`.
        let left = table.remove(0);
        let sent = targets_after(local, &table, |r, now| r.on_gone(left, now));
        // The k closest are `local` and the k - 1 nearest of its table.
        assert_eq!(sent, vec![table[K - 2]]);
    }

    #[test]
    fn an_unreachable_holder_still_in_the_table_is_replaced_too() {
        let (local, table) = holder_and_table(&key(), 6);
        let sent = targets_after(local, &table, |r, now| {
            r.on_gone(table[0], now);
            r.on_gone(table[2], now);
        });
        // Before: local, table[0], table[1]; now: local, table[1], table[3].
        assert_eq!(sent, vec![table[3]]);
    }

    #[test]
    fn a_node_that_is_not_among_the_k_closest_leaves_it_to_those_that_are() {
        let (_, mut table) = holder_and_table(&key(), 6);
        // A writer, say, farther from the key than the k closest.
        let far = table.remove(K);
        let sent = targets_after(far, &table, |r, now| r.on_joined(table[0], now));
        assert!(sent.is_empty());
        // One of the k closest gone: `far` moves up among them, and its own
        // copy takes the free place.
        let sent = targets_after(far, &table, |r, now| r.on_gone(table[0], now));
        assert!(sent.is_empty());
    }

    #[test]
    fn a_peer_leaving_beyond_the_k_closest_changes_nothing() {
        let (local, mut table) = holder_and_table(&key(), 6);
        let left = table.remove(4);
        assert!(targets_after(local, &table, |r, now| r.on_gone(left, now)).is_empty());
    }

    #[test]
    fn a_join_and_a_departure_together_send_to_the_newcomer_only() {
        let (local, mut table) = holder_and_table(&key(), 6);
        let left = table.remove(2);
        let sent = targets_after(local, &table, |r, now| {
            r.on_gone(left, now);
            r.on_joined(table[0], now);
        });
        // The joined peer took the place of the one that left.
        assert_eq!(sent, vec![table[0]]);
    }

    #[test]
    fn a_peer_that_answers_again_is_no_longer_gone() {
        let (local, table) = holder_and_table(&key(), 6);
        let sent = targets_after(local, &table, |r, now| {
            r.on_gone(table[0], now);
            r.on_connected(&table[0]);
        });
        assert!(sent.is_empty());
    }

    #[test]
    fn a_peer_that_joined_and_left_within_a_pass_changes_nothing() {
        let (local, table) = holder_and_table(&key(), 6);
        let passing = PeerId::random();
        let sent = targets_after(local, &table, |r, now| {
            r.on_joined(passing, now);
            r.on_gone(passing, now);
        });
        assert!(sent.is_empty());
    }

    #[test]
    fn changes_beyond_the_bound_are_not_kept() {
        let now = Instant::now();
        let mut replication = Replication::new(Some(DELAY));
        for _ in 0..MAX_CHANGES + 10 {
            replication.on_joined(PeerId::random(), now);
            replication.on_gone(PeerId::random(), now);
        }
        let changes = due(&mut replication, now + DELAY);
        assert_eq!(changes.joined.len(), MAX_CHANGES);
        assert_eq!(changes.gone.len(), MAX_CHANGES);
    }
}
