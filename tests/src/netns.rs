//! A testbed of hosts in network namespaces: each host is a namespace of its
//! own with one interface (`eth0`, 10.213.N.1/16: a /24 of its own, as
//! hosts on different networks have, which the routing table's per-subnet
//! limits look at), joined to the others through a bridge, so that what the
//! nodes send crosses real interfaces and can be cut. Needs root and
//! iproute2 (and nftables for NATs); makes only namespaces and links named
//! after this process, and removes them when dropped, also when a test
//! fails.
//!
//! A partition moves one side's links to a second bridge: packets between
//! the sides are dropped, as on a real partition (a dial waits for its
//! timeout rather than being refused); healing moves them back. A host can
//! sit behind a NAT of its own ([`Testbed::add_behind_nat`]: a router
//! namespace masquerading with nftables). This machine's kernel has no
//! `netem`, so delay and loss are not offered.

use std::{
    io::Write,
    net::Ipv4Addr,
    process::{Command, Stdio},
};

/// One host of a [`Testbed`].
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace.
    pub namespace: String,
    /// Its own address: on the testbed's network, or on its private network
    /// behind a NAT.
    pub ip: Ipv4Addr,
    /// The outer end of the link that joins it (or its NAT router) to the
    /// shared bridge.
    link: String,
}

/// Hosts in namespaces on a shared bridge. See the [module docs](self).
#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    hosts: Vec<Host>,
    /// The bridge every host is on, and the one a partition moves a side to.
    bridges: [String; 2],
    /// NAT routers' namespaces and their private bridges.
    routers: Vec<String>,
    private_bridges: Vec<String>,
    /// Addresses on the shared network handed out so far.
    public: u8,
}

/// Runs `ip ARGS`, failing with what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    run(Command::new("ip").args(args), None)
}

/// Runs `command` with `input` on its stdin, failing with what it printed.
fn run(command: &mut Command, input: Option<&str>) -> Result<(), String> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("cannot feed {what}: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{what} failed: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// How a NAT router maps a host's connections out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Keeps the host's source port where it can (Linux masquerading), so
    /// a connection out from one port takes the same router port whatever
    /// its destination: endpoint-independent mapping, as in a home router.
    /// Hole punching works through it.
    Cone,
    /// A random router port for every connection (`fully-random`), so the
    /// port one peer sees is of no use to another: a symmetric NAT, as in
    /// some carrier-grade NATs. Hole punching fails through it.
    Symmetric,
}

/// nftables rules of a NAT router: everything leaving by `eth0` (the
/// shared network) takes the router's address (`{flags}`: how ports are
/// chosen); what comes in by `eth0` is let through only as part of a
/// connection from inside (conntrack), and anything else is dropped
/// silently, as home routers do (answering with a reset would end the
/// simultaneous open of a hole punch).
fn nat_rules(kind: Nat) -> String {
    let flags = match kind {
        Nat::Cone => "",
        Nat::Symmetric => " fully-random",
    };
    format!(
        "table ip nat {{
  chain post {{
    type nat hook postrouting priority 100;
    oifname \"eth0\" masquerade{flags}
  }}
}}
table ip filter {{
  chain input {{
    type filter hook input priority 0;
    iifname \"eth0\" ct state established,related accept
    iifname \"eth0\" drop
  }}
  chain forward {{
    type filter hook forward priority 0;
    iifname \"eth0\" ct state established,related accept
    iifname \"eth0\" drop
  }}
}}
"
    )
}

impl Testbed {
    /// `count` hosts (at most 250) named after `tag` and this process.
    pub fn new(tag: &str, count: usize) -> Result<Self, String> {
        if count == 0 || count > 250 {
            return Err(format!("a testbed holds 1 to 250 hosts, not {count}"));
        }
        // Interface names have at most 15 bytes.
        let tag = &tag[..tag.len().min(3)];
        let prefix = format!("t{tag}{}", std::process::id() % 100_000);
        let mut bed = Self {
            bridges: [format!("{prefix}b0"), format!("{prefix}b1")],
            prefix,
            hosts: Vec::new(),
            routers: Vec::new(),
            private_bridges: Vec::new(),
            public: 0,
        };
        for bridge in &bed.bridges {
            ip(&["link", "add", bridge, "type", "bridge"])?;
            ip(&["link", "set", bridge, "up"])?;
        }
        for index in 0..count {
            let namespace = format!("{}n{index}", bed.prefix);
            let (link, address) = bed.join_shared(&namespace)?;
            bed.hosts.push(Host {
                namespace,
                ip: address,
                link,
            });
        }
        Ok(bed)
    }

