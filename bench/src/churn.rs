//! Records through crashes: a network of `n` nodes (in this process, over
//! `MemoryTransport` with noise and yamux, k = 4 so that each record lives
//! at few nodes) holds records; a third of the nodes crash, and later
//! another third of the first count. Measured with re-replication on
//! (the default, 10 s after a change) and off (only libp2p's hourly
//! replication, which does not come within the run): how many records lost
//! every holder, how many holders the others kept, and how many reads
//! succeed at the end. Then steady churn on a fresh network: one node
//! replaced by a new one every few seconds for two minutes.
//!
//! A holder notices a crash when its connection to the crashed node breaks
//! or a dial of it fails; holders rarely hold connections to each other, so
//! the dial that tells is mostly that of the routing-table refresh (a
//! lookup of the node's own id and of a random id per bucket). The nodes
//! here refresh every [`REFRESH`] instead of the default 5 minutes, so that
//! the run shows in seconds what a network shows within minutes.

use std::{collections::HashSet, time::Duration};

use anyhow::{Context, bail};
use dht_core::{
    Config, ConfigBuilder, NodeHandle, Role, Write,
    testnet::{TestNode, Testnet},
};
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::stats::Rng;

/// The replication factor.
const K: usize = 4;

/// How often the nodes refresh their routing tables.
const REFRESH: Duration = Duration::from_secs(10);

/// How long the survivors of a crash are left to notice it and repair
/// before they are counted: a refresh, the default re-replication delay
/// (10 s), with room to spare.
const SETTLE: Duration = Duration::from_secs(30);

/// Steady churn: one node replaced this often, for this long, the records
/// counted this often.
const STEADY_EVERY: Duration = Duration::from_secs(4);
const STEADY_FOR: Duration = Duration::from_secs(120);
const STEADY_SAMPLE: Duration = Duration::from_secs(20);

/// What one crash left.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AfterCrash {
    /// Nodes still running.
    pub(crate) alive: usize,
    /// Records with no live holder, out of all.
    pub(crate) lost: usize,
    /// Records held by fewer than k live nodes.
    pub(crate) below_k: usize,
    /// The mean number of live holders per record (the writer's own copy
    /// counts).
    pub(crate) mean_holders: f64,
}

/// One run: re-replication on or off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChurnRun {
    pub(crate) rereplication: bool,
    /// Right after the first third crashed, and once the survivors settled.
    pub(crate) first_crash: AfterCrash,
    pub(crate) first_settled: AfterCrash,
    /// Once the second third crashed and the survivors settled.
    pub(crate) second_settled: AfterCrash,
    /// Reads of every record by a survivor at the end that succeeded.
    pub(crate) reads_ok: usize,
}

/// Steady churn: re-replication on or off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SteadyRun {
    pub(crate) rereplication: bool,
    /// Nodes replaced.
    pub(crate) replaced: usize,
    /// Seconds since the churn began, and how the records stood then.
    pub(crate) samples: Vec<(u64, AfterCrash)>,
    /// Reads of every record by a live node at the end that succeeded.
    pub(crate) reads_ok: usize,
}

/// What the measurement found.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Churn {
    pub(crate) nodes: usize,
    pub(crate) records: usize,
    pub(crate) k: usize,
    pub(crate) runs: Vec<ChurnRun>,
    pub(crate) steady: Vec<SteadyRun>,
}

/// Runs the crashes on `nodes` nodes holding `records` records, with
/// re-replication on and then off, within `limit`.
pub(crate) async fn measure(
    nodes: usize,
    records: usize,
    limit: Duration,
    seed: u64,
) -> anyhow::Result<Churn> {
    if nodes < 6 {
        bail!("need at least 6 nodes, got {nodes}");
    }
    tokio::time::timeout(limit, async {
        let (mut runs, mut steady_runs) = (Vec::new(), Vec::new());
        for rereplication in [true, false] {
            runs.push(run(nodes, records, rereplication, seed).await?);
            steady_runs.push(steady(nodes, records, rereplication, seed).await?);
        }
        Ok(Churn {
            nodes,
            records,
            k: K,
            runs,
            steady: steady_runs,
        })
    })
    .await
    .context("the run took longer than its time limit")?
}

/// The nodes' configuration, with re-replication `on` or off.
fn config(on: bool) -> ConfigBuilder {
    let default_delay = Config::default().rereplication_delay();
    Config::builder()
        .replication_factor(K)
        .rereplicate_after(default_delay.filter(|_| on))
        .bootstrap_interval(Some(REFRESH))
}

/// A network of `size` nodes holding `records` records written from
/// random nodes; their keys.
async fn populated(
    size: usize,
    records: usize,
    on: bool,
    seed: u64,
    rng: &mut Rng,
) -> anyhow::Result<(Testnet, Vec<Vec<u8>>)> {
    let mut net = Testnet::new(|task| {
        tokio::spawn(task);
    });
    for _ in 0..size {
        net.spawn(config(on), Role::ClientHelper).await?;
    }
    join_all(net.nodes().iter().map(|n| n.handle.bootstrap())).await;
    let mut keys = Vec::with_capacity(records);
    for i in 0..records {
        let writer = &net.nodes()[rng.below(size)];
        let write = Write::immutable(format!("churn record {i} of run {seed}").into_bytes());
        keys.push(write.key()?);
        writer.handle.put(write).await.context("a put")?;
    }
    eprintln!(
        "  churn N={size}, re-replication {}: {records} records written",
        if on { "on" } else { "off" }
    );
    Ok((net, keys))
}

