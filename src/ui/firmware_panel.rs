//! The firmware panel: open a file (native dialog, Ctrl+O, or drop it on the window), the
//! background hashing with progress and cancel, the package library, the chosen package's size
//! and digests with copy buttons, and what the campaign will offer: version, module, dialect
//! options, download location. Holds the form; the engine does the hashing.

use std::collections::BTreeMap;

use egui::{ProgressBar, RichText, Ui};

use super::action::UiAction;
use super::format;
use super::widgets;
use crate::device_id::DialectId;
use crate::engine::{DownloadUrlError, Snapshot, validate_download_url};
use crate::firmware::StoredPackage;
use crate::i18n::tr;
use crate::protocol::{NoticeSetting, OfferField, registry};
use crate::rollout::DialectSettings;
use crate::terms::dialect as terms;

/// Where the campaign tells devices to download the package.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DownloadChoice {
    /// A link of its own on the console's firmware server (or the CLI's `--url`).
    #[default]
    Embedded,
    /// The URL the operator typed, served by someone else.
    External,
}

/// What the operator filled in about the package to roll out.
#[derive(Debug, Clone, Default)]
pub struct FirmwareForm {
    /// SHA-256 of the chosen package in the library.
    pub package: Option<String>,
    /// Target version devices must report.
    pub version: String,
    /// Module to upgrade; empty = the device's own firmware.
    pub module: String,
    /// Sent with the notice where the dialect carries a description ([`OfferField::Description`]).
    pub description: String,
    /// Campaign name for the history; empty = derived.
    pub name: String,
    pub settings: DialectSettings,
    /// The text settings as typed, by CLI flag (unique over all dialects): `settings` holds
    /// each one only once its dialect accepts it.
    pub setting_texts: BTreeMap<&'static str, String>,
    /// Where devices download from: the embedded server or `external_url`.
    pub download: DownloadChoice,
    /// An existing download URL of this package, as typed (used with `DownloadChoice::External`).
    pub external_url: String,
    /// The newest package seen, so a finished import becomes the chosen package.
    newest_seen: Option<String>,
}

impl FirmwareForm {
    /// Follows the library: a newly imported package is chosen, a vanished one is dropped.
    pub fn sync_with(&mut self, packages: &[StoredPackage]) {
        let newest = packages.first().map(|p| p.package.sha256.clone());
        if newest != self.newest_seen {
            if newest.is_some() {
                self.package = newest.clone();
            }
            self.newest_seen = newest;
        }
        if let Some(sha) = &self.package
            && !packages.iter().any(|p| &p.package.sha256 == sha)
        {
            self.package = None;
        }
    }

    pub fn chosen<'a>(&self, packages: &'a [StoredPackage]) -> Option<&'a StoredPackage> {
        let sha = self.package.as_ref()?;
        packages.iter().find(|p| &p.package.sha256 == sha)
    }

    /// Why a campaign cannot start with this form yet (`None` = ready).
    pub fn missing(&self, packages: &[StoredPackage]) -> Option<String> {
        if self.chosen(packages).is_none() {
            Some(tr!("ui.firmware.choose_package"))
        } else if self.version.trim().is_empty() {
            Some(tr!("ui.firmware.enter_version"))
        } else if self.download_url_error().is_some() {
            Some(tr!("ui.firmware.enter_url"))
        } else if self.setting_text_error().is_some() {
            Some(tr!("ui.firmware.invalid_setting"))
        } else {
            None
        }
    }

    /// The URL the campaign announces instead of the embedded server's (`None` = embedded).
    pub fn download_url(&self) -> Option<String> {
        match self.download {
            DownloadChoice::Embedded => None,
            DownloadChoice::External => Some(self.external_url.trim().to_owned()),
        }
    }

    /// The first text setting as typed that its dialect refuses, and why.
    pub fn setting_text_error(&self) -> Option<(&'static NoticeSetting, String)> {
        registry::all()
            .into_iter()
            .flat_map(|d| d.notice_settings())
            .find_map(|setting| {
                let typed = self.setting_texts.get(setting.cli_flag)?;
                let check = setting.text()?.validate;
                match typed.trim() {
                    "" => None,
                    text => check(text).err().map(|e| (setting, e)),
                }
            })
    }

    /// What is wrong with the external URL, when one is chosen.
    pub fn download_url_error(&self) -> Option<DownloadUrlError> {
        self.download_url()
            .and_then(|url| validate_download_url(&url).err())
    }
}

