//! What the engine does with one message from a device: decode it (through the dialect's
//! stateful service when it has one, `protocol::Services`, which may answer at once), update
//! the fleet, answer what the protocol says must be answered ([`Event::Answer`]: DJI
//! `status_reply`, `events_reply`), and hand the events
//! to the campaigns they concern. A refused message is recorded in the inspector with its reason
//! and changes nothing else; the log gets the first refusal of each topic and kind per minute,
//! then a count (`traffic.rs`), so a device repeating a bad message cannot flood it.

use crate::device_id::{DeviceId, DialectId};
use crate::fleet::inspector::Direction;
use crate::protocol::{
    self, Answer, DecodeError, Event, FirmwareGet, KeyScope, Notice, Served, TaskRef, registry,
};
use crate::rollout::Input;
use crate::rollout::lock::LOCK_TOPIC_PREFIX;
use crate::transport::mqtt::Inbound;

use super::Runner;
use crate::engine::traffic::LogDecision;

impl Runner {
    pub(super) fn on_inbound(&mut self, message: Inbound) {
        // Consoles' claims, not device traffic: the counters (and the loss checks built on them)
        // count what devices sent.
        if message.topic.starts_with(LOCK_TOPIC_PREFIX) {
            return self.on_lock_message(&message);
        }
        self.traffic.received();
        self.publisher.mark();
        let now_ms = self.clock.now_ms();
        let served = self
            .services
            .decode(&message.topic, &message.payload, now_ms);
        match served {
            Ok(Served { events, replies }) => {
                let (events, refusal) = self.fleet.admit(events);
                let (kind, refused) = match refusal {
                    Some((kind, reason)) => (kind, Some(reason)),
                    None => ("", None),
                };
                let about = events.first().map(|e| e.device().clone());
                if let Some(device) = &about {
                    // Words, not arrows: no font the window bundles has an arrow glyph, so arrows
                    // drew as boxes (and failed the GUI tests) without a system CJK font.
                    self.fleet
                        .note_message(device, format!("in {}", message.topic));
                }
                if let Some(reason) = &refused {
                    self.refuse(&message, kind, reason, now_ms);
                }
                self.record_inbound(&message, about.clone(), refused, now_ms);
                // What a stateful service answers at once (AWS-style `…/accepted`), after the
                // request in the inspector.
                for reply in replies {
                    let _ = self.publish(reply, about.clone());
                }
                for event in events {
                    self.on_event(event);
                }
            }
            Err(error) => {
                let reason = error.to_string();
                self.refuse(&message, error_kind(&error), &reason, now_ms);
                self.record_inbound(&message, None, Some(reason), now_ms);
            }
        }
    }

    fn refuse(&mut self, message: &Inbound, kind: &'static str, reason: &str, now_ms: i64) {
        let topic = protocol::truncate_for_log(&message.topic);
        match self.traffic.refused(&topic, kind, now_ms) {
            LogDecision::Suppress => {}
            LogDecision::Log { suppressed } => tracing::warn!(
                %topic,
                bytes = message.payload.len(),
                %reason,
                suppressed_in_last_minute = suppressed,
                "refused a device message"
            ),
        }
    }

    fn record_inbound(
        &mut self,
        message: &Inbound,
        about: Option<DeviceId>,
        error: Option<String>,
        now_ms: i64,
    ) {
        self.io.inspect(
            now_ms,
            Direction::In,
            &message.topic,
            &message.payload,
            about,
            error,
        );
    }

    fn on_event(&mut self, event: Event) {
        if matches!(event, Event::Progress(_)) {
            self.traffic.progress();
        }
        let now_ms = self.clock.now_ms();
        self.fleet.apply(&event, now_ms);
        if let Event::Answer(answer) = &event {
            self.send_answer(answer.clone());
        }
        self.route_to_campaigns(event);
    }

