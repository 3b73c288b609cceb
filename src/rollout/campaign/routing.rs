//! Routing of device reports to their record: version reports, progress (matched by bid,
//! FogCloud task_id or device+module, with the reasons a report is ignored), DJI service
//! replies (only from the dock the upgrade runs through), and publishes that failed.

use super::Campaign;
use super::effects::log;
use crate::device_id::{DeviceId, Dialect};
use crate::protocol::{ProgressReport, ServiceReply, TaskRef, VersionReport};
use crate::rollout::device;
use crate::rollout::record::{DeviceStatus, TaskRecord};
use crate::rollout::{Action, LogLevel};

impl Campaign {
    pub(super) fn on_version(&mut self, report: &VersionReport, out: &mut Vec<Action>) {
        // The module must match exactly: another module's version says nothing about ours.
        let Some(&idx) = self.by_device.get(&report.device) else {
            return;
        };
        // Alibaba and FogCloud devices report their version when they (re)connect: one still
        // waiting for its notice may not have subscribed yet.
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
        // DJI progress comes from the dock, which says nothing about the drone's link.
        if report.device.dialect() != Dialect::Dji {
            self.set_online(idx, true, out);
        }
    }

    /// Finds the device a progress report is about, or logs why it is ignored.
    fn match_progress(&self, report: &ProgressReport, out: &mut Vec<Action>) -> Option<usize> {
        match &report.task {
            TaskRef::Bid(bid) => {
                let idx = *self.by_bid.get(bid)?;
                let rec = self.devices.get(idx)?;
                let current = matches!(&rec.task, TaskRecord::Dji { bid: b, .. } if b == bid);
                if !self.sent_by_its_dock(idx, &report.device) {
                    log(
                        out,
                        Some(&rec.device),
                        LogLevel::Warn,
                        format!(
                            "progress for bid {bid} from {} ignored: the upgrade does not run \
                             through that dock",
                            report.device
                        ),
                    );
                    None
                } else if current {
                    Some(idx)
                } else {
                    log(
                        out,
                        Some(&rec.device),
                        LogLevel::Info,
                        format!("progress for bid {bid} of an earlier attempt ignored"),
                    );
                    None
                }
            }
            TaskRef::TaskId(task_id) => {
                let target = self.index_of(&report.device);
                let owner = self.by_task_id.get(task_id).copied();
                let current = target.filter(|&idx| {
                    self.devices.get(idx).is_some_and(
                        |rec| matches!(&rec.task, TaskRecord::TaskId(t) if t == task_id),
                    )
                });
                if current.is_none() && (target.is_some() || owner.is_some()) {
                    let why = match owner {
                        Some(o) if Some(o) != target => "belongs to another device",
                        Some(_) => "belongs to an earlier attempt",
                        None => "was not issued by this campaign",
                    };
                    log(
                        out,
                        Some(&report.device),
                        LogLevel::Warn,
                        format!("progress with task_id {task_id:?} ignored: it {why}"),
                    );
                }
                current
            }
            TaskRef::None => self.by_device.get(&report.device).copied(),
        }
    }

    pub(super) fn on_service_reply(&mut self, reply: &ServiceReply, out: &mut Vec<Action>) {
        let Some(&idx) = self.by_bid.get(&reply.bid) else {
            return;
        };
        let current = self.devices.get(idx).is_some_and(
            |rec| matches!(&rec.task, TaskRecord::Dji { bid, .. } if *bid == reply.bid),
        );
        if !current || !self.sent_by_its_dock(idx, &reply.gateway) {
            return;
        }
        self.update(idx, out, |rec, _| device::on_service_reply(rec, reply));
        self.after_device_outcome(idx, out);
    }

    /// Whether a DJI report came from the dock the device upgrades through. Bids travel in
    /// clear on the broker, so another dock (or any client) could repeat one; only the dock the
    /// `ota_create` went to speaks for the upgrade. Until the topology is known (never set),
    /// any sender is accepted.
    fn sent_by_its_dock(&self, idx: usize, sender: &DeviceId) -> bool {
        match self.docks.get(idx) {
            Some(Some(dock)) if self.docks_known => dock.device() == sender.device(),
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
        if rec.device.dialect() == Dialect::Dji {
            let message =
                format!("publishing ota_create failed ({error}); the reply wait will re-send it");
            log(out, Some(&rec.device), LogLevel::Warn, message);
            return;
        }
        self.update(idx, out, |rec, ctx| device::unsend(rec, error, ctx));
    }
}
