//! Hops per lookup, computed on the nodes' actual routing tables.
//!
//! libp2p-kad reports how many requests a lookup sent but not how long its
//! path was. This replays the iterative lookup Kademlia performs, in lockstep
//! rounds of `α` parallel requests, on the routing tables the nodes really
//! hold at the end of a run: a round asks the `α` closest candidates not yet
//! asked, each answers with the `k` closest peers of its own table, and the
//! lookup ends when the `k` closest candidates have all been asked. The hop
//! count is the round in which the closest peer found was asked: how many
//! sequential requests it took to reach the node that holds the key.

use std::collections::{HashMap, HashSet};

use dht_core::libp2p::{PeerId, kad::KBucketKey};

/// The routing tables of a whole network.
pub(crate) struct Tables {
    pub(crate) tables: HashMap<PeerId, Vec<PeerId>>,
}

impl Tables {
    /// Rounds of an `alpha`-parallel lookup for `key` started by `from`.
    pub(crate) fn hops(&self, from: PeerId, key: &[u8], k: usize, alpha: usize) -> usize {
        let target = KBucketKey::new(key.to_vec());
        let distance = |peer: &PeerId| KBucketKey::from(*peer).distance(&target);
        let mut candidates: Vec<PeerId> = self.tables.get(&from).cloned().unwrap_or_default();
        let mut asked: HashSet<PeerId> = HashSet::new();
        let mut known: HashSet<PeerId> = candidates.iter().copied().collect();
        known.insert(from);
        let mut asked_in: HashMap<PeerId, usize> = HashMap::new();
        let mut rounds = 0;
        loop {
            candidates.sort_by_key(distance);
            candidates.truncate(k.max(alpha) * 4);
            let closest: Vec<PeerId> = candidates.iter().take(k).copied().collect();
            let next: Vec<PeerId> = closest
                .iter()
                .filter(|p| !asked.contains(p))
                .take(alpha)
                .copied()
                .collect();
            if next.is_empty() || rounds > 64 {
                return candidates
                    .first()
                    .and_then(|p| asked_in.get(p))
                    .copied()
                    .unwrap_or(rounds);
            }
            rounds += 1;
            for peer in next {
                asked.insert(peer);
                asked_in.insert(peer, rounds);
                let mut answer = self.tables.get(&peer).cloned().unwrap_or_default();
                answer.sort_by_key(distance);
                for found in answer.into_iter().take(k) {
                    if known.insert(found) {
                        candidates.push(found);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_mesh_needs_one_round() {
        let peers: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        let tables = Tables {
            tables: peers
                .iter()
                .map(|p| (*p, peers.iter().filter(|q| *q != p).copied().collect()))
                .collect(),
        };
        // The closest peer is in the first table: asked in round one.
        assert_eq!(tables.hops(peers[0], b"key", 3, 3), 1);
        assert_eq!(tables.hops(peers[0], b"key", 20, 3), 1);
    }

    #[test]
    fn a_chain_towards_the_key_needs_a_round_per_link() {
        // Each peer knows only the next one, and each next one is closer to
        // the key: the closest is five requests away.
        let target = KBucketKey::new(b"key".to_vec());
        let mut peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        peers.sort_by_key(|p| std::cmp::Reverse(KBucketKey::from(*p).distance(&target)));
        let tables = Tables {
            tables: peers
                .windows(2)
                .map(|w| (w[0], vec![w[1]]))
                .chain([(peers[5], vec![])])
                .collect(),
        };
        assert_eq!(tables.hops(peers[0], b"key", 20, 3), 5);
    }
}
