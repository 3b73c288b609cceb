//! `EngineHandle`: how the UI and the commands reach the engine. Cloneable; every method returns
//! at once.

use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use super::command::{CampaignRequest, Command, Reply};
use super::error::{CommandError, EngineError};
use super::snapshot::Snapshot;
use crate::device_id::DeviceId;
use crate::firmware::StoredPackage;
use crate::fleet::inspector::{Inspector, RawMessage};
use crate::rollout::CampaignId;
use crate::transport::mqtt::LinkState;

/// Called by the engine whenever the snapshot changed (GUI: `request_repaint_after`).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// The longest [`EngineHandle::shut_down`] waits: the link's hand-over (at most 5 s for a stuck
/// socket) and the embedded broker's last deliveries (at most 2 s), with room to spare.
const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
pub struct EngineHandle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) snapshot: watch::Receiver<Arc<Snapshot>>,
    pub(super) inspector: Arc<Mutex<Inspector>>,
    pub(super) waker: Arc<Mutex<Option<Waker>>>,
    /// `mqtt://host:port` of the broker the engine is connected to (no credentials).
    pub(super) broker_url: String,
    /// The data directory (its site CA is exported from here).
    pub(super) data_dir: std::path::PathBuf,
}

impl EngineHandle {
    /// A handle to no engine: what the window holds when the engine could not start, so that
    /// it still opens and offers the ways out. Every command is answered
    /// [`EngineError::Stopped`]; the snapshot names `broker` and says the link failed for
    /// `reason`; its watch is closed at once (nothing will ever change).
    pub fn not_started(broker: String, data_dir: std::path::PathBuf, reason: String) -> Self {
        let (commands, _) = mpsc::channel(1);
        let snapshot = Snapshot {
            link: LinkState::Failed { reason },
            ..Snapshot::empty(broker)
        };
        let (_, snapshot_rx) = watch::channel(Arc::new(snapshot));
        EngineHandle {
            commands,
            snapshot: snapshot_rx,
            inspector: Arc::new(Mutex::new(Inspector::new(1))),
            waker: Arc::new(Mutex::new(None)),
            broker_url: String::new(),
            data_dir,
        }
    }

    /// The PEM certificate of the data directory's site CA (created on first use), which
    /// devices that connect over TLS are given to trust the broker and the firmware server.
    /// Reads (or writes) files: call it off the UI thread.
    pub fn site_ca_pem(&self) -> Result<String, crate::access::TlsError> {
        crate::access::site_ca::SiteCa::load_or_create(&self.data_dir).map(|ca| ca.ca_pem())
    }

    /// Queues a command without waiting (for UI threads).
    pub fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands.try_send(command).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EngineError::Busy,
            mpsc::error::TrySendError::Closed(_) => EngineError::Stopped,
        })
    }

    /// Sets the function the engine calls after each snapshot change (the GUI sets it once its
    /// `egui::Context` exists).
    pub fn set_waker(&self, waker: Waker) {
        if let Ok(mut slot) = self.waker.lock() {
            *slot = Some(waker);
        }
    }

    /// The URL of the broker the engine uses (`mqtt://127.0.0.1:PORT` for the embedded one),
    /// e.g. for an in-process simulated fleet.
    pub fn broker_url(&self) -> &str {
        &self.broker_url
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// A receiver that wakes on every new snapshot (for async callers such as the CLI).
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.clone()
    }

    /// Up to `limit` most recent raw messages, oldest first; only those about `device` when
    /// given.
    pub fn messages(&self, device: Option<&DeviceId>, limit: usize) -> Vec<RawMessage> {
        let Ok(inspector) = self.inspector.lock() else {
            return Vec::new();
        };
        let mut picked: Vec<RawMessage> = match device {
            Some(d) => inspector.for_device(d).cloned().collect(),
            None => inspector.all().cloned().collect(),
        };
        let skip = picked.len().saturating_sub(limit);
        picked.drain(..skip);
        picked
    }

    /// Imports a firmware file and waits for the result.
    pub async fn import_firmware(
        &self,
        path: std::path::PathBuf,
    ) -> Result<StoredPackage, EngineError> {
        self.request(|reply| Command::ImportFirmware {
            path,
            reply: Some(reply),
        })
        .await
    }

    /// Starts a campaign and waits until it is created.
    pub async fn start_campaign(
        &self,
        request: CampaignRequest,
    ) -> Result<CampaignId, EngineError> {
        self.request(|reply| Command::StartCampaign {
            request: Box::new(request),
            reply: Some(reply),
        })
        .await
    }

    /// Resumes a campaign from the database and waits until it runs.
    pub async fn resume_campaign(&self, id: CampaignId) -> Result<CampaignId, EngineError> {
        self.request(|reply| Command::ResumeCampaign {
            id,
            reply: Some(reply),
        })
        .await
    }

    /// Sends a command carrying a reply channel and waits for the engine's answer.
    async fn request<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send_async(command(reply)).await?;
        rx.await
            .map_err(|_| EngineError::Stopped)?
            .map_err(EngineError::Refused)
    }

    /// Asks the engine to stop and waits (at most [`SHUTDOWN_LIMIT`]) until it has: the store is written,
    /// what it queued for devices went to the broker, and its own broker, if any, delivered it.
    /// A command that exits right after its work is done calls this last, so the replies to the
    /// final reports are not cut off with the process. Returns whether it stopped in time.
    pub async fn shut_down(&self) -> bool {
        let _ = self.commands.send(Command::Shutdown).await;
        let mut watch = self.watch();
        // The engine drops the snapshot's sender when its task ends.
        tokio::time::timeout(SHUTDOWN_LIMIT, async {
            while watch.changed().await.is_ok() {}
        })
        .await
        .is_ok()
    }

    /// Waits until the link to the broker is up and subscribed (so devices can be heard), at
    /// most `timeout`.
    pub async fn wait_connected(&self, timeout: std::time::Duration) -> Result<(), EngineError> {
        let mut watch = self.watch();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                let link = watch.borrow_and_update().link.clone();
                match link {
                    LinkState::Connected => return Ok(()),
                    LinkState::Failed { reason } => {
                        return Err(EngineError::Refused(CommandError::BrokerFailed { reason }));
                    }
                    _ => {}
                }
                if watch.changed().await.is_err() {
                    return Err(EngineError::Stopped);
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            // In words: the operator reads this, not a debug dump of the link state.
            let why = super::error::link_state_words(&self.snapshot().link);
            Err(EngineError::Refused(CommandError::BrokerUnreachable {
                waited: timeout,
                why,
            }))
        })
    }

    async fn send_async(&self, command: Command) -> Result<(), EngineError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| EngineError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_to_no_engine_says_why_and_refuses_every_command() {
        let handle = EngineHandle::not_started(
            "embedded broker on 0.0.0.0:1883 (not running)".into(),
            "/tmp/ota-data".into(),
            "port taken".into(),
        );
        assert!(matches!(
            handle.send(Command::DismissAlerts),
            Err(EngineError::Stopped)
        ));
        let snap = handle.snapshot();
        assert_eq!(
            snap.link,
            LinkState::Failed {
                reason: "port taken".into()
            }
        );
        assert_eq!(snap.broker, "embedded broker on 0.0.0.0:1883 (not running)");
        // Nothing will change: a waiter on the watch returns at once.
        assert!(handle.watch().has_changed().is_err());
        assert!(handle.messages(None, 10).is_empty());
    }
}
