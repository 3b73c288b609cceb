//! One upgrade as a device lives it, whatever the dialect: download every file (paced), verify
//! it, install for the configured time, and act out the fault rolled for it.
//!
//! Owns: the order of steps, the 10 % progress marks and the outcome. Runs as its own task and
//! reports to its device task over a channel. Must never: publish anything itself (the device
//! task owns the connection and the wire format).

use std::time::Duration;

use tokio::sync::mpsc;

use super::config::{Behaviour, Fault};
use super::download::{self, DownloadError, Expected, TransferFaults};

/// One file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileToFetch {
    pub url: String,
    pub expected: Expected,
}

/// Everything an upgrade job needs.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Files in download order; empty for an upgrade that needs no download (DJI consistency).
    pub files: Vec<FileToFetch>,
    pub fault: Fault,
    pub bandwidth_bytes_per_sec: Option<u64>,
    pub install: Duration,
    pub stall_timeout: Duration,
    pub http: reqwest::Client,
}

impl Job {
    pub(crate) fn new(
        files: Vec<FileToFetch>,
        fault: Fault,
        b: &Behaviour,
        http: &reqwest::Client,
    ) -> Job {
        Job {
            files,
            fault,
            bandwidth_bytes_per_sec: b.bandwidth_bytes_per_sec,
            install: b.install,
            stall_timeout: b.download_stall_timeout,
            http: http.clone(),
        }
    }
}

/// Which part of the upgrade a progress mark belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Download,
    Install,
}

/// How an upgrade ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Installed,
    DownloadFailed(String),
    VerifyFailed(String),
    FlashFailed,
    /// The device dropped off the network half-way through the download.
    WentOffline,
}

/// What a job tells its device task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobEvent {
    /// A 10 % mark was passed (download: share of all bytes; install: share of install time).
    Progress {
        phase: Phase,
        percent: u8,
    },
    /// Bytes received so far across all files (sent with download progress marks).
    Bytes(u64),
    Finished(Outcome),
}

/// Runs `job`, sending events tagged with `key` to `tx`. A closed channel (device task gone)
/// ends the job quietly.
pub(crate) async fn run<K: Clone>(job: Job, key: K, tx: mpsc::Sender<(K, JobEvent)>) {
    let outcome = execute(&job, &key, &tx).await;
    let _ = tx.send((key, JobEvent::Finished(outcome))).await;
}

async fn execute<K: Clone>(job: &Job, key: &K, tx: &mpsc::Sender<(K, JobEvent)>) -> Outcome {
    let total: u64 = job.files.iter().map(|f| f.expected.size).sum();
    let mut marks = Marks::default();
    let mut done_before: u64 = 0;
    for file in &job.files {
        let faults = transfer_faults(job.fault, file.expected.size);
        let base = done_before;
        // The byte callback is synchronous: it queues marks that the loop below forwards while
        // the fetch runs. At most 20 events per file exist, so the queue never fills.
        let (mark_tx, mut mark_rx) = mpsc::channel::<JobEvent>(32);
        let fetch = download::fetch(
            &job.http,
            &file.url,
            &file.expected,
            job.bandwidth_bytes_per_sec,
            job.stall_timeout,
            faults,
            |got| {
                let so_far = base + got;
                if let Some(p) = marks.passed(so_far, total) {
                    let _ = mark_tx.try_send(JobEvent::Bytes(so_far));
                    let _ = mark_tx.try_send(JobEvent::Progress {
                        phase: Phase::Download,
                        percent: p,
                    });
                }
            },
        );
        tokio::pin!(fetch);
        let result = loop {
            tokio::select! {
                r = &mut fetch => break r,
                Some(ev) = mark_rx.recv() => {
                    if tx.send((key.clone(), ev)).await.is_err() {
                        return Outcome::DownloadFailed("device task ended".into());
                    }
                }
            }
        };
        while let Ok(ev) = mark_rx.try_recv() {
            let _ = tx.send((key.clone(), ev)).await;
        }
        match result {
            Err(DownloadError::Interrupted { .. }) if job.fault == Fault::OfflineMidDownload => {
                return Outcome::WentOffline;
            }
            Err(e) => return Outcome::DownloadFailed(e.to_string()),
            Ok(fetched) => {
                let _ = tx
                    .send((key.clone(), JobEvent::Bytes(done_before + fetched.len)))
                    .await;
                if let Err(e) = download::verify(&fetched, &file.expected) {
                    return Outcome::VerifyFailed(e.to_string());
                }
                done_before += fetched.len;
            }
        }
    }
    install(job, key, tx).await
}

