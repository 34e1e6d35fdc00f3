//! Messages between linked peers, one request and one answer each, on the
//! link's own protocol ([`crate::namespace::NAMESPACE_PROTOCOL`]; wire format
//! in [`crate::namespace::NamespaceCodec`]).
//!
//! Once two peers are linked in a namespace (the handshake), either may send
//! the other small messages: this is what turns discovery into something an
//! app can use (a chat, a game's moves, a signalling channel). A message is
//! accepted only from a linked peer and within its share ([`MessageLimits`]);
//! the answer says whether it was delivered.

use std::{io, sync::Arc};

use libp2p::{PeerId, request_response::OutboundFailure};

use crate::error::{ErrorCode, NodeStopped};

/// Bounds on messages between linked peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Bytes in one message at most. Default 16 KiB.
    pub max_bytes: usize,
    /// Messages one peer may send in a burst. Default 32.
    pub burst: u32,
    /// Messages one peer may send per second once its burst is spent.
    /// Default 8.
    pub per_second: u32,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 16 * 1024,
            burst: 32,
            per_second: 8,
        }
    }
}

/// How a message was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    /// It reached the peer's application.
    Delivered,
    /// The peer has no link with the sender, so it did not take it.
    NotLinked,
    /// The sender is over its share; the message was dropped.
    RateLimited,
}

impl MessageStatus {
    pub(crate) fn to_wire(self) -> u8 {
        match self {
            MessageStatus::Delivered => 0,
            MessageStatus::NotLinked => 1,
            MessageStatus::RateLimited => 2,
        }
    }

    pub(crate) fn from_wire(byte: u8) -> io::Result<Self> {
        match byte {
            0 => Ok(MessageStatus::Delivered),
            1 => Ok(MessageStatus::NotLinked),
            2 => Ok(MessageStatus::RateLimited),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown message status {other}"),
            )),
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The node is no longer running.
    #[error("the node has stopped")]
    NodeStopped,
    /// This node has no link with the peer: messages go to linked peers only.
    #[error("no link with {peer}: link to it in a namespace first")]
    NotLinked {
        /// The peer.
        peer: PeerId,
    },
    /// The message is larger than the limit.
    #[error("a message of {size} bytes is above the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The peer has no link with this node and refused the message.
    #[error("{peer} refused the message: it has no link with this node")]
    RefusedNotLinked {
        /// The peer.
        peer: PeerId,
    },
    /// The peer dropped the message: this node sent more than its share.
    #[error("{peer} dropped the message: too many messages, try again later")]
    RateLimited {
        /// The peer.
        peer: PeerId,
    },
    /// The peer answered with something other than a message status.
    #[error("{peer} answered the message with something else")]
    BadAnswer {
        /// The peer.
        peer: PeerId,
    },
    /// The message could not be sent or was not answered.
    #[error("the message to {peer} failed")]
    Failed {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        #[source]
        source: Arc<OutboundFailure>,
    },
}

impl ErrorCode for MessageError {
    fn code(&self) -> &'static str {
        match self {
            MessageError::NodeStopped => NodeStopped.code(),
            MessageError::NotLinked { .. } => "not-linked",
            MessageError::TooLarge { .. } => "message-too-large",
            MessageError::RefusedNotLinked { .. } => "refused-not-linked",
            MessageError::RateLimited { .. } => "rate-limited",
            MessageError::BadAnswer { .. } => "bad-answer",
            MessageError::Failed { .. } => "message-failed",
        }
    }
}

impl MessageError {
    /// The error a `status` other than delivered means, from `peer`.
    pub(crate) fn from_status(peer: PeerId, status: MessageStatus) -> Option<Self> {
        match status {
            MessageStatus::Delivered => None,
            MessageStatus::NotLinked => Some(MessageError::RefusedNotLinked { peer }),
            MessageStatus::RateLimited => Some(MessageError::RateLimited { peer }),
        }
    }
}
