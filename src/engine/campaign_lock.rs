//! `CampaignLock`, the engine's side of the campaign lock (`rollout::lock`): which console of
//! those sharing the broker drives a campaign of a given name.
//!
//! Owns: the lock book of this console, the starts waiting for their claim to be decided (a
//! `StartCampaign` or `ResumeCampaign` is carried out only once this console holds the
//! campaign's name, and refused with the holder's name otherwise), and which running campaign holds which name, so that the
//! name is given up when its campaign ends.
//!
//! Rules it keeps: a start is answered exactly once; a name is released only when no running
//! campaign and no waiting start needs it; everything the book asks to publish is returned to
//! the runner (who publishes it retained on [`CampaignLock::topic`]).

use std::collections::BTreeMap;

use super::command::{CampaignRequest, Reply};
use crate::rollout::CampaignId;
use crate::rollout::lock::{CampaignLocks, ConsoleInfo, DEFAULT_LEASE_MS, LockStep};

/// A start (or resume) waiting for its claim.
pub(super) struct WaitingStart {
    pub(super) key: String,
    pub(super) what: Wanted,
    pub(super) reply: Option<Reply<CampaignId>>,
}

/// What is carried out once the name is ours.
pub(super) enum Wanted {
    Start(Box<CampaignRequest>),
    /// A stored campaign picked up again (`rollout --resume`): the console that took it over
    /// while this one was away may be driving it.
    Resume(CampaignId),
}

pub(super) struct CampaignLock {
    book: CampaignLocks,
    waiting: Vec<WaitingStart>,
    /// Running campaigns started under a lock, and their name.
    bound: BTreeMap<CampaignId, String>,
}

impl CampaignLock {
    /// The lock of the console that connects as `client_id`, told to the others with this
    /// host, user and process.
    pub(super) fn new(client_id: &str) -> CampaignLock {
        let me = ConsoleInfo {
            console: client_id.to_owned(),
            host: host_name(),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_default(),
            pid: std::process::id(),
        };
        CampaignLock {
            book: CampaignLocks::new(me, rand::random(), DEFAULT_LEASE_MS),
            waiting: Vec::new(),
            bound: BTreeMap::new(),
        }
    }

    pub(super) fn topic(&self) -> String {
        self.book.topic()
    }

    /// Claims `key` for a start (or resume) that waits for the decision.
    pub(super) fn claim(
        &mut self,
        key: String,
        what: Wanted,
        reply: Option<Reply<CampaignId>>,
        now: u64,
    ) -> LockStep {
        // Waiting before the claim: a claim decided at once finds it.
        let step = self.book.claim(&key, now);
        self.waiting.push(WaitingStart { key, what, reply });
        step
    }

    /// The starts waiting for `key`, taken out to be carried out or refused.
    pub(super) fn take_waiting(&mut self, key: &str) -> Vec<WaitingStart> {
        let (taken, kept) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.key == key);
        self.waiting = kept;
        taken
    }

    /// Campaign `id` runs under `key`.
    pub(super) fn bind(&mut self, id: CampaignId, key: String) {
        self.bound.insert(id, key);
    }

    /// The running campaigns bound to `key`, unbound (another console holds it now).
    pub(super) fn unbind_key(&mut self, key: &str) -> Vec<CampaignId> {
        let ids: Vec<CampaignId> = self
            .bound
            .iter()
            .filter(|(_, k)| *k == key)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.bound.remove(id);
        }
        ids
    }

    /// The link is back: claim again what we hold (see `CampaignLocks::reconnected`).
    pub(super) fn reconnected(&mut self, now: u64) -> LockStep {
        self.book.reconnected(now)
    }

    /// Gives `key` up unless a running campaign or a waiting start needs it.
    pub(super) fn release_unused(&mut self, key: &str, now: u64) -> LockStep {
        let needed =
            self.bound.values().any(|k| k == key) || self.waiting.iter().any(|w| w.key == key);
        if needed {
            return LockStep::default();
        }
        self.book.release(key, now)
    }

    /// Unbinds the campaigns `ended` says are over and releases their names; renews the rest.
    pub(super) fn housekeeping(
        &mut self,
        ended: impl Fn(CampaignId) -> bool,
        now: u64,
    ) -> Vec<LockStep> {
        let over: Vec<(CampaignId, String)> = self
            .bound
            .iter()
            .filter(|(id, _)| ended(**id))
            .map(|(id, key)| (*id, key.clone()))
            .collect();
        let mut steps = Vec::new();
        for (id, key) in over {
            self.bound.remove(&id);
            steps.push(self.release_unused(&key, now));
        }
        steps.push(self.book.tick(now));
        steps
    }

    pub(super) fn on_message(&mut self, topic: &str, payload: &[u8], now: u64) -> LockStep {
        self.book.on_message(topic, payload, now)
    }

    /// Everything given up as the console stops: the message to publish, if any.
    pub(super) fn release_all(&mut self, now: u64) -> Option<Vec<u8>> {
        self.bound.clear();
        self.book.release_all(now)
    }
}

/// This machine's name, for the other consoles' operators.
fn host_name() -> String {
    let uname = rustix::system::uname();
    uname.nodename().to_string_lossy().into_owned()
}
