//! The swarm of a native node: TCP, QUIC, WebRTC-direct, WebSocket and DNS
//! over tokio.

use std::time::Duration;

use anyhow::Context;
use dht_core::{
    Behaviour, Config,
    libp2p::{Swarm, SwarmBuilder, identity::Keypair, noise, tcp, yamux},
};
use libp2p_webrtc::{self as webrtc, tokio::Certificate};

/// How long a QUIC handshake may take before the dial counts as failed.
pub const QUIC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds the swarm with TCP, QUIC, WebRTC-direct, WebSocket and DNS over
/// tokio. `certificate` is the WebRTC certificate, whose hash is part of the
/// node's WebRTC address.
pub async fn swarm(
    keypair: Keypair,
    config: &Config,
    certificate: Certificate,
) -> anyhow::Result<Swarm<Behaviour>> {
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("setting up TCP")?
        .with_quic_config(|mut quic| {
            // A dial to a dead peer's UDP port gets no answer at all; give up
            // after 2 s instead of 5 s so lookups do not stall on it. A
            // handshake needs one round trip, well within that on any link.
            quic.handshake_timeout = QUIC_HANDSHAKE_TIMEOUT;
            quic
        })
        .with_other_transport(|key| webrtc::tokio::Transport::new(key.clone(), certificate))
        .context("setting up WebRTC")?
        .with_dns()
        .context("setting up DNS")?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .context("setting up WebSocket")?
        .with_behaviour(|key| Behaviour::new(key, config))
        .context("setting up the behaviour")?
        .with_swarm_config(|base| config.swarm_config(base))
        .build();
    Ok(swarm)
}

/// A new WebRTC certificate, for nodes whose WebRTC address need not
/// survive a restart.
pub fn new_certificate() -> anyhow::Result<Certificate> {
    Certificate::generate(&mut rand::rng()).context("generating a WebRTC certificate")
}

/// Chooses the process's rustls crypto provider. Both `ring` and `aws-lc-rs`
/// are linked in (by WebSocket/WebRTC and by QUIC); rustls cannot choose
/// between them by itself and the first WebRTC connection would panic.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
