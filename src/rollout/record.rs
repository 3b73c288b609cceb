//! The durable shape of a campaign: statuses, the per-device record, the campaign's fixed spec
//! and the [`Transition`]s the state machine asks to persist. Everything here is plain data that
//! the store writes and reads back for [`super::Campaign::resume`]; no logic beyond naming.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::note::Note;
use super::policy::Policy;
pub use super::status::{CampaignState, DeviceStatus, FailureCode, UnknownName};
use super::{CampaignId, Timestamp};
use crate::device_id::{DeviceId, DialectId};
use crate::protocol::{FirmwareOffer, NoticeSetting, SettingValues, TaskRef, registry};

/// Why a notice setting's value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingRefused {
    /// Not one of the setting's choices.
    #[error(transparent)]
    Unknown(#[from] UnknownName),
    /// The dialect's check of a text setting, in its words.
    #[error("{0}")]
    Invalid(String),
}

/// How the device's current attempt is named towards it, as it is persisted: the task key the
/// dialect's [`crate::protocol::TaskKeySpec`] asked for (none when the device+module is the
/// task, or never noticed), and for a dialect answered by reply the exchange id of the latest
/// request sent (DJI: `bid` and `tid`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskRecord {
    pub key: Option<String>,
    pub exchange: Option<String>,
}

impl TaskRecord {
    /// A task named by `key` (and `exchange`, for a reply exchange).
    pub fn keyed(key: String, exchange: Option<String>) -> Self {
        TaskRecord {
            key: Some(key),
            exchange,
        }
    }

    /// The reference progress reports carry.
    pub fn task_ref(&self) -> TaskRef {
        self.key.clone().map_or(TaskRef::None, TaskRef::Key)
    }

    /// Whether reports naming `key` are about this task.
    pub fn has_key(&self, key: &str) -> bool {
        self.key.as_deref() == Some(key)
    }
}

/// A notice waits for its answer: a request answered by reply waits for the reply (or
/// progress); other notices for the first progress or version report (the ack window).
/// When `deadline_at` passes, the notice is re-sent while `resends_left > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyWait {
    pub deadline_at: Timestamp,
    pub resends_left: u32,
}

/// One device's row in a campaign: the state machine's whole memory of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRecord {
    /// Device with the campaign's module.
    pub device: DeviceId,
    /// Index in the campaign's target list (the order waves are cut in).
    pub position: u32,
    /// `None` until the campaign starts (and for devices skipped at start).
    pub wave: Option<u32>,
    pub status: DeviceStatus,
    /// The version before our first notice (latest known until then).
    pub from_version: Option<String>,
    /// The latest version the device reported after our notice.
    pub to_version: Option<String>,
    /// 0..=100 within the current phase (downloading / installing); never goes down within a
    /// phase of one attempt.
    pub percent: u8,
    /// Notices sent in this campaign (first notice and retries).
    pub attempts: u32,
    /// `attempts` when the current retry budget began (the operator's `RetryFailed` starts a
    /// new one).
    pub round_start: u32,
    /// Why it failed, was skipped or waits for a retry (worded when shown: `terms::notes`).
    pub error: Option<Note>,
    /// The device-side failure code, tagged with the dialect whose
    /// [`crate::protocol::ErrorTable`] gives its meaning.
    pub code: Option<FailureCode>,
    pub task: TaskRecord,
    /// Failed or TimedOut while waiting for a retry: what the device ends as if no retry comes.
    pub last_outcome: Option<DeviceStatus>,
    pub noticed_at: Option<Timestamp>,
    /// Our timeout for the current attempt.
    pub deadline_at: Option<Timestamp>,
    /// A pending device is not noticed before this.
    pub retry_at: Option<Timestamp>,
    pub reply_wait: Option<ReplyWait>,
    /// Notices re-sent in this campaign because none was answered in time (a request without
    /// its reply, a notice without progress or version report).
    pub resends: u32,
}

impl TargetRecord {
    /// A fresh, never-noticed record.
    pub fn new(device: DeviceId, position: u32, from_version: Option<String>) -> Self {
        Self {
            device,
            position,
            wave: None,
            status: DeviceStatus::Pending,
            from_version,
            to_version: None,
            percent: 0,
            attempts: 0,
            round_start: 0,
            error: None,
            code: None,
            task: TaskRecord::default(),
            last_outcome: None,
            noticed_at: None,
            deadline_at: None,
            retry_at: None,
            reply_wait: None,
            resends: 0,
        }
    }

