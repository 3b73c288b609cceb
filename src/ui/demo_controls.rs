//! The demo's buttons beside the DEMO badge: start the story with one click while nothing has
//! run, replay it from the beginning once it has. What starting and replaying do belongs to
//! whoever runs the demo ([`DemoDriver`], implemented by `cli::window`): the window only asks,
//! and the driver does the work on the runtime, never on the UI thread.

use egui::{RichText, Ui};

use super::action::UiAction;
use crate::engine::{EngineHandle, Snapshot};
use crate::i18n::tr;

/// Runs the demo for the window. Each call returns at once; the work runs elsewhere.
pub trait DemoDriver: Send + Sync + std::fmt::Debug {
    /// Starts the story's campaign over the simulated fleet.
    fn start(&self, engine: &EngineHandle);
    /// Cancels what runs, replaces the simulated devices by fresh ones and starts again.
    fn replay(&self, engine: &EngineHandle);
    /// A start or replay is under way (further clicks are ignored).
    fn busy(&self) -> bool;
    /// Why the last start or replay failed, once.
    fn take_error(&self) -> Option<String>;
}

/// "Start the demo" while no campaign exists, "Replay demo" afterwards.
pub fn demo_controls_ui(ui: &mut Ui, snap: &Snapshot, actions: &mut Vec<UiAction>) {
    if snap.campaigns.is_empty() {
        let start = egui::Button::new(
            RichText::new(tr!("ui.demo.start"))
                .strong()
                .color(egui::Color32::WHITE),
        )
        .fill(super::theme::GOOD);
        if ui
            .add(start)
            .on_hover_text(tr!("ui.demo.start_hover"))
            .clicked()
        {
            actions.push(UiAction::DemoStart);
        }
    } else if ui
        .small_button(tr!("ui.demo.replay"))
        .on_hover_text(tr!("ui.demo.replay_hover"))
        .clicked()
    {
        actions.push(UiAction::DemoReplay);
    }
}
