//! The per-device state machine: how one [`TargetRecord`] reacts to a notice, a progress report,
//! a version report, a DJI `services_reply` and its timers.
//!
//! Each function mutates the record and returns a [`Step`] (journal detail, log lines, whether to
//! re-send the notice). It never decides campaign matters (waves, rate, retries budget across
//! devices, aborting) and never emits actions: [`super::Campaign`] turns record changes into
//! `Persist` actions and steps into the rest.

use super::Timestamp;
use super::note::Note;
use super::policy::Policy;
use super::record::{DeviceStatus, FailureCode, ReplyWait, TargetRecord, TaskRecord};
use crate::protocol::{
    Acknowledgement, ExchangeReply, Phase, ProgressReport, ReplySpec, UpgradeStatus, registry,
};

/// What the device machine needs from its campaign.
pub(crate) struct DeviceCtx<'a> {
    pub target_version: &'a str,
    pub policy: &'a Policy,
    pub now: Timestamp,
}

/// The side effects of one device step, beyond the record change itself.
#[derive(Debug, Default)]
pub(crate) struct Step {
    /// Journal text for a status change (a generic one is used when `None`).
    pub detail: Option<Note>,
    /// Lines for the operator's log about this device.
    pub logs: Vec<Note>,
    /// The current notice must go out again (DJI resend with a fresh tid, or a device that came
    /// back online before acting on it).
    pub resend: bool,
}

impl Step {
    fn detail(note: Note) -> Self {
        Step {
            detail: Some(note),
            ..Step::default()
        }
    }

    fn log(note: Note) -> Self {
        Step {
            logs: vec![note],
            ..Step::default()
        }
    }
}

/// Why the version filter leaves this device out, given what is known of its version.
pub(crate) fn skip_reason(
    rec: &TargetRecord,
    target_version: &str,
    policy: &Policy,
) -> Option<Note> {
    let version = rec.from_version.as_deref()?;
    if version == target_version {
        return Some(Note::AlreadyOnTarget {
            version: target_version.to_owned(),
        });
    }
    if !policy.only_from_versions.is_empty()
        && !policy.only_from_versions.iter().any(|v| v == version)
    {
        return Some(Note::NotFromVersions {
            version: version.to_owned(),
            versions: policy.only_from_versions.clone(),
        });
    }
    None
}

/// Marks the device skipped with `reason`.
pub(crate) fn skip(rec: &mut TargetRecord, reason: Note) -> Step {
    rec.status = DeviceStatus::Skipped;
    rec.retry_at = None;
    rec.error = Some(reason.clone());
    Step::detail(Note::Skipped {
        reason: Box::new(reason),
    })
}

/// Starts a new attempt: the notice is about to go out.
pub(crate) fn notice(rec: &mut TargetRecord, task: TaskRecord, ctx: &DeviceCtx<'_>) -> Step {
    rec.attempts = rec.attempts.saturating_add(1);
    rec.status = DeviceStatus::Noticed;
    rec.percent = 0;
    rec.error = None;
    rec.code = None;
    rec.to_version = None;
    rec.last_outcome = None;
    rec.noticed_at = Some(ctx.now);
    rec.deadline_at = Some(ctx.now.plus_ms(ctx.policy.device_timeout_ms()));
    rec.retry_at = None;
    rec.reply_wait = match reply_spec(rec) {
        Some(_) => Some(ReplyWait {
            deadline_at: ctx.now.plus_ms(ctx.policy.reply_timeout_ms),
            resends_left: ctx.policy.reply_resends,
        }),
        // Without a reply to a notice, the first progress or version report is its
        // acknowledgement, awaited for the ack window.
        None if ctx.policy.ack_resends > 0 => Some(ReplyWait {
            deadline_at: ctx.now.plus_ms(ctx.policy.ack_wait_ms(0)),
            resends_left: ctx.policy.ack_resends,
        }),
        None => None,
    };
    rec.task = task;
    let retry = rec
        .attempts
        .saturating_sub(rec.round_start)
        .saturating_sub(1);
    if retry == 0 {
        Step::detail(Note::NoticeSent {
            attempt: rec.attempts,
        })
    } else {
        Step::detail(Note::NoticeSentAgain {
            attempt: rec.attempts,
            retry,
            retries: ctx.policy.retries,
        })
    }
}

