//! Keeping a node's state across restarts: what the host's [`Storage`]
//! holds, and [`MemoryStorage`], one that lives as long as the process (for
//! tests, and for restarting a node inside one process).
//!
//! The node writes through its storage as it goes: a record or a
//! registration from a peer is acknowledged only once the storage took it,
//! so a node killed at any moment loses nothing it acknowledged. Routing-table
//! peers are written too, so that a node whose bootstrap peers are gone
//! rejoins through the peers it knew. Times are kept as wall-clock times, the
//! only ones that mean something after a restart.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use libp2p::{
    Multiaddr, PeerId,
    kad::{ProviderRecord, Record, RecordKey},
};
use web_time::{Instant, SystemTime};

use crate::error::ErrorCode;

/// A value record as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedRecord {
    /// The record's key.
    pub key: Vec<u8>,
    /// The record's value, as stored (for a mutable record, with its
    /// signature).
    pub value: Vec<u8>,
    /// Who published it: this node republishes the records it published.
    pub publisher: Option<PeerId>,
    /// When it expires; `None`: never.
    pub expires: Option<SystemTime>,
}

/// A peer's registration in a namespace (a provider record) as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedRegistration {
    /// The namespace's key.
    pub key: Vec<u8>,
    /// The registered peer.
    pub provider: PeerId,
    /// Its addresses.
    pub addresses: Vec<Multiaddr>,
    /// When it expires; `None`: never.
    pub expires: Option<SystemTime>,
}

/// A routing-table peer as kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedPeer {
    /// The peer.
    pub peer: PeerId,
    /// Its addresses in the routing table.
    pub addresses: Vec<Multiaddr>,
}

/// Why the storage could not read or write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

impl ErrorCode for StorageError {
    fn code(&self) -> &'static str {
        "storage-failed"
    }
}

/// Where a node keeps its records, the registrations it holds for others and
/// its routing table across restarts (set with
/// [`crate::ConfigBuilder::storage`]). Every method is called from the node's
/// loop and should return within milliseconds.
pub trait Storage: fmt::Debug + Send + Sync {
    /// Every record kept (expired ones are dropped as they are read).
    fn records(&self) -> Result<Vec<SavedRecord>, StorageError>;
    /// Every registration kept.
    fn registrations(&self) -> Result<Vec<SavedRegistration>, StorageError>;
    /// Every routing-table peer kept.
    fn peers(&self) -> Result<Vec<SavedPeer>, StorageError>;
    /// Keeps `record`, replacing the one under its key. It must survive the
    /// process being killed once this returns `Ok`: the node acknowledges
    /// the write then.
    fn save_record(&self, record: &SavedRecord) -> Result<(), StorageError>;
    /// Forgets the record under `key`.
    fn remove_record(&self, key: &[u8]) -> Result<(), StorageError>;
    /// Keeps `registration`, replacing the one of its provider under its
    /// key; durable when this returns `Ok`, like
    /// [`save_record`](Self::save_record).
    fn save_registration(&self, registration: &SavedRegistration) -> Result<(), StorageError>;
    /// Forgets `provider`'s registration under `key`.
    fn remove_registration(&self, key: &[u8], provider: &PeerId) -> Result<(), StorageError>;
    /// Keeps a routing-table peer with its addresses. Need not be durable
    /// at once: a peer lost in a crash costs little.
    fn save_peer(&self, peer: &SavedPeer) -> Result<(), StorageError>;
    /// Forgets a routing-table peer.
    fn remove_peer(&self, peer: &PeerId) -> Result<(), StorageError>;
}

/// What a node holds its storage by. In the browser, where tabs keep
/// nothing, a type without values, so that the module carries no storage
/// code.
#[cfg(not(target_arch = "wasm32"))]
pub type StorageHandle = Arc<dyn Storage>;
/// What a node holds its storage by. In the browser, where tabs keep
/// nothing, a type without values, so that the module carries no storage
/// code.
#[cfg(target_arch = "wasm32")]
pub type StorageHandle = NoStorage;

/// No storage: the browser's [`StorageHandle`], of which there is no value.
#[cfg(target_arch = "wasm32")]
#[derive(Clone, Debug)]
pub enum NoStorage {}

#[cfg(target_arch = "wasm32")]
impl Storage for NoStorage {
    fn records(&self) -> Result<Vec<SavedRecord>, StorageError> {
        match *self {}
    }
    fn registrations(&self) -> Result<Vec<SavedRegistration>, StorageError> {
        match *self {}
    }
    fn peers(&self) -> Result<Vec<SavedPeer>, StorageError> {
        match *self {}
    }
    fn save_record(&self, _: &SavedRecord) -> Result<(), StorageError> {
        match *self {}
    }
    fn remove_record(&self, _: &[u8]) -> Result<(), StorageError> {
        match *self {}
    }
    fn save_registration(&self, _: &SavedRegistration) -> Result<(), StorageError> {
        match *self {}
    }
    fn remove_registration(&self, _: &[u8], _: &PeerId) -> Result<(), StorageError> {
        match *self {}
    }
    fn save_peer(&self, _: &SavedPeer) -> Result<(), StorageError> {
        match *self {}
    }
    fn remove_peer(&self, _: &PeerId) -> Result<(), StorageError> {
        match *self {}
    }
}

/// A record's expiry as a wall-clock time.
pub(crate) fn wall_clock(expires: Option<Instant>) -> Option<SystemTime> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    expires.map(|at| wall + at.saturating_duration_since(now))
}

/// A wall-clock expiry as an [`Instant`]; `Err` if it has passed.
pub(crate) fn instant(expires: Option<SystemTime>) -> Result<Option<Instant>, ()> {
    let Some(at) = expires else {
        return Ok(None);
    };
    match at.duration_since(SystemTime::now()) {
        Ok(left) if left > Duration::ZERO => Ok(Some(Instant::now() + left)),
        _ => Err(()),
    }
}

