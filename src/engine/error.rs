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
use crate::rollout::{CampaignId, RolloutError};
use crate::store::StoreError;
use crate::transport::broker::BrokerError;
use crate::transport::download_token::DownloadKeyError;
use crate::transport::http::{HttpError, OfferUrl};
use crate::transport::mqtt::{LinkError, LinkState};

/// What a call on an [`super::EngineHandle`] or [`super::start`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is busy (command queue full); try again")]
    Busy,
    #[error("the engine has stopped")]
    Stopped,
    #[error("{0}")]
    Refused(CommandError),
    /// Boxed: start-up errors are large and rare.
    #[error("cannot start: {0}")]
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
    #[error("cannot create the data directory {}: {error}", path.display())]
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
    #[error("cannot connect to the embedded broker: {0:?}")]
    EmbeddedLinkFailed(LinkState),
    #[error("the MQTT link stopped during start-up")]
    EmbeddedLinkStopped,
    #[error("the embedded broker did not accept our subscriptions within {0:?}")]
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
    #[error("an import is already running; wait for it or cancel it")]
    ImportRunning,
    #[error("import canceled")]
    ImportCanceled,
    #[error("cannot import {}: {error}", file.display())]
    Import { file: PathBuf, error: FirmwareError },
    /// The bytes are stored, but without a row nothing offers or serves them.
    #[error("cannot import {}: cannot record the package in the database: {error}", file.display())]
    ImportNotRecorded { file: PathBuf, error: StoreError },
    #[error("cannot start the rollout: {0}")]
    UnknownPackage(FirmwareError),
    #[error("cannot record the package in the database: {0}")]
    PackageNotRecorded(StoreError),
    #[error("cannot start the rollout: no target devices selected")]
    NoTargets,
    #[error("cannot start the rollout: {0}")]
    BadModule(DeviceIdError),
    /// Another console on the broker drives a campaign of this name (`rollout::lock`).
    #[error("{}", held_text(.key, .holder))]
    CampaignHeld {
        key: String,
        holder: crate::rollout::lock::Holder,
    },
    /// The claim of the campaign's name could not be queued for the broker (`rollout::lock`).
    #[error(
        "cannot start the rollout: the claim of campaign {key:?} could not be sent to the broker: {why}"
    )]
    ClaimNotSent { key: String, why: String },
    #[error("cannot start the rollout: {device} is already in campaign {campaign}")]
    TargetBusy {
        device: DeviceId,
        campaign: CampaignId,
    },
    #[error("cannot start the rollout: {0}")]
    BadDownloadUrl(DownloadUrlError),
    #[error("cannot start the rollout: no firmware server and no --url")]
    NoFirmwareSource,
    #[error("cannot start the rollout: {0}")]
    NotRecorded(StoreError),
    #[error("cannot start the rollout: {0}")]
    Rollout(RolloutError),
    #[error("cannot start the rollout: {0}")]
    Downloads(DownloadsError),
    #[error("cannot resume campaign {campaign}: {error}")]
    NotStored {
        campaign: CampaignId,
        error: StoreError,
    },
    #[error("cannot resume campaign {campaign}: {error}")]
    NotResumable {
        campaign: CampaignId,
        error: RolloutError,
    },
    /// A resumed campaign's devices were told links this firmware server cannot serve again.
    #[error("cannot serve the package again: {error}")]
    ServeAgain {
        campaign: CampaignId,
        error: DownloadsError,
    },
    #[error("cannot connect to the broker: {reason}")]
    BrokerFailed { reason: String },
    #[error("no connection to the broker after {}: {why}", humantime::format_duration(*waited))]
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

/// Why a campaign's per-device download links cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum DownloadsError {
    #[error("no firmware server to serve the per-device download links")]
    NoServer,
    #[error("{0}")]
    Key(DownloadKeyError),
    #[error("cannot serve the package: {0} is not a link of this firmware server")]
    NotOurLink(String),
    #[error("the package is gone from the store: {0}")]
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
    format!(
        "{}: this console was cut off from the broker meanwhile, and stopped driving it",
        holder_text(key, holder)
    )
}

/// The sentence both faces show when another console holds a campaign (the CLI's exit message,
/// the window's alert).
fn held_text(key: &str, holder: &crate::rollout::lock::Holder) -> String {
    format!(
        "{}; it drives the campaign, this console does not",
        holder_text(key, holder)
    )
}

/// Who holds campaign `key`, where, since when.
fn holder_text(key: &str, holder: &crate::rollout::lock::Holder) -> String {
    let who = &holder.console;
    let since = std::time::UNIX_EPOCH + Duration::from_millis(holder.since);
    let user = if who.user.is_empty() {
        String::new()
    } else {
        format!("user {}, ", who.user)
    };
    format!(
        "campaign {key:?} is held by console {} on host {} ({user}pid {}) since {}",
        who.console,
        who.host,
        who.pid,
        humantime::format_rfc3339_seconds(since)
    )
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
