//! The "Connection" dialog: the embedded broker and the saved broker profiles (URL, TLS CA,
//! client certificate and key, user, whether to remember the password, publishing connections),
//! a form to add or edit one, and "Connect", which asks the app to restart the engine on the
//! chosen broker. Holds the form (the typed password only until Connect); never reaches the
//! keyring or the engine itself.
//! Also lists the dialects the console speaks, those from dialect files with their file, and
//! the files that were refused with why.

use std::path::PathBuf;

use egui::{RichText, Ui};

use super::action::{ConnectRequest, UiAction};
use super::profiles::{BrokerProfile, ConnectTarget, MAX_PROFILES, Secret};
use super::theme;
use crate::engine::{AlertLevel, MAX_PUBLISH_CONNECTIONS};
use crate::i18n::tr;

/// The dialog's state.
#[derive(Debug, Default)]
pub struct ConnectionDialog {
    pub open: bool,
    /// `None` = the embedded broker, else an index into the saved profiles.
    pub selected: Option<usize>,
    /// The profile being edited (a new one, or a copy of the selected one).
    pub draft: Option<BrokerProfile>,
    /// Typed password; cleared when sent.
    password: String,
    /// A switch is under way: Connect is disabled.
    pub pending: Option<String>,
    /// The last outcome or problem, shown under the buttons.
    pub status: Option<(AlertLevel, String)>,
}

impl ConnectionDialog {
    fn select(&mut self, selected: Option<usize>, profiles: &[BrokerProfile]) {
        self.selected = selected;
        self.draft = selected.and_then(|i| profiles.get(i).cloned());
        self.password.clear();
    }

    /// Saves the draft into `profiles` (replacing one of the same name) and selects it.
    fn save_draft(&mut self, profiles: &mut Vec<BrokerProfile>) -> Result<usize, String> {
        let Some(draft) = &self.draft else {
            return Err(tr!("ui.connection.nothing_to_save"));
        };
        draft.validate().map_err(|e| e.to_string())?;
        let mut profile = draft.clone();
        profile.name = profile.name.trim().to_owned();
        profile.url = profile.url.trim().to_owned();
        let existing = self
            .selected
            .filter(|i| profiles.get(*i).is_some_and(|p| p.name == profile.name))
            .or_else(|| profiles.iter().position(|p| p.name == profile.name));
        // A profile saved again keeps its id (and so its broker session); a new one gets one.
        if let Some(old) = existing.and_then(|i| profiles.get(i))
            && profile.client_id.trim().is_empty()
        {
            profile.client_id.clone_from(&old.client_id);
        }
        profile.ensure_client_id();
        if let Some(draft) = &mut self.draft {
            draft.client_id.clone_from(&profile.client_id);
        }
        let index = match existing {
            Some(i) => {
                if let Some(slot) = profiles.get_mut(i) {
                    *slot = profile;
                }
                i
            }
            None if profiles.len() >= MAX_PROFILES => {
                return Err(tr!("ui.connection.too_many", max = MAX_PROFILES));
            }
            None => {
                profiles.push(profile);
                profiles.len() - 1
            }
        };
        self.selected = Some(index);
        Ok(index)
    }

    /// What Connect sends for the current choice (saving a profile being edited first).
    pub fn connect_request(
        &mut self,
        profiles: &mut Vec<BrokerProfile>,
    ) -> Result<ConnectRequest, String> {
        let target = match self.selected {
            None if self.draft.is_none() => ConnectTarget::Embedded,
            _ => {
                let index = self.save_draft(profiles)?;
                let profile = profiles
                    .get(index)
                    .cloned()
                    .ok_or_else(|| tr!("ui.connection.profile_gone"))?;
                ConnectTarget::Profile(profile)
            }
        };
        let password = std::mem::take(&mut self.password);
        Ok(ConnectRequest {
            target,
            password: (!password.is_empty()).then(|| Secret::new(password)),
        })
    }
}

pub fn connection_dialog_ui(
    ctx: &egui::Context,
    broker_in_use: &str,
    dialog: &mut ConnectionDialog,
    profiles: &mut Vec<BrokerProfile>,
    actions: &mut Vec<UiAction>,
) {
    if !dialog.open {
        return;
    }
    let mut open = true;
    egui::Window::new(tr!("ui.connection.title"))
        .id(egui::Id::unique("connection-dialog"))
        .open(&mut open)
        .collapsible(false)
        .resizable(true)
        .default_width(460.0)
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new(tr!("ui.connection.in_use")).strong());
                ui.label(broker_in_use);
            });
            dialects_ui(ui);
            ui.separator();
            profile_list_ui(ui, dialog, profiles, actions);
            if dialog.draft.is_some() {
                ui.separator();
                profile_form_ui(ui, dialog);
            }
            ui.separator();
            buttons_ui(ui, dialog, profiles, actions);
            if let Some(pending) = &dialog.pending {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(pending);
                });
            }
            if let Some((level, text)) = &dialog.status {
                ui.colored_label(theme::alert_color(*level), text);
            }
        });
    dialog.open = open;
}

