//! A Kademlia DHT where every node is a DHT node, and peers of one app find
//! each other by namespace with no rendezvous server.
//!
//! This crate holds all protocol logic and no runtime: hosts build a libp2p
//! [`Swarm`](libp2p::Swarm) with their own transport and executor around
//! [`Behaviour`], hand it to [`Node::new`], spawn [`Node::run`] and use the
//! cloneable [`NodeHandle`]. It compiles for the host and for
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
//! Where we differ from a plain libp2p Kademlia: inbound records pass through
//! the node and a bounded store ([`record::StoreLimits`]) rather than the
//! unbounded default; write-back caching is off; provider TTL and
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
//! use dht_core::{Behaviour, Config, Node, NodeHandle, Role};
//! use futures::executor::{ThreadPool, block_on};
//! use libp2p::{
//!     Multiaddr, Swarm, Transport,
//!     core::{transport::MemoryTransport, upgrade::Version},
//!     identity::Keypair,
//!     multiaddr::Protocol,
//!     noise, swarm, yamux,
//! };
//!
//! fn start(pool: &ThreadPool, config: Config, role: Role, port: u64) -> (NodeHandle, Multiaddr) {
//!     let key = Keypair::generate_ed25519();
//!     let transport = MemoryTransport::default()
//!         .upgrade(Version::V1)
//!         .authenticate(noise::Config::new(&key).unwrap())
//!         .multiplex(yamux::Config::default())
//!         .boxed();
//!     let executor = pool.clone();
//!     let swarm_config = config.swarm_config(swarm::Config::with_executor(move |task| executor.spawn_ok(task)));
//!     let peer_id = key.public().to_peer_id();
//!     let mut swarm = Swarm::new(transport, Behaviour::new(&key, &config), peer_id, swarm_config);
//!     let address = Multiaddr::empty().with(Protocol::Memory(port));
//!     swarm.listen_on(address.clone()).unwrap();
//!     let (node, handle) = Node::new(swarm, config, role);
//!     pool.spawn_ok(node.run());
//!     (handle, address.with(Protocol::P2p(peer_id)))
//! }
//!
//! let pool = ThreadPool::new().unwrap();
//! let (bootstrap, bootstrap_address) = start(&pool, Config::default(), Role::Bootstrap, 9_100_001);
//! let config = Config::builder().bootstrap_peer(bootstrap_address).build().unwrap();
//! let (client, _) = start(&pool, config, Role::ClientHelper, 9_100_002);
//!
//! block_on(async {
//!     client.bootstrap().await.unwrap();
//!     client.put_record(b"song".to_vec(), b"la".to_vec()).await.unwrap();
//!     let found = bootstrap.get_record(b"song".to_vec()).await.unwrap();
//!     assert_eq!(found.value, b"la");
//! });
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod behaviour;
mod bootstrap;
pub mod config;
pub mod error;
pub mod event;
mod handle;
pub mod keep_alive;
pub mod namespace;
mod node;
pub mod record;
pub mod report;
pub mod role;
#[cfg(feature = "testnet")]
pub mod testnet;

pub use behaviour::Behaviour;
pub use config::{Config, ConfigBuilder, ConnectionLimits, DEFAULT_KAD_PROTOCOL, ServerMode};
pub use error::{
    ClosestPeersError, ConfigError, DialError, DiscoverError, GetRecordError, LinkError,
    ListenError, NamespaceError, NodeStopped, PutRecordError, RecordError, RegisterError,
};
pub use event::Event;
pub use handle::{EventStream, GetRecordOk, NodeHandle, PeerAddresses, PutRecordOk, QueryStats};
pub use libp2p;
pub use namespace::Namespace;
pub use node::Node;
pub use record::Quorum;
pub use report::{NetworkReport, RoutingTable};
pub use role::{Role, RoleKind};
