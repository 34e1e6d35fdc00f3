//! The two kinds of record the DHT stores, and how every node checks them.
//!
//! No record is "just a value under a key": whoever stores, serves or reads
//! a record can check who may have written it.
//!
//! - A **mutable** record lives under `/ns-dht/m/<owner>/<name>`, where
//!   `<owner>` is the owner's peer id in base58 and `<name>` 1 to
//!   [`MAX_NAME_LEN`] bytes of the owner's choice. Its stored value is an
//!   envelope:
//!
//!   | bytes | field |
//!   |---|---|
//!   | 1 | version, [`ENVELOPE_VERSION`] (1) |
//!   | 8 | sequence number, big-endian `u64` |
//!   | 1 | signature length `n` (1 to 255) |
//!   | `n` | the owner's signature |
//!   | rest | the value |
//!
//!   The signature is the owner's libp2p identity signature (ed25519 for
//!   every node we run) over [`SIGNATURE_CONTEXT`] ‖ key length (big-endian
//!   `u16`) ‖ key ‖ sequence (big-endian `u64`) ‖ value. The public key
//!   comes from the owner's peer id, so only owners whose peer id embeds
//!   the key (ed25519, secp256k1: the "identity" multihash) can own records.
//!   A store keeps the highest sequence it has seen: a lower one is refused,
//!   the same one only extends how long the copy is kept.
//! - An **immutable** record lives under `/ns-dht/i/<sha256 of the value in
//!   lowercase hex>`; its stored value is the value itself.
//!
//! Any other key is refused by every store and every read.

use libp2p::{
    PeerId,
    identity::{Keypair, PublicKey},
};
use sha2::{Digest, Sha256};

use crate::error::RecordError;

/// The key prefix of mutable records.
pub const MUTABLE_PREFIX: &str = "/ns-dht/m/";
/// The key prefix of immutable records.
pub const IMMUTABLE_PREFIX: &str = "/ns-dht/i/";
/// What an owner's signature starts with, so that a signature made for a
/// record can never be taken for one made for anything else.
pub const SIGNATURE_CONTEXT: &[u8] = b"ns-dht record v1\0";
/// The envelope version this code writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// The longest name of a mutable record, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Bytes an envelope adds to a mutable value besides the signature.
const HEADER_LEN: usize = 1 + 8 + 1;
/// The identity multihash code: the digest is the public key itself.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// What a record key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A record only `owner` can write, under a name of its choice.
    Mutable {
        /// The owner.
        owner: PeerId,
        /// The name, 1 to [`MAX_NAME_LEN`] bytes.
        name: Vec<u8>,
    },
    /// A record named by the SHA-256 of its value.
    Immutable {
        /// The hash.
        hash: [u8; 32],
    },
}

impl RecordKind {
    /// Reads a record key.
    pub fn parse(key: &[u8]) -> Result<Self, RecordError> {
        if let Some(rest) = key.strip_prefix(MUTABLE_PREFIX.as_bytes()) {
            let split = rest
                .iter()
                .position(|b| *b == b'/')
                .ok_or(RecordError::UnknownKind)?;
            let owner = std::str::from_utf8(&rest[..split])
                .ok()
                .and_then(|text| text.parse::<PeerId>().ok())
                .ok_or(RecordError::UnknownKind)?;
            let name = rest[split + 1..].to_vec();
            check_name(&name)?;
            return Ok(RecordKind::Mutable { owner, name });
        }
        if let Some(rest) = key.strip_prefix(IMMUTABLE_PREFIX.as_bytes()) {
            let mut hash = [0; 32];
            let hex = std::str::from_utf8(rest).map_err(|_| RecordError::UnknownKind)?;
            if hex.len() != 64 || hex.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(RecordError::UnknownKind);
            }
            for (i, byte) in hash.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                    .map_err(|_| RecordError::UnknownKind)?;
            }
            return Ok(RecordKind::Immutable { hash });
        }
        Err(RecordError::UnknownKind)
    }

    /// The record key.
    pub fn key(&self) -> Vec<u8> {
        match self {
            RecordKind::Mutable { owner, name } => {
                let mut key = format!("{MUTABLE_PREFIX}{owner}/").into_bytes();
                key.extend_from_slice(name);
                key
            }
            RecordKind::Immutable { hash } => {
                let mut key = String::with_capacity(IMMUTABLE_PREFIX.len() + 64);
                key.push_str(IMMUTABLE_PREFIX);
                for byte in hash {
                    key.push_str(&format!("{byte:02x}"));
                }
                key.into_bytes()
            }
        }
    }
}