async fn run(size: usize, records: usize, on: bool, seed: u64) -> anyhow::Result<ChurnRun> {
    let mut rng = Rng::new(seed ^ size as u64);
    let (net, keys) = populated(size, records, on, seed, &mut rng).await?;
    let mut alive: Vec<TestNode> = net.nodes().to_vec();
    let third = size / 3;
    crash(&mut alive, third, &mut rng).await;
    let first_crash = count(&alive, &keys).await;
    tokio::time::sleep(SETTLE).await;
    let first_settled = count(&alive, &keys).await;
    crash(&mut alive, third, &mut rng).await;
    tokio::time::sleep(SETTLE).await;
    let second_settled = count(&alive, &keys).await;
    let reads_ok = reads(&alive, &keys, &mut rng).await;
    net.shutdown().await;
    Ok(ChurnRun {
        rereplication: on,
        first_crash,
        first_settled,
        second_settled,
        reads_ok,
    })
}

/// How many of `keys` a random node of `alive` reads.
async fn reads(alive: &[TestNode], keys: &[Vec<u8>], rng: &mut Rng) -> usize {
    let reader = &alive[rng.below(alive.len())].handle;
    let reads = join_all(keys.iter().map(|key| reader.get_record(key.clone()))).await;
    reads.iter().filter(|read| read.is_ok()).count()
}

/// Replaces a random node with a new one every [`STEADY_EVERY`] for
/// [`STEADY_FOR`] (the old one crashes, the new one joins through a random
/// live node), counting the records every [`STEADY_SAMPLE`].
async fn steady(size: usize, records: usize, on: bool, seed: u64) -> anyhow::Result<SteadyRun> {
    let mut rng = Rng::new(seed ^ size as u64 ^ 0x5eed);
    let (mut net, keys) = populated(size, records, on, seed, &mut rng).await?;
    let mut alive: Vec<TestNode> = net.nodes().to_vec();
    let started = tokio::time::Instant::now();
    let mut samples = Vec::new();
    let mut replaced = 0;
    while started.elapsed() < STEADY_FOR {
        tokio::time::sleep(STEADY_EVERY).await;
        crash(&mut alive, 1, &mut rng).await;
        let through = alive[rng.below(alive.len())].address.clone();
        let joined = net
            .spawn_joining(config(on).bootstrap_peer(through), Role::ClientHelper)
            .await
            .context("a replacement joins")?;
        alive.push(joined.clone());
        replaced += 1;
        if replaced % (STEADY_SAMPLE.as_secs() / STEADY_EVERY.as_secs()) as usize == 0 {
            let after = count(&alive, &keys).await;
            samples.push((started.elapsed().as_secs(), after));
        }
    }
    let reads_ok = reads(&alive, &keys, &mut rng).await;
    net.shutdown().await;
    Ok(SteadyRun {
        rereplication: on,
        replaced,
        samples,
        reads_ok,
    })
}

/// Stops `count` random nodes of `alive`, as crashes would (their
/// connections break; nobody is told).
async fn crash(alive: &mut Vec<TestNode>, count: usize, rng: &mut Rng) {
    for _ in 0..count.min(alive.len().saturating_sub(1)) {
        let node = alive.swap_remove(rng.below(alive.len()));
        node.handle.shutdown().await;
    }
}

/// How the records stand among the `alive` nodes.
async fn count(alive: &[TestNode], keys: &[Vec<u8>]) -> AfterCrash {
    let stores = join_all(alive.iter().map(|node| held_keys(&node.handle))).await;
    let mut after = AfterCrash {
        alive: alive.len(),
        ..AfterCrash::default()
    };
    let mut total = 0usize;
    for key in keys {
        let holders = stores.iter().filter(|held| held.contains(key)).count();
        total += holders;
        if holders == 0 {
            after.lost += 1;
        }
        if holders < K {
            after.below_k += 1;
        }
    }
    after.mean_holders = total as f64 / keys.len().max(1) as f64;
    after
}

async fn held_keys(handle: &NodeHandle) -> HashSet<Vec<u8>> {
    let records = handle.records().await.unwrap_or_default();
    records.into_iter().map(|record| record.key).collect()
}

/// Prints what [`measure`] found.
pub(crate) fn print(churn: &Churn) {
    println!(
        "\nrecords through crashes ({} nodes in process, {} records, k = {}, refresh every {} s; \
         a third crash, then another third; counted right after and {} s after each crash):",
        churn.nodes,
        churn.records,
        churn.k,
        REFRESH.as_secs(),
        SETTLE.as_secs()
    );
    for run in &churn.runs {
        let line = |after: &AfterCrash| {
            format!(
                "{} alive, {} lost, {} below k, {:.1} holders",
                after.alive, after.lost, after.below_k, after.mean_holders
            )
        };
        println!(
            "  re-replication {:>3}: first crash {}; settled {}; second crash, settled {}; \
             {} of {} read back",
            if run.rereplication { "on" } else { "off" },
            line(&run.first_crash),
            line(&run.first_settled),
            line(&run.second_settled),
            run.reads_ok,
            churn.records
        );
    }
    println!(
        "steady churn (one node replaced every {} s for {} s, the new one joining through a \
         random live node):",
        STEADY_EVERY.as_secs(),
        STEADY_FOR.as_secs()
    );
    for run in &churn.steady {
        let samples: Vec<String> = run
            .samples
            .iter()
            .map(|(at, after)| format!("{at} s: {} lost, {} below k", after.lost, after.below_k))
            .collect();
        println!(
            "  re-replication {:>3}: {} replaced; {}; {} of {} read back",
            if run.rereplication { "on" } else { "off" },
            run.replaced,
            samples.join("; "),
            run.reads_ok,
            churn.records
        );
    }
}
