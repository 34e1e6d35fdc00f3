//! What every host does with a node: start it on its executor, open its
//! listeners, and wait until it has joined the DHT.
//!
//! A host builds a [`Swarm`] with its own transports and executor around
//! [`Behaviour`], then calls [`start`] with a function that spawns the
//! node's task on that executor (`tokio::spawn`,
//! `wasm_bindgen_futures::spawn_local`, a thread pool's `spawn_ok`). What
//! that function returns (a join handle, or nothing) is kept as
//! [`Running::task`].

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use futures_timer::Delay;
use libp2p::{Multiaddr, PeerId, Swarm};

use crate::{
    behaviour::Behaviour,
    config::Config,
    error::{DialFailure, JoinError, ListenError},
    event::Event,
    handle::{EventStream, NodeHandle},
    node::Node,
    role::Role,
};

/// The future that runs a node, boxed for the host's executor. It is `Send`
/// on native targets; in the browser it is not, and runs on
/// `spawn_local`.
#[cfg(not(target_arch = "wasm32"))]
pub type NodeTask = futures::future::BoxFuture<'static, ()>;

/// The future that runs a node, boxed for the host's executor. It is `Send`
/// on native targets; in the browser it is not, and runs on
/// `spawn_local`.
#[cfg(target_arch = "wasm32")]
pub type NodeTask = futures::future::LocalBoxFuture<'static, ()>;

#[cfg(not(target_arch = "wasm32"))]
fn boxed(node: Node) -> NodeTask {
    node.run().boxed()
}

#[cfg(target_arch = "wasm32")]
fn boxed(node: Node) -> NodeTask {
    node.run().boxed_local()
}

/// A node that was started: its handle, its events from the very first,
/// and what the host's spawn function returned.
#[derive(Debug)]
pub struct Running<T = ()> {
    /// Drives the node.
    pub handle: NodeHandle,
    /// Every event since the node started. Consumed by
    /// [`joined`](Self::joined) up to the join; the host reads the rest.
    pub events: EventStream,
    /// What the spawn function returned, such as a join handle.
    pub task: T,
    joins: bool,
}

/// Starts a node with `config` in `role` around `swarm`, built with
/// [`Behaviour::new`] from the same `config`; `spawn` runs its task on the
/// host's executor.
pub fn start<T>(
    swarm: Swarm<Behaviour>,
    config: &Config,
    role: &Role,
    spawn: impl FnOnce(NodeTask) -> T,
) -> Running<T> {
    let joins = !config.bootstrap_peers().is_empty();
    let (mut node, handle) = Node::new(swarm, config, role);
    let events = node.subscribe();
    let task = spawn(boxed(node));
    Running {
        handle,
        events,
        task,
        joins,
    }
}

impl<T> Running<T> {
    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.handle.local_peer_id()
    }

    /// Opens a listener on each of `addresses`, in order; returns the first
    /// concrete address of each (a port 0 resolved), or the first failure.
    pub async fn listen(
        &self,
        addresses: impl IntoIterator<Item = Multiaddr>,
    ) -> Result<Vec<Multiaddr>, ListenError> {
        let mut bound = Vec::new();
        for address in addresses {
            bound.push(self.handle.listen_on(address).await?);
        }
        Ok(bound)
    }

    /// Waits until the node has joined the DHT: its first bootstrap lookup
    /// finished. Returns the size of its routing table then; at once (0)
    /// for a node without bootstrap peers, which starts a network.
    pub async fn joined(&mut self, within: Duration) -> Result<usize, JoinError> {
        self.joined_observing(within, |_| {}).await
    }

    /// Like [`joined`](Self::joined), handing every event it consumes to
    /// `observe` first, for hosts that show all of them.
    pub async fn joined_observing(
        &mut self,
        within: Duration,
        mut observe: impl FnMut(&Event),
    ) -> Result<usize, JoinError> {
        if !self.joins {
            return Ok(0);
        }
        let mut unreachable: Vec<(PeerId, DialFailure)> = Vec::new();
        let outcome = {
            let events = &mut self.events;
            let unreachable = &mut unreachable;
            let wait = async move {
                while let Some(event) = events.next().await {
                    observe(&event);
                    match event {
                        Event::Bootstrapped { routing_table_size } => {
                            return Ok(routing_table_size);
                        }
                        Event::BootstrapPeerUnreachable { peer, error, .. } => {
                            unreachable.retain(|(p, _)| *p != peer);
                            unreachable.push((peer, error));
                        }
                        _ => {}
                    }
                }
                Err(JoinError::NodeStopped)
            };
            futures::select! {
                joined = wait.fuse() => Some(joined),
                () = Delay::new(within).fuse() => None,
            }
        };
        outcome.unwrap_or(Err(JoinError::Timeout {
            within,
            unreachable,
        }))
    }

    /// The same node with `f` applied to what the spawn function returned;
    /// `map_task(drop)` detaches it.
    pub fn map_task<U>(self, f: impl FnOnce(T) -> U) -> Running<U> {
        Running {
            handle: self.handle,
            events: self.events,
            task: f(self.task),
            joins: self.joins,
        }
    }

    /// Stops the node and returns what the spawn function returned, for
    /// the host to wait on.
    pub async fn stop(self) -> T {
        self.handle.shutdown().await;
        self.task
    }
}
