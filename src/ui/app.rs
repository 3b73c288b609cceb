//! `OtaApp`: the eframe application. `logic` (runs even when the window is hidden) takes the
//! engine's latest snapshot, drains background jobs (file dialogs, exports) and dropped files,
//! and fetches inspector messages; `ui` draws the `ConsoleView` and then applies the actions
//! it returned by sending `Command`s with `try_send`. The UI thread never waits on I/O or on
//! the engine; the engine's waker requests a repaint when its state changes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::action::UiAction;
use super::connector::{ConnectReport, Connector, SwitchOutcome};
use super::console::ConsoleView;
use super::demo_controls::DemoDriver;
use super::inspector::messages_jsonl;
use super::jobs::{JobResult, Jobs};
use super::profiles::ConnectTarget;
use super::settings::{Settings, ThemeChoice};
use super::theme;
use super::toasts::Banner;
use super::vault::Vault;
use crate::device_id::DeviceId;
use crate::engine::{AlertLevel, Command, EngineError, EngineHandle, Snapshot, Waker};
use crate::fleet::inspector::RawMessage;
use crate::i18n::tr;

/// Messages the inspector keeps on screen.
const INSPECTOR_LIMIT: usize = 500;
/// The inspector's list is refreshed at most this often (it copies up to `INSPECTOR_LIMIT`).
const INSPECTOR_REFRESH: Duration = Duration::from_millis(250);
/// A burst of engine changes costs one repaint.
const REPAINT_COALESCE: Duration = Duration::from_millis(10);
/// While an engine switch runs, the window looks for its outcome this often.
const SWITCH_POLL: Duration = Duration::from_millis(100);
/// Window notices kept (newest last).
const MAX_NOTICES: usize = 4;

pub struct OtaApp {
    handle: EngineHandle,
    view: ConsoleView,
    snapshot: Arc<Snapshot>,
    messages: Vec<RawMessage>,
    messages_key: Option<(u64, Option<DeviceId>)>,
    messages_at: Option<Instant>,
    notices: Vec<Banner>,
    jobs: Jobs,
    now_ms: i64,
    applied_theme: Option<ThemeChoice>,
    /// The language choice applied (`None` before the first frame).
    applied_language: Option<Option<crate::i18n::Lang>>,
    /// Repaints the window; given to every engine the app is attached to.
    wake: Waker,
    /// Restarts the engine on another broker; `None` = the dialog cannot switch.
    connector: Option<Connector>,
    vault: Vault,
    /// A broker switch under way.
    switching: Option<tokio::sync::oneshot::Receiver<ConnectReport>>,
    /// Runs the demo's story (`--demo`); `None` otherwise.
    demo_driver: Option<Arc<dyn DemoDriver>>,
}

impl OtaApp {
    /// Connects the app to the engine (the waker repaints `ctx`) with the saved `settings`.
    pub fn new(
        handle: EngineHandle,
        ctx: &egui::Context,
        settings: Settings,
        demo: bool,
    ) -> OtaApp {
        let repaint_ctx = ctx.clone();
        let wake: Arc<dyn Fn() + Send + Sync> =
            Arc::new(move || repaint_ctx.request_repaint_after(REPAINT_COALESCE));
        handle.set_waker(wake.clone());
        let snapshot = handle.snapshot();
        OtaApp {
            handle,
            view: ConsoleView::new(settings, demo),
            snapshot,
            messages: Vec::new(),
            messages_key: None,
            messages_at: None,
            notices: Vec::new(),
            jobs: Jobs::new(wake.clone()),
            now_ms: 0,
            applied_theme: None,
            applied_language: None,
            wake,
            connector: None,
            vault: Vault::new(),
            switching: None,
            demo_driver: None,
        }
    }

    /// The engine did not start: the window shows `form` (the failure and its ways out) until
    /// a start succeeds.
    pub fn set_start_failure(&mut self, form: super::start_failure::StartFailureForm) {
        self.view.start_failure = Some(form);
    }

    /// Lets the demo's buttons start and replay its story.
    pub fn set_demo_driver(&mut self, driver: Arc<dyn DemoDriver>) {
        self.demo_driver = Some(driver);
    }

    /// Lets the connection dialog restart the engine on another broker.
    pub fn set_connector(&mut self, connector: Connector) {
        self.connector = Some(connector);
    }

    /// The engine the window is attached to now (it changes when the broker is switched).
    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    pub fn settings(&self) -> &Settings {
        &self.view.settings
    }

    /// The view state (selection, forms), for tests and embedding.
    pub fn view(&self) -> &ConsoleView {
        &self.view
    }

    pub fn view_mut(&mut self) -> &mut ConsoleView {
        &mut self.view
    }

    /// The snapshot the last frame was drawn from.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Imports a firmware file, as the dialog and drag-and-drop do.
    pub fn import_firmware(&mut self, path: PathBuf) {
        self.send(Command::ImportFirmware { path, reply: None });
    }

