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
//! Discovery looks up the `k` peers closest to the namespace key and asks
//! each, on [`NAMESPACE_PROTOCOL`], for the registrations it stores
//! ([`NamespaceRequest::Members`]), with the addresses they were announced
//! with. Kademlia's own provider lookup is not used for this: it forgets those
//! addresses once the lookup ends, and it leaves out members nobody can dial
//! (browser tabs), which are members all the same.
//!
//! # Handshake
//!
//! A dialer that connects to a discovered peer sends a [`Hello`] naming the
//! namespace; the peer answers [`NamespaceResponse::Welcome`] only if it is
//! registered in that namespace, which turns a possibly stale (or forged)
//! entry of a members list into a confirmed link. The exchange repeats as a
//! heartbeat.

use std::{fmt, io, str::FromStr};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{Multiaddr, PeerId, StreamProtocol, kad::RecordKey, request_response};

use crate::{
    error::NamespaceError,
    handle::PeerAddresses,
    message::{MessageLimits, MessageStatus},
    role::RoleKind,
};

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

/// A request on [`NAMESPACE_PROTOCOL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceRequest {
    /// Asks the peer to confirm it is registered in the namespace.
    Hello(Hello),
    /// Asks the peer for the registrations of a namespace it stores (it is
    /// one of the `k` peers closest to the namespace key).
    Members {
        /// The namespace.
        namespace: Namespace,
    },
    /// A message for a linked peer (see [`crate::message`]).
    Message(Vec<u8>),
}

/// The answer to a [`NamespaceRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceResponse {
    /// The peer is registered in the namespace and accepts the link.
    Welcome {
        /// What the answering peer is.
        role: RoleKind,
    },
    /// The peer is not (or no longer) registered in the namespace.
    NotRegistered,
    /// The live registrations the peer stores, at most
    /// [`MAX_MEMBERS_PER_REPLY`], each with at most
    /// [`MAX_ADDRESSES_PER_MEMBER`] addresses.
    Members(Vec<PeerAddresses>),
    /// What became of a message.
    Message(MessageStatus),
}

/// Members sent in one [`NamespaceResponse::Members`] at most.
pub const MAX_MEMBERS_PER_REPLY: usize = 256;

/// Addresses sent per member at most.
pub const MAX_ADDRESSES_PER_MEMBER: usize = 8;

/// Longest address, in bytes, this node keeps or sends for a peer: what
/// peers report longer (in identify, registrations or members replies) is
/// dropped. It also bounds peer ids on the wire.
pub const MAX_ADDRESS_LEN: usize = 255;

/// Wire format of the namespace protocol, bounded on every read. Every
/// message starts with a version byte and a kind byte.
///
/// ```text
/// hello:          [1] [0] [role] [name length 1..=128] [name]
/// members:        [1] [1] [name length 1..=128] [name]
/// welcome:        [1] [0] [role]
/// not registered: [1] [1]
/// members reply:  [1] [2] [count: u16 BE, <= 256] count x
///                   ([peer id length] [peer id] [address count <= 8] address count x ([length] [address]))
/// message:        [1] [2] [length: u32 BE, <= the codec's limit] [bytes]
/// message status: [1] [3] [0 delivered | 1 not linked | 2 rate limited]
/// ```
#[derive(Clone, Copy, Debug)]
pub struct NamespaceCodec {
    max_message_bytes: usize,
}

impl NamespaceCodec {
    /// A codec that refuses messages above `max_message_bytes`, before
    /// reading them.
    pub fn new(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }
}

