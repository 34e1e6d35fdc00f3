//! The bounded record store every node keeps for the DHT.
//!
//! Everything a remote peer can make this store grow is bounded by
//! [`StoreLimits`]: the number of value records, the size of each value and
//! key, the number of keys with provider records (namespace registrations),
//! the providers per key and the addresses kept per provider. Expired entries
//! are pruned before a full store refuses a new one.
//!
//! With a [`Storage`], every change is written through it, and a write is
//! taken (and so acknowledged) only once the storage has it.

use std::{
    borrow::Cow,
    cmp::Ordering,
    collections::{HashMap, VecDeque, hash_map},
    time::Duration,
};

use libp2p::{
    PeerId,
    kad::{ProviderRecord, Record, RecordKey, store},
};
use web_time::Instant;

// The browser's storage handle needs the trait for its (never made) calls.
#[cfg_attr(not(target_arch = "wasm32"), allow(unused_imports))]
use super::storage::Storage;
use super::{
    Charge, Quotas, Source, StoreError, StoreLimits, check_key, check_value, display_key,
    signed::{self, sequence_of},
    storage::{SavedRecord, SavedRegistration, StorageHandle},
};
use crate::{
    event::Event,
    namespace::{MAX_ADDRESS_LEN, Namespace},
};

/// Outcomes of inbound writes kept for the node to report; more are
/// dropped (they are only reported, never acted on).
const MAX_OUTCOMES: usize = 256;

/// The bytes a record counts against [`StoreLimits::max_record_bytes`].
fn weight(record: &Record) -> usize {
    record.key.as_ref().len() + record.value.len()
}

/// How much later a copy of a held record must make it expire for the
/// storage to be told: replays of a record, each a little later, would
/// otherwise cost a durable write apiece. A longer life kept only in memory
/// is lost on a restart; the holders' hourly replication extends it again.
const KEPT_EXTENSION: Duration = Duration::from_secs(10 * 60);

/// How much later `to` is than `from`, where `None` is never.
fn extends_by(from: Option<Instant>, to: Option<Instant>) -> Duration {
    match (from, to) {
        (Some(from), Some(to)) => to.saturating_duration_since(from),
        (Some(_), None) => Duration::MAX,
        (None, _) => Duration::ZERO,
    }
}

/// The later of two expiry times, where `None` is never.
fn later(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    a.zip(b).map(|(a, b)| a.max(b))
}

/// A record and the source it was charged to (none for this node's own).
#[derive(Debug)]
struct Held {
    record: Record,
    source: Option<Source>,
}

impl Held {
    fn charge(&self) -> Charge {
        Charge::Record {
            bytes: weight(&self.record),
        }
    }
}

/// What storing a record means.
enum Admission {
    /// It is the version held: only its expiry may move (later).
    Copy,
    /// It is new here, or a newer version of what is held.
    New,
}

/// A registration and the source it was charged to.
#[derive(Debug)]
struct HeldProvider {
    record: ProviderRecord,
    source: Option<Source>,
}

/// The node's Kademlia record store: value records and provider records in
/// memory, within [`StoreLimits`], each checked ([`signed::verify`]) and
/// charged to the peer and subnet that sent it.
///
/// Kademlia stores inbound writes here directly, and acknowledges only
/// those this store accepts; the sender of each is set by
/// [`crate::kademlia::Kademlia`] for the duration of the write
/// ([`Store::set_source`]).
#[derive(Debug)]
pub struct Store {
    local: PeerId,
    limits: StoreLimits,
    records: HashMap<RecordKey, Held>,
    /// The sum of [`weight`] over `records`.
    record_bytes: usize,
    providers: HashMap<RecordKey, Vec<HeldProvider>>,
    /// Our own provider records, which Kademlia republishes.
    provided: HashMap<RecordKey, ProviderRecord>,
    quotas: Quotas,
    /// The sender of the write under way; `None` for this node's own.
    source: Option<Source>,
    /// What became of inbound writes, for the node to report.
    outcomes: VecDeque<Event>,
    /// Where every change is written through, if anywhere.
    storage: Option<StorageHandle>,
    /// Why Kademlia's last write here was refused, for this node's own
    /// puts (Kademlia reports every refusal as one error).
    refusal: Option<StoreError>,
}

impl Store {
    /// An empty store for the node `local`.
    pub fn new(local: PeerId, limits: StoreLimits) -> Self {
        Self {
            local,
            quotas: Quotas::new(limits.per_peer, limits.per_subnet),
            limits,
            records: HashMap::new(),
            record_bytes: 0,
            providers: HashMap::new(),
            provided: HashMap::new(),
            source: None,
            outcomes: VecDeque::new(),
            storage: None,
            refusal: None,
        }
    }