    /// Notices left in the current retry budget.
    pub fn retries_left(&self, policy: &Policy) -> u32 {
        let used = self.attempts.saturating_sub(self.round_start);
        (1 + policy.retries).saturating_sub(used)
    }
}

/// The campaign's choices for each dialect's notice settings: dialect prefix → setting key →
/// choice value (`{"aliyun":{"sign_method":"sha256"}}`). What is not given takes the setting's
/// default. Campaigns stored before settings were per dialect (`{"sign_method":"Md5",
/// "dji_upgrade_type":"normal"}`) read through each setting's `legacy_key`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct DialectSettings(BTreeMap<String, SettingValues>);

impl DialectSettings {
    /// The values for notices of `dialect`.
    pub fn for_dialect(&self, dialect: DialectId) -> SettingValues {
        self.0.get(dialect.as_str()).cloned().unwrap_or_default()
    }

    /// The value of `setting` of `dialect` (its default when not chosen).
    pub fn value(&self, dialect: DialectId, setting: &NoticeSetting) -> &'static str {
        self.0
            .get(dialect.as_str())
            .map_or(setting.default, |values| values.value_of(setting))
    }

    /// The text of text `setting` of `dialect` (its default when not given).
    pub fn text(&self, dialect: DialectId, setting: &NoticeSetting) -> &str {
        self.0
            .get(dialect.as_str())
            .map_or(setting.default, |values| values.text_of(setting))
    }

    /// Chooses `value` for `setting` of `dialect`; refuses a value the setting does not offer,
    /// or a text its dialect's check refuses. An empty (or blank) text is the default.
    pub fn set(
        &mut self,
        dialect: DialectId,
        setting: &NoticeSetting,
        value: &str,
    ) -> Result<(), SettingRefused> {
        let value = match setting.text() {
            Some(_) if value.trim().is_empty() => {
                if let Some(values) = self.0.get_mut(dialect.as_str()) {
                    values.0.remove(setting.key);
                }
                return Ok(());
            }
            Some(text) => {
                (text.validate)(value).map_err(SettingRefused::Invalid)?;
                value
            }
            None => {
                setting
                    .choice(value)
                    .ok_or_else(|| UnknownName {
                        what: setting.key,
                        value: value.chars().take(40).collect(),
                    })?
                    .value
            }
        };
        self.0
            .entry(dialect.as_str().to_owned())
            .or_default()
            .0
            .insert(setting.key.to_owned(), value.to_owned());
        Ok(())
    }

    /// Reads today's form, or the flat form of older campaigns.
    fn from_json(value: serde_json::Value) -> Self {
        let serde_json::Value::Object(map) = value else {
            return Self::default();
        };
        let mut settings = Self::default();
        for dialect in registry::all() {
            let id = dialect.id();
            let own = map.get(id.as_str()).and_then(serde_json::Value::as_object);
            for setting in dialect.notice_settings() {
                let stored = own
                    .and_then(|o| o.get(setting.key))
                    .or_else(|| setting.legacy_key.and_then(|k| map.get(k)))
                    .and_then(serde_json::Value::as_str);
                if let Some(value) = stored {
                    // A value no longer offered falls back to the default, as if not chosen.
                    let _ = settings.set(id, setting, value);
                }
            }
        }
        settings
    }
}

impl<'de> Deserialize<'de> for DialectSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Self::from_json)
    }
}

/// What a campaign is, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub name: String,
    /// The package; `offer.version` is the target version and `offer.sha256` the package key.
    pub offer: FirmwareOffer,
    /// The module upgraded on every target (`None` = the default module).
    pub module: Option<String>,
    pub settings: DialectSettings,
    pub policy: Policy,
}

/// A device to include in a new campaign, with what the fleet knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub device: DeviceId,
    /// The module's current version, when known.
    pub version: Option<String>,
    /// Whether the device is connected now.
    pub online: bool,
    /// When this console last heard the device, `None` when it has not heard it since it
    /// started (a device only remembered from earlier runs). Devices heard most recently go
    /// into the canary and the early waves.
    pub heard_at: Option<Timestamp>,
}

/// Everything [`super::Campaign::resume`] needs, as the store loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistedCampaign {
    pub id: CampaignId,
    pub spec: CampaignSpec,
    pub state: CampaignState,
    /// The latest wave opened, `None` before the start.
    pub current_wave: Option<u32>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Ordered by position.
    pub devices: Vec<TargetRecord>,
}

