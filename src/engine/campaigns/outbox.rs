//! Group commit. The transitions of one engine turn (a batch of device messages, a command, a
//! timer) are written in one SQLite transaction, and the messages they cause wait here until it
//! is durable: one fsync per turn instead of one per message, and still no notice goes out
//! before the database knows about it.

use crate::device_id::DeviceId;
use crate::protocol::Outbound;
use crate::rollout::Transition;

#[derive(Default)]
pub(super) struct Outbox {
    transitions: Vec<Transition>,
    sends: Vec<Pending>,
}

/// A message waiting for the transaction that caused it; once committed, the runner publishes
/// it (a value: only [`super::Campaigns`] queues one).
pub(in crate::engine) struct Pending {
    /// The index of the live campaign that sent it.
    pub(in crate::engine) campaign: usize,
    pub(in crate::engine) out: Outbound,
    pub(in crate::engine) device: DeviceId,
    /// For upgrade notices: the attempt, so a failed publish is reported to the campaign.
    pub(in crate::engine) attempt: Option<u32>,
}

impl Outbox {
    pub(super) fn persist(&mut self, transition: Transition) {
        self.transitions.push(transition);
    }

    pub(super) fn send(&mut self, pending: Pending) {
        self.sends.push(pending);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.sends.is_empty()
    }

    /// Everything queued: the transitions to commit and the messages waiting for them.
    pub(super) fn take(&mut self) -> (Vec<Transition>, Vec<Pending>) {
        (
            std::mem::take(&mut self.transitions),
            std::mem::take(&mut self.sends),
        )
    }
}