fn check_name(name: &[u8]) -> Result<(), RecordError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(RecordError::BadName {
            size: name.len(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

/// The key of the immutable record holding `value`.
pub fn immutable_key(value: &[u8]) -> Vec<u8> {
    RecordKind::Immutable {
        hash: Sha256::digest(value).into(),
    }
    .key()
}

/// A record whose key, signature and hash were checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// What the key names.
    pub kind: RecordKind,
    /// The sequence number (0 for an immutable record).
    pub seq: u64,
    /// The value, without the envelope.
    pub value: Vec<u8>,
}

impl Verified {
    /// The owner, for a mutable record.
    pub fn owner(&self) -> Option<PeerId> {
        match &self.kind {
            RecordKind::Mutable { owner, .. } => Some(*owner),
            RecordKind::Immutable { .. } => None,
        }
    }

    /// The sequence number, for a mutable record.
    pub fn sequence(&self) -> Option<u64> {
        matches!(self.kind, RecordKind::Mutable { .. }).then_some(self.seq)
    }
}

fn signed_message(key: &[u8], seq: u64, value: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 2 + key.len() + 8 + value.len());
    message.extend_from_slice(SIGNATURE_CONTEXT);
    // Keys are at most MAX_KEY_LEN (1024) bytes, checked before signing.
    message.extend_from_slice(&(key.len() as u16).to_be_bytes());
    message.extend_from_slice(key);
    message.extend_from_slice(&seq.to_be_bytes());
    message.extend_from_slice(value);
    message
}

/// Signs `value` as version `seq` of the mutable record `name` owned by
/// `keypair`; returns the record key and the value to store under it.
pub fn sign_mutable(
    keypair: &Keypair,
    name: &[u8],
    seq: u64,
    value: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), RecordError> {
    check_name(name)?;
    let owner = keypair.public().to_peer_id();
    owner_key(&owner)?;
    let key = RecordKind::Mutable {
        owner,
        name: name.to_vec(),
    }
    .key();
    super::check_key(&key)?;
    let signature = keypair
        .sign(&signed_message(&key, seq, value))
        .map_err(|_| RecordError::OwnerKeyNotInline)?;
    let signature_len = u8::try_from(signature.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or(RecordError::OwnerKeyNotInline)?;
    let mut envelope = Vec::with_capacity(HEADER_LEN + signature.len() + value.len());
    envelope.push(ENVELOPE_VERSION);
    envelope.extend_from_slice(&seq.to_be_bytes());
    envelope.push(signature_len);
    envelope.extend_from_slice(&signature);
    envelope.extend_from_slice(value);
    Ok((key, envelope))
}

/// The public key embedded in `owner`, if its peer id embeds one.
fn owner_key(owner: &PeerId) -> Result<PublicKey, RecordError> {
    let multihash = owner.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return Err(RecordError::OwnerKeyNotInline);
    }
    PublicKey::try_decode_protobuf(multihash.digest())
        .ok()
        .filter(|key| key.to_peer_id() == *owner)
        .ok_or(RecordError::OwnerKeyNotInline)
}

/// The parts of a mutable record's envelope, not yet verified.
struct Envelope<'a> {
    seq: u64,
    signature: &'a [u8],
    value: &'a [u8],
}

fn open(stored: &[u8]) -> Result<Envelope<'_>, RecordError> {
    let malformed = RecordError::MalformedEnvelope;
    let (&version, rest) = stored.split_first().ok_or(malformed.clone())?;
    if version != ENVELOPE_VERSION {
        return Err(malformed);
    }
    let (seq, rest) = rest.split_at_checked(8).ok_or(malformed.clone())?;
    let seq = u64::from_be_bytes(seq.try_into().map_err(|_| malformed.clone())?);
    let (&signature_len, rest) = rest.split_first().ok_or(malformed.clone())?;
    if signature_len == 0 {
        return Err(malformed);
    }
    let (signature, value) = rest
        .split_at_checked(usize::from(signature_len))
        .ok_or(malformed)?;
    Ok(Envelope {
        seq,
        signature,
        value,
    })
}

