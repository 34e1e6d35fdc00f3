//! A local test network: many nodes in one process over `MemoryTransport`,
//! with the same noise + yamux stack as production.
//!
//! Node 0 is a [`Role::Bootstrap`]; every later node bootstraps through it
//! and joins before [`Testnet::spawn`] returns. A [`Rogue`] peer that lies
//! can join any network, for attack tests. The executor is injected, so
//! tests, benchmarks and demos run on whatever they have. Nothing leaves the
//! process: memory addresses (`/memory/<port>`) are private to it.
//!
//! ```
//! use dht_core::{Config, Role, record::Write, testnet::Testnet};
//! use futures::executor::{ThreadPool, block_on};
//!
//! let pool = ThreadPool::new().unwrap();
//! block_on(async {
//!     let mut net = Testnet::new(move |task| pool.spawn_ok(task));
//!     for _ in 0..4 {
//!         net.spawn(Config::builder(), Role::ClientHelper).await.unwrap();
//!     }
//!     let writer = &net.nodes()[3];
//!     let greeting = Write::mutable(&writer.keypair, "greeting", "hello");
//!     let put = writer.handle.put(greeting).await.unwrap();
//!     let found = net.nodes()[1].handle.get_record(put.key).await.unwrap();
//!     assert_eq!(found.value, b"hello");
//! });
//! ```

