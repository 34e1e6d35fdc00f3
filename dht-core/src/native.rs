//! What only native hosts run: relaying for others (circuit relay v2),
//! reachability tests asked for and answered (AutoNAT v2: a peer dials this
//! node back at an address it was seen at), and hole punching (DCUtR: two
//! peers linked through a relay dial each other at once).
//!
//! A browser can accept no connection, so it can neither relay, be dialed
//! back nor punch holes: its build has one dummy behaviour in the place of
//! all of these (one costs the module less than several).
//!
//! Bounds (every one of them against what a peer can make this node do;
//! the relay's are [`crate::RelayLimits`]):
//! - the dial-back server answers at most 10 requests at once per
//!   connection (libp2p's bound), each given 10 s, and dials back a
//!   different IP than the one the requester connects from only after it
//!   sent 30–100 KB, so this node cannot be used cheaply to dial a third
//!   host;
//! - the tests this node asks for cover at most [`MAX_CANDIDATES`]
//!   addresses over its lifetime: peers report the address they see this
//!   node at (identify), and a lying one could report thousands;
//! - DCUtR tries a direct connection at most 3 times per relayed
//!   connection, with the addresses of one 4 KiB message.

use std::time::Duration;

/// How often the AutoNAT client asks a peer to test addresses not tested
/// yet. The first test goes out this long after the first address to test
/// was reported.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Addresses this node has others test at most, over its lifetime.
pub const MAX_CANDIDATES: usize = 16;

#[cfg(not(target_arch = "wasm32"))]
pub use host::{HolePunch, NativeBehaviour, NativeEvent, ProbeClient, ProbeServer};

/// None in the browser.
#[cfg(target_arch = "wasm32")]
pub type NativeBehaviour = libp2p::swarm::dummy::Behaviour;

/// What a node needs of these behaviours: a relay server with `relay`
/// limits, reachability tests asked for (`client`) and answered
/// (`server`), hole punching (`hole_punch`, for nodes that reach peers
/// through relays); `None` if nothing, and always in the browser.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn behaviour(
    local: libp2p::PeerId,
    relay: Option<crate::config::RelayLimits>,
    client: bool,
    server: bool,
    hole_punch: bool,
) -> Option<NativeBehaviour> {
    let needed = relay.is_some() || client || server || hole_punch;
    needed.then(|| NativeBehaviour {
        relay: relay
            .map(|limits| libp2p::relay::Behaviour::new(local, limits.to_libp2p()))
            .into(),
        probe_client: client.then(ProbeClient::new).into(),
        probe_server: server.then(ProbeServer::default).into(),
        hole_punch: hole_punch.then(|| HolePunch::new(local)).into(),
    })
}