pub fn firmware_panel_ui(
    ui: &mut Ui,
    snap: &Snapshot,
    form: &mut FirmwareForm,
    actions: &mut Vec<UiAction>,
) {
    form.sync_with(&snap.packages);
    ui.horizontal(|ui| {
        if ui
            .button(tr!("ui.firmware.open"))
            .on_hover_text(tr!("ui.firmware.open_hover"))
            .clicked()
        {
            actions.push(UiAction::OpenFileDialog);
        }
        ui.weak(tr!("ui.firmware.or_drop"));
    });
    if let Some(import) = &snap.import {
        let name = import
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ui.horizontal(|ui| {
            ui.add(
                ProgressBar::new(format::fraction(import.done_bytes, import.total_bytes))
                    .show_percentage()
                    .desired_width(200.0),
            );
            if ui.button(tr!("ui.firmware.cancel_import")).clicked() {
                actions.push(UiAction::CancelImport);
            }
        });
        ui.weak(tr!(
            "ui.firmware.hashing",
            name = name,
            done = format::bytes(import.done_bytes),
            total = format::bytes(import.total_bytes)
        ));
    }
    library_ui(ui, &snap.packages, form);
    if let Some(stored) = form.chosen(&snap.packages) {
        digests_ui(ui, stored);
    }
    offer_ui(ui, snap, form);
}

fn package_label(p: &StoredPackage) -> String {
    let short: String = p.package.sha256.chars().take(8).collect();
    format!("{} ({short})", p.package.file_name)
}

fn library_ui(ui: &mut Ui, packages: &[StoredPackage], form: &mut FirmwareForm) {
    if packages.is_empty() {
        ui.weak(tr!("ui.firmware.no_package"));
        return;
    }
    let selected = form
        .chosen(packages)
        .map_or_else(|| tr!("ui.firmware.choose"), package_label);
    egui::ComboBox::new("package", tr!("ui.firmware.package"))
        .selected_text(selected)
        .width(240.0)
        .show_ui(ui, |ui| {
            for p in packages {
                let sha = Some(p.package.sha256.clone());
                ui.selectable_value(&mut form.package, sha, package_label(p));
            }
        });
}

fn digests_ui(ui: &mut Ui, stored: &StoredPackage) {
    let p = &stored.package;
    egui::Grid::new("digests")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            ui.label(tr!("ui.firmware.file"));
            ui.label(&p.file_name);
            ui.end_row();
            ui.label(tr!("ui.firmware.size"));
            ui.label(tr!(
                "ui.firmware.size_value",
                size = format::bytes(p.size),
                bytes = p.size
            ));
            ui.end_row();
            widgets::copy_row_ui(ui, "MD5", &p.md5);
            widgets::copy_row_ui(ui, "SHA-256", &p.sha256);
            widgets::copy_row_ui(ui, &tr!("ui.firmware.checksum"), &p.checksum);
        });
}

fn offer_ui(ui: &mut Ui, snap: &Snapshot, form: &mut FirmwareForm) {
    ui.add_space(4.0);
    egui::Grid::new("offer").num_columns(2).show(ui, |ui| {
        widgets::text_row_ui(
            ui,
            &tr!("ui.firmware.target_version"),
            &mut form.version,
            &tr!("ui.firmware.target_version_hint"),
        );
        widgets::text_row_ui(
            ui,
            &tr!("ui.firmware.target_module"),
            &mut form.module,
            &tr!("ui.firmware.default_module"),
        );
        widgets::text_row_ui(
            ui,
            &tr!("ui.firmware.description"),
            &mut form.description,
            &description_hint(),
        );
        widgets::text_row_ui(
            ui,
            &tr!("ui.firmware.campaign_name"),
            &mut form.name,
            &tr!("ui.firmware.campaign_name_hint"),
        );
        for dialect in registry::all() {
            for setting in dialect.notice_settings() {
                if setting.text().is_some() {
                    text_setting_row_ui(ui, dialect.id(), setting, form);
                } else {
                    setting_row_ui(ui, dialect.id(), setting, &mut form.settings);
                }
            }
        }
        download_rows_ui(ui, snap, form);
    });
}

/// "Download from": the embedded server (read-only base) or an external URL typed here.
fn download_rows_ui(ui: &mut Ui, snap: &Snapshot, form: &mut FirmwareForm) {
    ui.label(tr!("ui.firmware.download_from"));
    ui.horizontal(|ui| {
        ui.radio_value(
            &mut form.download,
            DownloadChoice::Embedded,
            tr!("ui.firmware.embedded_server"),
        );
        ui.radio_value(
            &mut form.download,
            DownloadChoice::External,
            tr!("ui.firmware.external_url"),
        );
    });
    ui.end_row();
    match form.download {
        DownloadChoice::Embedded => {
            ui.label("");
            match &snap.firmware_base {
                Some(base) => ui
                    .label(RichText::new(base).monospace())
                    .on_hover_text(tr!("ui.firmware.own_link_hover")),
                None => ui.weak(tr!("ui.firmware.no_server")),
            };
            ui.end_row();
        }
        DownloadChoice::External => {
            widgets::text_row_ui(
                ui,
                &tr!("ui.firmware.download_url"),
                &mut form.external_url,
                &tr!("ui.firmware.download_url_hint"),
            );
            if let Some(e) = form.download_url_error() {
                ui.label("");
                ui.colored_label(super::theme::BAD, e.to_string());
                ui.end_row();
            }
        }
    }
}