use std::{
    collections::hash_map::DefaultHasher,
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use libp2p::{
    Multiaddr, PeerId, Swarm, Transport,
    core::{
        muxing::StreamMuxerBox,
        transport::{Boxed, MemoryTransport, OrTransport},
        upgrade::Version,
    },
    identity::Keypair,
    kad::KBucketKey,
    multiaddr::Protocol,
    noise, relay, swarm, yamux,
};

mod rogue;

pub use rogue::Rogue;

use crate::{
    Behaviour, Config, ConfigBuilder, ConfigError, JoinError, ListenError, NodeHandle, NodeStopped,
    Role, ServerMode,
};

/// How long a new node may take to join before [`Testnet::spawn`] gives up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a task to completion on the test's executor.
pub type Spawner = Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;

/// Why a test node could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestnetError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The transport could not be set up.
    #[error("transport setup failed: {0}")]
    Transport(String),
    /// The node could not listen on its memory address.
    #[error("node {index} cannot listen")]
    Listen {
        /// Its index.
        index: usize,
        /// Why.
        #[source]
        source: ListenError,
    },
    /// The node did not finish joining.
    #[error("node {index} did not join")]
    Join {
        /// Its index.
        index: usize,
        /// Why.
        #[source]
        source: JoinError,
    },
    /// A relayed node got no relay reservation in time.
    #[error("node {index} got no relay reservation within {JOIN_TIMEOUT:?}")]
    NotRelayed {
        /// Its index.
        index: usize,
    },
    /// The node stopped.
    #[error(transparent)]
    Stopped(#[from] NodeStopped),
}

/// A node of the test network.
#[derive(Clone, Debug)]
pub struct TestNode {
    /// Position in [`Testnet::nodes`].
    pub index: usize,
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its dialable address, with `/p2p/`: its memory address, or for a
    /// [`ServerMode::Relayed`] node (which listens on nothing) its circuit
    /// address through its first relay.
    pub address: Multiaddr,
    /// The handle that drives it.
    pub handle: NodeHandle,
    /// Its identity, to restart it as the same peer.
    pub keypair: Keypair,
    /// Its role.
    pub role: Role,
}

/// An in-process network of nodes. See the [module docs](self).
pub struct Testnet {
    spawner: Spawner,
    nodes: Vec<TestNode>,
}

impl fmt::Debug for Testnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Testnet")
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl Testnet {
    /// An empty network whose nodes and connections run on `spawner`.
    pub fn new(spawner: impl Fn(BoxFuture<'static, ()>) + Send + Sync + 'static) -> Self {
        Self {
            spawner: Arc::new(spawner),
            nodes: Vec::new(),
        }
    }

    /// The nodes, in the order they were spawned.
    pub fn nodes(&self) -> &[TestNode] {
        &self.nodes
    }

    /// Every node's peer id and dialable address.
    pub fn addresses(&self) -> Vec<(PeerId, Multiaddr)> {
        self.nodes
            .iter()
            .map(|node| (node.peer_id, node.address.clone()))
            .collect()
    }

    /// The executor the network runs on.
    pub fn spawner(&self) -> Spawner {
        self.spawner.clone()
    }

    /// Starts a [`Rogue`] with the DHT settings of `config`, connected to
    /// every node.
    pub async fn rogue(&self, config: &Config) -> Result<Rogue, TestnetError> {
        Rogue::join(config, &self.addresses(), self.spawner.clone()).await
    }

    /// Starts a node with `config` (its bootstrap peer is set here). The first
    /// node becomes the [`Role::Bootstrap`] whatever `role` says; later nodes
    /// join through it, and this returns once they have. A
    /// [`ServerMode::Relayed`] node stands in for a browser tab: it listens
    /// on nothing and returns once a relay (the bootstrap node, configured
    /// with [`ConfigBuilder::relay_server`]) holds a reservation for it.
    pub async fn spawn(
        &mut self,
        config: ConfigBuilder,
        role: Role,
    ) -> Result<&TestNode, TestnetError> {
        self.spawn_as(config, role, Keypair::generate_ed25519())
            .await
    }

    /// [`spawn`](Self::spawn) with the identity `keypair`, for tests that
    /// need a peer id at a chosen distance from a key.
    pub async fn spawn_as(
        &mut self,
        config: ConfigBuilder,
        role: Role,
        keypair: Keypair,
    ) -> Result<&TestNode, TestnetError> {
        let index = self.nodes.len();
        let (config, role) = match self.nodes.first() {
            Some(bootstrap) => (config.bootstrap_peer(bootstrap.address.clone()), role),
            None => (config, Role::Bootstrap),
        };
        let node = self.start(index, config, role, keypair).await?;
        self.nodes.push(node);
        Ok(self.nodes.last().expect("just pushed"))
    }

    /// Like [`spawn`](Self::spawn), but the node joins through the bootstrap
    /// peers `config` names, not through node 0 (with none it starts a
    /// network of its own): for networks whose shape a test decides.
    pub async fn spawn_joining(
        &mut self,
        config: ConfigBuilder,
        role: Role,
    ) -> Result<&TestNode, TestnetError> {
        let index = self.nodes.len();
        let node = self
            .start(index, config, role, Keypair::generate_ed25519())
            .await?;
        self.nodes.push(node);
        Ok(self.nodes.last().expect("just pushed"))
    }

    /// Stops node `index` and starts it again with the same identity and
    /// address but empty state, as a restarted process would be; `config`
    /// replaces its configuration (the bootstrap peer is set here unless it
    /// is node 0). Returns once it has joined (node 0: once it listens).
    pub async fn restart(
        &mut self,
        index: usize,
        config: ConfigBuilder,
    ) -> Result<&TestNode, TestnetError> {
        let old = self.nodes[index].clone();
        old.handle.shutdown().await;
        let config = match (index, self.nodes.first()) {
            (0, _) | (_, None) => config,
            (_, Some(bootstrap)) => config.bootstrap_peer(bootstrap.address.clone()),
        };
        let node = self.start(index, config, old.role, old.keypair).await?;
        self.nodes[index] = node;
        Ok(&self.nodes[index])
    }

    async fn start(
        &self,
        index: usize,
        config: ConfigBuilder,
        role: Role,
        keypair: Keypair,
    ) -> Result<TestNode, TestnetError> {
        let config = config.build()?;
        let peer_id = keypair.public().to_peer_id();
        let swarm = memory_swarm(&keypair, &config, self.spawner.clone())?;
        let spawner = self.spawner.clone();
        let mut running = crate::start(swarm, &config, &role, move |task| spawner(task));
        let relayed = config.server_mode() == ServerMode::Relayed;
        let listen = Multiaddr::empty().with(Protocol::Memory(memory_port(&peer_id)));
        if !relayed {
            running
                .listen([listen.clone()])
                .await
                .map_err(|source| TestnetError::Listen { index, source })?;
        }
        running
            .joined(JOIN_TIMEOUT)
            .await
            .map_err(|source| TestnetError::Join { index, source })?;
        let address = match relayed {
            false => listen,
            true => circuit_address(&running.handle, index).await?,
        };
        Ok(TestNode {
            index,
            peer_id,
            address: address.with(Protocol::P2p(peer_id)),
            handle: running.handle,
            keypair,
            role,
        })
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in &self.nodes {
            node.handle.shutdown().await;
        }
    }
}

/// The first circuit address a relayed node listens on, once it has one.
async fn circuit_address(handle: &NodeHandle, index: usize) -> Result<Multiaddr, TestnetError> {
    let deadline = web_time::Instant::now() + JOIN_TIMEOUT;
    let mut events = handle.subscribe().await?;
    loop {
        let listening = handle.listen_addresses().await?;
        if let Some(circuit) = listening
            .into_iter()
            .find(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
        {
            return Ok(crate::node::addresses::strip_p2p(&circuit));
        }
        let left = deadline.saturating_duration_since(web_time::Instant::now());
        let next = futures::future::select(
            futures::StreamExt::next(&mut events),
            futures_timer::Delay::new(left),
        );
        if let futures::future::Either::Right(_) = next.await {
            return Err(TestnetError::NotRelayed { index });
        }
    }
}

/// A port for a node's memory listener, unique per peer id.
pub fn memory_port(peer: &PeerId) -> u64 {
    let mut hasher = DefaultHasher::new();
    peer.hash(&mut hasher);
    hasher.finish() | 1
}

/// `MemoryTransport` secured with noise and multiplexed with yamux, as
/// production secures its transports.
pub fn memory_transport(
    keypair: &Keypair,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, TestnetError> {
    let noise = noise::Config::new(keypair).map_err(|e| TestnetError::Transport(e.to_string()))?;
    Ok(MemoryTransport::default()
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .boxed())
}

/// A swarm over [`memory_transport`] and libp2p's relay client (so that it
/// dials `/p2p-circuit` addresses, and serves through relays in
/// [`ServerMode::Relayed`]), running connection tasks on `spawner`.
pub fn memory_swarm(
    keypair: &Keypair,
    config: &Config,
    spawner: Spawner,
) -> Result<Swarm<Behaviour>, TestnetError> {
    let noise = noise::Config::new(keypair).map_err(|e| TestnetError::Transport(e.to_string()))?;
    let (relay_transport, relay_client) = relay::client::new(keypair.public().to_peer_id());
    let transport = OrTransport::new(relay_transport, MemoryTransport::default())
        .upgrade(Version::V1)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .outbound_timeout(crate::CIRCUIT_DIAL_TIMEOUT)
        .boxed();
    let swarm_config = config.swarm_config(swarm::Config::with_executor(move |task| spawner(task)));
    Ok(Swarm::new(
        transport,
        Behaviour::with_relay_client(keypair, config, relay_client),
        keypair.public().to_peer_id(),
        swarm_config,
    ))
}

/// The `k` peers of `candidates` closest to `key` by XOR distance, nearest
/// first, found by sorting them all: the truth a lookup is checked against.
pub fn xor_closest(
    key: &[u8],
    candidates: impl IntoIterator<Item = PeerId>,
    k: usize,
) -> Vec<PeerId> {
    let target = KBucketKey::new(key.to_vec());
    let mut peers: Vec<PeerId> = candidates.into_iter().collect();
    peers.sort_by_key(|peer| KBucketKey::from(*peer).distance(&target));
    peers.truncate(k);
    peers
}
