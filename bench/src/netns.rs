//! A network of `native-node` processes, one per network namespace (as
//! root; the testbed of `dht_tests::netns`): how it serves while cut in two
//! halves, how long it takes to heal, and what happens when its bootstrap
//! dies and comes back.
//!
//! Every node but the bootstrap is a listener printing its monitor summary
//! each second, so the run follows every routing table. Records are written
//! and read by one-shot `client` processes, as a user would; one such read
//! includes joining (a lookup of its own id) through the node it is given.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use dht_tests::{
    netns::Testbed,
    process::{NodeProcess, routing_table_size, run_once_in, stored_key, temp_dir},
};
use serde::{Deserialize, Serialize};

const PORT: u16 = 4001;

/// How long a node may take to join, and a one-shot client to finish.
const JOIN: Duration = Duration::from_secs(60);

/// How long the halves stay cut at least: long enough for the rule that
/// drops unreachable peers (3 failed dials over 30 s) to act.
const CUT_FOR: Duration = Duration::from_secs(45);

/// How long the bootstrap stays dead.
const DEAD_FOR: Duration = Duration::from_secs(20);

/// One timed one-shot operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Timed {
    /// What it was.
    pub(crate) what: String,
    /// Whether it worked.
    pub(crate) ok: bool,
    /// How long it took, joining included.
    pub(crate) ms: u64,
}

/// What the run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Netns {
    pub(crate) hosts: usize,
    /// Until every routing table held every other node.
    pub(crate) joined_ms: u64,
    /// Reads and writes inside each half while cut.
    pub(crate) during_cut: Vec<Timed>,
    /// The smallest routing table at the end of the cut, and the largest.
    pub(crate) cut_tables: (u64, u64),
    /// From healing until every table held every other node again.
    pub(crate) healed_tables_ms: Option<u64>,
    /// Reads across the healed cut of what each half wrote while cut.
    pub(crate) after_heal: Vec<Timed>,
    /// With the bootstrap dead: a read through another node, and a client
    /// joining through the dead bootstrap (which is expected to fail).
    pub(crate) bootstrap_dead: Vec<Timed>,
    /// The smallest and the largest routing table of the others while
    /// the bootstrap is dead.
    pub(crate) dead_tables: (u64, u64),
    /// From the bootstrap's restart until its table held every other node.
    pub(crate) bootstrap_repopulated_ms: Option<u64>,
    /// A read through the restarted bootstrap.
    pub(crate) bootstrap_back: Vec<Timed>,
}

/// The nodes of the run and the latest routing-table size each reported.
struct Nodes {
    bed: Testbed,
    processes: Vec<NodeProcess>,
    ids: Vec<String>,
    tables: Vec<u64>,
}

impl Nodes {
    fn address(&self, host: usize) -> String {
        format!(
            "/ip4/{}/tcp/{PORT}/p2p/{}",
            self.bed.hosts()[host].ip,
            self.ids[host]
        )
    }

    /// Reads every process's output for `wait` and keeps the latest table
    /// sizes.
    fn follow(&mut self, wait: Duration) {
        let each = wait / self.processes.len().max(1) as u32;
        for (host, process) in self.processes.iter_mut().enumerate() {
            for line in process.drain(each) {
                if let Some(size) = routing_table_size(&line) {
                    self.tables[host] = size;
                }
            }
        }
    }

    /// Follows the tables for `wait` and returns the smallest and the
    /// largest of those of `hosts`.
    fn range(&mut self, wait: Duration, hosts: std::ops::Range<usize>) -> (u64, u64) {
        self.follow(wait);
        let tables = &self.tables[hosts];
        let min = tables.iter().copied().min().unwrap_or(0);
        let max = tables.iter().copied().max().unwrap_or(0);
        (min, max)
    }

