//! Namespaces: how peers of one app find each other without a rendezvous server.
//!
//! # Registration
//!
//! A peer registers in a namespace by announcing itself as a Kademlia
//! *provider* of the namespace's key ([`Namespace::record_key`]). Provider
//! records, unlike value records, hold many peers per key, so every member of a
//! namespace is kept instead of the last writer winning. Kademlia stores a
//! provider record only when the peer that sends it is the provider it names,
//! so a registration can only be made by the peer it names. Each record lives
//! for the configured TTL ([`crate::ConfigBuilder::namespace_ttl`]) at the `k`
//! peers closest to the key; the registering peer re-announces it every
//! refresh interval ([`crate::ConfigBuilder::namespace_refresh_interval`]),
//! so the registrations of a peer that left disappear one TTL after its last
//! refresh.
//!
//! # Discovery
//!
//! Discovery is a provider lookup for the key. Kademlia forgets the addresses
//! that come with provider records once the lookup ends, so the node resolves
//! the addresses of each provider from its routing table and the peers it has
//! identified, and, for the rest, by a lookup of the provider's own peer id.
//!
//! # Handshake
//!
//! A dialer that connects to a discovered peer sends a [`Hello`] naming the
//! namespace on [`NAMESPACE_PROTOCOL`]; the peer answers [`HelloReply::Welcome`]
//! only if it is registered in that namespace, which turns a possibly stale
//! registration into a confirmed link. The exchange repeats as a heartbeat.

use std::{fmt, io, str::FromStr};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{StreamProtocol, kad::RecordKey, request_response};

use crate::{error::NamespaceError, role::RoleKind};

/// The longest namespace name, in bytes of UTF-8.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// Prefix of the Kademlia key under which a namespace's members are registered.
///
/// The key is this prefix followed by the UTF-8 name, so a bootstrap node can
/// tell which namespaces the provider records it holds belong to.
pub const NAMESPACE_KEY_PREFIX: &[u8] = b"/ns-dht/ns/";

/// Protocol of the namespace handshake between a dialer and a registered peer.
pub const NAMESPACE_PROTOCOL: StreamProtocol = StreamProtocol::new("/ns-dht/namespace/1.0.0");

/// Version byte that starts every handshake message.
const WIRE_VERSION: u8 = 1;

