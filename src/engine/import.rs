//! Firmware import: hashing and copying into the package store on a blocking thread, with
//! progress reported to the engine loop (throttled) and cancellation.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::command::Reply;
use super::error::CommandError;
use super::runner::Runner;
use super::snapshot::{AlertLevel, ImportProgress};
use crate::firmware::{CancelToken, FirmwareError, StoredPackage};

/// Import progress is reported at most this often (the UI redraws on each report).
const IMPORT_PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

pub(super) struct ImportJob {
    pub(super) cancel: CancelToken,
    pub(super) progress: ImportProgress,
    reply: Option<Reply<StoredPackage>>,
}

pub(super) enum ImportEvent {
    Progress { done: u64, total: u64 },
    Done(Result<StoredPackage, FirmwareError>),
}

impl Runner {
    pub(super) fn start_import(&mut self, path: PathBuf, reply: Option<Reply<StoredPackage>>) {
        if self.import.is_some() {
            let refused = CommandError::ImportRunning;
            self.alert(AlertLevel::Warning, refused.to_string());
            if let Some(reply) = reply {
                let _ = reply.send(Err(refused));
            }
            return;
        }
        let cancel = CancelToken::new();
        self.import = Some(ImportJob {
            cancel: cancel.clone(),
            progress: ImportProgress {
                file: path.clone(),
                done_bytes: 0,
                total_bytes: 0,
            },
            reply,
        });
        self.dirty = true;
        let store = self.packages.clone();
        let tx = self.import_tx.clone();
        tokio::task::spawn_blocking(move || {
            let mut last = Instant::now();
            let mut progress = |done: u64, total: u64| {
                if last.elapsed() >= IMPORT_PROGRESS_INTERVAL || done == total {
                    last = Instant::now();
                    // Dropped when the engine is behind: the next one carries newer numbers.
                    let _ = tx.try_send(ImportEvent::Progress { done, total });
                }
            };
            let result = store.import(&path, &mut progress, &cancel);
            let _ = tx.blocking_send(ImportEvent::Done(result));
        });
    }

    pub(super) fn on_import_event(&mut self, event: ImportEvent) {
        match event {
            ImportEvent::Progress { done, total } => {
                if let Some(job) = &mut self.import {
                    job.progress.done_bytes = done;
                    job.progress.total_bytes = total;
                    self.dirty = true;
                }
            }
            ImportEvent::Done(result) => self.finish_import(result),
        }
    }

    fn finish_import(&mut self, result: Result<StoredPackage, FirmwareError>) {
        let Some(job) = self.import.take() else {
            return;
        };
        let result = match result {
            Ok(stored) => match self.save_package(&stored) {
                Ok(()) => {
                    self.library
                        .retain(|p| p.package.sha256 != stored.package.sha256);
                    self.library.insert(0, stored.clone());
                    self.alert(
                        AlertLevel::Info,
                        format!(
                            "imported {} ({} bytes, sha256 {})",
                            stored.package.file_name, stored.package.size, stored.package.sha256
                        ),
                    );
                    Ok(stored)
                }
                // The bytes are stored, but without a row nothing offers or serves them.
                Err(error) => Err(CommandError::ImportNotRecorded {
                    file: job.progress.file.clone(),
                    error,
                }),
            },
            Err(FirmwareError::Canceled) => Err(CommandError::ImportCanceled),
            Err(error) => Err(CommandError::Import {
                file: job.progress.file.clone(),
                error,
            }),
        };
        if let Err(e) = &result {
            self.alert(AlertLevel::Error, e.to_string());
        }
        if let Some(reply) = job.reply {
            let _ = reply.send(result);
        }
        self.dirty = true;
    }
}

/// Capacity of the import event channel (progress is throttled, so this is plenty).
pub(super) const IMPORT_CHANNEL: usize = 64;

pub(super) fn channel() -> (mpsc::Sender<ImportEvent>, mpsc::Receiver<ImportEvent>) {
    mpsc::channel(IMPORT_CHANNEL)
}