    /// Makes `namespace` and links it to the shared bridge as its `eth0`,
    /// at the next address there; returns the link's outer end and the
    /// address.
    fn join_shared(&mut self, namespace: &str) -> Result<(String, Ipv4Addr), String> {
        self.public = self
            .public
            .checked_add(1)
            .filter(|n| *n <= 250)
            .ok_or("too many hosts and routers")?;
        let address = Ipv4Addr::new(10, 213, self.public, 1);
        let link = format!("{}h{}", self.prefix, self.public);
        ip(&["netns", "add", namespace])?;
        let cidr = format!("{address}/16");
        self.veth(namespace, "eth0", &link, &self.bridges[0], &cidr)?;
        Ok((link, address))
    }

    /// A veth pair between `namespace` (as `name`, at `cidr`, up) and
    /// `bridge` (as `link`).
    fn veth(
        &self,
        namespace: &str,
        name: &str,
        link: &str,
        bridge: &str,
        cidr: &str,
    ) -> Result<(), String> {
        let inside = format!("{link}i");
        ip(&["link", "add", link, "type", "veth", "peer", "name", &inside])?;
        ip(&["link", "set", &inside, "netns", namespace])?;
        ip(&["-n", namespace, "link", "set", &inside, "name", name])?;
        ip(&["-n", namespace, "addr", "add", cidr, "dev", name])?;
        ip(&["-n", namespace, "link", "set", name, "up"])?;
        ip(&["-n", namespace, "link", "set", "lo", "up"])?;
        ip(&["link", "set", link, "master", bridge])?;
        ip(&["link", "set", link, "up"])
    }

    /// Adds a host behind a NAT of its own and returns its index: a router
    /// namespace on the shared network masquerades (nftables) for a private
    /// network 192.168.M.0/24 on a bridge of its own, where the host is
    /// 192.168.M.2. Its connections out come from the router's address;
    /// nothing outside can open one to it. `kind` says how the router maps
    /// ports. A partition moves the router's link.
    pub fn add_behind_nat(&mut self, kind: Nat) -> Result<usize, String> {
        let m = u8::try_from(self.routers.len() + 1).map_err(|_| "too many NATs")?;
        let router = format!("{}r{m}", self.prefix);
        self.routers.push(router.clone());
        let (uplink, _) = self.join_shared(&router)?;
        let private = format!("{}p{m}", self.prefix);
        ip(&["link", "add", &private, "type", "bridge"])?;
        self.private_bridges.push(private.clone());
        ip(&["link", "set", &private, "up"])?;
        let gateway = format!("192.168.{m}.1");
        let router_side = format!("{}q{m}", self.prefix);
        self.veth(
            &router,
            "eth1",
            &router_side,
            &private,
            &format!("{gateway}/24"),
        )?;
        let in_router = |command: &[&str]| {
            let mut ip_exec = Command::new("ip");
            ip_exec.args(["netns", "exec", &router]).args(command);
            ip_exec
        };
        run(
            &mut in_router(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]),
            None,
        )?;
        run(&mut in_router(&["nft", "-f", "-"]), Some(&nat_rules(kind)))?;

        let index = self.hosts.len();
        let namespace = format!("{}n{index}", self.prefix);
        ip(&["netns", "add", &namespace])?;
        let address = Ipv4Addr::new(192, 168, m, 2);
        let link = format!("{}s{m}", self.prefix);
        self.veth(
            &namespace,
            "eth0",
            &link,
            &private,
            &format!("{address}/24"),
        )?;
        ip(&["-n", &namespace, "route", "add", "default", "via", &gateway])?;
        self.hosts.push(Host {
            namespace,
            ip: address,
            link: uplink,
        });
        Ok(index)
    }

    /// The hosts, in order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// A command that runs `program` inside host `index`'s namespace.
    pub fn command(&self, index: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.hosts[index].namespace])
            .arg(program);
        command
    }

    /// Cuts the hosts in `side` off from all others (each side still
    /// reaches its own hosts).
    pub fn partition(&self, side: &[usize]) -> Result<(), String> {
        for (index, host) in self.hosts.iter().enumerate() {
            let bridge = &self.bridges[usize::from(side.contains(&index))];
            ip(&["link", "set", &host.link, "master", bridge])?;
        }
        Ok(())
    }

    /// Ends every partition: all hosts on one bridge again.
    pub fn heal(&self) -> Result<(), String> {
        self.partition(&[])
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        // Deleting a namespace deletes its ends of its links, and so the
        // pairs.
        let namespaces = self.hosts.iter().map(|h| &h.namespace);
        for namespace in namespaces.chain(&self.routers) {
            let _ = ip(&["netns", "del", namespace]);
        }
        for bridge in self.bridges.iter().chain(&self.private_bridges) {
            let _ = ip(&["link", "del", bridge]);
        }
    }
}