/// 0 noticed, 1 downloading, 2 installing: reports never move a device back down this order.
fn phase_rank(status: DeviceStatus) -> u8 {
    match status {
        DeviceStatus::Downloading => 1,
        DeviceStatus::Installing => 2,
        _ => 0,
    }
}

/// Applies a progress report already matched to this device's current attempt.
pub(crate) fn on_progress(
    rec: &mut TargetRecord,
    report: &ProgressReport,
    ctx: &DeviceCtx<'_>,
) -> Step {
    if !rec.status.in_flight() {
        // A device claiming progress or success with no notice in flight changes nothing.
        return Step::log(Note::ProgressIgnored { status: rec.status });
    }
    // Any report on the task proves the ota_create arrived.
    rec.reply_wait = None;
    let mut step = Step::default();
    if report.percent_clamped {
        step.logs.push(Note::PercentClamped);
    }
    let percent = report.percent.map(|p| p.min(100));
    let desc = Note::desc(report.desc.as_deref());
    match &report.status {
        UpgradeStatus::Sent => {}
        UpgradeStatus::Paused => step.logs.push(Note::DevicePaused { desc }),
        UpgradeStatus::InProgress => {
            let next = match (report.phase, percent) {
                (Phase::Download, _) => DeviceStatus::Downloading,
                (Phase::Install, _) => DeviceStatus::Installing,
                // Alibaba and FogCloud report one number: 100 means the download is done.
                (Phase::Unspecified, Some(100)) => DeviceStatus::Installing,
                (Phase::Unspecified, _) => DeviceStatus::Downloading,
            };
            advance(rec, next, percent, &mut step);
        }
        UpgradeStatus::Ok => {
            rec.status = DeviceStatus::Installing;
            rec.percent = 100;
            step.detail = Some(Note::UpgradeDone {
                version: ctx.target_version.to_owned(),
            });
        }
        UpgradeStatus::Failed(failure) => {
            fail(
                rec,
                DeviceStatus::Failed,
                Note::DeviceFailed {
                    failure: failure.into(),
                    desc,
                },
                Some(failure.into()),
            );
        }
        UpgradeStatus::Rejected(failure) => {
            fail(
                rec,
                DeviceStatus::Rejected,
                Note::DeviceRejected {
                    failure: failure.into(),
                    desc,
                },
                Some(failure.into()),
            );
        }
        // Someone canceled on the device or dock: a refusal, so it is not retried either.
        UpgradeStatus::Canceled => {
            fail(
                rec,
                DeviceStatus::Rejected,
                Note::CanceledOnDevice { desc },
                None,
            );
        }
        UpgradeStatus::Timeout => {
            fail(
                rec,
                DeviceStatus::Failed,
                Note::DeviceTimeout { desc },
                None,
            );
        }
    }
    step
}

fn advance(rec: &mut TargetRecord, next: DeviceStatus, percent: Option<u8>, step: &mut Step) {
    let (current, next_rank) = (phase_rank(rec.status), phase_rank(next));
    if next_rank < current {
        step.logs.push(Note::BackwardReport {
            next,
            status: rec.status,
        });
    } else if next_rank == current {
        // Percent never goes backwards within a phase (reports can arrive out of order).
        rec.percent = rec.percent.max(percent.unwrap_or(0));
    } else {
        rec.status = next;
        rec.percent = percent.unwrap_or(0);
        step.detail = Some(Note::Phase {
            status: next,
            percent: rec.percent,
        });
    }
}

fn fail(rec: &mut TargetRecord, status: DeviceStatus, error: Note, code: Option<FailureCode>) {
    rec.status = status;
    rec.error = Some(error);
    rec.code = code;
    rec.deadline_at = None;
    rec.reply_wait = None;
}

