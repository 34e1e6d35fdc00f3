//! Reads from relayed holders against reads from direct ones, in one
//! network: a relay (the bootstrap), `n` native nodes and `n` relayed nodes
//! (stand-ins for browser tabs), in this process over `MemoryTransport`
//! with noise and yamux, k = 2. Records are chosen (by their hash) so that
//! both of their k closest peers are relayed nodes, or both native ones;
//! a native writer stores each at both, and native readers read them.
//!
//! Warm reads come from one reader that keeps its connections; cold reads
//! each from a reader that just joined, so every holder it asks is dialed
//! first: through the relay (a circuit: to the relay, then noise and yamux
//! again inside it) or directly. The memory transport has no latency, so
//! what the difference shows is the work a circuit adds, not the relay's
//! round trip on a real network, which comes on top.

use std::{
    collections::HashSet,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use dht_core::{
    Config, Quorum, RelayLimits, Role, ServerMode, Write,
    libp2p::PeerId,
    record::immutable_key,
    testnet::{Testnet, xor_closest},
};
use serde::{Deserialize, Serialize};

use crate::stats::Latency;

/// The replication factor: small, so that a record's holders can be all of
/// one kind.
const K: usize = 2;

/// Cold reads per kind of holder: each starts a node.
const COLD_READS: usize = 20;

/// Reads of records held by one kind of node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HolderReads {
    /// Puts to both holders.
    pub(crate) put: Latency,
    /// Reads by a reader that keeps its connections.
    pub(crate) warm_get: Latency,
    /// Reads by a reader that just joined.
    pub(crate) cold_get: Latency,
    /// Reads answered by a peer other than the chosen holders (a cached
    /// copy), out of all reads; they still count in the latencies.
    pub(crate) answered_elsewhere: usize,
    /// Reads that failed.
    pub(crate) failed: usize,
}

/// What the run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Holders {
    /// Native nodes, and as many relayed ones.
    pub(crate) per_kind: usize,
    pub(crate) relayed: HolderReads,
    pub(crate) direct: HolderReads,
}

/// Builds the network and reads `rounds` records of each kind warm and
/// [`COLD_READS`] cold, within `limit`.
pub(crate) async fn measure(
    per_kind: usize,
    rounds: usize,
    limit: Duration,
) -> anyhow::Result<Holders> {
    tokio::time::timeout(limit, run(per_kind, rounds))
        .await
        .context("the run took longer than its time limit")?
}

async fn run(per_kind: usize, rounds: usize) -> anyhow::Result<Holders> {
    if per_kind < 2 {
        bail!("need at least 2 nodes of each kind, got {per_kind}");
    }
    let mut net = Testnet::new(|task| {
        tokio::spawn(task);
    });
    let config = || Config::builder().replication_factor(K);
    net.spawn(
        config().relay_server(Some(RelayLimits::default())),
        Role::Bootstrap,
    )
    .await?;
    // The writer and the warm reader hold nothing: they are not candidates.
    let writer = net
        .spawn(config(), Role::ClientHelper)
        .await?
        .handle
        .clone();
    let reader = net
        .spawn(config(), Role::ClientHelper)
        .await?
        .handle
        .clone();
    let mut direct = HashSet::new();
    for _ in 0..per_kind {
        direct.insert(net.spawn(config(), Role::ClientHelper).await?.peer_id);
    }
    let mut relayed = HashSet::new();
    for _ in 0..per_kind {
        let node = net
            .spawn(
                config().server_mode(ServerMode::Relayed),
                Role::ClientHelper,
            )
            .await?;
        relayed.insert(node.peer_id);
    }
    let everyone: Vec<PeerId> = net.nodes().iter().map(|n| n.peer_id).collect();
    // Let every node learn the others, as a network that ran a while has.
    for node in net.nodes() {
        node.handle.bootstrap().await?;
    }

    let mut results = Vec::new();
    for (kind, holders) in [("relayed", &relayed), ("direct", &direct)] {
        let values = values_held_by(kind, holders, &everyone, rounds + COLD_READS);
        let mut puts = Vec::new();
        for value in &values {
            let started = Instant::now();
            let write = Write::immutable(value.clone());
            let two = Quorum::N(NonZeroUsize::new(K).context("k is not zero")?);
            writer
                .put_with_quorum(write, two)
                .await
                .with_context(|| format!("a put to {kind} holders"))?;
            puts.push(started.elapsed());
        }
        let (warm_values, cold_values) = values.split_at(rounds);
        let mut reads = Reads::default();
        for value in warm_values {
            reads.read(&reader, value, holders, false).await;
        }
        for value in cold_values {
            let fresh = net
                .spawn(config(), Role::ClientHelper)
                .await?
                .handle
                .clone();
            reads.read(&fresh, value, holders, true).await;
            fresh.shutdown().await;
        }
        results.push(HolderReads {
            put: Latency::of(&puts),
            warm_get: Latency::of(&reads.warm),
            cold_get: Latency::of(&reads.cold),
            answered_elsewhere: reads.elsewhere,
            failed: reads.failed,
        });
    }
    net.shutdown().await;
    let direct = results.pop().context("the direct results")?;
    let relayed = results.pop().context("the relayed results")?;
    Ok(Holders {
        per_kind,
        relayed,
        direct,
    })
}

/// `count` values whose k closest peers of `everyone` are all in `holders`.
fn values_held_by(
    kind: &str,
    holders: &HashSet<PeerId>,
    everyone: &[PeerId],
    count: usize,
) -> Vec<Vec<u8>> {
    (0u64..)
        .map(|i| format!("held by {kind} nodes #{i}").into_bytes())
        .filter(|value| {
            let key = immutable_key(value);
            xor_closest(&key, everyone.iter().copied(), K)
                .iter()
                .all(|peer| holders.contains(peer))
        })
        .take(count)
        .collect()
}

#[derive(Default)]
struct Reads {
    warm: Vec<Duration>,
    cold: Vec<Duration>,
    elsewhere: usize,
    failed: usize,
}

impl Reads {
    async fn read(
        &mut self,
        reader: &dht_core::NodeHandle,
        value: &[u8],
        holders: &HashSet<PeerId>,
        cold: bool,
    ) {
        let started = Instant::now();
        match reader.get_record(immutable_key(value)).await {
            Ok(found) => {
                let took = started.elapsed();
                if !found.found_at.iter().all(|peer| holders.contains(peer)) {
                    self.elsewhere += 1;
                }
                if cold {
                    self.cold.push(took);
                } else {
                    self.warm.push(took);
                }
            }
            Err(_) => self.failed += 1,
        }
    }
}