    /// A store for the node `local` holding what `storage` kept (each entry
    /// checked again, expired ones dropped), and writing through it.
    pub fn with_storage(local: PeerId, limits: StoreLimits, storage: StorageHandle) -> Self {
        let mut store = Self::new(local, limits);
        let (mut loaded, mut dropped) = (0, 0);
        match storage.records() {
            Ok(records) => {
                for record in records.into_iter().filter_map(SavedRecord::into_record) {
                    match store.insert(record) {
                        Ok(()) => loaded += 1,
                        Err(_) => dropped += 1,
                    }
                }
            }
            Err(error) => tracing::error!(%error, "could not read the kept records"),
        }
        match storage.registrations() {
            Ok(registrations) => {
                let live = registrations
                    .into_iter()
                    .filter_map(SavedRegistration::into_record);
                for registration in live {
                    match store.insert_provider(registration) {
                        Ok(()) => loaded += 1,
                        Err(_) => dropped += 1,
                    }
                }
            }
            Err(error) => tracing::error!(%error, "could not read the kept registrations"),
        }
        tracing::info!(loaded, dropped, "store loaded from storage");
        store.storage = Some(storage);
        store
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Says who sends the writes that follow; `None` for this node's own.
    pub fn set_source(&mut self, source: Option<Source>) {
        self.source = source;
    }

    /// Why the last write Kademlia made here was refused, if it was.
    pub(crate) fn take_refusal(&mut self) -> Option<StoreError> {
        self.refusal.take()
    }

    /// The oldest report of what became of an inbound write.
    pub(crate) fn take_outcome(&mut self) -> Option<Event> {
        self.outcomes.pop_front()
    }

    fn report(&mut self, event: Event) {
        if self.outcomes.len() < MAX_OUTCOMES {
            self.outcomes.push_back(event);
        }
    }

    /// Drops every record and provider record that has expired at `now`.
    pub fn prune_expired(&mut self, now: Instant) {
        self.prune_records(now);
        let quotas = &mut self.quotas;
        let mut expired = Vec::new();
        self.providers.retain(|key, list| {
            list.retain(|p| {
                let live = !p.record.is_expired(now);
                if !live {
                    if let Some(source) = &p.source {
                        quotas.refund(source, Charge::Registration);
                    }
                    expired.push((key.clone(), p.record.provider));
                }
                live
            });
            !list.is_empty()
        });
        for (key, provider) in expired {
            self.forget_registration(&key, &provider);
        }
    }

    /// Removes `provider`'s registration under `key` from the storage.
    fn forget_registration(&self, key: &RecordKey, provider: &PeerId) {
        if let Some(storage) = &self.storage
            && *provider != self.local
            && let Err(error) = storage.remove_registration(key.as_ref(), provider)
        {
            tracing::warn!(%error, %provider, "could not forget a kept registration");
        }
    }

    /// Keys that hold provider records, with their providers that are still
    /// live at `now`.
    pub fn provider_keys(&self, now: Instant) -> impl Iterator<Item = (&RecordKey, usize)> {
        self.providers
            .iter()
            .map(move |(key, list)| {
                let live = list.iter().filter(|p| !p.record.is_expired(now)).count();
                (key, live)
            })
            .filter(|(_, live)| *live > 0)
    }

    /// The sequence number of the live record held under `key`, if any (0
    /// for an immutable record).
    pub fn sequence_held(&self, key: &[u8]) -> Option<u64> {
        let held = self.records.get(&RecordKey::new(&key))?;
        (!held.record.is_expired(Instant::now()))
            .then(|| sequence_of(held.record.key.as_ref(), &held.record.value))
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

    /// Stores `record` (a newer version of the one under its key, or a
    /// first copy), within the limits and the sender's share.
    pub fn insert(&mut self, record: Record) -> Result<(), StoreError> {
        match self.admit(&record)? {
            Admission::Copy => {
                if let Some(held) = self.records.get_mut(&record.key) {
                    // A copy of what is held may only make it live longer:
                    // whoever replays it cannot shorten its life.
                    let expires = later(held.record.expires, record.expires);
                    if extends_by(held.record.expires, expires) >= KEPT_EXTENSION
                        && let Some(storage) = &self.storage
                    {
                        let longer = Record {
                            expires,
                            ..held.record.clone()
                        };
                        storage.save_record(&SavedRecord::of(&longer))?;
                    }
                    held.record.expires = expires;
                }
            }
            Admission::New => {
                if let Some(storage) = &self.storage {
                    storage.save_record(&SavedRecord::of(&record))?;
                }
                self.remove_record(&record.key);
                let held = Held {
                    record,
                    source: self.source,
                };
                if let Some(source) = &held.source {
                    self.quotas.charge(source, held.charge());
                }
                self.record_bytes += weight(&held.record);
                self.records.insert(held.record.key.clone(), held);
            }
        }
        Ok(())
    }

    /// Whether [`insert`](Self::insert) would take `record`, and why not;
    /// stores nothing (but drops expired records to make room).
    pub fn check(&mut self, record: &Record) -> Result<(), StoreError> {
        self.admit(record).map(|_| ())
    }

    fn admit(&mut self, record: &Record) -> Result<Admission, StoreError> {
        check_key(record.key.as_ref())?;
        check_value(&record.value, self.limits.max_value_size)?;
        signed::verify(record.key.as_ref(), &record.value)?;
        let now = Instant::now();
        if let Some(held) = self.records.get(&record.key)
            && !held.record.is_expired(now)
        {
            let stored = sequence_of(held.record.key.as_ref(), &held.record.value);
            let offered = sequence_of(record.key.as_ref(), &record.value);
            match offered.cmp(&stored) {
                Ordering::Less => return Err(StoreError::StaleSequence { stored, offered }),
                Ordering::Equal if held.record.value != record.value => {
                    return Err(StoreError::SequenceTaken { seq: offered });
                }
                Ordering::Equal => return Ok(Admission::Copy),
                Ordering::Greater => {}
            }
        }
        let replaced_weight = self
            .records
            .get(&record.key)
            .map_or(0, |held| weight(&held.record));
        let fits = |store: &Self| {
            let count_ok = replaced_weight > 0 || store.records.len() < store.limits.max_records;
            let bytes = store.record_bytes - replaced_weight + weight(record);
            count_ok && bytes <= store.limits.max_record_bytes
        };
        if !fits(self) {
            self.prune_records(now);
            if !fits(self) {
                return Err(StoreError::Full {
                    max_records: self.limits.max_records,
                    max_bytes: self.limits.max_record_bytes,
                });
            }
        }
        if let Some(source) = self.source {
            let charge = Charge::Record {
                bytes: weight(record),
            };
            let within_share = |store: &Self| {
                let released = store
                    .records
                    .get(&record.key)
                    .filter(|held| held.source == Some(source))
                    .map(Held::charge);
                store.quotas.check(&source, charge, released)
            };
            if within_share(self).is_err() {
                // Records that expired still count until pruned.
                self.prune_records(now);
                within_share(self)?;
            }
        }
        Ok(Admission::New)
    }

    fn remove_record(&mut self, key: &RecordKey) {
        if let Some(held) = self.records.remove(key) {
            self.record_bytes -= weight(&held.record);
            if let Some(source) = &held.source {
                self.quotas.refund(source, held.charge());
            }
        }
    }

    fn prune_records(&mut self, now: Instant) {
        let expired: Vec<RecordKey> = self
            .records
            .iter()
            .filter(|(_, held)| held.record.is_expired(now))
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.forget_record(&key);
        }
    }

    /// Removes the record under `key` here and from the storage.
    fn forget_record(&mut self, key: &RecordKey) {
        self.remove_record(key);
        if let Some(storage) = &self.storage
            && let Err(error) = storage.remove_record(key.as_ref())
        {
            tracing::warn!(%error, key = %display_key(key.as_ref()), "could not forget a kept record");
        }
    }

    /// Stores a registration (a provider record), within the limits and
    /// the sender's share; extra addresses are dropped.
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
            .is_some_and(|list| list.iter().any(|p| p.record.provider == record.provider));
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
            self.prune_expired(now);
            if self.providers.len() >= self.limits.max_provider_keys {
                return Err(StoreError::ProviderKeysFull {
                    max: self.limits.max_provider_keys,
                });
            }
        }
        let key = record.key.clone();
        let is_full = |list: &Vec<HeldProvider>, provider: &PeerId, max: usize| {
            list.len() >= max && !list.iter().any(|p| &p.record.provider == provider)
        };
        let max_per_key = self.limits.max_providers_per_key;
        if self
            .providers
            .get(&key)
            .is_some_and(|list| is_full(list, &record.provider, max_per_key))
        {
            self.prune_expired(now);
        }
        if self
            .providers
            .get(&key)
            .is_some_and(|list| is_full(list, &record.provider, max_per_key))
        {
            return Err(StoreError::ProvidersFull { max: max_per_key });
        }
        let source = self.source;
        if !known && let Some(source) = &source {
            if self
                .quotas
                .check(source, Charge::Registration, None)
                .is_err()
            {
                // Registrations that expired still count until pruned.
                self.prune_expired(now);
            }
            self.quotas.check(source, Charge::Registration, None)?;
        }
        if record.provider == self.local {
            // Not kept: the role registers again at start, and a kept one
            // would be republished after a restart that dropped it.
            self.provided.insert(key.clone(), record.clone());
        } else if let Some(storage) = &self.storage {
            storage.save_registration(&SavedRegistration::of(&record))?;
        }
        let list = self.providers.entry(key).or_default();
        match list
            .iter_mut()
            .find(|p| p.record.provider == record.provider)
        {
            Some(existing) => existing.record = record,
            None => {
                if let Some(source) = &source {
                    self.quotas.charge(source, Charge::Registration);
                }
                list.push(HeldProvider { record, source });
            }
        }
        Ok(())
    }
}

#[path = "store_kad.rs"]
mod kademlia;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
