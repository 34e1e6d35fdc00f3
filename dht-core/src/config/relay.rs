//! Circuit relay v2: the limits of a node that relays for others, and how
//! many relays a node that cannot be dialed serves through.

use std::time::Duration;

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
/// - circuits are opened at a DHT's pace: every lookup that meets a relayed
///   node opens one, so a peer may open 300 a minute and an IP address 1,200
///   (libp2p's 30 per peer per 2 minutes and 60 per IP per minute refuse a
///   busy node, and every tab of a household behind one address, within
///   a minute).
///
/// Reservations per IP address are bounded too: each reservation rides an
/// inbound connection, of which one address may hold
/// [`super::ConnectionLimits::max_incoming_per_ip`], and an address may take
/// 60 new reservations a minute (libp2p's figure, configurable); libp2p's 30
/// per peer per 2 minutes stays on.
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
    /// Circuits one peer may open per minute. Default 300.
    pub circuits_per_peer_per_minute: u32,
    /// Circuits one IP address may open per minute. Default 1,200.
    pub circuits_per_ip_per_minute: u32,
    /// Reservations one IP address may take per minute (renewals
    /// included). Default 60.
    pub reservations_per_ip_per_minute: u32,
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
            circuits_per_peer_per_minute: 300,
            circuits_per_ip_per_minute: 1200,
            reservations_per_ip_per_minute: 60,
        }
    }
}

impl RelayLimits {
    /// The settings that must not be zero, by name.
    pub(crate) fn counts(&self) -> [(&'static str, usize); 10] {
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
            (
                "relay circuits per peer per minute",
                self.circuits_per_peer_per_minute as usize,
            ),
            (
                "relay circuits per IP per minute",
                self.circuits_per_ip_per_minute as usize,
            ),
            (
                "relay reservations per IP per minute",
                self.reservations_per_ip_per_minute as usize,
            ),
        ]
    }

    /// libp2p's relay configuration with these limits and its rate limits.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn to_libp2p(self) -> libp2p::relay::Config {
        use std::num::NonZeroU32;
        let per_minute = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let minute = Duration::from_secs(60);
        libp2p::relay::Config {
            max_reservations: self.max_reservations,
            // libp2p refuses only once a peer holds *more* than its per-peer
            // bound, so it is given one less to enforce ours exactly.
            max_reservations_per_peer: self.max_reservations_per_peer.saturating_sub(1),
            reservation_duration: self.reservation_duration,
            max_circuits: self.max_circuits,
            max_circuits_per_peer: self.max_circuits_per_peer.saturating_sub(1),
            max_circuit_duration: self.max_circuit_duration,
            max_circuit_bytes: self.max_circuit_bytes,
            // Filled below: libp2p's 30 reservations per peer per 2 minutes
            // and our per-IP and circuit rates.
            circuit_src_rate_limiters: Vec::new(),
            reservation_rate_limiters: Vec::new(),
        }
        .reservation_rate_per_peer(per_minute(30), 2 * minute)
        .reservation_rate_per_ip(per_minute(self.reservations_per_ip_per_minute), minute)
        .circuit_src_per_peer(per_minute(self.circuits_per_peer_per_minute), minute)
        .circuit_src_per_ip(per_minute(self.circuits_per_ip_per_minute), minute)
    }
}

/// How long a dial through a relay may take, handshakes included, before it
/// fails. A circuit takes about four round trips through the relay, well
/// within this on any link; but libp2p-relay 0.22's server drops circuit
/// handshakes beyond 10 at once to one relayed node without answering, and
/// their dials would otherwise wait for its 60 s stream timeout, stalling
/// every lookup that meets a busy tab. Hosts put it on their relay
/// transport (`outbound_timeout`).
pub const CIRCUIT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Relays a node that nobody can dial ([`super::ServerMode::Relayed`])
/// holds reservations on at once. Default 2, so that losing one relay does
/// not unplug it.
pub const DEFAULT_RELAY_RESERVATIONS: usize = 2;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::{Config, ErrorCode};

    #[test]
    fn the_relay_enforces_exactly_the_limits_given() {
        let limits = RelayLimits::default();
        let relay = limits.to_libp2p();
        assert_eq!(relay.max_reservations, 1024);
        // libp2p refuses above its per-peer figures, not at them.
        assert_eq!(relay.max_reservations_per_peer + 1, 2);
        assert_eq!(relay.max_circuits_per_peer + 1, 64);
        assert_eq!(relay.max_circuit_duration, Duration::from_secs(3600));
        assert_eq!(relay.max_circuit_bytes, 16 * 1024 * 1024);
        assert_eq!(
            relay.circuit_src_rate_limiters.len(),
            2,
            "per peer and per IP"
        );
        assert_eq!(
            relay.reservation_rate_limiters.len(),
            2,
            "per peer and per IP"
        );
    }

    #[test]
    fn a_relay_limit_of_zero_is_refused_by_name() {
        let limits = RelayLimits {
            circuits_per_ip_per_minute: 0,
            ..RelayLimits::default()
        };
        let error = Config::builder()
            .relay_server(Some(limits))
            .build()
            .expect_err("zero is refused");
        assert_eq!(error.code(), "zero-setting");
        assert_eq!(
            error.to_string(),
            "relay circuits per IP per minute must not be zero"
        );
    }
}
