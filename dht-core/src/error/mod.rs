//! Errors, one enum per operation, each saying what went wrong and with what.
//!
//! Every error has a stable machine-readable code ([`ErrorCode::code`]):
//! kebab-case, never reworded, carried beside the message wherever an error
//! leaves Rust (`--json`, `client serve`, the HTTP API, the browser's
//! `Error.code`). Messages are for people and may change; scripts and tests
//! match codes. Errors that come from libp2p keep it as their
//! [`source`](std::error::Error::source); [`chain`] renders an error with
//! every cause.

use std::{error::Error, io, sync::Arc, time::Duration};

use libp2p::{Multiaddr, PeerId, request_response::OutboundFailure, swarm};

use crate::namespace::Namespace;

mod causes;

pub use causes::chain;
pub(crate) use causes::find_cause;

/// A stable name for an error, for scripts and other languages.
pub trait ErrorCode: Error {
    /// The code: kebab-case, stable across releases (see the README's list).
    fn code(&self) -> &'static str;
}

/// Why a connection attempt failed, as libp2p reported it. Shared, because
/// one failure reaches the events and the errors that report it.
pub type DialFailure = Arc<swarm::DialError>;

/// A configuration that cannot work, from [`crate::ConfigBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A protocol name must start with `/`.
    #[error("invalid Kademlia protocol name {name:?}: protocol names start with '/'")]
    InvalidProtocol {
        /// The name given.
        name: String,
    },
    /// A count or duration that must not be zero was zero.
    #[error("{field} must not be zero")]
    Zero {
        /// Which setting.
        field: &'static str,
    },
    /// Registrations would lapse between refreshes.
    #[error(
        "namespace refresh interval ({refresh:?}) must be shorter than the namespace TTL ({ttl:?}), \
         or registrations would expire between refreshes"
    )]
    RefreshNotBeforeTtl {
        /// The refresh interval given.
        refresh: Duration,
        /// The TTL given.
        ttl: Duration,
    },
    /// The reconnect backoff starts above its maximum.
    #[error("reconnect backoff starts at {initial:?}, above its maximum {max:?}")]
    BackoffOrder {
        /// The initial delay given.
        initial: Duration,
        /// The maximum delay given.
        max: Duration,
    },
    /// A DHT message could not carry the largest record.
    #[error(
        "max message size ({message} bytes) cannot carry the largest record: \
         it needs at least {needed} bytes (record size plus framing)"
    )]
    MessageTooSmall {
        /// The message size given.
        message: usize,
        /// What the record size requires.
        needed: usize,
    },
    /// The store's byte budget cannot hold the largest record.
    #[error(
        "max record bytes ({bytes}) cannot hold the largest record: it needs at least {needed} \
         bytes (the largest key plus the largest value)"
    )]
    RecordBytesTooSmall {
        /// The budget given.
        bytes: usize,
        /// What the largest record needs.
        needed: usize,
    },
    /// A bootstrap address without the peer id to verify.
    #[error(
        "bootstrap address {address} does not end in /p2p/<peer id>; the peer id is needed to verify whom we reach"
    )]
    BootstrapWithoutPeerId {
        /// The address given.
        address: Multiaddr,
    },
    /// A browser was asked to relay for others, which it cannot: nobody can
    /// dial it.
    #[error("a browser node cannot relay for others: nobody can dial it")]
    RelayInBrowser,
}

impl ErrorCode for ConfigError {
    fn code(&self) -> &'static str {
        match self {
            ConfigError::RelayInBrowser => "relay-in-browser",
            ConfigError::InvalidProtocol { .. } => "invalid-protocol",
            ConfigError::Zero { .. } => "zero-setting",
            ConfigError::RefreshNotBeforeTtl { .. } => "refresh-not-before-ttl",
            ConfigError::BackoffOrder { .. } => "backoff-order",
            ConfigError::MessageTooSmall { .. } => "message-too-small",
            ConfigError::RecordBytesTooSmall { .. } => "record-bytes-too-small",
            ConfigError::BootstrapWithoutPeerId { .. } => "bootstrap-without-peer-id",
        }
    }
}

