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
//! await node.put("greeting", "hello");
//! const { value } = await node.get("greeting");
//! ```
//!
//! # What a tab is in the DHT
//!
//! A browser cannot accept connections: nobody can dial a tab. A tab is
//! therefore a Kademlia *client*: it looks records and peers up, writes and
//! reads records, registers in and discovers namespaces, keeps the records it
//! wrote in its own store, but it is not added to other nodes' routing tables
//! and so neither stores records for others nor answers their lookups. It
//! announces this (Kademlia client mode) so that native nodes do not add an
//! entry they could never dial, which would slow every lookup near it.
#![cfg(target_arch = "wasm32")]

mod identity;

use std::{cell::RefCell, collections::HashSet, rc::Rc, str::FromStr, time::Duration};

use dht_core::{
    Behaviour, Config, Event, Namespace, Node, NodeHandle, Role, ServerMode,
    libp2p::{
        Multiaddr, PeerId, SwarmBuilder, Transport, core::upgrade::Version, multiaddr::Protocol,
        noise, webrtc_websys, websocket_websys, yamux,
    },
};
use futures::{FutureExt, StreamExt, channel::oneshot};
use js_sys::{Function, Promise, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, spawn_local};

/// Installs the panic hook, so a bug shows as a readable console error.
#[wasm_bindgen(start)]
pub fn install_panic_hook() {
    console_error_panic_hook::set_once();
}

/// Options of [`DhtNode::start`], from a plain JS object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StartOptions {
    /// Bootstrap multiaddrs with `/p2p/`; those a browser cannot dial are skipped.
    bootstrap: Vec<String>,
    /// Transports to use, of `"websocket"` and `"webrtc-direct"`; default both.
    #[serde(default)]
    transports: Option<Vec<String>>,
    /// Use a new identity for this tab instead of the stored one.
    #[serde(default)]
    ephemeral: bool,
    /// The `localStorage` key of the identity. Default `ns-dht-identity`.
    #[serde(default)]
    storage_key: Option<String>,
    /// How long to wait for the DHT to answer. Default 15 000 ms.
    #[serde(default)]
    join_timeout_ms: Option<u32>,
    /// Register in this namespace once joined.
    #[serde(default)]
    namespace: Option<String>,
    /// `k`; must match the network. Default 20.
    #[serde(default)]
    replication_factor: Option<usize>,
}

/// The transport a browser uses for an address, if it can dial it at all.
fn browser_transport(address: &Multiaddr) -> Option<&'static str> {
    address.iter().find_map(|p| match p {
        Protocol::Ws(_) | Protocol::Wss(_) => Some("websocket"),
        Protocol::WebRTCDirect => Some("webrtc-direct"),
        _ => None,
    })
}

fn error(message: impl std::fmt::Display) -> JsError {
    JsError::new(&message.to_string())
}

fn to_js(value: &impl Serialize) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(error)
}

#[derive(Debug, Default)]
struct State {
    on_event: Option<Function>,
    transport: Option<String>,
    address: Option<String>,
    bootstrap: HashSet<PeerId>,
    unreachable: Vec<String>,
    joined: Option<oneshot::Sender<()>>,
}

/// A DHT node running in this tab.
#[wasm_bindgen]
#[derive(Debug)]
pub struct DhtNode {
    handle: NodeHandle,
    state: Rc<RefCell<State>>,
    identity_persisted: bool,
}

