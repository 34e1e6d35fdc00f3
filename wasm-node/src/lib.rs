//! ns-dht in a browser tab: `dht-core` compiled to WebAssembly.
//!
//! This crate only converts types at the JavaScript boundary; every protocol
//! decision is `dht-core`'s. It picks the browser transports (WebSocket and
//! WebRTC-direct), the executor (`wasm-bindgen-futures`) and where the
//! identity lives (`localStorage`).
//!
//! ```js
//! import init, { DhtNode } from "./pkg/wasm_node.js";
//! await init();
//! const node = await DhtNode.start({ bootstrap: ["/ip4/127.0.0.1/tcp/4002/ws/p2p/12D3Koo..."] },
//!                                  (event) => console.log(event.type, event));
//! // A record only this tab's identity can change, under /ns-dht/m/<peer id>/greeting.
//! const { key } = await node.put("greeting", "hello");
//! const { value, owner, seq } = await node.get(key);   // value: { text: "hello" }
//! ```
//!
//! Results are plain objects in the shapes of `dht_core::api`, the same as
//! the native node's `--json` output and HTTP API; a failure rejects with an
//! `Error` whose `code` is the stable error code.
//!
//! # What a tab is in the DHT
//!
//! A browser cannot accept connections, so a tab serves the DHT through
//! circuit relay v2: once joined it takes a reservation on the relays it is
//! connected to (its bootstrap nodes relay by default; up to two), announces
//! the `/p2p-circuit` addresses, and switches Kademlia to server mode. From
//! then on it is a DHT node like any other: it enters routing tables, stores
//! the records it is among the k closest to, answers lookups and holds
//! namespace registrations; native nodes dial it through the relay. While
//! no relay holds a reservation (none relays, or all are full) it is a
//! Kademlia client and says so, so that nobody adds an entry it could never
//! dial. `serving` and `relays` say which it is now; `serving-changed`,
//! `relay-reserved` and `relay-reservation-lost` events say when it changes.
#![cfg(target_arch = "wasm32")]

mod eager_flush;
mod identity;
mod options;

use std::{cell::RefCell, collections::HashSet, rc::Rc, str::FromStr, time::Duration};

use dht_core::{
    Behaviour, CIRCUIT_DIAL_TIMEOUT, Config, ErrorCode, Event, Namespace, NodeHandle, Role,
    ServerMode, Write,
    error::chain,
    libp2p::{
        Multiaddr, PeerId, SwarmBuilder, Transport, core::upgrade::Version, identity::Keypair,
        noise, relay, webrtc_websys, websocket_websys, yamux,
    },
};
use futures::StreamExt;
use js_sys::{Function, Promise, Reflect, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

use crate::options::{StartError, StartOptions, browser_transport};

/// Installs the panic hook, so a bug shows as a readable console error.
#[wasm_bindgen(start)]
pub fn install_panic_hook() {
    console_error_panic_hook::set_once();
}

/// A value `put` cannot store.
#[derive(Debug, thiserror::Error)]
#[error("the value must be a string or a Uint8Array")]
struct NotBytes;

impl ErrorCode for NotBytes {
    fn code(&self) -> &'static str {
        "bad-value"
    }
}

/// The bytes of a value given as a string or a `Uint8Array`.
fn bytes_of(value: &JsValue) -> Result<Vec<u8>, JsValue> {
    if let Some(text) = value.as_string() {
        Ok(text.into_bytes())
    } else if value.is_instance_of::<Uint8Array>() {
        Ok(Uint8Array::from(value.clone()).to_vec())
    } else {
        Err(js_error(&NotBytes))
    }
}

/// A peer id given by the page.
fn parse_peer(text: &str) -> Result<PeerId, JsValue> {
    PeerId::from_str(text.trim()).map_err(|_| js_error(&BadPeerId(text.to_owned())))
}

/// A peer id that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a peer id")]
struct BadPeerId(String);

impl ErrorCode for BadPeerId {
    fn code(&self) -> &'static str {
        "bad-peer-id"
    }
}

/// A JavaScript `Error` whose message names every cause and whose `code`
/// is the error's stable code.
fn js_error(error: &(impl ErrorCode + ?Sized)) -> JsValue {
    let js = js_sys::Error::new(&chain(&error));
    // Setting a property on a fresh Error cannot fail.
    let _ = Reflect::set(&js, &"code".into(), &error.code().into());
    js.into()
}

