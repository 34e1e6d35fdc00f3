//! The native host of ns-dht, shared by the `native-node` binary and the
//! benchmarks: the transport stack of a tokio node ([`transport`]), where it
//! listens ([`listen::ListenSet`]), starting and stopping a node on the
//! tokio runtime ([`node`]), and its state on disk ([`storage`]).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod listen;
pub mod node;
pub mod storage;
pub mod transport;

pub use listen::ListenSet;
pub use node::{NativeNode, NodeError, start, stop};
