//! A peer that speaks the DHT's protocols and lies, for attack tests.
//!
//! The rogue is a plain libp2p Kademlia (with identify, so honest nodes
//! take it for a DHT server) over the test network's memory transport. It
//! answers every record request with what the test told it to, sends any
//! record it is handed to any peer with any lifetime, registers in
//! namespaces with addresses of its choosing, answers every namespace
//! members request with the members a test made up, and listens on as many
//! addresses as asked (announcing each through identify). It keeps what
//! honest peers send it, so a test can replay it, and counts the
//! connections peers open to each of its addresses. It checks nothing.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{
    StreamExt,
    channel::{mpsc, oneshot},
    future::{BoxFuture, FutureExt},
};
use libp2p::{
    Multiaddr, PeerId, Swarm, Transport,
    core::transport::{ListenerId, MemoryTransport, TransportEvent},
    identify,
    identity::Keypair,
    kad::{self, ProviderRecord, Record, RecordKey, store::RecordStore},
    multiaddr::Protocol,
    request_response,
    swarm::{self, NetworkBehaviour, SwarmEvent},
};

use super::{Spawner, TestnetError, memory_port, memory_transport};
use crate::{
    config::{Config, IDENTIFY_PROTOCOL_VERSION},
    handle::PeerAddresses,
    message::MessageStatus,
    namespace::{NAMESPACE_PROTOCOL, NamespaceCodec, NamespaceRequest, NamespaceResponse},
};

/// What the rogue answers and what it was sent, shared between its task and
/// the test.
#[derive(Debug, Default)]
struct Book {
    /// The record to answer a GET_VALUE for each key with.
    lies: HashMap<RecordKey, Record>,
    /// The records honest peers stored at the rogue.
    received: HashMap<RecordKey, Record>,
    providers: HashMap<RecordKey, Vec<ProviderRecord>>,
    provided: Vec<ProviderRecord>,
    /// The members to answer every namespace members request with.
    members: Vec<PeerAddresses>,
    /// Connections peers opened to the rogue, by the address they dialed.
    incoming: HashMap<Multiaddr, usize>,
}

/// A record store that answers with lies and keeps what it is sent.
#[derive(Debug, Clone, Default)]
struct LyingStore(Arc<Mutex<Book>>);

impl LyingStore {
    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RecordStore for LyingStore {
    type RecordsIter<'a> = std::vec::IntoIter<Cow<'a, Record>>;
    type ProvidedIter<'a> = std::vec::IntoIter<Cow<'a, ProviderRecord>>;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.book().lies.get(key).cloned().map(Cow::Owned)
    }

    fn put(&mut self, record: Record) -> kad::store::Result<()> {
        self.book().received.insert(record.key.clone(), record);
        Ok(())
    }

    fn remove(&mut self, key: &RecordKey) {
        self.book().received.remove(key);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        // Nothing to republish: the rogue sends only what it is told to.
        Vec::new().into_iter()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> kad::store::Result<()> {
        self.book()
            .providers
            .entry(record.key.clone())
            .or_default()
            .push(record);
        Ok(())
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.book().providers.get(key).cloned().unwrap_or_default()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        let provided: Vec<_> = self
            .book()
            .provided
            .iter()
            .cloned()
            .map(Cow::Owned)
            .collect();
        provided.into_iter()
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if let Some(list) = self.book().providers.get_mut(key) {
            list.retain(|p| &p.provider != provider);
        }
    }
}

#[derive(NetworkBehaviour)]
struct RogueBehaviour {
    kad: kad::Behaviour<LyingStore>,
    identify: identify::Behaviour,
    namespace: request_response::Behaviour<NamespaceCodec>,
}

type Reply<T> = oneshot::Sender<T>;

enum Command {
    Send {
        record: Record,
        to: Vec<(PeerId, Multiaddr)>,
        reply: Reply<Vec<PeerId>>,
    },
    Register {
        key: RecordKey,
        addresses: Vec<Multiaddr>,
        reply: Reply<()>,
    },
    Listen {
        addresses: Vec<Multiaddr>,
        reply: Reply<()>,
    },
}

/// A lying peer in a test network; it stops when dropped.
#[derive(Debug)]
pub struct Rogue {
    /// Its peer id.
    pub peer_id: PeerId,
    /// Its identity, to sign records it is not entitled to.
    pub keypair: Keypair,
    store: LyingStore,
    commands: mpsc::Sender<Command>,
}

impl Rogue {
    /// Starts a rogue with the DHT settings of `config` (its Kademlia
    /// protocol) and connects it to every peer of `peers`.
    pub async fn join(
        config: &Config,
        peers: &[(PeerId, Multiaddr)],
        spawner: Spawner,
    ) -> Result<Self, TestnetError> {
        let keypair = Keypair::generate_ed25519();
        let peer_id = keypair.public().to_peer_id();
        let store = LyingStore::default();
        let mut swarm = rogue_swarm(&keypair, config, store.clone(), spawner.clone())?;
        let listen = Multiaddr::empty().with(Protocol::Memory(memory_port(&peer_id)));
        swarm
            .listen_on(listen)
            .map_err(|e| TestnetError::Transport(e.to_string()))?;
        for (peer, address) in peers {
            swarm.behaviour_mut().kad.add_address(peer, address.clone());
            swarm
                .dial(address.clone())
                .map_err(|e| TestnetError::Transport(e.to_string()))?;
        }
        let (commands, receiver) = mpsc::channel(64);
        spawner(run(swarm, receiver, store.clone()).boxed());
        Ok(Self {
            peer_id,
            keypair,
            store,
            commands,
        })
    }

