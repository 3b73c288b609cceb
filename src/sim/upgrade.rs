//! One upgrade as a device lives it, whatever the dialect: download every file (paced), verify
//! it, install for the configured time, and act out the fault rolled for it.
//!
//! Owns: the order of steps, the progress reports (at each 10 % mark, or on a timer with
//! [`Behaviour::progress_interval`]) and the outcome. Runs as its own task and
//! reports to its device task over a channel. Must never: publish anything itself (the device
//! task owns the connection and the wire format).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::config::{Behaviour, Fault};
use super::download::{self, DownloadError, Expected, TransferFaults};
use super::fetch::{self, HttpClient};

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
    /// Report download progress on this period instead of at the 10 % marks.
    pub progress_interval: Option<Duration>,
    pub http: HttpClient,
}

impl Job {
    pub(crate) fn new(
        files: Vec<FileToFetch>,
        fault: Fault,
        b: &Behaviour,
        http: &HttpClient,
    ) -> Job {
        Job {
            files,
            fault,
            bandwidth_bytes_per_sec: b.bandwidth_bytes_per_sec,
            install: b.install,
            stall_timeout: b.download_stall_timeout,
            progress_interval: b.progress_interval,
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
    /// A 10 % mark was passed (download: share of all bytes; install: share of install time),
    /// or, with a progress interval, the timer fired (download: share received so far).
    Progress {
        phase: Phase,
        percent: u8,
    },
    /// Bytes received so far across all files (sent with download progress marks).
    Bytes(u64),
    Finished(Outcome),
}

/// A job's event with the key of the job (module, sub-device, bid) it belongs to.
type Tagged<K> = (K, JobEvent);
type Pair<K> = (mpsc::Sender<Tagged<K>>, mpsc::Receiver<Tagged<K>>);

/// The channel a unit's upgrade jobs report on, made when the first upgrade starts: an idle
/// device (most of a large fleet, most of the time) carries none.
pub(crate) struct JobChannel<K> {
    capacity: usize,
    chan: Option<Pair<K>>,
}

impl<K> JobChannel<K> {
    pub(crate) fn new(capacity: usize) -> JobChannel<K> {
        JobChannel {
            capacity,
            chan: None,
        }
    }

    /// A sender for a new job.
    pub(crate) fn sender(&mut self) -> mpsc::Sender<Tagged<K>> {
        let capacity = self.capacity;
        let (tx, _) = self.chan.get_or_insert_with(|| mpsc::channel(capacity));
        tx.clone()
    }

    /// The next event of any job; never resolves before the first job.
    pub(crate) async fn recv(&mut self) -> Option<Tagged<K>> {
        match &mut self.chan {
            Some((_, rx)) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// An event already queued, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Tagged<K>> {
        self.chan.as_mut().and_then(|(_, rx)| rx.try_recv().ok())
    }
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
        let periodic = job.progress_interval.is_some();
        // Read by the progress timer while the fetch runs.
        let received = AtomicU64::new(base);
        // The byte callback is synchronous: it queues marks that the loop below forwards while
        // the fetch runs. At most 20 events per file exist, so the queue never fills.
        let (mark_tx, mut mark_rx) = mpsc::channel::<JobEvent>(32);
        let fetch = fetch::fetch(
            &job.http,
            &file.url,
            &file.expected,
            job.bandwidth_bytes_per_sec,
            job.stall_timeout,
            faults,
            |got| {
                let so_far = base + got;
                received.store(so_far, Ordering::Relaxed);
                // On a timer, only the end of the download is still reported as a mark.
                if let Some(p) = marks.passed(so_far, total)
                    && (!periodic || p == 100)
                {
                    let _ = mark_tx.try_send(JobEvent::Bytes(so_far));
                    let _ = mark_tx.try_send(JobEvent::Progress {
                        phase: Phase::Download,
                        percent: p,
                    });
                }
            },
        );
        tokio::pin!(fetch);
        let mut timer = job.progress_interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            // A device that fell behind reports once, not a burst of stale reports.
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        let result = loop {
            let ev = tokio::select! {
                r = &mut fetch => break r,
                Some(ev) = mark_rx.recv() => ev,
                () = super::tick(&mut timer) => {
                    let so_far = received.load(Ordering::Relaxed);
                    if tx.send((key.clone(), JobEvent::Bytes(so_far))).await.is_err() {
                        return Outcome::DownloadFailed("device task ended".into());
                    }
                    JobEvent::Progress {
                        phase: Phase::Download,
                        percent: percent_of(so_far, total),
                    }
                }
            };
            if tx.send((key.clone(), ev)).await.is_err() {
                return Outcome::DownloadFailed("device task ended".into());
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

/// `done` of `total` in whole percent (an empty download counts as complete).
fn percent_of(done: u64, total: u64) -> u8 {
    (u128::from(done.min(total)) * 100)
        .checked_div(u128::from(total))
        .map_or(100, |p| u8::try_from(p).unwrap_or(100))
}

/// Remembers the last 10 % mark reported so each is reported once.
#[derive(Debug, Default)]
struct Marks {
    last: u8,
}

impl Marks {
    /// The highest newly passed mark (10, 20, .. 100), if any.
    fn passed(&mut self, done: u64, total: u64) -> Option<u8> {
        let mark = percent_of(done, total) / 10 * 10;
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

    /// Serves `body` once to the first client, as a plain HTTP/1.1 response.
    async fn serve_once(body: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = socket.read(&mut head).await.unwrap();
            let header = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            socket.write_all(header.as_bytes()).await.unwrap();
            socket.write_all(&body).await.unwrap();
            let _ = socket.shutdown().await;
        });
        format!("http://{addr}/fw.bin")
    }

    #[tokio::test]
    async fn a_progress_interval_reports_on_the_timer_and_at_the_end() {
        // Two 4 KiB pacing slices at 8 KiB/s: the download takes at least a second, during
        // which a 200 ms timer fires several times; the 10 % marks are not reported.
        let size = 8192u64;
        let url = serve_once(vec![7u8; size as usize]).await;
        let job = Job {
            files: vec![FileToFetch {
                url,
                expected: Expected {
                    size,
                    md5: None,
                    sha256: None,
                    checksum: None,
                },
            }],
            fault: Fault::None,
            bandwidth_bytes_per_sec: Some(size),
            install: Duration::ZERO,
            stall_timeout: Duration::from_secs(10),
            progress_interval: Some(Duration::from_millis(200)),
            http: HttpClient::Relaxed(reqwest::Client::builder().no_proxy().build().unwrap()),
        };
        let (tx, mut rx) = mpsc::channel(64);
        tokio::time::timeout(Duration::from_secs(30), run(job, (), tx))
            .await
            .expect("the job ends");
        let mut download = Vec::new();
        let mut finished = None;
        while let Ok(((), ev)) = rx.try_recv() {
            match ev {
                JobEvent::Progress {
                    phase: Phase::Download,
                    percent,
                } => download.push(percent),
                JobEvent::Finished(outcome) => finished = Some(outcome),
                _ => {}
            }
        }
        assert_eq!(finished, Some(Outcome::Installed));
        // Timer reports at 200 ms steps through the >= 1 s download (four unless the machine
        // is very busy: at least two), then the final 100.
        assert!(download.len() >= 3, "{download:?}");
        assert_eq!(download.last(), Some(&100), "{download:?}");
        assert!(download.windows(2).all(|w| w[0] <= w[1]), "{download:?}");
        // Percentages of the bytes received so far (how the throttled stream is cut into
        // reads varies), never above 100.
        assert!(download.iter().all(|p| *p <= 100), "{download:?}");
    }

    #[test]
    fn percent_of_rounds_down_and_treats_empty_as_complete() {
        assert_eq!(percent_of(0, 200), 0);
        assert_eq!(percent_of(199, 200), 99);
        assert_eq!(percent_of(500, 200), 100);
        assert_eq!(percent_of(0, 0), 100);
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
            progress_interval: None,
            http: HttpClient::Relaxed(reqwest::Client::new()),
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
