//! The store's rules, driven by hand: what it keeps, what it refuses, and
//! what it reports.

use std::time::Duration;

use libp2p::{identity::Keypair, kad::store::RecordStore};

use super::*;
use crate::{
    error::{ErrorCode, RecordError},
    record::{MAX_KEY_LEN, Quota, Subnet, immutable_key, sign_mutable},
};

fn small_limits() -> StoreLimits {
    StoreLimits {
        max_records: 2,
        max_value_size: 128,
        max_record_bytes: 1024,
        max_provider_keys: 2,
        max_providers_per_key: 2,
        max_provider_records: 3,
        max_addresses_per_provider: 1,
        ..StoreLimits::default()
    }
}

/// The immutable record holding `value`.
fn immutable(value: &str, expires: Option<Instant>) -> Record {
    Record {
        key: RecordKey::new(&immutable_key(value.as_bytes())),
        value: value.as_bytes().to_vec(),
        publisher: None,
        expires,
    }
}

/// Version `seq` of `owner`'s record `name`.
fn mutable(owner: &Keypair, name: &str, seq: u64, value: &str, expires: Option<Instant>) -> Record {
    let (key, value) = sign_mutable(owner, name.as_bytes(), seq, value.as_bytes()).unwrap();
    Record {
        key: RecordKey::new(&key),
        value,
        publisher: None,
        expires,
    }
}

fn provider(key: &str, peer: PeerId, expires: Option<Instant>) -> ProviderRecord {
    ProviderRecord {
        key: RecordKey::new(&key),
        provider: peer,
        expires,
        addresses: vec![
            "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            "/ip4/127.0.0.1/tcp/2".parse().unwrap(),
        ],
    }
}

fn from_peer(peer: PeerId, address: &str) -> Option<Source> {
    Some(Source {
        peer,
        subnet: Subnet::of(&address.parse().unwrap(), false),
    })
}

#[test]
fn oversized_values_and_keys_are_refused() {
    let mut store = Store::new(PeerId::random(), small_limits());
    let big = immutable(&"x".repeat(129), None);
    assert_eq!(
        store.insert(big),
        Err(StoreError::Invalid(RecordError::ValueTooLarge {
            size: 129,
            max: 128
        }))
    );
    let mut long_key = immutable("v", None);
    long_key.key = RecordKey::new(&vec![b'k'; MAX_KEY_LEN + 1]);
    assert!(matches!(
        store.insert(long_key.clone()),
        Err(StoreError::Invalid(RecordError::KeyTooLarge { .. }))
    ));
    // Kademlia's own calls get its error type.
    assert!(matches!(
        store.put(long_key),
        Err(store::Error::ValueTooLarge)
    ));
    assert_eq!(store.record_count(), 0);
}

/// Regression: any value under any key was stored, so anyone could
/// overwrite anyone's record.
#[test]
fn only_signed_or_content_addressed_records_are_stored() {
    let mut store = Store::new(PeerId::random(), small_limits());
    let plain = Record::new(RecordKey::new(b"song"), b"la".to_vec());
    assert_eq!(
        store.insert(plain),
        Err(StoreError::Invalid(RecordError::UnknownKind))
    );
    let mut wrong_content = immutable("v", None);
    wrong_content.value = b"w".to_vec();
    assert_eq!(
        store.insert(wrong_content),
        Err(StoreError::Invalid(RecordError::Forged))
    );
    let owner = Keypair::generate_ed25519();
    let mut forged = mutable(&owner, "n", 1, "mine", None);
    let intruder = mutable(&Keypair::generate_ed25519(), "n", 2, "theirs", None);
    forged.value = intruder.value;
    assert_eq!(
        store.insert(forged),
        Err(StoreError::Invalid(RecordError::Forged))
    );
    assert_eq!(store.record_count(), 0);
}

