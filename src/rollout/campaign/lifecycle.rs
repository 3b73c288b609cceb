//! Lifecycle: the abort threshold, completion, the operator's commands (pause, resume, cancel,
//! advance wave, retry failed) and every campaign state change with the `Persist` it causes.

use super::Campaign;
use super::effects::{log, refuse};
use crate::rollout::device;
use crate::rollout::note::{Command, Note};
use crate::rollout::record::{CampaignState, Change, DeviceStatus, Transition};
use crate::rollout::{Action, LogLevel};

impl Campaign {
    pub(super) fn check_abort(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.state, CampaignState::Running | CampaignState::Paused) {
            return;
        }
        let Some(abort) = self.spec.policy.abort else {
            return;
        };
        let failures = self.counts.failures();
        let judged = failures + self.counts.succeeded;
        let minimum = usize::try_from(abort.min_finished)
            .unwrap_or(usize::MAX)
            .max(1);
        if judged >= minimum && failures * 100 > usize::from(abort.failure_percent) * judged {
            let reason = Note::Aborted {
                failures,
                judged,
                percent: abort.failure_percent,
            };
            self.finish(CampaignState::Aborted, reason, out);
        }
    }

    pub(super) fn check_complete(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.state, CampaignState::Running | CampaignState::Paused) {
            return;
        }
        if self.counts.pending == 0 && self.counts.in_flight() == 0 {
            let detail = Note::Completed {
                succeeded: self.counts.succeeded,
                failed: self.counts.failures(),
                skipped: self.counts.skipped,
            };
            self.set_state(CampaignState::Completed, detail, out);
        }
    }

    /// Pause and resume: `from` → `to`, or a refusal.
    pub(super) fn command_state(
        &mut self,
        from: CampaignState,
        to: CampaignState,
        detail: Note,
        out: &mut Vec<Action>,
    ) {
        if self.state == from {
            self.set_state(to, detail, out);
        } else {
            refuse(
                out,
                if to == CampaignState::Paused {
                    Command::Pause
                } else {
                    Command::Resume
                },
                self.state,
            );
        }
    }

    pub(super) fn cancel(&mut self, out: &mut Vec<Action>) {
        if self.state.is_finished() {
            refuse(out, Command::Cancel, self.state);
            return;
        }
        self.finish(CampaignState::Canceled, Note::CanceledByOperator, out);
    }

    /// Aborted or canceled: no notice ever again; pending devices end now.
    fn finish(&mut self, to: CampaignState, reason: Note, out: &mut Vec<Action>) {
        self.set_state(to, reason.clone(), out);
        for idx in 0..self.devices.len() {
            if self
                .devices
                .get(idx)
                .is_some_and(|r| r.status == DeviceStatus::Pending)
            {
                self.update(idx, out, |rec, _| device::stop_pending(rec, &reason));
            }
        }
    }

    pub(super) fn advance_wave_command(&mut self, out: &mut Vec<Action>) {
        if !matches!(self.state, CampaignState::Running | CampaignState::Paused) {
            refuse(out, Command::AdvanceWave, self.state);
            return;
        }
        match self.current_wave {
            Some(w) if (w as usize) + 1 < self.wave_members.len() => {
                self.open_wave(w + 1, Note::AdvancedByOperator, out);
            }
            _ => log(out, None, LogLevel::Warn, Note::EveryWaveOpen),
        }
    }

    pub(super) fn retry_failed(&mut self, out: &mut Vec<Action>) {
        if !matches!(
            self.state,
            CampaignState::Running | CampaignState::Paused | CampaignState::Completed
        ) {
            refuse(out, Command::RetryFailed, self.state);
            return;
        }
        let failed: Vec<usize> = (0..self.devices.len())
            .filter(|&i| {
                self.devices.get(i).is_some_and(|r| {
                    matches!(r.status, DeviceStatus::Failed | DeviceStatus::TimedOut)
                })
            })
            .collect();
        if failed.is_empty() {
            log(out, None, LogLevel::Info, Note::NothingToRetry);
            return;
        }
        if self.state == CampaignState::Completed {
            self.set_state(
                CampaignState::Running,
                Note::FailedRequeued {
                    count: failed.len(),
                },
                out,
            );
            self.finished_at = None;
        }
        for &idx in &failed {
            self.update(idx, out, |rec, _| device::requeue(rec).unwrap_or_default());
        }
        log(
            out,
            None,
            LogLevel::Info,
            Note::FailedOrTimedOutRequeued {
                count: failed.len(),
            },
        );
    }

    pub(super) fn set_state(&mut self, to: CampaignState, detail: Note, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        if to.is_finished() {
            self.finished_at = Some(self.now);
            self.queue.clear();
        }
        self.persist_campaign(from, detail, out);
        out.push(Action::CampaignStateChanged { from, to });
    }

    pub(super) fn persist_campaign(
        &mut self,
        from: CampaignState,
        detail: Note,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Persist(Box::new(Transition {
            campaign: self.id,
            at: self.now,
            change: Change::Campaign {
                from,
                to: self.state,
                current_wave: self.current_wave,
                detail,
            },
        })));
    }
}
