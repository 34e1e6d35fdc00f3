//! Address policy: which addresses are worth dialing, which may enter the
//! routing table, which this node announces as its own, and the bounded
//! book of what peers said about themselves.
//!
//! What a peer says about itself is trusted no further than this: an
//! address must be dialable at all ([`is_dialable`]) and at most
//! [`MAX_ADDRESS_LEN`] bytes, in a range this node is on ([`Reach`]);
//! loopback addresses are kept only for peers that reached us over loopback
//! (to anyone else they name our own machine), or for circuits through a
//! relay that did (they name that relay); only peers that speak our
//! Kademlia protocol enter the routing table, with at most
//! `max_addresses_per_peer` addresses however often they push new ones.

use std::collections::{HashMap, HashSet, VecDeque};

use libp2p::{Multiaddr, PeerId, StreamProtocol, core::ConnectedPoint, multiaddr::Protocol};

use super::{
    action::{Action, Actions},
    reach::Reach,
};
use crate::namespace::MAX_ADDRESS_LEN;

/// Peers whose self-reported addresses are remembered at most.
pub(crate) const ADDRESS_BOOK_CAPACITY: usize = 4096;

/// Addresses kept per peer in the address book; older ones give way.
const ADDRESSES_PER_PEER: usize = 16;

/// What the node knows about addresses, and its rules for them.
#[derive(Debug)]
pub(crate) struct Addresses {
    book: AddressBook,
    /// Connected peers that reached us over loopback, i.e. from this host.
    loopback_peers: HashSet<PeerId>,
    /// The networks this node listens on.
    listening: Reach,
    /// The networks a connection has worked over.
    connected: Reach,
    kad_protocol: StreamProtocol,
    max_per_peer: usize,
}

impl Addresses {
    /// `kad_protocol` is the one a peer must speak to enter the routing
    /// table; `max_per_peer` bounds what is taken from one identify message.
    pub(crate) fn new(kad_protocol: StreamProtocol, max_per_peer: usize) -> Self {
        Self {
            book: AddressBook::new(ADDRESS_BOOK_CAPACITY),
            loopback_peers: HashSet::new(),
            listening: Reach::default(),
            connected: Reach::default(),
            kad_protocol,
            max_per_peer,
        }
    }

    /// The node now listens on `listening`: the ranges it may dial change.
    pub(crate) fn on_listening(&mut self, listening: &[Multiaddr]) {
        self.listening = Reach::of(listening);
    }

    /// The kinds of network this node is on.
    pub(crate) fn reach(&self) -> Reach {
        self.listening.union(self.connected)
    }

    /// A connection to `peer` opened: remember whether it is on this host,
    /// and the address that worked if we dialed it.
    pub(crate) fn on_connected(&mut self, peer: PeerId, endpoint: &ConnectedPoint) {
        self.connected = self.connected.with(endpoint.get_remote_address());
        if is_loopback(endpoint.get_remote_address()) {
            self.loopback_peers.insert(peer);
        }
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            self.book.insert(peer, vec![strip_p2p(address)]);
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) fn on_disconnected(&mut self, peer: &PeerId) {
        self.loopback_peers.remove(peer);
    }

    /// `peer` told us (identify) where it listens and what it speaks. Its
    /// plausible addresses go to the book, and to the routing table if it
    /// serves our DHT, beside the ones the table already `held` for it, up
    /// to the limit per peer.
    pub(crate) fn on_identify(
        &mut self,
        peer: PeerId,
        listen_addresses: Vec<Multiaddr>,
        protocols: &[StreamProtocol],
        held: &[Multiaddr],
        may_enter: bool,
        out: &mut Actions,
    ) {
        let same_host = self.loopback_peers.contains(&peer);
        let reach = self.reach();
        let addresses: Vec<Multiaddr> = listen_addresses
            .into_iter()
            .filter(|a| is_dialable(a) && a.len() <= MAX_ADDRESS_LEN && reach.allows(a))
            .filter(|a| {
                same_host
                    || !is_loopback(a)
                    || relay_of(a).is_some_and(|relay| self.loopback_peers.contains(&relay))
            })
            .take(self.max_per_peer)
            .collect();
        if protocols.contains(&self.kad_protocol) && may_enter {
            let held: Vec<Multiaddr> = held.iter().map(strip_p2p).collect();
            let room = self.max_per_peer.saturating_sub(held.len());
            for address in addresses.iter().filter(|a| !held.contains(a)).take(room) {
                out.push(Action::AddAddress {
                    peer,
                    address: address.clone(),
                });
            }
        }
        if !addresses.is_empty() {
            self.book.insert(peer, addresses);
        }
    }