/// Applies a version report for this device (module already matched).
pub(crate) fn on_version(rec: &mut TargetRecord, version: &str, ctx: &DeviceCtx<'_>) -> Step {
    if rec.attempts == 0 {
        // Not noticed in this campaign: this is the version we upgrade from. Even the target
        // version is not a success here (the version filter will skip the device).
        if rec.status == DeviceStatus::Pending && rec.from_version.as_deref() != Some(version) {
            rec.from_version = Some(version.to_owned());
        }
        return Step::default();
    }
    if matches!(
        rec.status,
        DeviceStatus::Succeeded | DeviceStatus::Skipped | DeviceStatus::Canceled
    ) {
        return Step::default();
    }
    if rec.to_version.as_deref() != Some(version) {
        rec.to_version = Some(version.to_owned());
    }
    // Not where a reply answers the notice: such devices (DJI docks) report versions
    // periodically, whatever became of the request, so only its reply or progress counts.
    let mut step = Step::default();
    if rec.status.in_flight() && reply_spec(rec).is_none() {
        if rec.status == DeviceStatus::Noticed
            && version != ctx.target_version
            && ctx.policy.ack_resends > 0
        {
            // It announces its old version without having acted on the notice: it has just
            // (re)connected, and SDKs that report before they subscribe lost what came before.
            // The notice goes again once it has settled, as the Alibaba platform re-sends a
            // pending notice to a device that comes online.
            let resends_left = rec.reply_wait.map_or(1, |w| w.resends_left.max(1));
            rec.reply_wait = Some(ReplyWait {
                deadline_at: ctx.now.plus_ms(ctx.policy.settle_ms.max(1)),
                resends_left,
            });
            step.logs.push(Note::VersionNotActedOn {
                version: version.to_owned(),
                ms: ctx.policy.settle_ms.max(1),
            });
        } else {
            // Progress or the target version answered the notice.
            rec.reply_wait = None;
        }
    }
    if version != ctx.target_version {
        return step;
    }
    let late = !rec.status.in_flight();
    let before = rec.status;
    rec.status = DeviceStatus::Succeeded;
    rec.percent = 100;
    rec.error = None;
    rec.code = None;
    rec.last_outcome = None;
    rec.deadline_at = None;
    rec.retry_at = None;
    rec.reply_wait = None;
    if late {
        Step::detail(Note::SucceededLate {
            version: version.to_owned(),
            before,
        })
    } else {
        Step::detail(Note::ReportedTarget {
            version: version.to_owned(),
        })
    }
}

/// The request/reply exchange of the device's dialect, when its notices are answered by reply.
fn reply_spec(rec: &TargetRecord) -> Option<&'static ReplySpec> {
    match &registry::capabilities(rec.device.dialect()).ack {
        Acknowledgement::ByReply(spec) => Some(spec),
        Acknowledgement::ByFirstReport => None,
    }
}

/// Applies a reply to our request (DJI `services_reply` to `ota_create`) already matched to
/// this device's task key.
pub(crate) fn on_reply(rec: &mut TargetRecord, reply: &ExchangeReply) -> Step {
    let Some(spec) = reply_spec(rec).filter(|spec| reply.request == spec.request) else {
        return Step::log(Note::ReplyIgnored {
            request: reply.request.to_string(),
        });
    };
    if !rec.status.in_flight() {
        return Step::log(Note::ReplyIgnoredStatus {
            request: spec.request.to_string(),
            result: reply.failure.as_ref().map_or(0, |f| f.code()),
            status: rec.status,
        });
    }
    rec.reply_wait = None;
    let Some(failure) = &reply.failure else {
        return Step::default();
    };
    // Re-sent because the first reply was late (or lost), and refused because an upgrade runs:
    // ours, sent the first time under the same key. Its progress is awaited; the device's
    // timeout still holds if the upgrade that runs is somebody else's.
    if rec.resends > 0 && spec.already_running == Some(failure.code()) {
        return Step::log(Note::RequestAlreadyRunning {
            request: spec.request.to_string(),
            failure: failure.into(),
        });
    }
    if matches!(reply.status, Some(UpgradeStatus::Rejected(_))) {
        fail(
            rec,
            DeviceStatus::Rejected,
            Note::RequestRejected {
                request: spec.request.to_string(),
                failure: failure.into(),
            },
            Some(failure.into()),
        );
    } else {
        // A non-zero result is usually a passing condition (aircraft flying, battery low): a
        // failure the retry policy may try again, not a refusal.
        fail(
            rec,
            DeviceStatus::Failed,
            Note::RequestRefused {
                request: spec.request.to_string(),
                failure: failure.into(),
            },
            Some(failure.into()),
        );
    }
    Step::default()
}

