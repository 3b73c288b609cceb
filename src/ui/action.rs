//! What the operator asked for while a frame was drawn. Panels push `UiAction`s instead of
//! acting, and the app applies them after drawing: the engine is only reached between frames,
//! and a panel never holds the engine handle.

use std::path::PathBuf;

use super::profiles::{ConnectTarget, Secret};
use crate::engine::CampaignRequest;
use crate::rollout::CampaignId;

/// What Connect asks for (made by the connection dialog, carried by [`UiAction::Connect`]).
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub target: ConnectTarget,
    /// Typed in the form; `None` = use the one remembered for the profile, if any.
    pub password: Option<Secret>,
}

#[derive(Debug)]
pub enum UiAction {
    /// Show the native file dialog (on a background thread).
    OpenFileDialog,
    /// Hash and store this file (dialog, drop, or the app's own import function).
    ImportFirmware(PathBuf),
    CancelImport,
    StartCampaign(Box<CampaignRequest>),
    Pause(CampaignId),
    Resume(CampaignId),
    Cancel(CampaignId),
    RetryFailed(CampaignId),
    AdvanceWave(CampaignId),
    DismissAlerts,
    /// Drop the window's own notices (the toasts).
    DismissNotices,
    /// Ask where to save, then write the report (on a background thread).
    ExportReport {
        campaign: CampaignId,
        format: ReportFormat,
    },
    /// Save the inspector's current messages as JSON lines.
    ExportMessages,
    /// Save the site CA's certificate (created on first use), for provisioning devices that
    /// connect over TLS.
    ExportSiteCa,
    /// Restart the engine on another broker (connection dialog).
    Connect(Box<ConnectRequest>),
    /// A profile was deleted: drop its password from the keyring (on a background thread).
    ForgetPassword(String),
    /// Start the demo's story (`--demo` only).
    DemoStart,
    /// Tell the demo's story again from fresh devices (`--demo` only).
    DemoReplay,
}

/// Which report file the operator asked for (see `crate::report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Csv,
}

impl ReportFormat {
    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Json => "json",
            ReportFormat::Csv => "csv",
        }
    }
}