/// Waits the install time in ten steps, reporting each.
async fn install<K: Clone>(job: &Job, key: &K, tx: &mpsc::Sender<(K, JobEvent)>) -> Outcome {
    let step = job.install / 10;
    for tenth in 1..=10u8 {
        tokio::time::sleep(step).await;
        let ev = JobEvent::Progress {
            phase: Phase::Install,
            percent: tenth * 10,
        };
        if tx.send((key.clone(), ev)).await.is_err() {
            return Outcome::FlashFailed;
        }
    }
    if job.fault == Fault::Flash {
        Outcome::FlashFailed
    } else {
        Outcome::Installed
    }
}

/// Faults acted out by the transfer: a break at half the file, or corrupted bytes.
fn transfer_faults(fault: Fault, size: u64) -> TransferFaults {
    match fault {
        Fault::Download | Fault::OfflineMidDownload => TransferFaults {
            break_at: Some(size / 2),
            corrupt: false,
        },
        Fault::Verify => TransferFaults {
            break_at: None,
            corrupt: true,
        },
        Fault::None | Fault::Flash => TransferFaults::default(),
    }
}

/// Remembers the last 10 % mark reported so each is reported once.
#[derive(Debug, Default)]
struct Marks {
    last: u8,
}

impl Marks {
    /// The highest newly passed mark (10, 20, .. 100), if any.
    fn passed(&mut self, done: u64, total: u64) -> Option<u8> {
        // An empty download counts as complete.
        let percent = (u128::from(done.min(total)) * 100)
            .checked_div(u128::from(total))
            .map_or(100, |p| p as u8);
        let mark = percent / 10 * 10;
        (mark > self.last).then(|| {
            self.last = mark;
            mark
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_reported_once_each() {
        let mut m = Marks::default();
        let seen: Vec<u8> = (0..=100u64)
            .step_by(5)
            .filter_map(|d| m.passed(d, 100))
            .collect();
        assert_eq!(seen, vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        let mut jump = Marks::default();
        assert_eq!(jump.passed(99, 100), Some(90));
        assert_eq!(jump.passed(100, 100), Some(100));
        assert_eq!(jump.passed(100, 100), None);
    }

    #[test]
    fn faults_map_to_transfer_behaviour() {
        assert_eq!(transfer_faults(Fault::Download, 100).break_at, Some(50));
        assert!(transfer_faults(Fault::Verify, 100).corrupt);
        assert_eq!(
            transfer_faults(Fault::Flash, 100),
            TransferFaults::default()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn install_only_job_reports_ten_marks_then_flash_failure() {
        let job = Job {
            files: vec![],
            fault: Fault::Flash,
            bandwidth_bytes_per_sec: None,
            install: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(1),
            http: reqwest::Client::new(),
        };
        let (tx, mut rx) = mpsc::channel(32);
        run(job, 7u8, tx).await;
        let mut events = Vec::new();
        while let Ok((key, ev)) = rx.try_recv() {
            assert_eq!(key, 7);
            events.push(ev);
        }
        assert_eq!(events.len(), 11);
        assert_eq!(
            events.first(),
            Some(&JobEvent::Progress {
                phase: Phase::Install,
                percent: 10
            })
        );
        assert_eq!(
            events.last(),
            Some(&JobEvent::Finished(Outcome::FlashFailed))
        );
    }
}
