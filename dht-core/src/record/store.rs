//! The bounded record store every node keeps for the DHT.
//!
//! Everything a remote peer can make this store grow is bounded by
//! [`StoreLimits`]: the number of value records, the size of each value and
//! key, the number of keys with provider records (namespace registrations),
//! the providers per key and the addresses kept per provider. Expired entries
//! are pruned before a full store refuses a new one.

use std::{
    borrow::Cow,
    collections::{HashMap, hash_map},
};

use libp2p::{
    PeerId,
    kad::{InboundRequest, ProviderRecord, Record, RecordKey, store},
};
use web_time::Instant;

use super::{StoreError, StoreLimits, check_key, check_value, display_key};
use crate::{
    event::Event,
    namespace::{MAX_ADDRESS_LEN, Namespace},
};

/// The bytes a record counts against [`StoreLimits::max_record_bytes`].
fn weight(record: &Record) -> usize {
    record.key.as_ref().len() + record.value.len()
}

/// The node's Kademlia record store: value records and provider records in
/// memory, within [`StoreLimits`].
#[derive(Debug)]
pub struct Store {
    local: PeerId,
    limits: StoreLimits,
    records: HashMap<RecordKey, Record>,
    /// The sum of [`weight`] over `records`.
    record_bytes: usize,
    providers: HashMap<RecordKey, Vec<ProviderRecord>>,
    /// Our own provider records, which Kademlia republishes.
    provided: HashMap<RecordKey, ProviderRecord>,
}

