//! `native-node` processes on hosts in network namespaces (needs root): a
//! network cut in two halves goes on serving reads inside each half, and
//! after healing every record written on either side is read on the
//! other.

use std::time::Duration;

use dht_tests::{
    netns::Testbed,
    process::{
        Bootstrap, NodeProcess, routing_table_size, run_once_in, start_bootstrap_in, stored_key,
    },
};

const LONG: Duration = Duration::from_secs(60);
const PORT: u16 = 4001;

/// Six hosts: the bootstrap and two more on one side, three on the other.
const HOSTS: usize = 6;
const SIDE_A: [usize; 3] = [0, 1, 2];

fn address(bed: &Testbed, host: usize, peer: &str) -> String {
    format!("/ip4/{}/tcp/{PORT}/p2p/{peer}", bed.hosts()[host].ip)
}

/// How long a one-shot client may take to join. Right after a cut its
/// first lookups still meet peers of the other side, each a dial that
/// waits for its timeout, until they count as unreachable.
const JOIN: &str = "60s";

/// Writes `value` as an immutable record from host `host`, joining through
/// `bootstrap`; returns its key.
fn put(bed: &Testbed, host: usize, bootstrap: &str, value: &str) -> String {
    let started = std::time::Instant::now();
    let (status, stdout, stderr) = run_once_in(
        bed,
        host,
        &[
            "--json",
            "client",
            "--bootstrap",
            bootstrap,
            "--join-timeout",
            JOIN,
            "put-immutable",
            value,
        ],
    );
    eprintln!("put {value:?} from host {host}: {:?}", started.elapsed());
    assert!(status.success(), "put from host {host}: {stdout}\n{stderr}");
    stored_key(&stdout)
}

/// Reads `key` from host `host`, joining through `bootstrap`.
fn get(bed: &Testbed, host: usize, bootstrap: &str, key: &str) -> String {
    let started = std::time::Instant::now();
    let args = [
        "client",
        "--bootstrap",
        bootstrap,
        "--join-timeout",
        JOIN,
        "get",
        key,
    ];
    let (status, stdout, stderr) = run_once_in(bed, host, &args);
    eprintln!("get from host {host}: {:?}", started.elapsed());
    assert!(
        status.success(),
        "get {key} from host {host}: {stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn a_partitioned_network_serves_each_half_and_reconverges_after_healing() {
    let bed = Testbed::new("part", HOSTS)
        .unwrap_or_else(|e| panic!("this test makes network namespaces (as root): {e}"));
    let listen = |host: usize| format!("/ip4/{}/tcp/{PORT}", bed.hosts()[host].ip);
    let Bootstrap {
        process: mut boot,
        address: boot_address,
        ..
    } = start_bootstrap_in(&bed, 0, PORT, "1s");
    let mut nodes = Vec::new();
    let mut ids = vec![String::new()];
    for host in 1..HOSTS {
        let args = [
            "client",
            "--bootstrap",
            &boot_address,
            "--listen",
            &listen(host),
            "run",
        ];
        let mut node = NodeProcess::start_in(&bed, host, &format!("node-{host}"), &args);
        ids.push(node.started().peer_id);
        nodes.push(node);
    }
    boot.wait_for(LONG, "every node in the bootstrap's table", |line| {
        routing_table_size(line) == Some(HOSTS as u64 - 1)
    });
    // k = 20 and six nodes: every node holds every record.
    let before = put(&bed, 1, &boot_address, "written before the cut");

    bed.partition(&SIDE_A).expect("partition");
    let entry_b = address(&bed, 3, &ids[3]);
    let in_a = put(&bed, 2, &boot_address, "written in half A");
    let in_b = put(&bed, 4, &entry_b, "written in half B");
    for (host, entry) in [(1, &boot_address), (5, &entry_b)] {
        assert_eq!(get(&bed, host, entry, &before), "written before the cut");
    }
    assert_eq!(get(&bed, 1, &boot_address, &in_a), "written in half A");
    assert_eq!(get(&bed, 5, &entry_b, &in_b), "written in half B");

    // Healed, each half reads what the other wrote while cut off: lookups
    // reach across again.
    bed.heal().expect("heal");
    let healed = std::time::Instant::now();
    assert_eq!(get(&bed, 1, &boot_address, &in_b), "written in half B");
    assert_eq!(get(&bed, 5, &entry_b, &in_a), "written in half A");
    eprintln!("both cross reads done {:?} after healing", healed.elapsed());
    drop(nodes);
}
