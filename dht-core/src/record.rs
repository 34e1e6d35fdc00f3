//! The bounded record store every node keeps for the DHT, and record helpers.
//!
//! Everything a remote peer can make this store grow is bounded by
//! [`StoreLimits`]: the number of value records, the size of each value and
//! key, the number of keys with provider records (namespace registrations),
//! the providers per key and the addresses kept per provider. Expired entries
//! are pruned before a full store refuses a new one.

use std::{
    borrow::Cow,
    collections::{HashMap, hash_map},
    num::NonZeroUsize,
};

use libp2p::{
    PeerId,
    kad::{self, ProviderRecord, Record, RecordKey, store},
};
use web_time::Instant;

/// The longest record key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// How many peers must confirm a write or return a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Quorum {
    /// One peer. For a read, the local store counts.
    #[default]
    One,
    /// More than half of the replication factor.
    Majority,
    /// All of the replication factor.
    All,
    /// An explicit number of peers.
    N(NonZeroUsize),
}

impl Quorum {
    /// The number of peers this quorum means for replication factor `k`.
    pub fn resolve(self, k: NonZeroUsize) -> NonZeroUsize {
        match self {
            Quorum::One => NonZeroUsize::MIN,
            Quorum::Majority => NonZeroUsize::new(k.get() / 2 + 1).unwrap_or(NonZeroUsize::MIN),
            Quorum::All => k,
            Quorum::N(n) => n.min(k),
        }
    }
}

/// Bounds of the local record store. See [`crate::ConfigBuilder::store_limits`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Value records held at most, our own and others'. Default 4096.
    pub max_records: usize,
    /// Largest value accepted, in bytes. Default 64 KiB.
    pub max_value_size: usize,
    /// Keys with provider records (namespaces) held at most. Default 1024.
    pub max_provider_keys: usize,
    /// Providers (namespace members) held per key. Default 256.
    pub max_providers_per_key: usize,
    /// Addresses kept per provider; extra ones are dropped. Default 8.
    pub max_addresses_per_provider: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_records: 4096,
            max_value_size: 64 * 1024,
            max_provider_keys: 1024,
            max_providers_per_key: 256,
            max_addresses_per_provider: 8,
        }
    }
}

/// The node's Kademlia record store: value records and provider records in
/// memory, within [`StoreLimits`].
#[derive(Debug)]
pub struct Store {
    local: PeerId,
    limits: StoreLimits,
    records: HashMap<RecordKey, Record>,
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
        self.records.retain(|_, r| !r.is_expired(now));
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

    /// Number of provider records held, over all keys.
    pub fn provider_record_count(&self) -> usize {
        self.providers.values().map(Vec::len).sum()
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
        if record.key.as_ref().len() > MAX_KEY_LEN
            || record.value.len() > self.limits.max_value_size
        {
            return Err(store::Error::ValueTooLarge);
        }
        if !self.records.contains_key(&record.key) && self.records.len() >= self.limits.max_records
        {
            let now = Instant::now();
            self.records.retain(|_, r| !r.is_expired(now));
            if self.records.len() >= self.limits.max_records {
                return Err(store::Error::MaxRecords);
            }
        }
        self.records.insert(record.key.clone(), record);
        Ok(())
    }

    fn remove(&mut self, key: &RecordKey) {
        self.records.remove(key);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.records.values().map(borrow_record)
    }

    fn add_provider(&mut self, mut record: ProviderRecord) -> store::Result<()> {
        if record.key.as_ref().len() > MAX_KEY_LEN {
            return Err(store::Error::ValueTooLarge);
        }
        record
            .addresses
            .truncate(self.limits.max_addresses_per_provider);
        let now = Instant::now();
        if !self.providers.contains_key(&record.key)
            && self.providers.len() >= self.limits.max_provider_keys
        {
            self.providers.retain(|_, list| {
                list.retain(|p| !p.is_expired(now));
                !list.is_empty()
            });
            if self.providers.len() >= self.limits.max_provider_keys {
                return Err(store::Error::MaxProvidedKeys);
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
            return Err(store::Error::MaxProvidedKeys);
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

/// A record key for people: UTF-8 text when it is printable, hex otherwise.
pub fn display_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => {
            let mut hex = String::with_capacity(2 + key.len() * 2);
            hex.push_str("0x");
            for byte in key {
                hex.push_str(&format!("{byte:02x}"));
            }
            hex
        }
    }
}

pub(crate) fn into_kad_quorum(quorum: NonZeroUsize) -> kad::Quorum {
    if quorum.get() == 1 {
        kad::Quorum::One
    } else {
        kad::Quorum::N(quorum)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use libp2p::kad::store::RecordStore;

    use super::*;

    fn small_limits() -> StoreLimits {
        StoreLimits {
            max_records: 2,
            max_value_size: 8,
            max_provider_keys: 2,
            max_providers_per_key: 2,
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
    fn quorum_resolves_against_the_replication_factor() {
        let k = NonZeroUsize::new(20).unwrap();
        assert_eq!(Quorum::One.resolve(k).get(), 1);
        assert_eq!(Quorum::Majority.resolve(k).get(), 11);
        assert_eq!(Quorum::All.resolve(k).get(), 20);
        assert_eq!(
            Quorum::N(NonZeroUsize::new(50).unwrap()).resolve(k).get(),
            20
        );
        assert_eq!(Quorum::Majority.resolve(NonZeroUsize::MIN).get(), 1);
    }

    #[test]
    fn oversized_values_and_keys_are_refused() {
        let mut store = Store::new(PeerId::random(), small_limits());
        let mut big = record("k", None);
        big.value = vec![0; 9];
        assert!(matches!(store.put(big), Err(store::Error::ValueTooLarge)));
        let long_key = record(&"k".repeat(MAX_KEY_LEN + 1), None);
        assert!(matches!(
            store.put(long_key),
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
        assert!(matches!(
            store.put(record("d", None)),
            Err(store::Error::MaxRecords)
        ));
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
        assert!(matches!(
            store.add_provider(provider("ns", p3, None)),
            Err(store::Error::MaxProvidedKeys)
        ));
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
        assert!(matches!(
            store.add_provider(provider("c", PeerId::random(), None)),
            Err(store::Error::MaxProvidedKeys)
        ));
    }

    #[test]
    fn keys_display_as_text_or_hex() {
        assert_eq!(display_key(b"hello"), "hello");
        assert_eq!(display_key(&[0, 255]), "0x00ff");
        assert_eq!(display_key(b"a\nb"), "0x610a62");
    }
}