/// Fires whatever of this device's timers is due at `ctx.now`. `fresh_exchange` is called only
/// when a request answered by reply is re-sent and its dialect wants a fresh exchange id.
pub(crate) fn on_timer(
    rec: &mut TargetRecord,
    ctx: &DeviceCtx<'_>,
    fresh_exchange: &mut dyn FnMut() -> String,
) -> Step {
    if !rec.status.in_flight() {
        return Step::default();
    }
    if rec.deadline_at.is_some_and(|d| d <= ctx.now) {
        let secs = ctx.policy.device_timeout_secs;
        let error = if rec.percent == 100 && rec.status == DeviceStatus::Installing {
            Note::NoVersionAtFull {
                version: ctx.target_version.to_owned(),
                secs,
            }
        } else {
            Note::NoVersion {
                version: ctx.target_version.to_owned(),
                secs,
            }
        };
        fail(rec, DeviceStatus::TimedOut, error, None);
        return Step::default();
    }
    let Some(wait) = rec.reply_wait.filter(|w| w.deadline_at <= ctx.now) else {
        return Step::default();
    };
    let Some(spec) = reply_spec(rec) else {
        return resend_unanswered(rec, wait, ctx);
    };
    let (timeout_ms, resends) = (ctx.policy.reply_timeout_ms, ctx.policy.reply_resends);
    let sent = 1 + resends - wait.resends_left.min(resends);
    if wait.resends_left == 0 {
        fail(
            rec,
            DeviceStatus::Failed,
            Note::NoReply {
                request: spec.request.to_string(),
                sent,
                timeout_ms,
            },
            None,
        );
        return Step::default();
    }
    if spec.fresh_exchange_per_send {
        rec.task.exchange = Some(fresh_exchange());
    }
    rec.resends = rec.resends.saturating_add(1);
    rec.reply_wait = Some(ReplyWait {
        deadline_at: ctx.now.plus_ms(timeout_ms),
        resends_left: wait.resends_left - 1,
    });
    Step {
        logs: vec![Note::ReplyResent {
            request: spec.request.to_string(),
            timeout_ms,
            sent,
            resends,
        }],
        resend: true,
        ..Step::default()
    }
}

/// An Alibaba / FogCloud notice got no answer within its ack window: send the same notice again
/// (same attempt, same task_id) and wait `ack_backoff` times longer; after the last re-send only
/// the device timeout is left. Never fails the attempt by itself.
fn resend_unanswered(rec: &mut TargetRecord, wait: ReplyWait, ctx: &DeviceCtx<'_>) -> Step {
    if wait.resends_left == 0 {
        rec.reply_wait = None;
        return Step::default();
    }
    let total = ctx.policy.ack_resends.max(wait.resends_left);
    let done = total - wait.resends_left + 1;
    rec.resends = rec.resends.saturating_add(1);
    let next_ms = ctx.policy.ack_wait_ms(done);
    rec.reply_wait = (wait.resends_left > 1).then(|| ReplyWait {
        deadline_at: ctx.now.plus_ms(next_ms),
        resends_left: wait.resends_left - 1,
    });
    // The wait that ran out is not always the ack window (a settle or resume wait can be
    // shorter), so the log says what comes next rather than what was waited.
    let note = if wait.resends_left > 1 {
        Note::AckResent {
            left: wait.resends_left - 1,
            next_ms,
        }
    } else {
        Note::AckLastResent
    };
    Step {
        logs: vec![note],
        resend: true,
        ..Step::default()
    }
}

/// A `noticed` device's notice may not have arrived: it is re-sent at `due` unless answered
/// first. An ack wait already running is kept (its re-send comes when it runs out).
pub(crate) fn await_answer(rec: &mut TargetRecord, due: Timestamp) {
    if rec.status == DeviceStatus::Noticed && rec.reply_wait.is_none() {
        rec.reply_wait = Some(ReplyWait {
            deadline_at: due,
            resends_left: 1,
        });
    }
}