impl Default for NamespaceCodec {
    /// Messages up to the default [`crate::MessageLimits::max_bytes`].
    fn default() -> Self {
        Self::new(MessageLimits::default().max_bytes)
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

async fn read_u8<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<u8> {
    let mut byte = [0u8; 1];
    io.read_exact(&mut byte).await?;
    Ok(byte[0])
}

async fn read_bytes<T: AsyncRead + Unpin>(io: &mut T, len: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    Ok(bytes)
}

async fn read_version_and_kind<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<u8> {
    let version = read_u8(io).await?;
    if version != WIRE_VERSION {
        return Err(invalid(format!(
            "unsupported namespace protocol version {version}"
        )));
    }
    read_u8(io).await
}

async fn read_role<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<RoleKind> {
    let role = read_u8(io).await?;
    RoleKind::from_wire(role).ok_or_else(|| invalid(format!("unknown role byte {role}")))
}

async fn read_namespace<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Namespace> {
    let len = usize::from(read_u8(io).await?);
    if len == 0 || len > MAX_NAMESPACE_LEN {
        return Err(invalid(format!("namespace length {len} out of range")));
    }
    let name = String::from_utf8(read_bytes(io, len).await?)
        .map_err(|_| invalid("namespace is not UTF-8"))?;
    Namespace::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn write_namespace(message: &mut Vec<u8>, namespace: &Namespace) -> io::Result<()> {
    let name = namespace.as_str().as_bytes();
    let len = u8::try_from(name.len()).map_err(|_| invalid("namespace too long"))?;
    message.push(len);
    message.extend_from_slice(name);
    Ok(())
}

async fn read_members<T: AsyncRead + Unpin>(io: &mut T) -> io::Result<Vec<PeerAddresses>> {
    let mut count = [0u8; 2];
    io.read_exact(&mut count).await?;
    let count = usize::from(u16::from_be_bytes(count));
    if count > MAX_MEMBERS_PER_REPLY {
        return Err(invalid(format!(
            "{count} members in one reply, above {MAX_MEMBERS_PER_REPLY}"
        )));
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(read_u8(io).await?);
        let peer_id = PeerId::from_bytes(&read_bytes(io, len).await?)
            .map_err(|e| invalid(format!("bad peer id: {e}")))?;
        let addresses_len = usize::from(read_u8(io).await?);
        if addresses_len > MAX_ADDRESSES_PER_MEMBER {
            return Err(invalid(format!("{addresses_len} addresses for one member")));
        }
        let mut addresses = Vec::with_capacity(addresses_len);
        for _ in 0..addresses_len {
            let len = usize::from(read_u8(io).await?);
            let address = Multiaddr::try_from(read_bytes(io, len).await?)
                .map_err(|e| invalid(format!("bad address: {e}")))?;
            addresses.push(address);
        }
        members.push(PeerAddresses { peer_id, addresses });
    }
    Ok(members)
}

fn write_members(message: &mut Vec<u8>, members: &[PeerAddresses]) {
    let members: Vec<&PeerAddresses> = members
        .iter()
        .filter(|m| m.peer_id.to_bytes().len() <= MAX_ADDRESS_LEN)
        .take(MAX_MEMBERS_PER_REPLY)
        .collect();
    let count = u16::try_from(members.len()).unwrap_or(u16::MAX);
    message.extend_from_slice(&count.to_be_bytes());
    for member in members {
        let id = member.peer_id.to_bytes();
        message.push(id.len() as u8);
        message.extend_from_slice(&id);
        let addresses: Vec<Vec<u8>> = member
            .addresses
            .iter()
            .map(|a| a.to_vec())
            .filter(|a| a.len() <= MAX_ADDRESS_LEN)
            .take(MAX_ADDRESSES_PER_MEMBER)
            .collect();
        message.push(addresses.len() as u8);
        for address in addresses {
            message.push(address.len() as u8);
            message.extend_from_slice(&address);
        }
    }
}

impl request_response::Codec for NamespaceCodec {
    type Protocol = StreamProtocol;
    type Request = NamespaceRequest;
    type Response = NamespaceResponse;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<NamespaceRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_version_and_kind(io).await? {
            0 => {
                let role = read_role(io).await?;
                let namespace = read_namespace(io).await?;
                Ok(NamespaceRequest::Hello(Hello { namespace, role }))
            }
            1 => Ok(NamespaceRequest::Members {
                namespace: read_namespace(io).await?,
            }),
            2 => {
                let mut len = [0u8; 4];
                io.read_exact(&mut len).await?;
                let len = u32::from_be_bytes(len) as usize;
                if len > self.max_message_bytes {
                    return Err(invalid(format!(
                        "a message of {len} bytes, above {}",
                        self.max_message_bytes
                    )));
                }
                Ok(NamespaceRequest::Message(read_bytes(io, len).await?))
            }
            other => Err(invalid(format!("unknown request kind {other}"))),
        }
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<NamespaceResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_version_and_kind(io).await? {
            0 => Ok(NamespaceResponse::Welcome {
                role: read_role(io).await?,
            }),
            1 => Ok(NamespaceResponse::NotRegistered),
            2 => Ok(NamespaceResponse::Members(read_members(io).await?)),
            3 => Ok(NamespaceResponse::Message(MessageStatus::from_wire(
                read_u8(io).await?,
            )?)),
            other => Err(invalid(format!("unknown response kind {other}"))),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: NamespaceRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut message = vec![WIRE_VERSION];
        match request {
            NamespaceRequest::Hello(hello) => {
                message.extend_from_slice(&[0, hello.role.to_wire()]);
                write_namespace(&mut message, &hello.namespace)?;
            }
            NamespaceRequest::Members { namespace } => {
                message.push(1);
                write_namespace(&mut message, &namespace)?;
            }
            NamespaceRequest::Message(data) => {
                let len = u32::try_from(data.len())
                    .ok()
                    .filter(|len| *len as usize <= self.max_message_bytes)
                    .ok_or_else(|| invalid(format!("a message of {} bytes", data.len())))?;
                message.push(2);
                message.extend_from_slice(&len.to_be_bytes());
                message.extend_from_slice(&data);
            }
        }
        io.write_all(&message).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: NamespaceResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut message = vec![WIRE_VERSION];
        match response {
            NamespaceResponse::Welcome { role } => message.extend_from_slice(&[0, role.to_wire()]),
            NamespaceResponse::NotRegistered => message.push(1),
            NamespaceResponse::Members(members) => {
                message.push(2);
                write_members(&mut message, &members);
            }
            NamespaceResponse::Message(status) => message.extend_from_slice(&[3, status.to_wire()]),
        }
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

    async fn round_trip_request(request: NamespaceRequest) -> NamespaceRequest {
        let mut wire = Cursor::new(Vec::new());
        NamespaceCodec::default()
            .write_request(&NAMESPACE_PROTOCOL, &mut wire, request)
            .await
            .unwrap();
        let mut wire = Cursor::new(wire.into_inner());
        NamespaceCodec::default()
            .read_request(&NAMESPACE_PROTOCOL, &mut wire)
            .await
            .unwrap()
    }

    async fn round_trip_response(response: NamespaceResponse) -> NamespaceResponse {
        let mut wire = Cursor::new(Vec::new());
        NamespaceCodec::default()
            .write_response(&NAMESPACE_PROTOCOL, &mut wire, response)
            .await
            .unwrap();
        let mut wire = Cursor::new(wire.into_inner());
        NamespaceCodec::default()
            .read_response(&NAMESPACE_PROTOCOL, &mut wire)
            .await
            .unwrap()
    }

    #[test]
    fn messages_round_trip() {
        block_on(async {
            let namespace = Namespace::new("games").unwrap();
            for request in [
                NamespaceRequest::Hello(Hello {
                    namespace: namespace.clone(),
                    role: RoleKind::Dialer,
                }),
                NamespaceRequest::Members {
                    namespace: namespace.clone(),
                },
                NamespaceRequest::Message(b"hello".to_vec()),
                NamespaceRequest::Message(vec![0; MessageLimits::default().max_bytes]),
            ] {
                assert_eq!(round_trip_request(request.clone()).await, request);
            }
            let member = PeerAddresses {
                peer_id: PeerId::random(),
                addresses: vec![
                    "/ip4/127.0.0.1/tcp/4001".parse().unwrap(),
                    "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap(),
                ],
            };
            let tab = PeerAddresses {
                peer_id: PeerId::random(),
                addresses: vec![],
            };
            for response in [
                NamespaceResponse::Welcome {
                    role: RoleKind::Listener,
                },
                NamespaceResponse::NotRegistered,
                NamespaceResponse::Members(vec![]),
                NamespaceResponse::Members(vec![member, tab]),
                NamespaceResponse::Message(MessageStatus::Delivered),
                NamespaceResponse::Message(MessageStatus::NotLinked),
                NamespaceResponse::Message(MessageStatus::RateLimited),
            ] {
                assert_eq!(round_trip_response(response.clone()).await, response);
            }
        });
    }

    #[test]
    fn a_message_above_the_limit_is_neither_written_nor_read() {
        block_on(async {
            let mut small = NamespaceCodec::new(4);
            let error = small
                .write_request(
                    &NAMESPACE_PROTOCOL,
                    &mut Cursor::new(Vec::new()),
                    NamespaceRequest::Message(vec![0; 5]),
                )
                .await
                .unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData);
            let five = vec![1, 2, 0, 0, 0, 5, 0, 0, 0, 0, 0];
            assert!(
                small
                    .read_request(&NAMESPACE_PROTOCOL, &mut Cursor::new(five))
                    .await
                    .is_err()
            );
        });
    }

    #[test]
    fn replies_are_cut_to_the_limits_when_written() {
        block_on(async {
            let many: Vec<PeerAddresses> = (0..MAX_MEMBERS_PER_REPLY + 10)
                .map(|_| PeerAddresses {
                    peer_id: PeerId::random(),
                    addresses: vec![
                        "/ip4/127.0.0.1/tcp/1".parse().unwrap();
                        MAX_ADDRESSES_PER_MEMBER + 3
                    ],
                })
                .collect();
            let NamespaceResponse::Members(read) =
                round_trip_response(NamespaceResponse::Members(many)).await
            else {
                panic!("members");
            };
            assert_eq!(read.len(), MAX_MEMBERS_PER_REPLY);
            assert!(
                read.iter()
                    .all(|m| m.addresses.len() == MAX_ADDRESSES_PER_MEMBER)
            );
        });
    }

    #[test]
    fn garbage_from_a_peer_is_an_error_not_a_panic() {
        let protocol = NAMESPACE_PROTOCOL;
        let requests: &[&[u8]] = &[
            b"",                             // nothing at all
            &[9, 0, 2, 1, b'a'],             // unknown version
            &[1, 7, 1, b'a'],                // unknown kind
            &[1, 0, 99, 1, b'a'],            // unknown role
            &[1, 0, 2, 0],                   // empty name
            &[1, 1, 200],                    // length above the maximum
            &[1, 0, 2, 5, b'a'],             // truncated name
            &[1, 1, 2, 0xff, 0xfe],          // not UTF-8
            &[1, 0, 2, 1, b'\n'],            // control character
            &[1, 2, 0xff, 0xff, 0xff, 0xff], // a 4 GiB message, refused unread
            &[1, 2, 0, 0, 0, 3, b'a'],       // a truncated message
        ];
        for bytes in requests {
            let mut wire = Cursor::new(bytes.to_vec());
            assert!(
                block_on(NamespaceCodec::default().read_request(&protocol, &mut wire)).is_err(),
                "accepted {bytes:?}"
            );
        }
        let responses: &[&[u8]] = &[
            &[1, 7],                      // unknown kind
            &[1, 0, 42],                  // unknown role
            &[2, 0, 1],                   // unknown version
            &[1],                         // truncated
            &[1, 2, 0x01, 0x01],          // 257 members
            &[1, 2, 0, 1, 3, 1, 2, 3, 0], // not a peer id
            &[1, 2, 0, 2],                // fewer members than announced
            &[1, 3, 9],                   // unknown message status
        ];
        for bytes in responses {
            let mut wire = Cursor::new(bytes.to_vec());
            assert!(
                block_on(NamespaceCodec::default().read_response(&protocol, &mut wire)).is_err(),
                "accepted {bytes:?}"
            );
        }
    }
}