/// "Dialects: …": every registered dialect (from a file: which), then each refused file.
fn dialects_ui(ui: &mut Ui) {
    let loads = crate::protocol::user::loaded();
    // Open: the list is short, and a refused file should be seen without a click.
    egui::CollapsingHeader::new(tr!("ui.connection.dialects"))
        .id_salt("dialects")
        .default_open(true)
        .show(ui, |ui| {
            for d in crate::protocol::registry::all() {
                let id = d.id();
                let from = loads
                    .iter()
                    .find(|l| l.outcome.as_ref().ok() == Some(&id))
                    .map_or_else(
                        || tr!("ui.connection.built_in"),
                        |l| tr!("ui.connection.from_file", file = l.file.display()),
                    );
                ui.label(format!(
                    "{id} ({}) {from}",
                    crate::terms::dialect::label(id)
                ));
            }
            for l in &loads {
                if let Err(e) = &l.outcome {
                    ui.colored_label(
                        theme::alert_color(AlertLevel::Warning),
                        tr!("ui.connection.not_loaded", why = e),
                    );
                }
            }
        });
}

fn profile_list_ui(
    ui: &mut Ui,
    dialog: &mut ConnectionDialog,
    profiles: &mut Vec<BrokerProfile>,
    actions: &mut Vec<UiAction>,
) {
    let embedded = dialog.selected.is_none() && dialog.draft.is_none();
    if ui
        .selectable_label(embedded, tr!("ui.connection.embedded"))
        .clicked()
    {
        dialog.select(None, profiles);
    }
    let mut delete = None;
    for (i, profile) in profiles.iter().enumerate() {
        ui.horizontal(|ui| {
            let chosen = dialog.selected == Some(i);
            if ui.selectable_label(chosen, profile.label()).clicked() {
                delete = None;
                dialog.selected = Some(i);
                dialog.draft = Some(profile.clone());
                dialog.password.clear();
            }
            if ui
                .small_button(tr!("ui.connection.delete"))
                .on_hover_text(tr!("ui.connection.delete_hover", name = profile.name))
                .clicked()
            {
                delete = Some(i);
            }
        });
    }
    if let Some(i) = delete
        && i < profiles.len()
    {
        let removed = profiles.remove(i);
        actions.push(UiAction::ForgetPassword(removed.name));
        dialog.select(None, profiles);
    }
    if ui.button(tr!("ui.connection.new_profile")).clicked() {
        dialog.selected = None;
        dialog.draft = Some(BrokerProfile {
            url: "mqtt://".into(),
            remember_password: true,
            publish_connections: 1,
            ..BrokerProfile::default()
        });
        dialog.password.clear();
    }
}

fn path_row_ui(ui: &mut Ui, label: &str, value: &mut Option<PathBuf>, hint: &str) {
    let mut text = value
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if super::widgets::text_row_ui(ui, label, &mut text, hint) {
        let trimmed = text.trim();
        *value = (!trimmed.is_empty()).then(|| PathBuf::from(trimmed));
    }
}

