//! The node's event subscribers, each with a bounded queue. A subscriber
//! that falls behind loses events and is told how many it missed; a
//! subscriber that went away is dropped. Publishing never waits.

use futures::channel::mpsc;

use crate::{event::Event, handle::EventStream};

/// Everyone listening to the node's events.
#[derive(Debug)]
pub(crate) struct Subscribers {
    capacity: usize,
    list: Vec<Subscriber>,
}

#[derive(Debug)]
struct Subscriber {
    sender: mpsc::Sender<Event>,
    missed: u64,
}

impl Subscribers {
    /// No subscribers yet; each will have a queue of `capacity` events.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            list: Vec::new(),
        }
    }

    /// A new subscriber, which receives every event published from now on.
    pub(crate) fn subscribe(&mut self) -> EventStream {
        let (sender, events) = mpsc::channel(self.capacity);
        self.list.push(Subscriber { sender, missed: 0 });
        EventStream { events }
    }

    /// Hands `event` to every subscriber with room for it.
    pub(crate) fn publish(&mut self, event: &Event) {
        self.list.retain_mut(|subscriber| {
            if subscriber.missed > 0 {
                match subscriber.sender.try_send(Event::Lagged {
                    missed: subscriber.missed,
                }) {
                    Ok(()) => subscriber.missed = 0,
                    Err(e) if e.is_disconnected() => return false,
                    Err(_) => {
                        subscriber.missed += 1;
                        return true;
                    }
                }
            }
            match subscriber.sender.try_send(event.clone()) {
                Ok(()) => true,
                Err(e) if e.is_disconnected() => false,
                Err(_) => {
                    subscriber.missed += 1;
                    true
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bootstrapped(size: usize) -> Event {
        Event::Bootstrapped {
            routing_table_size: size,
        }
    }

    #[test]
    fn a_slow_subscriber_is_told_what_it_missed() {
        let mut subscribers = Subscribers::new(1);
        let mut stream = subscribers.subscribe();
        // mpsc gives each sender one slot beyond the capacity: two fit.
        for _ in 0..5 {
            subscribers.publish(&bootstrapped(1));
        }
        let mut received = Vec::new();
        while let Ok(event) = stream.events.try_recv() {
            received.push(event);
        }
        assert_eq!(received.len(), 2);
        subscribers.publish(&bootstrapped(2));
        assert!(matches!(
            stream.events.try_recv(),
            Ok(Event::Lagged { missed: 3 })
        ));
        assert!(matches!(
            stream.events.try_recv(),
            Ok(Event::Bootstrapped {
                routing_table_size: 2
            })
        ));
    }

    #[test]
    fn closed_subscribers_are_dropped() {
        let mut subscribers = Subscribers::new(4);
        drop(subscribers.subscribe());
        subscribers.publish(&bootstrapped(0));
        assert!(subscribers.list.is_empty());
    }
}
