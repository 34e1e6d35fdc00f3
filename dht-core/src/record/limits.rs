//! The bounds of the record store, and why it refuses what it refuses.

use libp2p::kad::store;

use super::{Quota, storage::StorageError};
use crate::error::{ErrorCode, RecordError};

/// Why the store refused a record or a registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The key or value is out of bounds.
    #[error(transparent)]
    Invalid(#[from] RecordError),
    /// The live records fill every slot or every byte the store has.
    #[error("the store is full: it holds at most {max_records} records and {max_bytes} bytes")]
    Full {
        /// [`StoreLimits::max_records`].
        max_records: usize,
        /// [`StoreLimits::max_record_bytes`].
        max_bytes: usize,
    },
    /// Every namespace slot holds live registrations.
    #[error("the store holds registrations under {max} keys, its limit")]
    ProviderKeysFull {
        /// The limit, [`StoreLimits::max_provider_keys`].
        max: usize,
    },
    /// The key has as many live registrations as it may.
    #[error("the key has {max} registered peers, its limit")]
    ProvidersFull {
        /// The limit, [`StoreLimits::max_providers_per_key`].
        max: usize,
    },
    /// The store holds as many registrations as it may, over all keys.
    #[error("the store holds {max} registrations, its limit")]
    RegistrationsFull {
        /// The limit, [`StoreLimits::max_provider_records`].
        max: usize,
    },
    /// The sender (a peer, or its subnet) holds its whole share of the store
    /// ([`StoreLimits::per_peer`], [`StoreLimits::per_subnet`]).
    #[error("{sender} holds its whole share of this node's store")]
    SourceQuota {
        /// The peer or subnet, for people.
        sender: String,
    },
    /// The store holds a newer version of this mutable record.
    #[error("the store holds version {stored} of this record, newer than {offered}")]
    StaleSequence {
        /// The version held.
        stored: u64,
        /// The version offered.
        offered: u64,
    },
    /// The store holds another value signed with the same sequence number:
    /// the owner must raise the sequence to change a value.
    #[error("version {seq} of this record already holds another value")]
    SequenceTaken {
        /// The sequence number.
        seq: u64,
    },
    /// The node's storage could not keep it, so it was not taken.
    #[error("could not keep it: {0}")]
    Storage(#[from] StorageError),
}

impl ErrorCode for StoreError {
    fn code(&self) -> &'static str {
        match self {
            StoreError::Invalid(error) => error.code(),
            StoreError::Full { .. } => "store-full",
            StoreError::ProviderKeysFull { .. } => "provider-keys-full",
            StoreError::ProvidersFull { .. } => "providers-full",
            StoreError::RegistrationsFull { .. } => "registrations-full",
            StoreError::SourceQuota { .. } => "source-quota",
            StoreError::StaleSequence { .. } | StoreError::SequenceTaken { .. } => "stale-sequence",
            StoreError::Storage(error) => error.code(),
        }
    }
}

impl From<StoreError> for store::Error {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Invalid(_) => store::Error::ValueTooLarge,
            StoreError::Full { .. }
            | StoreError::SourceQuota { .. }
            | StoreError::StaleSequence { .. }
            | StoreError::SequenceTaken { .. }
            | StoreError::Storage(_) => store::Error::MaxRecords,
            StoreError::ProviderKeysFull { .. }
            | StoreError::ProvidersFull { .. }
            | StoreError::RegistrationsFull { .. } => store::Error::MaxProvidedKeys,
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
    /// Bytes of keys and values held at most, over all value records.
    /// Default 32 MiB.
    pub max_record_bytes: usize,
    /// Keys with provider records (namespaces) held at most. Default 1024.
    pub max_provider_keys: usize,
    /// Providers (namespace members) held per key. Default 256.
    pub max_providers_per_key: usize,
    /// Provider records held at most, over all keys. Default 16 384.
    pub max_provider_records: usize,
    /// Addresses kept per provider, each at most
    /// [`MAX_ADDRESS_LEN`](crate::namespace::MAX_ADDRESS_LEN) bytes; extra
    /// and longer ones are dropped. Default 8.
    pub max_addresses_per_provider: usize,
    /// What one peer may hold of what others made this node store. Default
    /// 512 records, 4 MiB, 64 registrations: an eighth of the records and
    /// bytes, so that even many full shares leave room. Records a peer
    /// replicates count against it too, which the default leaves room for
    /// (a node holds about `k / n` of all records).
    pub per_peer: Quota,
    /// What one IPv4 /24 or IPv6 /48 may hold, however many peer ids it
    /// uses. Default 1024 records, 8 MiB, 2048 registrations.
    pub per_subnet: Quota,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_records: 4096,
            max_value_size: 64 * 1024,
            max_record_bytes: 32 * 1024 * 1024,
            max_provider_keys: 1024,
            max_providers_per_key: 256,
            max_provider_records: 16 * 1024,
            max_addresses_per_provider: 8,
            per_peer: Quota {
                records: 512,
                bytes: 4 * 1024 * 1024,
                registrations: 64,
            },
            per_subnet: Quota {
                records: 1024,
                bytes: 8 * 1024 * 1024,
                registrations: 2048,
            },
        }
    }
}
