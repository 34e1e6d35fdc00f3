//! Routing-table diversity: how many peers of one subnet the table takes.
//!
//! Peer ids cost nothing, so one operator can run hundreds of nodes, keep
//! them connected and slowly fill the buckets around a key or around this
//! node (an eclipse). Addresses cost more: this part admits a new peer only
//! while its subnet (an IPv4 /24 or IPv6 /48, taken from the connection the
//! peer answered on, not from what it claims) has fewer than
//! `per_bucket` peers in the peer's bucket and `per_table` in the whole
//! table, in the spirit of go-libp2p's routing-table diversity filter.
//! Loopback and non-IP peers have no subnet and are exempt (unless loopback
//! counting is configured), so local networks are unaffected.

use std::collections::HashMap;

use libp2p::PeerId;

use crate::record::Subnet;

/// The subnets of the peers this node let into its routing table.
#[derive(Debug)]
pub(crate) struct Diversity {
    per_bucket: usize,
    per_table: usize,
    /// The subnet each admitted peer answered from; pruned to the peers
    /// still in the table whenever a new one is considered.
    subnets: HashMap<PeerId, Subnet>,
}

impl Diversity {
    pub(crate) fn new(per_bucket: usize, per_table: usize) -> Self {
        Self {
            per_bucket,
            per_table,
            subnets: HashMap::new(),
        }
    }

    /// Whether `peer`, which answered from `subnet` and falls in bucket
    /// `bucket`, may enter a table holding `table` (peer and bucket of every
    /// entry). If so, it is counted from now on.
    pub(crate) fn admit(
        &mut self,
        peer: PeerId,
        subnet: Option<Subnet>,
        bucket: u32,
        table: &[(PeerId, u32)],
    ) -> bool {
        let present: HashMap<PeerId, u32> = table.iter().copied().collect();
        self.subnets.retain(|p, _| present.contains_key(p));
        if present.contains_key(&peer) {
            return true;
        }
        let Some(subnet) = subnet else {
            return true;
        };
        let same: Vec<u32> = self
            .subnets
            .iter()
            .filter(|(_, s)| **s == subnet)
            .filter_map(|(p, _)| present.get(p).copied())
            .collect();
        let in_bucket = same.iter().filter(|b| **b == bucket).count();
        if same.len() >= self.per_table || in_bucket >= self.per_bucket {
            tracing::debug!(%peer, %subnet, "routing table holds enough peers of this subnet");
            return false;
        }
        self.subnets.insert(peer, subnet);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(address: &str) -> Option<Subnet> {
        Subnet::of(&address.parse().unwrap(), false)
    }

    #[test]
    fn one_subnet_gets_a_few_entries_per_bucket_and_per_table() {
        let mut diversity = Diversity::new(2, 3);
        let mut table: Vec<(PeerId, u32)> = Vec::new();
        let sybils = subnet("/ip4/203.0.113.1/tcp/1");
        let mut try_enter = |table: &mut Vec<(PeerId, u32)>, subnet, bucket| {
            let peer = PeerId::random();
            let admitted = diversity.admit(peer, subnet, bucket, table);
            if admitted {
                table.push((peer, bucket));
            }
            admitted
        };
        assert!(try_enter(&mut table, sybils, 200));
        assert!(try_enter(&mut table, sybils, 200));
        assert!(!try_enter(&mut table, sybils, 200), "a third in one bucket");
        assert!(try_enter(&mut table, sybils, 199));
        assert!(!try_enter(&mut table, sybils, 150), "a fourth in the table");
        // Other subnets, and peers without one, are not held back.
        assert!(try_enter(
            &mut table,
            subnet("/ip4/198.51.100.1/tcp/1"),
            200
        ));
        assert!(try_enter(&mut table, subnet("/ip4/127.0.0.1/tcp/1"), 200));
        assert!(try_enter(&mut table, None, 200));

        // An entry that left the table frees its place.
        table.remove(0);
        assert!(try_enter(&mut table, sybils, 200));
    }

    #[test]
    fn a_peer_already_in_the_table_is_not_counted_twice() {
        let mut diversity = Diversity::new(1, 1);
        let peer = PeerId::random();
        let sybils = subnet("/ip6/2001:db8:1::1/tcp/1");
        assert!(diversity.admit(peer, sybils, 7, &[]));
        let table = [(peer, 7)];
        assert!(diversity.admit(peer, sybils, 7, &table), "it is in already");
        assert!(!diversity.admit(PeerId::random(), sybils, 9, &table));
    }
}
