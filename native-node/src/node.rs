//! Starting and stopping a node on the tokio runtime. This is the only place
//! that spawns the node; everything the node does comes from `dht-core`.

use dht_core::{
    Config, ErrorCode, ListenError, Role, Running,
    libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol},
};
use libp2p_webrtc::tokio::Certificate;
use tokio::task::JoinHandle;

use crate::transport::{self, SetupError};

/// A node running on the tokio runtime: its handle, its events, and the
/// join handle of its task.
pub type NativeNode = Running<JoinHandle<()>>;

/// Why a node did not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The transports could not be set up.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// A listener could not be opened.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The node's task panicked or was cancelled.
    #[error("the node task failed")]
    Crashed(#[source] tokio::task::JoinError),
}

impl ErrorCode for NodeError {
    fn code(&self) -> &'static str {
        match self {
            NodeError::Setup(error) => error.code(),
            NodeError::Listen(error) => error.code(),
            NodeError::Crashed(_) => "node-crashed",
        }
    }
}

/// Starts a node with `keypair` (and `certificate` for WebRTC-direct, a new
/// one if `None`): builds the swarm, announces `external`, spawns the node
/// task and opens every listener in `listen`, stopping the node again if
/// one cannot be opened.
pub async fn start(
    keypair: Keypair,
    certificate: Option<Certificate>,
    config: &Config,
    role: &Role,
    listen: &[Multiaddr],
    external: &[Multiaddr],
) -> Result<NativeNode, NodeError> {
    let certificate = match certificate {
        Some(certificate) => certificate,
        None => transport::new_certificate()?,
    };
    let mut swarm = transport::swarm(keypair, config, certificate).await?;
    for address in external {
        swarm.add_external_address(address.clone());
    }
    let node = dht_core::start(swarm, config, role, tokio::spawn);
    if let Err(error) = node.listen(listen.iter().cloned()).await {
        stop(node).await?;
        return Err(error.into());
    }
    Ok(node)
}

/// Stops `node` and waits for its task; an error if the task panicked, so
/// that a process can exit with a failure a supervisor sees.
pub async fn stop(node: NativeNode) -> Result<(), NodeError> {
    node.stop().await.await.map_err(NodeError::Crashed)
}

/// Every address `node` listens on or was told it is reachable at
/// (`external`), with `/p2p/<peer id>`, ready to copy into `--bootstrap`.
pub async fn dialable_addresses(node: &NativeNode, external: &[Multiaddr]) -> Vec<Multiaddr> {
    let peer = node.peer_id();
    let mut addresses = node.handle.listen_addresses().await.unwrap_or_default();
    for address in external {
        if !addresses.contains(address) {
            addresses.push(address.clone());
        }
    }
    addresses.into_iter().map(|a| with_p2p(a, peer)).collect()
}

/// `address` ending in `/p2p/<peer>`.
pub fn with_p2p(address: Multiaddr, peer: PeerId) -> Multiaddr {
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address
    } else {
        address.with(Protocol::P2p(peer))
    }
}

#[cfg(test)]
mod tests {
    use dht_core::ErrorCode;

    use super::*;

    /// Regression: a panic in the node task ended the process with status
    /// 0, so a supervisor never restarted it.
    #[tokio::test]
    async fn a_crashed_node_task_is_an_error_with_its_code() {
        crate::transport::install_crypto_provider();
        let keypair = Keypair::generate_ed25519();
        let config = Config::default();
        let certificate = transport::new_certificate().expect("a certificate");
        let swarm = transport::swarm(keypair, &config, certificate)
            .await
            .expect("a swarm");
        // The node's task is replaced by one that panics, as a bug would.
        let node = dht_core::start(swarm, &config, &Role::ClientHelper, |task| {
            drop(task);
            tokio::spawn(async { panic!("a bug in the node") })
        });
        let error = stop(node).await.expect_err("the crash is reported");
        assert!(matches!(error, NodeError::Crashed(_)));
        assert_eq!(error.code(), "node-crashed");
    }
}
