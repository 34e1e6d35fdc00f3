//! A node's state on disk ([`DiskStorage`]): the records and registrations
//! it holds and its routing table, in one [redb](https://docs.rs/redb) file.
//!
//! Records and registrations are committed durably (fsync) before the node
//! acknowledges them, so a node killed at any moment, even in the middle of
//! a write, loses nothing it acknowledged: redb's commits are atomic, and an
//! interrupted one is rolled back when the file is opened again. Routing-table
//! peers are committed without fsync; they become durable with the next
//! record, and a crash loses at most the peers learned since.
//!
//! What the file holds is bounded by the store's limits (records and
//! registrations) and the routing table's size (peers).

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dht_core::{
    ErrorCode,
    libp2p::{Multiaddr, PeerId},
    record::{
        Storage, StorageError,
        storage::{SavedPeer, SavedRecord, SavedRegistration},
    },
};
use redb::{Database, DatabaseError, Durability, ReadableDatabase, ReadableTable, TableDefinition};

/// The file a data directory keeps the store in.
pub const STORE_FILE: &str = "store.redb";

/// The version of the layout below; a file of another version is refused.
const FORMAT_VERSION: u32 = 1;

/// `"format"` → [`FORMAT_VERSION`].
const META: TableDefinition<'_, &str, u32> = TableDefinition::new("meta");
/// A record: (value, publisher's peer id bytes, expiry in ms since the
/// epoch).
type RecordRow = (&'static [u8], Option<&'static [u8]>, Option<u64>);
/// Key → [`RecordRow`].
const RECORDS: TableDefinition<'_, &[u8], RecordRow> = TableDefinition::new("records");
/// A registration's key: (namespace key, provider's peer id bytes).
type RegistrationKey = (&'static [u8], &'static [u8]);
/// [`RegistrationKey`] → (addresses, expiry).
const REGISTRATIONS: TableDefinition<'_, RegistrationKey, (Vec<&[u8]>, Option<u64>)> =
    TableDefinition::new("registrations");
/// Peer id bytes → addresses.
const PEERS: TableDefinition<'_, &[u8], Vec<&[u8]>> = TableDefinition::new("peers");

/// Why a data directory's store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory could not be created.
    #[error("cannot create the data directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another process has the file open.
    #[error("{path} is in use by another node; give each node a data directory of its own")]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a store this version can read (damaged, truncated,
    /// or not a store at all).
    #[error("{path} cannot be read as a node's store: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What redb or the format check said.
        reason: String,
    },
}

impl ErrorCode for OpenError {
    fn code(&self) -> &'static str {
        match self {
            OpenError::Directory { .. } => "data-dir-unusable",
            OpenError::InUse { .. } => "data-dir-in-use",
            OpenError::Unreadable { .. } => "store-unreadable",
        }
    }
}

/// A node's [`Storage`] in a redb file. See the [module docs](self).
#[derive(Debug)]
pub struct DiskStorage {
    db: Database,
}

impl DiskStorage {
    /// Opens (creating it if needed) the store in the data directory `dir`.
    pub fn open_dir(dir: &Path) -> Result<Self, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Directory {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::open(&dir.join(STORE_FILE))
    }

    /// Opens (creating it if needed) the store file at `path`, and checks
    /// that it is one.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let unreadable = |reason: String| OpenError::Unreadable {
            path: path.to_path_buf(),
            reason,
        };
        let db = Database::create(path).map_err(|error| match error {
            DatabaseError::DatabaseAlreadyOpen => OpenError::InUse {
                path: path.to_path_buf(),
            },
            other => unreadable(other.to_string()),
        })?;
        let storage = Self { db };
        match storage.format().map_err(|e| unreadable(e.0))? {
            Some(FORMAT_VERSION) => {}
            Some(other) => {
                return Err(unreadable(format!(
                    "it has layout version {other}, this node reads {FORMAT_VERSION}"
                )));
            }
            None => storage
                .write(Durability::Immediate, |tx| {
                    tx.open_table(META)?.insert("format", FORMAT_VERSION)?;
                    tx.open_table(RECORDS)?;
                    tx.open_table(REGISTRATIONS)?;
                    tx.open_table(PEERS)?;
                    Ok(())
                })
                .map_err(|e| unreadable(e.0))?,
        }
        Ok(storage)
    }

    fn format(&self) -> Result<Option<u32>, StorageError> {
        let tx = self.db.begin_read().map_err(failed)?;
        let meta = match tx.open_table(META) {
            Ok(meta) => meta,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(failed(error)),
        };
        Ok(meta.get("format").map_err(failed)?.map(|v| v.value()))
    }

    /// Runs `change` in one write transaction committed with `durability`.
    fn write(
        &self,
        durability: Durability,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write().map_err(failed)?;
        tx.set_durability(durability).map_err(failed)?;
        change(&tx).map_err(failed)?;
        tx.commit().map_err(failed)
    }
}

