//! The swarm of a native node: TCP, QUIC, WebRTC-direct, WebSocket and DNS
//! over tokio.

use std::{error::Error, time::Duration};

use dht_core::{
    Behaviour, CIRCUIT_DIAL_TIMEOUT, Config, ErrorCode,
    libp2p::{
        Swarm, SwarmBuilder, Transport, core::upgrade::Version, identity::Keypair, noise, relay,
        tcp, yamux,
    },
};
use libp2p_webrtc::{self as webrtc, tokio::Certificate};

/// How long a QUIC handshake may take before the dial counts as failed.
pub const QUIC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a TCP dial may take, connection and noise and yamux handshakes
/// together. Without it a dial to an address whose packets are dropped (a
/// peer behind a partition or a firewall) waits for the kernel's SYN
/// retries, about two minutes, and every lookup that meets such a peer
/// waits with it. Four round trips fit in it on any link.
pub const TCP_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A transport that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up {what}")]
pub struct SetupError {
    /// Which part of the stack.
    pub what: &'static str,
    /// What went wrong.
    #[source]
    pub source: Box<dyn Error + Send + Sync>,
}

impl ErrorCode for SetupError {
    fn code(&self) -> &'static str {
        "transport-setup"
    }
}

fn failed<E: Into<Box<dyn Error + Send + Sync>>>(
    what: &'static str,
) -> impl FnOnce(E) -> SetupError {
    move |error| SetupError {
        what,
        source: error.into(),
    }
}

/// Builds the swarm with TCP, QUIC, WebRTC-direct, WebSocket, DNS and
/// circuit relay v2 (dialing and listening through relays) over tokio.
/// `certificate` is the WebRTC certificate, whose hash is part of the
/// node's WebRTC address.
pub async fn swarm(
    keypair: Keypair,
    config: &Config,
    certificate: Certificate,
) -> Result<Swarm<Behaviour>, SetupError> {
    let (relay_transport, relay_behaviour) = relay::client::new(keypair.public().to_peer_id());
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_quic_config(|mut quic| {
            // A dial to a dead peer's UDP port gets no answer at all; give up
            // after 2 s instead of 5 s so lookups do not stall on it. A
            // handshake needs one round trip, well within that on any link.
            quic.handshake_timeout = QUIC_HANDSHAKE_TIMEOUT;
            quic
        })
        // The relay client by hand rather than `with_relay_client`, for
        // its dial timeout (see `CIRCUIT_DIAL_TIMEOUT`); ahead of WebRTC,
        // whose dialer takes a circuit address through a WebRTC relay
        // address for its own, reaches the relay and fails the whole dial
        // with the relay's peer id.
        .with_other_transport(|key| {
            // By hand rather than `with_tcp`, for its dial timeout.
            Ok::<_, Box<dyn Error + Send + Sync>>(
                tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .outbound_timeout(TCP_DIAL_TIMEOUT),
            )
        })
        .map_err(failed("TCP"))?
        .with_other_transport(|key| {
            Ok::<_, Box<dyn Error + Send + Sync>>(
                relay_transport
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default())
                    .outbound_timeout(CIRCUIT_DIAL_TIMEOUT),
            )
        })
        .map_err(failed("the relay client"))?
        .with_other_transport(|key| webrtc::tokio::Transport::new(key.clone(), certificate))
        .map_err(failed("WebRTC"))?
        .with_dns()
        .map_err(failed("DNS"))?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .map_err(failed("WebSocket"))?
        .with_behaviour(|key| Behaviour::with_relay_client(key, config, relay_behaviour))
        .map_err(failed("the behaviour"))?
        .with_swarm_config(|base| config.swarm_config(base))
        .build();
    Ok(swarm)
}

/// A new WebRTC certificate, for nodes whose WebRTC address need not
/// survive a restart.
pub fn new_certificate() -> Result<Certificate, SetupError> {
    Certificate::generate(&mut rand::rng()).map_err(failed("a WebRTC certificate"))
}

/// Chooses the process's rustls crypto provider. Both `ring` and `aws-lc-rs`
/// are linked in (by WebSocket/WebRTC and by QUIC); rustls cannot choose
/// between them by itself and the first WebRTC connection would panic.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
