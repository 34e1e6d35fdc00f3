//! The roles a node plays. Every role runs the same DHT: each node stores
//! records, answers queries and routes for others; a role only adds duties.

use std::fmt;

use libp2p::kad::Mode;

use crate::{config::ServerMode, namespace::Namespace};

/// What a node does beyond being an ordinary DHT node.
///
/// Every difference between roles is decided here, by the methods below;
/// the node asks them once, when it starts, and hands the answers to its
/// parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A node at a known address that others join through (the spec's
    /// "monitor/server"). It always answers DHT requests (Kademlia server
    /// mode, whatever [`crate::ServerMode`] says), registers nowhere and is
    /// otherwise an ordinary node. As a monitor it reports the network it sees
    /// through [`crate::NodeHandle::network_report`].
    Bootstrap,
    /// Registers itself in `namespace` once it has joined, keeps the
    /// registration fresh, and accepts dialers of that namespace.
    Listener {
        /// The namespace to register in.
        namespace: Namespace,
    },
    /// Registers itself in `namespace`, discovers the namespace's other members
    /// through the DHT every [`crate::ConfigBuilder::discover_interval`], and
    /// links to each: connects, exchanges the namespace handshake and keeps
    /// the connection open while the peer answers heartbeats.
    Dialer {
        /// The namespace to register in and search.
        namespace: Namespace,
    },
    /// A node that performs lookups on behalf of an application: it registers
    /// nowhere and does nothing on its own beyond serving the DHT.
    ClientHelper,
}

impl Role {
    /// The role's kind, as told to other peers in the namespace handshake.
    pub fn kind(&self) -> RoleKind {
        match self {
            Role::Bootstrap => RoleKind::Bootstrap,
            Role::Listener { .. } => RoleKind::Listener,
            Role::Dialer { .. } => RoleKind::Dialer,
            Role::ClientHelper => RoleKind::ClientHelper,
        }
    }

    /// The namespace this role registers in when it starts, if any.
    pub fn namespace(&self) -> Option<&Namespace> {
        match self {
            Role::Listener { namespace } | Role::Dialer { namespace } => Some(namespace),
            Role::Bootstrap | Role::ClientHelper => None,
        }
    }

    /// The namespace this role searches every discover interval and links
    /// to, if any: only a dialer's.
    pub fn discovers(&self) -> Option<&Namespace> {
        match self {
            Role::Dialer { namespace } => Some(namespace),
            _ => None,
        }
    }

    /// The Kademlia mode to set: a bootstrap always serves, since others
    /// join through it; the other roles follow `server_mode`. `None` lets
    /// Kademlia choose (server once an external address is confirmed); a
    /// relayed node starts as a client and serves once a relay holds a
    /// reservation for it.
    pub(crate) fn kad_mode(&self, server_mode: ServerMode) -> Option<Mode> {
        match (self, server_mode) {
            (Role::Bootstrap, _) | (_, ServerMode::Always) => Some(Mode::Server),
            (_, ServerMode::Never | ServerMode::Relayed) => Some(Mode::Client),
            (_, ServerMode::Auto) => None,
        }
    }
}

/// A role without its parameters, as exchanged on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum RoleKind {
    /// See [`Role::Bootstrap`].
    Bootstrap,
    /// See [`Role::Listener`].
    Listener,
    /// See [`Role::Dialer`].
    Dialer,
    /// See [`Role::ClientHelper`].
    ClientHelper,
}

impl RoleKind {
    pub(crate) fn to_wire(self) -> u8 {
        match self {
            RoleKind::Bootstrap => 0,
            RoleKind::Listener => 1,
            RoleKind::Dialer => 2,
            RoleKind::ClientHelper => 3,
        }
    }

    pub(crate) fn from_wire(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => RoleKind::Bootstrap,
            1 => RoleKind::Listener,
            2 => RoleKind::Dialer,
            3 => RoleKind::ClientHelper,
            _ => return None,
        })
    }
}

impl fmt::Display for RoleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleKind::Bootstrap => "bootstrap",
            RoleKind::Listener => "listener",
            RoleKind::Dialer => "dialer",
            RoleKind::ClientHelper => "client-helper",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_round_trip_and_unknown_bytes_are_rejected() {
        for kind in [
            RoleKind::Bootstrap,
            RoleKind::Listener,
            RoleKind::Dialer,
            RoleKind::ClientHelper,
        ] {
            assert_eq!(RoleKind::from_wire(kind.to_wire()), Some(kind));
        }
        assert_eq!(RoleKind::from_wire(4), None);
        assert_eq!(RoleKind::from_wire(255), None);
    }

    #[test]
    fn only_dialers_discover_and_only_namespace_roles_register() {
        let ns = Namespace::new("app").unwrap();
        let dialer = Role::Dialer {
            namespace: ns.clone(),
        };
        let listener = Role::Listener {
            namespace: ns.clone(),
        };
        assert_eq!(dialer.discovers(), Some(&ns));
        assert_eq!(listener.discovers(), None);
        assert_eq!(listener.namespace(), Some(&ns));
        assert_eq!(Role::Bootstrap.namespace(), None);
        assert_eq!(Role::ClientHelper.namespace(), None);
    }

    #[test]
    fn a_bootstrap_always_serves_and_other_roles_follow_the_setting() {
        assert_eq!(
            Role::Bootstrap.kad_mode(ServerMode::Never),
            Some(Mode::Server)
        );
        assert_eq!(
            Role::ClientHelper.kad_mode(ServerMode::Never),
            Some(Mode::Client)
        );
        assert_eq!(
            Role::ClientHelper.kad_mode(ServerMode::Always),
            Some(Mode::Server)
        );
        assert_eq!(Role::ClientHelper.kad_mode(ServerMode::Auto), None);
    }
}
