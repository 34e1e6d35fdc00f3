//! Circuit relay v2: the limits of a node that relays for others, and how
//! many relays a node that cannot be dialed serves through.

use std::time::Duration;

use libp2p::relay;

/// Bounds of a circuit relay v2 server: what nodes nobody can dial (browser
/// tabs) may hold on it. Every one is enforced by libp2p's relay; the
/// defaults are sized for DHT traffic, whose connections live for hours and
/// carry many small requests:
///
/// - a reservation costs the relay one map entry on a connection the tab
///   keeps open anyway, so 1,024 of them fit any server;
/// - each DHT peer that talks to a tab opens its own circuit, so a tab gets
///   64 at once (libp2p's 4 would refuse the fifth querier);
/// - a circuit is cut at its duration or byte limit and simply dialed again
///   by the next request, so the limits bound what one circuit can cost, not
///   what a tab can do: 1 hour and 16 MiB, where libp2p's 2 minutes and
///   128 KiB would cut a DHT connection every few lookups.
///
/// Reservations per IP address are bounded too: each reservation rides an
/// inbound connection, of which one address may hold
/// [`super::ConnectionLimits::max_incoming_per_ip`]; libp2p's rate limits
/// (30 reservations per peer per 2 minutes, 60 per IP per minute, and the
/// same for circuits) stay on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Reservations held at once, in total. Default 1,024.
    pub max_reservations: usize,
    /// Reservations one peer may hold at once (one per connection). Default 2.
    pub max_reservations_per_peer: usize,
    /// How long a reservation lasts before the holder must renew it (the
    /// relay client renews on its own). Default 1 hour.
    pub reservation_duration: Duration,
    /// Circuits open at once, in total. Default 4,096.
    pub max_circuits: usize,
    /// Circuits one peer may be an end of at once. Default 64.
    pub max_circuits_per_peer: usize,
    /// How long one circuit may stay open. Default 1 hour.
    pub max_circuit_duration: Duration,
    /// How many bytes one circuit may carry (each way). Default 16 MiB.
    pub max_circuit_bytes: u64,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            max_reservations: 1024,
            max_reservations_per_peer: 2,
            reservation_duration: Duration::from_secs(60 * 60),
            max_circuits: 4096,
            max_circuits_per_peer: 64,
            max_circuit_duration: Duration::from_secs(60 * 60),
            max_circuit_bytes: 16 * 1024 * 1024,
        }
    }
}

impl RelayLimits {
    /// The settings that must not be zero, by name.
    pub(crate) fn counts(&self) -> [(&'static str, usize); 7] {
        let nonzero = |d: Duration| usize::from(!d.is_zero());
        [
            ("max relay reservations", self.max_reservations),
            (
                "max relay reservations per peer",
                self.max_reservations_per_peer,
            ),
            (
                "relay reservation duration",
                nonzero(self.reservation_duration),
            ),
            ("max relay circuits", self.max_circuits),
            ("max relay circuits per peer", self.max_circuits_per_peer),
            ("relay circuit duration", nonzero(self.max_circuit_duration)),
            (
                "relay circuit bytes",
                usize::from(self.max_circuit_bytes != 0),
            ),
        ]
    }

    /// libp2p's relay configuration with these limits and its rate limits.
    pub(crate) fn to_libp2p(self) -> relay::Config {
        relay::Config {
            max_reservations: self.max_reservations,
            // libp2p refuses only once a peer holds *more* than its per-peer
            // bound, so it is given one less to enforce ours exactly.
            max_reservations_per_peer: self.max_reservations_per_peer.saturating_sub(1),
            reservation_duration: self.reservation_duration,
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer.saturating_sub(1),
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            ..relay::Config::default()
        }
    }
}

/// Relays a node that nobody can dial ([`super::ServerMode::Relayed`])
/// holds reservations on at once. Default 2, so that losing one relay does
/// not unplug it.
pub const DEFAULT_RELAY_RESERVATIONS: usize = 2;