fn profile_form_ui(ui: &mut Ui, dialog: &mut ConnectionDialog) {
    let Some(draft) = &mut dialog.draft else {
        return;
    };
    egui::Grid::new("profile-form")
        .num_columns(2)
        .show(ui, |ui| {
            super::widgets::text_row_ui(
                ui,
                &tr!("ui.connection.profile_name"),
                &mut draft.name,
                &tr!("ui.connection.profile_name_hint"),
            );
            super::widgets::text_row_ui(
                ui,
                &tr!("ui.connection.broker_url"),
                &mut draft.url,
                "mqtts://host:8883",
            );
            path_row_ui(
                ui,
                &tr!("ui.connection.ca_file"),
                &mut draft.ca_file,
                &tr!("ui.connection.ca_file_hint"),
            );
            path_row_ui(
                ui,
                &tr!("ui.connection.client_cert"),
                &mut draft.client_cert,
                &tr!("ui.connection.mutual_tls_hint"),
            );
            path_row_ui(
                ui,
                &tr!("ui.connection.client_key"),
                &mut draft.client_key,
                &tr!("ui.connection.mutual_tls_hint"),
            );
            super::widgets::text_row_ui(
                ui,
                &tr!("ui.connection.user_name"),
                &mut draft.username,
                &tr!("ui.connection.none"),
            );
            let label = ui.label(tr!("ui.connection.password")).id;
            ui.add(
                egui::TextEdit::singleline(&mut dialog.password)
                    .password(true)
                    .hint_text(tr!("ui.connection.password_hint"))
                    .desired_width(200.0),
            )
            .labelled_by(label);
            ui.end_row();
            ui.label("");
            ui.checkbox(
                &mut draft.remember_password,
                tr!("ui.connection.remember_password"),
            )
            .on_hover_text(tr!("ui.connection.remember_password_hover"));
            ui.end_row();
            publish_connections_row_ui(ui, &mut draft.publish_connections);
        });
    if let Err(e) = draft.validate() {
        ui.colored_label(theme::WARN, e.to_string());
    }
}

/// The number of publishing connections; a profile saved before it existed shows 1 (what a
/// console started without `--publish-connections` uses) until it is changed.
fn publish_connections_row_ui(ui: &mut Ui, count: &mut u16) {
    let mut shown = (*count).max(1);
    let field = super::widgets::number_field_ui(
        ui,
        &tr!("ui.connection.publish_connections"),
        &mut shown,
        1..=MAX_PUBLISH_CONNECTIONS,
        "",
    );
    if field
        .on_hover_text(tr!("ui.connection.publish_connections_hover"))
        .changed()
    {
        *count = shown;
    }
    ui.end_row();
}

fn buttons_ui(
    ui: &mut Ui,
    dialog: &mut ConnectionDialog,
    profiles: &mut Vec<BrokerProfile>,
    actions: &mut Vec<UiAction>,
) {
    ui.horizontal(|ui| {
        if dialog.draft.is_some() && ui.button(tr!("ui.connection.save_profile")).clicked() {
            dialog.status = Some(match dialog.save_draft(profiles) {
                Ok(_) => (AlertLevel::Info, tr!("ui.connection.saved")),
                Err(e) => (AlertLevel::Error, e),
            });
        }
        let idle = dialog.pending.is_none();
        if ui
            .add_enabled(idle, egui::Button::new(tr!("ui.connection.connect")))
            .clicked()
        {
            match dialog.connect_request(profiles) {
                Ok(request) => {
                    dialog.status = None;
                    actions.push(UiAction::Connect(Box::new(request)));
                }
                Err(e) => dialog.status = Some((AlertLevel::Error, e)),
            }
        }
        if ui.button(tr!("ui.connection.close")).clicked() {
            dialog.open = false;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_saves_the_draft_and_carries_the_typed_password_once() {
        let mut dialog = ConnectionDialog::default();
        let mut profiles = Vec::new();
        let request = dialog.connect_request(&mut profiles).unwrap();
        assert_eq!(request.target, ConnectTarget::Embedded);
        dialog.draft = Some(BrokerProfile {
            name: " lab ".into(),
            url: "mqtt://10.0.0.9:1883".into(),
            ..BrokerProfile::default()
        });
        dialog.password = "pw".into();
        let request = dialog.connect_request(&mut profiles).unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].name, "lab");
        // A new profile gets a client id of its own, kept when it is saved again.
        let id = profiles[0].client_id.clone();
        assert!(id.starts_with("ota-console-"), "{id:?}");
        assert!(matches!(&request.target, ConnectTarget::Profile(p) if p.name == "lab"));
        assert_eq!(request.password, Some(Secret::new("pw")));
        // Saving again under the same name replaces, and the password was not kept.
        let request = dialog.connect_request(&mut profiles).unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(request.password, None);
        assert_eq!(profiles[0].client_id, id);
        // Even from a fresh draft of the same name (no id typed in).
        dialog.draft = Some(BrokerProfile {
            name: "lab".into(),
            url: "mqtt://10.0.0.9:1884".into(),
            ..BrokerProfile::default()
        });
        dialog.connect_request(&mut profiles).unwrap();
        assert_eq!(profiles[0].client_id, id);
        dialog.draft = Some(BrokerProfile {
            name: "bad".into(),
            url: "http://x".into(),
            ..BrokerProfile::default()
        });
        dialog.selected = None;
        let err = dialog.connect_request(&mut profiles).unwrap_err();
        assert!(err.contains("broker URL"), "{err}");
        assert_eq!(profiles.len(), 1);
    }
}
