//! The options of `DhtNode::start`, and which bootstrap addresses a tab
//! dials.

use std::str::FromStr;

use dht_core::{
    ErrorCode,
    libp2p::{Multiaddr, multiaddr, multiaddr::Protocol},
};
use serde::Deserialize;

/// Options of [`DhtNode::start`], from a plain JS object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct StartOptions {
    /// Bootstrap multiaddrs with `/p2p/`; those a browser cannot dial are skipped.
    pub(crate) bootstrap: Vec<String>,
    /// Transports to use, of `"websocket"` and `"webrtc-direct"`; default
    /// both, and then a serving tab dials a bootstrap that offers both over
    /// WebSocket only (see `prefer_websocket`).
    #[serde(default)]
    pub(crate) transports: Option<Vec<String>>,
    /// Use a new identity for this tab instead of the stored one.
    #[serde(default)]
    pub(crate) ephemeral: bool,
    /// The `localStorage` key of the identity. Default `ns-dht-identity`;
    /// further tabs open at once use `<key>#1`, `<key>#2`, …
    #[serde(default)]
    pub(crate) storage_key: Option<String>,
    /// How long to wait for the DHT to answer. Default 15 000 ms.
    #[serde(default)]
    pub(crate) join_timeout_ms: Option<u32>,
    /// Register in this namespace once joined.
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    /// `k`; must match the network. Default 20.
    #[serde(default)]
    pub(crate) replication_factor: Option<usize>,
    /// Serve the DHT through relays once joined. Default true; false keeps
    /// the tab a client that only queries.
    #[serde(default)]
    pub(crate) serve: Option<bool>,
}

/// Why [`DhtNode::start`] refused its options or could not set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("invalid options")]
    Options(#[source] serde_wasm_bindgen::Error),
    #[error("unknown transport {0:?}: a browser can use \"websocket\" and \"webrtc-direct\"")]
    UnknownTransport(String),
    #[error("invalid bootstrap address {text:?}")]
    BadAddress {
        text: String,
        #[source]
        source: multiaddr::Error,
    },
    #[error(
        "no bootstrap address this tab can dial over {transports}: a browser needs /ws, /wss or \
         /webrtc-direct addresses, got {given:?}"
    )]
    NoBrowserAddress {
        transports: String,
        given: Vec<String>,
    },
    #[error("cannot set up {what}")]
    Setup {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ErrorCode for StartError {
    fn code(&self) -> &'static str {
        match self {
            StartError::Options(_) | StartError::UnknownTransport(_) => "bad-options",
            StartError::BadAddress { .. } => "bad-address",
            StartError::NoBrowserAddress { .. } => "no-browser-address",
            StartError::Setup { .. } => "transport-setup",
        }
    }
}

impl StartOptions {
    /// The bootstrap addresses this tab dials: those over the chosen
    /// transports, and for a tab that `serve`s, no WebRTC-direct address of
    /// a peer that also offers WebSocket.
    pub(crate) fn bootstrap_addresses(&self, serve: bool) -> Result<Vec<Multiaddr>, StartError> {
        let transports = self
            .transports
            .clone()
            .unwrap_or_else(|| vec!["websocket".into(), "webrtc-direct".into()]);
        if let Some(unknown) = transports
            .iter()
            .find(|t| !["websocket", "webrtc-direct"].contains(&t.as_str()))
        {
            return Err(StartError::UnknownTransport(unknown.clone()));
        }
        let mut addresses = Vec::new();
        for text in &self.bootstrap {
            let address =
                Multiaddr::from_str(text.trim()).map_err(|source| StartError::BadAddress {
                    text: text.clone(),
                    source,
                })?;
            if browser_transport(&address).is_some_and(|t| transports.iter().any(|w| w == t)) {
                addresses.push(address);
            }
        }
        if serve {
            addresses = prefer_websocket(addresses);
        }
        if addresses.is_empty() {
            return Err(StartError::NoBrowserAddress {
                transports: transports.join(" or "),
                given: self.bootstrap.clone(),
            });
        }
        Ok(addresses)
    }
}

/// The transport a browser uses for an address, if it can dial it at all.
pub(crate) fn browser_transport(address: &Multiaddr) -> Option<&'static str> {
    address.iter().find_map(|p| match p {
        Protocol::Ws(_) | Protocol::Wss(_) => Some("websocket"),
        Protocol::WebRTCDirect => Some("webrtc-direct"),
        _ => None,
    })
}

/// `addresses` without the WebRTC-direct ones of a peer that also has a
/// WebSocket one. A relay must identify the tabs it relays for, to route
/// others to them; over WebRTC-direct it often cannot: libp2p-webrtc-websys
/// 0.5 takes the remote's streams only once its side of the handshake is
/// done, and the relay's identify request, sent as soon as its own side is
/// done, can be lost (README, "Known limit"). WebSocket has no such race.
fn prefer_websocket(addresses: Vec<Multiaddr>) -> Vec<Multiaddr> {
    let peer_of = |address: &Multiaddr| {
        address.iter().find_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
    };
    let over_websocket: Vec<_> = addresses
        .iter()
        .filter(|a| browser_transport(a) == Some("websocket"))
        .map(peer_of)
        .collect();
    addresses
        .into_iter()
        .filter(|a| {
            browser_transport(a) != Some("webrtc-direct") || !over_websocket.contains(&peer_of(a))
        })
        .collect()
}
