//! The errors the engine hands to the window and the CLI, typed so that callers branch on what
//! happened (a port in use, an offer this server cannot serve), never on the words.
//!
//! Owns: [`EngineError`] (what an [`super::EngineHandle`] call returns), [`StartError`] (why
//! [`super::start`] failed), [`CommandError`] (why the engine refused a command) and
//! [`DownloadsError`] (why a campaign's downloads cannot be served). Each `Display` is the
//! sentence the operator reads (the same words the engine used before these types existed:
//! alerts and tests compare them).
//!
//! Why no `#[source]`/`#[from]` here: every message already ends with its cause's words, and
//! the CLI prints errors with `{:#}` (the whole source chain), which would repeat them. Callers
//! reach the cause through the variant instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::download_url::DownloadUrlError;
use super::session_id::SessionIdError;
use crate::access::credentials::CredentialsError;
use crate::device_id::{DeviceId, DeviceIdError};
use crate::firmware::FirmwareError;
use crate::i18n::{self, tr};
use crate::rollout::{CampaignId, RolloutError};
use crate::store::StoreError;
use crate::transport::broker::BrokerError;
use crate::transport::download_token::DownloadKeyError;
use crate::transport::http::{HttpError, OfferUrl};
use crate::transport::mqtt::{LinkError, LinkState};

/// What a call on an [`super::EngineHandle`] or [`super::start`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{}", tr!("engine.busy"))]
    Busy,
    #[error("{}", tr!("engine.stopped"))]
    Stopped,
    #[error("{0}")]
    Refused(CommandError),
    /// Boxed: start-up errors are large and rare.
    #[error("{}", tr!("engine.cannot_start", why = _0))]
    Start(Box<StartError>),
}

impl From<StartError> for EngineError {
    fn from(e: StartError) -> Self {
        EngineError::Start(Box::new(e))
    }
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{}", tr!("engine.data_dir", path = path.display(), why = i18n::io_error(error)))]
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The database (its own message names the file).
    #[error("{0}")]
    Store(StoreError),
    /// The persistent MQTT session's client id.
    #[error("{0}")]
    Session(SessionIdError),
    /// The console's login to its embedded broker.
    #[error("{0}")]
    Credentials(CredentialsError),
    /// The embedded broker (e.g. [`BrokerError::AddrInUse`]).
    #[error("{0}")]
    Broker(BrokerError),
    /// The MQTT link's options.
    #[error("{0}")]
    Link(LinkError),
    /// The embedded firmware server (e.g. [`HttpError::AddrInUse`], a bad public base).
    #[error("{0}")]
    Http(HttpError),
    #[error("{}", tr!("engine.embedded_link_failed", state = link_state_words(_0)))]
    EmbeddedLinkFailed(LinkState),
    #[error("{}", tr!("engine.link_stopped"))]
    EmbeddedLinkStopped,
    #[error("{}", tr!("engine.link_timeout", waited = humantime::format_duration(*_0)))]
    EmbeddedLinkTimeout(Duration),
}

impl StartError {
    /// The address that was already in use, when that is why the engine did not start (the
    /// embedded broker's or the firmware server's port).
    pub fn port_in_use(&self) -> Option<SocketAddr> {
        match self {
            StartError::Broker(BrokerError::AddrInUse { addr, .. }) => Some(*addr),
            StartError::Http(HttpError::AddrInUse(addr)) => Some(*addr),
            _ => None,
        }
    }
}

