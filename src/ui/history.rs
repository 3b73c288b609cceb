//! History: past and running campaigns (from the database, via the snapshot) with their
//! per-device outcomes, and the report export (CSV / JSON, the shape of `rollout --report`).

use egui::{RichText, Ui};
use egui_extras::{Column, TableBuilder};

use super::action::{ReportFormat, UiAction};
use super::explain::explain_code;
use super::filter::status_label;
use super::theme;
use super::widgets;
use crate::engine::{CampaignView, Snapshot};
use crate::i18n::tr;
use crate::rollout::CampaignId;

#[derive(Debug, Default)]
pub struct HistoryState {
    pub picked: Option<CampaignId>,
}

pub fn history_ui(
    ui: &mut Ui,
    snap: &Snapshot,
    state: &mut HistoryState,
    actions: &mut Vec<UiAction>,
) {
    if snap.campaigns.is_empty() {
        ui.weak(tr!("ui.history.none_yet"));
        return;
    }
    ui.columns(2, |cols| {
        let [list, detail] = cols else { return };
        egui::ScrollArea::vertical()
            .id_salt("history-list")
            .auto_shrink([false, false])
            .show(list, |ui| {
                for c in &snap.campaigns {
                    let s = &c.snapshot;
                    let text = tr!(
                        "ui.history.item",
                        id = s.id,
                        name = if s.name.is_empty() {
                            tr!("ui.history.campaign")
                        } else {
                            s.name.clone()
                        },
                        version = s.target_version,
                        state = crate::terms::states::campaign_state(s.state),
                        counts = widgets::summary_text(&s.counts)
                    );
                    let picked = state.picked == Some(s.id);
                    if ui.selectable_label(picked, text).clicked() {
                        state.picked = Some(s.id);
                    }
                }
            });
        let picked = state
            .picked
            .and_then(|id| snap.campaigns.iter().find(|c| c.snapshot.id == id));
        match picked {
            Some(view) => outcome_ui(detail, view, actions),
            None => {
                detail.weak(tr!("ui.history.pick"));
            }
        }
    });
}

fn outcome_ui(ui: &mut Ui, view: &CampaignView, actions: &mut Vec<UiAction>) {
    let s = &view.snapshot;
    ui.horizontal(|ui| {
        ui.label(
            RichText::new(tr!(
                "ui.history.heading",
                id = s.id,
                version = s.target_version
            ))
            .strong(),
        );
        if ui.button(tr!("ui.history.export_csv")).clicked() {
            actions.push(UiAction::ExportReport {
                campaign: s.id,
                format: ReportFormat::Csv,
            });
        }
        if ui.button(tr!("ui.history.export_json")).clicked() {
            actions.push(UiAction::ExportReport {
                campaign: s.id,
                format: ReportFormat::Json,
            });
        }
    });
    widgets::stacked_bar_ui(ui, &s.counts);
    TableBuilder::new(ui)
        .id_salt(("outcomes", s.id.0))
        .striped(true)
        .column(Column::initial(200.0).clip(true))
        .column(Column::initial(90.0))
        .column(Column::initial(70.0).clip(true))
        .column(Column::initial(70.0).clip(true))
        .column(Column::initial(60.0))
        .column(Column::remainder())
        .header(20.0, |mut h| {
            for title in [
                tr!("ui.history.device"),
                tr!("ui.history.outcome"),
                tr!("ui.history.from"),
                tr!("ui.history.to"),
                tr!("ui.history.attempts"),
                tr!("ui.history.error"),
            ] {
                h.col(|ui| {
                    ui.strong(title);
                });
            }
        })
        .body(|body| {
            body.rows(20.0, s.devices.len(), |mut row| {
                let Some(d) = s.devices.get(row.index()) else {
                    return;
                };
                row.col(|ui| {
                    ui.label(d.id.to_string());
                });
                row.col(|ui| {
                    ui.colored_label(theme::status_color(d.status), status_label(d.status));
                });
                row.col(|ui| {
                    ui.label(d.from_version.as_deref().unwrap_or(""));
                });
                row.col(|ui| {
                    ui.label(d.to_version.as_deref().unwrap_or(""));
                });
                row.col(|ui| {
                    ui.label(d.attempts.to_string());
                });
                row.col(|ui| {
                    let mut text = d
                        .error
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default();
                    if let Some(explained) =
                        d.code.and_then(|code| explain_code(d.id.dialect(), code))
                    {
                        text = if text.is_empty() {
                            explained
                        } else {
                            format!("{text} — {explained}")
                        };
                    }
                    ui.add(egui::Label::new(text).truncate());
                });
            });
        });
}