    /// Answers every request for `key` with `lie`, whatever its key says.
    pub fn answer_with(&self, key: &[u8], lie: Record) {
        self.store.book().lies.insert(RecordKey::new(&key), lie);
    }

    /// Answers every namespace members request with `members`.
    pub fn answer_members_with(&self, members: Vec<PeerAddresses>) {
        self.store.book().members = members;
    }

    /// Listens on `addresses` with a bare transport that counts every
    /// connection and answers none: addresses for made-up peers, to see
    /// who dials them (the rogue does not announce them).
    pub fn sink(&self, addresses: &[Multiaddr], spawner: &Spawner) -> Result<(), TestnetError> {
        let mut transport = MemoryTransport::default();
        for address in addresses {
            transport
                .listen_on(ListenerId::next(), address.clone())
                .map_err(|e| TestnetError::Transport(e.to_string()))?;
        }
        let store = self.store.clone();
        spawner(
            async move {
                let mut transport = std::pin::pin!(transport);
                loop {
                    let event = futures::future::poll_fn(|cx| transport.as_mut().poll(cx)).await;
                    if let TransportEvent::Incoming { local_addr, .. } = event {
                        *store.book().incoming.entry(local_addr).or_default() += 1;
                    }
                }
            }
            .boxed(),
        );
        Ok(())
    }

    /// Connections peers have opened to the rogue so far at any of
    /// `addresses`.
    pub fn connections_at(&self, addresses: &[Multiaddr]) -> usize {
        let book = self.store.book();
        addresses
            .iter()
            .filter_map(|address| book.incoming.get(address))
            .sum()
    }

    /// The record an honest peer stored at the rogue under `key`.
    pub fn received(&self, key: &[u8]) -> Option<Record> {
        self.store
            .book()
            .received
            .get(&RecordKey::new(&key))
            .cloned()
    }

    /// Sends `record` (its `expires` becomes the TTL on the wire) to each
    /// peer of `to`; returns the peers that acknowledged it.
    pub async fn send(&self, record: Record, to: &[(PeerId, Multiaddr)]) -> Vec<PeerId> {
        let (reply, answer) = oneshot::channel();
        let to = to.to_vec();
        self.call(Command::Send { record, to, reply }, answer)
            .await
            .unwrap_or_default()
    }

    /// Registers under the provider key `key`, announcing `addresses`.
    pub async fn register(&self, key: RecordKey, addresses: Vec<Multiaddr>) {
        let (reply, answer) = oneshot::channel();
        let _ = self
            .call(
                Command::Register {
                    key,
                    addresses,
                    reply,
                },
                answer,
            )
            .await;
    }

    /// Listens on more addresses; identify pushes each to connected peers.
    pub async fn listen_on(&self, addresses: Vec<Multiaddr>) {
        let (reply, answer) = oneshot::channel();
        let _ = self
            .call(Command::Listen { addresses, reply }, answer)
            .await;
    }