/// What the drop highlight says while files are dragged over the window (`None` = nothing
/// dragged). Only the first file is imported, as on drop.
pub fn drop_hint(hovered: &[egui::HoveredFile]) -> Option<String> {
    let first = hovered.first()?;
    let name = first
        .path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let what = name.map_or_else(|| tr!("ui.firmware.the_file"), |n| format!("\"{n}\""));
    Some(match hovered.len() {
        1 => tr!("ui.firmware.drop", what = what),
        n => tr!("ui.firmware.drop_many", what = what, count = n),
    })
}

/// Dims the window and names the file while a file is dragged over it, so the operator sees
/// the drop will be taken.
pub fn drop_overlay_ui(ctx: &egui::Context) {
    let Some(hint) = ctx.input(|i| drop_hint(&i.raw.hovered_files)) else {
        return;
    };
    let rect = ctx.content_rect();
    // One foreground area over the whole window: the dimming, the frame and the text (a
    // label, so screen readers and tests see it too).
    egui::Area::new(egui::Id::unique("drop-highlight"))
        .order(egui::Order::Foreground)
        .fixed_pos(rect.min)
        .show(ctx, |ui| {
            ui.set_min_size(rect.size());
            let painter = ui.painter();
            painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(150));
            painter.rect_stroke(
                rect.shrink(8.0),
                10.0,
                egui::Stroke::new(4.0, super::theme::GOOD),
                egui::StrokeKind::Inside,
            );
            let text_rect =
                egui::Rect::from_center_size(rect.center(), egui::vec2(rect.width() - 40.0, 60.0));
            ui.put(
                text_rect,
                egui::Label::new(
                    RichText::new(hint)
                        .size(26.0)
                        .strong()
                        .color(egui::Color32::WHITE),
                ),
            );
        });
}

/// One dialect's notice setting as a labelled choice (the dialects say which settings exist).
fn setting_row_ui(
    ui: &mut Ui,
    dialect: DialectId,
    setting: &'static NoticeSetting,
    settings: &mut DialectSettings,
) {
    let label = ui
        .label(terms::setting_label(dialect, setting))
        .on_hover_text(terms::setting_help(dialect, setting))
        .id;
    let current = settings.value(dialect, setting);
    let current_label = setting.choice(current).map_or_else(
        || current.into(),
        |c| terms::choice_label(dialect, setting, c),
    );
    egui::ComboBox::from_id_salt(setting.cli_flag)
        .selected_text(current_label)
        .show_ui(ui, |ui| {
            for choice in setting.choices() {
                if ui
                    .selectable_label(
                        current == choice.value,
                        terms::choice_label(dialect, setting, choice),
                    )
                    .clicked()
                {
                    // The choice comes from the setting itself, so it is always offered.
                    let _ = settings.set(dialect, setting, choice.value);
                }
            }
        })
        .response
        .labelled_by(label);
    ui.end_row();
}

/// One dialect's text setting (a template): a multi-line field, what its dialect refuses in
/// it shown underneath, the value kept only once accepted.
fn text_setting_row_ui(
    ui: &mut Ui,
    dialect: DialectId,
    setting: &'static NoticeSetting,
    form: &mut FirmwareForm,
) {
    let label = ui
        .label(terms::setting_label(dialect, setting))
        .on_hover_text(terms::setting_help(dialect, setting))
        .id;
    let settings = &mut form.settings;
    let typed = form
        .setting_texts
        .entry(setting.cli_flag)
        .or_insert_with(|| settings.text(dialect, setting).to_owned());
    let multiline = setting.text().is_some_and(|t| t.multiline);
    let edit = if multiline {
        egui::TextEdit::multiline(typed)
            .code_editor()
            .desired_rows(4)
    } else {
        egui::TextEdit::singleline(typed)
    };
    ui.add(edit.hint_text(tr!("ui.firmware.template_hint")))
        .labelled_by(label);
    ui.end_row();
    // Checked every frame, so the reason stays in view until the text is fixed.
    if let Err(e) = settings.set(dialect, setting, typed) {
        ui.label("");
        ui.colored_label(super::theme::BAD, e.to_string());
        ui.end_row();
    }
}