/// The error of a transport or behaviour that could not be set up.
fn setup(
    what: &'static str,
    error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> JsValue {
    js_error(&StartError::Setup {
        what,
        source: error.into(),
    })
}

/// A value as a plain JS object, in the shapes of `dht_core::api`.
fn to_js(value: &impl Serialize) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsValue::from(js_sys::Error::new(&e.to_string())))
}

#[derive(Debug, Default)]
struct State {
    on_event: Option<Function>,
    transport: Option<String>,
    address: Option<String>,
    bootstrap: HashSet<PeerId>,
    serving: bool,
    relays: Vec<PeerId>,
}

/// Keeps what the tab shows of its connection, then hands `event` to the
/// page's callback (with no borrow held, so the callback may use the node).
fn observe(state: &RefCell<State>, event: &Event) {
    let callback = {
        let mut state = state.borrow_mut();
        state.update(event);
        state.on_event.clone()
    };
    if let Some(callback) = callback
        && let Ok(value) = to_js(event)
        && let Err(thrown) = callback.call1(&JsValue::NULL, &value)
    {
        web_sys::console::warn_2(&"the onEvent callback threw:".into(), &thrown);
    }
}

impl State {
    fn update(&mut self, event: &Event) {
        match event {
            Event::PeerConnected { peer, address, .. } if self.bootstrap.contains(peer) => {
                self.transport = browser_transport(address).map(str::to_owned);
                self.address = Some(address.to_string());
            }
            Event::PeerDisconnected { peer } if self.bootstrap.contains(peer) => {
                self.transport = None;
                self.address = None;
            }
            Event::ServingChanged { serving } => self.serving = *serving,
            Event::RelayReserved { relay } => self.relays.push(*relay),
            Event::RelayReservationLost { relay, .. } => self.relays.retain(|r| r != relay),
            _ => {}
        }
    }
}

/// A DHT node running in this tab.
#[wasm_bindgen]
#[derive(Debug)]
pub struct DhtNode {
    handle: NodeHandle,
    /// The tab's identity, which signs its records.
    owner: Keypair,
    state: Rc<RefCell<State>>,
    identity_persisted: bool,
}

#[wasm_bindgen]
impl DhtNode {
    /// Starts a node and joins the DHT through `options.bootstrap`; resolves
    /// once the node has filled its routing table, rejects with an `Error`
    /// (with a `code`) when the options are wrong or no bootstrap peer
    /// answers in time. `onEvent`, if given, receives every node event as
    /// an object with a `type` field.
    pub async fn start(options: JsValue, on_event: Option<Function>) -> Result<DhtNode, JsValue> {
        let options: StartOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| js_error(&StartError::Options(e)))?;
        let serve = options.serve.unwrap_or(true);
        let addresses = options
            .bootstrap_addresses(serve)
            .map_err(|e| js_error(&e))?;
        let namespace = options
            .namespace
            .as_deref()
            .map(Namespace::new)
            .transpose()
            .map_err(|e| js_error(&e))?;

        let storage_key = options
            .storage_key
            .as_deref()
            .unwrap_or(identity::DEFAULT_STORAGE_KEY);
        let (keypair, identity_persisted) =
            identity::load_or_create(storage_key, options.ephemeral)
                .await
                .map_err(|e| js_error(&e))?;

        let mut config = Config::builder()
            .bootstrap_peers(addresses)
            // Nobody can dial a tab: it serves through relays, see the crate docs.
            .server_mode(if serve {
                ServerMode::Relayed
            } else {
                ServerMode::Never
            })
            .advertise_listen_addresses(false)
            .agent_version(concat!("ns-dht-browser/", env!("CARGO_PKG_VERSION")));
        if let Some(k) = options.replication_factor {
            config = config.replication_factor(k);
        }
        let config = config.build().map_err(|e| js_error(&e))?;