/// The name of a group of peers that find each other through the DHT.
///
/// Valid names are 1 to [`MAX_NAMESPACE_LEN`] bytes of UTF-8 without control
/// characters and without leading or trailing white space.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// Validates `name` and makes a namespace of it.
    pub fn new(name: impl Into<String>) -> Result<Self, NamespaceError> {
        let name = name.into();
        if name.is_empty() {
            return Err(NamespaceError::Empty);
        }
        if name.len() > MAX_NAMESPACE_LEN {
            return Err(NamespaceError::TooLong {
                len: name.len(),
                max: MAX_NAMESPACE_LEN,
            });
        }
        if let Some((index, character)) = name.char_indices().find(|(_, c)| c.is_control()) {
            return Err(NamespaceError::ControlCharacter { index, character });
        }
        if name.trim() != name {
            return Err(NamespaceError::SurroundingWhitespace { name });
        }
        Ok(Self(name))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Kademlia key under which members of this namespace are registered.
    pub fn record_key(&self) -> RecordKey {
        let mut key = Vec::with_capacity(NAMESPACE_KEY_PREFIX.len() + self.0.len());
        key.extend_from_slice(NAMESPACE_KEY_PREFIX);
        key.extend_from_slice(self.0.as_bytes());
        RecordKey::new(&key)
    }

    /// The namespace whose registrations live under `key`, if it is one.
    pub fn from_record_key(key: &RecordKey) -> Option<Self> {
        let name = key.as_ref().strip_prefix(NAMESPACE_KEY_PREFIX)?;
        let name = std::str::from_utf8(name).ok()?;
        Self::new(name).ok()
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Namespace {
    type Err = NamespaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A dialer's request to join a namespace peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The namespace the dialer found the peer in.
    pub namespace: Namespace,
    /// What the dialer is.
    pub role: RoleKind,
}

/// The answer to a [`Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloReply {
    /// The peer is registered in the namespace and accepts the link.
    Welcome {
        /// What the answering peer is.
        role: RoleKind,
    },
    /// The peer is not (or no longer) registered in the namespace.
    NotRegistered,
}

/// Wire format of the handshake, bounded on every read.
///
/// ```text
/// request:  [version = 1] [role] [name length: 1..=128] [name: UTF-8]
/// response: [version = 1] [status: 0 welcome | 1 not registered] [role]
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HandshakeCodec;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl request_response::Codec for HandshakeCodec {
    type Protocol = StreamProtocol;
    type Request = Hello;
    type Response = HelloReply;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Hello>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut header = [0u8; 3];
        io.read_exact(&mut header).await?;
        let [version, role, len] = header;
        if version != WIRE_VERSION {
            return Err(invalid(format!("unsupported handshake version {version}")));
        }
        let role = RoleKind::from_wire(role)
            .ok_or_else(|| invalid(format!("unknown role byte {role}")))?;
        let len = usize::from(len);
        if len == 0 || len > MAX_NAMESPACE_LEN {
            return Err(invalid(format!("namespace length {len} out of range")));
        }
        let mut name = vec![0u8; len];
        io.read_exact(&mut name).await?;
        let name = String::from_utf8(name).map_err(|_| invalid("namespace is not UTF-8"))?;
        let namespace = Namespace::new(name).map_err(|e| invalid(e.to_string()))?;
        Ok(Hello { namespace, role })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<HelloReply>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut message = [0u8; 3];
        io.read_exact(&mut message).await?;
        let [version, status, role] = message;
        if version != WIRE_VERSION {
            return Err(invalid(format!("unsupported handshake version {version}")));
        }
        match status {
            0 => {
                let role = RoleKind::from_wire(role)
                    .ok_or_else(|| invalid(format!("unknown role byte {role}")))?;
                Ok(HelloReply::Welcome { role })
            }
            1 => Ok(HelloReply::NotRegistered),
            other => Err(invalid(format!("unknown handshake status {other}"))),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        hello: Hello,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let name = hello.namespace.as_str().as_bytes();
        let len = u8::try_from(name.len()).map_err(|_| invalid("namespace too long"))?;
        let mut message = Vec::with_capacity(3 + name.len());
        message.extend_from_slice(&[WIRE_VERSION, hello.role.to_wire(), len]);
        message.extend_from_slice(name);
        io.write_all(&message).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        reply: HelloReply,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let message = match reply {
            HelloReply::Welcome { role } => [WIRE_VERSION, 0, role.to_wire()],
            HelloReply::NotRegistered => [WIRE_VERSION, 1, 0],
        };
        io.write_all(&message).await?;
        io.close().await
    }
}

#[cfg(test)]
mod tests {
    use futures::{executor::block_on, io::Cursor};
    use libp2p::request_response::Codec;

    use super::*;

    #[test]
    fn names_are_validated() {
        assert_eq!(Namespace::new(""), Err(NamespaceError::Empty));
        assert!(matches!(
            Namespace::new("x".repeat(MAX_NAMESPACE_LEN + 1)),
            Err(NamespaceError::TooLong { len: 129, max: 128 })
        ));
        assert!(matches!(
            Namespace::new("a\nb"),
            Err(NamespaceError::ControlCharacter { index: 1, .. })
        ));
        assert!(matches!(
            Namespace::new(" chat"),
            Err(NamespaceError::SurroundingWhitespace { .. })
        ));
        assert_eq!(
            Namespace::new("chat-room é").unwrap().as_str(),
            "chat-room é"
        );
        assert!(Namespace::new("x".repeat(MAX_NAMESPACE_LEN)).is_ok());
    }

    #[test]
    fn record_key_round_trips_and_rejects_other_keys() {
        let ns = Namespace::new("my-app").unwrap();
        let key = ns.record_key();
        assert_eq!(key.as_ref(), b"/ns-dht/ns/my-app");
        assert_eq!(Namespace::from_record_key(&key), Some(ns));
        assert_eq!(Namespace::from_record_key(&RecordKey::new(b"my-app")), None);
        assert_eq!(
            Namespace::from_record_key(&RecordKey::new(b"/ns-dht/ns/")),
            None
        );
    }

    #[test]
    fn handshake_round_trips() {
        let protocol = NAMESPACE_PROTOCOL;
        let hello = Hello {
            namespace: Namespace::new("games").unwrap(),
            role: RoleKind::Dialer,
        };
        let mut wire = Cursor::new(Vec::new());
        block_on(HandshakeCodec.write_request(&protocol, &mut wire, hello.clone())).unwrap();
        let mut wire = Cursor::new(wire.into_inner());
        assert_eq!(
            block_on(HandshakeCodec.read_request(&protocol, &mut wire)).unwrap(),
            hello
        );

        for reply in [
            HelloReply::Welcome {
                role: RoleKind::Listener,
            },
            HelloReply::NotRegistered,
        ] {
            let mut wire = Cursor::new(Vec::new());
            block_on(HandshakeCodec.write_response(&protocol, &mut wire, reply)).unwrap();
            let mut wire = Cursor::new(wire.into_inner());
            assert_eq!(
                block_on(HandshakeCodec.read_response(&protocol, &mut wire)).unwrap(),
                reply
            );
        }
    }

    #[test]
    fn garbage_from_a_peer_is_an_error_not_a_panic() {
        let protocol = NAMESPACE_PROTOCOL;
        let cases: &[&[u8]] = &[
            b"",                    // nothing at all
            &[9, 2, 1, b'a'],       // unknown version
            &[1, 99, 1, b'a'],      // unknown role
            &[1, 2, 0],             // empty name
            &[1, 2, 200],           // length above the maximum
            &[1, 2, 5, b'a'],       // truncated name
            &[1, 2, 2, 0xff, 0xfe], // not UTF-8
            &[1, 2, 1, b'\n'],      // control character
        ];
        for bytes in cases {
            let mut wire = Cursor::new(bytes.to_vec());
            assert!(
                block_on(HandshakeCodec.read_request(&protocol, &mut wire)).is_err(),
                "accepted {bytes:?}"
            );
        }
        for bytes in [&[1u8, 7, 0][..], &[1, 0, 42], &[2, 0, 1], &[1]] {
            let mut wire = Cursor::new(bytes.to_vec());
            assert!(block_on(HandshakeCodec.read_response(&protocol, &mut wire)).is_err());
        }
    }
}