    /// Everything that is not drawing; call once per frame before [`OtaApp::frame_ui`].
    pub fn update_logic(&mut self, ctx: &egui::Context) {
        self.now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.snapshot = self.handle.snapshot();
        // The language at start was set before the window opened (`--lang`, else this saved
        // choice, else the system's); a choice changed in the window applies from this frame.
        let language = self.view.settings.language;
        if self
            .applied_language
            .is_some_and(|applied| applied != language)
        {
            crate::i18n::set(super::language::resolve(language));
        }
        self.applied_language = Some(language);
        if self.applied_theme != Some(self.view.settings.theme) {
            theme::apply(ctx, self.view.settings.theme);
            self.applied_theme = Some(self.view.settings.theme);
        }
        for result in self.jobs.drain() {
            self.job_done(result);
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        if let Some(path) = dropped.into_iter().next() {
            self.import_firmware(path);
        }
        self.poll_switch(ctx);
        if let Some(error) = self.demo_driver.as_ref().and_then(|d| d.take_error()) {
            self.notice(AlertLevel::Error, error);
        }
        self.refresh_messages();
        let now = Instant::now();
        self.notices.retain(|n| !n.expired(now));
        if let Some(next) = self.notices.iter().map(|n| n.at).min() {
            // Repaint when the oldest toast is due to go.
            let left = (next + super::toasts::TOAST_LIFETIME).saturating_duration_since(now);
            ctx.request_repaint_after(left);
        }
    }

    fn start_switch(&mut self, request: super::action::ConnectRequest) {
        let Some(connector) = &self.connector else {
            self.view.connection.status = Some((AlertLevel::Error, tr!("ui.app.cannot_switch")));
            return;
        };
        if self.switching.is_some() {
            return;
        }
        let label = target_label(&request.target);
        self.switching = Some(connector.connect(self.handle.clone(), request, self.vault.clone()));
        self.view.connection.pending = Some(tr!("ui.app.connecting", target = label));
    }

    fn poll_switch(&mut self, ctx: &egui::Context) {
        let Some(rx) = &mut self.switching else {
            return;
        };
        let report = match rx.try_recv() {
            Ok(report) => report,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                ctx.request_repaint_after(SWITCH_POLL);
                return;
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                self.switching = None;
                self.view.connection.pending = None;
                self.view.connection.status =
                    Some((AlertLevel::Error, tr!("ui.app.switch_interrupted")));
                return;
            }
        };
        self.switching = None;
        self.view.connection.pending = None;
        let label = target_label(&report.target);
        let remembered = report
            .remembered
            .map(|r| tr!("ui.app.remembered", message = r.message()))
            .unwrap_or_default();
        let status = match report.outcome {
            Err(e) => (AlertLevel::Error, tr!("ui.app.cannot_connect", why = e)),
            Ok(SwitchOutcome::Connected(handle)) => {
                self.attach(handle);
                self.view.start_failure = None;
                (
                    AlertLevel::Info,
                    tr!("ui.app.switched", target = label, remembered = remembered),
                )
            }
            Ok(SwitchOutcome::Failed {
                error,
                restored: Some(handle),
                ..
            }) => {
                self.attach(handle);
                self.view.start_failure = None;
                (
                    AlertLevel::Error,
                    tr!("ui.app.back_on_previous", target = label, why = error),
                )
            }
            Ok(SwitchOutcome::Failed {
                error,
                failure,
                restored: None,
            }) => {
                if let Some(form) = &mut self.view.start_failure {
                    // The start-failure view tells the newest reason (the ports typed stay).
                    form.failure = failure;
                }
                (
                    AlertLevel::Error,
                    tr!("ui.app.no_broker_left", target = label, why = error),
                )
            }
        };
        self.notice(status.0, status.1.clone());
        self.view.connection.status = Some(status);
    }

    /// Follows a new engine: its waker repaints this window, its snapshot is drawn next.
    fn attach(&mut self, handle: EngineHandle) {
        handle.set_waker(self.wake.clone());
        self.snapshot = handle.snapshot();
        self.handle = handle;
        self.messages.clear();
        self.messages_key = None;
        self.messages_at = None;
    }

    /// Draws the window and applies what the operator asked for.
    pub fn frame_ui(&mut self, ui: &mut egui::Ui) {
        let snapshot = self.snapshot.clone();
        let actions = self
            .view
            .ui(ui, &snapshot, &self.messages, &self.notices, self.now_ms);
        for action in actions {
            self.apply(action);
        }
    }

    fn refresh_messages(&mut self) {
        let Some(device) = self.view.messages_wanted() else {
            self.messages.clear();
            self.messages_key = None;
            return;
        };
        let key = (self.snapshot.revision, device.clone());
        let due = self
            .messages_at
            .is_none_or(|at| at.elapsed() >= INSPECTOR_REFRESH);
        let other_device = self.messages_key.as_ref().map(|(_, d)| d) != Some(&device);
        if self.messages_key.as_ref() != Some(&key) && (due || other_device) {
            self.messages = self.handle.messages(device.as_ref(), INSPECTOR_LIMIT);
            self.messages_key = Some(key);
            self.messages_at = Some(Instant::now());
        }
    }

