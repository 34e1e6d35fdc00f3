//! A write as an application asks for it, and how it becomes the bytes the
//! DHT stores (see [`super::signed`] for the format).

use libp2p::identity::Keypair;

use super::{
    check_value,
    signed::{RecordKind, immutable_key, sign_mutable},
};
use crate::error::RecordError;

/// A record to write: a mutable one signed by its owner, or an immutable
/// one named by its content.
#[derive(Clone, Debug)]
pub enum Write {
    /// Version `seq` of the record `name` owned by `owner`.
    Mutable {
        /// The owner's identity; the key derives from its peer id.
        owner: Box<Keypair>,
        /// The name, 1 to [`MAX_NAME_LEN`](super::signed::MAX_NAME_LEN) bytes.
        name: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The sequence number; by default the writer's clock in
        /// milliseconds since the Unix epoch, or one more than the version
        /// this node holds if that is higher.
        seq: Option<u64>,
    },
    /// A record stored under the SHA-256 of `value`.
    Immutable {
        /// The value.
        value: Vec<u8>,
    },
}

impl Write {
    /// A new version of `owner`'s record `name`.
    pub fn mutable(owner: &Keypair, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Write::Mutable {
            owner: Box::new(owner.clone()),
            name: name.into(),
            value: value.into(),
            seq: None,
        }
    }

    /// A record named by the hash of `value`.
    pub fn immutable(value: impl Into<Vec<u8>>) -> Self {
        Write::Immutable {
            value: value.into(),
        }
    }

    /// Writes a mutable record as version `seq` rather than by the clock
    /// (no effect on an immutable record).
    pub fn with_sequence(mut self, sequence: u64) -> Self {
        if let Write::Mutable { seq, .. } = &mut self {
            *seq = Some(sequence);
        }
        self
    }

    /// The key this write stores under.
    pub fn key(&self) -> Result<Vec<u8>, RecordError> {
        let key = match self {
            Write::Mutable { owner, name, .. } => {
                let kind = RecordKind::Mutable {
                    owner: owner.public().to_peer_id(),
                    name: name.clone(),
                };
                RecordKind::parse(&kind.key())?;
                kind.key()
            }
            Write::Immutable { value } => immutable_key(value),
        };
        super::check_key(&key)?;
        Ok(key)
    }

    /// The value as the application gave it.
    pub fn value(&self) -> &[u8] {
        match self {
            Write::Mutable { value, .. } | Write::Immutable { value } => value,
        }
    }

    /// The record to store: signed as the version after `held` (the one
    /// this node holds) or at `clock_millis`, whichever is higher, unless
    /// the caller chose the sequence. Its stored form must fit `max_size`.
    pub(crate) fn seal(
        self,
        held: Option<u64>,
        clock_millis: u64,
        max_size: usize,
    ) -> Result<Sealed, RecordError> {
        let key = self.key()?;
        let (stored, seq) = match self {
            Write::Mutable {
                owner,
                name,
                value,
                seq,
            } => {
                let next = held.map_or(0, |held| held.saturating_add(1));
                let seq = seq.unwrap_or(clock_millis.max(next));
                let (_, stored) = sign_mutable(&owner, &name, seq, &value)?;
                let overhead = stored.len() - value.len();
                check_value(&stored, max_size).map_err(|_| RecordError::ValueTooLarge {
                    size: value.len(),
                    max: max_size.saturating_sub(overhead),
                })?;
                (stored, Some(seq))
            }
            Write::Immutable { value } => {
                check_value(&value, max_size)?;
                (value, None)
            }
        };
        Ok(Sealed { key, stored, seq })
    }
}

/// A write ready to store.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) key: Vec<u8>,
    pub(crate) stored: Vec<u8>,
    pub(crate) seq: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::verify;

    #[test]
    fn the_sequence_follows_the_clock_and_never_goes_back() {
        let owner = Keypair::generate_ed25519();
        let write = || Write::mutable(&owner, "n", "v");
        assert_eq!(write().seal(None, 1000, 1024).unwrap().seq, Some(1000));
        // A held version ahead of the clock (the clock went back).
        assert_eq!(
            write().seal(Some(5000), 1000, 1024).unwrap().seq,
            Some(5001)
        );
        // The caller's choice wins.
        let chosen = write()
            .with_sequence(3)
            .seal(Some(5000), 1000, 1024)
            .unwrap();
        assert_eq!(chosen.seq, Some(3));
        assert_eq!(verify(&chosen.key, &chosen.stored).unwrap().seq, 3);
    }

    #[test]
    fn the_size_limit_counts_the_envelope_and_says_what_is_left_for_the_value() {
        let owner = Keypair::generate_ed25519();
        // 74 bytes of envelope around an ed25519 signature.
        assert!(
            Write::mutable(&owner, "n", vec![0; 26])
                .seal(None, 1, 100)
                .is_ok()
        );
        assert_eq!(
            Write::mutable(&owner, "n", vec![0; 27])
                .seal(None, 1, 100)
                .unwrap_err(),
            RecordError::ValueTooLarge { size: 27, max: 26 }
        );
        let immutable = Write::immutable(vec![1; 100]).seal(None, 1, 100).unwrap();
        assert_eq!(immutable.key, immutable_key(&[1; 100]));
        assert_eq!(immutable.seq, None);
    }

    #[test]
    fn bad_names_fail_before_anything_is_signed() {
        let owner = Keypair::generate_ed25519();
        assert!(matches!(
            Write::mutable(&owner, "", "v").key(),
            Err(RecordError::BadName { size: 0, .. })
        ));
        assert!(matches!(
            Write::mutable(&owner, vec![b'n'; 300], "v").key(),
            Err(RecordError::BadName { size: 300, .. })
        ));
    }
}
