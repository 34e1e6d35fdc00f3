//! The transport stack of native nodes, shared by the `native-node` binary
//! and the benchmarks: how a tokio host builds a swarm around
//! `dht_core::Behaviour`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod transport;
