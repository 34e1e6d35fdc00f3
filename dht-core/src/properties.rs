//! Property tests of everything that reads bytes a peer controls: random
//! and mutated inputs never panic, and never pass for a valid record.

use futures::{executor::block_on, io::Cursor};
use libp2p::{
    PeerId,
    identity::Keypair,
    kad::{Record, RecordKey},
    request_response::Codec,
};
use proptest::{collection::vec, prelude::*};

use crate::{
    namespace::{NAMESPACE_PROTOCOL, NamespaceCodec},
    record::{
        RecordKind, Source, Store, StoreLimits, immutable_key, sign_mutable,
        signed::MUTABLE_PREFIX, verify,
    },
};

/// One owner for every case: generating keys is not what is tested.
fn owner() -> &'static Keypair {
    static OWNER: std::sync::OnceLock<Keypair> = std::sync::OnceLock::new();
    OWNER.get_or_init(Keypair::generate_ed25519)
}

/// A byte string that often starts like a real key, so the parser gets
/// past its first check.
fn key_like() -> impl Strategy<Value = Vec<u8>> {
    let owner = owner().public().to_peer_id();
    prop_oneof![
        vec(any::<u8>(), 0..80),
        vec(any::<u8>(), 0..80).prop_map(move |tail| {
            let mut key = format!("{MUTABLE_PREFIX}{owner}/").into_bytes();
            key.extend(tail);
            key
        }),
        "[0-9a-fA-F/]{0,70}".prop_map(|tail| format!("/ns-dht/i/{tail}").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_key_and_value_is_verified_without_panicking(key in key_like(), value in vec(any::<u8>(), 0..200)) {
        if let Ok(verified) = verify(&key, &value) {
            // Only a record whose hash matches can pass unsigned.
            prop_assert_eq!(key, immutable_key(&value));
            prop_assert_eq!(verified.value, value);
        }
    }

    #[test]
    fn parsed_keys_print_back_to_themselves(key in key_like()) {
        if let Ok(kind) = RecordKind::parse(&key) {
            prop_assert_eq!(kind.key(), key);
        }
    }

    #[test]
    fn a_signed_record_with_any_byte_changed_is_refused(
        name in vec(any::<u8>(), 1..40),
        seq in any::<u64>(),
        value in vec(any::<u8>(), 0..100),
        position in any::<prop::sample::Index>(),
        flip in 1..=255u8,
    ) {
        let (key, stored) = sign_mutable(owner(), &name, seq, &value).unwrap();
        prop_assert!(verify(&key, &stored).is_ok());
        let mut changed = stored.clone();
        changed[position.index(stored.len())] ^= flip;
        prop_assert!(verify(&key, &changed).is_err());
        let mut other_key = key.clone();
        other_key[position.index(key.len())] ^= flip;
        prop_assert!(verify(&other_key, &stored).is_err());
        // Cut short anywhere, it is refused too.
        prop_assert!(verify(&key, &stored[..position.index(stored.len())]).is_err());
    }

    #[test]
    fn the_store_takes_only_what_verifies_and_never_panics(
        records in vec((key_like(), vec(any::<u8>(), 0..100)), 0..20),
    ) {
        let mut store = Store::new(PeerId::random(), StoreLimits::default());
        store.set_source(Some(Source { peer: PeerId::random(), subnet: None }));
        for (key, value) in records {
            let valid = verify(&key, &value).is_ok();
            let stored = store.insert(Record::new(RecordKey::new(&key), value)).is_ok();
            prop_assert_eq!(stored, valid);
        }
    }

    #[test]
    fn namespace_messages_from_peers_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let protocol = NAMESPACE_PROTOCOL;
        let _ = block_on(NamespaceCodec::default().read_request(&protocol, &mut Cursor::new(bytes.clone())));
        let _ = block_on(NamespaceCodec::default().read_response(&protocol, &mut Cursor::new(bytes)));
    }
}
