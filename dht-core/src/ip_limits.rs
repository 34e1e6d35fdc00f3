//! A cap on the inbound connections from one IP address.
//!
//! `libp2p::connection_limits` bounds connections in total and per peer
//! id, but peer ids cost nothing: one host with a few thousand throwaway
//! identities would take every slot of a bootstrap and keep honest peers
//! out. This behaviour counts the inbound connections of each source
//! address, pending and established alike, and refuses one more before its
//! handshake starts. An IPv6 source counts by its /64, which one host
//! usually owns whole. Loopback connections come from this host's own
//! processes and are exempt unless told otherwise (tests of the limit turn
//! the exemption off). Outbound connections are not limited: this node
//! chose to make them.

use std::{
    collections::HashMap,
    convert::Infallible,
    fmt,
    net::{IpAddr, Ipv6Addr},
    task::{Context, Poll},
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    multiaddr::Protocol,
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure,
        NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
    },
};

/// Where an inbound connection comes from, as counted: an IPv4 address or
/// an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    /// The source of a connection from `address`, if it is an IP address
    /// that counts (loopback ones count only with `count_loopback`).
    fn of(address: &Multiaddr, count_loopback: bool) -> Option<Self> {
        let ip = remote_ip(address)?;
        if ip.is_loopback() && !count_loopback {
            return None;
        }
        Some(match ip {
            IpAddr::V4(ip) => Source::V4(ip.octets()),
            IpAddr::V6(ip) => Source::V6(prefix_64(ip)),
        })
    }
}

/// The IP address a connection's remote address starts with (an
/// IPv4-mapped IPv6 address as IPv4), if it starts with one.
pub(crate) fn remote_ip(address: &Multiaddr) -> Option<IpAddr> {
    match address.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        }),
        _ => None,
    }
}

fn prefix_64(ip: Ipv6Addr) -> [u8; 8] {
    let octets = ip.octets();
    let mut prefix = [0; 8];
    prefix.copy_from_slice(&octets[..8]);
    prefix
}

/// The refusal of a connection from an address that has its share.
#[derive(Debug, Clone, Copy)]
pub struct TooManyFromOneAddress {
    /// The cap.
    pub limit: u32,
}

impl fmt::Display for TooManyFromOneAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this address already has {} inbound connections, the limit per address",
            self.limit
        )
    }
}

impl std::error::Error for TooManyFromOneAddress {}

/// Caps inbound connections per source address; see the [module docs](self).
#[derive(Debug)]
pub struct Behaviour {
    limit: u32,
    count_loopback: bool,
    connections: HashMap<ConnectionId, Source>,
    per_source: HashMap<Source, u32>,
}

impl Behaviour {
    /// At most `limit` inbound connections per source; loopback ones count
    /// only with `count_loopback`.
    pub fn new(limit: u32, count_loopback: bool) -> Self {
        Self {
            limit,
            count_loopback,
            connections: HashMap::new(),
            per_source: HashMap::new(),
        }
    }

    fn forget(&mut self, connection: &ConnectionId) {
        if let Some(source) = self.connections.remove(connection)
            && let Some(count) = self.per_source.get_mut(&source)
        {
            *count -= 1;
            if *count == 0 {
                self.per_source.remove(&source);
            }
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(source) = Source::of(remote, self.count_loopback) else {
            return Ok(());
        };
        let count = self.per_source.entry(source).or_default();
        if *count >= self.limit {
            return Err(ConnectionDenied::new(TooManyFromOneAddress {
                limit: self.limit,
            }));
        }
        *count += 1;
        self.connections.insert(connection, source);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.forget(&connection_id)
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(address: &str) -> Multiaddr {
        address.parse().unwrap()
    }

    fn open(limits: &mut Behaviour, id: usize, remote: &str) -> bool {
        let local = from("/ip4/192.0.2.9/tcp/4001");
        limits
            .handle_pending_inbound_connection(
                ConnectionId::new_unchecked(id),
                &local,
                &from(remote),
            )
            .is_ok()
    }

    /// Regression: one address with throwaway peer ids took every slot.
    #[test]
    fn one_address_gets_its_share_and_others_still_get_in() {
        let mut limits = Behaviour::new(3, false);
        let flood: Vec<bool> = (0..10)
            .map(|id| open(&mut limits, id, "/ip4/203.0.113.5/tcp/40000"))
            .collect();
        assert_eq!(flood.iter().filter(|accepted| **accepted).count(), 3);
        assert!(open(&mut limits, 100, "/ip4/203.0.113.6/tcp/1"));
    }

    #[test]
    fn a_closed_or_failed_connection_frees_its_slot() {
        let mut limits = Behaviour::new(1, false);
        assert!(open(&mut limits, 1, "/ip4/203.0.113.5/tcp/1"));
        assert!(!open(&mut limits, 2, "/ip4/203.0.113.5/tcp/2"));
        limits.forget(&ConnectionId::new_unchecked(1));
        assert!(open(&mut limits, 3, "/ip4/203.0.113.5/tcp/3"));
        assert!(limits.per_source.values().all(|n| *n == 1));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_loopback_only_when_asked() {
        let mut limits = Behaviour::new(1, false);
        assert!(open(&mut limits, 1, "/ip6/2001:db8:1:2::1/tcp/1"));
        assert!(!open(&mut limits, 2, "/ip6/2001:db8:1:2::ffff/tcp/1"));
        assert!(open(&mut limits, 3, "/ip6/2001:db8:1:3::1/tcp/1"));
        for id in 10..20 {
            assert!(open(&mut limits, id, "/ip4/127.0.0.1/tcp/1"));
        }
        assert!(open(&mut limits, 30, "/memory/5"));

        let mut counted = Behaviour::new(1, true);
        assert!(open(&mut counted, 1, "/ip4/127.0.0.1/tcp/1"));
        assert!(!open(&mut counted, 2, "/ip4/127.0.0.1/tcp/2"));
    }
}
