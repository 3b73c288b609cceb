//! The campaign's [`Note`]s in words of the language in force (`locales/rollout.toml`): a
//! note is worded each time it is shown, so the window's language switch rewords every failure
//! and alert already on screen, and a stored note reads in today's language after a restart.
//! A failure code is worded by its dialect's error table ([`super::dialect::describe`]); a
//! device's own text and a pre-typed stored sentence ([`Note::Text`]) show as they are.

use std::fmt;

use crate::i18n::tr;
use crate::protocol::registry;
use crate::rollout::note::{Command, ForeignKey, Note};
use crate::rollout::status::FailureCode;

use super::states::{campaign_state, device_status};

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&words(self))
    }
}

/// What the failure's dialect says its code means.
fn failure(code: &FailureCode) -> String {
    super::dialect::describe(
        code.dialect,
        registry::get(code.dialect).errors(),
        code.code,
    )
}

/// `base` followed by the device's own text, when it sent one.
fn with_desc(base: String, desc: Option<&String>) -> String {
    match desc {
        Some(desc) => tr!("note.with_desc", base = base, desc = desc),
        None => base,
    }
}

fn command(c: Command) -> String {
    match c {
        Command::Start => tr!("note.command.start"),
        Command::Pause => tr!("note.command.pause"),
        Command::Resume => tr!("note.command.resume"),
        Command::Cancel => tr!("note.command.cancel"),
        Command::AdvanceWave => tr!("note.command.advance_wave"),
        Command::RetryFailed => tr!("note.command.retry_failed"),
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.1}", ms as f64 / 1000.0)
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per note: the whole vocabulary of the campaign in one place"
)]
fn words(note: &Note) -> String {
    match note {
        Note::Text { text } => text.clone(),
        Note::StatusChange { from, to } => tr!(
            "note.status_change",
            from = device_status(*from),
            to = device_status(*to)
        ),
        Note::AlreadyOnTarget { version } => tr!("note.already_on_target", version = version),
        Note::NotFromVersions { version, versions } => tr!(
            "note.not_from_versions",
            version = version,
            versions = versions.join(", ")
        ),
        Note::Skipped { reason } => tr!("note.skipped", reason = words(reason)),
        Note::NoticeSent { attempt } => tr!("note.notice_sent", attempt = attempt),
        Note::NoticeSentAgain {
            attempt,
            retry,
            retries,
        } => tr!(
            "note.notice_sent_again",
            attempt = attempt,
            retry = retry,
            retries = retries
        ),
        Note::ProgressIgnored { status } => {
            tr!("note.progress_ignored", status = device_status(*status))
        }
        Note::PercentClamped => tr!("note.percent_clamped"),
        Note::DevicePaused { desc } => with_desc(tr!("note.device_paused"), desc.as_ref()),
        Note::UpgradeDone { version } => tr!("note.upgrade_done", version = version),
        Note::DeviceFailed {
            failure: code,
            desc,
        } => with_desc(failure(code), desc.as_ref()),
        Note::DeviceRejected {
            failure: code,
            desc,
        } => with_desc(
            tr!("note.device_rejected", why = failure(code)),
            desc.as_ref(),
        ),
        Note::CanceledOnDevice { desc } => with_desc(tr!("note.canceled_on_device"), desc.as_ref()),
        Note::DeviceTimeout { desc } => with_desc(tr!("note.device_timeout"), desc.as_ref()),
        Note::BackwardReport { next, status } => tr!(
            "note.backward_report",
            next = device_status(*next),
            status = device_status(*status)
        ),
        Note::Phase { status, percent } => {
            tr!(
                "note.phase",
                status = device_status(*status),
                percent = percent
            )
        }
        Note::VersionNotActedOn { version, ms } => {
            tr!("note.version_not_acted_on", version = version, ms = ms)
        }
        Note::SucceededLate { version, before } => tr!(
            "note.succeeded_late",
            version = version,
            before = device_status(*before)
        ),
        Note::ReportedTarget { version } => tr!("note.reported_target", version = version),
        Note::ReplyIgnored { request } => {
            tr!("note.reply_ignored", request = format!("{request:?}"))
        }
        Note::ReplyIgnoredStatus {
            request,
            result,
            status,
        } => tr!(
            "note.reply_ignored_status",
            request = request,
            result = result,
            status = device_status(*status)
        ),
        Note::RequestRejected {
            request,
            failure: code,
        } => tr!(
            "note.request_rejected",
            request = request,
            why = failure(code)
        ),
        Note::RequestRefused {
            request,
            failure: code,
        } => tr!(
            "note.request_refused",
            request = request,
            why = failure(code)
        ),
        Note::RequestAlreadyRunning {
            request,
            failure: code,
        } => tr!(
            "note.request_already_running",
            request = request,
            why = failure(code)
        ),
        Note::NoVersionAtFull { version, secs } => {
            tr!("note.no_version_at_full", version = version, secs = secs)
        }
        Note::NoVersion { version, secs } => {
            tr!("note.no_version", version = version, secs = secs)
        }
        Note::NoReply {
            request,
            sent,
            timeout_ms,
        } => tr!(
            "note.no_reply",
            request = request,
            sent = sent,
            ms = timeout_ms
        ),
        Note::ReplyResent {
            request,
            timeout_ms,
            sent,
            resends,
        } => tr!(
            "note.reply_resent",
            request = request,
            ms = timeout_ms,
            sent = sent,
            resends = resends
        ),
        Note::AckResent { left, next_ms } => {
            tr!("note.ack_resent", left = left, next = seconds(*next_ms))
        }
        Note::AckLastResent => tr!("note.ack_last_resent"),
        Note::RetryAt { at_ms, left } => tr!("note.retry_at", at = at_ms, left = left),
        Note::NoRetry { reason } => tr!("note.no_retry", reason = words(reason)),
        Note::RequeuedByOperator => tr!("note.requeued_by_operator"),
        Note::PublishFailed { error } => with_desc(tr!("note.publish_failed"), error.as_ref()),
        Note::NotDelivered => tr!("note.not_delivered"),
        Note::BackOnline => tr!("note.back_online"),
        Note::EarlierAttemptKey { key } => tr!("note.earlier_attempt_key", key = key),
        Note::ForeignGateway { key, from } => {
            tr!("note.foreign_gateway", key = key, device = from)
        }
        Note::ForeignKey { key, why } => {
            let key = format!("{key:?}");
            match why {
                ForeignKey::AnotherDevice => tr!("note.key_of_another_device", key = key),
                ForeignKey::EarlierAttempt => tr!("note.key_of_earlier_attempt", key = key),
                ForeignKey::NotIssued => tr!("note.key_not_issued", key = key),
            }
        }
        Note::PublishFailedReplyWait { request, error } => tr!(
            "note.publish_failed_reply_wait",
            request = request,
            why = error
        ),
        Note::NothingPending { status } => {
            tr!("note.nothing_pending", status = device_status(*status))
        }
        Note::NothingPendingYet => tr!("note.nothing_pending_yet"),
        Note::Started { devices, waves } => {
            let waves = waves
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            tr!("note.started", devices = devices, waves = waves)
        }
        Note::WaveGateMet {
            wave,
            succeeded,
            eligible,
            threshold,
        } => tr!(
            "note.wave_gate_met",
            wave = wave,
            succeeded = succeeded,
            eligible = eligible,
            threshold = threshold
        ),
        Note::WaveBlocked {
            wave,
            succeeded,
            eligible,
            threshold,
        } => tr!(
            "note.wave_blocked",
            wave = wave,
            succeeded = succeeded,
            eligible = eligible,
            threshold = threshold
        ),
        Note::WaveOpened { wave, total, why } => tr!(
            "note.wave_opened",
            wave = wave,
            total = total,
            why = words(why)
        ),
        Note::AdvancedByOperator => tr!("note.advanced_by_operator"),
        Note::EveryWaveOpen => tr!("note.every_wave_open"),
        Note::PausedByOperator => tr!("note.paused_by_operator"),
        Note::ResumedByOperator => tr!("note.resumed_by_operator"),
        Note::CanceledByOperator => tr!("note.canceled_by_operator"),
        Note::Aborted {
            failures,
            judged,
            percent,
        } => tr!(
            "note.aborted",
            failures = failures,
            judged = judged,
            percent = percent
        ),
        Note::Completed {
            succeeded,
            failed,
            skipped,
        } => tr!(
            "note.completed",
            succeeded = succeeded,
            failed = failed,
            skipped = skipped
        ),
        Note::NothingToRetry => tr!("note.nothing_to_retry"),
        Note::FailedRequeued { count } => tr!("note.failed_requeued", count = count),
        Note::FailedOrTimedOutRequeued { count } => {
            tr!("note.failed_or_timed_out_requeued", count = count)
        }
        Note::Refused { command: c, state } => tr!(
            "note.refused",
            command = command(*c),
            state = campaign_state(*state)
        ),
        Note::MaybeLost { count, ms } => tr!("note.maybe_lost", count = count, ms = ms),
        Note::MaybeLostResent { count } => tr!("note.maybe_lost_resent", count = count),
        Note::BrokerDown => tr!("note.broker_down"),
        Note::BrokerBack { outage_ms, count } => tr!(
            "note.broker_back",
            outage = seconds(*outage_ms),
            count = count
        ),
        Note::UrlMoved { from, to } => tr!("note.url_moved", from = from, to = to),
    }
}
