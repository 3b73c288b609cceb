//! What the campaign says, as data: a device's failure or skip reason, a journal line, a log
//! line or an alert about the campaign. A [`Note`] is a typed code with its parameters, never
//! a sentence, so it is worded when it is shown, in the language the reader has then (the
//! window may switch language at run time; a row stored before a restart shows in today's).
//!
//! Owns: [`Note`] and its stored form ([`Note::to_stored`], [`Note::from_stored`]: a JSON
//! object in the `error` and `detail` columns), the words that are data inside it (a device's
//! own `desc`, bounded). Its wording (`Display`, `locales/rollout.toml`) lives in
//! `terms::notes`: the state machine stays free of words. Rows written before notes were typed
//! hold an English sentence; they read back as [`Note::Text`] and show as they were written.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::status::{CampaignState, DeviceStatus, FailureCode};

/// A device's own text (`desc`) is untrusted and may be long: kept readable and bounded.
const MAX_DESC_CHARS: usize = 200;

/// An operator's command the campaign may refuse in its current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Start,
    Pause,
    Resume,
    Cancel,
    AdvanceWave,
    RetryFailed,
}

/// Why a progress report naming a task key was not this device's current attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForeignKey {
    AnotherDevice,
    EarlierAttempt,
    NotIssued,
}

/// One thing the campaign says. Versions, task keys, request names (`ota_create`), device ids
/// and a device's `desc` are data and show as they are in every language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// A sentence as it was written: rows stored before notes were typed, and an error text
    /// worded elsewhere (the link's, when a publish failed).
    Text {
        text: String,
    },
    // --- a device's journal, failure and skip reasons ---
    StatusChange {
        from: DeviceStatus,
        to: DeviceStatus,
    },
    AlreadyOnTarget {
        version: String,
    },
    NotFromVersions {
        version: String,
        versions: Vec<String>,
    },
    Skipped {
        reason: Box<Note>,
    },
    NoticeSent {
        attempt: u32,
    },
    NoticeSentAgain {
        attempt: u32,
        retry: u32,
        retries: u32,
    },
    ProgressIgnored {
        status: DeviceStatus,
    },
    PercentClamped,
    DevicePaused {
        desc: Option<String>,
    },
    UpgradeDone {
        version: String,
    },
    DeviceFailed {
        failure: FailureCode,
        desc: Option<String>,
    },
    DeviceRejected {
        failure: FailureCode,
        desc: Option<String>,
    },
    CanceledOnDevice {
        desc: Option<String>,
    },
    DeviceTimeout {
        desc: Option<String>,
    },
    BackwardReport {
        next: DeviceStatus,
        status: DeviceStatus,
    },
    Phase {
        status: DeviceStatus,
        percent: u8,
    },
    VersionNotActedOn {
        version: String,
        ms: u64,
    },
    SucceededLate {
        version: String,
        before: DeviceStatus,
    },
    ReportedTarget {
        version: String,
    },
    ReplyIgnored {
        request: String,
    },
    ReplyIgnoredStatus {
        request: String,
        result: i64,
        status: DeviceStatus,
    },
    RequestRejected {
        request: String,
        failure: FailureCode,
    },
    RequestRefused {
        request: String,
        failure: FailureCode,
    },
    /// A re-sent request answered "already upgrading": the earlier send is running.
    RequestAlreadyRunning {
        request: String,
        failure: FailureCode,
    },
    NoVersionAtFull {
        version: String,
        secs: u64,
    },
    NoVersion {
        version: String,
        secs: u64,
    },
    NoReply {
        request: String,
        sent: u32,
        timeout_ms: u64,
    },
    ReplyResent {
        request: String,
        timeout_ms: u64,
        sent: u32,
        resends: u32,
    },
    AckResent {
        left: u32,
        next_ms: u64,
    },
    AckLastResent,
    RetryAt {
        at_ms: u64,
        left: u32,
    },
    NoRetry {
        reason: Box<Note>,
    },
    RequeuedByOperator,
    PublishFailed {
        error: Option<String>,
    },
    NotDelivered,
    BackOnline,
    EarlierAttemptKey {
        key: String,
    },
    ForeignGateway {
        key: String,
        from: String,
    },
    ForeignKey {
        key: String,
        why: ForeignKey,
    },
    PublishFailedReplyWait {
        request: String,
        error: String,
    },
    NothingPending {
        status: DeviceStatus,
    },
    NothingPendingYet,
    // --- the campaign's journal, logs and alerts ---
    Started {
        devices: usize,
        waves: Vec<usize>,
    },
    WaveGateMet {
        wave: u32,
        succeeded: usize,
        eligible: usize,
        threshold: u8,
    },
    WaveBlocked {
        wave: u32,
        succeeded: usize,
        eligible: usize,
        threshold: u8,
    },
    WaveOpened {
        wave: u32,
        total: usize,
        why: Box<Note>,
    },
    AdvancedByOperator,
    EveryWaveOpen,
    PausedByOperator,
    ResumedByOperator,
    CanceledByOperator,
    Aborted {
        failures: usize,
        judged: usize,
        percent: u8,
    },
    Completed {
        succeeded: usize,
        failed: usize,
        skipped: usize,
    },
    NothingToRetry,
    FailedRequeued {
        count: usize,
    },
    FailedOrTimedOutRequeued {
        count: usize,
    },
    Refused {
        command: Command,
        state: CampaignState,
    },
    MaybeLost {
        count: usize,
        ms: u64,
    },
    MaybeLostResent {
        count: usize,
    },
    BrokerDown,
    BrokerBack {
        outage_ms: u64,
        count: usize,
    },
    UrlMoved {
        from: String,
        to: String,
    },
}