/// Why the engine refused a command (also shown as an alert).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{}", tr!("engine.import_running"))]
    ImportRunning,
    #[error("{}", tr!("engine.import_canceled"))]
    ImportCanceled,
    #[error("{}", tr!("engine.import", file = file.display(), why = error))]
    Import { file: PathBuf, error: FirmwareError },
    /// The bytes are stored, but without a row nothing offers or serves them.
    #[error("{}", tr!("engine.import_not_recorded", file = file.display(), why = error))]
    ImportNotRecorded { file: PathBuf, error: StoreError },
    #[error("{}", tr!("engine.cannot_start_rollout", why = _0))]
    UnknownPackage(FirmwareError),
    #[error("{}", tr!("engine.package_not_recorded", why = _0))]
    PackageNotRecorded(StoreError),
    #[error("{}", tr!("engine.no_targets"))]
    NoTargets,
    #[error("{}", tr!("engine.cannot_start_rollout", why = _0))]
    BadModule(DeviceIdError),
    /// Another console on the broker drives a campaign of this name (`rollout::lock`).
    #[error("{}", held_text(.key, .holder))]
    CampaignHeld {
        key: String,
        holder: crate::rollout::lock::Holder,
    },
    /// The claim of the campaign's name could not be queued for the broker (`rollout::lock`).
    #[error("{}", tr!("engine.claim_not_sent", key = format!("{key:?}"), why = why))]
    ClaimNotSent { key: String, why: String },
    #[error("{}", tr!("engine.target_busy", device = device, campaign = campaign))]
    TargetBusy {
        device: DeviceId,
        campaign: CampaignId,
    },
    #[error("{}", tr!("engine.cannot_start_rollout", why = _0))]
    BadDownloadUrl(DownloadUrlError),
    #[error("{}", tr!("engine.no_firmware_source"))]
    NoFirmwareSource,
    #[error("{}", tr!("engine.cannot_start_rollout", why = _0))]
    NotRecorded(StoreError),
    #[error("{}", tr!("engine.cannot_start_rollout", why = _0))]
    Rollout(RolloutError),
    #[error("{}", tr!("engine.cannot_start_rollout", why = _0))]
    Downloads(DownloadsError),
    #[error("{}", tr!("engine.cannot_resume", campaign = campaign, why = error))]
    NotStored {
        campaign: CampaignId,
        error: StoreError,
    },
    #[error("{}", tr!("engine.cannot_resume", campaign = campaign, why = error))]
    NotResumable {
        campaign: CampaignId,
        error: RolloutError,
    },
    /// A resumed campaign's devices were told links this firmware server cannot serve again.
    #[error("{}", tr!("engine.serve_again", why = error))]
    ServeAgain {
        campaign: CampaignId,
        error: DownloadsError,
    },
    #[error("{}", tr!("engine.broker_failed", why = reason))]
    BrokerFailed { reason: String },
    #[error("{}", tr!("engine.broker_unreachable", waited = humantime::format_duration(*waited), why = why))]
    BrokerUnreachable { waited: Duration, why: String },
}

impl CommandError {
    /// The stored offer link that this console's firmware server cannot serve, when that is why
    /// a campaign did not resume (its devices were told another address than this server's).
    pub fn offer_not_servable(&self) -> Option<&OfferUrl> {
        match self {
            CommandError::ServeAgain {
                error: DownloadsError::NotServable { told, .. },
                ..
            } => Some(told),
            _ => None,
        }
    }
}

/// A link state in words (never a debug dump: the operator reads it).
pub fn link_state_words(state: &LinkState) -> String {
    match state {
        LinkState::Connecting => tr!("engine.link.connecting"),
        LinkState::Connected => tr!("engine.link.connected"),
        LinkState::Reconnecting {
            reason, attempt, ..
        } => tr!("engine.link.reconnecting", why = reason, attempt = attempt),
        LinkState::Failed { reason } => reason.clone(),
    }
}

/// Why a campaign's per-device download links cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DownloadsError {
    #[error("{}", tr!("engine.no_server"))]
    NoServer,
    #[error("{0}")]
    Key(DownloadKeyError),
    #[error("{}", tr!("engine.not_our_link", url = _0))]
    NotOurLink(String),
    #[error("{}", tr!("engine.package_gone", why = _0))]
    PackageGone(FirmwareError),
    /// The link is ours in shape but names another public base or file (the server's message
    /// names the link).
    #[error("{error}")]
    NotServable {
        told: Box<OfferUrl>,
        error: Box<HttpError>,
    },
}

/// The alert when a campaign this console drove was taken over by another console while this
/// one was cut off from the broker (its Will cleared its claim).
pub(super) fn taken_over_text(key: &str, holder: &crate::rollout::lock::Holder) -> String {
    tr!("engine.campaign_taken_over", who = holder_text(key, holder))
}