/// Checks a record as stored under `key`: the key is one of the two kinds,
/// and the value is signed by the key's owner or hashes to the key.
pub fn verify(key: &[u8], stored: &[u8]) -> Result<Verified, RecordError> {
    super::check_key(key)?;
    let kind = RecordKind::parse(key)?;
    match &kind {
        RecordKind::Mutable { owner, .. } => {
            let envelope = open(stored)?;
            let public = owner_key(owner)?;
            if !public.verify(
                &signed_message(key, envelope.seq, envelope.value),
                envelope.signature,
            ) {
                return Err(RecordError::Forged);
            }
            Ok(Verified {
                seq: envelope.seq,
                value: envelope.value.to_vec(),
                kind,
            })
        }
        RecordKind::Immutable { hash } => {
            if Sha256::digest(stored).as_slice() != hash {
                return Err(RecordError::Forged);
            }
            Ok(Verified {
                kind,
                seq: 0,
                value: stored.to_vec(),
            })
        }
    }
}

/// The sequence number of a stored value that [`verify`] accepted under
/// `key` (0 for an immutable record), without checking it again.
pub(crate) fn sequence_of(key: &[u8], stored: &[u8]) -> u64 {
    if key.starts_with(MUTABLE_PREFIX.as_bytes()) {
        open(stored).map_or(0, |envelope| envelope.seq)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_record_verifies_under_its_owner_key() {
        let owner = Keypair::generate_ed25519();
        let (key, stored) = sign_mutable(&owner, b"greeting", 7, b"hello").unwrap();
        let expected = format!("/ns-dht/m/{}/greeting", owner.public().to_peer_id());
        assert_eq!(key, expected.as_bytes());
        let verified = verify(&key, &stored).unwrap();
        assert_eq!(verified.value, b"hello");
        assert_eq!(verified.sequence(), Some(7));
        assert_eq!(verified.owner(), Some(owner.public().to_peer_id()));
        assert_eq!(sequence_of(&key, &stored), 7);
    }

    #[test]
    fn anything_changed_is_a_forgery() {
        let owner = Keypair::generate_ed25519();
        let (key, stored) = sign_mutable(&owner, b"n", 1, b"value").unwrap();
        // Another value, another sequence, the same signature.
        let mut value_changed = stored.clone();
        *value_changed.last_mut().unwrap() ^= 1;
        assert_eq!(verify(&key, &value_changed), Err(RecordError::Forged));
        let mut seq_raised = stored.clone();
        seq_raised[8] += 1;
        assert_eq!(verify(&key, &seq_raised), Err(RecordError::Forged));
        // The same envelope under another name, or signed by someone else.
        let moved = format!("/ns-dht/m/{}/m", owner.public().to_peer_id());
        assert_eq!(verify(moved.as_bytes(), &stored), Err(RecordError::Forged));
        let intruder = Keypair::generate_ed25519();
        let (_, theirs) = sign_mutable(&intruder, b"n", 2, b"mine now").unwrap();
        assert_eq!(verify(&key, &theirs), Err(RecordError::Forged));
    }

    #[test]
    fn immutable_records_are_named_by_their_hash() {
        let key = immutable_key(b"abc");
        assert_eq!(
            key,
            b"/ns-dht/i/ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(verify(&key, b"abc").unwrap().sequence(), None);
        assert_eq!(verify(&key, b"abd"), Err(RecordError::Forged));
    }

    #[test]
    fn keys_of_no_known_kind_are_refused() {
        for key in [
            &b"song"[..],
            b"/ns-dht/m/not-a-peer-id/name",
            b"/ns-dht/m/12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo",
            b"/ns-dht/i/BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            b"/ns-dht/i/ba78",
        ] {
            assert_eq!(RecordKind::parse(key), Err(RecordError::UnknownKind));
        }
        let owner = Keypair::generate_ed25519().public().to_peer_id();
        assert!(matches!(
            RecordKind::parse(format!("/ns-dht/m/{owner}/").as_bytes()),
            Err(RecordError::BadName { size: 0, .. })
        ));
    }

    #[test]
    fn truncated_envelopes_are_malformed_not_panics() {
        let owner = Keypair::generate_ed25519();
        let (key, stored) = sign_mutable(&owner, b"n", 1, b"").unwrap();
        for len in 0..stored.len() {
            assert!(verify(&key, &stored[..len]).is_err(), "{len} bytes");
        }
    }
}
