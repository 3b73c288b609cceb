//! The per-device download links of campaigns served by the embedded firmware server: the
//! value types. [`super::io::Io`] grants, revokes and derives the links; the campaign set keeps
//! each campaign's [`Downloads`] in step with its state.
//!
//! Owns: deciding which campaigns get per-device links (those whose link the embedded server
//! made: not an operator's `--url` or download URL, which are sent unchanged), and the data
//! directory's link key (read or made once, when the first campaign needs it). The server's
//! grant follows the campaign: granted when it starts, is resumed or runs again (retry after
//! completion), revoked when it completes, is aborted or canceled. The rollout state machine
//! knows nothing of this: the link reaches the notice through `NoticeRoute::download_url`.

use std::path::PathBuf;

use super::error::DownloadsError;
use crate::transport::download_token::DownloadKey;

/// Where a live campaign's devices download from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Downloads {
    /// The offer's URL, sent unchanged (an operator-given URL).
    #[default]
    AsOffered,
    /// Each device its own link on the embedded firmware server; `granted`: the server
    /// accepts them now (the campaign is not finished).
    PerDevice { granted: bool },
}

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

    /// Reads (or makes) the key, once.
    pub(super) fn load(&mut self) -> Result<(), DownloadsError> {
        if self.key.is_none() {
            // Made once per data directory: links given before a restart are the same after.
            let key = DownloadKey::load_or_create(&self.data_dir).map_err(DownloadsError::Key)?;
            self.key = Some(key);
        }
        Ok(())
    }

    /// The key, once loaded.
    pub(super) fn key(&self) -> Option<&DownloadKey> {
        self.key.as_ref()
    }
}
