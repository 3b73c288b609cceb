//! What the engine does with one message from a device: decode it, update the fleet, answer what
//! the protocol says must be answered (DJI `status_reply`, `events_reply`), and hand the events
//! to the campaigns they concern. A refused message is logged once with its reason and changes
//! nothing else.

use std::sync::PoisonError;

use crate::device_id::{DeviceId, Dialect};
use crate::fleet::inspector::Direction;
use crate::protocol::{self, DjiAck, Event, FirmwareGet, Notice, TaskRef};
use crate::rollout::Input;
use crate::transport::mqtt::Inbound;

use super::runner::Runner;

impl Runner {
    pub(super) fn on_inbound(&mut self, message: Inbound) {
        self.traffic.received += 1;
        self.dirty = true;
        let now_ms = self.clock.now_ms();
        match protocol::decode(&message.topic, &message.payload) {
            Ok(events) => {
                let about = events.first().map(|e| e.device().clone());
                if let Some(device) = &about {
                    self.last_message
                        .insert(device.device(), format!("← {}", message.topic));
                }
                self.record_inbound(&message, about, None, now_ms);
                for event in events {
                    self.on_event(event);
                }
            }
            Err(error) => {
                self.traffic.rejected += 1;
                let reason = error.to_string();
                tracing::warn!(
                    topic = %protocol::truncate_for_log(&message.topic),
                    bytes = message.payload.len(),
                    %reason,
                    "refused a device message"
                );
                self.record_inbound(&message, None, Some(reason), now_ms);
            }
        }
    }

    fn record_inbound(
        &mut self,
        message: &Inbound,
        about: Option<DeviceId>,
        error: Option<String>,
        now_ms: i64,
    ) {
        self.inspector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(
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
        let applied = self.fleet.apply(&event, now_ms);
        if applied.discovered || applied.version_changed {
            self.inventory_dirty.insert(event.device().device());
            if let Event::Version(v) = &event
                && let Some(gw) = &v.gateway
            {
                self.inventory_dirty.insert(gw.device());
            }
        }
        self.answer_protocol(&event);
        self.route_to_campaigns(event);
    }

    /// Replies the device expects whatever the campaigns do.
    fn answer_protocol(&mut self, event: &Event) {
        let ack = match event {
            Event::Topology(t) => Some((t.ack.clone(), true)),
            Event::Progress(p) => p.ack.clone().map(|a| (a, false)),
            Event::DjiOtherEvent { ack, .. } => ack.clone().map(|a| (a, false)),
            _ => None,
        };
        if let Some((ack, is_status)) = ack {
            self.send_dji_ack(ack, is_status);
        }
    }

    fn send_dji_ack(&mut self, ack: DjiAck, is_status: bool) {
        let timestamp_ms = self.clock.now_ms();
        let gateway = ack.gateway.clone();
        let notice = if is_status {
            Notice::DjiStatusReply { ack, timestamp_ms }
        } else {
            Notice::DjiEventsReply { ack, timestamp_ms }
        };
        match protocol::encode(&notice) {
            Ok(out) => {
                let _ = self.publish(out, Some(gateway));
            }
            Err(e) => tracing::error!(error = %e, "cannot encode a DJI reply"),
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
            Event::ServiceReply(_) => self.offer_to_dialect(Dialect::Dji, &event),
            Event::Progress(p) if matches!(p.task, TaskRef::Bid(_)) => {
                self.offer_to_dialect(Dialect::Dji, &event)
            }
            Event::Version(_) | Event::Progress(_) => {
                let device = event.device().clone();
                for idx in 0..self.live.len() {
                    if self.live[idx].campaign.is_target(&device) {
                        self.drive(idx, Input::Event(event.clone()));
                    }
                }
            }
            Event::DjiCompatibility { .. } | Event::DjiOtherEvent { .. } => {}
        }
    }

    /// DJI progress and replies name the dock, not the device: every DJI campaign looks at
    /// them and the bid decides.
    fn offer_to_dialect(&mut self, dialect: Dialect, event: &Event) {
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
