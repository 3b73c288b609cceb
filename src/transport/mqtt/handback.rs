//! Handing back what a publishing connection still holds when the broker refuses it for good
//! (a broker that admits one client id per login): its publishes go to the link's first
//! connection instead of dying with it.
//!
//! Rules it keeps: the publishes keep their order (in flight, then carried, then queued), also
//! against publishes made meanwhile: the hand-back holds [`Handback::order`], and a publish
//! that finds the connection's queue closed takes it before it goes on the first connection.
//! Each is counted as queued on the connection that now carries it, or as dropped where it was
//! when the first connection has no room for it (or is gone), so the link's added-up counters
//! stay true.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use rumqttc::Publish;
use tokio::sync::mpsc;

use super::status::Counters;

/// The first connection's queue and counters, as a publishing connection knows them. Weak: a
/// publishing connection must not keep the first one's channel open after its handles are gone.
pub(super) struct Handback {
    pub(super) requests: mpsc::WeakSender<Publish>,
    pub(super) counters: Arc<Counters>,
    /// Held while the publishes are handed back; shared with the connection's handle.
    pub(super) order: Arc<Mutex<()>>,
}

impl Handback {
    /// Queues `held` on the first connection, fresh (a new packet id there); `from` are the
    /// counters of the connection that gives them up. Returns how many had to be dropped.
    pub(super) fn hand_back(
        &self,
        from: &Counters,
        held: impl IntoIterator<Item = Publish>,
    ) -> u64 {
        let requests = self.requests.upgrade();
        let mut dropped = 0;
        for mut publish in held {
            publish.pkid = 0;
            publish.dup = false;
            let moved = requests
                .as_ref()
                .is_some_and(|to| to.try_send(publish).is_ok());
            let _ = from
                .queued
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if moved {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
            } else {
                from.dropped.fetch_add(1, Ordering::Relaxed);
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use rumqttc::QoS;

    use super::*;

    fn publish(topic: &str, pkid: u16) -> Publish {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, topic.as_bytes().to_vec());
        p.pkid = pkid;
        p.dup = pkid != 0;
        p
    }

    #[test]
    fn held_publishes_move_in_order_and_fresh_and_the_counters_follow_them() {
        let (tx, mut rx) = mpsc::channel(2);
        let first = Arc::new(Counters::default());
        let handback = Handback {
            requests: tx.downgrade(),
            counters: first.clone(),
            order: Arc::default(),
        };
        let refused = Counters::default();
        refused.queued.store(3, Ordering::Relaxed);
        let dropped = handback.hand_back(
            &refused,
            [publish("a", 7), publish("b", 0), publish("c", 0)],
        );
        // Room for two: the third is dropped where it was.
        assert_eq!(dropped, 1);
        let a = rx.try_recv().unwrap();
        let b = rx.try_recv().unwrap();
        assert_eq!((a.topic.as_str(), a.pkid, a.dup), ("a", 0, false));
        assert_eq!(b.topic, "b");
        assert_eq!(first.queued.load(Ordering::Relaxed), 2);
        assert_eq!(refused.queued.load(Ordering::Relaxed), 0);
        assert_eq!(refused.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn with_the_first_connection_gone_everything_held_is_dropped() {
        let (tx, rx) = mpsc::channel(8);
        let handback = Handback {
            requests: tx.downgrade(),
            counters: Arc::new(Counters::default()),
            order: Arc::default(),
        };
        drop((tx, rx));
        let refused = Counters::default();
        refused.queued.store(2, Ordering::Relaxed);
        assert_eq!(
            handback.hand_back(&refused, [publish("a", 0), publish("b", 0)]),
            2
        );
        assert_eq!(refused.dropped.load(Ordering::Relaxed), 2);
    }
}
