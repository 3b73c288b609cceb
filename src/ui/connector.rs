//! Switching the engine to another broker from the window without blocking it: the old engine
//! is told to shut down, the new one is started on the tokio runtime, and the outcome comes
//! back through a oneshot the app polls each frame. If the new engine cannot start, the
//! previous configuration is started again so the window keeps a working engine.
//!
//! Why stop first: both engines would bind the same firmware-server port and open the same
//! database; the window resumes unfinished campaigns on start, so a switch loses none.
//! Never logs a configuration's password (`LinkOptions`' `Debug` redacts it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::action::ConnectRequest;
use super::profiles::{ConnectTarget, ProfileError, Secret};
use super::start_failure::{StartFailure, StartFailureForm};
use super::vault::{Remembered, Vault};
use crate::engine::{
    self, BrokerChoice, BrokerUrl, Command, EngineConfig, EngineError, EngineHandle,
};
use crate::i18n::tr;

/// How long a switch waits for the old engine to finish before starting the new one.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
const SHUTDOWN_SEND_TRIES: usize = 50;
/// Bound on waiting for the old engine's ports: 20 × 100 ms.
const PORT_RELEASE_TRIES: usize = 20;
const PORT_RELEASE_RETRY: Duration = Duration::from_millis(100);
const SHUTDOWN_SEND_RETRY: Duration = Duration::from_millis(20);

/// How a switch ended.
pub enum SwitchOutcome {
    /// The new engine runs.
    Connected(EngineHandle),
    /// The new engine did not start; `restored` is the previous configuration started again
    /// (`None` if that failed too).
    Failed {
        error: String,
        /// The same, with what the window's start-failure view needs (the port taken).
        failure: StartFailure,
        restored: Option<EngineHandle>,
    },
}

/// The window's first engine: the one started, or — when it could not start — a handle to no
/// engine and the failure with its form, which the window shows with the ways out.
pub struct FirstEngine {
    pub handle: EngineHandle,
    pub connector: Connector,
    pub failure: Option<StartFailureForm>,
}

/// Starts engines for the window. Built by the caller that owns the runtime.
#[derive(Clone)]
pub struct Connector {
    runtime: tokio::runtime::Handle,
    base: EngineConfig,
    /// The embedded broker started by the first engine (it lives until the process exits).
    embedded_running: Option<BrokerUrl>,
    /// Configuration of the engine now running, restarted when a switch fails.
    current: Arc<std::sync::Mutex<EngineConfig>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("embedded_running", &self.embedded_running)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// The connector for the engine started with `base` (`started`), or, when it did not
    /// start, a handle to no engine and the failure: the window opens either way.
    pub fn first(
        runtime: tokio::runtime::Handle,
        base: EngineConfig,
        started: Result<EngineHandle, EngineError>,
    ) -> FirstEngine {
        match started {
            Ok(handle) => FirstEngine {
                connector: Connector::new(runtime, base, &handle),
                handle,
                failure: None,
            },
            Err(e) => {
                tracing::error!("{e}");
                let label = match &base.broker {
                    BrokerChoice::Embedded { listen, .. } => {
                        tr!("ui.connector.embedded_not_running", listen = listen)
                    }
                    BrokerChoice::External(options) => options.url.to_string(),
                };
                // The connection bar says it in short; the central area has the whole error.
                let handle = EngineHandle::not_started(
                    label,
                    base.data_dir.clone(),
                    tr!("ui.connector.not_started"),
                );
                let failure = StartFailureForm::new(StartFailure::new(&e), &base);
                FirstEngine {
                    handle,
                    connector: Connector {
                        runtime,
                        current: Arc::new(std::sync::Mutex::new(base.clone())),
                        base,
                        embedded_running: None,
                    },
                    failure: Some(failure),
                }
            }
        }
    }

    /// `base` is the configuration `first` was started with.
    pub fn new(runtime: tokio::runtime::Handle, base: EngineConfig, first: &EngineHandle) -> Self {
        let embedded_running = match &base.broker {
            BrokerChoice::Embedded { .. } => first.broker_url().parse().ok(),
            BrokerChoice::External(_) => None,
        };
        // Restarting "the configuration in use" must rejoin the running embedded broker, not
        // start a second one on its port.
        let current = ConnectTarget::Embedded
            .engine_config(&base, embedded_running.as_ref(), None)
            .unwrap_or_else(|_| base.clone());
        Connector {
            runtime,
            current: Arc::new(std::sync::Mutex::new(current)),
            base,
            embedded_running,
        }
    }