    /// Follows the tables until `done` holds of them or `limit` passes;
    /// returns how long it took.
    fn until(&mut self, limit: Duration, done: impl Fn(&[u64]) -> bool) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            self.follow(Duration::from_millis(500));
            if done(&self.tables) {
                return Some(started.elapsed());
            }
        }
        None
    }

    /// A one-shot `client` on `host` joining through `entry` within `join`.
    fn once(
        &self,
        what: &str,
        (host, entry): (usize, usize),
        join: Duration,
        operation: &[&str],
    ) -> (Timed, String) {
        let bootstrap = self.address(entry);
        let join = format!("{}s", join.as_secs());
        let mut args = vec![
            "--json",
            "client",
            "--bootstrap",
            &bootstrap,
            "--join-timeout",
            &join,
        ];
        args.extend(operation);
        let started = Instant::now();
        let (status, stdout, _) = run_once_in(&self.bed, host, &args);
        let timed = Timed {
            what: what.to_owned(),
            ok: status.success(),
            ms: started.elapsed().as_millis() as u64,
        };
        (timed, stdout)
    }

    fn put(&self, what: &str, host: usize, entry: usize) -> anyhow::Result<(Timed, String)> {
        let (timed, stdout) = self.once(what, (host, entry), JOIN, &["put-immutable", what]);
        if !timed.ok {
            bail!("{what} from host {host} failed: {stdout}");
        }
        Ok((timed, stored_key(&stdout)))
    }

    fn get(&self, what: &str, host: usize, entry: usize, key: &str) -> Timed {
        self.once(what, (host, entry), JOIN, &["get", key]).0
    }
}

fn start(bed: &Testbed, host: usize, key_file: &Path, bootstrap: Option<&str>) -> NodeProcess {
    let listen = format!("/ip4/{}/tcp/{PORT}", bed.hosts()[host].ip);
    let key = key_file.to_string_lossy();
    let mut args = match bootstrap {
        None => vec!["bootstrap", "--no-http"],
        Some(address) => vec!["listener", "--namespace", "bench", "--bootstrap", address],
    };
    args.extend([
        "--key-file",
        &key,
        "--listen",
        &listen,
        "--report-interval",
        "1s",
    ]);
    NodeProcess::start_in(bed, host, &format!("host-{host}"), &args)
}

