//! The end of an engine turn: the transitions the campaigns asked for are written in one SQLite
//! transaction, and only then are the messages they caused handed out for publishing. On a
//! refused write every campaign with a transition in it is halted: sending what the database
//! does not know could notice a device twice after a restart.

use std::collections::HashSet;

use super::{Campaigns, Pending};
use crate::engine::alerts::Alerts;
use crate::engine::snapshot::AlertLevel;
use crate::i18n::tr;
use crate::rollout::{CampaignId, Transition};
use crate::store::Store;

impl Campaigns {
    /// Commits what this turn decided and returns what may now be published (nothing of a
    /// halted campaign); `None` when the outbox is empty.
    pub(in crate::engine) fn commit_turn(
        &mut self,
        store: &mut Store,
        alerts: &mut Alerts,
        now_ms: i64,
    ) -> Option<Vec<Pending>> {
        if self.outbox.is_empty() {
            return None;
        }
        let (transitions, mut sends) = self.outbox.take();
        if let Err(failed) = self.commit(store, &transitions, alerts, now_ms) {
            sends.retain(|p| {
                self.live
                    .get(p.campaign)
                    .is_some_and(|l| !failed.contains(&l.campaign().id()))
            });
        }
        // A halted campaign sends nothing, whatever it queued.
        sends.retain(|p| self.live.get(p.campaign).is_none_or(|l| !l.is_halted()));
        Some(sends)
    }

    /// Writes the transitions in one transaction. On failure every campaign that had a
    /// transition in it is halted; returns their ids.
    fn commit(
        &mut self,
        store: &mut Store,
        transitions: &[Transition],
        alerts: &mut Alerts,
        now_ms: i64,
    ) -> Result<(), HashSet<CampaignId>> {
        if transitions.is_empty() {
            return Ok(());
        }
        let Err(e) = store.apply_all(transitions) else {
            return Ok(());
        };
        let failed: HashSet<CampaignId> = transitions.iter().map(|t| t.campaign).collect();
        let mut halted = Vec::new();
        for live in &mut self.live {
            if failed.contains(&live.campaign().id()) && !live.is_halted() {
                let why = tr!("engine.database_refused", why = e);
                live.halt(why.clone());
                halted.push((live.campaign().id(), why));
            }
        }
        for (id, why) in halted {
            alerts.push(
                AlertLevel::Error,
                tr!("engine.alert.halted", id = id, why = why),
                now_ms,
            );
        }
        Err(failed)
    }
}