        // Kept to sign this tab's records.
        let owner = keypair.clone();
        let (relay_transport, relay_behaviour) = relay::client::new(keypair.public().to_peer_id());
        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_wasm_bindgen()
            // The relay client by hand rather than `with_relay_client`, for
            // its dial timeout (see `CIRCUIT_DIAL_TIMEOUT`); first, because
            // the WebSocket transport would take a circuit address through a
            // WebSocket relay address for its own and dial the relay.
            .with_other_transport(|key| {
                Ok(relay_transport
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .outbound_timeout(CIRCUIT_DIAL_TIMEOUT)
                    .boxed())
            })
            .map_err(|e| setup("the relay client", e))?
            .with_other_transport(|key| {
                Ok(websocket_websys::Transport::default()
                    .map(|connection, _| eager_flush::EagerFlush(connection))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .boxed())
            })
            .map_err(|e| setup("WebSocket", e))?
            .with_other_transport(|key| {
                webrtc_websys::Transport::new(webrtc_websys::Config::new(key))
            })
            .map_err(|e| setup("WebRTC", e))?
            .with_behaviour(|key| Behaviour::with_relay_client(key, &config, relay_behaviour))
            .map_err(|e| setup("the node", e))?
            .with_swarm_config(|base| config.swarm_config(base))
            .build();

