//! Work the window must not do on its own thread: the native file dialogs (they block until the
//! operator answers) and writing export files. Each job runs on a named thread and reports
//! through a bounded channel the app drains in `logic`, then wakes the window. At most one
//! dialog is open at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use super::action::ReportFormat;
use crate::engine::Snapshot;
use crate::i18n::tr;
use crate::report::Report;
use crate::rollout::CampaignId;

/// What a finished job reports.
#[derive(Debug)]
pub enum JobResult {
    /// The operator chose a firmware file (`None`: canceled, or no dialog available).
    PickedFirmware(Option<PathBuf>),
    /// An export was written (`Ok(path)`) or failed; nothing is sent when the operator cancels
    /// the save dialog.
    Saved {
        what: String,
        result: Result<PathBuf, String>,
    },
}

pub struct Jobs {
    tx: SyncSender<JobResult>,
    rx: Receiver<JobResult>,
    dialog_open: Arc<AtomicBool>,
    wake: Arc<dyn Fn() + Send + Sync>,
}

/// Results waiting to be read; a job finding it full drops its result (the operator can retry).
const RESULTS_CAPACITY: usize = 16;

/// Why a job did not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    #[error("{}", tr!("ui.jobs.dialog_open"))]
    DialogOpen,
    #[error("{}", tr!("ui.jobs.no_thread", why = _0))]
    Thread(String),
}

impl Jobs {
    /// `wake` is called after each result (the window: a repaint request).
    pub fn new(wake: Arc<dyn Fn() + Send + Sync>) -> Jobs {
        let (tx, rx) = sync_channel(RESULTS_CAPACITY);
        Jobs {
            tx,
            rx,
            dialog_open: Arc::new(AtomicBool::new(false)),
            wake,
        }
    }

    /// Every result that arrived since the last call.
    pub fn drain(&self) -> Vec<JobResult> {
        let mut out = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(r) => out.push(r),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return out,
            }
        }
    }

    /// Opens the native "open file" dialog on a thread.
    pub fn pick_firmware(&self) -> Result<(), JobError> {
        self.dialog_job("firmware-dialog", |tx| {
            let picked = rfd::FileDialog::new()
                .set_title(tr!("ui.jobs.open_firmware"))
                .add_filter(
                    tr!("ui.jobs.firmware"),
                    &["bin", "img", "zip", "tar", "gz", "pkg", "fw", "ota"],
                )
                .add_filter(tr!("ui.jobs.any_file"), &["*"])
                .pick_file();
            let _ = tx.try_send(JobResult::PickedFirmware(picked));
        })
    }

    /// Asks where to save a campaign report, then renders and writes it, all off the UI thread.
    pub fn save_report(
        &self,
        snapshot: Arc<Snapshot>,
        campaign: CampaignId,
        format: ReportFormat,
    ) -> Result<(), JobError> {
        self.dialog_job("report-export", move |tx| {
            let Some(view) = snapshot
                .campaigns
                .iter()
                .find(|c| c.snapshot.id == campaign)
            else {
                let _ = tx.try_send(JobResult::Saved {
                    what: tr!("ui.jobs.report"),
                    result: Err(tr!("ui.jobs.not_listed", campaign = campaign)),
                });
                return;
            };
            let name = format!("campaign-{campaign}.{}", format.extension());
            let Some(path) = rfd::FileDialog::new().set_file_name(&name).save_file() else {
                return;
            };
            let report = Report::from_view(view);
            let text = match format {
                ReportFormat::Json => report.to_json(),
                ReportFormat::Csv => report.to_csv(),
            };
            let result = text
                .map_err(|e| e.to_string())
                .and_then(|text| write(&path, &text));
            let _ = tx.try_send(JobResult::Saved {
                what: tr!(
                    "ui.jobs.format_report",
                    format = format.extension().to_uppercase()
                ),
                result,
            });
        })
    }

    /// Asks where to save `text` (already built), then writes it.
    pub fn save_text(&self, what: &str, file_name: &str, text: String) -> Result<(), JobError> {
        let (what, file_name) = (what.to_owned(), file_name.to_owned());
        self.dialog_job("text-export", move |tx| {
            let Some(path) = rfd::FileDialog::new().set_file_name(&file_name).save_file() else {
                return;
            };
            let _ = tx.try_send(JobResult::Saved {
                what,
                result: write(&path, &text),
            });
        })
    }

    /// Makes the text on the job's thread (it may read or create files), asks where to save
    /// it, then writes it; a failure to make it is reported like a failed write.
    pub fn save_made(
        &self,
        what: &str,
        file_name: &str,
        make: impl FnOnce() -> Result<String, String> + Send + 'static,
    ) -> Result<(), JobError> {
        let (what, file_name) = (what.to_owned(), file_name.to_owned());
        self.dialog_job("text-export", move |tx| {
            let text = match make() {
                Ok(text) => text,
                Err(e) => {
                    let _ = tx.try_send(JobResult::Saved {
                        what,
                        result: Err(e),
                    });
                    return;
                }
            };
            let Some(path) = rfd::FileDialog::new().set_file_name(&file_name).save_file() else {
                return;
            };
            let _ = tx.try_send(JobResult::Saved {
                what,
                result: write(&path, &text),
            });
        })
    }

    fn dialog_job(
        &self,
        name: &str,
        job: impl FnOnce(&SyncSender<JobResult>) + Send + 'static,
    ) -> Result<(), JobError> {
        if self.dialog_open.swap(true, Ordering::SeqCst) {
            return Err(JobError::DialogOpen);
        }
        let (tx, open, wake) = (self.tx.clone(), self.dialog_open.clone(), self.wake.clone());
        let spawned = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                job(&tx);
                open.store(false, Ordering::SeqCst);
                wake();
            });
        spawned.map(|_| ()).map_err(|e| {
            self.dialog_open.store(false, Ordering::SeqCst);
            JobError::Thread(e.to_string())
        })
    }
}

fn write(path: &std::path::Path, text: &str) -> Result<PathBuf, String> {
    std::fs::write(path, text)
        .map(|()| path.to_owned())
        .map_err(|e| {
            tr!(
                "ui.jobs.cannot_write",
                path = path.display(),
                why = crate::i18n::io_error(&e)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dialog_at_a_time_and_results_wake_the_window() {
        let (wake_tx, wake_rx) = sync_channel::<()>(4);
        let jobs = Jobs::new(Arc::new(move || {
            let _ = wake_tx.try_send(());
        }));
        // A job that waits for us, standing in for a dialog the operator has not answered.
        let (go_tx, go_rx) = sync_channel::<()>(1);
        jobs.dialog_job("test-job", move |tx| {
            let _ = go_rx.recv_timeout(std::time::Duration::from_secs(10));
            let _ = tx.try_send(JobResult::PickedFirmware(None));
        })
        .unwrap();
        assert_eq!(jobs.pick_firmware(), Err(JobError::DialogOpen));
        go_tx.send(()).unwrap();
        wake_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let results = jobs.drain();
        assert!(matches!(
            results.as_slice(),
            [JobResult::PickedFirmware(None)]
        ));
        assert!(!jobs.dialog_open.load(Ordering::SeqCst));
    }
}
