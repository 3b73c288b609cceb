//! Group commit. The transitions of one engine turn (a batch of device messages, a command, a
//! timer) are written in one SQLite transaction, and the messages they cause wait here until it
//! is durable: one fsync per turn instead of one per message, and still no notice goes out
//! before the database knows about it.

use std::collections::HashSet;

use crate::device_id::DeviceId;
use crate::protocol::Outbound;
use crate::rollout::{CampaignId, Input, Transition};

use super::runner::Runner;
use super::snapshot::AlertLevel;

/// Rounds of "publish failed → the campaign reacts → more to flush" in one flush. The reaction
/// to a failed publish sends nothing new at once (the device waits for its retry time), so two
/// rounds suffice; the bound only guards against a loop.
const MAX_FLUSH_ROUNDS: usize = 8;

#[derive(Default)]
pub(super) struct Outbox {
    transitions: Vec<Transition>,
    sends: Vec<Pending>,
}

/// A message waiting for the transaction that caused it.
pub(super) struct Pending {
    pub(super) campaign: usize,
    pub(super) out: Outbound,
    pub(super) device: DeviceId,
    /// For upgrade notices: the attempt, so a failed publish is reported to the campaign.
    pub(super) attempt: Option<u32>,
}

impl Outbox {
    pub(super) fn persist(&mut self, transition: Transition) {
        self.transitions.push(transition);
    }

    pub(super) fn send(&mut self, pending: Pending) {
        self.sends.push(pending);
    }

    fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.sends.is_empty()
    }
}

impl Runner {
    /// Commits what this turn decided, then publishes what it caused.
    pub(super) fn flush_outbox(&mut self) {
        for _ in 0..MAX_FLUSH_ROUNDS {
            if self.outbox.is_empty() {
                return;
            }
            let transitions = std::mem::take(&mut self.outbox.transitions);
            let mut sends = std::mem::take(&mut self.outbox.sends);
            if let Err(failed) = self.commit(&transitions) {
                sends.retain(|p| {
                    self.live
                        .get(p.campaign)
                        .is_some_and(|l| !failed.contains(&l.campaign.id()))
                });
            }
            for pending in sends {
                self.publish_pending(pending);
            }
        }
        tracing::error!("the outbox did not settle; the rest is sent next turn");
    }

    /// Writes the transitions in one transaction. On failure every campaign that had a
    /// transition in it is halted (sending what the database does not know could notice a
    /// device twice after a restart); returns their ids.
    fn commit(&mut self, transitions: &[Transition]) -> Result<(), HashSet<CampaignId>> {
        if transitions.is_empty() {
            return Ok(());
        }
        let Err(e) = self.store.apply_all(transitions) else {
            return Ok(());
        };
        let failed: HashSet<CampaignId> = transitions.iter().map(|t| t.campaign).collect();
        let mut halted = Vec::new();
        for live in &mut self.live {
            if failed.contains(&live.campaign.id()) && live.halted.is_none() {
                let why = format!("the database refused a write ({e})");
                live.halted = Some(why.clone());
                halted.push((live.campaign.id(), why));
            }
        }
        for (id, why) in halted {
            self.alert(
                AlertLevel::Error,
                format!(
                    "campaign {id} stopped: {why}; nothing more is sent. Free space or fix \
                     permissions, then restart to resume"
                ),
            );
        }
        Err(failed)
    }

    fn publish_pending(&mut self, pending: Pending) {
        let Pending {
            campaign,
            out,
            device,
            attempt,
        } = pending;
        if let Err(error) = self.publish(out, Some(device.clone()))
            && let Some(attempt) = attempt
        {
            self.drive(
                campaign,
                Input::PublishFailed {
                    device,
                    attempt,
                    error: error.to_string(),
                },
            );
        }
    }
}
