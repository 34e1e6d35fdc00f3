//! Joining the DHT and staying joined: dialing the bootstrap peers (on the
//! schedule of [`super::backoff`]) and keeping a pinned connection to each,
//! refreshing the routing table through them, and dropping peers that
//! cannot be reached (by the rule of [`super::unreachable`]).
//!
//! Each new connection to a bootstrap peer starts a refresh: a bootstrap
//! that restarted knows nobody, and our lookup through it teaches it the
//! network again.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use web_time::Instant;

use super::{
    action::{Action, Actions, Query},
    addresses::strip_p2p,
    backoff::BootstrapPeers,
    queries::Pending,
    unreachable::Unreachable,
};
use crate::{
    error::DialFailure,
    event::{Event, PeerGone},
    handle::Reply,
};

/// Joining and staying joined.
#[derive(Debug)]
pub(crate) struct Joining {
    peers: BootstrapPeers,
    unreachable: Unreachable,
    /// Refreshes this part started that have not finished.
    refreshing: usize,
    /// Callers waiting for the refreshes under way to finish.
    waiters: Vec<Reply<usize>>,
}

impl Joining {
    /// A node that joins through `bootstrap` peers, all to be dialed at
    /// `now`, retried after `initial` doubling up to `max`; other peers
    /// leave the routing table by `unreachable`'s rule.
    pub(crate) fn new(
        bootstrap: &[(PeerId, Multiaddr)],
        initial: Duration,
        max: Duration,
        unreachable: Unreachable,
        now: Instant,
    ) -> Self {
        Self {
            peers: BootstrapPeers::new(bootstrap, initial, max, now),
            unreachable,
            refreshing: 0,
            waiters: Vec::new(),
        }
    }

