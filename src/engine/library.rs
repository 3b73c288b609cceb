//! The package library: the content-addressed package store, the packages the database knows
//! (newest first), and the one import under way — hashing and copying on a blocking thread,
//! with progress reported to the engine loop (throttled) and cancellation.
//!
//! Rules it keeps: one import at a time (a second is refused while one runs); a package joins
//! the library only once its row is in the database (bytes without a row are offered and served
//! by nothing); the library holds each package once, the newest import first.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::alerts::Alerts;
use super::command::Reply;
use super::error::CommandError;
use super::snapshot::{AlertLevel, ImportProgress};
use crate::firmware::{CancelToken, FirmwareError, FirmwareStore, StoredPackage};
use crate::i18n::tr;
use crate::rollout::Timestamp;
use crate::store::{PackageRecord, Store, StoreError};

/// Import progress is reported at most this often (the UI redraws on each report).
const IMPORT_PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

struct ImportJob {
    cancel: CancelToken,
    progress: ImportProgress,
    reply: Option<Reply<StoredPackage>>,
}

pub(super) enum ImportEvent {
    Progress { done: u64, total: u64 },
    Done(Result<StoredPackage, FirmwareError>),
}

pub(super) struct Library {
    packages: FirmwareStore,
    /// Newest first.
    list: Vec<StoredPackage>,
    import: Option<ImportJob>,
    import_tx: mpsc::Sender<ImportEvent>,
}

impl Library {
    /// An empty library over `packages`; import events go to `import_tx`.
    pub(super) fn new(packages: FirmwareStore, import_tx: mpsc::Sender<ImportEvent>) -> Library {
        Library {
            packages,
            list: Vec::new(),
            import: None,
            import_tx,
        }
    }

    /// Loads the packages the database lists and the store still holds, newest first.
    pub(super) fn restore(&mut self, store: &Store) -> Result<(), StoreError> {
        let records = store.list_packages()?;
        let mut library: Vec<(Timestamp, StoredPackage)> = records
            .into_iter()
            .filter_map(|r| {
                let at = r.imported_at;
                self.packages.get(&r.sha256).ok().map(|p| (at, p))
            })
            .collect();
        library.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        self.list = library.into_iter().map(|(_, p)| p).collect();
        Ok(())
    }

    /// The stored package with this SHA-256.
    pub(super) fn get(&self, sha256: &str) -> Result<StoredPackage, FirmwareError> {
        self.packages.get(sha256)
    }