/// A namespace name that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    /// The name is empty.
    #[error("the namespace name is empty")]
    Empty,
    /// The name is too long.
    #[error("the namespace name is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name contains a control character.
    #[error("the namespace name contains control character {character:?} at byte {index}")]
    ControlCharacter {
        /// Byte offset of the character.
        index: usize,
        /// The character.
        character: char,
    },
    /// The name starts or ends with white space, which is easy to get wrong.
    #[error("the namespace name {name:?} starts or ends with white space")]
    SurroundingWhitespace {
        /// The name given.
        name: String,
    },
}

impl ErrorCode for NamespaceError {
    fn code(&self) -> &'static str {
        match self {
            NamespaceError::Empty => "empty-namespace",
            NamespaceError::TooLong { .. } => "namespace-too-long",
            NamespaceError::ControlCharacter { .. } => "namespace-control-character",
            NamespaceError::SurroundingWhitespace { .. } => "namespace-whitespace",
        }
    }
}

/// A record key or value the DHT does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The key is empty.
    #[error("the record key is empty")]
    EmptyKey,
    /// The key is too long.
    #[error("the record key is {size} bytes; the limit is {max}")]
    KeyTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The value is too large.
    #[error("the record value is {size} bytes; the limit is {max}")]
    ValueTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The key is neither a mutable (`/ns-dht/m/<owner>/<name>`) nor an
    /// immutable (`/ns-dht/i/<sha256>`) record key.
    #[error(
        "the key is not a record key: expected /ns-dht/m/<owner peer id>/<name> or /ns-dht/i/<sha256 hex>"
    )]
    UnknownKind,
    /// A mutable record's name is empty or too long.
    #[error("a record name is 1 to {max} bytes, not {size}")]
    BadName {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The owner's peer id does not embed its public key, so nobody could
    /// check its signature.
    #[error(
        "the owner's peer id does not embed its public key (only ed25519 and secp256k1 keys can own records)"
    )]
    OwnerKeyNotInline,
    /// A mutable record's value is not a well-formed envelope.
    #[error("the record value is not a well-formed signed envelope")]
    MalformedEnvelope,
    /// The signature or the hash does not match: someone other than the
    /// owner made this record, or changed it.
    #[error("the record is forged: its signature or hash does not match its key")]
    Forged,
}

impl ErrorCode for RecordError {
    fn code(&self) -> &'static str {
        match self {
            RecordError::EmptyKey => "empty-key",
            RecordError::KeyTooLarge { .. } => "key-too-large",
            RecordError::ValueTooLarge { .. } => "value-too-large",
            RecordError::UnknownKind => "unknown-record-kind",
            RecordError::BadName { .. } => "bad-record-name",
            RecordError::OwnerKeyNotInline => "owner-key-not-inline",
            RecordError::MalformedEnvelope => "malformed-record",
            RecordError::Forged => "forged-record",
        }
    }
}