/// The sentence both faces show when another console holds a campaign (the CLI's exit message,
/// the window's alert).
fn held_text(key: &str, holder: &crate::rollout::lock::Holder) -> String {
    tr!("engine.campaign_held", who = holder_text(key, holder))
}

/// Who holds campaign `key`, where, since when.
fn holder_text(key: &str, holder: &crate::rollout::lock::Holder) -> String {
    let who = &holder.console;
    let since = std::time::UNIX_EPOCH + Duration::from_millis(holder.since);
    let since = humantime::format_rfc3339_seconds(since).to_string();
    let campaign = format!("{key:?}");
    if who.user.is_empty() {
        tr!(
            "engine.campaign_holder",
            campaign = campaign,
            console = who.console,
            host = who.host,
            pid = who.pid,
            since = since
        )
    } else {
        tr!(
            "engine.campaign_holder_user",
            campaign = campaign,
            console = who.console,
            host = who.host,
            user = who.user,
            pid = who.pid,
            since = since
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINK: &str = "http://10.0.0.2:8080/fw/0123456789abcdef0123456789abcdef/fw.bin";

    fn foreign(url: &str) -> HttpError {
        HttpError::ForeignUrl {
            url: url.to_owned(),
            base: "http://127.0.0.1:9".into(),
            file: "fw.bin".into(),
        }
    }

    #[test]
    fn a_port_in_use_is_known_by_its_variant_not_its_words() {
        let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let broker = StartError::Broker(BrokerError::AddrInUse { addr, port: 1883 });
        let http = StartError::Http(HttpError::AddrInUse(addr));
        assert_eq!(broker.port_in_use(), Some(addr));
        assert_eq!(http.port_in_use(), Some(addr));
        assert_eq!(
            EngineError::Start(Box::new(http)).to_string(),
            format!(
                "cannot start: cannot start the firmware HTTP server: {addr} is already in use; \
                 choose another port (port 0 picks a free one)"
            )
        );
        // Other failures are not, whatever their words say.
        let other = StartError::Http(HttpError::PublicBase("already in use".into()));
        assert_eq!(other.port_in_use(), None);
        assert_eq!(StartError::EmbeddedLinkStopped.port_in_use(), None);
    }

    #[test]
    fn an_offer_not_servable_carries_the_link_told() {
        let told = OfferUrl::parse(LINK).unwrap();
        let refused = CommandError::ServeAgain {
            campaign: CampaignId(7),
            error: DownloadsError::NotServable {
                told: Box::new(told.clone()),
                error: Box::new(foreign(LINK)),
            },
        };
        assert_eq!(refused.offer_not_servable(), Some(&told));
        assert!(
            refused
                .to_string()
                .starts_with(&format!("cannot serve the package again: URL {LINK:?}")),
            "{refused}"
        );
        // Naming the link in its words is not enough.
        let named = CommandError::ServeAgain {
            campaign: CampaignId(7),
            error: DownloadsError::NotOurLink(LINK.into()),
        };
        assert_eq!(named.offer_not_servable(), None);
    }

    #[test]
    fn messages_keep_their_words() {
        let cases = [
            (
                CommandError::NoTargets.to_string(),
                "cannot start the rollout: no target devices selected",
            ),
            (
                CommandError::NoFirmwareSource.to_string(),
                "cannot start the rollout: no firmware server and no --url",
            ),
            (
                CommandError::ImportRunning.to_string(),
                "an import is already running; wait for it or cancel it",
            ),
            (CommandError::ImportCanceled.to_string(), "import canceled"),
            (
                CommandError::BrokerFailed {
                    reason: "refused".into(),
                }
                .to_string(),
                "cannot connect to the broker: refused",
            ),
            (
                CommandError::BrokerUnreachable {
                    waited: Duration::from_secs(10),
                    why: "the broker did not answer".into(),
                }
                .to_string(),
                "no connection to the broker after 10s: the broker did not answer",
            ),
            (
                CommandError::Downloads(DownloadsError::NoServer).to_string(),
                "cannot start the rollout: no firmware server to serve the per-device download \
                 links",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