/// Which dialects' notices carry the description.
fn description_hint() -> String {
    let names: Vec<_> = registry::all()
        .into_iter()
        .filter(|d| {
            d.capabilities()
                .offer_fields
                .contains(&OfferField::Description)
        })
        .map(|d| terms::label(d.id()))
        .collect();
    tr!(
        "ui.firmware.sent_to",
        names = names.join(&tr!("ui.widgets.separator"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firmware::FirmwarePackage;

    fn stored(sha: &str) -> StoredPackage {
        StoredPackage {
            package: FirmwarePackage {
                file_name: format!("{sha}.bin"),
                size: 1,
                md5: "m".into(),
                sha256: sha.into(),
                checksum: "c".into(),
            },
            path: sha.into(),
        }
    }

    #[test]
    fn a_new_import_becomes_the_chosen_package() {
        let mut form = FirmwareForm::default();
        assert_eq!(
            form.missing(&[]).as_deref(),
            Some("choose or import a firmware package")
        );
        let lib = vec![stored("aa")];
        form.sync_with(&lib);
        assert_eq!(form.package.as_deref(), Some("aa"));
        assert_eq!(
            form.missing(&lib).as_deref(),
            Some("enter the target version")
        );
        form.version = "2.0".into();
        assert_eq!(form.missing(&lib).as_deref(), None);
        // The operator picks an older one; it stays until a newer import arrives.
        let lib = vec![stored("bb"), stored("aa")];
        form.sync_with(&lib);
        assert_eq!(form.package.as_deref(), Some("bb"));
        form.package = Some("aa".into());
        form.sync_with(&lib);
        assert_eq!(form.package.as_deref(), Some("aa"));
        form.sync_with(&[stored("bb")]);
        assert_eq!(form.package, None);
    }

    #[test]
    fn an_external_download_url_must_be_valid_before_a_start() {
        let lib = vec![stored("aa")];
        let mut form = FirmwareForm {
            version: "2.0".into(),
            ..FirmwareForm::default()
        };
        form.sync_with(&lib);
        assert_eq!(form.download_url(), None);
        form.download = DownloadChoice::External;
        assert_eq!(form.download_url_error(), Some(DownloadUrlError::Empty));
        assert_eq!(
            form.missing(&lib).as_deref(),
            Some("enter a valid external download URL, or download from the embedded server")
        );
        form.external_url = "ftp://x/fw.bin".into();
        assert!(form.missing(&lib).is_some());
        form.external_url = " https://cdn.example.test/fw.bin ".into();
        assert_eq!(form.missing(&lib).as_deref(), None);
        assert_eq!(
            form.download_url().as_deref(),
            Some("https://cdn.example.test/fw.bin")
        );
        // Switching back forgets nothing typed but no longer uses it.
        form.download = DownloadChoice::Embedded;
        assert_eq!(form.download_url(), None);
        assert_eq!(form.external_url, " https://cdn.example.test/fw.bin ");
    }

    #[test]
    fn the_drop_hint_names_the_first_hovered_file() {
        assert_eq!(drop_hint(&[]), None);
        let file = |p: Option<&str>| egui::HoveredFile {
            path: p.map(Into::into),
            mime: String::new(),
        };
        assert_eq!(
            drop_hint(&[file(Some("/tmp/fw-2.0.bin"))]).as_deref(),
            Some("Drop to import \"fw-2.0.bin\"")
        );
        assert_eq!(
            drop_hint(&[file(None), file(Some("/b"))]).as_deref(),
            Some("Drop to import the firmware file (the first of 2 files)")
        );
    }

    #[test]
    fn a_refused_text_setting_holds_the_start_until_it_is_fixed() {
        use crate::protocol::aws;
        let lib = vec![stored("aa")];
        let mut form = FirmwareForm {
            version: "2.0".into(),
            ..FirmwareForm::default()
        };
        form.sync_with(&lib);
        let flag = aws::DOCUMENT.cli_flag;
        form.setting_texts
            .insert(flag, "{\"v\": {{version}}}".into());
        let (setting, why) = form.setting_text_error().unwrap();
        assert_eq!(setting.key, aws::DOCUMENT.key);
        assert!(why.contains("line 1"), "{why}");
        assert_eq!(form.missing(&lib), Some(tr!("ui.firmware.invalid_setting")));
        form.setting_texts
            .insert(flag, "{\"v\": \"{{version}}\"}".into());
        assert!(form.setting_text_error().is_none());
        assert_eq!(form.missing(&lib), None);
        form.setting_texts.insert(flag, String::new());
        assert_eq!(form.missing(&lib), None);
    }
}
