//! Networks of many nodes in this process, over `MemoryTransport` (noise +
//! yamux, as in production) or real loopback TCP or QUIC sockets, and the
//! measurements taken on them. Every node is a plain `dht-core` node with the
//! default configuration: no benchmark-only shortcut in the protocol.

use std::{
    collections::HashMap,
    fmt,
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use dht_core::{
    Config, ConfigBuilder, Namespace, NodeHandle, Role, Running, Write,
    libp2p::{Multiaddr, PeerId, identity::Keypair, multiaddr::Protocol},
    testnet,
};
use futures::future::join_all;
use native_node::ListenSet;
use serde::{Deserialize, Serialize};

use crate::{
    hops::Tables,
    stats::{self, Latency, Rng, Rounds},
};

/// How nodes reach each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    /// In-process `MemoryTransport` with noise and yamux.
    Memory,
    /// Loopback TCP with noise and yamux.
    Tcp,
    /// Loopback QUIC.
    Quic,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Memory => "memory",
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        })
    }
}

/// A node of the benchmark network.
pub(crate) struct BenchNode {
    pub(crate) peer_id: PeerId,
    pub(crate) address: Multiaddr,
    pub(crate) handle: NodeHandle,
    /// Its identity, which signs the records it writes.
    pub(crate) keypair: Keypair,
}

impl BenchNode {
    fn new((node, address, keypair): (Running, Multiaddr, Keypair)) -> Self {
        Self {
            peer_id: node.peer_id(),
            address,
            handle: node.handle,
            keypair,
        }
    }
}

/// Starts one node and its listener; returns it with its dialable address
/// and its identity.
async fn spawn_node(
    transport: Transport,
    config: &Config,
    role: &Role,
) -> anyhow::Result<(Running, Multiaddr, Keypair)> {
    let keypair = Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let node = match transport {
        Transport::Memory => {
            let spawner: testnet::Spawner = Arc::new(|task| {
                tokio::spawn(task);
            });
            let swarm = testnet::memory_swarm(&keypair, config, spawner)?;
            let port = testnet::memory_port(&peer_id);
            let node = dht_core::start(swarm, config, role, |task| {
                tokio::spawn(task);
            });
            node.listen([Multiaddr::empty().with(Protocol::Memory(port))])
                .await?;
            node
        }
        Transport::Tcp | Transport::Quic => {
            let set = ListenSet {
                tcp: (transport == Transport::Tcp).then_some(0),
                quic: (transport == Transport::Quic).then_some(0),
                ..ListenSet::querying(Ipv4Addr::LOCALHOST.into())
            };
            // The benchmark ends the process; nobody waits on the task.
            native_node::start(keypair.clone(), None, config, role, &set.addresses(), &[])
                .await?
                .map_task(drop)
        }
    };
    let address = node
        .handle
        .listen_addresses()
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the node listens nowhere"))?;
    Ok((node, address.with(Protocol::P2p(peer_id)), keypair))
}

/// Builds a network of `size` nodes: node 0 first, then batches of nodes
/// that each join through a random node already in, like a network that
/// grows. Prints progress while it bootstraps.
pub(crate) async fn build(
    size: usize,
    transport: Transport,
    config: impl Fn() -> ConfigBuilder,
    deadline: Instant,
    rng: &mut Rng,
) -> anyhow::Result<Vec<BenchNode>> {
    let first = spawn_node(transport, &config().build()?, &Role::Bootstrap).await?;
    let mut nodes = vec![BenchNode::new(first)];
    let batch = match transport {
        Transport::Memory => 32,
        Transport::Tcp | Transport::Quic => 16,
    };
    let started = Instant::now();
    let mut last_print = Instant::now();
    while nodes.len() < size {
        if Instant::now() > deadline {
            bail!(
                "time limit reached with {} of {size} nodes joined",
                nodes.len()
            );
        }
        let count = batch.min(size - nodes.len());
        let mut configs = Vec::with_capacity(count);
        for _ in 0..count {
            let through = nodes[rng.below(nodes.len())].address.clone();
            configs.push(config().bootstrap_peer(through).build()?);
        }
        let spawning = configs
            .iter()
            .map(|config| spawn_node(transport, config, &Role::ClientHelper));
        let mut batch = Vec::new();
        for result in join_all(spawning).await {
            batch.push(result?);
        }
        let results = join_all(
            batch
                .iter_mut()
                .map(|(node, ..)| node.joined(Duration::from_secs(60))),
        )
        .await;
        let failed = results.iter().filter(|joined| joined.is_err()).count();
        if failed > 0 {
            eprintln!(
                "  warning: {failed} nodes of a batch did not finish bootstrapping within 60 s"
            );
        }
        nodes.extend(batch.into_iter().map(BenchNode::new));
        if last_print.elapsed() > Duration::from_secs(5) || nodes.len() == size {
            eprintln!(
                "  {transport} N={size}: {}/{size} nodes joined after {:.1} s, RSS {} MiB",
                nodes.len(),
                started.elapsed().as_secs_f64(),
                stats::rss() >> 20
            );
            last_print = Instant::now();
        }
    }
    Ok(nodes)
}

