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
//!
//! A peer reached through a relay (a tab, a node behind a NAT) shows no
//! address of its own: it counts against its relay's subnet, in a group of
//! its own ([`Group::Relayed`]), whichever side dialed (an inbound circuit
//! used to count against nothing). That group has the per-bucket bound
//! only. Eclipsing a key or a node means filling the buckets near it, which
//! the per-bucket bound stops as it does for any subnet. A per-table bound
//! would leave each node knowing 8 tabs of a relay in all, the first 8 it
//! met rather than the ones near it: in a network of many tabs on one relay
//! the tabs would route and store next to nothing. A relay's group holds at
//! most `per_bucket` entries in each bucket of the table. A node served
//! through a relay sees every peer that dials it arrive through that relay,
//! so those share one group; the peers it dials itself count by their own.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

use crate::record::Subnet;

/// Whose allowance a routing-table entry takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Group {
    /// A peer connected directly, by the subnet it connected from.
    Direct(Subnet),
    /// A peer reached through a relay circuit, by the relay's subnet.
    Relayed(Subnet),
}

impl Group {
    /// The group of a connection. `remote` is the address of the other end
    /// (for an inbound circuit only the dialer's `/p2p/…`), `local` this
    /// end's for an inbound connection (for an inbound circuit, the relay's
    /// address with `/p2p-circuit`). None when the address that counts has
    /// no subnet (loopback without `count_loopback`, DNS, memory).
    pub(crate) fn of(
        local: Option<&Multiaddr>,
        remote: &Multiaddr,
        count_loopback: bool,
    ) -> Option<Self> {
        let through_relay = |address: &Multiaddr| address.iter().any(|p| p == Protocol::P2pCircuit);
        if through_relay(remote) {
            return Subnet::of(remote, count_loopback).map(Group::Relayed);
        }
        if let Some(local) = local.filter(|local| through_relay(local)) {
            return Subnet::of(local, count_loopback).map(Group::Relayed);
        }
        Subnet::of(remote, count_loopback).map(Group::Direct)
    }
}

/// The groups of the peers this node let into its routing table.
#[derive(Debug)]
pub(crate) struct Diversity {
    per_bucket: usize,
    per_table: usize,
    /// The group each admitted peer answered in; pruned to the peers still
    /// in the table whenever a new one is considered.
    groups: HashMap<PeerId, Group>,
}

impl Diversity {
    pub(crate) fn new(per_bucket: usize, per_table: usize) -> Self {
        Self {
            per_bucket,
            per_table,
            groups: HashMap::new(),
        }
    }

