//! Which inbound messages a node takes: only from peers it is linked with,
//! and from each within its share (a token bucket: a burst, then a steady
//! rate). The buckets are kept for linked peers only, so they are bounded
//! by the links.

use std::collections::HashMap;

use libp2p::PeerId;
use web_time::Instant;

use crate::message::{MessageLimits, MessageStatus};

/// The per-peer shares of inbound messages.
#[derive(Debug)]
pub(crate) struct Messages {
    limits: MessageLimits,
    buckets: HashMap<PeerId, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Messages {
    pub(crate) fn new(limits: MessageLimits) -> Self {
        Self {
            limits,
            buckets: HashMap::new(),
        }
    }

    /// A message from `peer` arrived at `now`: whether to take it. A peer
    /// that is not `linked` is refused and gets no bucket.
    pub(crate) fn on_inbound(&mut self, peer: PeerId, linked: bool, now: Instant) -> MessageStatus {
        if !linked {
            self.buckets.remove(&peer);
            return MessageStatus::NotLinked;
        }
        let burst = f64::from(self.limits.burst);
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * f64::from(self.limits.per_second)).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            MessageStatus::Delivered
        } else {
            MessageStatus::RateLimited
        }
    }

    /// `peer` is no longer linked: its share is forgotten.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_linked_peer_gets_its_burst_then_its_rate() {
        let mut messages = Messages::new(MessageLimits {
            max_bytes: 16,
            burst: 4,
            per_second: 2,
        });
        let peer = PeerId::random();
        let now = Instant::now();
        let taken = (0..6)
            .filter(|_| messages.on_inbound(peer, true, now) == MessageStatus::Delivered)
            .count();
        assert_eq!(taken, 4, "the burst, and no more at once");
        assert_eq!(
            messages.on_inbound(peer, true, now + Duration::from_millis(400)),
            MessageStatus::RateLimited
        );
        assert_eq!(
            messages.on_inbound(peer, true, now + Duration::from_millis(600)),
            MessageStatus::Delivered,
            "2 per second: one more after half a second"
        );
        // Another peer has a share of its own.
        assert_eq!(
            messages.on_inbound(PeerId::random(), true, now),
            MessageStatus::Delivered
        );
    }

    #[test]
    fn an_unlinked_peer_is_refused_and_keeps_no_state() {
        let mut messages = Messages::new(MessageLimits::default());
        let peer = PeerId::random();
        let now = Instant::now();
        assert_eq!(
            messages.on_inbound(peer, false, now),
            MessageStatus::NotLinked
        );
        assert!(messages.buckets.is_empty());
        messages.on_inbound(peer, true, now);
        messages.forget(&peer);
        assert!(messages.buckets.is_empty());
    }
}