/// Regression: an inbound PUT replaced whatever was stored, a replay of an
/// old version included, and a short TTL cut a record's life.
#[test]
fn a_mutable_record_only_moves_forward_and_replays_cannot_shorten_it() {
    let mut store = Store::new(PeerId::random(), small_limits());
    let owner = Keypair::generate_ed25519();
    let long = Some(Instant::now() + Duration::from_secs(3600));
    let soon = Some(Instant::now() + Duration::from_secs(1));
    let v2 = mutable(&owner, "n", 2, "two", long);
    store.insert(v2.clone()).unwrap();
    assert_eq!(
        store.insert(mutable(&owner, "n", 1, "one", long)),
        Err(StoreError::StaleSequence {
            stored: 2,
            offered: 1
        })
    );
    assert_eq!(
        store.insert(mutable(&owner, "n", 2, "other", long)),
        Err(StoreError::SequenceTaken { seq: 2 })
    );
    // The same version with a 1 s life: accepted, and the long life stays.
    let mut replay = v2.clone();
    replay.expires = soon;
    store.insert(replay).unwrap();
    assert_eq!(store.get(&v2.key).unwrap().expires, long);
    // The owner's next version replaces it.
    store
        .insert(mutable(&owner, "n", 3, "three", long))
        .unwrap();
    let held = store.get(&v2.key).unwrap();
    assert_eq!(sequence_of(held.key.as_ref(), &held.value), 3);
    assert_eq!(store.record_count(), 1);
}

#[test]
fn a_full_store_makes_room_only_by_dropping_expired_records() {
    let mut store = Store::new(PeerId::random(), small_limits());
    let past = Instant::now() - Duration::from_secs(1);
    store.put(immutable("a", None)).unwrap();
    store.put(immutable("b", Some(past))).unwrap();
    // "b" has expired, so "c" takes its place.
    store.put(immutable("c", None)).unwrap();
    assert!(store.get(&immutable("b", None).key).is_none());
    // Now both are live: the store refuses a third key but accepts copies.
    assert_eq!(
        store.insert(immutable("d", None)),
        Err(StoreError::Full {
            max_records: 2,
            max_bytes: 1024
        })
    );
    store.put(immutable("a", None)).unwrap();
    assert_eq!(store.record_count(), 2);
}

/// Regression: one peer could fill every slot of the store.
#[test]
fn one_peer_or_one_subnet_gets_only_its_share() {
    let limits = StoreLimits {
        max_records: 100,
        per_peer: Quota {
            records: 2,
            bytes: 1 << 20,
            registrations: 1,
        },
        per_subnet: Quota {
            records: 3,
            bytes: 1 << 20,
            registrations: 2,
        },
        ..StoreLimits::default()
    };
    let mut store = Store::new(PeerId::random(), limits);
    let flooder = from_peer(PeerId::random(), "/ip4/203.0.113.5/tcp/1");
    store.set_source(flooder);
    store.put(immutable("1", None)).unwrap();
    store.put(immutable("2", None)).unwrap();
    assert!(matches!(
        store.put(immutable("3", None)),
        Err(store::Error::MaxRecords)
    ));
    // Its neighbour in the /24 gets what is left of the subnet's share.
    store.set_source(from_peer(PeerId::random(), "/ip4/203.0.113.6/tcp/1"));
    store.put(immutable("4", None)).unwrap();
    assert!(store.put(immutable("5", None)).is_err());
    // An honest peer elsewhere, and this node itself, still get in.
    store.set_source(from_peer(PeerId::random(), "/ip4/198.51.100.1/tcp/1"));
    store.put(immutable("6", None)).unwrap();
    store.set_source(None);
    store.put(immutable("7", None)).unwrap();
    // Registrations have their own share.
    store.set_source(flooder);
    let peer = flooder.unwrap().peer;
    store.add_provider(provider("ns-a", peer, None)).unwrap();
    store.add_provider(provider("ns-a", peer, None)).unwrap();
    assert!(matches!(
        store.insert_provider(provider("ns-b", peer, None)),
        Err(StoreError::SourceQuota { .. })
    ));
    // A removed record gives its share back.
    store.remove(&immutable("1", None).key);
    store.put(immutable("3", None)).unwrap();

    let refused = std::iter::from_fn(|| store.take_outcome())
        .filter(|event| matches!(event, Event::RecordRejected { reason, .. } if reason.code() == "source-quota"))
        .count();
    assert_eq!(refused, 2, "both refusals were reported");
}