    /// Every address known for `peer`: `routing` (its routing-table entry)
    /// first, then what it told us, without duplicates or `/p2p/`.
    pub(crate) fn known(
        &self,
        peer: &PeerId,
        routing: impl IntoIterator<Item = Multiaddr>,
    ) -> Vec<Multiaddr> {
        let mut unique: Vec<Multiaddr> = Vec::new();
        let told = self.book.get(peer).cloned();
        for address in routing.into_iter().chain(told) {
            let address = strip_p2p(&address);
            if !unique.contains(&address) {
                unique.push(address);
            }
        }
        unique
    }
}

/// The node started listening on `address`: announce it as an external
/// address. Loopback addresses are announced only while the node listens on
/// no other IP address (to a peer on another host they name that peer's own
/// machine); the first non-loopback IP address withdraws them.
pub(crate) fn advertise(
    address: &Multiaddr,
    listening: &[Multiaddr],
    external: &[Multiaddr],
    out: &mut Actions,
) {
    if is_loopback(address) {
        if listening.iter().any(|a| is_ip(a) && !is_loopback(a)) {
            return;
        }
    } else if is_ip(address) {
        for stale in external.iter().filter(|a| is_loopback(a)) {
            out.push(Action::RemoveExternalAddress(stale.clone()));
        }
    }
    out.push(Action::AddExternalAddress(address.clone()));
}

/// Adds the plausible ones of a member's `reported` addresses to `known`:
/// dialable, at most [`MAX_ADDRESS_LEN`] bytes, in a range within `reach`,
/// without `/p2p/` or duplicates, keeping at most `max`.
pub(crate) fn merge_member_addresses(
    known: &mut Vec<Multiaddr>,
    reported: &[Multiaddr],
    max: usize,
    reach: Reach,
) {
    let plausible =
        |a: &&Multiaddr| is_dialable(a) && a.len() <= MAX_ADDRESS_LEN && reach.allows(a);
    for address in reported.iter().filter(plausible).map(strip_p2p) {
        if known.len() >= max {
            break;
        }
        if !known.contains(&address) {
            known.push(address);
        }
    }
}

/// `address` without a trailing `/p2p/<peer id>`.
pub(crate) fn strip_p2p(address: &Multiaddr) -> Multiaddr {
    let mut address = address.clone();
    if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
        address.pop();
    }
    address
}