#[wasm_bindgen]
impl DhtNode {
    /// Starts a node and joins the DHT through `options.bootstrap`; resolves
    /// once the node has filled its routing table, rejects with a message
    /// when the options are wrong or no bootstrap peer answers in time.
    /// `onEvent`, if given, receives every node event as an object with a
    /// `type` field.
    pub async fn start(options: JsValue, on_event: Option<Function>) -> Result<DhtNode, JsError> {
        let options: StartOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| error(format!("invalid options: {e}")))?;
        let transports = options
            .transports
            .clone()
            .unwrap_or_else(|| vec!["websocket".into(), "webrtc-direct".into()]);
        if let Some(unknown) = transports
            .iter()
            .find(|t| !["websocket", "webrtc-direct"].contains(&t.as_str()))
        {
            return Err(error(format!(
                "unknown transport {unknown:?}: a browser can use \"websocket\" and \"webrtc-direct\""
            )));
        }
        let mut addresses = Vec::new();
        for text in &options.bootstrap {
            let address = Multiaddr::from_str(text.trim())
                .map_err(|e| error(format!("invalid bootstrap address {text:?}: {e}")))?;
            if browser_transport(&address).is_some_and(|t| transports.iter().any(|w| w == t)) {
                addresses.push(address);
            }
        }
        if addresses.is_empty() {
            return Err(error(format!(
                "no bootstrap address this tab can dial over {}: a browser needs /ws, /wss or /webrtc-direct addresses, got {:?}",
                transports.join(" or "),
                options.bootstrap
            )));
        }
        let namespace = options
            .namespace
            .as_deref()
            .map(Namespace::new)
            .transpose()
            .map_err(error)?;

        let storage_key = options
            .storage_key
            .as_deref()
            .unwrap_or(identity::DEFAULT_STORAGE_KEY);
        let (keypair, identity_persisted) =
            identity::load_or_create(storage_key, options.ephemeral).map_err(error)?;

        let mut config = Config::builder()
            .bootstrap_peers(addresses)
            // Nobody can dial a tab: see the crate docs.
            .server_mode(ServerMode::Never)
            .advertise_listen_addresses(false)
            .agent_version(concat!("ns-dht-browser/", env!("CARGO_PKG_VERSION")));
        if let Some(k) = options.replication_factor {
            config = config.replication_factor(k);
        }
        let config = config.build().map_err(error)?;

        let swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_wasm_bindgen()
            .with_other_transport(|key| {
                Ok(websocket_websys::Transport::default()
                    .upgrade(Version::V1)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .boxed())
            })
            .map_err(|e| error(format!("cannot set up WebSocket: {e}")))?
            .with_other_transport(|key| {
                webrtc_websys::Transport::new(webrtc_websys::Config::new(key))
            })
            .map_err(|e| error(format!("cannot set up WebRTC: {e}")))?
            .with_behaviour(|key| Behaviour::new(key, &config))
            .map_err(|e| error(format!("cannot set up the node: {e}")))?
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
        let (joined, joined_signal) = oneshot::channel();
        state.borrow_mut().joined = Some(joined);

        let (mut node, handle) = Node::new(swarm, config, Role::ClientHelper);
        let events = node.subscribe();
        spawn_local(node.run());
        spawn_local(forward_events(events, state.clone()));