/// An Alibaba / FogCloud ack wait due before `not_before` is held until then (on resume: the
/// answers the broker kept for the console may still be on their way).
pub(crate) fn hold_ack_wait(rec: &mut TargetRecord, not_before: Timestamp) {
    if let Some(wait) = &mut rec.reply_wait
        && rec.status.in_flight()
    {
        wait.deadline_at = wait.deadline_at.max(not_before);
    }
}

/// Moves a device's deadline and DJI reply wait `ms` later: the console could not hear it for
/// that long (its broker link was down).
pub(crate) fn postpone(rec: &mut TargetRecord, ms: u64) {
    rec.deadline_at = rec.deadline_at.map(|t| t.plus_ms(ms));
    if let Some(wait) = &mut rec.reply_wait {
        wait.deadline_at = wait.deadline_at.plus_ms(ms);
    }
}

/// A failed or timed-out device with retries left goes back to pending, not before the retry
/// interval. Returns `None` when there is no retry left.
pub(crate) fn schedule_retry(rec: &mut TargetRecord, ctx: &DeviceCtx<'_>) -> Option<Step> {
    if !matches!(rec.status, DeviceStatus::Failed | DeviceStatus::TimedOut)
        || rec.retries_left(ctx.policy) == 0
    {
        return None;
    }
    let retry_at = ctx.now.plus_ms(ctx.policy.retry_interval_ms());
    rec.last_outcome = Some(rec.status);
    rec.status = DeviceStatus::Pending;
    rec.percent = 0;
    rec.deadline_at = None;
    rec.reply_wait = None;
    rec.retry_at = Some(retry_at);
    Some(Step::detail(Note::RetryAt {
        at_ms: retry_at.as_millis(),
        left: rec.retries_left(ctx.policy),
    }))
}

/// The campaign stopped (canceled or aborted) before this pending device got its next notice:
/// a device waiting for a retry ends as what it last was, a never-noticed one as canceled.
pub(crate) fn stop_pending(rec: &mut TargetRecord, reason: &Note) -> Step {
    if rec.status != DeviceStatus::Pending {
        return Step::default();
    }
    rec.retry_at = None;
    match rec.last_outcome.take() {
        Some(outcome) => {
            rec.status = outcome;
            Step::detail(Note::NoRetry {
                reason: Box::new(reason.clone()),
            })
        }
        None => {
            rec.status = DeviceStatus::Canceled;
            rec.error = Some(reason.clone());
            Step::detail(reason.clone())
        }
    }
}

/// The operator re-queues a failed or timed-out device with a fresh retry budget.
pub(crate) fn requeue(rec: &mut TargetRecord) -> Option<Step> {
    if !matches!(rec.status, DeviceStatus::Failed | DeviceStatus::TimedOut) {
        return None;
    }
    rec.last_outcome = Some(rec.status);
    rec.status = DeviceStatus::Pending;
    rec.round_start = rec.attempts;
    rec.percent = 0;
    rec.retry_at = None;
    rec.deadline_at = None;
    rec.reply_wait = None;
    Some(Step::detail(Note::RequeuedByOperator))
}