/// Why a record could not be stored.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PutRecordError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// The record itself is not acceptable.
    #[error(transparent)]
    InvalidRecord(#[from] RecordError),
    /// This node's own store refused the record: it is full, or it holds
    /// a newer version.
    #[error("this node's store refused the record: {0}")]
    Refused(#[source] crate::record::StoreError),
    /// Too few peers confirmed the write.
    #[error("record {key} was stored locally and at {stored} peers, but {required} were required")]
    QuorumFailed {
        /// The key, for people.
        key: String,
        /// Peers that confirmed.
        stored: usize,
        /// Peers required.
        required: usize,
    },
    /// The write did not finish in time.
    #[error("storing record {key} timed out after {stored} of {required} required peers confirmed")]
    Timeout {
        /// The key, for people.
        key: String,
        /// Peers that confirmed.
        stored: usize,
        /// Peers required.
        required: usize,
    },
}

impl ErrorCode for PutRecordError {
    fn code(&self) -> &'static str {
        match self {
            PutRecordError::NodeStopped => NodeStopped.code(),
            PutRecordError::InvalidRecord(error) => error.code(),
            PutRecordError::Refused(reason) => reason.code(),
            PutRecordError::QuorumFailed { .. } => "quorum-failed",
            PutRecordError::Timeout { .. } => "timeout",
        }
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GetRecordError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// The key itself is not acceptable.
    #[error(transparent)]
    InvalidKey(#[from] RecordError),
    /// No peer on the path to the key holds a valid copy of the record.
    #[error("record {key} was not found{}", forged(*forgeries))]
    NotFound {
        /// The key, for people.
        key: String,
        /// Copies discarded because they failed verification.
        forgeries: usize,
    },
    /// Fewer agreeing copies than required were found.
    #[error("record {key} was found {found} times in agreement, but {required} were required{}", forged(*forgeries))]
    QuorumFailed {
        /// The key, for people.
        key: String,
        /// The most copies found of one version.
        found: usize,
        /// Copies required.
        required: usize,
        /// Copies discarded because they failed verification.
        forgeries: usize,
    },
    /// The lookup did not finish in time.
    #[error("looking up record {key} timed out{}", forged(*forgeries))]
    Timeout {
        /// The key, for people.
        key: String,
        /// Copies discarded because they failed verification.
        forgeries: usize,
    },
}

/// The end of a read's error message that says how many forged copies it
/// discarded, if any.
fn forged(forgeries: usize) -> String {
    match forgeries {
        0 => String::new(),
        1 => " (1 forged copy discarded)".to_owned(),
        n => format!(" ({n} forged copies discarded)"),
    }
}

impl ErrorCode for GetRecordError {
    fn code(&self) -> &'static str {
        match self {
            GetRecordError::NodeStopped => NodeStopped.code(),
            GetRecordError::InvalidKey(error) => error.code(),
            GetRecordError::NotFound { .. } => "not-found",
            GetRecordError::QuorumFailed { .. } => "quorum-failed",
            GetRecordError::Timeout { .. } => "timeout",
        }
    }
}

/// Why a closest-peers lookup failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClosestPeersError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// The key itself is not acceptable.
    #[error(transparent)]
    InvalidKey(#[from] RecordError),
    /// The lookup did not finish in time.
    #[error("the closest-peers lookup for {key} timed out with {found} peers found", found = found.len())]
    Timeout {
        /// The key, for people.
        key: String,
        /// The peers found before the timeout.
        found: Vec<crate::PeerAddresses>,
    },
}

impl ErrorCode for ClosestPeersError {
    fn code(&self) -> &'static str {
        match self {
            ClosestPeersError::NodeStopped => NodeStopped.code(),
            ClosestPeersError::InvalidKey(error) => error.code(),
            ClosestPeersError::Timeout { .. } => "timeout",
        }
    }
}

/// Why a namespace registration failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// The local store has no room for another registration.
    #[error("cannot register in {namespace}: the local store is full of registrations")]
    StoreFull {
        /// The namespace.
        namespace: Namespace,
    },
    /// The announcement to the closest peers did not finish in time.
    #[error("announcing the registration in {namespace} timed out")]
    Timeout {
        /// The namespace.
        namespace: Namespace,
    },
}

impl ErrorCode for RegisterError {
    fn code(&self) -> &'static str {
        match self {
            RegisterError::NodeStopped => NodeStopped.code(),
            RegisterError::StoreFull { .. } => "store-full",
            RegisterError::Timeout { .. } => "timeout",
        }
    }
}

/// Why a namespace discovery failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoverError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// The lookup timed out before finding any member.
    #[error("discovering members of {namespace} timed out")]
    Timeout {
        /// The namespace.
        namespace: Namespace,
    },
}

impl ErrorCode for DiscoverError {
    fn code(&self) -> &'static str {
        match self {
            DiscoverError::NodeStopped => NodeStopped.code(),
            DiscoverError::Timeout { .. } => "timeout",
        }
    }
}

/// Why a dial failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// The connection could not be made.
    #[error("could not connect to {address}")]
    Failed {
        /// The address dialed.
        address: Multiaddr,
        /// What libp2p reported.
        #[source]
        source: DialFailure,
    },
}

impl ErrorCode for DialError {
    fn code(&self) -> &'static str {
        match self {
            DialError::NodeStopped => NodeStopped.code(),
            DialError::Failed { .. } => "dial-failed",
        }
    }
}

