//! Routing of device reports to their record: version reports, progress (matched by the task
//! key, globally or with the device's id as the dialect's key scope says, or by device+module,
//! with the reasons a report is ignored), replies to our requests (only from the gateway the
//! upgrade runs through), and publishes that failed.

use super::effects::log;
use super::{Campaign, caps};
use crate::device_id::DeviceId;
use crate::protocol::{ExchangeReply, KeyScope, ProgressReport, Subject, TaskRef, VersionReport};
use crate::rollout::device;
use crate::rollout::note::{ForeignKey, Note};
use crate::rollout::record::DeviceStatus;
use crate::rollout::{Action, LogLevel};

impl Campaign {
    pub(super) fn on_version(&mut self, report: &VersionReport, out: &mut Vec<Action>) {
        // The module must match exactly: another module's version says nothing about ours.
        let Some(&idx) = self.by_device.get(&report.device) else {
            return;
        };
        // A device that reports its version when it (re)connects may not have subscribed yet
        // when it is still waiting for its notice (`start_settle` knows which dialects).
        if self
            .devices
            .get(idx)
            .is_some_and(|rec| rec.status == DeviceStatus::Pending)
        {
            self.start_settle(idx, self.now);
        }
        self.update(idx, out, |rec, ctx| {
            device::on_version(rec, &report.version, ctx)
        });
        self.after_device_outcome(idx, out);
        // After the update: a device that just succeeded needs no re-sent notice.
        self.set_online(idx, true, out);
    }

    pub(super) fn on_progress(&mut self, report: &ProgressReport, out: &mut Vec<Action>) {
        let Some(idx) = self.match_progress(report, out) else {
            return;
        };
        self.update(idx, out, |rec, ctx| device::on_progress(rec, report, ctx));
        self.after_device_outcome(idx, out);
        // Progress sent by the gateway says nothing about the device's own link.
        if caps(&report.device).progress_subject == Subject::Device {
            self.set_online(idx, true, out);
        }
    }

    /// Finds the device a progress report is about, or logs why it is ignored.
    fn match_progress(&self, report: &ProgressReport, out: &mut Vec<Action>) -> Option<usize> {
        match &report.task {
            TaskRef::Key(key) => match caps(&report.device).task_key.scope {
                KeyScope::Global => self.match_global_key(key, report, out),
                KeyScope::Device => self.match_device_key(key, report, out),
            },
            TaskRef::None => self.by_device.get(&report.device).copied(),
        }
    }

    /// A report that names the upgrade by its key alone (sent by the gateway, DJI `bid`).
    fn match_global_key(
        &self,
        key: &str,
        report: &ProgressReport,
        out: &mut Vec<Action>,
    ) -> Option<usize> {
        let idx = self.key_owner(report.device.dialect(), key)?;
        let rec = self.devices.get(idx)?;
        if !self.sent_by_its_gateway(idx, &report.device) {
            log(
                out,
                Some(&rec.device),
                LogLevel::Warn,
                Note::ForeignGateway {
                    key: key.to_owned(),
                    from: report.device.to_string(),
                },
            );
            None
        } else if rec.task.has_key(key) {
            Some(idx)
        } else {
            log(
                out,
                Some(&rec.device),
                LogLevel::Info,
                Note::EarlierAttemptKey {
                    key: key.to_owned(),
                },
            );
            None
        }
    }

    /// A report that carries the device's own id beside the key (FogCloud `task_id`).
    fn match_device_key(
        &self,
        key: &str,
        report: &ProgressReport,
        out: &mut Vec<Action>,
    ) -> Option<usize> {
        let target = self.index_of(&report.device);
        let owner = self.key_owner(report.device.dialect(), key);
        let current = target.filter(|&idx| {
            self.devices
                .get(idx)
                .is_some_and(|rec| rec.task.has_key(key))
        });
        if current.is_none() && (target.is_some() || owner.is_some()) {
            let why = match owner {
                Some(o) if Some(o) != target => ForeignKey::AnotherDevice,
                Some(_) => ForeignKey::EarlierAttempt,
                None => ForeignKey::NotIssued,
            };
            log(
                out,
                Some(&report.device),
                LogLevel::Warn,
                Note::ForeignKey {
                    key: key.to_owned(),
                    why,
                },
            );
        }
        current
    }

    pub(super) fn on_reply(&mut self, reply: &ExchangeReply, out: &mut Vec<Action>) {
        let TaskRef::Key(key) = &reply.task else {
            return;
        };
        let Some(idx) = self.key_owner(reply.gateway.dialect(), key) else {
            return;
        };
        let current = self
            .devices
            .get(idx)
            .is_some_and(|rec| rec.task.has_key(key));
        if !current || !self.sent_by_its_gateway(idx, &reply.gateway) {
            return;
        }
        self.update(idx, out, |rec, _| device::on_reply(rec, reply));
        self.after_device_outcome(idx, out);
    }

    /// Whether a report naming a task key came from the gateway the device upgrades through.
    /// Keys travel in clear on the broker, so another gateway (or any client) could repeat one;
    /// only the gateway the request went to speaks for the upgrade. Until the topology is known
    /// (never set), any sender is accepted.
    fn sent_by_its_gateway(&self, idx: usize, sender: &DeviceId) -> bool {
        match self.gateways.get(idx) {
            Some(Some(gateway)) if self.gateways_known => gateway.device() == sender.device(),
            _ => true,
        }
    }

    pub(super) fn on_publish_failed(
        &mut self,
        device: &DeviceId,
        attempt: u32,
        error: &str,
        out: &mut Vec<Action>,
    ) {
        let Some(idx) = self.index_of(device) else {
            return;
        };
        let Some(rec) = self.devices.get(idx) else {
            return;
        };
        if rec.status != DeviceStatus::Noticed || rec.attempts != attempt {
            return;
        }
        if let crate::protocol::Acknowledgement::ByReply(spec) = &caps(&rec.device).ack {
            let message = Note::PublishFailedReplyWait {
                request: spec.request.to_string(),
                error: error.to_owned(),
            };
            log(out, Some(&rec.device), LogLevel::Warn, message);
            return;
        }
        self.update(idx, out, |rec, ctx| device::unsend(rec, error, ctx));
    }
}
