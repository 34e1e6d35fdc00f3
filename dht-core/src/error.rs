//! Errors, one enum per operation, each saying what went wrong and with what.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::{handle::PeerAddresses, namespace::Namespace};

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
    /// A bootstrap address without the peer id to verify.
    #[error(
        "bootstrap address {address} does not end in /p2p/<peer id>; the peer id is needed to verify whom we reach"
    )]
    BootstrapWithoutPeerId {
        /// The address given.
        address: Multiaddr,
    },
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
    /// The local store is full of live records.
    #[error("the local record store is full ({max} records)")]
    StoreFull {
        /// Its capacity.
        max: usize,
    },
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
    /// No peer on the path to the key holds the record.
    #[error("record {key} was not found")]
    NotFound {
        /// The key, for people.
        key: String,
    },
    /// Fewer copies than required were found.
    #[error("record {key} was found {found} times, but {required} were required")]
    QuorumFailed {
        /// The key, for people.
        key: String,
        /// Copies found.
        found: usize,
        /// Copies required.
        required: usize,
    },
    /// The lookup did not finish in time.
    #[error("looking up record {key} timed out")]
    Timeout {
        /// The key, for people.
        key: String,
    },
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
    #[error("the closest-peers lookup for {key} timed out with {} peers found", found.len())]
    Timeout {
        /// The key, for people.
        key: String,
        /// The peers found before the timeout.
        found: Vec<PeerAddresses>,
    },
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

/// Why a dial failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// The connection could not be made.
    #[error("could not connect to {address}: {reason}")]
    Failed {
        /// The address dialed.
        address: Multiaddr,
        /// What went wrong.
        reason: String,
    },
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
    #[error("cannot listen on {address}: {reason}")]
    Failed {
        /// The address given.
        address: Multiaddr,
        /// What went wrong.
        reason: String,
    },
}

/// A namespace link attempt that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// The peer answered that it is not registered in the namespace.
    #[error("{peer} is not registered in {namespace}")]
    NotRegistered {
        /// The peer.
        peer: PeerId,
        /// The namespace.
        namespace: Namespace,
    },
    /// The peer could not be reached or did not answer.
    #[error("could not link to {peer} in {namespace}: {reason}")]
    Failed {
        /// The peer.
        peer: PeerId,
        /// The namespace.
        namespace: Namespace,
        /// What went wrong.
        reason: String,
    },
}

/// The node is no longer running; returned by snapshot operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node has stopped")]
pub struct NodeStopped;