/// Every figure measured on one network.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Measurement {
    pub(crate) mode: String,
    pub(crate) transport: Transport,
    pub(crate) nodes: usize,
    pub(crate) k: usize,
    pub(crate) join_seconds: f64,
    pub(crate) routing_tables_filled_seconds: Option<f64>,
    pub(crate) routing_table_mean: f64,
    /// Peers each node had an open connection to once the network was up
    /// (in-process runs only).
    pub(crate) connections_mean: Option<f64>,
    /// CPU used by the whole network at rest, in percent of one core
    /// (in-process runs only).
    pub(crate) idle_cpu_percent: Option<f64>,
    pub(crate) put: Latency,
    /// Reads of immutable records: they end at the first valid copy.
    pub(crate) get: Latency,
    /// Reads of signed mutable records: they ask every holder the lookup
    /// reaches for the newest version (absent from runs before that rule).
    #[serde(default)]
    pub(crate) get_mutable: Latency,
    pub(crate) put_success: f64,
    pub(crate) get_success: f64,
    pub(crate) closest_recall: f64,
    pub(crate) requests_per_get: f64,
    #[serde(default)]
    pub(crate) requests_per_mutable_get: f64,
    pub(crate) requests_per_put: f64,
    /// Hops per lookup, replayed on the nodes' real routing tables
    /// (in-process runs only: the processes do not export theirs).
    pub(crate) hops_mean: Option<f64>,
    pub(crate) hops_max: Option<usize>,
    pub(crate) cpu_seconds_per_1000_lookups: f64,
    pub(crate) rss_bytes: u64,
    pub(crate) peak_rss_bytes: u64,
    pub(crate) rss_bytes_per_node: f64,
    pub(crate) discover: Latency,
    pub(crate) discover_success: f64,
}

