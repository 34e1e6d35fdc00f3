//! The tab's identity, kept in `localStorage` so a reload keeps its peer id.

use std::fmt::Write;

use dht_core::{ErrorCode, libp2p::identity::Keypair};

/// Where the identity is stored unless the page says otherwise.
pub(crate) const DEFAULT_STORAGE_KEY: &str = "ns-dht-identity";

/// Loads the identity stored under `key` or creates and stores one; with
/// `ephemeral`, or where storage is unavailable (private windows, sandboxed
/// frames), a new identity lives as long as the tab. Returns the key and
/// whether it is stored.
pub(crate) fn load_or_create(key: &str, ephemeral: bool) -> Result<(Keypair, bool), IdentityError> {
    let storage = if ephemeral {
        None
    } else {
        web_sys::window().and_then(|w| w.local_storage().ok().flatten())
    };
    let Some(storage) = storage else {
        return Ok((Keypair::generate_ed25519(), false));
    };
    if let Ok(Some(stored)) = storage.get_item(key) {
        let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| IdentityError::Corrupt {
            key: key.to_owned(),
            source,
        };
        let bytes = from_hex(&stored).ok_or_else(|| corrupt("it is not hexadecimal".into()))?;
        let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|e| corrupt(e.into()))?;
        return Ok((keypair, true));
    }
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(IdentityError::Encode)?;
    let stored = storage.set_item(key, &to_hex(&bytes)).is_ok();
    Ok((keypair, stored))
}

/// Why the stored identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdentityError {
    #[error(
        "the identity stored in localStorage[{key:?}] is corrupt; remove it to start over \
         under a new peer id, or start with {{ ephemeral: true }}"
    )]
    Corrupt {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot encode the new identity")]
    Encode(#[source] dht_core::libp2p::identity::DecodingError),
}

impl ErrorCode for IdentityError {
    fn code(&self) -> &'static str {
        match self {
            IdentityError::Corrupt { .. } => "identity-corrupt",
            IdentityError::Encode(_) => "identity-create",
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}