fn failed(error: impl Into<redb::Error>) -> StorageError {
    StorageError(error.into().to_string())
}

fn millis(time: Option<SystemTime>) -> Option<u64> {
    time.map(|t| {
        let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

fn time(millis: Option<u64>) -> Option<SystemTime> {
    millis.map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
}

fn addresses(bytes: Vec<&[u8]>) -> Option<Vec<Multiaddr>> {
    bytes
        .into_iter()
        .map(|b| Multiaddr::try_from(b.to_vec()).ok())
        .collect()
}

/// Decodes every entry of `table`, skipping (and counting in a warning)
/// those that do not decode.
fn read_all<K, V, T>(
    db: &Database,
    table: TableDefinition<'_, K, V>,
    decode: impl Fn(K::SelfType<'_>, V::SelfType<'_>) -> Option<T>,
) -> Result<Vec<T>, StorageError>
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let tx = db.begin_read().map_err(failed)?;
    let table = tx.open_table(table).map_err(failed)?;
    let (mut entries, mut skipped) = (Vec::new(), 0);
    for entry in table.iter().map_err(failed)? {
        let (key, value) = entry.map_err(failed)?;
        match decode(key.value(), value.value()) {
            Some(entry) => entries.push(entry),
            None => skipped += 1,
        }
    }
    if skipped > 0 {
        tracing::warn!(
            skipped,
            "entries of the store that do not decode were skipped"
        );
    }
    Ok(entries)
}

impl Storage for DiskStorage {
    fn records(&self) -> Result<Vec<SavedRecord>, StorageError> {
        read_all(&self.db, RECORDS, |key, (value, publisher, expires)| {
            let publisher = match publisher {
                Some(bytes) => Some(PeerId::from_bytes(bytes).ok()?),
                None => None,
            };
            Some(SavedRecord {
                key: key.to_vec(),
                value: value.to_vec(),
                publisher,
                expires: time(expires),
            })
        })
    }

    fn registrations(&self) -> Result<Vec<SavedRegistration>, StorageError> {
        read_all(
            &self.db,
            REGISTRATIONS,
            |(key, provider), (addrs, expires)| {
                Some(SavedRegistration {
                    key: key.to_vec(),
                    provider: PeerId::from_bytes(provider).ok()?,
                    addresses: addresses(addrs)?,
                    expires: time(expires),
                })
            },
        )
    }

    fn peers(&self) -> Result<Vec<SavedPeer>, StorageError> {
        read_all(&self.db, PEERS, |peer, addrs| {
            Some(SavedPeer {
                peer: PeerId::from_bytes(peer).ok()?,
                addresses: addresses(addrs)?,
            })
        })
    }

    fn save_record(&self, record: &SavedRecord) -> Result<(), StorageError> {
        let publisher = record.publisher.map(|p| p.to_bytes());
        let value = (
            record.value.as_slice(),
            publisher.as_deref(),
            millis(record.expires),
        );
        self.write(Durability::Immediate, |tx| {
            tx.open_table(RECORDS)?
                .insert(record.key.as_slice(), value)?;
            Ok(())
        })
    }

    fn remove_record(&self, key: &[u8]) -> Result<(), StorageError> {
        self.write(Durability::Immediate, |tx| {
            tx.open_table(RECORDS)?.remove(key)?;
            Ok(())
        })
    }

    fn save_registration(&self, registration: &SavedRegistration) -> Result<(), StorageError> {
        let provider = registration.provider.to_bytes();
        let addrs: Vec<&[u8]> = registration.addresses.iter().map(|a| a.as_ref()).collect();
        let value = (addrs, millis(registration.expires));
        self.write(Durability::Immediate, |tx| {
            tx.open_table(REGISTRATIONS)?
                .insert((registration.key.as_slice(), provider.as_slice()), value)?;
            Ok(())
        })
    }

    fn remove_registration(&self, key: &[u8], provider: &PeerId) -> Result<(), StorageError> {
        let provider = provider.to_bytes();
        self.write(Durability::Immediate, |tx| {
            tx.open_table(REGISTRATIONS)?
                .remove((key, provider.as_slice()))?;
            Ok(())
        })
    }

    fn save_peer(&self, peer: &SavedPeer) -> Result<(), StorageError> {
        let id = peer.peer.to_bytes();
        let addrs: Vec<&[u8]> = peer.addresses.iter().map(|a| a.as_ref()).collect();
        self.write(Durability::None, |tx| {
            tx.open_table(PEERS)?.insert(id.as_slice(), addrs)?;
            Ok(())
        })
    }

    fn remove_peer(&self, peer: &PeerId) -> Result<(), StorageError> {
        let id = peer.to_bytes();
        self.write(Durability::None, |tx| {
            tx.open_table(PEERS)?.remove(id.as_slice())?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ns-dht-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn record(key: &str) -> SavedRecord {
        SavedRecord {
            key: key.as_bytes().to_vec(),
            value: b"value".to_vec(),
            publisher: Some(PeerId::random()),
            expires: Some(UNIX_EPOCH + Duration::from_millis(4_000_000_000_000)),
        }
    }

    #[test]
    fn everything_kept_is_read_back_after_reopening() {
        let dir = temp_dir("roundtrip");
        let registration = SavedRegistration {
            key: b"/ns-dht/ns/chat".to_vec(),
            provider: PeerId::random(),
            addresses: vec!["/ip4/10.0.0.1/tcp/4001".parse().unwrap()],
            expires: None,
        };
        let peer = SavedPeer {
            peer: PeerId::random(),
            addresses: vec!["/ip6/::1/udp/4001/quic-v1".parse().unwrap()],
        };
        {
            let storage = DiskStorage::open_dir(&dir).unwrap();
            storage.save_record(&record("a")).unwrap();
            storage.save_record(&record("b")).unwrap();
            storage.remove_record(b"b").unwrap();
            storage.save_registration(&registration).unwrap();
            storage.save_peer(&peer).unwrap();
            let gone = SavedPeer {
                peer: PeerId::random(),
                addresses: Vec::new(),
            };
            storage.save_peer(&gone).unwrap();
            storage.remove_peer(&gone.peer).unwrap();
        }
        let storage = DiskStorage::open_dir(&dir).unwrap();
        let records = storage.records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key, b"a");
        assert_eq!(records[0].expires, record("a").expires);
        assert_eq!(storage.registrations().unwrap(), vec![registration.clone()]);
        assert_eq!(storage.peers().unwrap(), vec![peer]);
        storage
            .remove_registration(&registration.key, &registration.provider)
            .unwrap();
        assert!(storage.registrations().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_second_node_on_the_same_directory_is_refused() {
        let dir = temp_dir("in-use");
        let _first = DiskStorage::open_dir(&dir).unwrap();
        let error = DiskStorage::open_dir(&dir).unwrap_err();
        assert_eq!(error.code(), "data-dir-in-use");
        assert!(error.to_string().contains("in use by another node"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_or_foreign_file_is_a_clear_error() {
        let dir = temp_dir("damaged");
        {
            let storage = DiskStorage::open_dir(&dir).unwrap();
            storage.save_record(&record("a")).unwrap();
        }
        let path = dir.join(STORE_FILE);
        let bytes = std::fs::read(&path).unwrap();
        for damaged in [
            bytes[..bytes.len() / 3].to_vec(),
            b"not a database".to_vec(),
            Vec::new(),
        ] {
            std::fs::write(&path, &damaged).unwrap();
            match DiskStorage::open(&path) {
                Err(error) => assert_eq!(error.code(), "store-unreadable", "{error}"),
                // An empty file is a new store.
                Ok(storage) => assert!(damaged.is_empty() && storage.records().unwrap().is_empty()),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
