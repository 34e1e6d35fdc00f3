//! A testbed of hosts in network namespaces: each host is a namespace of its
//! own with one interface (`eth0`, 10.213.N.1/16: a /24 of its own, as
//! hosts on different networks have, which the routing table's per-subnet
//! limits look at), joined to the others through a bridge, so that what the nodes send crosses real interfaces and
//! can be cut. Needs root and iproute2; makes only namespaces and links
//! named after this process, and removes them when dropped, also when a
//! test fails.
//!
//! A partition moves one side's links to a second bridge: packets between
//! the sides are dropped, as on a real partition (a dial waits for its
//! timeout rather than being refused); healing moves them back. This
//! machine's kernel has no `netem`, so delay and loss are not offered.

use std::{
    net::Ipv4Addr,
    process::{Command, Stdio},
};

/// One host of a [`Testbed`].
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace.
    pub namespace: String,
    /// Its address on the testbed's network.
    pub ip: Ipv4Addr,
    /// The host end of its link, outside the namespace.
    link: String,
}

/// Hosts in namespaces on a shared bridge. See the [module docs](self).
#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    hosts: Vec<Host>,
    /// The bridge every host is on, and the one a partition moves a side to.
    bridges: [String; 2],
}

/// Runs `ip ARGS`, failing with what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `ip` (iproute2): {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Testbed {
    /// `count` hosts (at most 250) named after `tag` and this process.
    pub fn new(tag: &str, count: usize) -> Result<Self, String> {
        if count == 0 || count > 250 {
            return Err(format!("a testbed holds 1 to 250 hosts, not {count}"));
        }
        // Interface names have at most 15 bytes.
        let prefix = format!(
            "t{}{}",
            &tag[..tag.len().min(3)],
            std::process::id() % 100_000
        );
        let mut bed = Self {
            bridges: [format!("{prefix}b0"), format!("{prefix}b1")],
            prefix,
            hosts: Vec::new(),
        };
        for bridge in &bed.bridges {
            ip(&["link", "add", bridge, "type", "bridge"])?;
            ip(&["link", "set", bridge, "up"])?;
        }
        for index in 0..count {
            let host = bed.add_host(index)?;
            bed.hosts.push(host);
        }
        Ok(bed)
    }

    fn add_host(&self, index: usize) -> Result<Host, String> {
        let namespace = format!("{}n{index}", self.prefix);
        let link = format!("{}h{index}", self.prefix);
        let inside = format!("{}i{index}", self.prefix);
        let octet = u8::try_from(index + 1).map_err(|_| "too many hosts".to_owned())?;
        let ip_address = Ipv4Addr::new(10, 213, octet, 1);
        ip(&["netns", "add", &namespace])?;
        ip(&[
            "link", "add", &link, "type", "veth", "peer", "name", &inside,
        ])?;
        ip(&["link", "set", &inside, "netns", &namespace])?;
        ip(&["-n", &namespace, "link", "set", &inside, "name", "eth0"])?;
        let cidr = format!("{ip_address}/16");
        ip(&["-n", &namespace, "addr", "add", &cidr, "dev", "eth0"])?;
        ip(&["-n", &namespace, "link", "set", "eth0", "up"])?;
        ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        ip(&["link", "set", &link, "master", &self.bridges[0]])?;
        ip(&["link", "set", &link, "up"])?;
        Ok(Host {
            namespace,
            ip: ip_address,
            link,
        })
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
        for host in &self.hosts {
            // Deleting the namespace deletes its end of the link, and so the
            // pair.
            let _ = ip(&["netns", "del", &host.namespace]);
        }
        for bridge in &self.bridges {
            let _ = ip(&["link", "del", bridge]);
        }
    }
}