#[test]
fn providers_are_bounded_per_key_and_refreshed_in_place() {
    let local = PeerId::random();
    let mut store = Store::new(local, small_limits());
    let (p1, p2, p3) = (PeerId::random(), PeerId::random(), PeerId::random());
    store.add_provider(provider("ns", p1, None)).unwrap();
    store.add_provider(provider("ns", p2, None)).unwrap();
    assert_eq!(
        store.insert_provider(provider("ns", p3, None)),
        Err(StoreError::ProvidersFull { max: 2 })
    );
    // A refresh by an existing provider is accepted and does not duplicate.
    store.add_provider(provider("ns", p1, None)).unwrap();
    let list = store.providers(&RecordKey::new(&"ns"));
    assert_eq!(list.len(), 2);
    // Addresses beyond the limit are dropped.
    assert!(list.iter().all(|p| p.addresses.len() == 1));
}

#[test]
fn expired_providers_give_way_and_are_pruned() {
    let mut store = Store::new(PeerId::random(), small_limits());
    let now = Instant::now();
    let soon = now + Duration::from_secs(10);
    let (p1, p2, p3) = (PeerId::random(), PeerId::random(), PeerId::random());
    store
        .add_provider(provider("ns", p1, Some(now - Duration::from_secs(1))))
        .unwrap();
    store.add_provider(provider("ns", p2, Some(soon))).unwrap();
    store.add_provider(provider("ns", p3, Some(soon))).unwrap();
    let live: Vec<_> = store
        .providers(&RecordKey::new(&"ns"))
        .into_iter()
        .map(|p| p.provider)
        .collect();
    assert_eq!(live, vec![p2, p3]);

    assert_eq!(store.provider_keys(now).count(), 1);
    // Past the TTL nothing is reported live, and pruning frees the memory.
    let later = soon + Duration::from_secs(1);
    assert_eq!(store.provider_keys(later).count(), 0);
    store.prune_expired(later);
    assert_eq!(store.provider_record_count(), 0);
}

#[test]
fn own_provider_records_are_listed_as_provided_until_removed() {
    let local = PeerId::random();
    let mut store = Store::new(local, small_limits());
    store.add_provider(provider("ns", local, None)).unwrap();
    store
        .add_provider(provider("ns", PeerId::random(), None))
        .unwrap();
    assert_eq!(store.provided().count(), 1);
    store.remove_provider(&RecordKey::new(&"ns"), &local);
    assert_eq!(store.provided().count(), 0);
    assert_eq!(store.providers(&RecordKey::new(&"ns")).len(), 1);
}

#[test]
fn provider_keys_are_bounded() {
    let mut store = Store::new(PeerId::random(), small_limits());
    store
        .add_provider(provider("a", PeerId::random(), None))
        .unwrap();
    store
        .add_provider(provider("b", PeerId::random(), None))
        .unwrap();
    assert_eq!(
        store.insert_provider(provider("c", PeerId::random(), None)),
        Err(StoreError::ProviderKeysFull { max: 2 })
    );
}

/// Regression: only the number of records was bounded, so 4096 values
/// of 64 KiB could take 256 MiB.
#[test]
fn the_bytes_of_all_records_are_bounded() {
    let mut store = Store::new(
        PeerId::random(),
        StoreLimits {
            max_records: 100,
            max_value_size: 400,
            max_record_bytes: 1000,
            ..StoreLimits::default()
        },
    );
    let big = |fill: &str| immutable(&fill.repeat(400), None);
    store.insert(big("a")).unwrap();
    store.insert(big("b")).unwrap();
    assert!(matches!(
        store.insert(big("c")),
        Err(StoreError::Full { .. })
    ));
    store.remove(&big("a").key);
    store.insert(big("c")).unwrap();
    // Two records of 400 bytes under keys of 74.
    assert_eq!(store.record_bytes(), 2 * (400 + 74));
}