/// See the native definition. The configuration refuses a relay server in
/// the browser.
#[cfg(target_arch = "wasm32")]
pub(crate) fn behaviour(
    _local: libp2p::PeerId,
    _relay: Option<crate::config::RelayLimits>,
    _client: bool,
    _server: bool,
    _hole_punch: bool,
) -> Option<NativeBehaviour> {
    None
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    use std::task::{Context, Poll};

    use libp2p::{
        Multiaddr, PeerId, autonat,
        core::{Endpoint, transport::PortUse},
        dcutr,
        multiaddr::Protocol,
        relay,
        swarm::{
            ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, NewExternalAddrCandidate,
            THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, behaviour::toggle::Toggle,
        },
    };

    use super::{MAX_CANDIDATES, PROBE_INTERVAL};

    /// The relay server, reachability tests asked for and answered, and
    /// hole punching: the parts a node needs of them.
    #[derive(NetworkBehaviour)]
    #[behaviour(prelude = "libp2p::swarm::derive_prelude", to_swarm = "NativeEvent")]
    #[allow(missing_debug_implementations)]
    pub struct NativeBehaviour {
        pub(crate) relay: Toggle<relay::Behaviour>,
        pub(crate) probe_client: Toggle<ProbeClient>,
        pub(crate) probe_server: Toggle<ProbeServer>,
        pub(crate) hole_punch: Toggle<HolePunch>,
    }

    /// What [`NativeBehaviour`] reports.
    #[derive(Debug)]
    pub enum NativeEvent {
        /// The relay server's event.
        Relay(relay::Event),
        /// A dial-back test this node asked for ended.
        Tested(autonat::v2::client::Event),
        /// This node dialed a peer back.
        Served(autonat::v2::server::Event),
        /// A hole punch ended.
        HolePunch(dcutr::Event),
    }

    impl From<relay::Event> for NativeEvent {
        fn from(event: relay::Event) -> Self {
            Self::Relay(event)
        }
    }

    impl From<autonat::v2::client::Event> for NativeEvent {
        fn from(event: autonat::v2::client::Event) -> Self {
            Self::Tested(event)
        }
    }

    impl From<autonat::v2::server::Event> for NativeEvent {
        fn from(event: autonat::v2::server::Event) -> Self {
            Self::Served(event)
        }
    }

    impl From<dcutr::Event> for NativeEvent {
        fn from(event: dcutr::Event) -> Self {
            Self::HolePunch(event)
        }
    }

    /// libp2p's AutoNAT v2 server: dials peers back at the address they
    /// ask to have tested.
    pub type ProbeServer = autonat::v2::server::Behaviour;

    /// libp2p's DCUtR.
    pub type HolePunch = dcutr::Behaviour;

    /// libp2p's AutoNAT v2 client, handed only the first [`MAX_CANDIDATES`]
    /// IP addresses peers report for this node (it keeps every one it is
    /// handed, and asks peers to test each), and never a circuit address
    /// (a relay's, which says nothing of this node's own).
    #[allow(missing_debug_implementations)]
    pub struct ProbeClient {
        inner: autonat::v2::client::Behaviour,
        candidates: Vec<Multiaddr>,
    }

    impl ProbeClient {
        pub(crate) fn new() -> Self {
            let config = autonat::v2::client::Config::default()
                .with_probe_interval(PROBE_INTERVAL)
                .with_max_candidates(MAX_CANDIDATES);
            Self {
                inner: autonat::v2::client::Behaviour::new(rand::make_rng(), config),
                candidates: Vec::new(),
            }
        }

        /// Whether `address` may be handed on: an IP address, seen before
        /// or new with room left.
        fn admit(&mut self, address: &Multiaddr) -> bool {
            let ip = matches!(
                address.iter().next(),
                Some(Protocol::Ip4(_) | Protocol::Ip6(_))
            );
            if !ip || address.iter().any(|p| p == Protocol::P2pCircuit) {
                return false;
            }
            if self.candidates.contains(address) {
                return true;
            }
            if self.candidates.len() >= MAX_CANDIDATES {
                tracing::debug!(%address, "not testing: enough addresses tested");
                return false;
            }
            self.candidates.push(address.clone());
            true
        }
    }

    impl NetworkBehaviour for ProbeClient {
        type ConnectionHandler = THandler<autonat::v2::client::Behaviour>;
        type ToSwarm = autonat::v2::client::Event;

        fn handle_established_inbound_connection(
            &mut self,
            connection: ConnectionId,
            peer: PeerId,
            local: &Multiaddr,
            remote: &Multiaddr,
        ) -> Result<THandler<Self>, ConnectionDenied> {
            self.inner
                .handle_established_inbound_connection(connection, peer, local, remote)
        }

        fn handle_established_outbound_connection(
            &mut self,
            connection: ConnectionId,
            peer: PeerId,
            address: &Multiaddr,
            role_override: Endpoint,
            port_use: PortUse,
        ) -> Result<THandler<Self>, ConnectionDenied> {
            self.inner.handle_established_outbound_connection(
                connection,
                peer,
                address,
                role_override,
                port_use,
            )
        }

        fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
            if let FromSwarm::NewExternalAddrCandidate(NewExternalAddrCandidate { addr }) = &event
                && !self.admit(addr)
            {
                return;
            }
            self.inner.on_swarm_event(event);
        }

        fn on_connection_handler_event(
            &mut self,
            peer: PeerId,
            connection: ConnectionId,
            event: THandlerOutEvent<Self>,
        ) {
            self.inner
                .on_connection_handler_event(peer, connection, event);
        }

        fn poll(
            &mut self,
            cx: &mut Context<'_>,
        ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
            self.inner.poll(cx)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_the_first_ip_addresses_reported_are_tested_and_never_a_circuit() {
            let mut client = ProbeClient::new();
            let circuit: Multiaddr = "/ip4/198.51.100.1/tcp/1/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK/p2p-circuit"
                .parse()
                .unwrap();
            assert!(!client.admit(&circuit));
            let no_ip: Multiaddr = "/p2p/12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
                .parse()
                .unwrap();
            assert!(!client.admit(&no_ip));
            let addresses: Vec<Multiaddr> = (0..MAX_CANDIDATES as u16 + 5)
                .map(|port| {
                    format!("/ip4/198.51.100.7/tcp/{}", port + 1)
                        .parse()
                        .unwrap()
                })
                .collect();
            let admitted: Vec<bool> = addresses.iter().map(|a| client.admit(a)).collect();
            assert!(admitted[..MAX_CANDIDATES].iter().all(|a| *a));
            assert!(admitted[MAX_CANDIDATES..].iter().all(|a| !*a));
            // One already admitted is still handed on when reported again:
            // how often an address is reported is what ranks it.
            assert!(client.admit(&addresses[0]));
        }
    }
}
