//! The summary strip: while a campaign is under way, one band under the connection bar, in sight
//! whatever the window's size and however the side panel is scrolled. It says where the
//! campaign stands (state, wave, finished of total, a stacked bar with the count of each status,
//! the ETA, which waits for silent devices) and holds the controls that matter mid-rollout
//! (pause / resume, cancel). The side panel keeps the details (plot, retries, next wave).

use egui::{RichText, Ui};

use super::action::UiAction;
use super::format;
use super::theme;
use super::widgets;
use crate::engine::CampaignView;
use crate::i18n::tr;
use crate::protocol::{CancelSupport, registry};
use crate::rollout::{CampaignState, Counts};

/// Width of the strip's stacked bar: wide enough to read a 1 % slice, narrow enough to leave
/// the counts and the controls on the same line at 1280 px.
const BAR_WIDTH: f32 = 220.0;

/// Whether the strip shows `view`: the engine drives it and it has not ended.
pub fn wanted(view: &CampaignView) -> bool {
    view.live && !view.snapshot.state.is_finished()
}

/// "12 of 58 done, 10 succeeded": the strip's headline count.
pub fn done_text(counts: &Counts) -> String {
    let done = counts.succeeded + counts.failures() + counts.canceled + counts.skipped;
    tr!(
        "ui.strip.done",
        done = done,
        total = counts.total,
        succeeded = counts.succeeded
    )
}

/// "ETA 3 min 10 s", or "ETA —" while it cannot be told.
pub fn eta_text(view: &CampaignView) -> String {
    match view.eta_secs {
        Some(eta) if !view.snapshot.state.is_finished() => {
            tr!("ui.strip.eta", eta = format::duration_secs(eta))
        }
        _ => tr!("ui.strip.eta_unknown"),
    }
}

pub fn summary_strip_ui(ui: &mut Ui, view: &CampaignView, actions: &mut Vec<UiAction>) {
    let s = &view.snapshot;
    let id = s.id;
    ui.horizontal_wrapped(|ui| {
        let name = if s.name.is_empty() {
            tr!("ui.strip.to_version", version = s.target_version)
        } else {
            s.name.clone()
        };
        ui.label(RichText::new(format!("#{id}: {name}")).strong());
        widgets::status_chip_ui(
            ui,
            state_color(s.state),
            &crate::terms::states::campaign_state(s.state),
        );
        if let Some(current) = s.waves.current {
            let wave = ui.label(tr!(
                "ui.strip.wave",
                wave = current + 1,
                count = s.waves.count
            ));
            if s.waves.blocked {
                wave.on_hover_text(tr!("ui.strip.wave_blocked"));
            }
        }
        ui.separator();
        ui.label(RichText::new(done_text(&s.counts)).strong());
        ui.label(RichText::new(eta_text(view)).strong())
            .on_hover_text(tr!("ui.strip.eta_hover"));
        ui.allocate_ui(egui::vec2(BAR_WIDTH, 18.0), |ui| {
            widgets::stacked_bar_only_ui(ui, &s.counts);
        });
        for status in crate::rollout::DeviceStatus::ALL {
            let n = s.counts.get(status);
            if n > 0 {
                // One label per count, so that the strip wraps between counts, never inside one.
                ui.label(
                    RichText::new(tr!(
                        "ui.widgets.count_status",
                        count = n,
                        status = super::filter::status_label(status)
                    ))
                    .color(theme::status_color(status)),
                );
            }
        }
        ui.separator();
        if s.state == CampaignState::Running && ui.button(tr!("ui.strip.pause")).clicked() {
            actions.push(UiAction::Pause(id));
        }
        if s.state == CampaignState::Paused && ui.button(tr!("ui.strip.resume")).clicked() {
            actions.push(UiAction::Resume(id));
        }
        if ui.button(tr!("ui.strip.cancel")).clicked() {
            actions.push(UiAction::Cancel(id));
        }
        for dialect in &view.dialects {
            if let CancelSupport::CannotRecall { note, detail } =
                registry::capabilities(*dialect).cancel
            {
                let (note, detail) = crate::terms::dialect::cancel_note(*dialect, note, detail);
                ui.weak(note).on_hover_text(detail);
            }
        }
    });
    if let Some(why) = &view.halted {
        ui.colored_label(theme::BAD, tr!("ui.strip.halted", why = why));
    }
}

fn state_color(state: CampaignState) -> egui::Color32 {
    match state {
        CampaignState::Running => theme::GOOD,
        CampaignState::Paused => theme::WARN,
        _ => egui::Color32::GRAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::DeviceStatus;

    #[test]
    fn the_headline_counts_every_ended_device() {
        let counts = Counts::from_statuses([
            DeviceStatus::Succeeded,
            DeviceStatus::Failed,
            DeviceStatus::Downloading,
            DeviceStatus::Pending,
        ]);
        assert_eq!(done_text(&counts), "2 of 4 done, 1 succeeded");
    }
}