        let state = Rc::new(RefCell::new(State {
            on_event,
            bootstrap: config
                .bootstrap_peers()
                .iter()
                .map(|(peer, _)| *peer)
                .collect(),
            ..State::default()
        }));
        let mut node = dht_core::start(swarm, &config, &Role::ClientHelper, spawn_local);
        let timeout = Duration::from_millis(u64::from(options.join_timeout_ms.unwrap_or(15_000)));
        let joined = node
            .joined_observing(timeout, |event| observe(&state, event))
            .await;
        if let Err(error) = joined {
            node.handle.shutdown().await;
            return Err(js_error(&error));
        }
        spawn_local(forward_events(node.events, state.clone()));
        if let Some(namespace) = namespace {
            node.handle
                .register(&namespace)
                .await
                .map_err(|e| js_error(&e))?;
        }
        Ok(DhtNode {
            handle: node.handle,
            owner,
            state,
            identity_persisted,
        })
    }
    /// This tab's peer id.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.handle.local_peer_id().to_string()
    }

    /// Whether the identity is kept in `localStorage` (so a reload keeps the
    /// peer id).
    #[wasm_bindgen(getter, js_name = identityPersisted)]
    pub fn identity_persisted(&self) -> bool {
        self.identity_persisted
    }

    /// How this tab reached the bootstrap: `"websocket"` or `"webrtc-direct"`.
    #[wasm_bindgen(getter)]
    pub fn transport(&self) -> Option<String> {
        self.state.borrow().transport.clone()
    }

    /// The bootstrap address this tab is connected through.
    #[wasm_bindgen(getter, js_name = bootstrapAddress)]
    pub fn bootstrap_address(&self) -> Option<String> {
        self.state.borrow().address.clone()
    }

    /// Whether this tab answers DHT requests from others now: true while a
    /// relay holds a reservation for it.
    #[wasm_bindgen(getter)]
    pub fn serving(&self) -> bool {
        self.state.borrow().serving
    }

    /// The peer ids of the relays this tab is reachable through now.
    #[wasm_bindgen(getter)]
    pub fn relays(&self) -> Vec<String> {
        self.state
            .borrow()
            .relays
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Replaces the event callback.
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&self, callback: Option<Function>) {
        self.state.borrow_mut().on_event = callback;
    }

    /// Stores `value` (a string or a `Uint8Array`) as this tab's record
    /// `name`, signed with its identity, at the peers closest to its key
    /// `/ns-dht/m/<peer id>/<name>`; only this identity can change it. Each
    /// put is a new version. Resolves to `{ key, seq, stats }` (see
    /// `dht_core::api`).
    pub fn put(&self, name: String, value: JsValue) -> Promise {
        let handle = self.handle.clone();
        let owner = self.owner.clone();
        future_to_promise(async move {
            let write = Write::mutable(&owner, name, bytes_of(&value)?);
            let stored = handle.put(write).await.map_err(|e| js_error(&e))?;
            to_js(&stored)
        })
    }

    /// Stores `value` (a string or a `Uint8Array`) under the hash of its
    /// content, `/ns-dht/i/<sha256 hex>`, which nobody can change. Resolves
    /// to `{ key, stats }`.
    #[wasm_bindgen(js_name = putImmutable)]
    pub fn put_immutable(&self, value: JsValue) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let write = Write::immutable(bytes_of(&value)?);
            let stored = handle.put(write).await.map_err(|e| js_error(&e))?;
            to_js(&stored)
        })
    }

    /// Finds the record under `key` and checks its signature or hash.
    /// Resolves to `{ key, value, owner, seq, foundLocally, foundAt,
    /// forgeries, stats }`, with `value` as `{ text }` or `{ base64 }` (see
    /// `dht_core::api`); rejects when no valid copy is found.
    pub fn get(&self, key: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let found = handle
                .get_record(key.into_bytes())
                .await
                .map_err(|e| js_error(&e))?;
            to_js(&found)
        })
    }

    /// The `k` peers closest to `key`: `[{ peerId, addresses }]`.
    #[wasm_bindgen(js_name = closestPeers)]
    pub fn closest_peers(&self, key: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let key = match PeerId::from_str(&key) {
                Ok(peer) => peer.to_bytes(),
                Err(_) => key.into_bytes(),
            };
            let peers = handle.closest_peers(key).await.map_err(|e| js_error(&e))?;
            to_js(&peers)
        })
    }

    /// Registers this tab in `namespace`.
    pub fn register(&self, namespace: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let namespace = Namespace::new(namespace).map_err(|e| js_error(&e))?;
            handle
                .register(&namespace)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops refreshing this tab's registration in `namespace`.
    pub fn unregister(&self, namespace: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let namespace = Namespace::new(namespace).map_err(|e| js_error(&e))?;
            handle
                .unregister(&namespace)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The other members of `namespace`: `[{ peerId, addresses }]` (other
    /// tabs with their `/p2p-circuit` addresses).
    pub fn discover(&self, namespace: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let namespace = Namespace::new(namespace).map_err(|e| js_error(&e))?;
            let peers = handle
                .discover(&namespace)
                .await
                .map_err(|e| js_error(&e))?;
            to_js(&peers)
        })
    }

    /// Links this tab to `peerId`, a member of `namespace` (as `discover`
    /// returns it, with its `addresses`): connects, through a relay if its
    /// addresses are circuits, and confirms with the namespace handshake
    /// that it is registered there. Resolves to its role (`"listener"`,
    /// `"dialer"`, `"client-helper"`, …).
    pub fn link(&self, namespace: String, peer_id: String, addresses: Vec<String>) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let namespace = Namespace::new(namespace).map_err(|e| js_error(&e))?;
            let peer = parse_peer(&peer_id)?;
            let mut parsed = Vec::new();
            for text in &addresses {
                parsed.push(Multiaddr::from_str(text.trim()).map_err(|source| {
                    js_error(&StartError::BadAddress {
                        text: text.clone(),
                        source,
                    })
                })?);
            }
            let role = handle
                .link(
                    &namespace,
                    dht_core::PeerAddresses {
                        peer_id: peer,
                        addresses: parsed,
                    },
                )
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::from_str(&role.to_string()))
        })
    }

    /// This tab's namespace links: `[{ namespace, peerId, role, outbound }]`.
    pub fn links(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move { to_js(&handle.links().await.map_err(|e| js_error(&e))?) })
    }

    /// Sends `data` (a string or a `Uint8Array`) to `peerId`, a peer this
    /// tab is linked with; resolves once it was delivered, rejects with a
    /// code (`not-linked`, `message-too-large`, `rate-limited`,
    /// `refused-not-linked`, `message-failed`). Messages from linked peers
    /// arrive as `message-received` events.
    pub fn send(&self, peer_id: String, data: JsValue) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let peer = parse_peer(&peer_id)?;
            handle
                .send_message(peer, bytes_of(&data)?)
                .await
                .map_err(|e| js_error(&e))?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The routing table: `{ localPeerId, buckets: [{ index, entries }] }`.
    #[wasm_bindgen(js_name = routingTable)]
    pub fn routing_table(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(
            async move { to_js(&handle.routing_table().await.map_err(|e| js_error(&e))?) },
        )
    }

    /// The records this tab holds: `[{ key, value, owner, seq, forOthers, expiresInMs }]`.
    pub fn records(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move { to_js(&handle.records().await.map_err(|e| js_error(&e))?) })
    }

    /// This tab's view of the network (the monitor report).
    pub fn report(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            to_js(&handle.network_report().await.map_err(|e| js_error(&e))?)
        })
    }

    /// Stops the node and closes its connections.
    pub fn stop(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            handle.shutdown().await;
            Ok(JsValue::UNDEFINED)
        })
    }
}

/// Hands every later event to the page and keeps the connection state.
async fn forward_events(mut events: dht_core::EventStream, state: Rc<RefCell<State>>) {
    while let Some(event) = events.next().await {
        observe(&state, &event);
    }
}
