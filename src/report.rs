//! Campaign reports: the JSON and CSV files `ota-console rollout --report` writes and the window
//! exports, in one shape: `campaign` (id, package digests, version, policy, times, state) and
//! `devices` (one object per target device). A JSON report written by `rollout` adds `traffic`:
//! what the console exchanged with devices while it ran ([`TrafficSummary`]).

use crate::i18n::tr;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::engine::{CampaignView, Traffic};
use crate::rollout::{CampaignState, Counts, DeviceStatus, Policy, Timestamp};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}", tr!("error.report.io", path = path, why = crate::i18n::io_error(cause)))]
    Io { path: String, cause: std::io::Error },
    #[error("{}", tr!("error.report.encode", why = _0))]
    Encode(String),
    #[error("{}", tr!("error.report.unknown_format", path = _0))]
    UnknownFormat(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct PackageSummary {
    pub file_name: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
    pub checksum: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CampaignSummary {
    pub id: i64,
    pub name: String,
    pub package: PackageSummary,
    pub version: String,
    pub module: Option<String>,
    pub policy: Policy,
    pub state: CampaignState,
    pub counts: Counts,
    /// Milliseconds since the Unix epoch.
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceLine {
    pub id: String,
    pub status: DeviceStatus,
    pub from_version: Option<String>,
    pub to_version: Option<String>,
    pub percent: u8,
    pub attempts: u32,
    /// Notices re-sent for want of an answer (ack window, reply wait).
    pub resends: u32,
    pub error: Option<String>,
    pub code: Option<i64>,
}

/// The console's message counters over its whole run, for checking that nothing was lost
/// between the devices and the console (compare with what the devices sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TrafficSummary {
    /// Device messages taken in.
    pub received: u64,
    /// Progress reports among them, one per device a message reports on.
    pub progress: u64,
    /// Messages published: notices, answers and replies.
    pub published: u64,
    /// Messages the link could not take (outgoing queue full): lost unless sent again.
    pub not_sent: u64,
    /// Campaign notices among them (first sends, retries, re-sends).
    pub notices: u64,
    /// Messages refused by the decoders.
    pub rejected: u64,
}

impl From<Traffic> for TrafficSummary {
    fn from(t: Traffic) -> Self {
        TrafficSummary {
            received: t.received,
            progress: t.progress,
            published: t.published,
            not_sent: t.not_sent,
            notices: t.notices,
            rejected: t.rejected,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub campaign: CampaignSummary,
    pub devices: Vec<DeviceLine>,
    /// The console's counters, when the report is written by the process that ran the campaign
    /// (`rollout`); not in CSV.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficSummary>,
}

impl Report {
    pub fn from_view(view: &CampaignView) -> Self {
        let snap = &view.snapshot;
        let offer = &view.spec.offer;
        Report {
            campaign: CampaignSummary {
                id: snap.id.0,
                name: snap.name.clone(),
                package: PackageSummary {
                    file_name: offer.file_name.clone(),
                    size: offer.size,
                    md5: offer.md5.clone(),
                    sha256: offer.sha256.clone(),
                    checksum: offer.checksum.clone(),
                    url: offer.url.clone(),
                },
                version: snap.target_version.clone(),
                module: snap.module.clone(),
                policy: view.spec.policy.clone(),
                state: snap.state,
                counts: snap.counts,
                created_at: snap.created_at,
                started_at: snap.started_at,
                finished_at: snap.finished_at,
            },
            devices: snap
                .devices
                .iter()
                .map(|d| DeviceLine {
                    id: d.id.to_string(),
                    status: d.status,
                    from_version: d.from_version.clone(),
                    to_version: d.to_version.clone(),
                    percent: d.percent,
                    attempts: d.attempts,
                    resends: d.resends,
                    // Reports stay English (README, "Languages").
                    error: d.error.as_ref().map(crate::rollout::Note::english),
                    code: d.code,
                })
                .collect(),
            traffic: None,
        }
    }

    /// The report with the console's counters.
    pub fn with_traffic(mut self, traffic: Traffic) -> Self {
        self.traffic = Some(traffic.into());
        self
    }

    pub fn to_json(&self) -> Result<String, ReportError> {
        serde_json::to_string_pretty(self).map_err(|e| ReportError::Encode(e.to_string()))
    }

    /// One line per device; the campaign's id and target version repeated on each line so the
    /// file stands alone in a spreadsheet.
    pub fn to_csv(&self) -> Result<String, ReportError> {
        let mut out = csv::Writer::from_writer(Vec::new());
        let encode = |e: csv::Error| ReportError::Encode(e.to_string());
        out.write_record([
            "campaign",
            "target_version",
            "id",
            "status",
            "from_version",
            "to_version",
            "percent",
            "attempts",
            "error",
            "code",
            "resends",
        ])
        .map_err(encode)?;
        for d in &self.devices {
            out.write_record([
                self.campaign.id.to_string(),
                self.campaign.version.clone(),
                d.id.clone(),
                d.status.as_str().to_owned(),
                d.from_version.clone().unwrap_or_default(),
                d.to_version.clone().unwrap_or_default(),
                d.percent.to_string(),
                d.attempts.to_string(),
                d.error.clone().unwrap_or_default(),
                d.code.map(|c| c.to_string()).unwrap_or_default(),
                d.resends.to_string(),
            ])
            .map_err(encode)?;
        }
        let bytes = out
            .into_inner()
            .map_err(|e| ReportError::Encode(e.to_string()))?;
        String::from_utf8(bytes).map_err(|e| ReportError::Encode(e.to_string()))
    }

    /// Writes JSON or CSV by the file's extension, atomically (temp file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => self.to_json()?,
            Some(ext) if ext.eq_ignore_ascii_case("csv") => self.to_csv()?,
            _ => return Err(ReportError::UnknownFormat(path.display().to_string())),
        };
        let io = |cause| ReportError::Io {
            path: path.display().to_string(),
            cause,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        temp.write_all(text.as_bytes()).map_err(io)?;
        temp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}
