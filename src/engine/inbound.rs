//! What the engine does with one message from a device: decode it, update the fleet, answer what
//! the protocol says must be answered ([`Event::Answer`]: DJI `status_reply`, `events_reply`),
//! and hand the events
//! to the campaigns they concern. A refused message is recorded in the inspector with its reason
//! and changes nothing else; the log gets the first refusal of each topic and kind per minute,
//! then a count (`traffic.rs`), so a device repeating a bad message cannot flood it.

use crate::device_id::{DeviceId, DialectId};
use crate::fleet::inspector::Direction;
use crate::protocol::{
    self, Answer, DecodeError, Event, FirmwareGet, KeyScope, NothingPending, Notice, Pull,
    SubDevices, TaskRef, registry,
};
use crate::rollout::Input;
use crate::transport::mqtt::Inbound;

use super::runner::Runner;
use super::traffic::LogDecision;

impl Runner {
    pub(super) fn on_inbound(&mut self, message: Inbound) {
        self.traffic.received();
        self.publisher.mark();
        let now_ms = self.clock.now_ms();
        match protocol::decode(&message.topic, &message.payload) {
            Ok(events) => {
                let (events, foreign) = self.drop_foreign_claims(events);
                let (events, overflow) = self.drop_unknown_when_full(events);
                let kind = if foreign.is_some() {
                    "foreign sub-device"
                } else {
                    "registry full"
                };
                let refused = foreign.or(overflow);
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
                self.record_inbound(&message, about, refused, now_ms);
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

    /// Removes the events in which a gateway speaks for a device it does not own: a FogCloud
    /// `sub.*` entry or a DJI topology entry naming a device that the fleet knows elsewhere (see
    /// `foreign_claim`), or a gateway listing itself. Any client on the broker can publish on a
    /// gateway topic, and the fleet routes notices through the gateway it last heard of, so
    /// accepting such a claim would let one gateway fail, "upgrade" or capture another's
    /// devices. A sub-device whose gateway is offline may move (re-pairing is legitimate).
    /// Returns the events kept and, when something was removed, why.
    fn drop_foreign_claims(&self, events: Vec<Event>) -> (Vec<Event>, Option<String>) {
        let mut refused = None;
        let mut kept = Vec::with_capacity(events.len());
        for mut event in events {
            let claim = match &event {
                Event::Version(v) => v.gateway.as_ref().map(|gw| (&v.device, gw)),
                Event::Progress(p) => p.gateway.as_ref().map(|gw| (&p.device, gw)),
                _ => None,
            };
            if let Some(why) = claim.and_then(|(device, gw)| self.foreign_claim(device, gw)) {
                refused.get_or_insert(why);
                continue;
            }
            if let Event::Topology(t) = &mut event {
                let gateway = t.gateway.clone();
                let mut keep = t
                    .sub_devices
                    .iter()
                    .map(|sub| match self.foreign_claim(sub, &gateway) {
                        Some(why) => {
                            refused.get_or_insert(why);
                            false
                        }
                        None => true,
                    })
                    .collect::<Vec<bool>>()
                    .into_iter();
                let mut keep_info = keep.clone();
                t.sub_devices.retain(|_| keep.next().unwrap_or(false));
                t.sub_device_info
                    .retain(|_| keep_info.next().unwrap_or(false));
            }
            kept.push(event);
        }
        (kept, refused)
    }

    /// Removes the events that would add devices to a registry already holding
    /// [`crate::fleet::MAX_DEVICES`]: known devices keep being heard, new names are refused.
    fn drop_unknown_when_full(&self, events: Vec<Event>) -> (Vec<Event>, Option<String>) {
        let mut refused = None;
        let kept = events
            .into_iter()
            .filter(|event| {
                let admitted = self.fleet.admits(event);
                if !admitted {
                    refused = Some(format!(
                        "the device registry is full ({} devices): {} is not added",
                        self.fleet.len(),
                        event.device()
                    ));
                }
                admitted
            })
            .collect();
        (kept, refused)
    }

    /// Why `gateway` may not report for `device`, if it may not: the device is the gateway
    /// itself, or the fleet knows it connected through another gateway (or, FogCloud, directly)
    /// and that link is alive. Devices not heard of yet may be claimed: that is how sub-devices
    /// are discovered.
    fn foreign_claim(&self, device: &DeviceId, gateway: &DeviceId) -> Option<String> {
        let (device, gateway) = (device.device(), gateway.device());
        if device == gateway {
            return Some(format!("{gateway} lists itself as its own sub-device"));
        }
        let record = self.fleet.get(&device)?;
        match &record.gateway {
            Some(owner) if *owner == gateway => None,
            Some(owner) => self
                .fleet
                .get(owner)
                .is_some_and(|r| r.online)
                .then(|| format!("{device} is attached to {owner}, not to {gateway}")),
            // A sub-device that publishes under its own id (a DJI drone, through its dock) says
            // nothing about its gateway by being heard directly; one that never publishes
            // itself (FogCloud) and did is directly connected.
            None if publishes_in_own_name(device.dialect()) => None,
            None => record
                .online
                .then(|| format!("{device} is connected directly, not through {gateway}")),
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
        match protocol::encode(&notice) {
            Ok(out) => {
                let _ = self.publish(out, Some(to));
            }
            Err(e) => tracing::error!(error = %e, "cannot encode an answer to a device"),
        }
    }

    fn route_to_campaigns(&mut self, event: Event) {
        match &event {
            Event::FirmwareGet(get) => {
                let get = get.clone();
                match self.campaign_for(&get.device) {
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
                for idx in 0..self.live.len() {
                    if self.live[idx].campaign.is_target(&device) {
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
        for idx in 0..self.live.len() {
            if self.live[idx].dialects.contains(&dialect) {
                self.drive(idx, Input::Event(event.clone()));
            }
        }
    }

    fn mark_seen(&mut self, device: &DeviceId, online: bool) {
        for idx in 0..self.live.len() {
            self.drive(
                idx,
                Input::Seen {
                    device: device.clone(),
                    online,
                },
            );
        }
    }

    /// The unfinished campaign that targets this device+module, if any.
    pub(super) fn campaign_for(&self, device: &DeviceId) -> Option<usize> {
        self.live
            .iter()
            .position(|l| !l.campaign.state().is_finished() && l.campaign.is_target(device))
    }

    fn reply_nothing_pending(&mut self, request: FirmwareGet) {
        // A dialect without an empty reply (FogCloud, notes.md) answers "nothing pending" with
        // silence.
        let pull = registry::capabilities(request.device.dialect()).pull;
        let empty_reply = Pull::Supported {
            nothing_pending: NothingPending::EmptyReply,
        };
        if pull != empty_reply {
            return;
        }
        let device = request.device.clone();
        let notice = Notice::FirmwareGetReply {
            request,
            pending: None,
        };
        match protocol::encode(&notice) {
            Ok(out) => {
                let _ = self.publish(out, Some(device));
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a firmware get reply"),
        }
    }
}

/// Whether sub-devices of `dialect` publish under their own id through their gateway.
fn publishes_in_own_name(dialect: DialectId) -> bool {
    matches!(
        registry::capabilities(dialect).sub_devices,
        SubDevices::ThroughGateway {
            publish_in_own_name: true
        }
    )
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