    /// Starts importing `path`; refused (the reply handed back) while another import runs.
    pub(super) fn start_import(
        &mut self,
        path: PathBuf,
        reply: Option<Reply<StoredPackage>>,
    ) -> Result<(), Option<Reply<StoredPackage>>> {
        if self.import.is_some() {
            return Err(reply);
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
        Ok(())
    }

    pub(super) fn cancel_import(&self) {
        if let Some(job) = &self.import {
            job.cancel.cancel();
        }
    }

    /// Takes in what the import thread reported; a finished import is recorded in `store`
    /// (at `now`), told to the operator and to whoever asked for it. Returns whether what the
    /// snapshot shows changed.
    pub(super) fn on_event(
        &mut self,
        event: ImportEvent,
        store: &mut Store,
        now: Timestamp,
        alerts: &mut Alerts,
        now_ms: i64,
    ) -> bool {
        match event {
            ImportEvent::Progress { done, total } => match &mut self.import {
                Some(job) => {
                    job.progress.done_bytes = done;
                    job.progress.total_bytes = total;
                    true
                }
                None => false,
            },
            ImportEvent::Done(result) => self.finish_import(result, store, now, alerts, now_ms),
        }
    }

    fn finish_import(
        &mut self,
        result: Result<StoredPackage, FirmwareError>,
        store: &mut Store,
        now: Timestamp,
        alerts: &mut Alerts,
        now_ms: i64,
    ) -> bool {
        let Some(job) = self.import.take() else {
            return false;
        };
        let result = match result {
            Ok(stored) => match save_package(store, &stored, now) {
                Ok(()) => {
                    self.list
                        .retain(|p| p.package.sha256 != stored.package.sha256);
                    self.list.insert(0, stored.clone());
                    alerts.push(
                        AlertLevel::Info,
                        tr!(
                            "engine.alert.imported",
                            file = stored.package.file_name,
                            size = stored.package.size,
                            sha256 = stored.package.sha256
                        ),
                        now_ms,
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
            // A caller waiting for the reply reports the failure itself: logging it here too
            // would say it twice on the CLI's terminal.
            if job.reply.is_some() {
                alerts.keep(AlertLevel::Error, e.to_string(), now_ms);
            } else {
                alerts.push(AlertLevel::Error, e.to_string(), now_ms);
            }
        }
        if let Some(reply) = job.reply {
            let _ = reply.send(result);
        }
        true
    }

    /// The packages, newest first (for the snapshot).
    pub(super) fn packages(&self) -> &[StoredPackage] {
        &self.list
    }

    /// The import under way (for the snapshot).
    pub(super) fn import_progress(&self) -> Option<&ImportProgress> {
        self.import.as_ref().map(|j| &j.progress)
    }
}

/// Records `stored` in the database's package table (imported `now`).
pub(super) fn save_package(
    store: &mut Store,
    stored: &StoredPackage,
    now: Timestamp,
) -> Result<(), StoreError> {
    let record = PackageRecord {
        sha256: stored.package.sha256.clone(),
        file_name: stored.package.file_name.clone(),
        size: stored.package.size,
        md5: stored.package.md5.clone(),
        checksum: stored.package.checksum.clone(),
        store_path: stored.path.clone(),
        imported_at: now,
    };
    store.save_package(&record).map(|_| ())
}

/// Capacity of the import event channel (progress is throttled, so this is plenty).
pub(super) const IMPORT_CHANNEL: usize = 64;

pub(super) fn channel() -> (mpsc::Sender<ImportEvent>, mpsc::Receiver<ImportEvent>) {
    mpsc::channel(IMPORT_CHANNEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the import's events to the library until the import is done.
    async fn run_to_completion(
        library: &mut Library,
        rx: &mut mpsc::Receiver<ImportEvent>,
        store: &mut Store,
        alerts: &mut Alerts,
    ) {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("the import reports within 30 s")
                .expect("the import channel is open");
            let done = matches!(event, ImportEvent::Done(_));
            library.on_event(event, store, Timestamp::from_millis(1_000), alerts, 1_000);
            if done {
                return;
            }
        }
    }

    #[tokio::test]
    async fn one_import_at_a_time_and_a_package_joins_once_recorded() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("fw.bin");
        std::fs::write(&file, vec![7_u8; 64 * 1024]).expect("the firmware file is written");
        let (tx, mut rx) = channel();
        let mut library = Library::new(FirmwareStore::in_data_dir(dir.path()), tx);
        let mut store = Store::open_in_memory().expect("an in-memory store");
        let mut alerts = Alerts::default();

        assert!(library.start_import(file.clone(), None).is_ok());
        assert!(library.import_progress().is_some());
        // A second import while the first runs is refused, its reply handed back.
        let (reply, _answer) = tokio::sync::oneshot::channel();
        assert!(matches!(
            library.start_import(file.clone(), Some(reply)),
            Err(Some(_))
        ));
        run_to_completion(&mut library, &mut rx, &mut store, &mut alerts).await;
        assert!(library.import_progress().is_none());
        assert_eq!(library.packages().len(), 1);
        assert_eq!(store.list_packages().expect("packages listed").len(), 1);

        // Free again; importing the same bytes keeps the package once.
        assert!(library.start_import(file, None).is_ok());
        run_to_completion(&mut library, &mut rx, &mut store, &mut alerts).await;
        assert_eq!(library.packages().len(), 1);
    }
}