        let timeout = Duration::from_millis(u64::from(options.join_timeout_ms.unwrap_or(15_000)));
        let joined = futures::select! {
            joined = joined_signal.fuse() => joined.is_ok(),
            () = futures_timer::Delay::new(timeout).fuse() => false,
        };
        if !joined {
            handle.shutdown().await;
            let seen = state.borrow().unreachable.join("; ");
            return Err(error(format!(
                "no bootstrap peer reachable within {} s{}",
                timeout.as_secs(),
                if seen.is_empty() {
                    String::new()
                } else {
                    format!(": {seen}")
                }
            )));
        }
        if let Some(namespace) = namespace {
            handle.register(&namespace).await.map_err(error)?;
        }
        Ok(DhtNode {
            handle,
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

    /// Replaces the event callback.
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&self, callback: Option<Function>) {
        self.state.borrow_mut().on_event = callback;
    }

    /// Stores `value` (a string or a `Uint8Array`) under `key` at the peers
    /// closest to it. Resolves to `{ key, requests, durationMs }`.
    pub fn put(&self, key: String, value: JsValue) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let bytes = if let Some(text) = value.as_string() {
                text.into_bytes()
            } else if value.is_instance_of::<Uint8Array>() {
                Uint8Array::from(value).to_vec()
            } else {
                return Err(error("the value must be a string or a Uint8Array").into());
            };
            let stored = handle
                .put_record(key.into_bytes(), bytes)
                .await
                .map_err(error)?;
            Ok(to_js(&PutResult {
                key: String::from_utf8_lossy(&stored.key).into_owned(),
                requests: stored.stats.requests,
                duration_ms: stored.stats.duration.map(|d| d.as_secs_f64() * 1000.0),
            })?)
        })
    }

    /// Finds the record under `key`. Resolves to `{ key, value, bytes,
    /// publisher, foundLocally, requests, durationMs }` (`value` is the text,
    /// or `null` when the bytes are not UTF-8); rejects when not found.
    pub fn get(&self, key: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let found = handle
                .get_record(key.clone().into_bytes())
                .await
                .map_err(error)?;
            let result = GetResult {
                key,
                value: String::from_utf8(found.value.clone()).ok(),
                publisher: found.publisher.map(|p| p.to_string()),
                found_locally: found.found_at.contains(&None),
                requests: found.stats.requests,
                duration_ms: found.stats.duration.map(|d| d.as_secs_f64() * 1000.0),
            };
            let object = to_js(&result)?;
            js_sys::Reflect::set(
                &object,
                &"bytes".into(),
                &Uint8Array::from(found.value.as_slice()),
            )
            .map_err(|_| error("cannot build the result"))?;
            Ok(object)
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
            let peers = handle.closest_peers(key).await.map_err(error)?;
            Ok(to_js(&peers)?)
        })
    }

    /// Registers this tab in `namespace`.
    pub fn register(&self, namespace: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let namespace = Namespace::new(namespace).map_err(error)?;
            handle.register(&namespace).await.map_err(error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Stops refreshing this tab's registration in `namespace`.
    pub fn unregister(&self, namespace: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let namespace = Namespace::new(namespace).map_err(error)?;
            handle.unregister(&namespace).await.map_err(error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The other members of `namespace`: `[{ peerId, addresses }]` (no
    /// addresses for other tabs, which cannot be dialed).
    pub fn discover(&self, namespace: String) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move {
            let namespace = Namespace::new(namespace).map_err(error)?;
            let peers = handle.discover(&namespace).await.map_err(error)?;
            Ok(to_js(&peers)?)
        })
    }

    /// The routing table: `{ localPeerId, buckets: [{ index, entries }] }`.
    #[wasm_bindgen(js_name = routingTable)]
    pub fn routing_table(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move { Ok(to_js(&handle.routing_table().await.map_err(error)?)?) })
    }

    /// The records this tab holds: `[{ key, value, publisher, expiresInMs }]`.
    pub fn records(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move { Ok(to_js(&handle.records().await.map_err(error)?)?) })
    }

    /// This tab's view of the network (the monitor report).
    pub fn report(&self) -> Promise {
        let handle = self.handle.clone();
        future_to_promise(async move { Ok(to_js(&handle.network_report().await.map_err(error)?)?) })
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PutResult {
    key: String,
    requests: u32,
    duration_ms: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GetResult {
    key: String,
    value: Option<String>,
    publisher: Option<String>,
    found_locally: bool,
    requests: u32,
    duration_ms: Option<f64>,
}

/// Hands every event to the callback and keeps the connection state.
async fn forward_events(mut events: dht_core::EventStream, state: Rc<RefCell<State>>) {
    while let Some(event) = events.next().await {
        let callback = {
            let mut state = state.borrow_mut();
            match &event {
                Event::PeerConnected { peer, address, .. } if state.bootstrap.contains(peer) => {
                    state.transport = browser_transport(address).map(str::to_owned);
                    state.address = Some(address.to_string());
                }
                Event::PeerDisconnected { peer } if state.bootstrap.contains(peer) => {
                    state.transport = None;
                    state.address = None;
                }
                Event::BootstrapPeerUnreachable { peer, error, .. } => {
                    state.unreachable.push(format!("{peer}: {error}"));
                    state.unreachable.truncate(8);
                }
                Event::Bootstrapped { .. } => {
                    if let Some(joined) = state.joined.take() {
                        let _ = joined.send(());
                    }
                }
                _ => {}
            }
            state.on_event.clone()
        };
        if let Some(callback) = callback
            && let Ok(value) = to_js(&event)
            && let Err(thrown) = callback.call1(&JsValue::NULL, &value)
        {
            web_sys::console::warn_2(&"the onEvent callback threw:".into(), &thrown);
        }
    }
}
