//! Per-source shares of the store, so that one peer, or one network of
//! throwaway peer ids, cannot fill it.
//!
//! Every record and registration a peer makes this node store is charged to
//! that peer and to its subnet (an IPv4 /24 or an IPv6 /48, the ranges one
//! operator typically holds whole) until it expires, is replaced or
//! removed. A source over its [`Quota`] gets [`StoreError::SourceQuota`],
//! and Kademlia then does not acknowledge the write. Loopback and
//! non-IP connections (in-memory tests) have no subnet, so only the peer
//! share applies to them, unless loopback counting is configured.

use std::{collections::HashMap, fmt, net::IpAddr};

use libp2p::{Multiaddr, PeerId};

use super::StoreError;
use crate::ip_limits::remote_ip;

/// How much of the store one source may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Value records.
    pub records: usize,
    /// Bytes of keys and values.
    pub bytes: usize,
    /// Namespace registrations (provider records).
    pub registrations: usize,
}

/// Where a write comes from: the peer that sent it and its subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// The sending peer.
    pub peer: PeerId,
    /// Its subnet, if it counts (see the module docs).
    pub subnet: Option<Subnet>,
}

/// An IPv4 /24 or an IPv6 /48.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subnet {
    /// The first three octets of an IPv4 address.
    V4([u8; 3]),
    /// The first six octets of an IPv6 address.
    V6([u8; 6]),
}

impl Subnet {
    /// The subnet of a connection from `address`; loopback addresses have
    /// one only with `count_loopback`.
    pub fn of(address: &Multiaddr, count_loopback: bool) -> Option<Self> {
        let ip = remote_ip(address)?;
        if ip.is_loopback() && !count_loopback {
            return None;
        }
        Some(match ip {
            IpAddr::V4(ip) => {
                let [a, b, c, _] = ip.octets();
                Subnet::V4([a, b, c])
            }
            IpAddr::V6(ip) => {
                let mut prefix = [0; 6];
                prefix.copy_from_slice(&ip.octets()[..6]);
                Subnet::V6(prefix)
            }
        })
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subnet::V4([a, b, c]) => write!(f, "{a}.{b}.{c}.0/24"),
            Subnet::V6(p) => write!(
                f,
                "{:02x}{:02x}:{:02x}{:02x}:{:02x}{:02x}::/48",
                p[0], p[1], p[2], p[3], p[4], p[5]
            ),
        }
    }
}

/// What one source holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    records: usize,
    bytes: usize,
    registrations: usize,
}

impl Usage {
    fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
}

/// A charge: a record's bytes, or one registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Charge {
    Record { bytes: usize },
    Registration,
}

impl Charge {
    fn apply(self, usage: &mut Usage, add: bool) {
        let (records, bytes, registrations) = match self {
            Charge::Record { bytes } => (1, bytes, 0),
            Charge::Registration => (0, 0, 1),
        };
        if add {
            usage.records += records;
            usage.bytes += bytes;
            usage.registrations += registrations;
        } else {
            usage.records = usage.records.saturating_sub(records);
            usage.bytes = usage.bytes.saturating_sub(bytes);
            usage.registrations = usage.registrations.saturating_sub(registrations);
        }
    }
}

/// What every source holds, against the peer and subnet quotas. Entries
/// exist only for sources that hold something, so the maps are bounded by
/// the store's own limits.
#[derive(Debug)]
pub(crate) struct Quotas {
    per_peer: Quota,
    per_subnet: Quota,
    peers: HashMap<PeerId, Usage>,
    subnets: HashMap<Subnet, Usage>,
}

impl Quotas {
    pub(crate) fn new(per_peer: Quota, per_subnet: Quota) -> Self {
        Self {
            per_peer,
            per_subnet,
            peers: HashMap::new(),
            subnets: HashMap::new(),
        }
    }

    /// Whether `source` may take `charge` on top of what it holds, where
    /// `released` is what the write replaces that this source held.
    pub(crate) fn check(
        &self,
        source: &Source,
        charge: Charge,
        released: Option<Charge>,
    ) -> Result<(), StoreError> {
        let within = |usage: Option<&Usage>, quota: &Quota| {
            let mut after = usage.copied().unwrap_or_default();
            if let Some(released) = released {
                released.apply(&mut after, false);
            }
            charge.apply(&mut after, true);
            after.records <= quota.records
                && after.bytes <= quota.bytes
                && after.registrations <= quota.registrations
        };
        if !within(self.peers.get(&source.peer), &self.per_peer) {
            return Err(StoreError::SourceQuota {
                sender: format!("peer {}", source.peer),
            });
        }
        if let Some(subnet) = source.subnet
            && !within(self.subnets.get(&subnet), &self.per_subnet)
        {
            return Err(StoreError::SourceQuota {
                sender: format!("subnet {subnet}"),
            });
        }
        Ok(())
    }

