//! Snapshots of a node's state for callers: its routing table, the records
//! and registrations it holds, and the monitor's report. Pure reads of the
//! Kademlia state; nothing here changes it.

use std::time::Duration;

use libp2p::{
    Multiaddr, PeerId,
    kad::{self, Mode, RecordKey, store::RecordStore},
};
use web_time::Instant;

use crate::{
    namespace::Namespace,
    node::Reachability,
    record::{Store, verify},
    report::{
        Bucket, BucketSize, NamespaceSize, NetworkReport, Registration, RelayReport, RoutingEntry,
        RoutingTable, StoredRecord,
    },
    role::RoleKind,
};

/// The routing table of `kad`, bucket by bucket, nearest first.
pub(crate) fn routing_table(kad: &mut kad::Behaviour<Store>, local: PeerId) -> RoutingTable {
    let buckets = kad
        .kbuckets()
        .filter(|bucket| bucket.num_entries() > 0)
        .map(|bucket| Bucket {
            index: bucket.range().0.ilog2().unwrap_or(0),
            entries: bucket
                .iter()
                .map(|entry| RoutingEntry {
                    peer_id: *entry.node.key.preimage(),
                    addresses: entry.node.value.iter().cloned().collect(),
                    connected: matches!(entry.status, kad::NodeStatus::Connected),
                })
                .collect(),
        })
        .collect();
    RoutingTable {
        local_peer_id: local,
        buckets,
    }
}

/// Peers in the routing table.
pub(crate) fn routing_table_size(kad: &mut kad::Behaviour<Store>) -> usize {
    kad.kbuckets().map(|b| b.num_entries()).sum()
}