impl SavedRecord {
    /// `record` as kept.
    pub(crate) fn of(record: &Record) -> Self {
        Self {
            key: record.key.to_vec(),
            value: record.value.clone(),
            publisher: record.publisher,
            expires: wall_clock(record.expires),
        }
    }

    /// The record to hold again; `None` if it has expired.
    pub(crate) fn into_record(self) -> Option<Record> {
        let expires = instant(self.expires).ok()?;
        Some(Record {
            key: RecordKey::new(&self.key),
            value: self.value,
            publisher: self.publisher,
            expires,
        })
    }
}

impl SavedRegistration {
    /// `record` as kept.
    pub(crate) fn of(record: &ProviderRecord) -> Self {
        Self {
            key: record.key.to_vec(),
            provider: record.provider,
            addresses: record.addresses.clone(),
            expires: wall_clock(record.expires),
        }
    }

    /// The registration to hold again; `None` if it has expired.
    pub(crate) fn into_record(self) -> Option<ProviderRecord> {
        let expires = instant(self.expires).ok()?;
        Some(ProviderRecord {
            key: RecordKey::new(&self.key),
            provider: self.provider,
            expires,
            addresses: self.addresses,
        })
    }
}

/// What a [`MemoryStorage`] holds.
#[derive(Debug, Default)]
struct Kept {
    records: BTreeMap<Vec<u8>, SavedRecord>,
    registrations: BTreeMap<(Vec<u8>, PeerId), SavedRegistration>,
    peers: HashMap<PeerId, Vec<Multiaddr>>,
    failing: bool,
}

/// A [`Storage`] in memory: it outlives a node (clone it into the next
/// one's configuration) but not the process. For tests and for restarting a
/// node inside one process; hosts that restart processes keep theirs on disk.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage(Arc<Mutex<Kept>>);

impl MemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every write fail (`true`) or work again (`false`), as a full
    /// disk would.
    pub fn fail_writes(&self, failing: bool) {
        self.kept().failing = failing;
    }

    fn kept(&self) -> MutexGuard<'_, Kept> {
        // A panic elsewhere while holding the lock leaves consistent maps.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, change: impl FnOnce(&mut Kept)) -> Result<(), StorageError> {
        let mut kept = self.kept();
        if kept.failing {
            return Err(StorageError(
                "writes fail (MemoryStorage::fail_writes)".into(),
            ));
        }
        change(&mut kept);
        Ok(())
    }
}

impl Storage for MemoryStorage {
    fn records(&self) -> Result<Vec<SavedRecord>, StorageError> {
        Ok(self.kept().records.values().cloned().collect())
    }

    fn registrations(&self) -> Result<Vec<SavedRegistration>, StorageError> {
        Ok(self.kept().registrations.values().cloned().collect())
    }

    fn peers(&self) -> Result<Vec<SavedPeer>, StorageError> {
        let kept = self.kept();
        let peers = kept.peers.iter().map(|(peer, addresses)| SavedPeer {
            peer: *peer,
            addresses: addresses.clone(),
        });
        Ok(peers.collect())
    }

    fn save_record(&self, record: &SavedRecord) -> Result<(), StorageError> {
        self.write(|kept| {
            kept.records.insert(record.key.clone(), record.clone());
        })
    }

    fn remove_record(&self, key: &[u8]) -> Result<(), StorageError> {
        self.write(|kept| {
            kept.records.remove(key);
        })
    }

    fn save_registration(&self, registration: &SavedRegistration) -> Result<(), StorageError> {
        let id = (registration.key.clone(), registration.provider);
        self.write(|kept| {
            kept.registrations.insert(id, registration.clone());
        })
    }

    fn remove_registration(&self, key: &[u8], provider: &PeerId) -> Result<(), StorageError> {
        self.write(|kept| {
            kept.registrations.remove(&(key.to_vec(), *provider));
        })
    }

    fn save_peer(&self, peer: &SavedPeer) -> Result<(), StorageError> {
        self.write(|kept| {
            kept.peers.insert(peer.peer, peer.addresses.clone());
        })
    }

    fn remove_peer(&self, peer: &PeerId) -> Result<(), StorageError> {
        self.write(|kept| {
            kept.peers.remove(peer);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_survives_the_trip_through_wall_clock_time() {
        let in_an_hour = Instant::now() + Duration::from_secs(3600);
        let record = Record {
            key: RecordKey::new(&b"key".to_vec()),
            value: b"value".to_vec(),
            publisher: Some(PeerId::random()),
            expires: Some(in_an_hour),
        };
        let back = SavedRecord::of(&record).into_record().expect("not expired");
        let drift = back
            .expires
            .expect("expires")
            .saturating_duration_since(in_an_hour)
            .max(in_an_hour.saturating_duration_since(back.expires.expect("expires")));
        assert!(drift < Duration::from_secs(1), "drifted by {drift:?}");
        assert_eq!(
            (back.key, back.value, back.publisher),
            (record.key, record.value, record.publisher)
        );
    }

    #[test]
    fn an_expired_entry_is_not_held_again() {
        let saved = SavedRecord {
            key: b"key".to_vec(),
            value: Vec::new(),
            publisher: None,
            expires: Some(SystemTime::now() - Duration::from_secs(1)),
        };
        assert!(saved.into_record().is_none());
        let forever = SavedRecord {
            key: b"key".to_vec(),
            value: Vec::new(),
            publisher: None,
            expires: None,
        };
        assert_eq!(forever.into_record().map(|r| r.expires), Some(None));
    }
}
