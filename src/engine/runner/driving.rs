//! Feeding the campaigns and carrying out the end of a turn: the runner lends
//! [`Campaigns`](super::super::campaigns::Campaigns) what it needs for one call (an `Env`) and
//! publishes what the committed outbox hands back; a publish that fails goes back to its
//! campaign as an input.

use super::Runner;
use crate::engine::campaigns::{Campaigns, Env, Pending};
use crate::engine::downloads::Downloads;
use crate::rollout::{Campaign, Input};

/// Rounds of "publish failed → the campaign reacts → more to flush" in one flush. The reaction
/// to a failed publish sends nothing new at once (the device waits for its retry time), so two
/// rounds suffice; the bound only guards against a loop.
const MAX_FLUSH_ROUNDS: usize = 8;

impl Runner {
    /// The campaigns, and what driving them borrows from the other components.
    fn campaigns_and_env(&mut self) -> (&mut Campaigns, Env<'_>) {
        (
            &mut self.campaigns,
            Env {
                clock: &self.clock,
                fleet: &self.fleet,
                io: &mut self.io,
                library: &self.library,
                alerts: &mut self.alerts,
                services: &mut self.services,
            },
        )
    }

    /// Feeds one input to campaign `idx` and carries out what it asks.
    pub(super) fn drive(&mut self, idx: usize, input: Input) {
        let (campaigns, mut env) = self.campaigns_and_env();
        if campaigns.drive(idx, input, &mut env) {
            self.publisher.mark();
        }
    }

    /// Feeds `input` to every live campaign.
    pub(super) fn drive_all(&mut self, input: &Input) {
        let (campaigns, mut env) = self.campaigns_and_env();
        if campaigns.drive_all(input, &mut env) {
            self.publisher.mark();
        }
    }

    /// Lets every campaign fire its due timers.
    pub(super) fn tick_campaigns(&mut self) {
        let (campaigns, mut env) = self.campaigns_and_env();
        if campaigns.tick(&mut env) {
            self.publisher.mark();
        }
    }

    /// Starts driving a campaign (see `Campaigns::add`); returns its index.
    pub(super) fn add_live(&mut self, campaign: Campaign, downloads: Downloads) -> usize {
        let (campaigns, mut env) = self.campaigns_and_env();
        let idx = campaigns.add(campaign, downloads, &mut env);
        self.publisher.mark();
        idx
    }

    /// Gives a campaign just resumed the target-version reports heard before it was live.
    pub(super) fn replay_versions_heard(&mut self, idx: usize) {
        let (campaigns, mut env) = self.campaigns_and_env();
        if campaigns.replay_versions_heard(idx, &mut env) {
            self.publisher.mark();
        }
    }

    /// Commits what this turn decided, then publishes what it caused.
    pub(super) fn flush_outbox(&mut self) {
        for _ in 0..MAX_FLUSH_ROUNDS {
            let now_ms = self.clock.now_ms();
            let Some(sends) = self
                .campaigns
                .commit_turn(&mut self.store, &mut self.alerts, now_ms)
            else {
                return;
            };
            for pending in sends {
                self.publish_pending(pending);
            }
        }
        tracing::error!("the outbox did not settle; the rest is sent next turn");
    }

    fn publish_pending(&mut self, pending: Pending) {
        let Pending {
            campaign,
            out,
            device,
            attempt,
        } = pending;
        let sent = self.publish(out, Some(device.clone()));
        if sent.is_ok() && attempt.is_some() {
            self.traffic.notice();
        }
        if let Err(error) = sent
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