    async fn call<T>(&self, command: Command, answer: oneshot::Receiver<T>) -> Option<T> {
        self.commands.clone().try_send(command).ok()?;
        answer.await.ok()
    }
}

fn rogue_swarm(
    keypair: &Keypair,
    config: &Config,
    store: LyingStore,
    spawner: Spawner,
) -> Result<Swarm<RogueBehaviour>, TestnetError> {
    let transport = memory_transport(keypair)?;
    let peer_id = keypair.public().to_peer_id();
    let mut kad_config = kad::Config::new(config.kad_protocol.clone());
    kad_config.set_record_ttl(None);
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL_VERSION.to_owned(), keypair.public())
            .with_push_listen_addr_updates(true),
    );
    let namespace = request_response::Behaviour::with_codec(
        NamespaceCodec::default(),
        [(NAMESPACE_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default(),
    );
    let swarm_config = swarm::Config::with_executor(move |task| spawner(task))
        .with_idle_connection_timeout(Duration::from_secs(60));
    Ok(Swarm::new(
        transport,
        RogueBehaviour {
            kad,
            identify,
            namespace,
        },
        peer_id,
        swarm_config,
    ))
}

/// A send waiting for its acknowledgements.
struct Sending {
    to: Vec<PeerId>,
    reply: Reply<Vec<PeerId>>,
}

fn run(
    mut swarm: Swarm<RogueBehaviour>,
    mut commands: mpsc::Receiver<Command>,
    store: LyingStore,
) -> BoxFuture<'static, ()> {
    async move {
        let mut sending: HashMap<kad::QueryId, Sending> = HashMap::new();
        let mut registering: HashMap<kad::QueryId, Reply<()>> = HashMap::new();
        loop {
            futures::select! {
                command = commands.next() => match command {
                    None => return,
                    Some(Command::Send { record, to, reply }) => {
                        let kad = &mut swarm.behaviour_mut().kad;
                        for (peer, address) in &to {
                            kad.add_address(peer, address.clone());
                        }
                        let count = to.len().max(1);
                        let quorum = std::num::NonZeroUsize::new(count).map_or(kad::Quorum::One, kad::Quorum::N);
                        let to: Vec<PeerId> = to.into_iter().map(|(peer, _)| peer).collect();
                        let id = kad.put_record_to(record, to.clone().into_iter(), quorum);
                        sending.insert(id, Sending { to, reply });
                    }
                    Some(Command::Register { key, addresses, reply }) => {
                        for address in addresses {
                            swarm.add_external_address(address);
                        }
                        match swarm.behaviour_mut().kad.start_providing(key) {
                            Ok(id) => {
                                registering.insert(id, reply);
                            }
                            Err(_) => {
                                let _ = reply.send(());
                            }
                        }
                    }
                    Some(Command::Listen { addresses, reply }) => {
                        for address in addresses {
                            let _ = swarm.listen_on(address);
                        }
                        let _ = reply.send(());
                    }
                },
                event = swarm.select_next_some() => match event {
                    SwarmEvent::IncomingConnection { local_addr, .. } => {
                        *store.book().incoming.entry(local_addr).or_default() += 1;
                    }
                    SwarmEvent::Behaviour(RogueBehaviourEvent::Namespace(
                        request_response::Event::Message {
                            message: request_response::Message::Request { request, channel, .. },
                            ..
                        },
                    )) => {
                        let answer = match request {
                            NamespaceRequest::Members { .. } => {
                                NamespaceResponse::Members(store.book().members.clone())
                            }
                            NamespaceRequest::Hello(_) => NamespaceResponse::NotRegistered,
                            NamespaceRequest::Message(_) => {
                                NamespaceResponse::Message(MessageStatus::NotLinked)
                            }
                        };
                        let _ = swarm.behaviour_mut().namespace.send_response(channel, answer);
                    }
                    SwarmEvent::Behaviour(RogueBehaviourEvent::Kad(
                        kad::Event::OutboundQueryProgressed { id, result, step, .. },
                    )) => match result {
                        kad::QueryResult::PutRecord(result) if step.last => {
                            if let Some(waiting) = sending.remove(&id) {
                                let acked = match result {
                                    // The quorum was every peer it was sent to.
                                    Ok(_) => waiting.to,
                                    Err(kad::PutRecordError::QuorumFailed { success, .. })
                                    | Err(kad::PutRecordError::Timeout { success, .. }) => success,
                                };
                                let _ = waiting.reply.send(acked);
                            }
                        }
                        kad::QueryResult::StartProviding(_) => {
                            if let Some(reply) = registering.remove(&id) {
                                let _ = reply.send(());
                            }
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
    }
    .boxed()
}