impl Store {
    /// An empty store for the node `local`.
    pub fn new(local: PeerId, limits: StoreLimits) -> Self {
        Self {
            local,
            limits,
            records: HashMap::new(),
            record_bytes: 0,
            providers: HashMap::new(),
            provided: HashMap::new(),
        }
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Drops every record and provider record that has expired at `now`.
    pub fn prune_expired(&mut self, now: Instant) {
        self.prune_records(now);
        self.providers.retain(|_, list| {
            list.retain(|p| !p.is_expired(now));
            !list.is_empty()
        });
    }

    /// Keys that hold provider records, with their providers that are still
    /// live at `now`.
    pub fn provider_keys(&self, now: Instant) -> impl Iterator<Item = (&RecordKey, usize)> {
        self.providers
            .iter()
            .map(move |(key, list)| (key, list.iter().filter(|p| !p.is_expired(now)).count()))
            .filter(|(_, live)| *live > 0)
    }

    /// Number of value records held.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Bytes of keys and values held in value records.
    pub fn record_bytes(&self) -> usize {
        self.record_bytes
    }

    /// Number of provider records held, over all keys.
    pub fn provider_record_count(&self) -> usize {
        self.providers.values().map(Vec::len).sum()
    }

    /// Stores `record` (replacing the one under its key), within the limits.
    pub fn insert(&mut self, record: Record) -> Result<(), StoreError> {
        check_key(record.key.as_ref())?;
        check_value(&record.value, self.limits.max_value_size)?;
        let replaced = self.records.get(&record.key).map_or(0, weight);
        let fits = |store: &Self| {
            let count_ok = replaced > 0 || store.records.len() < store.limits.max_records;
            let bytes = store.record_bytes - replaced + weight(&record);
            count_ok && bytes <= store.limits.max_record_bytes
        };
        if !fits(self) {
            self.prune_records(Instant::now());
            if !fits(self) {
                return Err(StoreError::Full {
                    max_records: self.limits.max_records,
                    max_bytes: self.limits.max_record_bytes,
                });
            }
        }
        self.record_bytes = self.record_bytes - replaced + weight(&record);
        self.records.insert(record.key.clone(), record);
        Ok(())
    }

    fn prune_records(&mut self, now: Instant) {
        let mut freed = 0;
        self.records.retain(|_, r| {
            let live = !r.is_expired(now);
            if !live {
                freed += weight(r);
            }
            live
        });
        self.record_bytes -= freed;
    }

    /// Stores a registration (a provider record), within the limits; extra
    /// addresses are dropped.
    pub fn insert_provider(&mut self, mut record: ProviderRecord) -> Result<(), StoreError> {
        check_key(record.key.as_ref())?;
        record.addresses.retain(|a| a.len() <= MAX_ADDRESS_LEN);
        record
            .addresses
            .truncate(self.limits.max_addresses_per_provider);
        let now = Instant::now();
        let known = self
            .providers
            .get(&record.key)
            .is_some_and(|list| list.iter().any(|p| p.provider == record.provider));
        if !known && self.provider_record_count() >= self.limits.max_provider_records {
            self.prune_expired(now);
            if self.provider_record_count() >= self.limits.max_provider_records {
                return Err(StoreError::RegistrationsFull {
                    max: self.limits.max_provider_records,
                });
            }
        }
        if !self.providers.contains_key(&record.key)
            && self.providers.len() >= self.limits.max_provider_keys
        {
            self.providers.retain(|_, list| {
                list.retain(|p| !p.is_expired(now));
                !list.is_empty()
            });
            if self.providers.len() >= self.limits.max_provider_keys {
                return Err(StoreError::ProviderKeysFull {
                    max: self.limits.max_provider_keys,
                });
            }
        }
        let key = record.key.clone();
        let is_full = |list: &Vec<ProviderRecord>, provider: &PeerId, max: usize| {
            list.len() >= max && !list.iter().any(|p| &p.provider == provider)
        };
        let max_per_key = self.limits.max_providers_per_key;
        if self
            .providers
            .get(&key)
            .is_some_and(|list| is_full(list, &record.provider, max_per_key))
        {
            self.prune_providers_of(&key, now);
        }
        let list = self.providers.entry(key.clone()).or_default();
        if is_full(list, &record.provider, max_per_key) {
            return Err(StoreError::ProvidersFull { max: max_per_key });
        }
        if record.provider == self.local {
            self.provided.insert(key, record.clone());
        }
        match list.iter_mut().find(|p| p.provider == record.provider) {
            Some(existing) => *existing = record,
            None => list.push(record),
        }
        Ok(())
    }

    /// Takes what a peer asked this node to store (Kademlia hands inbound
    /// records and registrations to the node, see
    /// [`crate::Behaviour`]), and says what became of it.
    pub(crate) fn accept(&mut self, request: InboundRequest) -> Option<Event> {
        match request {
            InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                let key = record.key.to_vec();
                Some(match self.insert(record) {
                    Ok(()) => Event::RecordStored { key, from: source },
                    Err(reason) => {
                        tracing::debug!(peer = %source, key = %display_key(&key), %reason, "refused a record");
                        Event::RecordRejected {
                            key,
                            from: source,
                            reason,
                        }
                    }
                })
            }
            InboundRequest::AddProvider {
                record: Some(record),
            } => {
                let peer = record.provider;
                let namespace = Namespace::from_record_key(&record.key);
                match self.insert_provider(record) {
                    Ok(()) => {
                        namespace.map(|namespace| Event::RegistrationStored { namespace, peer })
                    }
                    Err(reason) => {
                        tracing::debug!(%peer, %reason, "refused a registration");
                        None
                    }
                }
            }
            _ => None,
        }
    }

    fn prune_providers_of(&mut self, key: &RecordKey, now: Instant) {
        if let Some(list) = self.providers.get_mut(key) {
            list.retain(|p| !p.is_expired(now));
        }
    }
}

fn borrow_record(record: &Record) -> Cow<'_, Record> {
    Cow::Borrowed(record)
}

fn borrow_provider(record: &ProviderRecord) -> Cow<'_, ProviderRecord> {
    Cow::Borrowed(record)
}

type ProvidedIter<'a> = std::iter::Map<
    hash_map::Values<'a, RecordKey, ProviderRecord>,
    fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
>;
type RecordsIter<'a> =
    std::iter::Map<hash_map::Values<'a, RecordKey, Record>, fn(&'a Record) -> Cow<'a, Record>>;