    /// The configuration for `target` (checked, nothing started yet).
    pub fn config_for(
        &self,
        target: &ConnectTarget,
        password: Option<&Secret>,
    ) -> Result<EngineConfig, ProfileError> {
        target.engine_config(&self.base, self.embedded_running.as_ref(), password)
    }

    /// Keeps or fetches the profile's password (the keyring may block: off the UI thread),
    /// then stops `old` and starts an engine on the chosen broker. Returns at once; the report
    /// arrives on the receiver.
    pub fn connect(
        &self,
        old: EngineHandle,
        request: ConnectRequest,
        vault: Vault,
    ) -> oneshot::Receiver<ConnectReport> {
        let (tx, rx) = oneshot::channel();
        let connector = self.clone();
        self.runtime.spawn(async move {
            let target = request.target.clone();
            let secrets = tokio::task::spawn_blocking(move || password_for(&request, &vault)).await;
            let (password, remembered) = secrets.unwrap_or((None, None));
            let outcome = match connector.config_for(&target, password.as_ref()) {
                Ok(config) => Ok(connector.switch(old, config).await),
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(ConnectReport {
                target,
                remembered,
                outcome,
            });
        });
        rx
    }

    /// Stops `old` and starts an engine with `config`; on failure starts the previous
    /// configuration again.
    pub async fn switch(&self, old: EngineHandle, config: EngineConfig) -> SwitchOutcome {
        stop(&old).await;
        match start_after_release(config.clone()).await {
            Ok(handle) => {
                if let Ok(mut slot) = self.current.lock() {
                    *slot = config;
                }
                SwitchOutcome::Connected(handle)
            }
            Err(e) => {
                let previous = self.current.lock().map(|c| c.clone()).ok();
                let restored = match previous {
                    Some(previous) => start_after_release(previous).await.ok(),
                    None => None,
                };
                SwitchOutcome::Failed {
                    error: e.to_string(),
                    failure: StartFailure::new(&e),
                    restored,
                }
            }
        }
    }
}

/// What a Connect came to.
pub struct ConnectReport {
    pub target: ConnectTarget,
    /// What happened to a password the operator asked to remember.
    pub remembered: Option<Remembered>,
    /// `Err`: the profile itself is unusable (nothing was stopped).
    pub outcome: Result<SwitchOutcome, String>,
}

/// The password to connect with, and whether a typed one was remembered. Blocking.
fn password_for(request: &ConnectRequest, vault: &Vault) -> (Option<Secret>, Option<Remembered>) {
    let ConnectTarget::Profile(profile) = &request.target else {
        return (None, None);
    };
    match &request.password {
        Some(typed) => {
            let remembered = vault.store(&profile.name, typed, profile.remember_password);
            (Some(typed.clone()), remembered)
        }
        None => (vault.load(&profile.name), None),
    }
}

/// Starts an engine; while the old engine's firmware-server listener is still being released
/// (its accept task is aborted, not joined), a port in use is retried briefly.
async fn start_after_release(config: EngineConfig) -> Result<EngineHandle, EngineError> {
    let mut tries = 0;
    loop {
        match engine::start(config.clone()).await {
            Err(EngineError::Start(why))
                if why.port_in_use().is_some() && tries < PORT_RELEASE_TRIES =>
            {
                tries += 1;
                tokio::time::sleep(PORT_RELEASE_RETRY).await;
            }
            other => return other,
        }
    }
}

/// Sends `Shutdown` and waits (bounded) until the engine task has dropped its snapshot sender,
/// i.e. its broker link, firmware server and database are released.
async fn stop(old: &EngineHandle) {
    let mut watch = old.watch();
    // A full queue empties within moments; a stopped engine answers `Stopped` at once.
    for _ in 0..SHUTDOWN_SEND_TRIES {
        match old.send(Command::Shutdown) {
            Err(EngineError::Busy) => tokio::time::sleep(SHUTDOWN_SEND_RETRY).await,
            _ => break,
        }
    }
    let closed = async { while watch.changed().await.is_ok() {} };
    if tokio::time::timeout(SHUTDOWN_WAIT, closed).await.is_err() {
        tracing::warn!(
            "{}",
            tr!(
                "ui.connector.old_engine_slow",
                waited = humantime::format_duration(SHUTDOWN_WAIT)
            )
        );
    }
}