/// Waits until every node's routing table holds at least `min(N-1, k)`
/// peers; returns the time it took, or `None` at the limit.
async fn wait_for_tables(
    nodes: &[BenchNode],
    k: usize,
    limit: Duration,
) -> (Option<Duration>, f64) {
    let started = Instant::now();
    let target = (nodes.len() - 1).min(k);
    loop {
        let sizes: Vec<usize> = join_all(nodes.iter().map(|n| n.handle.routing_table()))
            .await
            .into_iter()
            .map(|t| t.map(|t| t.len()).unwrap_or(0))
            .collect();
        let mean = stats::mean(&sizes.iter().map(|s| *s as f64).collect::<Vec<_>>());
        if sizes.iter().all(|s| *s >= target) {
            return (Some(started.elapsed()), mean);
        }
        if started.elapsed() > limit {
            let short = sizes.iter().filter(|s| **s < target).count();
            eprintln!("  warning: {short} routing tables below {target} peers after {limit:?}");
            return (None, mean);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Node settings a run may change from the defaults, to see what they cost.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Overrides {
    /// Idle connection timeout, in seconds.
    pub(crate) idle_timeout: Option<u64>,
    /// Routing-table refresh interval, in seconds (0: only on joining).
    pub(crate) bootstrap_interval: Option<u64>,
    /// Every node keeps its state on disk, as with `--data-dir`.
    pub(crate) disk_storage: bool,
}

/// One on-disk store per node of a run, in a temporary directory removed
/// when this is dropped.
struct DiskStores {
    dir: std::path::PathBuf,
    unused: std::sync::Mutex<Vec<Arc<native_node::storage::DiskStorage>>>,
}

impl DiskStores {
    fn open(count: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("dht-bench-{}-{count}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stores = (0..count)
            .map(|i| native_node::storage::DiskStorage::open_dir(&dir.join(i.to_string())))
            .map(|store| store.map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .context("opening the nodes' stores")?;
        Ok(Self {
            dir,
            unused: std::sync::Mutex::new(stores),
        })
    }

    /// `builder` with the next store, if one is left.
    fn give(&self, builder: ConfigBuilder) -> ConfigBuilder {
        let next = self.unused.lock().ok().and_then(|mut stores| stores.pop());
        match next {
            Some(store) => builder.storage(store),
            None => builder,
        }
    }
}

impl Drop for DiskStores {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Overrides {
    fn builder(self) -> ConfigBuilder {
        let mut builder = Config::builder();
        if let Some(secs) = self.idle_timeout {
            builder = builder.idle_connection_timeout(Duration::from_secs(secs));
        }
        if let Some(secs) = self.bootstrap_interval {
            builder = builder.bootstrap_interval((secs > 0).then(|| Duration::from_secs(secs)));
        }
        builder
    }
}

/// Builds a network of `size` nodes and measures it.
pub(crate) async fn measure(
    size: usize,
    transport: Transport,
    rounds: usize,
    time_limit: Duration,
    seed: u64,
    overrides: Overrides,
    rest: Duration,
) -> anyhow::Result<Measurement> {
    let deadline = Instant::now() + time_limit;
    let mut rng = Rng::new(seed ^ size as u64);
    let stores = match overrides.disk_storage {
        true => Some(DiskStores::open(size)?),
        false => None,
    };
    let config = || {
        let builder = overrides.builder();
        match &stores {
            Some(stores) => stores.give(builder),
            None => builder,
        }
    };
    let k = Config::default().replication_factor().get();
    let baseline_rss = stats::rss();
    let started = Instant::now();
    let nodes = build(size, transport, config, deadline, &mut rng)
        .await
        .with_context(|| format!("building the {transport} network of {size} nodes"))?;
    let join_seconds = started.elapsed().as_secs_f64();
    let (filled, routing_table_mean) = wait_for_tables(&nodes, k, Duration::from_secs(60)).await;
    let connections: Vec<f64> = join_all(nodes.iter().map(|n| n.handle.connected_peers()))
        .await
        .into_iter()
        .map(|c| c.map_or(0.0, |c| c.len() as f64))
        .collect();
    let connections_mean = stats::mean(&connections);
    let routing_tables_filled_seconds = filled.map(|d| join_seconds + d.as_secs_f64());
    let network_rss = stats::rss();
    // What a network at rest costs: CPU over a few quiet seconds.
    eprintln!("  {transport} N={size}: at rest for {} s", rest.as_secs());
    let idle_started = (Instant::now(), stats::cpu_time());
    tokio::time::sleep(rest).await;
    let idle_cpu_percent = stats::cpu_time()
        .saturating_sub(idle_started.1)
        .as_secs_f64()
        * 100.0
        / idle_started.0.elapsed().as_secs_f64();
    eprintln!(
        "  {transport} N={size}: network up, {connections_mean:.1} connections per node, RSS {} MiB, \
         {idle_cpu_percent:.0} % CPU at rest; {rounds} rounds of put and get",
        network_rss >> 20
    );

    let cpu_before = stats::cpu_time();
    let mut lookups = 0usize;
    let mut rounds_done = Rounds::default();
    for round in 0..rounds {
        if Instant::now() > deadline {
            eprintln!("  warning: time limit reached after {round} rounds");
            break;
        }
        let (writer, reader) = rng.pair(nodes.len());
        // Every other round a signed mutable record, the others immutable
        // ones; both are verified at every holder and reader.
        let mutable = round % 2 == 1;
        let value = format!("value of round {round} of run {seed}-{size}").into_bytes();
        let write = if mutable {
            let name = format!("bench-{seed}-{size}-{round}");
            Write::mutable(&nodes[writer].keypair, name, value.clone())
        } else {
            Write::immutable(value.clone())
        };
        let key = write.key()?;
        let started = Instant::now();
        let put = nodes[writer].handle.put(write).await;
        rounds_done.put(
            started.elapsed(),
            put.ok().map(|p| f64::from(p.stats.requests)),
        );
        let started = Instant::now();
        let got = nodes[reader].handle.get_record(key).await;
        let requests = got
            .ok()
            .filter(|f| f.value == value)
            .map(|f| f64::from(f.stats.requests));
        rounds_done.get(mutable, started.elapsed(), requests);
        lookups += 2;
    }

    // Recall of closest-peer lookups against a brute-force sort, and hops on
    // the routing tables as they are now.
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.peer_id).collect();
    let mut tables = HashMap::new();
    for node in &nodes {
        let table = node.handle.routing_table().await?;
        tables.insert(node.peer_id, table.peers().map(|e| e.peer_id).collect());
    }
    let tables = Tables { tables };
    let samples = rounds.clamp(1, 100);
    let (mut recalls, mut hops) = (Vec::new(), Vec::new());
    for sample in 0..samples {
        if Instant::now() > deadline {
            break;
        }
        let asker = rng.below(nodes.len());
        let key = format!("closest-{seed}-{sample}").into_bytes();
        let others = ids.iter().copied().filter(|p| *p != ids[asker]);
        let truth = testnet::xor_closest(&key, others, k);
        let found = nodes[asker].handle.closest_peers(key.clone()).await;
        lookups += 1;
        let found: Vec<PeerId> = match found {
            Ok(found) => found.into_iter().map(|p| p.peer_id).collect(),
            Err(_) => Vec::new(),
        };
        let hits = found.iter().filter(|p| truth.contains(p)).count();
        recalls.push(hits as f64 / truth.len().max(1) as f64);
        hops.push(tables.hops(ids[asker], &key, k, 3));
    }
    let cpu = stats::cpu_time().saturating_sub(cpu_before);

    // Namespace discovery with 10 registered members.
    let namespace = Namespace::new(format!("bench-{seed}-{size}"))?;
    let members: Vec<usize> = (0..10.min(nodes.len() - 1))
        .map(|_| rng.below(nodes.len()))
        .collect();
    join_all(
        members
            .iter()
            .map(|m| nodes[*m].handle.register(&namespace)),
    )
    .await;
    let member_ids: std::collections::HashSet<PeerId> = members.iter().map(|m| ids[*m]).collect();
    let mut discovers = Vec::new();
    let mut discover_ok = 0usize;
    for _ in 0..rounds.clamp(1, 50) {
        if Instant::now() > deadline {
            break;
        }
        let seeker = rng.below(nodes.len());
        let started = Instant::now();
        let found = nodes[seeker].handle.discover(&namespace).await;
        discovers.push(started.elapsed());
        if let Ok(found) = found {
            let found: std::collections::HashSet<PeerId> =
                found.iter().map(|p| p.peer_id).collect();
            let expected: std::collections::HashSet<PeerId> = member_ids
                .iter()
                .copied()
                .filter(|p| *p != ids[seeker])
                .collect();
            if expected.is_subset(&found) {
                discover_ok += 1;
            }
        }
    }

    let measurement = Measurement {
        mode: "in-process".into(),
        transport,
        nodes: size,
        k,
        join_seconds,
        routing_tables_filled_seconds,
        routing_table_mean,
        connections_mean: Some(connections_mean),
        idle_cpu_percent: Some(idle_cpu_percent),
        put: rounds_done.put_latency(),
        get: rounds_done.get_latency(),
        get_mutable: rounds_done.mutable_get_latency(),
        put_success: rounds_done.put_success(),
        get_success: rounds_done.get_success(),
        closest_recall: stats::mean(&recalls),
        requests_per_get: rounds_done.requests_per_get(),
        requests_per_mutable_get: rounds_done.requests_per_mutable_get(),
        requests_per_put: rounds_done.requests_per_put(),
        hops_mean: Some(stats::mean(
            &hops.iter().map(|h| *h as f64).collect::<Vec<_>>(),
        )),
        hops_max: hops.iter().copied().max(),
        cpu_seconds_per_1000_lookups: cpu.as_secs_f64() * 1000.0 / lookups.max(1) as f64,
        rss_bytes: network_rss,
        peak_rss_bytes: stats::peak_rss(),
        rss_bytes_per_node: network_rss.saturating_sub(baseline_rss) as f64 / size as f64,
        discover: Latency::of(&discovers),
        discover_success: discover_ok as f64 / discovers.len().max(1) as f64,
    };
    join_all(nodes.iter().map(|n| n.handle.shutdown())).await;
    Ok(measurement)
}
