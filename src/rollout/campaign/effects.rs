//! Leaf helpers that build the actions every part of the campaign emits: the upgrade order for a
//! record, a log line, the refusal of a command the campaign's state does not allow. They read
//! nothing of the campaign, so every sibling may use them.

use crate::device_id::DeviceId;
use crate::rollout::note::{Command, Note};
use crate::rollout::record::{CampaignState, TargetRecord};
use crate::rollout::{Action, LogLevel, UpgradeOrder};

pub(super) fn order_for(rec: &TargetRecord, resend: bool) -> UpgradeOrder {
    UpgradeOrder {
        device: rec.device.clone(),
        attempt: rec.attempts,
        task: rec.task.task_ref(),
        exchange_id: rec.task.exchange.clone(),
        resend,
    }
}

pub(super) fn log(
    out: &mut Vec<Action>,
    device: Option<&DeviceId>,
    level: LogLevel,
    message: Note,
) {
    out.push(Action::Log {
        device: device.cloned(),
        level,
        message,
    });
}

pub(super) fn refuse(out: &mut Vec<Action>, command: Command, state: CampaignState) {
    log(out, None, LogLevel::Warn, Note::Refused { command, state });
}