/// Runs the measurement on `hosts` namespaces.
pub(crate) fn measure(hosts: usize) -> anyhow::Result<Netns> {
    if !(4..=20).contains(&hosts) {
        bail!("the namespace run takes 4 to 20 hosts (k = 20: each holds every record)");
    }
    let bed = Testbed::new("bch", hosts)
        .map_err(anyhow::Error::msg)
        .context("the namespace run makes network namespaces: it needs root and iproute2")?;
    let dir = temp_dir("bench-netns");
    let key = |host: usize| dir.join(format!("host-{host}.key"));
    let mut boot = start(&bed, 0, &key(0), None);
    let boot_id = boot.started().peer_id;
    let boot_address = format!("/ip4/{}/tcp/{PORT}/p2p/{boot_id}", bed.hosts()[0].ip);
    let mut processes = vec![boot];
    let mut ids = vec![boot_id];
    for host in 1..hosts {
        let mut node = start(&bed, host, &key(host), Some(&boot_address));
        ids.push(node.started().peer_id);
        processes.push(node);
    }
    let mut nodes = Nodes {
        bed,
        processes,
        ids,
        tables: vec![0; hosts],
    };
    let full = hosts as u64 - 1;
    let everyone = move |tables: &[u64]| tables.iter().all(|t| *t >= full);
    let joined = nodes
        .until(JOIN, everyone)
        .context("the nodes did not all enter every routing table")?;

    // Cut in halves; each reads what was written before and writes its own.
    let (_, before) = nodes.put("written before the cut", 1, 0)?;
    let half = hosts / 2;
    let side_a: Vec<usize> = (0..half).collect();
    nodes.bed.partition(&side_a).map_err(anyhow::Error::msg)?;
    let cut = Instant::now();
    let (a, b) = (1, half);
    let mut during_cut = Vec::new();
    let (put_a, in_a) = nodes.put("written in half A", a, 0)?;
    let (put_b, in_b) = nodes.put("written in half B", b + 1, b)?;
    during_cut.extend([put_a, put_b]);
    during_cut.push(nodes.get("read in half A", a, 0, &before));
    during_cut.push(nodes.get("read in half B", hosts - 1, b, &before));
    let wait = CUT_FOR
        .saturating_sub(cut.elapsed())
        .max(Duration::from_secs(2));
    let cut_tables = nodes.range(wait, 0..hosts);
    // A read once the unreachable peers are out of the tables.
    during_cut.push(nodes.get("read in half A, later", a, 0, &before));

    nodes.bed.heal().map_err(anyhow::Error::msg)?;
    let healed = Instant::now();
    let after_heal = vec![
        nodes.get("half A reads half B's", a, 0, &in_b),
        nodes.get("half B reads half A's", hosts - 1, b, &in_a),
    ];
    let healed_tables = nodes
        .until(JOIN.saturating_sub(healed.elapsed()), everyone)
        .map(|_| healed.elapsed());

    // The bootstrap dies; the others serve on and it comes back.
    nodes.processes[0].kill();
    let killed = Instant::now();
    let mut bootstrap_dead = vec![nodes.get("read through another node", a, b, &before)];
    let (through_dead, _) = nodes.once(
        "a client joining through the dead bootstrap",
        (a, 0),
        Duration::from_secs(10),
        &["get", &before],
    );
    bootstrap_dead.push(through_dead);
    let wait = DEAD_FOR
        .saturating_sub(killed.elapsed())
        .max(Duration::from_secs(2));
    let dead_tables = nodes.range(wait, 1..hosts);
    nodes.processes[0] = start(&nodes.bed, 0, &key(0), None);
    nodes.tables[0] = 0;
    let restarted = Instant::now();
    let repopulated = nodes
        .until(JOIN, move |tables: &[u64]| tables[0] >= full)
        .map(|_| restarted.elapsed());
    let bootstrap_back = vec![nodes.get("read through the restarted bootstrap", a, 0, &in_b)];

    Ok(Netns {
        hosts,
        joined_ms: joined.as_millis() as u64,
        during_cut,
        cut_tables,
        healed_tables_ms: healed_tables.map(|d| d.as_millis() as u64),
        after_heal,
        bootstrap_dead,
        dead_tables,
        bootstrap_repopulated_ms: repopulated.map(|d| d.as_millis() as u64),
        bootstrap_back,
    })
}

pub(crate) fn print(run: &Netns) {
    let timed = |all: &[Timed]| {
        all.iter()
            .map(|t| {
                format!(
                    "{} {} in {} ms",
                    t.what,
                    if t.ok { "ok" } else { "FAILED" },
                    t.ms
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let ms = |value: Option<u64>| {
        value.map_or_else(
            || "not within the limit".to_owned(),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        )
    };
    println!(
        "\nnetwork namespaces ({} native-node processes over TCP, one per namespace; \
         one-shot clients, joining included):",
        run.hosts
    );
    println!(
        "  every node in every table after {:.1} s",
        run.joined_ms as f64 / 1000.0
    );
    println!(
        "  cut in halves for {} s or more: {}; routing tables at the end {}..{} peers",
        CUT_FOR.as_secs(),
        timed(&run.during_cut),
        run.cut_tables.0,
        run.cut_tables.1
    );
    println!(
        "  healed: {}; every table full again after {}",
        timed(&run.after_heal),
        ms(run.healed_tables_ms)
    );
    println!(
        "  bootstrap killed for {} s: {} (failing is the expected result); \
         the others' tables {}..{} peers",
        DEAD_FOR.as_secs(),
        timed(&run.bootstrap_dead),
        run.dead_tables.0,
        run.dead_tables.1
    );
    println!(
        "  bootstrap restarted (same key, no stored state): its table full after {}; {}",
        ms(run.bootstrap_repopulated_ms),
        timed(&run.bootstrap_back)
    );
}
