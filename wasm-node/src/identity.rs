//! The tab's identity, kept in `localStorage` so a reload keeps its peer id,
//! and never shared by two live tabs.
//!
//! Every tab of a browser sees the same `localStorage`, but two tabs must be
//! two DHT nodes: one peer id in two places would fight over its
//! connections and relay reservations. So identities sit in numbered slots
//! (`<key>`, `<key>#1`, … `<key>#15`), and a tab uses the first slot whose
//! Web Lock it can take, holding the lock until it closes. A reload lets go
//! of its lock as the old page unloads and takes the same slot again, so it
//! keeps its peer id; a second tab gets the next slot, its own peer id, and
//! keeps that one across its reloads while the first stays open.

use std::{cell::RefCell, fmt::Write};

use dht_core::{ErrorCode, libp2p::identity::Keypair};
use js_sys::{Function, Object, Promise, Reflect};
use wasm_bindgen::{JsCast, JsValue, closure::Closure};

/// Where the identity is stored unless the page says otherwise.
pub(crate) const DEFAULT_STORAGE_KEY: &str = "ns-dht-identity";

/// Identity slots tried at most; a tab beyond them gets a new identity.
const SLOTS: usize = 16;

/// Loads the identity of the first free slot under `key` or creates and
/// stores one there; with `ephemeral`, where storage is unavailable (private
/// windows, sandboxed frames), where Web Locks are (pages not served from a
/// secure context) or when every slot is taken, a new identity lives as long
/// as the tab. Returns the key and whether it is stored.
pub(crate) async fn load_or_create(
    key: &str,
    ephemeral: bool,
) -> Result<(Keypair, bool), IdentityError> {
    let storage = if ephemeral {
        None
    } else {
        web_sys::window().and_then(|w| w.local_storage().ok().flatten())
    };
    let Some(storage) = storage else {
        return Ok((Keypair::generate_ed25519(), false));
    };
    let mut slot = None;
    for index in 0..SLOTS {
        let name = match index {
            0 => key.to_owned(),
            n => format!("{key}#{n}"),
        };
        match try_lock(&format!("ns-dht-identity-lock:{name}")).await {
            Some(true) => {
                slot = Some(name);
                break;
            }
            Some(false) => continue,
            // No Web Locks: nothing keeps two tabs apart, so none keeps an identity.
            None => break,
        }
    }
    let Some(key) = slot.as_deref() else {
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

/// Takes the Web Lock `name` for as long as the tab lives, if no other tab
/// holds it: `Some(true)` if taken, `Some(false)` if held elsewhere, `None`
/// where the browser has no Web Locks.
async fn try_lock(name: &str) -> Option<bool> {
    let navigator = Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let locks = Reflect::get(&navigator, &"locks".into()).ok()?;
    let request: Function = Reflect::get(&locks, &"request".into())
        .ok()?
        .dyn_into()
        .ok()?;
    let options = Object::new();
    Reflect::set(&options, &"ifAvailable".into(), &true.into()).ok()?;
    let (granted_tx, granted) = futures::channel::oneshot::channel();
    let granted_tx = RefCell::new(Some(granted_tx));
    let callback = Closure::once_into_js(move |lock: JsValue| -> Promise {
        let held = !lock.is_null();
        if let Some(tx) = granted_tx.take() {
            let _ = tx.send(held);
        }
        if held {
            // A promise that never settles holds the lock until the tab closes.
            Promise::new(&mut |_, _| {})
        } else {
            Promise::resolve(&JsValue::UNDEFINED)
        }
    });
    request
        .call3(&locks, &name.into(), &options, &callback)
        .ok()?;
    granted.await.ok()
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
