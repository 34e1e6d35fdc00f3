//! Which networks this node is on, and so which addresses other peers
//! report are worth dialing from here.
//!
//! A remote peer can hand us any address: in a namespace's members list, in
//! identify. Dialing whatever it says would let it point us at hosts on our
//! own private network or loopback interface. So an address in a private or
//! loopback range is dialed only when this node is on that kind of network:
//! it listens there, or a connection over such an address has worked (a
//! browser tab, which listens nowhere, is on the network of the bootstrap
//! it reached). A node on a LAN dials LAN addresses, a test network on
//! 127.0.0.1 dials loopback ones, a node on public addresses only dials
//! neither.

use std::net::{Ipv4Addr, Ipv6Addr};

use libp2p::{Multiaddr, multiaddr::Protocol};

/// What kind of network an address is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// This host: 127.0.0.0/8, ::1, `localhost`.
    Loopback,
    /// Private, shared-address or link-local ranges (RFC 1918, RFC 6598,
    /// 169.254/16, fc00::/7, fe80::/10).
    Private,
    /// Anything else: public IPs, other DNS names, non-IP transports.
    Public,
}

/// The scope of `address`, from its first protocol.
pub(crate) fn scope(address: &Multiaddr) -> Scope {
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => scope_v4(ip),
        Some(Protocol::Ip6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => scope_v4(v4),
            None => scope_v6(ip),
        },
        Some(Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name))
            if name == "localhost" || name.ends_with(".localhost") =>
        {
            Scope::Loopback
        }
        _ => Scope::Public,
    }
}

fn scope_v4(ip: Ipv4Addr) -> Scope {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Scope::Loopback
    } else if ip.is_private() || ip.is_link_local() || (a == 100 && (64..128).contains(&b)) {
        Scope::Private
    } else {
        Scope::Public
    }
}

fn scope_v6(ip: Ipv6Addr) -> Scope {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Scope::Loopback
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80 {
        Scope::Private
    } else {
        Scope::Public
    }
}

/// The kinds of network this node listens on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reach {
    loopback: bool,
    private: bool,
}

impl Reach {
    /// The reach of a node listening on `listening`.
    pub(crate) fn of<'a>(listening: impl IntoIterator<Item = &'a Multiaddr>) -> Self {
        let mut reach = Self::default();
        for address in listening {
            match scope(address) {
                Scope::Loopback => reach.loopback = true,
                Scope::Private => reach.private = true,
                Scope::Public => {}
            }
        }
        reach
    }

    /// This reach and the network of `address`, over which a connection
    /// worked.
    pub(crate) fn with(self, address: &Multiaddr) -> Self {
        self.union(Self::of([address]))
    }

    /// Both reaches.
    pub(crate) fn union(self, other: Self) -> Self {
        Self {
            loopback: self.loopback || other.loopback,
            private: self.private || other.private,
        }
    }

    /// Whether a remote peer's `address` is worth dialing from here.
    pub(crate) fn allows(&self, address: &Multiaddr) -> bool {
        match scope(address) {
            Scope::Loopback => self.loopback,
            Scope::Private => self.private,
            Scope::Public => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_are_classified_by_range() {
        for (text, expected) in [
            ("/ip4/127.0.0.1/tcp/1", Scope::Loopback),
            ("/ip4/127.9.9.9/tcp/1", Scope::Loopback),
            ("/ip6/::1/tcp/1", Scope::Loopback),
            ("/dns4/localhost/tcp/1", Scope::Loopback),
            ("/ip4/10.1.2.3/tcp/1", Scope::Private),
            ("/ip4/172.16.0.1/tcp/1", Scope::Private),
            ("/ip4/192.168.1.1/udp/1/quic-v1", Scope::Private),
            ("/ip4/100.64.0.1/tcp/1", Scope::Private),
            ("/ip4/169.254.1.1/tcp/1", Scope::Private),
            ("/ip6/fd00::1/tcp/1", Scope::Private),
            ("/ip6/fe80::1/tcp/1", Scope::Private),
            ("/ip6/::ffff:192.168.1.1/tcp/1", Scope::Private),
            ("/ip4/192.0.2.1/tcp/1", Scope::Public),
            ("/ip4/172.32.0.1/tcp/1", Scope::Public),
            ("/ip6/2001:db8::1/tcp/1", Scope::Public),
            ("/dns4/example.org/tcp/443/wss", Scope::Public),
            ("/memory/7", Scope::Public),
        ] {
            assert_eq!(scope(&addr(text)), expected, "{text}");
        }
    }

    #[test]
    fn a_node_dials_private_and_loopback_ranges_only_when_it_is_on_them() {
        let public = Reach::of(&[addr("/ip4/192.0.2.7/tcp/4001")]);
        assert!(public.allows(&addr("/ip4/192.0.2.1/tcp/1")));
        assert!(!public.allows(&addr("/ip4/10.0.0.1/tcp/22")));
        assert!(!public.allows(&addr("/ip4/127.0.0.1/tcp/6379")));

        let lan = Reach::of(&[addr("/ip4/192.168.1.2/tcp/1"), addr("/ip4/127.0.0.1/tcp/1")]);
        assert!(lan.allows(&addr("/ip4/10.0.0.1/tcp/1")));
        assert!(lan.allows(&addr("/ip4/127.0.0.1/tcp/1")));

        let local = Reach::of(&[addr("/ip4/127.0.0.1/tcp/1")]);
        assert!(local.allows(&addr("/ip4/127.0.0.2/tcp/1")));
        assert!(!local.allows(&addr("/ip4/192.168.1.1/tcp/1")));

        let memory = Reach::of(&[addr("/memory/1")]);
        assert!(memory.allows(&addr("/memory/2")));
        assert!(!memory.allows(&addr("/ip4/127.0.0.1/tcp/1")));

        // A tab listens nowhere; it is on the network of its bootstrap.
        let tab = Reach::default().with(&addr("/ip4/127.0.0.1/tcp/4002/ws"));
        assert!(tab.allows(&addr("/ip4/127.0.0.1/tcp/5000/ws")));
        assert!(!tab.allows(&addr("/ip4/10.0.0.1/tcp/1")));
    }
}
