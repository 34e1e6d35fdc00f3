//! Hosting the core on tokio: the transports, the swarm, the node task.
//!
//! This is the only place that knows the runtime; everything the node does
//! comes from `dht-core`.

use dht_core::{
    Config, EventStream, Node, NodeHandle, Role,
    libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol},
};
use libp2p_webrtc::tokio::Certificate;
use tokio::task::JoinHandle;

use native_node::transport;

use crate::exit::Failure;

/// A node running on the tokio runtime.
pub(crate) struct Running {
    pub(crate) handle: NodeHandle,
    pub(crate) events: EventStream,
    pub(crate) task: JoinHandle<()>,
}

impl Running {
    /// Stops the node and waits for its task to end.
    pub(crate) async fn stop(self) {
        self.handle.shutdown().await;
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the node task failed");
        }
    }

    /// Every address the node listens on or was told it is reachable at,
    /// with `/p2p/<peer id>`, ready to copy into `--bootstrap`.
    pub(crate) async fn dialable_addresses(&self, external: &[Multiaddr]) -> Vec<Multiaddr> {
        let peer = self.handle.local_peer_id();
        let mut addresses = self.handle.listen_addresses().await.unwrap_or_default();
        addresses.extend(external.iter().cloned());
        addresses.dedup();
        addresses.into_iter().map(|a| with_p2p(a, peer)).collect()
    }
}

/// Starts a node: builds the swarm, spawns the node task, opens the
/// listeners (failing if any cannot be opened), announces `external`.
pub(crate) async fn start(
    keypair: Keypair,
    certificate: Option<Certificate>,
    config: Config,
    role: Role,
    listen: &[Multiaddr],
    external: &[Multiaddr],
) -> Result<Running, Failure> {
    let certificate = match certificate {
        Some(certificate) => certificate,
        None => transport::new_certificate()?,
    };
    let mut swarm = transport::swarm(keypair, &config, certificate).await?;
    for address in external {
        swarm.add_external_address(address.clone());
    }
    let (mut node, handle) = Node::new(swarm, config, role);
    let events = node.subscribe();
    let task = tokio::spawn(node.run());
    let running = Running {
        handle,
        events,
        task,
    };
    for address in listen {
        if let Err(error) = running.handle.listen_on(address.clone()).await {
            running.stop().await;
            return Err(Failure::runtime(anyhow::anyhow!(error)));
        }
    }
    Ok(running)
}

/// `address` ending in `/p2p/<peer>`.
pub(crate) fn with_p2p(address: Multiaddr, peer: PeerId) -> Multiaddr {
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address
    } else {
        address.with(Protocol::P2p(peer))
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stopping");
}