/// Why a listener could not be started.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// No transport of this host handles the address.
    #[error("cannot listen on {address}: no transport of this node supports it")]
    Unsupported {
        /// The address given.
        address: Multiaddr,
    },
    /// The transport refused or lost the listener.
    #[error("cannot listen on {address}")]
    Failed {
        /// The address given.
        address: Multiaddr,
        /// What the transport reported.
        #[source]
        source: Arc<io::Error>,
    },
    /// The listener closed before it got an address.
    #[error("cannot listen on {address}: the listener closed")]
    Closed {
        /// The address given.
        address: Multiaddr,
    },
}

impl ErrorCode for ListenError {
    fn code(&self) -> &'static str {
        match self {
            ListenError::NodeStopped => NodeStopped.code(),
            ListenError::Unsupported { .. } => "listen-unsupported",
            ListenError::Failed { .. } | ListenError::Closed { .. } => "listen-failed",
        }
    }
}

/// A namespace link attempt that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// A node cannot link to itself.
    #[error("{peer} is this node; it cannot link to itself in {namespace}")]
    OwnPeer {
        /// This node.
        peer: PeerId,
        /// The namespace.
        namespace: Namespace,
    },
    /// The peer answered that it is not registered in the namespace.
    #[error("{peer} is not registered in {namespace}")]
    NotRegistered {
        /// The peer.
        peer: PeerId,
        /// The namespace.
        namespace: Namespace,
    },
    /// The peer could not be reached or did not answer.
    #[error("could not link to {peer} in {namespace}")]
    Failed {
        /// The peer.
        peer: PeerId,
        /// The namespace.
        namespace: Namespace,
        /// What went wrong on the way.
        #[source]
        source: Arc<OutboundFailure>,
    },
}

impl ErrorCode for LinkError {
    fn code(&self) -> &'static str {
        match self {
            LinkError::NodeStopped => NodeStopped.code(),
            LinkError::OwnPeer { .. } => "own-peer",
            LinkError::NotRegistered { .. } => "not-registered",
            LinkError::Failed { .. } => "link-failed",
        }
    }
}

/// Why a node did not finish joining the DHT, from
/// [`Running::joined`](crate::Running::joined).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// No bootstrap lookup finished in time.
    #[error(
        "could not join the DHT within {within:?}: {}",
        describe_unreachable(unreachable)
    )]
    Timeout {
        /// How long it was given.
        within: Duration,
        /// The bootstrap peers that could not be reached meanwhile, and why
        /// (the latest failure of each).
        unreachable: Vec<(PeerId, DialFailure)>,
    },
}

fn describe_unreachable(unreachable: &[(PeerId, DialFailure)]) -> String {
    if unreachable.is_empty() {
        return "no bootstrap peer answered".to_owned();
    }
    let failures: Vec<String> = unreachable
        .iter()
        .map(|(peer, error)| format!("{peer}: {}", chain(error.as_ref())))
        .collect();
    failures.join("; ")
}

impl ErrorCode for JoinError {
    fn code(&self) -> &'static str {
        match self {
            JoinError::NodeStopped => NodeStopped.code(),
            JoinError::Timeout { .. } => "join-timeout",
        }
    }
}

/// The node is no longer running; returned by snapshot operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node has stopped")]
pub struct NodeStopped;

impl ErrorCode for NodeStopped {
    fn code(&self) -> &'static str {
        "node-stopped"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_names_every_cause_once() {
        let io = io::Error::new(io::ErrorKind::AddrInUse, "address in use");
        let error = ListenError::Failed {
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            source: Arc::new(io),
        };
        assert_eq!(
            chain(&error),
            "cannot listen on /ip4/127.0.0.1/tcp/1: address in use"
        );
        assert_eq!(error.code(), "listen-failed");
    }

    #[test]
    fn wrapped_errors_keep_the_inner_code() {
        let error = PutRecordError::from(RecordError::ValueTooLarge { size: 9, max: 8 });
        assert_eq!(error.code(), "value-too-large");
        assert_eq!(GetRecordError::NodeStopped.code(), NodeStopped.code());
    }
}
