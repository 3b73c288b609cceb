//! The desktop window (feature `gui`): egui/eframe only. It reads the engine's `Snapshot` and
//! sends `Command`s through the `EngineHandle`; it never owns devices, campaigns, files or
//! sockets, and never blocks its thread on I/O (file dialogs and exports run on named threads).
//!
//! - [`app`]: `OtaApp`, the eframe app: `logic` (snapshot, jobs, dropped files) and `ui`.
//! - [`console`]: `ConsoleView`, the layout and view state, drawn from one snapshot per frame.
//! - Panels, one per file: [`connection_bar`], [`summary_strip`], [`firmware_panel`],
//!   [`devices_table`], [`tiles`] (cards) and [`wall`] (a few points per device, for large
//!   fleets), [`rollout_panel`], [`inspector`], [`history`], [`toasts`],
//!   [`start_failure`]; shared pieces in [`widgets`].
//! - Pure logic, unit-tested: [`filter`] (filter, sort, grouping, selection), [`format`],
//!   [`explain`] (error codes). Report files come from [`crate::report`], as in the CLI.
//! - Broker profiles: [`connection_dialog`] (the dialog), [`profiles`] (saved, no passwords),
//!   [`vault`] (passwords: OS keyring or memory), [`connector`] (engine switch off-thread).
//! - [`demo_controls`]: the demo's start and replay buttons (the work is a [`DemoDriver`]'s).
//! - [`fonts`] (CJK), [`theme`] (colours), [`language`] (the language switch), [`settings`]
//!   (persisted), [`jobs`] (background
//!   dialogs and file writes), [`action`] (what panels ask for).

pub mod action;
pub mod app;
pub mod connection_bar;
pub mod connection_dialog;
pub mod connector;
pub mod console;
pub mod demo_controls;
pub mod devices_table;
pub mod explain;
pub mod filter;
pub mod firmware_panel;
pub mod fonts;
pub mod format;
pub mod history;
pub mod inspector;
pub mod jobs;
pub mod language;
pub mod profiles;
pub mod rollout_panel;
pub mod settings;
pub mod start_failure;
pub mod summary_strip;
pub mod text_order;
pub mod theme;
pub mod tiles;
pub mod toasts;
pub mod vault;
pub mod wall;
pub mod widgets;

pub use app::OtaApp;
pub use connector::Connector;
pub use console::ConsoleView;
pub use demo_controls::DemoDriver;
pub use fonts::CjkFonts;
pub use settings::Settings;

use crate::engine::EngineHandle;
use crate::i18n::tr;

/// How the window starts.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// A simulated fleet runs in-process: show the DEMO badge.
    pub demo: bool,
    pub title: String,
    /// Inner size of a first window (later runs restore the saved size).
    pub initial_size: [f32; 2],
    /// Settings to start from instead of the saved ones (e.g. a clean demo).
    pub settings: Option<Settings>,
    /// Pre-filled target version (the demo's sample package is 2.0.0).
    pub target_version: Option<String>,
    /// Lets the connection dialog restart the engine on another broker (`None` = the dialog
    /// only shows the broker in use).
    pub connector: Option<Connector>,
    /// The language chosen on the command line (`--lang`): it wins over the window's saved
    /// choice. `None`: the saved choice, else the system locale (already in force).
    pub lang: Option<crate::i18n::Lang>,
    /// The engine did not start: the window opens on this (the failure and its ways out).
    pub start_failure: Option<start_failure::StartFailureForm>,
    /// Starts and replays the demo's story (its buttons appear with the DEMO badge).
    pub demo_driver: Option<std::sync::Arc<dyn DemoDriver>>,
}

impl Default for UiOptions {
    fn default() -> Self {
        UiOptions {
            demo: false,
            title: "ota-console".into(),
            initial_size: [1440.0, 900.0],
            settings: None,
            target_version: None,
            connector: None,
            lang: None,
            start_failure: None,
            demo_driver: None,
        }
    }
}

/// Application id: names the window class and eframe's storage directory.
pub const APP_ID: &str = "ota-console";

/// Opens the window and runs it on the calling (main) thread until it is closed. The engine
/// and its tokio runtime keep running on their own threads.
pub fn run(handle: EngineHandle, options: UiOptions) -> anyhow::Result<()> {
    let fonts = CjkFonts::load();
    if fonts.system_file.is_none() {
        tracing::info!("no system CJK font found; using the bundled subset");
    }
    let mut viewport = egui::ViewportBuilder::default();
    match app_icon() {
        Ok(icon) => viewport = viewport.with_icon(std::sync::Arc::new(icon)),
        Err(e) => tracing::warn!("{}", tr!("ui.run.no_icon", why = e)),
    }
    let native = eframe::NativeOptions {
        viewport: viewport
            .with_title(options.title.clone())
            .with_app_id(APP_ID)
            .with_inner_size(options.initial_size)
            .with_min_inner_size([900.0, 560.0])
            .with_drag_and_drop(true),
        persist_window: true,
        persistence_path: private_settings_file(),
        ..Default::default()
    };
    eframe::run_native(
        APP_ID,
        native,
        Box::new(move |cc| {
            fonts.install(&cc.egui_ctx);
            let settings = options
                .settings
                .clone()
                .unwrap_or_else(|| Settings::load(cc.storage));
            if let Some(lang) = options.lang.or(settings.language) {
                crate::i18n::set(lang);
            }
            let mut app = OtaApp::new(handle, &cc.egui_ctx, settings, options.demo);
            if let Some(connector) = options.connector.clone() {
                app.set_connector(connector);
            }
            if let Some(form) = options.start_failure.clone() {
                app.set_start_failure(form);
            }
            if let Some(driver) = options.demo_driver.clone() {
                app.set_demo_driver(driver);
            }
            if let Some(version) = options.target_version.clone() {
                app.view_mut().firmware.version = version;
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!(tr!("ui.run.failed", why = e)))
}

/// The application icon (the one the desktop entry names, `assets/icon/`), for the window.
pub fn app_icon() -> Result<egui::IconData, String> {
    eframe::icon_data::from_png_bytes(include_bytes!("../../assets/icon/ota-console.png"))
        .map_err(|e| e.to_string())
}

/// The settings file (saved broker profiles: URLs, user names, TLS key paths), made private
/// before eframe first writes it; eframe's own default place, so earlier settings are kept.
/// `None` (eframe's default handling) only when there is no home to keep it in.
fn private_settings_file() -> Option<std::path::PathBuf> {
    let dir = eframe::storage_dir(APP_ID)?;
    let file = dir.join("app.ron");
    let made = crate::private_fs::private_dir(&dir)
        // An empty RON map: what eframe reads as "no settings yet".
        .and_then(|()| crate::private_fs::private_file(&file, b"{}\n"));
    if let Err(e) = made {
        tracing::warn!(
            "{}",
            tr!(
                "ui.run.settings_not_private",
                file = file.display(),
                why = crate::i18n::io_error(&e)
            )
        );
    }
    Some(file)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_app_icon_is_a_square_bitmap() {
        let icon = super::app_icon().unwrap();
        assert_eq!((icon.width, icon.height), (256, 256));
        assert_eq!(icon.rgba.len(), 256 * 256 * 4);
    }
}
