//! The namespaces this node is registered in, and the announcements that
//! make it findable there.
//!
//! A registration is a Kademlia provider record under the namespace key
//! ([`Namespace::record_key`]). It is stored locally at once and announced
//! to the peers closest to the key; Kademlia re-announces it every refresh
//! interval. The node announces every registration again each time it
//! (re)joins, so that peers that restarted with an empty store learn it.

use std::collections::BTreeSet;

use super::{
    action::{Action, Actions, Query},
    queries::Pending,
};
use crate::{error::RegisterError, handle::Reply, namespace::Namespace};

/// This node's registrations.
#[derive(Debug, Default)]
pub(crate) struct Membership {
    registered: BTreeSet<Namespace>,
}

impl Membership {
    /// Registers in `namespace` and announces it; `reply`, if any, learns
    /// how the announcement went.
    pub(crate) fn register(
        &mut self,
        namespace: Namespace,
        reply: Option<Reply<Result<(), RegisterError>>>,
        out: &mut Actions,
    ) {
        self.registered.insert(namespace.clone());
        announce(namespace, reply, out);
    }

    /// Leaves `namespace`: the registration is no longer refreshed and
    /// expires at the other peers within the namespace TTL.
    pub(crate) fn unregister(&mut self, namespace: &Namespace, out: &mut Actions) {
        self.registered.remove(namespace);
        out.push(Action::StopProviding(namespace.record_key()));
    }

    /// The node (re)joined: announce every registration to the peers now
    /// known to be closest.
    pub(crate) fn on_joined(&self, out: &mut Actions) {
        for namespace in &self.registered {
            announce(namespace.clone(), None, out);
        }
    }

    /// The local store had no room for the registration in `namespace`.
    pub(crate) fn on_refused(&mut self, namespace: &Namespace) {
        self.registered.remove(namespace);
    }

    /// Whether this node is registered in `namespace`.
    pub(crate) fn contains(&self, namespace: &Namespace) -> bool {
        self.registered.contains(namespace)
    }

    /// The namespaces this node is registered in, by name.
    pub(crate) fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.registered.iter()
    }
}

fn announce(
    namespace: Namespace,
    reply: Option<Reply<Result<(), RegisterError>>>,
    out: &mut Actions,
) {
    out.push(Action::Query {
        query: Query::Provide(namespace.record_key()),
        pending: Pending::Register { namespace, reply },
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announced(out: &mut Actions) -> Vec<Namespace> {
        out.drain()
            .into_iter()
            .filter_map(|action| match action {
                Action::Query {
                    query: Query::Provide(key),
                    pending: Pending::Register { namespace, .. },
                } => {
                    assert_eq!(key, namespace.record_key());
                    Some(namespace)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn registrations_are_announced_at_once_and_again_on_every_join() {
        let mut membership = Membership::default();
        let mut out = Actions::default();
        let (chat, game) = (
            Namespace::new("chat").unwrap(),
            Namespace::new("game").unwrap(),
        );
        membership.register(chat.clone(), None, &mut out);
        membership.register(game.clone(), None, &mut out);
        assert_eq!(announced(&mut out), vec![chat.clone(), game.clone()]);

        membership.on_joined(&mut out);
        assert_eq!(announced(&mut out), vec![chat.clone(), game.clone()]);

        membership.unregister(&game, &mut out);
        assert!(
            matches!(&out.drain()[..], [Action::StopProviding(key)] if *key == game.record_key())
        );
        membership.on_refused(&chat);
        membership.on_joined(&mut out);
        assert!(announced(&mut out).is_empty());
        assert!(!membership.contains(&chat));
    }
}