impl Note {
    /// A device's own text, trimmed, cut at [`MAX_DESC_CHARS`] (with `…`), `None` when empty.
    pub fn desc(desc: Option<&str>) -> Option<String> {
        let d = desc.map(str::trim).filter(|d| !d.is_empty())?;
        Some(if d.chars().count() > MAX_DESC_CHARS {
            let mut cut: String = d.chars().take(MAX_DESC_CHARS).collect();
            cut.push('…');
            cut
        } else {
            d.to_owned()
        })
    }

    /// The form the store keeps (a JSON object), read back by [`Note::from_stored`].
    pub fn to_stored(&self) -> String {
        // A derived `Serialize` of strings, numbers and enums cannot fail; should it ever, the
        // row keeps a sentence rather than nothing.
        serde_json::to_string(self).unwrap_or_else(|_| format!("{self:?}"))
    }

    /// A stored note; a sentence stored before notes were typed is [`Note::Text`].
    pub fn from_stored(stored: &str) -> Note {
        if stored.starts_with("{\"note\":")
            && let Ok(note) = serde_json::from_str(stored)
        {
            return note;
        }
        Note::Text {
            text: stored.to_owned(),
        }
    }

    /// Its words in English, whatever the language in force: reports and JSON output, which
    /// stay English (README, "Languages").
    pub fn english(&self) -> String {
        crate::i18n::in_english(|| self.to_string())
    }
}

impl From<String> for Note {
    fn from(text: String) -> Self {
        Note::Text { text }
    }
}

impl From<&str> for Note {
    fn from(text: &str) -> Self {
        Note::Text {
            text: text.to_owned(),
        }
    }
}

/// `DeviceSnapshot::error` in JSON: the note's English sentence, as before notes were typed (a
/// JSON reader gets a sentence, not a code).
pub fn serialize_english<S: Serializer>(note: &Option<Note>, s: S) -> Result<S::Ok, S::Error> {
    match note {
        Some(note) => s.serialize_some(&note.english()),
        None => s.serialize_none(),
    }
}

/// The sentence [`serialize_english`] wrote, as a [`Note::Text`].
pub fn deserialize_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Note>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Note::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::aliyun;

    #[test]
    fn a_stored_note_reads_back_and_an_old_sentence_stays_a_sentence() {
        let note = Note::Skipped {
            reason: Box::new(Note::NotFromVersions {
                version: "1.5".into(),
                versions: vec!["1.0".into(), "1.1".into()],
            }),
        };
        assert_eq!(Note::from_stored(&note.to_stored()), note);
        let failed = Note::DeviceFailed {
            failure: FailureCode {
                dialect: aliyun::ID,
                code: -2,
            },
            desc: Some("{\"note\":\"x\"}".into()),
        };
        assert_eq!(Note::from_stored(&failed.to_stored()), failed);
        let old = "no report of version 2.0 within 30 s of the notice";
        assert_eq!(Note::from_stored(old), Note::Text { text: old.into() });
        // A device text shaped like a stored note is still only a text.
        assert_eq!(
            Note::from_stored("{\"note\":\"nonsense\"}"),
            Note::Text {
                text: "{\"note\":\"nonsense\"}".into()
            }
        );
    }

    #[test]
    fn a_device_text_is_bounded() {
        assert_eq!(Note::desc(Some("  ")), None);
        assert_eq!(
            Note::desc(Some(" low battery ")).as_deref(),
            Some("low battery")
        );
        let long = "x".repeat(MAX_DESC_CHARS + 10);
        let cut = Note::desc(Some(&long)).unwrap();
        assert_eq!(cut.chars().count(), MAX_DESC_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