    /// The bootstrap peers' addresses, for the routing table to start from.
    pub(crate) fn seeds(&self) -> impl Iterator<Item = (PeerId, Multiaddr)> + '_ {
        self.peers
            .addresses()
            .map(|(peer, address)| (peer, strip_p2p(address)))
    }

    /// Whether the node joins through anyone; one without bootstrap peers
    /// is the first node of its network and has joined as it starts.
    pub(crate) fn has_bootstrap_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// Whether `peer` is one of the bootstrap peers.
    pub(crate) fn is_bootstrap_peer(&self, peer: &PeerId) -> bool {
        self.peers.contains(peer)
    }

    /// Dials the bootstrap peers due at `now`; `connected` says which of
    /// them a connection is open to already.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        connected: impl Fn(&PeerId) -> bool,
        out: &mut Actions,
    ) {
        for (peer, addresses) in self.peers.take_due(now) {
            if connected(&peer) {
                self.on_connected(peer, out);
            } else {
                tracing::debug!(%peer, "dialing bootstrap peer");
                out.push(Action::Dial {
                    peer,
                    addresses: addresses.iter().map(strip_p2p).collect(),
                });
            }
        }
    }

    /// A connection to `peer` opened.
    pub(crate) fn on_connected(&mut self, peer: PeerId, out: &mut Actions) {
        self.unreachable.on_connected(&peer);
        if !self.peers.on_connected(&peer) {
            return;
        }
        tracing::info!(%peer, "connected to bootstrap peer");
        out.push(Action::Pin(peer));
        out.emit(Event::BootstrapPeerConnected { peer });
        self.refresh(None, out);
    }

    /// A dial of `peer` failed with `error`; `others_connected` says
    /// whether other peers answer. A bootstrap peer is dialed again later
    /// and stays in the routing table; another peer leaves it once it has
    /// been unreachable long enough.
    pub(crate) fn on_dial_failed(
        &mut self,
        peer: PeerId,
        error: &DialFailure,
        others_connected: bool,
        now: Instant,
        out: &mut Actions,
    ) {
        if !self.peers.contains(&peer)
            && self
                .unreachable
                .on_dial_failed(peer, error, others_connected, now)
        {
            out.push(Action::RemovePeer {
                peer,
                reason: PeerGone::Unreachable,
            });
        }
        if let Some(delay) = self.peers.on_dial_failed(&peer, now) {
            tracing::warn!(%peer, %error, retry_in = ?delay, "bootstrap peer unreachable");
            out.emit(Event::BootstrapPeerUnreachable {
                peer,
                error: error.clone(),
                retry_in_ms: millis(delay),
            });
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) fn on_disconnected(&mut self, peer: PeerId, now: Instant, out: &mut Actions) {
        if let Some(delay) = self.peers.on_disconnected(&peer, now) {
            tracing::warn!(%peer, retry_in = ?delay, "lost the bootstrap peer");
            out.emit(Event::BootstrapPeerLost {
                peer,
                retry_in_ms: millis(delay),
            });
        }
    }

    /// Refreshes the routing table; `reply`, if any, gets its size once
    /// every refresh under way has finished.
    pub(crate) fn refresh(&mut self, reply: Option<Reply<usize>>, out: &mut Actions) {
        self.refreshing += 1;
        self.waiters.extend(reply);
        out.push(Action::Query {
            query: Query::Bootstrap,
            pending: Pending::Refresh,
        });
    }

    /// A refresh finished with `table_size` peers in the routing table.
    pub(crate) fn on_refreshed(&mut self, table_size: usize, out: &mut Actions) {
        self.refreshing = self.refreshing.saturating_sub(1);
        tracing::info!(routing_table_size = table_size, "bootstrap finished");
        out.emit(Event::Bootstrapped {
            routing_table_size: table_size,
        });
        if self.refreshing == 0 {
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(table_size);
            }
        }
    }

    /// A refresh could not start: nobody is known to ask.
    pub(crate) fn on_refresh_impossible(&mut self) {
        self.refreshing = self.refreshing.saturating_sub(1);
        if self.refreshing == 0 {
            for waiter in self.waiters.drain(..) {
                let _ = waiter.send(0);
            }
        }
    }

    /// When [`poll`](Self::poll) has something to do next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.peers.next_deadline()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::{io, sync::Arc};

    use futures::channel::oneshot;
    use libp2p::{core::transport::TransportError, swarm::DialError};

    use super::*;

    const SPAN: Duration = Duration::from_secs(30);

    fn refused(address: &Multiaddr) -> DialFailure {
        Arc::new(DialError::Transport(vec![(
            address.clone(),
            TransportError::Other(io::Error::from(io::ErrorKind::ConnectionRefused)),
        )]))
    }

    fn joining(now: Instant) -> (Joining, PeerId, Multiaddr) {
        let peer = PeerId::random();
        let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/1/p2p/{peer}").parse().unwrap();
        let joining = Joining::new(
            &[(peer, address.clone())],
            Duration::from_secs(1),
            Duration::from_secs(60),
            Unreachable::new(2, SPAN),
            now,
        );
        (joining, peer, address)
    }

    #[test]
    fn a_new_node_dials_its_bootstrap_peer_and_refreshes_once_connected() {
        let now = Instant::now();
        let (mut joining, peer, address) = joining(now);
        let mut out = Actions::default();
        assert_eq!(
            joining.seeds().collect::<Vec<_>>(),
            vec![(peer, strip_p2p(&address))]
        );
        joining.poll(now, |_| false, &mut out);
        assert!(matches!(
            &out.drain()[..],
            [Action::Dial { peer: dialed, addresses }] if *dialed == peer && addresses == &[strip_p2p(&address)]
        ));

        joining.on_connected(peer, &mut out);
        let actions = out.drain();
        assert!(matches!(actions[0], Action::Pin(p) if p == peer));
        assert!(matches!(
            actions[1],
            Action::Emit(Event::BootstrapPeerConnected { .. })
        ));
        assert!(matches!(
            actions[2],
            Action::Query {
                query: Query::Bootstrap,
                pending: Pending::Refresh
            }
        ));
        // A second connection to the same peer is not news.
        joining.on_connected(peer, &mut out);
        assert!(out.drain().is_empty());
    }

    #[test]
    fn a_caller_waits_for_every_refresh_under_way() {
        let now = Instant::now();
        let (mut joining, peer, _) = joining(now);
        let mut out = Actions::default();
        joining.on_connected(peer, &mut out);
        let (reply, mut answer) = oneshot::channel();
        joining.refresh(Some(reply), &mut out);
        joining.on_refreshed(3, &mut out);
        assert!(
            answer.try_recv().unwrap().is_none(),
            "one refresh still runs"
        );
        joining.on_refreshed(5, &mut out);
        assert_eq!(answer.try_recv().unwrap(), Some(5));
        let sizes: Vec<usize> = out
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Bootstrapped { routing_table_size } => Some(routing_table_size),
                _ => None,
            })
            .collect();
        assert_eq!(sizes, vec![3, 5]);

        let (reply, mut answer) = oneshot::channel();
        joining.refresh(Some(reply), &mut out);
        joining.on_refresh_impossible();
        assert_eq!(
            answer.try_recv().unwrap(),
            Some(0),
            "an empty table answers at once"
        );
    }

    #[test]
    fn an_unreachable_bootstrap_peer_is_retried_and_reported_but_kept() {
        let now = Instant::now();
        let (mut joining, peer, address) = joining(now);
        let mut out = Actions::default();
        joining.poll(now, |_| false, &mut out);
        out.drain();
        joining.on_dial_failed(peer, &refused(&address), true, now, &mut out);
        let actions = out.drain();
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::RemovePeer { .. })),
            "bootstrap peers stay in the routing table"
        );
        assert!(matches!(
            &actions[..],
            [Action::Emit(Event::BootstrapPeerUnreachable { retry_in_ms, .. })] if *retry_in_ms >= 1000
        ));
        assert!(joining.next_deadline().is_some_and(|at| at > now));
    }

    #[test]
    fn an_unreachable_peer_leaves_the_routing_table_after_its_strikes() {
        let now = Instant::now();
        let (mut joining, _, address) = joining(now);
        let mut out = Actions::default();
        let stranger = PeerId::random();
        joining.on_dial_failed(stranger, &refused(&address), true, now, &mut out);
        assert!(out.drain().is_empty(), "one failure is not enough");
        joining.on_dial_failed(stranger, &refused(&address), true, now + SPAN, &mut out);
        assert!(
            matches!(&out.drain()[..], [Action::RemovePeer { peer, reason: PeerGone::Unreachable }] if *peer == stranger)
        );
    }

    #[test]
    fn losing_a_bootstrap_peer_schedules_a_quick_redial() {
        let now = Instant::now();
        let (mut joining, peer, _) = joining(now);
        let mut out = Actions::default();
        joining.poll(now, |_| true, &mut out);
        assert!(
            out.drain().iter().any(|a| matches!(a, Action::Pin(_))),
            "a peer connected already counts as connected"
        );
        joining.on_disconnected(peer, now, &mut out);
        assert!(matches!(
            &out.drain()[..],
            [Action::Emit(Event::BootstrapPeerLost { .. })]
        ));
        let due = joining.next_deadline().expect("a redial is scheduled");
        joining.poll(due, |_| false, &mut out);
        assert!(matches!(&out.drain()[..], [Action::Dial { .. }]));
    }
}