/// Every routing-table entry with the index of its bucket.
pub(crate) fn table_entries(kad: &mut kad::Behaviour<Store>) -> Vec<(PeerId, u32)> {
    kad.kbuckets()
        .flat_map(|bucket| {
            let index = bucket.range().0.ilog2().unwrap_or(0);
            bucket
                .iter()
                .map(move |entry| (*entry.node.key.preimage(), index))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The index of the bucket `peer` falls in (none for this node itself).
pub(crate) fn bucket_of(kad: &mut kad::Behaviour<Store>, peer: &PeerId) -> Option<u32> {
    kad.kbucket(*peer)
        .map(|bucket| bucket.range().0.ilog2().unwrap_or(0))
}

/// The addresses the routing table holds for `peer` (Kademlia keeps them
/// with `/p2p/<peer>`).
pub(crate) fn routing_addresses(kad: &mut kad::Behaviour<Store>, peer: &PeerId) -> Vec<Multiaddr> {
    let Some(bucket) = kad.kbucket(*peer) else {
        return Vec::new();
    };
    bucket
        .iter()
        .filter(|entry| entry.node.key.preimage() == peer)
        .flat_map(|entry| entry.node.value.iter().cloned().collect::<Vec<_>>())
        .collect()
}

/// The live value records in `store` at `now`.
pub(crate) fn stored_records(store: &Store, local: PeerId, now: Instant) -> Vec<StoredRecord> {
    store
        .records()
        .filter(|r| !r.is_expired(now))
        // The store holds only records that verified; this opens them.
        .filter_map(|r| {
            let verified = verify(r.key.as_ref(), &r.value).ok()?;
            Some(StoredRecord {
                key: r.key.to_vec(),
                owner: verified.owner(),
                seq: verified.sequence(),
                value: verified.value,
                for_others: r.publisher != Some(local),
                expires_in: r.expires.map(|at| at.saturating_duration_since(now)),
            })
        })
        .collect()
}

/// The live namespace registrations in `store` at `now`, by namespace and
/// peer.
pub(crate) fn registrations(store: &Store, now: Instant) -> Vec<Registration> {
    let keys: Vec<RecordKey> = store
        .provider_keys(now)
        .map(|(key, _)| key.clone())
        .collect();
    let mut registrations = Vec::new();
    for key in keys {
        let Some(namespace) = Namespace::from_record_key(&key) else {
            continue;
        };
        for record in store
            .providers(&key)
            .into_iter()
            .filter(|p| !p.is_expired(now))
        {
            registrations.push(Registration {
                namespace: namespace.clone(),
                peer_id: record.provider,
                addresses: record.addresses,
                expires_in: record.expires.map(|at| at.saturating_duration_since(now)),
            });
        }
    }
    registrations.sort_by(|a, b| (&a.namespace, a.peer_id).cmp(&(&b.namespace, b.peer_id)));
    registrations
}

/// What the node itself contributes to its report, beside the Kademlia state.
#[derive(Debug)]
pub(crate) struct Vitals {
    pub(crate) local: PeerId,
    pub(crate) role: RoleKind,
    pub(crate) uptime: Duration,
    pub(crate) connected_peers: usize,
    pub(crate) registered_in: Vec<Namespace>,
    pub(crate) links: usize,
    pub(crate) forgeries: u64,
    pub(crate) relayed_by: Vec<PeerId>,
    pub(crate) reachability: Reachability,
    pub(crate) hole_punched: Vec<PeerId>,
    pub(crate) relay: Option<RelayReport>,
}

/// The monitor's report of the network this node sees.
pub(crate) fn network_report(
    kad: &mut kad::Behaviour<Store>,
    vitals: Vitals,
    now: Instant,
) -> NetworkReport {
    let serving = kad.mode() == Mode::Server;
    let buckets = kad
        .kbuckets()
        .filter(|b| b.num_entries() > 0)
        .map(|b| BucketSize {
            index: b.range().0.ilog2().unwrap_or(0),
            peers: b.num_entries(),
        })
        .collect();
    let store = kad.store_mut();
    let mut namespaces: Vec<NamespaceSize> = store
        .provider_keys(now)
        .filter_map(|(key, live)| {
            Some(NamespaceSize {
                namespace: Namespace::from_record_key(key)?,
                registrations: live,
            })
        })
        .collect();
    namespaces.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    NetworkReport {
        local_peer_id: vitals.local,
        role: vitals.role,
        serving,
        uptime: vitals.uptime,
        connected_peers: vitals.connected_peers,
        buckets,
        records: store.record_count(),
        namespaces,
        registered_in: vitals.registered_in,
        links: vitals.links,
        forgeries_discarded: vitals.forgeries,
        relayed_by: vitals.relayed_by,
        reachability: vitals.reachability,
        hole_punched: vitals.hole_punched,
        relay: vitals.relay,
    }
}

#[cfg(test)]
mod tests {
    use libp2p::kad::{ProviderRecord, Record};

    use super::*;
    use crate::record::{StoreLimits, immutable_key};

    fn kad_with(peers: &[PeerId]) -> (kad::Behaviour<Store>, PeerId) {
        let local = PeerId::random();
        let mut kad = kad::Behaviour::new(local, Store::new(local, StoreLimits::default()));
        for (i, peer) in peers.iter().enumerate() {
            let address: Multiaddr = format!("/ip4/192.0.2.1/tcp/{}", i + 1).parse().unwrap();
            kad.add_address(peer, address);
        }
        (kad, local)
    }

    #[test]
    fn the_routing_table_lists_every_peer_in_its_bucket() {
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let (mut kad, local) = kad_with(&peers);
        let table = routing_table(&mut kad, local);
        assert_eq!(table.len(), 5);
        assert_eq!(routing_table_size(&mut kad), 5);
        for entry in table.peers() {
            let distance =
                kad::KBucketKey::from(local).distance(&kad::KBucketKey::from(entry.peer_id));
            let bucket = table
                .buckets
                .iter()
                .find(|b| b.entries.contains(entry))
                .unwrap();
            assert_eq!(Some(bucket.index), distance.ilog2());
            assert!(!entry.connected);
        }
        let held: Vec<Multiaddr> = routing_addresses(&mut kad, &peers[2])
            .iter()
            .map(super::super::addresses::strip_p2p)
            .collect();
        assert_eq!(
            held,
            vec!["/ip4/192.0.2.1/tcp/3".parse::<Multiaddr>().unwrap()]
        );
        assert!(routing_addresses(&mut kad, &PeerId::random()).is_empty());
    }

    #[test]
    fn reports_count_live_records_and_registrations_only() {
        let (mut kad, local) = kad_with(&[PeerId::random()]);
        let now = Instant::now();
        let past = now - Duration::from_secs(1);
        let store = kad.store_mut();
        let immutable =
            |value: &[u8]| Record::new(RecordKey::new(&immutable_key(value)), value.to_vec());
        store.insert(immutable(b"live")).unwrap();
        let mut expired = immutable(b"gone");
        expired.expires = Some(past);
        store.insert(expired).unwrap();
        let chat = Namespace::new("chat").unwrap();
        for expires in [None, Some(past)] {
            store
                .insert_provider(ProviderRecord {
                    key: chat.record_key(),
                    provider: PeerId::random(),
                    expires,
                    addresses: Vec::new(),
                })
                .unwrap();
        }
        let records = stored_records(store, local, now);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].value, b"live");
        assert!(records[0].for_others, "no publisher: not written here");
        assert_eq!(registrations(store, now).len(), 1);

        let relay = PeerId::random();
        let report = network_report(
            &mut kad,
            Vitals {
                local,
                role: RoleKind::Bootstrap,
                uptime: Duration::from_secs(3),
                connected_peers: 0,
                registered_in: vec![chat.clone()],
                links: 0,
                forgeries: 2,
                relayed_by: vec![relay],
                reachability: Reachability::Relayed,
                hole_punched: Vec::new(),
                relay: Some(RelayReport {
                    reservations: 3,
                    circuits: 5,
                }),
            },
            now,
        );
        assert_eq!(report.routing_table_size(), 1);
        assert_eq!(
            report.namespaces,
            vec![NamespaceSize {
                namespace: chat,
                registrations: 1
            }]
        );
        let text = report.to_string();
        assert!(text.contains("1 in routing table"), "{text}");
        assert!(
            text.contains("namespace \"chat\": 1 registered peers"),
            "{text}"
        );
        assert!(
            text.contains(&format!("serving through relay /p2p/{relay}")),
            "{text}"
        );
        assert!(
            text.contains("relaying for others: 3 reservations, 5 circuits"),
            "{text}"
        );
    }
}