/// A change the store must make durable before the actions that follow it go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub campaign: CampaignId,
    pub at: Timestamp,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A device changed status: write its row and a journal line `from -> record.status`.
    Device {
        from: DeviceStatus,
        record: TargetRecord,
        detail: Note,
    },
    /// A device's row changed without a status change (percent, wave, tid, timers): write the
    /// row only, no journal line.
    Update { record: TargetRecord },
    /// The campaign changed state or opened a wave: write the campaign row and a journal line
    /// (with no device).
    Campaign {
        from: CampaignState,
        to: CampaignState,
        current_wave: Option<u32>,
        detail: Note,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{aliyun, dji};

    #[test]
    fn dialect_settings_are_kept_per_dialect_and_read_in_the_old_flat_form() {
        let mut settings = DialectSettings::default();
        assert_eq!(settings.value(aliyun::ID, &aliyun::SIGN_METHOD), "md5");
        settings
            .set(aliyun::ID, &aliyun::SIGN_METHOD, "SHA256")
            .unwrap();
        settings
            .set(dji::ID, &dji::UPGRADE_TYPE, "Consistency")
            .unwrap();
        assert!(
            settings
                .set(dji::ID, &dji::UPGRADE_TYPE, "sideways")
                .is_err()
        );
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"aliyun": {"sign_method": "sha256"},
                               "dji": {"upgrade_type": "consistency"}})
        );
        let back: DialectSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, settings);
        // Campaigns stored before settings were per dialect.
        let old: DialectSettings = serde_json::from_value(
            serde_json::json!({"sign_method": "Sha256", "dji_upgrade_type": "consistency"}),
        )
        .unwrap();
        assert_eq!(old, settings);
        let defaults: DialectSettings =
            serde_json::from_value(serde_json::json!({"sign_method": "Md5"})).unwrap();
        assert_eq!(defaults.value(dji::ID, &dji::UPGRADE_TYPE), "normal");
        assert_eq!(
            defaults
                .for_dialect(aliyun::ID)
                .value_of(&aliyun::SIGN_METHOD),
            "md5"
        );
    }

    #[test]
    fn a_text_setting_is_checked_stored_and_read_back_as_typed() {
        use crate::protocol::aws;
        let template = "{\n  \"fw\": \"{{url}}\", \"n\": {{size}}\n}";
        let mut settings = DialectSettings::default();
        assert_eq!(settings.text(aws::ID, &aws::DOCUMENT), "");
        settings.set(aws::ID, &aws::DOCUMENT, template).unwrap();
        assert_eq!(settings.text(aws::ID, &aws::DOCUMENT), template);
        // Refused in the dialect's words; the accepted text stays.
        let refused = settings
            .set(aws::ID, &aws::DOCUMENT, "{\"v\": {{version}}}")
            .unwrap_err();
        assert!(matches!(&refused, SettingRefused::Invalid(e) if e.contains("line 1")));
        assert_eq!(settings.text(aws::ID, &aws::DOCUMENT), template);
        // Stored with the campaign and read back the same (a resumed campaign sends it).
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["aws"]["document"], template);
        let back: DialectSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, settings);
        assert_eq!(back.for_dialect(aws::ID).text_of(&aws::DOCUMENT), template);
        // Empty is the built-in document again.
        settings.set(aws::ID, &aws::DOCUMENT, " ").unwrap();
        assert_eq!(settings.text(aws::ID, &aws::DOCUMENT), "");
        assert_eq!(settings.value(aws::ID, &aws::SUCCESS), "version");
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for st in DeviceStatus::ALL {
            assert_eq!(st.as_str().parse::<DeviceStatus>().unwrap(), st);
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        for st in CampaignState::ALL {
            assert_eq!(st.as_str().parse::<CampaignState>().unwrap(), st);
            assert_eq!(
                serde_json::to_string(&st).unwrap(),
                format!("\"{}\"", st.as_str())
            );
        }
        assert!("done".parse::<DeviceStatus>().is_err());
    }

    #[test]
    fn terminal_and_in_flight_partition_the_statuses() {
        for st in DeviceStatus::ALL {
            let kinds = [
                st == DeviceStatus::Pending,
                st.in_flight(),
                st.is_terminal(),
            ];
            assert_eq!(kinds.iter().filter(|k| **k).count(), 1, "{st}");
        }
    }
}