/// Regression: a registration's addresses were bounded in number but
/// not in length, and registrations in number per key only.
#[test]
fn registrations_are_bounded_in_total_and_long_addresses_dropped() {
    let mut store = Store::new(PeerId::random(), small_limits());
    let mut long = provider("ns", PeerId::random(), None);
    long.addresses = vec![
        format!("/dns4/{}.example/tcp/1", "a".repeat(250))
            .parse()
            .unwrap(),
        "/ip4/192.0.2.1/tcp/1".parse().unwrap(),
    ];
    store.insert_provider(long).unwrap();
    let kept = store.providers(&RecordKey::new(&"ns"));
    assert_eq!(
        kept[0].addresses,
        vec!["/ip4/192.0.2.1/tcp/1".parse::<libp2p::Multiaddr>().unwrap()]
    );
    store
        .insert_provider(provider("ns", PeerId::random(), None))
        .unwrap();
    store
        .insert_provider(provider("other", PeerId::random(), None))
        .unwrap();
    assert_eq!(
        store.insert_provider(provider("other", PeerId::random(), None)),
        Err(StoreError::RegistrationsFull { max: 3 })
    );
}

#[test]
fn inbound_writes_are_reported_and_own_writes_are_not() {
    let mut store = Store::new(PeerId::random(), small_limits());
    store.put(immutable("mine", None)).unwrap();
    assert_eq!(std::iter::from_fn(|| store.take_outcome()).count(), 0);

    let sender = PeerId::random();
    store.set_source(from_peer(sender, "/memory/1"));
    store.put(immutable("a", None)).unwrap();
    assert!(store.put(immutable(&"x".repeat(129), None)).is_err());
    let member = PeerId::random();
    store
        .add_provider(provider("/ns-dht/ns/chat", member, None))
        .unwrap();
    let outcomes: Vec<Event> = std::iter::from_fn(|| store.take_outcome()).collect();
    assert!(matches!(&outcomes[0], Event::RecordStored { from, .. } if *from == sender));
    assert!(matches!(
        &outcomes[1],
        Event::RecordRejected { reason, .. } if reason.code() == "value-too-large"
    ));
    assert!(matches!(&outcomes[2], Event::RegistrationStored { peer, .. } if *peer == member));
    assert_eq!(store.record_count(), 2);
}

#[test]
fn expired_records_give_their_share_back() {
    let limits = StoreLimits {
        per_peer: Quota {
            records: 1,
            ..StoreLimits::default().per_peer
        },
        ..StoreLimits::default()
    };
    let mut store = Store::new(PeerId::random(), limits);
    store.set_source(from_peer(PeerId::random(), "/ip4/203.0.113.5/tcp/1"));
    let past = Instant::now() - Duration::from_secs(1);
    store.insert(immutable("old", Some(past))).unwrap();
    // Its only record has expired: the peer may store another.
    store.insert(immutable("new", None)).unwrap();
    assert!(matches!(
        store.insert(immutable("more", None)),
        Err(StoreError::SourceQuota { .. })
    ));
}

/// A store that writes through a storage (none in the browser).
#[cfg(not(target_arch = "wasm32"))]
mod kept {
    use std::sync::Arc;

    use super::{super::super::storage::MemoryStorage, *};

    fn kept_store(storage: &MemoryStorage, local: PeerId) -> Store {
        Store::with_storage(local, small_limits(), Arc::new(storage.clone()))
    }

