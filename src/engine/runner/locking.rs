//! The campaign lock's turns (`engine/campaign_lock.rs`, protocol in `rollout/lock.rs`): a
//! start (or resume) claims the campaign's name and waits; a message on a lock topic decides it
//! (the start is carried out, or refused naming the console that holds the campaign, which the
//! window shows as an alert and `rollout` as its exit message); housekeeping renews the claim
//! and gives up the names of campaigns that ended; the link's return claims them again (and
//! halts one another console took over meanwhile); the console gives up everything as it stops.
//! The campaigns the window resumes by itself at start (`restore.rs`) are claimed the same way.

use super::Runner;
use crate::engine::campaign_lock::Wanted;
use crate::engine::command::{CampaignRequest, Reply};
use crate::engine::error::{CommandError, taken_over_text};
use crate::engine::snapshot::AlertLevel;
use crate::fleet::inspector::Direction;
use crate::protocol::Outbound;
use crate::rollout::CampaignId;
use crate::rollout::lock::{LockEvent, LockStep};
use crate::transport::mqtt::{Inbound, LinkError};

impl Runner {
    /// `StartCampaign`: claims the campaign's name; the start runs once this console holds it.
    pub(super) fn claim_and_start(
        &mut self,
        request: CampaignRequest,
        reply: Option<Reply<CampaignId>>,
    ) {
        let key = match self.campaign_name(&request) {
            Ok(key) => key,
            Err(e) => return self.answer(reply, Err(e)),
        };
        self.claim_for(key, Wanted::Start(Box::new(request)), reply);
    }

    /// `ResumeCampaign`: claims the stored campaign's name; it resumes once this console holds
    /// it. A campaign running here already is answered at once.
    pub(super) fn claim_and_resume(&mut self, id: CampaignId, reply: Option<Reply<CampaignId>>) {
        if self.campaigns.position(id).is_some() {
            return self.answer(reply, Ok(id));
        }
        match self.store.load_campaign(id) {
            Ok(stored) => self.claim_for(stored.spec.name, Wanted::Resume(id), reply),
            Err(error) => self.answer(
                reply,
                Err(CommandError::NotStored {
                    campaign: id,
                    error,
                }),
            ),
        }
    }

    fn claim_for(&mut self, key: String, what: Wanted, reply: Option<Reply<CampaignId>>) {
        let now = self.lock_now();
        let step = self.lock.claim(key.clone(), what, reply, now);
        if let Err(e) = self.apply_lock_step(step) {
            // Never echoed, so never decided: refuse now rather than wait for ever.
            let why = e.to_string();
            for waiting in self.lock.take_waiting(&key) {
                let refused = CommandError::ClaimNotSent {
                    key: key.clone(),
                    why: why.clone(),
                };
                self.answer(waiting.reply, Err(refused));
            }
            let step = self.lock.release_unused(&key, self.lock_now());
            let _ = self.apply_lock_step(step);
        }
    }

    /// A retained claim (or its clearing) on a lock topic.
    pub(super) fn on_lock_message(&mut self, message: &Inbound) {
        let now_ms = self.clock.now_ms();
        self.io.inspect(
            now_ms,
            Direction::In,
            &message.topic,
            &message.payload,
            None,
            None,
        );
        let now = self.lock_now();
        let step = self.lock.on_message(&message.topic, &message.payload, now);
        // A clearing that cannot be queued leaves the claim to lapse with its lease.
        let _ = self.apply_lock_step(step);
    }

    /// Renews our claims; gives up the names of campaigns that finished or left.
    pub(super) fn lock_housekeeping(&mut self) {
        let now = self.lock_now();
        let campaigns = &self.campaigns;
        let ended = |id: CampaignId| {
            campaigns
                .position(id)
                .and_then(|idx| campaigns.get(idx))
                .is_none_or(|live| live.campaign().state().is_finished())
        };
        for step in self.lock.housekeeping(ended, now) {
            let _ = self.apply_lock_step(step);
        }
    }

    /// The link is back: what we hold is claimed again, and a campaign another console took
    /// over meanwhile stops here.
    pub(super) fn lock_reconnected(&mut self) {
        let now = self.lock_now();
        let step = self.lock.reconnected(now);
        let _ = self.apply_lock_step(step);
    }

    /// As the console stops.
    pub(super) fn release_locks(&mut self) {
        let now = self.lock_now();
        if let Some(payload) = self.lock.release_all(now) {
            // Not sent: the claim lapses with its lease.
            let _ = self.publish_lock(payload);
        }
    }

    /// Publishes what the book asks and carries out its decisions; the publish's outcome.
    fn apply_lock_step(&mut self, step: LockStep) -> Result<(), LinkError> {
        let published = match step.publish {
            Some(payload) => self.publish_lock(payload),
            None => Ok(()),
        };
        for event in step.events {
            match event {
                LockEvent::Claimed { key } => {
                    for waiting in self.lock.take_waiting(&key) {
                        let result = match waiting.what {
                            Wanted::Start(request) => self.start_campaign(*request),
                            Wanted::Resume(id) => self.resume_campaign(id),
                        };
                        match &result {
                            Ok(id) => self.lock.bind(*id, key.clone()),
                            Err(_) => {
                                let now = self.lock_now();
                                let step = self.lock.release_unused(&key, now);
                                if let Some(payload) = step.publish {
                                    // Not sent: the claim lapses with its lease.
                                    let _ = self.publish_lock(payload);
                                }
                            }
                        }
                        self.answer(waiting.reply, result);
                    }
                }
                LockEvent::HeldBy { key, holder } => {
                    for id in self.lock.unbind_key(&key) {
                        let why = taken_over_text(&key, &holder);
                        if self.campaigns.halt(id, why.clone()) {
                            self.alert(AlertLevel::Error, why);
                        }
                    }
                    for waiting in self.lock.take_waiting(&key) {
                        let refused = CommandError::CampaignHeld {
                            key: key.clone(),
                            holder: holder.clone(),
                        };
                        self.answer(waiting.reply, Err(refused));
                    }
                }
            }
        }
        self.publisher.mark();
        published
    }

    fn publish_lock(&mut self, payload: Vec<u8>) -> Result<(), LinkError> {
        let out = Outbound {
            topic: self.lock.topic(),
            payload,
        };
        self.io.publish_retained(out, self.clock.now_ms())
    }

    fn lock_now(&self) -> u64 {
        self.clock.now().as_millis()
    }
}
