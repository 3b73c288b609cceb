//! The per-device download links of campaigns served by the embedded firmware server.
//!
//! Owns: deciding which campaigns get per-device links (those whose link the embedded server
//! made: not an operator's `--url` or download URL, which are sent unchanged), deriving each
//! device's link for its notices (`transport::download_token`), and keeping the server's grant
//! in step with the campaign: granted when it starts, is resumed or runs again (retry after
//! completion), revoked when it completes, is aborted or canceled. The rollout state machine
//! knows nothing of this: the link reaches the notice through `NoticeRoute::download_url`.

use std::path::PathBuf;

use super::error::DownloadsError;
use super::live::Downloads;
use super::runner::Runner;
use super::snapshot::AlertLevel;
use crate::device_id::DeviceId;
use crate::rollout::Campaign;
use crate::transport::download_token::DownloadKey;
use crate::transport::http::{DownloadGrant, OfferUrl};

/// The data directory's link key, read (or made) when the first campaign needs it: a console
/// that never rolls anything out through its own server writes no key.
pub(super) struct KeySlot {
    data_dir: PathBuf,
    key: Option<DownloadKey>,
}

impl KeySlot {
    pub(super) fn new(data_dir: PathBuf) -> KeySlot {
        KeySlot {
            data_dir,
            key: None,
        }
    }

    fn load(&mut self) -> Result<(), DownloadsError> {
        if self.key.is_none() {
            // Made once per data directory: links given before a restart are the same after.
            let key = DownloadKey::load_or_create(&self.data_dir).map_err(DownloadsError::Key)?;
            self.key = Some(key);
        }
        Ok(())
    }
}

impl Runner {
    /// Serves `campaign`'s package to each of its targets under the target's own token.
    /// Refused (with the server's reason) when its link is not one this server can serve.
    /// Needs [`Runner::load_download_key`] first.
    pub(super) fn grant_downloads(&self, campaign: &Campaign) -> Result<(), DownloadsError> {
        let key = self
            .download_key
            .as_ref()
            .and_then(|slot| slot.key.as_ref());
        let (Some(http), Some(key)) = (&self.http, key) else {
            return Err(DownloadsError::NoServer);
        };
        let spec = campaign.spec();
        let id = campaign.id().0;
        let told = OfferUrl::parse(&spec.offer.url)
            .ok_or_else(|| DownloadsError::NotOurLink(spec.offer.url.clone()))?;
        let stored = self
            .packages
            .get(&spec.offer.sha256)
            .map_err(DownloadsError::PackageGone)?;
        let devices = campaign
            .devices()
            .iter()
            .map(|rec| {
                let device = rec.device.to_string();
                (key.device_token(id, told.token(), &device), device)
            })
            .collect();
        http.grant(DownloadGrant {
            campaign: id,
            campaign_url: spec.offer.url.clone(),
            file_path: stored.path.clone(),
            file_name: stored.package.file_name.clone(),
            package_key: stored.package.sha256.clone(),
            devices,
        })
        .map_err(|error| DownloadsError::NotServable {
            told: Box::new(told),
            error: Box::new(error),
        })
    }

    /// Reads (or makes) the link key, once.
    pub(super) fn load_download_key(&mut self) -> Result<(), DownloadsError> {
        match &mut self.download_key {
            Some(slot) => slot.load(),
            None => Err(DownloadsError::NoServer),
        }
    }

    /// Grants or revokes campaign `idx`'s links after its state changed.
    pub(super) fn sync_downloads(&mut self, idx: usize) {
        let Some(live) = self.live.get(idx) else {
            return;
        };
        let finished = live.campaign.state().is_finished();
        let id = live.campaign.id();
        match live.downloads {
            Downloads::PerDevice { granted: true } if finished => {
                if let Some(http) = &self.http {
                    http.revoke(id.0);
                }
                self.set_granted(idx, false);
            }
            Downloads::PerDevice { granted: false } if !finished => {
                let granted = self
                    .load_download_key()
                    .and_then(|()| self.grant_downloads(&self.live[idx].campaign));
                match granted {
                    Ok(()) => self.set_granted(idx, true),
                    Err(e) => self.alert(
                        AlertLevel::Error,
                        format!("campaign {id}: devices cannot download: {e}"),
                    ),
                }
            }
            _ => {}
        }
    }

    fn set_granted(&mut self, idx: usize, granted: bool) {
        if let Some(live) = self.live.get_mut(idx) {
            live.downloads = Downloads::PerDevice { granted };
        }
    }

    /// The link `device` is told in campaign `idx`'s notices: its own link, or `None` for the
    /// offer's URL as it is.
    pub(super) fn download_url_for(&self, idx: usize, device: &DeviceId) -> Option<String> {
        let live = self.live.get(idx)?;
        let key = self.download_key.as_ref()?.key.as_ref()?;
        match live.downloads {
            Downloads::PerDevice { .. } => {
                let told = OfferUrl::parse(&live.campaign.spec().offer.url)?;
                let own = key.device_url(live.campaign.id().0, &told, &device.to_string());
                Some(own.to_string())
            }
            Downloads::AsOffered => None,
        }
    }
}