impl store::RecordStore for Store {
    type RecordsIter<'a> = RecordsIter<'a>;
    type ProvidedIter<'a> = ProvidedIter<'a>;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.records.get(key).map(Cow::Borrowed)
    }

    fn put(&mut self, record: Record) -> store::Result<()> {
        Ok(self.insert(record)?)
    }

    fn remove(&mut self, key: &RecordKey) {
        if let Some(record) = self.records.remove(key) {
            self.record_bytes -= weight(&record);
        }
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.records.values().map(borrow_record)
    }

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        Ok(self.insert_provider(record)?)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.providers.get(key).cloned().unwrap_or_default()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.provided.values().map(borrow_provider)
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if let hash_map::Entry::Occupied(mut entry) = self.providers.entry(key.clone()) {
            entry.get_mut().retain(|p| &p.provider != provider);
            if entry.get().is_empty() {
                entry.remove();
            }
        }
        if provider == &self.local {
            self.provided.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use libp2p::kad::store::RecordStore;

    use super::*;
    use crate::{
        error::{ErrorCode, RecordError},
        record::MAX_KEY_LEN,
    };

    fn small_limits() -> StoreLimits {
        StoreLimits {
            max_records: 2,
            max_value_size: 8,
            max_record_bytes: 1024,
            max_provider_keys: 2,
            max_providers_per_key: 2,
            max_provider_records: 3,
            max_addresses_per_provider: 1,
        }
    }

    fn record(key: &str, expires: Option<Instant>) -> Record {
        Record {
            key: RecordKey::new(&key),
            value: b"v".to_vec(),
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

    #[test]
    fn oversized_values_and_keys_are_refused() {
        let mut store = Store::new(PeerId::random(), small_limits());
        let mut big = record("k", None);
        big.value = vec![0; 9];
        assert_eq!(
            store.insert(big),
            Err(StoreError::Invalid(RecordError::ValueTooLarge {
                size: 9,
                max: 8
            }))
        );
        let long_key = record(&"k".repeat(MAX_KEY_LEN + 1), None);
        assert!(matches!(
            store.insert(long_key),
            Err(StoreError::Invalid(RecordError::KeyTooLarge { .. }))
        ));
        // Kademlia's own calls get its error type.
        assert!(matches!(
            store.put(record(&"k".repeat(MAX_KEY_LEN + 1), None)),
            Err(store::Error::ValueTooLarge)
        ));
        assert_eq!(store.record_count(), 0);
    }

    #[test]
    fn a_full_store_makes_room_only_by_dropping_expired_records() {
        let mut store = Store::new(PeerId::random(), small_limits());
        let past = Instant::now() - Duration::from_secs(1);
        store.put(record("a", None)).unwrap();
        store.put(record("b", Some(past))).unwrap();
        // "b" has expired, so "c" takes its place.
        store.put(record("c", None)).unwrap();
        assert!(store.get(&RecordKey::new(&"b")).is_none());
        // Now both are live: the store refuses a third key but accepts updates.
        assert_eq!(
            store.insert(record("d", None)),
            Err(StoreError::Full {
                max_records: 2,
                max_bytes: 1024
            })
        );
        store.put(record("a", None)).unwrap();
        assert_eq!(store.record_count(), 2);
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
        let big = |key: &str| Record::new(RecordKey::new(&key), vec![0; 400]);
        store.insert(big("a")).unwrap();
        store.insert(big("b")).unwrap();
        assert!(matches!(
            store.insert(big("c")),
            Err(StoreError::Full { .. })
        ));
        // Replacing a record counts only the difference.
        store.insert(big("a")).unwrap();
        store.remove(&RecordKey::new(&"a"));
        store.insert(big("c")).unwrap();
        assert_eq!(store.record_bytes(), 802);
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
    fn inbound_records_are_stored_within_bounds_and_refusals_reported() {
        let mut store = Store::new(PeerId::random(), small_limits());
        let source = PeerId::random();
        let put = |record: Record| InboundRequest::PutRecord {
            source,
            connection: libp2p::swarm::ConnectionId::new_unchecked(1),
            record: Some(record),
        };
        assert!(matches!(
            store.accept(put(record("a", None))),
            Some(Event::RecordStored { from, .. }) if from == source
        ));
        let mut big = record("b", None);
        big.value = vec![0; 9];
        match store.accept(put(big)) {
            Some(Event::RecordRejected { key, reason, .. }) => {
                assert_eq!(key, b"b");
                assert_eq!(reason.code(), "value-too-large");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(store.record_count(), 1);

        let member = PeerId::random();
        let registration = provider("/ns-dht/ns/chat", member, None);
        assert!(matches!(
            store.accept(InboundRequest::AddProvider { record: Some(registration) }),
            Some(Event::RegistrationStored { peer, .. }) if peer == member
        ));
    }
}
