//! Records: the two kinds the DHT stores and how they are checked
//! ([`signed`]), the checks every key and value passes, quorums, and the
//! bounded store ([`Store`]) every node keeps for the DHT, with per-source
//! shares ([`Quota`]).

mod limits;
mod quota;
pub mod signed;
pub mod storage;
mod store;
mod write;

use std::num::NonZeroUsize;

pub use limits::{StoreError, StoreLimits};
pub(crate) use quota::{Charge, Quotas};
pub use quota::{Quota, Source, Subnet};
pub use signed::{RecordKind, Verified, immutable_key, sign_mutable, verify};
pub use storage::{MemoryStorage, Storage, StorageError};
pub use store::Store;
pub(crate) use write::Sealed;
pub use write::Write;

use crate::error::RecordError;

/// The longest record key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks a record key: 1 to [`MAX_KEY_LEN`] bytes. Every layer that takes
/// a key (the handle, the store, the command line) asks this one function.
pub fn check_key(key: &[u8]) -> Result<(), RecordError> {
    if key.is_empty() {
        return Err(RecordError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(RecordError::KeyTooLarge {
            size: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// Checks a key to read: within [`check_key`]'s bounds and of one of the
/// two kinds of record ([`RecordKind`]).
pub fn check_record_key(key: &[u8]) -> Result<RecordKind, RecordError> {
    check_key(key)?;
    RecordKind::parse(key)
}

/// Checks a record value against the largest size accepted, `max`
/// ([`StoreLimits::max_value_size`]).
pub fn check_value(value: &[u8], max: usize) -> Result<(), RecordError> {
    if value.len() > max {
        return Err(RecordError::ValueTooLarge {
            size: value.len(),
            max,
        });
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn keys_and_values_are_checked_in_one_place() {
        assert_eq!(check_key(b""), Err(RecordError::EmptyKey));
        assert!(check_key(&[7; MAX_KEY_LEN]).is_ok());
        assert_eq!(
            check_key(&[7; MAX_KEY_LEN + 1]),
            Err(RecordError::KeyTooLarge {
                size: MAX_KEY_LEN + 1,
                max: MAX_KEY_LEN
            })
        );
        assert!(check_value(&[0; 8], 8).is_ok());
        assert_eq!(
            check_value(&[0; 9], 8),
            Err(RecordError::ValueTooLarge { size: 9, max: 8 })
        );
    }

    #[test]
    fn keys_display_as_text_or_hex() {
        assert_eq!(display_key(b"hello"), "hello");
        assert_eq!(display_key(&[0, 255]), "0x00ff");
        assert_eq!(display_key(b"a\nb"), "0x610a62");
    }
}
