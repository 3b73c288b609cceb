//! What the UI and the commands ask the engine to do. Sent over a bounded channel; outcomes show
//! in the snapshot (and, for callers that wait, through the optional reply channel).

use std::path::PathBuf;

use tokio::sync::oneshot;

use super::error::CommandError;
use crate::device_id::DeviceId;
use crate::firmware::StoredPackage;
use crate::rollout::{CampaignId, DialectSettings, Policy};

/// A new campaign, as the operator described it.
#[derive(Debug, Clone)]
pub struct CampaignRequest {
    /// Shown in the history; empty = derived from file and version.
    pub name: String,
    /// A package already imported (its SHA-256).
    pub package_sha256: String,
    /// Target version the devices must report.
    pub version: String,
    /// Module to upgrade (`None` = default module).
    pub module: Option<String>,
    /// Free text sent with the notice where the dialect carries a description
    /// ([`crate::protocol::OfferField::Description`]).
    pub description: String,
    pub targets: Vec<DeviceId>,
    pub policy: Policy,
    pub settings: DialectSettings,
    /// An existing URL that serves this package, announced to devices instead of a link on the
    /// embedded firmware server (`None` = the engine's own server or its `--url`). Checked by
    /// [`super::validate_download_url`].
    pub download_url: Option<String>,
}

/// The engine's reply to a caller that waits.
pub type Reply<T> = oneshot::Sender<Result<T, CommandError>>;

#[derive(Debug)]
pub enum Command {
    /// Hash the file and copy it into the package store (progress in `Snapshot::import`).
    ImportFirmware {
        path: PathBuf,
        reply: Option<Reply<StoredPackage>>,
    },
    /// Stop the import under way, if any.
    CancelImport,
    StartCampaign {
        request: Box<CampaignRequest>,
        reply: Option<Reply<CampaignId>>,
    },
    /// Continue a campaign that was running when the console stopped.
    ResumeCampaign {
        id: CampaignId,
        reply: Option<Reply<CampaignId>>,
    },
    Pause(CampaignId),
    Resume(CampaignId),
    Cancel(CampaignId),
    RetryFailed(CampaignId),
    AdvanceWave(CampaignId),
    /// Forget the alerts shown so far.
    DismissAlerts,
    Shutdown,
}