    /// A reply the device expects whatever the campaigns do.
    fn send_answer(&mut self, answer: Answer) {
        let timestamp_ms = self.clock.now_ms();
        let to = answer.to.clone();
        let notice = Notice::Answer {
            answer,
            timestamp_ms,
        };
        match self.services.encode(&notice, timestamp_ms) {
            Ok(outs) => {
                for out in outs {
                    let _ = self.publish(out, Some(to.clone()));
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode an answer to a device"),
        }
    }

    fn route_to_campaigns(&mut self, event: Event) {
        match &event {
            Event::FirmwareGet(get) => {
                let get = get.clone();
                match self.campaigns.campaign_for(&get.device) {
                    Some(idx) => self.drive(idx, Input::Event(event)),
                    None => self.reply_nothing_pending(get),
                }
            }
            Event::Topology(t) => {
                let gateway = t.gateway.clone();
                for sub in &t.sub_devices {
                    self.io.set_gateway(sub, &gateway);
                }
                self.refresh_gateways();
                self.mark_seen(&gateway, true);
                let subs: Vec<(DeviceId, bool)> = self
                    .fleet
                    .sorted()
                    .into_iter()
                    .filter(|r| r.gateway.as_ref() == Some(&gateway))
                    .map(|r| (r.id.clone(), r.online))
                    .collect();
                for (sub, online) in subs {
                    self.mark_seen(&sub, online);
                }
            }
            Event::Reply(r) => self.offer_to_dialect(r.gateway.dialect(), &event),
            Event::Progress(p) if names_only_the_key(p.device.dialect(), &p.task) => {
                self.offer_to_dialect(p.device.dialect(), &event)
            }
            Event::Version(_) | Event::Progress(_) => {
                let device = event.device().clone();
                for idx in 0..self.campaigns.len() {
                    let concerned = self.campaigns.get(idx);
                    if concerned.is_some_and(|l| l.campaign().is_target(&device)) {
                        self.drive(idx, Input::Event(event.clone()));
                    }
                }
            }
            Event::Answer(_) | Event::Attribute { .. } | Event::Heard { .. } => {}
        }
    }

    /// Progress and replies that name the gateway, not the device ([`KeyScope::Global`]):
    /// every campaign with devices of that dialect looks at them and the task key decides.
    fn offer_to_dialect(&mut self, dialect: DialectId, event: &Event) {
        for idx in 0..self.campaigns.len() {
            let concerned = self.campaigns.get(idx);
            if concerned.is_some_and(|l| l.dialects().contains(&dialect)) {
                self.drive(idx, Input::Event(event.clone()));
            }
        }
    }

    fn mark_seen(&mut self, device: &DeviceId, online: bool) {
        self.drive_all(&Input::Seen {
            device: device.clone(),
            online,
        });
    }

    fn reply_nothing_pending(&mut self, request: FirmwareGet) {
        // A dialect without an empty reply (FogCloud, notes.md) answers "nothing pending" with
        // silence.
        if !registry::capabilities(request.device.dialect())
            .pull
            .replies_nothing_pending()
        {
            return;
        }
        let device = request.device.clone();
        let notice = Notice::FirmwareGetReply {
            request,
            pending: None,
        };
        let now_ms = self.clock.now_ms();
        match self.services.encode(&notice, now_ms) {
            Ok(outs) => {
                for out in outs {
                    let _ = self.publish(out, Some(device.clone()));
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a firmware get reply"),
        }
    }
}

/// Whether a report carrying `task` names the upgrade by its key alone.
fn names_only_the_key(dialect: DialectId, task: &TaskRef) -> bool {
    matches!(task, TaskRef::Key(_))
        && registry::capabilities(dialect).task_key.scope == KeyScope::Global
}

/// A short name for the kind of a decode error, so that refusals that differ only in detail
/// (a length, a value) count as the same for the log.
fn error_kind(error: &DecodeError) -> &'static str {
    match error {
        DecodeError::TooLarge { .. } => "too large",
        DecodeError::UnknownTopic(_) => "unknown topic",
        DecodeError::BadIdentity(_) => "bad identity",
        DecodeError::Json(_) => "not JSON",
        DecodeError::MissingField(_) => "missing field",
        DecodeError::WrongType { .. } => "wrong type",
        DecodeError::BadValue { .. } => "bad value",
        DecodeError::UnknownMethod(_) => "unknown method",
    }
}