    fn apply(&mut self, action: UiAction) {
        match action {
            UiAction::OpenFileDialog => {
                if let Err(e) = self.jobs.pick_firmware() {
                    self.notice(AlertLevel::Warning, tr!("ui.app.no_file_dialog", why = e));
                }
            }
            UiAction::ImportFirmware(path) => self.import_firmware(path),
            UiAction::CancelImport => self.send(Command::CancelImport),
            UiAction::DemoStart | UiAction::DemoReplay => self.drive_demo(&action),
            UiAction::StartCampaign(request) => self.send(Command::StartCampaign {
                request,
                reply: None,
            }),
            UiAction::Pause(id) => self.send(Command::Pause(id)),
            UiAction::Resume(id) => self.send(Command::Resume(id)),
            UiAction::Cancel(id) => self.send(Command::Cancel(id)),
            UiAction::RetryFailed(id) => self.send(Command::RetryFailed(id)),
            UiAction::AdvanceWave(id) => self.send(Command::AdvanceWave(id)),
            UiAction::DismissNotices => self.notices.clear(),
            UiAction::DismissAlerts => {
                self.notices.clear();
                self.send(Command::DismissAlerts);
            }
            UiAction::ExportReport { campaign, format } => {
                if let Err(e) = self
                    .jobs
                    .save_report(self.snapshot.clone(), campaign, format)
                {
                    self.notice(AlertLevel::Warning, tr!("ui.app.cannot_export", why = e));
                }
            }
            UiAction::Connect(request) => self.start_switch(*request),
            UiAction::ForgetPassword(profile) => {
                let vault = self.vault.clone();
                // The keyring may block; nobody waits for the result.
                let spawned = std::thread::Builder::new()
                    .name("forget-password".into())
                    .spawn(move || vault.forget(&profile));
                if let Err(e) = spawned {
                    self.notice(
                        AlertLevel::Warning,
                        tr!("ui.app.password_not_removed", why = e),
                    );
                }
            }
            UiAction::ExportMessages => {
                let text = messages_jsonl(&self.messages);
                if let Err(e) =
                    self.jobs
                        .save_text(&tr!("ui.app.what_messages"), "messages.jsonl", text)
                {
                    self.notice(AlertLevel::Warning, tr!("ui.app.cannot_export", why = e));
                }
            }
            UiAction::ExportSiteCa => {
                let handle = self.handle.clone();
                let made = self.jobs.save_made(
                    &tr!("ui.app.what_site_ca"),
                    "ota-console-site-ca.pem",
                    move || handle.site_ca_pem().map_err(|e| e.to_string()),
                );
                if let Err(e) = made {
                    self.notice(AlertLevel::Warning, tr!("ui.app.cannot_export", why = e));
                }
            }
        }
    }

    fn send(&mut self, command: Command) {
        if let Err(e) = self.handle.send(command) {
            let text = match e {
                EngineError::Busy => tr!("ui.app.busy"),
                other => tr!("ui.app.not_delivered", why = other),
            };
            self.notice(AlertLevel::Error, text);
        }
    }

    fn job_done(&mut self, result: JobResult) {
        match result {
            JobResult::PickedFirmware(Some(path)) => self.import_firmware(path),
            JobResult::PickedFirmware(None) => {}
            JobResult::Saved {
                what,
                result: Ok(path),
            } => {
                self.notice(
                    AlertLevel::Info,
                    tr!("ui.app.saved", what = what, path = path.display()),
                );
            }
            JobResult::Saved {
                what,
                result: Err(e),
            } => {
                self.notice(
                    AlertLevel::Error,
                    tr!("ui.app.not_saved", what = what, why = e),
                );
            }
        }
    }

    fn drive_demo(&mut self, action: &UiAction) {
        let Some(driver) = self.demo_driver.clone() else {
            self.notice(AlertLevel::Warning, tr!("ui.app.no_demo"));
            return;
        };
        if driver.busy() {
            return;
        }
        if matches!(action, UiAction::DemoReplay) {
            driver.replay(&self.handle);
            self.notice(AlertLevel::Info, tr!("ui.app.replaying"));
        } else {
            driver.start(&self.handle);
        }
    }

    fn notice(&mut self, level: AlertLevel, text: String) {
        tracing::info!(?level, "{text}");
        self.notices.push(Banner::new(level, text));
        let excess = self.notices.len().saturating_sub(MAX_NOTICES);
        self.notices.drain(..excess);
    }
}

fn target_label(target: &ConnectTarget) -> String {
    match target {
        ConnectTarget::Embedded => tr!("ui.app.target_embedded"),
        ConnectTarget::Profile(profile) => profile.label(),
        ConnectTarget::Base => tr!("ui.app.target_base"),
        ConnectTarget::EmbeddedOn { broker_port, .. } => {
            tr!("ui.app.target_port", port = broker_port)
        }
    }
}

impl eframe::App for OtaApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.update_logic(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame_ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        self.view.settings.save(storage);
    }
}
