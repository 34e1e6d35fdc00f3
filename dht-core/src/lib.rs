//! A Kademlia DHT where every node is a DHT node, and peers of one app find
//! each other by namespace with no rendezvous server.
//!
//! This crate holds all protocol logic and no runtime: hosts build a libp2p
//! [`Swarm`](libp2p::Swarm) with their own transport and executor around
//! [`Behaviour`], hand it to [`start`] with a function that spawns the node's
//! task, and use the cloneable [`NodeHandle`] of the [`Running`] node. It compiles for the host and for
//! `wasm32-unknown-unknown` (where the host must enable libp2p's
//! `wasm-bindgen` feature so timers work in the browser).
//!
//! # The protocol
//!
//! - **Kademlia** as specified by libp2p
//!   (<https://github.com/libp2p/specs/tree/master/kad-dht>), under the
//!   protocol name [`DEFAULT_KAD_PROTOCOL`] (`/ns-dht/kad/1.0.0`). Another
//!   libp2p implementation joins this DHT by running Kademlia with that
//!   protocol name (for example go-libp2p's `dht.ProtocolPrefix("/ns-dht")`,
//!   js-libp2p's `kadDHT({ protocol: '/ns-dht/kad/1.0.0' })`), in server mode
//!   if it can be dialed, and by dialing a bootstrap node.
//! - **identify** (`/ipfs/id/1.0.0`), wired to Kademlia: a peer's listen
//!   addresses enter the routing table only when it announces our Kademlia
//!   protocol.
//! - **ping** (`/ipfs/ping/1.0.0`).
//! - **Namespaces**: registration as Kademlia provider records under
//!   `/ns-dht/ns/<name>`, and a small handshake, see [`namespace`].
//! - **Pinned connections** to bootstrap peers and namespace links, see
//!   [`keep_alive`].
//!
//! Where we differ from a plain libp2p Kademlia: only two kinds of record
//! exist, mutable ones signed by their owner and immutable ones named by
//! their hash ([`record::signed`]), and every node checks every record it
//! stores or reads; inbound records go to a bounded store
//! ([`record::StoreLimits`]) that charges each to its sender's share and
//! refuses (does not acknowledge) what it cannot take; write-back caching is off; provider TTL and
//! republication follow the namespace settings (10 min and 4 min by default
//! rather than 48 h and 12 h), since provider records are how namespace
//! members are found.
//!
//! # Example
//!
//! Two nodes over an in-memory transport, on a `futures` thread pool. A
//! native host does the same with `SwarmBuilder::with_tokio()` and real
//! transports; the browser with `with_wasm_bindgen()`.
//!
//! ```
//! use std::time::Duration;
//!
//! use dht_core::{Behaviour, Config, Role, Running, record::Write};
//! use futures::executor::{ThreadPool, block_on};
//! use libp2p::{
//!     Multiaddr, Swarm, Transport,
//!     core::{transport::MemoryTransport, upgrade::Version},
//!     identity::Keypair,
//!     multiaddr::Protocol,
//!     noise, swarm, yamux,
//! };
//!
//! fn swarm(pool: &ThreadPool, config: &Config, key: &Keypair) -> Swarm<Behaviour> {
//!     let transport = MemoryTransport::default()
//!         .upgrade(Version::V1)
//!         .authenticate(noise::Config::new(key).unwrap())
//!         .multiplex(yamux::Config::default())
//!         .boxed();
//!     let executor = pool.clone();
//!     let swarm_config = config.swarm_config(swarm::Config::with_executor(move |task| executor.spawn_ok(task)));
//!     Swarm::new(transport, Behaviour::new(key, config), key.public().to_peer_id(), swarm_config)
//! }
//!
//! let pool = ThreadPool::new().unwrap();
//! block_on(async {
//!     let config = Config::default();
//!     let bootstrap_key = Keypair::generate_ed25519();
//!     let bootstrap = dht_core::start(swarm(&pool, &config, &bootstrap_key), &config, &Role::Bootstrap, |task| pool.spawn_ok(task));
//!     let address = Multiaddr::empty().with(Protocol::Memory(9_100_001));
//!     bootstrap.listen([address.clone()]).await.unwrap();
//!
//!     let config = Config::builder().bootstrap_peer(address.with(Protocol::P2p(bootstrap.peer_id()))).build().unwrap();
//!     let client_key = Keypair::generate_ed25519();
//!     let mut client = dht_core::start(swarm(&pool, &config, &client_key), &config, &Role::ClientHelper, |task| pool.spawn_ok(task));
//!     client.joined(Duration::from_secs(10)).await.unwrap();
//!
//!     // A record only the client's key can change, under /ns-dht/m/<client>/song.
//!     let put = client.handle.put(Write::mutable(&client_key, "song", "la")).await.unwrap();
//!     let found = bootstrap.handle.get_record(put.key).await.unwrap();
//!     assert_eq!((found.value, found.owner), (b"la".to_vec(), Some(client.peer_id())));
//! });
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

#[cfg(feature = "serde")]
pub mod api;
pub mod behaviour;
pub mod config;
pub mod error;
pub mod event;
mod handle;
mod host;
pub mod ip_limits;
pub mod kademlia;
pub mod keep_alive;
pub mod message;
pub mod namespace;
pub mod native;
mod node;
#[cfg(test)]
mod properties;
pub mod record;
pub mod report;
pub mod role;
#[cfg(feature = "testnet")]
pub mod testnet;

pub use behaviour::Behaviour;
pub use config::{
    CIRCUIT_DIAL_TIMEOUT, Config, ConfigBuilder, ConnectionLimits, DEFAULT_KAD_PROTOCOL,
    DEFAULT_RELAY_RESERVATIONS, RelayLimits, RoutingDiversity, ServerMode,
};
pub use error::{
    ClosestPeersError, ConfigError, DialError, DiscoverError, ErrorCode, GetRecordError, JoinError,
    LinkError, ListenError, NamespaceError, NodeStopped, PutRecordError, RecordError,
    RegisterError,
};
pub use event::{Event, LinkLost, PeerGone, RelayLost};
pub use handle::{EventStream, GetRecordOk, NodeHandle, PeerAddresses, PutRecordOk, QueryStats};
pub use host::{NodeTask, Running, start};
pub use libp2p;
pub use message::{MessageError, MessageLimits};
pub use namespace::Namespace;
pub use node::{Node, Reachability};
pub use record::{Quorum, Write};
pub use report::{NetworkReport, RelayReport, RoutingTable};
pub use role::{Role, RoleKind};
