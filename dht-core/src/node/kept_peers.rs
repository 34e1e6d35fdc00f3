//! The routing table's peers, kept in the node's storage (if it has one) so
//! that a restarted node whose bootstrap peers are gone rejoins through the
//! peers it knew. Failures are logged and otherwise ignored: a peer not kept
//! costs a restarted node one contact, never a record.

use libp2p::{Multiaddr, PeerId};

// The browser's storage handle needs the trait for its (never made) calls.
#[cfg_attr(not(target_arch = "wasm32"), allow(unused_imports))]
use crate::record::Storage;
use crate::record::storage::{SavedPeer, StorageHandle};

/// Writes routing-table changes through to the storage.
#[derive(Debug, Default)]
pub(crate) struct KeptPeers(Option<StorageHandle>);

impl KeptPeers {
    /// Keeps peers in `storage`, or nowhere.
    pub(crate) fn new(storage: Option<StorageHandle>) -> Self {
        Self(storage)
    }

    /// The peers kept by the last run.
    pub(crate) fn load(&self) -> Vec<SavedPeer> {
        let Some(storage) = &self.0 else {
            return Vec::new();
        };
        storage.peers().unwrap_or_else(|error| {
            tracing::error!(%error, "could not read the kept routing table");
            Vec::new()
        })
    }

    /// `peer` is in the routing table at `addresses`.
    pub(crate) fn keep(&self, peer: PeerId, addresses: Vec<Multiaddr>) {
        if let Some(storage) = &self.0
            && let Err(error) = storage.save_peer(&SavedPeer { peer, addresses })
        {
            tracing::warn!(%error, %peer, "could not keep a routing-table peer");
        }
    }

    /// `peer` left the routing table.
    pub(crate) fn forget(&self, peer: &PeerId) {
        if let Some(storage) = &self.0
            && let Err(error) = storage.remove_peer(peer)
        {
            tracing::warn!(%error, %peer, "could not forget a routing-table peer");
        }
    }
}