/// The notice of the current attempt never left (the publish failed): the device goes back to
/// pending without spending an attempt, and is tried again after the retry interval.
pub(crate) fn unsend(rec: &mut TargetRecord, error: &str, ctx: &DeviceCtx<'_>) -> Step {
    rec.attempts = rec.attempts.saturating_sub(1);
    rec.status = DeviceStatus::Pending;
    rec.percent = 0;
    rec.task = TaskRecord::default();
    rec.deadline_at = None;
    rec.reply_wait = None;
    rec.retry_at = Some(ctx.now.plus_ms(ctx.policy.retry_interval_ms()));
    rec.error = Some(Note::PublishFailed {
        error: Note::desc(Some(error)),
    });
    if rec.attempts == rec.round_start {
        rec.last_outcome = None;
    }
    Step::detail(Note::NotDelivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_id::DeviceId;
    use crate::protocol::TaskRef;

    fn ctx(policy: &Policy, now: u64) -> DeviceCtx<'_> {
        DeviceCtx {
            target_version: "2.0",
            policy,
            now: Timestamp::from_millis(now),
        }
    }

    fn noticed(policy: &Policy) -> TargetRecord {
        let mut rec =
            TargetRecord::new(DeviceId::aliyun("pk", "dn").unwrap(), 0, Some("1.0".into()));
        notice(&mut rec, TaskRecord::default(), &ctx(policy, 0));
        rec
    }

    fn progress(status: UpgradeStatus, phase: Phase, percent: Option<u8>) -> ProgressReport {
        ProgressReport {
            device: DeviceId::aliyun("pk", "dn").unwrap(),
            task: TaskRef::None,
            status,
            phase,
            percent,
            percent_clamped: false,
            desc: None,
            gateway: None,
        }
    }

    #[test]
    fn percent_and_phase_never_go_back() {
        let p = Policy::default();
        let mut rec = noticed(&p);
        on_progress(
            &mut rec,
            &progress(UpgradeStatus::InProgress, Phase::Download, Some(40)),
            &ctx(&p, 1),
        );
        assert_eq!((rec.status, rec.percent), (DeviceStatus::Downloading, 40));
        on_progress(
            &mut rec,
            &progress(UpgradeStatus::InProgress, Phase::Download, Some(30)),
            &ctx(&p, 2),
        );
        assert_eq!(rec.percent, 40);
        on_progress(
            &mut rec,
            &progress(UpgradeStatus::InProgress, Phase::Install, Some(5)),
            &ctx(&p, 3),
        );
        assert_eq!((rec.status, rec.percent), (DeviceStatus::Installing, 5));
        let step = on_progress(
            &mut rec,
            &progress(UpgradeStatus::InProgress, Phase::Download, Some(90)),
            &ctx(&p, 4),
        );
        assert_eq!((rec.status, rec.percent), (DeviceStatus::Installing, 5));
        assert_eq!(step.logs.len(), 1);
    }

    #[test]
    fn failure_keeps_reason_and_code() {
        let p = Policy::default();
        let mut rec = noticed(&p);
        let mut report = progress(
            UpgradeStatus::Failed(crate::protocol::aliyun::failure(-2)),
            Phase::Unspecified,
            None,
        );
        report.desc = Some("x".repeat(500));
        on_progress(&mut rec, &report, &ctx(&p, 1));
        assert_eq!(rec.status, DeviceStatus::Failed);
        assert_eq!(rec.code.map(|c| c.code), Some(-2));
        let error = rec.error.unwrap().to_string();
        assert!(error.starts_with("download failed: x"), "{error}");
        assert!(error.chars().count() < 250);
    }

    #[test]
    fn version_before_notice_is_only_the_from_version() {
        let p = Policy::default();
        let mut rec = TargetRecord::new(DeviceId::aliyun("pk", "dn").unwrap(), 0, None);
        on_version(&mut rec, "2.0", &ctx(&p, 1));
        assert_eq!(rec.status, DeviceStatus::Pending);
        assert_eq!(rec.from_version.as_deref(), Some("2.0"));
        assert_eq!(
            skip_reason(&rec, "2.0", &p).unwrap().to_string(),
            "already on the target version 2.0"
        );
    }

    #[test]
    fn retry_budget_runs_out() {
        let p = Policy {
            retries: 1,
            ..Policy::default()
        };
        let mut rec = noticed(&p);
        fail(&mut rec, DeviceStatus::Failed, "x".into(), None);
        assert!(schedule_retry(&mut rec, &ctx(&p, 10)).is_some());
        assert_eq!(rec.status, DeviceStatus::Pending);
        assert_eq!(rec.retry_at, Some(Timestamp::from_millis(10 + 60_000)));
        notice(&mut rec, TaskRecord::default(), &ctx(&p, 70_000));
        fail(&mut rec, DeviceStatus::TimedOut, "x".into(), None);
        assert!(schedule_retry(&mut rec, &ctx(&p, 80_000)).is_none());
        assert_eq!(rec.status, DeviceStatus::TimedOut);
        assert!(requeue(&mut rec).is_some());
        assert_eq!(rec.retries_left(&p), 2);
    }
}