    /// Whether `peer`, which answered in `group` and falls in bucket
    /// `bucket`, may enter a table holding `table` (peer and bucket of every
    /// entry). If so, it is counted from now on.
    pub(crate) fn admit(
        &mut self,
        peer: PeerId,
        group: Option<Group>,
        bucket: u32,
        table: &[(PeerId, u32)],
    ) -> bool {
        let present: HashMap<PeerId, u32> = table.iter().copied().collect();
        self.groups.retain(|p, _| present.contains_key(p));
        if present.contains_key(&peer) {
            return true;
        }
        let Some(group) = group else {
            return true;
        };
        let same: Vec<u32> = self
            .groups
            .iter()
            .filter(|(_, g)| **g == group)
            .filter_map(|(p, _)| present.get(p).copied())
            .collect();
        let in_bucket = same.iter().filter(|b| **b == bucket).count();
        let table_full = matches!(group, Group::Direct(_)) && same.len() >= self.per_table;
        if table_full || in_bucket >= self.per_bucket {
            tracing::debug!(%peer, ?group, "routing table holds enough peers of this group");
            return false;
        }
        self.groups.insert(peer, group);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(address: &str) -> Option<Group> {
        Group::of(None, &address.parse().unwrap(), false)
    }

    /// Offers a new peer of `group` in `bucket`; enters it in `table` if
    /// admitted.
    fn try_enter(
        diversity: &mut Diversity,
        table: &mut Vec<(PeerId, u32)>,
        group: Option<Group>,
        bucket: u32,
    ) -> bool {
        let peer = PeerId::random();
        let admitted = diversity.admit(peer, group, bucket, table);
        if admitted {
            table.push((peer, bucket));
        }
        admitted
    }

    #[test]
    fn one_subnet_gets_a_few_entries_per_bucket_and_per_table() {
        let mut diversity = Diversity::new(2, 3);
        let mut table: Vec<(PeerId, u32)> = Vec::new();
        let sybils = subnet("/ip4/203.0.113.1/tcp/1");
        let mut try_enter = |table: &mut Vec<(PeerId, u32)>, group, bucket| {
            try_enter(&mut diversity, table, group, bucket)
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
    fn a_relays_peers_are_bounded_per_bucket_only_and_apart_from_its_subnet() {
        let mut diversity = Diversity::new(2, 3);
        let mut table: Vec<(PeerId, u32)> = Vec::new();
        let relay = PeerId::random();
        let through_relay = Group::of(
            None,
            &format!("/ip4/203.0.113.1/tcp/1/p2p/{relay}/p2p-circuit")
                .parse()
                .unwrap(),
            false,
        );
        assert_eq!(
            through_relay,
            Some(Group::Relayed(Subnet::V4([203, 0, 113])))
        );
        let mut try_enter = |table: &mut Vec<(PeerId, u32)>, group, bucket| {
            try_enter(&mut diversity, table, group, bucket)
        };
        // Two per bucket, in as many buckets as there are: more than the
        // table's bound of 3 for a subnet.
        for bucket in [255, 254, 253] {
            assert!(try_enter(&mut table, through_relay, bucket));
            assert!(try_enter(&mut table, through_relay, bucket));
            assert!(
                !try_enter(&mut table, through_relay, bucket),
                "a third in bucket {bucket}"
            );
        }
        // The relay's own subnet keeps its allowance for direct peers.
        for bucket in [100, 101, 102] {
            assert!(try_enter(
                &mut table,
                subnet("/ip4/203.0.113.9/tcp/1"),
                bucket
            ));
        }
        assert!(
            !try_enter(&mut table, subnet("/ip4/203.0.113.9/tcp/1"), 103),
            "a fourth direct peer of the subnet in the table"
        );
    }

    #[test]
    fn a_connection_through_a_relay_counts_against_the_relay_whichever_side_dialed() {
        let relay = PeerId::random();
        let dialer = PeerId::random();
        let circuit: Multiaddr = format!("/ip4/198.51.100.7/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        let relays_subnet = Some(Group::Relayed(Subnet::V4([198, 51, 100])));
        // Dialed through the relay: the remote address names it.
        let outbound = circuit.clone().with(Protocol::P2p(dialer));
        assert_eq!(Group::of(None, &outbound, false), relays_subnet);
        // Dialed by a peer through our relay: only our end names the relay.
        let inbound_remote: Multiaddr = format!("/p2p/{dialer}").parse().unwrap();
        assert_eq!(
            Group::of(Some(&circuit), &inbound_remote, false),
            relays_subnet
        );
        // A direct connection counts against the remote's own subnet.
        let direct: Multiaddr = "/ip4/198.51.100.8/tcp/5/ws".parse().unwrap();
        let listening: Multiaddr = "/ip4/192.0.2.1/tcp/4001/ws".parse().unwrap();
        assert_eq!(
            Group::of(Some(&listening), &direct, false),
            Some(Group::Direct(Subnet::V4([198, 51, 100])))
        );
        // A relay on loopback is exempt unless loopback counts.
        let local_relay: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        assert_eq!(Group::of(Some(&local_relay), &inbound_remote, false), None);
        assert_eq!(
            Group::of(Some(&local_relay), &inbound_remote, true),
            Some(Group::Relayed(Subnet::V4([127, 0, 0])))
        );
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
