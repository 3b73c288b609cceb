//! Carrying out what a campaign asks (`Action`s): transitions and the messages they cause go to
//! the outbox (committed, then published, at the end of the turn, see `turn.rs`); alerts, logs
//! and the download links' grant happen now.

use super::{Campaigns, Env, Pending};
use crate::device_id::DeviceId;
use crate::engine::downloads::Downloads;
use crate::engine::snapshot::AlertLevel;
use crate::i18n::tr;
use crate::protocol::{self, Notice};
use crate::rollout::{
    Action, CampaignState, DeviceStatus, Input, LogLevel, NoticeRoute, UpgradeOrder,
};
use crate::terms::states;

impl Campaigns {
    /// Carries out campaign `idx`'s actions, in order.
    pub(super) fn execute(&mut self, idx: usize, actions: Vec<Action>, env: &mut Env<'_>) {
        for action in actions {
            match action {
                Action::Persist(t) => self.outbox.persist(*t),
                Action::SendUpgrade(order) => {
                    let notice = Notice::Upgrade(self.notice_for(idx, &order, env));
                    self.queue_send(idx, &notice, order.device, Some(order.attempt), env);
                }
                Action::ReplyFirmwareGet { request, pending } => {
                    let device = request.device.clone();
                    let pending = pending.map(|order| self.notice_for(idx, &order, env));
                    let notice = Notice::FirmwareGetReply { request, pending };
                    // A lost reply is not fatal: the device asks again.
                    self.queue_send(idx, &notice, device, None, env);
                }
                Action::CampaignStateChanged { from, to } => {
                    let id = self.live[idx].campaign().id();
                    env.alert(
                        AlertLevel::Info,
                        tr!(
                            "engine.alert.state_changed",
                            id = id,
                            from = states::campaign_state(from),
                            to = states::campaign_state(to)
                        ),
                    );
                    if matches!(to, CampaignState::Canceled | CampaignState::Aborted) {
                        self.withdraw_unanswered(idx, env);
                    }
                    // The campaign's state is already `to`: its links end (or come back) now.
                    self.sync_downloads(idx, env);
                }
                Action::Log {
                    device,
                    level,
                    message,
                } => match device {
                    Some(device) => match level {
                        LogLevel::Info => tracing::info!(device = %device, "{message}"),
                        LogLevel::Warn => tracing::warn!(device = %device, "{message}"),
                    },
                    // About the whole campaign: the operator should see it, not only the log.
                    None => {
                        let id = self.live[idx].campaign().id();
                        let level = match level {
                            LogLevel::Info => AlertLevel::Info,
                            LogLevel::Warn => AlertLevel::Warning,
                        };
                        env.alert(
                            level,
                            tr!("engine.alert.campaign", id = id, message = message),
                        );
                    }
                },
            }
        }
    }

    /// A campaign that ended early withdraws the notices its devices have not answered: a
    /// dialect whose service keeps them (a queued job) is told, the others send nothing.
    fn withdraw_unanswered(&mut self, idx: usize, env: &mut Env<'_>) {
        let now_ms = env.clock.now_ms();
        let Some(live) = self.live.get(idx) else {
            return;
        };
        let mut sends = Vec::new();
        for rec in live.campaign().devices() {
            if rec.status == DeviceStatus::Noticed {
                for out in env
                    .services
                    .withdraw(&rec.device, &rec.task.task_ref(), now_ms)
                {
                    sends.push((out, rec.device.clone()));
                }
            }
        }
        for (out, device) in sends {
            self.outbox.send(Pending {
                campaign: idx,
                out,
                device,
                attempt: None,
            });
        }
    }

    fn queue_send(
        &mut self,
        idx: usize,
        notice: &Notice,
        device: DeviceId,
        attempt: Option<u32>,
        env: &mut Env<'_>,
    ) {
        match env.services.encode(notice, env.clock.now_ms()) {
            Ok(outs) => {
                // A failed publish of the first message (the notice itself) is the attempt's;
                // what a service adds (e.g. a list of pending jobs) is not.
                let mut attempt = attempt;
                for out in outs {
                    self.outbox.send(Pending {
                        campaign: idx,
                        out,
                        device: device.clone(),
                        attempt: attempt.take(),
                    });
                }
            }
            Err(e) => {
                let error = tr!("engine.alert.encode", device = device, why = e);
                env.alert(AlertLevel::Error, error.clone());
                if let Some(attempt) = attempt {
                    self.drive(
                        idx,
                        Input::PublishFailed {
                            device,
                            attempt,
                            error,
                        },
                        env,
                    );
                }
            }
        }
    }

    /// The notice for an order, routed through the device's gateway when it has one.
    fn notice_for(
        &mut self,
        idx: usize,
        order: &UpgradeOrder,
        env: &Env<'_>,
    ) -> protocol::UpgradeNotice {
        let route = NoticeRoute {
            gateway: env.fleet.gateway_of(&order.device),
            msg_id: self.next_msg_id(),
            timestamp_ms: env.clock.now_ms(),
            download_url: self.download_url_for(idx, &order.device, env),
        };
        self.live[idx].campaign().build_notice(order, &route)
    }

    /// Grants or revokes campaign `idx`'s links after its state changed.
    fn sync_downloads(&mut self, idx: usize, env: &mut Env<'_>) {
        let Some(live) = self.live.get(idx) else {
            return;
        };
        let finished = live.campaign().state().is_finished();
        let id = live.campaign().id();
        match live.downloads() {
            Downloads::PerDevice { granted: true } if finished => {
                env.io.revoke(id.0);
                self.set_granted(idx, false);
            }
            Downloads::PerDevice { granted: false } if !finished => {
                let library = env.library;
                let granted = env.io.load_download_key().and_then(|()| {
                    env.io
                        .grant_downloads(self.live[idx].campaign(), |sha| library.get(sha))
                });
                match granted {
                    Ok(()) => self.set_granted(idx, true),
                    Err(e) => env.alert(
                        AlertLevel::Error,
                        tr!("engine.alert.no_download", id = id, why = e),
                    ),
                }
            }
            _ => {}
        }
    }

    fn set_granted(&mut self, idx: usize, granted: bool) {
        if let Some(live) = self.live.get_mut(idx) {
            live.set_downloads(Downloads::PerDevice { granted });
        }
    }

    /// The link `device` is told in campaign `idx`'s notices: its own link, or `None` for the
    /// offer's URL as it is.
    fn download_url_for(&self, idx: usize, device: &DeviceId, env: &Env<'_>) -> Option<String> {
        let live = self.live.get(idx)?;
        match live.downloads() {
            Downloads::PerDevice { .. } => env.io.device_url(live.campaign(), device),
            Downloads::AsOffered => None,
        }
    }
}