/// The relay of a circuit address: the peer named just before
/// `/p2p-circuit`.
pub(crate) fn relay_of(address: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for protocol in address.iter() {
        match protocol {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

/// Whether an address starts with an IP protocol.
pub(crate) fn is_ip(address: &Multiaddr) -> bool {
    matches!(
        address.iter().next(),
        Some(Protocol::Ip4(_) | Protocol::Ip6(_))
    )
}

/// Whether an address is on the loopback interface (or names `localhost`).
pub(crate) fn is_loopback(address: &Multiaddr) -> bool {
    match address.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        Some(Protocol::Dns(name) | Protocol::Dns4(name) | Protocol::Dns6(name)) => {
            name == "localhost"
        }
        _ => false,
    }
}

/// Whether a reported address could be dialed at all: not empty, no
/// unspecified, broadcast or multicast IP, no port 0.
pub(crate) fn is_dialable(address: &Multiaddr) -> bool {
    !address.is_empty()
        && address.iter().all(|protocol| match protocol {
            Protocol::Ip4(ip) => !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast(),
            Protocol::Ip6(ip) => !ip.is_unspecified() && !ip.is_multicast(),
            Protocol::Tcp(0) | Protocol::Udp(0) => false,
            _ => true,
        })
}

/// Addresses peers reported for themselves, for the peers most recently
/// heard from; bounded so that a flood of identities cannot grow it.
#[derive(Debug)]
struct AddressBook {
    capacity: usize,
    entries: HashMap<PeerId, Vec<Multiaddr>>,
    order: VecDeque<PeerId>,
}

impl AddressBook {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        let entry = self.entries.entry(peer).or_default();
        let fresh = entry.is_empty();
        for address in addresses {
            if !entry.contains(&address) {
                entry.push(address);
            }
        }
        // Newest last; a peer's own list stays bounded by dropping its oldest.
        let excess = entry.len().saturating_sub(ADDRESSES_PER_PEER);
        entry.drain(..excess);
        if fresh {
            self.order.push_back(peer);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }

    fn get(&self, peer: &PeerId) -> impl Iterator<Item = &Multiaddr> {
        self.entries.get(peer).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use libp2p::core::{Endpoint, transport::PortUse};

    use super::*;

    const KAD: StreamProtocol = StreamProtocol::new("/test/kad/1.0.0");

    fn addr(text: &str) -> Multiaddr {
        text.parse().unwrap()
    }

    fn inbound_from(address: &str) -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: addr("/ip4/127.0.0.1/tcp/1"),
            send_back_addr: addr(address),
        }
    }

    fn routing_additions(out: &mut Actions) -> Vec<Multiaddr> {
        out.drain()
            .into_iter()
            .filter_map(|a| match a {
                Action::AddAddress { address, .. } => Some(address),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn only_plausible_addresses_are_dialable() {
        for good in [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip6/::1/udp/4001/quic-v1",
            "/dns4/example.org/tcp/443/wss",
            "/memory/7",
        ] {
            assert!(is_dialable(&addr(good)), "{good}");
        }
        for bad in [
            "/ip4/0.0.0.0/tcp/4001",
            "/ip6/::/tcp/1",
            "/ip4/127.0.0.1/tcp/0",
            "/ip4/224.0.0.1/udp/1/quic-v1",
        ] {
            assert!(!is_dialable(&addr(bad)), "{bad}");
        }
        assert!(!is_dialable(&Multiaddr::empty()));
    }

    #[test]
    fn loopback_addresses_are_recognised() {
        for local in [
            "/ip4/127.0.0.1/tcp/1",
            "/ip4/127.8.9.10/udp/1/quic-v1",
            "/ip6/::1/tcp/1",
            "/dns4/localhost/tcp/1",
        ] {
            assert!(is_loopback(&addr(local)), "{local}");
        }
        for remote in [
            "/ip4/192.168.1.2/tcp/1",
            "/ip6/2001:db8::1/tcp/1",
            "/dns4/example.org/tcp/1",
            "/memory/5",
        ] {
            assert!(!is_loopback(&addr(remote)), "{remote}");
        }
    }

    #[test]
    fn only_dht_servers_enter_the_routing_table_and_only_plausible_addresses() {
        let mut addresses = Addresses::new(KAD, 16);
        let mut out = Actions::default();
        let peer = PeerId::random();
        let told = vec![
            addr("/ip4/192.0.2.1/tcp/4001"),
            addr("/ip4/0.0.0.0/tcp/4001"),
            addr("/ip4/127.0.0.1/tcp/4001"),
        ];
        addresses.on_listening(&[addr("/ip4/127.0.0.1/tcp/1")]);
        addresses.on_identify(peer, told.clone(), &[KAD], &[], true, &mut out);
        // The unspecified address is dropped; a remote peer's loopback
        // address would lead to our own machine.
        assert_eq!(
            routing_additions(&mut out),
            vec![addr("/ip4/192.0.2.1/tcp/4001")]
        );

        let client = PeerId::random();
        addresses.on_identify(client, told, &[], &[], true, &mut out);
        assert!(
            routing_additions(&mut out).is_empty(),
            "a peer that does not serve our DHT stays out of the table"
        );
        assert_eq!(
            addresses.known(&client, []),
            vec![addr("/ip4/192.0.2.1/tcp/4001")],
            "but is remembered for dialing"
        );
    }

    #[test]
    fn a_peer_the_diversity_rule_holds_back_stays_out_of_the_table() {
        let mut addresses = Addresses::new(KAD, 16);
        let mut out = Actions::default();
        let told = vec![addr("/ip4/203.0.113.7/tcp/4001")];
        addresses.on_identify(PeerId::random(), told, &[KAD], &[], false, &mut out);
        assert!(routing_additions(&mut out).is_empty());
    }

    #[test]
    fn peers_on_this_host_keep_their_loopback_addresses() {
        let mut addresses = Addresses::new(KAD, 16);
        let mut out = Actions::default();
        let peer = PeerId::random();
        addresses.on_listening(&[addr("/ip4/127.0.0.1/tcp/1")]);
        addresses.on_connected(peer, &inbound_from("/ip4/127.0.0.1/tcp/5555"));
        addresses.on_identify(
            peer,
            vec![addr("/ip4/127.0.0.1/tcp/4001")],
            &[KAD],
            &[],
            true,
            &mut out,
        );
        assert_eq!(
            routing_additions(&mut out),
            vec![addr("/ip4/127.0.0.1/tcp/4001")]
        );
        // Once it has left, what it says over another connection is judged anew.
        addresses.on_disconnected(&peer);
        addresses.on_identify(
            peer,
            vec![addr("/ip4/127.0.0.1/tcp/4002")],
            &[KAD],
            &[],
            true,
            &mut out,
        );
        assert!(routing_additions(&mut out).is_empty());
    }

    /// Two tabs on one relay on this host: each hears of the other (over a
    /// circuit, not over loopback) at circuit addresses through that relay.
    #[test]
    fn circuits_through_a_relay_on_this_host_keep_their_loopback_addresses() {
        let mut addresses = Addresses::new(KAD, 16);
        let mut out = Actions::default();
        let (relay, tab, stranger) = (PeerId::random(), PeerId::random(), PeerId::random());
        addresses.on_connected(relay, &inbound_from("/ip4/127.0.0.1/tcp/5555"));
        let through =
            |relay: PeerId| addr(&format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit"));
        addresses.on_identify(
            tab,
            vec![through(relay), through(stranger)],
            &[KAD],
            &[],
            true,
            &mut out,
        );
        // Through a relay not known to be on this host, the address would
        // name whatever listens on our own machine.
        assert_eq!(routing_additions(&mut out), vec![through(relay)]);
        assert_eq!(relay_of(&through(relay)), Some(relay));
        assert_eq!(relay_of(&addr("/ip4/127.0.0.1/tcp/4001")), None);
    }

    #[test]
    fn one_identify_message_gives_at_most_the_configured_addresses() {
        let mut addresses = Addresses::new(KAD, 2);
        let mut out = Actions::default();
        let many: Vec<Multiaddr> = (1..=10)
            .map(|port| addr(&format!("/ip4/192.0.2.1/tcp/{port}")))
            .collect();
        addresses.on_identify(PeerId::random(), many, &[KAD], &[], true, &mut out);
        assert_eq!(routing_additions(&mut out).len(), 2);
    }

    /// Regression: each identify push added its addresses to the routing
    /// table's entry, which grew without bound.
    #[test]
    fn pushes_cannot_grow_a_routing_entry_past_the_limit() {
        let mut addresses = Addresses::new(KAD, 4);
        let mut out = Actions::default();
        let peer = PeerId::random();
        let mut held: Vec<Multiaddr> = Vec::new();
        for push in 0..10u16 {
            let fresh = vec![
                addr(&format!("/ip4/192.0.2.1/tcp/{}", 2 * push + 1)),
                addr(&format!("/ip4/192.0.2.1/tcp/{}", 2 * push + 2)),
            ];
            addresses.on_identify(peer, fresh, &[KAD], &held, true, &mut out);
            held.extend(routing_additions(&mut out));
        }
        assert_eq!(held.len(), 4);
        // Addresses it holds already are not added again.
        addresses.on_identify(peer, held.clone(), &[KAD], &held[..2], true, &mut out);
        assert_eq!(routing_additions(&mut out), held[2..].to_vec());
    }

    /// Regression: peers could hand us addresses of any length, and
    /// addresses of hosts on our own private network.
    #[test]
    fn long_addresses_and_ranges_this_node_is_not_on_are_dropped() {
        let mut addresses = Addresses::new(KAD, 16);
        let mut out = Actions::default();
        addresses.on_listening(&[addr("/ip4/192.0.2.7/tcp/4001")]);
        let long = addr(&format!("/dns4/{}.example/tcp/1", "a".repeat(250)));
        assert!(long.len() > MAX_ADDRESS_LEN);
        let told = vec![
            long,
            addr("/ip4/10.0.0.1/tcp/22"),
            addr("/ip4/192.0.2.1/tcp/4001"),
        ];
        addresses.on_identify(PeerId::random(), told, &[KAD], &[], true, &mut out);
        assert_eq!(
            routing_additions(&mut out),
            vec![addr("/ip4/192.0.2.1/tcp/4001")]
        );
    }

    #[test]
    fn known_addresses_merge_the_routing_table_and_the_book_without_duplicates() {
        let mut addresses = Addresses::new(KAD, 16);
        let peer = PeerId::random();
        addresses.on_connected(
            peer,
            &ConnectedPoint::Dialer {
                address: addr(&format!("/ip4/192.0.2.1/tcp/1/p2p/{peer}")),
                role_override: Endpoint::Dialer,
                port_use: PortUse::Reuse,
            },
        );
        let known = addresses.known(
            &peer,
            [addr("/ip4/192.0.2.1/tcp/2"), addr("/ip4/192.0.2.1/tcp/1")],
        );
        assert_eq!(
            known,
            vec![addr("/ip4/192.0.2.1/tcp/2"), addr("/ip4/192.0.2.1/tcp/1")]
        );
    }

    #[test]
    fn loopback_is_announced_only_until_a_real_address_exists() {
        let mut out = Actions::default();
        let loopback = addr("/ip4/127.0.0.1/tcp/1");
        let lan = addr("/ip4/192.168.1.2/tcp/1");
        advertise(&loopback, std::slice::from_ref(&loopback), &[], &mut out);
        assert!(matches!(&out.drain()[..], [Action::AddExternalAddress(a)] if *a == loopback));

        // A LAN address withdraws the loopback one...
        advertise(
            &lan,
            &[loopback.clone(), lan.clone()],
            std::slice::from_ref(&loopback),
            &mut out,
        );
        let actions = out.drain();
        assert!(matches!(&actions[0], Action::RemoveExternalAddress(a) if *a == loopback));
        assert!(matches!(&actions[1], Action::AddExternalAddress(a) if *a == lan));

        // ...and a loopback listener that comes later is not announced.
        let second = addr("/ip6/::1/tcp/1");
        advertise(&second, &[lan.clone(), second.clone()], &[lan], &mut out);
        assert!(out.drain().is_empty());
    }

    #[test]
    fn member_addresses_are_filtered_deduplicated_and_bounded() {
        let mut known = vec![addr("/ip4/192.0.2.1/tcp/1")];
        let peer = PeerId::random();
        merge_member_addresses(
            &mut known,
            &[
                addr(&format!("/ip4/192.0.2.1/tcp/1/p2p/{peer}")),
                addr("/ip4/0.0.0.0/tcp/2"),
                addr("/ip4/127.0.0.1/tcp/6379"),
                addr("/ip4/192.0.2.1/tcp/3"),
                addr("/ip4/192.0.2.1/tcp/4"),
            ],
            2,
            Reach::of(&[addr("/ip4/192.0.2.7/tcp/1")]),
        );
        assert_eq!(
            known,
            vec![addr("/ip4/192.0.2.1/tcp/1"), addr("/ip4/192.0.2.1/tcp/3")]
        );
    }

    #[test]
    fn the_address_book_forgets_the_oldest_peers_first() {
        let mut book = AddressBook::new(2);
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        let address = addr("/ip4/127.0.0.1/tcp/1");
        for peer in &peers {
            book.insert(*peer, vec![address.clone()]);
        }
        assert_eq!(book.get(&peers[0]).count(), 0);
        assert_eq!(book.get(&peers[2]).count(), 1);
        // Re-inserting a known address does not duplicate it.
        book.insert(peers[2], vec![address.clone()]);
        assert_eq!(book.get(&peers[2]).count(), 1);
    }
}
