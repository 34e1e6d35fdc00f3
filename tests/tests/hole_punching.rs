//! Native nodes that find out for themselves whether others can reach them
//! (`--reachability auto`, AutoNAT v2), on real NATs in network namespaces
//! (needs root and nftables): a public node learns it is public and
//! serves; nodes behind NATs learn they are not, serve through the
//! bootstrap's relay, find each other through a namespace and, through cone
//! NATs, end up connected directly by a hole punch (DCUtR). Through
//! symmetric NATs the hole punch fails and the link stays relayed.

use std::time::Duration;

use dht_tests::{
    netns::{Nat, Testbed},
    process::{Bootstrap, NodeProcess, serves, start_bootstrap_in},
};
use serde_json::Value;

/// A dial-back or a hole punch that fails waits for the TCP dial timeout
/// (5 s), and DCUtR tries three times.
const LONG: Duration = Duration::from_secs(60);
const PORT: u16 = 4001;

/// A bootstrap on a public host and two nodes in namespace "chat", each
/// behind a NAT of `kind` of its own, started with `--reachability auto`.
struct Network {
    bed: Testbed,
    _boot: Bootstrap,
    boot_address: String,
    listener: NodeProcess,
    listener_id: String,
    dialer: NodeProcess,
    dialer_id: String,
}

impl Network {
    fn start(tag: &str, kind: Nat) -> Self {
        let mut bed = Testbed::new(tag, 2)
            .unwrap_or_else(|e| panic!("this test makes network namespaces (as root): {e}"));
        let behind = [
            bed.add_behind_nat(kind)
                .unwrap_or_else(|e| panic!("a NAT (nftables): {e}")),
            bed.add_behind_nat(kind)
                .unwrap_or_else(|e| panic!("a NAT (nftables): {e}")),
        ];
        let listen = |host: usize| format!("/ip4/{}/tcp/{PORT}", bed.hosts()[host].ip);
        let boot = start_bootstrap_in(&bed, 0, PORT, "0");
        let boot_address = boot.address.clone();
        let member = |host: usize, role: &[&str], message: &str| {
            let listen = listen(host);
            let mut args = role.to_vec();
            args.extend([
                "--namespace",
                "chat",
                "--bootstrap",
                &boot_address,
                "--listen",
                &listen,
                "--reachability",
                "auto",
                "--message",
                message,
                "--report-interval",
                "1s",
            ]);
            NodeProcess::start_in(
                &bed,
                host,
                &format!("{}-behind-{kind:?}-nat", role[0]),
                &args,
            )
        };
        let mut listener = member(behind[0], &["listener"], "from the listener");
        let listener_id = listener.started().peer_id.clone();
        let mut dialer = member(
            behind[1],
            &["dialer", "--discover-interval", "1s"],
            "from the dialer",
        );
        let dialer_id = dialer.started().peer_id.clone();
        Self {
            bed,
            _boot: boot,
            boot_address,
            listener,
            listener_id,
            dialer,
            dialer_id,
        }
    }

    /// Both learn they are unreachable, take a reservation on the
    /// bootstrap and serve through it; the dialer finds the listener and
    /// links to it.
    fn relayed_and_linked(&mut self) {
        for node in [&mut self.listener, &mut self.dialer] {
            let tested = node.wait_for(LONG, "a dial-back test", |e| e["type"] == "address-tested");
            assert_eq!(tested["reachable"], false, "behind a NAT: {tested}");
            node.wait_for(LONG, "reachability: relayed", |e| {
                is_reachability(e, "relayed")
            });
        }
        // Registered at once with no address (none is known to work yet)
        // and again with its circuit addresses once it serves; never with
        // its own.
        let discovered = self
            .dialer
            .wait_for(LONG, "the listener is discovered", |e| {
                e["type"] == "namespace-peer-discovered" && e["peer"] == self.listener_id.as_str()
            });
        let addresses = discovered["addresses"].as_array().expect("addresses");
        assert!(
            addresses
                .iter()
                .all(|a| a.as_str().is_some_and(|a| a.contains("/p2p-circuit"))),
            "it registered circuit addresses only: {addresses:?}"
        );
        let listener_id = self.listener_id.clone();
        self.dialer.wait_for(LONG, "a link", |e| {
            e["type"] == "namespace-linked" && e["peer"] == listener_id.as_str()
        });
    }

    /// Each got the other's message.
    fn talked(&mut self) {
        let (listener_id, dialer_id) = (self.listener_id.clone(), self.dialer_id.clone());
        let heard = self.listener.wait_for(LONG, "the dialer's message", |e| {
            e["type"] == "message-received" && e["from"] == dialer_id.as_str()
        });
        assert_eq!(heard["data"]["text"], "from the dialer");

        let heard = self.dialer.wait_for(LONG, "the listener's message", |e| {
            e["type"] == "message-received" && e["from"] == listener_id.as_str()
        });
        assert_eq!(heard["data"]["text"], "from the listener");
    }
}

fn is_reachability(event: &Value, reachability: &str) -> bool {
    event["type"] == "reachability-changed" && event["reachability"] == reachability
}

#[test]
fn nodes_behind_cone_nats_serve_through_a_relay_and_connect_directly() {
    let mut net = Network::start("hpc", Nat::Cone);

    // A node on a public address finds out that it is public, and serves.
    let mut public = NodeProcess::start_in(
        &net.bed,
        1,
        "public-auto",
        &[
            "listener",
            "--namespace",
            "elsewhere",
            "--bootstrap",
            &net.boot_address,
            "--listen",
            &format!("/ip4/{}/tcp/{PORT}", net.bed.hosts()[1].ip),
            "--reachability",
            "auto",
        ],
    );
    let tested = public.wait_for(LONG, "a dial-back test", |e| e["type"] == "address-tested");
    assert_eq!(tested["reachable"], true, "a public host: {tested}");
    public.wait_for(LONG, "reachability: public", |e| {
        is_reachability(e, "public")
    });
    public.wait_for(LONG, "serving", serves);

    net.relayed_and_linked();
    let listener_id = net.listener_id.clone();
    net.dialer
        .wait_for(LONG, "a hole punch to the listener", |e| {
            e["type"] == "hole-punched" && e["peer"] == listener_id.as_str()
        });
    // The monitor summary says so too.
    let report = net
        .dialer
        .wait_for(LONG, "a report with the hole punch", |e| {
            e["type"] == "report"
                && e["report"]["holePunched"]
                    .as_array()
                    .is_some_and(|peers| peers.iter().any(|p| p == listener_id.as_str()))
        });
    assert_eq!(report["report"]["reachability"], "relayed", "{report}");
    net.talked();
}

#[test]
fn a_hole_punch_through_symmetric_nats_fails_and_the_link_stays_relayed() {
    let mut net = Network::start("hps", Nat::Symmetric);
    net.relayed_and_linked();
    let (listener_id, dialer_id) = (net.listener_id.clone(), net.dialer_id.clone());
    let failed = net.listener.wait_for(LONG, "the hole punch fails", |e| {
        assert!(
            !(e["type"] == "hole-punched"),
            "a hole punch through symmetric NATs worked: {e}"
        );
        e["type"] == "hole-punch-failed" && e["peer"] == dialer_id.as_str()
    });
    assert!(failed["reason"].as_str().is_some_and(|r| !r.is_empty()));
    net.talked();
    assert!(
        !net.dialer
            .drain(Duration::ZERO)
            .iter()
            .any(|e| e["type"] == "hole-punched" && e["peer"] == listener_id.as_str()),
        "the dialer reports a direct connection"
    );
}
