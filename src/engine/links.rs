//! Keeping each live campaign's download links in step with its state (granted while it runs,
//! revoked when it finishes), and the link each device is told. The links themselves are
//! [`super::io::Io`]'s; which campaigns have per-device links is [`Downloads`].

use super::downloads::Downloads;
use super::runner::Runner;
use super::snapshot::AlertLevel;
use crate::device_id::DeviceId;

impl Runner {
    /// Grants or revokes campaign `idx`'s links after its state changed.
    pub(super) fn sync_downloads(&mut self, idx: usize) {
        let Some(live) = self.live.get(idx) else {
            return;
        };
        let finished = live.campaign.state().is_finished();
        let id = live.campaign.id();
        match live.downloads {
            Downloads::PerDevice { granted: true } if finished => {
                self.io.revoke(id.0);
                self.set_granted(idx, false);
            }
            Downloads::PerDevice { granted: false } if !finished => {
                let granted = self.io.load_download_key().and_then(|()| {
                    self.io
                        .grant_downloads(&self.live[idx].campaign, |sha| self.library.get(sha))
                });
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
        match live.downloads {
            Downloads::PerDevice { .. } => self.io.device_url(&live.campaign, device),
            Downloads::AsOffered => None,
        }
    }
}