    pub(crate) fn charge(&mut self, source: &Source, charge: Charge) {
        charge.apply(self.peers.entry(source.peer).or_default(), true);
        if let Some(subnet) = source.subnet {
            charge.apply(self.subnets.entry(subnet).or_default(), true);
        }
    }

    pub(crate) fn refund(&mut self, source: &Source, charge: Charge) {
        if let Some(usage) = self.peers.get_mut(&source.peer) {
            charge.apply(usage, false);
            if usage.is_empty() {
                self.peers.remove(&source.peer);
            }
        }
        if let Some(subnet) = source.subnet
            && let Some(usage) = self.subnets.get_mut(&subnet)
        {
            charge.apply(usage, false);
            if usage.is_empty() {
                self.subnets.remove(&subnet);
            }
        }
    }

    /// Sources with a share held, for tests and reports.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Quota = Quota {
        records: 2,
        bytes: 100,
        registrations: 1,
    };
    const WIDER: Quota = Quota {
        records: 3,
        bytes: 1000,
        registrations: 2,
    };

    fn from(peer: PeerId, address: &str) -> Source {
        Source {
            peer,
            subnet: Subnet::of(&address.parse().unwrap(), false),
        }
    }

    #[test]
    fn a_peer_and_its_subnet_each_get_a_share() {
        let mut quotas = Quotas::new(SMALL, WIDER);
        let record = Charge::Record { bytes: 10 };
        let first = from(PeerId::random(), "/ip4/203.0.113.7/tcp/1");
        for _ in 0..2 {
            quotas.check(&first, record, None).unwrap();
            quotas.charge(&first, record);
        }
        assert!(matches!(
            quotas.check(&first, record, None),
            Err(StoreError::SourceQuota { sender }) if sender.starts_with("peer")
        ));
        // Replacing one of its own records is not one more.
        quotas.check(&first, record, Some(record)).unwrap();
        // A second peer id from the same /24 gets one record: the subnet has 3.
        let neighbour = from(PeerId::random(), "/ip4/203.0.113.200/tcp/1");
        quotas.check(&neighbour, record, None).unwrap();
        quotas.charge(&neighbour, record);
        assert!(matches!(
            quotas.check(&neighbour, record, None),
            Err(StoreError::SourceQuota { sender }) if sender == "subnet 203.0.113.0/24"
        ));
        // Elsewhere there is room, and refunds give room back.
        let stranger = from(PeerId::random(), "/ip4/198.51.100.1/tcp/1");
        quotas.check(&stranger, record, None).unwrap();
        quotas.refund(&first, record);
        quotas.check(&neighbour, record, None).unwrap();
        quotas.refund(&first, record);
        quotas.refund(&neighbour, record);
        assert_eq!(quotas.sources(), 0, "empty shares are forgotten");
    }

    #[test]
    fn bytes_and_registrations_count_too() {
        let quotas = Quotas::new(SMALL, WIDER);
        let peer = from(PeerId::random(), "/ip6/2001:db8:1:2::1/udp/1/quic-v1");
        assert!(
            quotas
                .check(&peer, Charge::Record { bytes: 101 }, None)
                .is_err()
        );
        let mut quotas = quotas;
        quotas.charge(&peer, Charge::Registration);
        assert!(quotas.check(&peer, Charge::Registration, None).is_err());
    }

    #[test]
    fn loopback_and_memory_have_no_subnet_unless_asked() {
        let local: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        assert_eq!(Subnet::of(&local, false), None);
        assert_eq!(Subnet::of(&local, true), Some(Subnet::V4([127, 0, 0])));
        assert_eq!(Subnet::of(&"/memory/5".parse().unwrap(), true), None);
        let v6 = Subnet::of(&"/ip6/2001:db8:aa::1/tcp/1".parse().unwrap(), false);
        assert_eq!(v6.unwrap().to_string(), "2001:0db8:00aa::/48");
    }
}