    #[test]
    fn what_the_store_takes_is_kept_and_held_again_after_a_restart() {
        let storage = MemoryStorage::new();
        let (local, owner, other) = (
            PeerId::random(),
            Keypair::generate_ed25519(),
            PeerId::random(),
        );
        let in_an_hour = Some(Instant::now() + Duration::from_secs(3600));
        let mut store = kept_store(&storage, local);
        store.insert(immutable("kept", in_an_hour)).unwrap();
        let mut published = mutable(&owner, "mine", 1, "v1", in_an_hour);
        published.publisher = Some(local);
        store.insert(published.clone()).unwrap();
        store
            .insert_provider(provider("ns", other, in_an_hour))
            .unwrap();
        // This node's own registration is made again by its role, not kept.
        store
            .insert_provider(provider("ns", local, in_an_hour))
            .unwrap();
        drop(store);

        let restarted = kept_store(&storage, local);
        assert_eq!(restarted.record_count(), 2);
        let held = restarted.get(&published.key).expect("held again");
        assert_eq!(held.publisher, Some(local), "republished by this node");
        assert_eq!(held.value, published.value);
        let providers = restarted.providers(&RecordKey::new(&"ns"));
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].provider, other);
        assert_eq!(restarted.provided().count(), 0);
    }

    #[test]
    fn a_write_the_storage_cannot_keep_is_refused_and_not_held() {
        let storage = MemoryStorage::new();
        let mut store = kept_store(&storage, PeerId::random());
        storage.fail_writes(true);
        let error = store.insert(immutable("lost", None)).unwrap_err();
        assert!(matches!(error, StoreError::Storage(_)));
        assert_eq!(error.code(), "storage-failed");
        assert_eq!(store.record_count(), 0);
        let registration = provider("ns", PeerId::random(), None);
        assert!(store.insert_provider(registration).is_err());
        assert_eq!(store.provider_record_count(), 0);
        // What Kademlia wrote and was refused is told to the node's own put.
        assert!(store.put(immutable("also lost", None)).is_err());
        assert!(matches!(store.take_refusal(), Some(StoreError::Storage(_))));

        storage.fail_writes(false);
        store.insert(immutable("kept", None)).unwrap();
        assert_eq!(storage.records().unwrap().len(), 1);
    }

    #[test]
    fn forged_and_expired_entries_are_not_held_again() {
        let storage = MemoryStorage::new();
        let owner = Keypair::generate_ed25519();
        let mut forged = SavedRecord::of(&mutable(&owner, "name", 1, "v1", None));
        forged.value[20] ^= 1;
        storage.save_record(&forged).unwrap();
        let mut expired = SavedRecord::of(&immutable("old", None));
        expired.expires = Some(web_time::SystemTime::now() - Duration::from_secs(1));
        storage.save_record(&expired).unwrap();
        storage
            .save_record(&SavedRecord::of(&immutable("good", None)))
            .unwrap();
        let store = kept_store(&storage, PeerId::random());
        assert_eq!(store.record_count(), 1);
    }

    #[test]
    fn replays_that_barely_extend_a_record_cost_no_write() {
        let storage = MemoryStorage::new();
        let mut store = kept_store(&storage, PeerId::random());
        let start = Instant::now() + Duration::from_secs(3600);
        store.insert(immutable("replayed", Some(start))).unwrap();
        let kept = || storage.records().unwrap()[0].expires;
        let first = kept();
        for ms in 1..=100 {
            let later = start + Duration::from_millis(ms);
            store.insert(immutable("replayed", Some(later))).unwrap();
        }
        assert_eq!(kept(), first, "100 replays a millisecond later each");
        let hour_later = start + Duration::from_secs(3600);
        store
            .insert(immutable("replayed", Some(hour_later)))
            .unwrap();
        assert_ne!(kept(), first, "the hourly replication's extension is kept");
    }

    #[test]
    fn expired_and_removed_entries_leave_the_storage() {
        let storage = MemoryStorage::new();
        let soon = Some(Instant::now() + Duration::from_millis(10));
        let mut store = kept_store(&storage, PeerId::random());
        let record = immutable("short", soon);
        store.insert(record.clone()).unwrap();
        store.insert(immutable("removed", None)).unwrap();
        let other = PeerId::random();
        store.insert_provider(provider("ns", other, soon)).unwrap();
        store.remove(&immutable("removed", None).key);
        store.prune_expired(Instant::now() + Duration::from_secs(1));
        assert!(storage.records().unwrap().is_empty());
        assert!(storage.registrations().unwrap().is_empty());
    }
}
