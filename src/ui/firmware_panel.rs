//! The firmware panel: open a file (native dialog, Ctrl+O, or drop it on the window), the
//! background hashing with progress and cancel, the package library, the chosen package's size
//! and digests with copy buttons, and what the campaign will offer: version, module, dialect
//! options, download location. Holds the form; the engine does the hashing.

use egui::{ProgressBar, RichText, Ui};

use super::action::UiAction;
use super::format;
use super::widgets;
use crate::engine::Snapshot;
use crate::firmware::StoredPackage;
use crate::protocol::{DjiUpgradeType, SignMethod};
use crate::rollout::DialectSettings;

/// What the operator filled in about the package to roll out.
#[derive(Debug, Clone, Default)]
pub struct FirmwareForm {
    /// SHA-256 of the chosen package in the library.
    pub package: Option<String>,
    /// Target version devices must report.
    pub version: String,
    /// Module to upgrade; empty = the device's own firmware.
    pub module: String,
    /// Sent to FogCloud devices with the notice.
    pub description: String,
    /// Campaign name for the history; empty = derived.
    pub name: String,
    pub settings: DialectSettings,
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
        if let Some(sha) = &self.package {
            if !packages.iter().any(|p| &p.package.sha256 == sha) {
                self.package = None;
            }
        }
    }

    pub fn chosen<'a>(&self, packages: &'a [StoredPackage]) -> Option<&'a StoredPackage> {
        let sha = self.package.as_ref()?;
        packages.iter().find(|p| &p.package.sha256 == sha)
    }

    /// Why a campaign cannot start with this form yet (`None` = ready).
    pub fn missing(&self, packages: &[StoredPackage]) -> Option<&'static str> {
        if self.chosen(packages).is_none() {
            Some("choose or import a firmware package")
        } else if self.version.trim().is_empty() {
            Some("enter the target version")
        } else {
            None
        }
    }
}

pub fn firmware_panel_ui(
    ui: &mut Ui,
    snap: &Snapshot,
    form: &mut FirmwareForm,
    actions: &mut Vec<UiAction>,
) {
    form.sync_with(&snap.packages);
    ui.heading("Firmware");
    ui.horizontal(|ui| {
        if ui
            .button("Open firmware…")
            .on_hover_text("Ctrl+O, or drop a file on the window")
            .clicked()
        {
            actions.push(UiAction::OpenFileDialog);
        }
        ui.weak("or drop a file here");
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
            if ui.button("Cancel import").clicked() {
                actions.push(UiAction::CancelImport);
            }
        });
        ui.weak(format!(
            "Hashing {name}: {} of {}",
            format::bytes(import.done_bytes),
            format::bytes(import.total_bytes)
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
        ui.weak("No package imported yet.");
        return;
    }
    let selected = form
        .chosen(packages)
        .map_or_else(|| "choose…".to_owned(), package_label);
    egui::ComboBox::from_label("Package")
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
            ui.label("File");
            ui.label(&p.file_name);
            ui.end_row();
            ui.label("Size");
            ui.label(format!("{} ({} bytes)", format::bytes(p.size), p.size));
            ui.end_row();
            widgets::copy_row_ui(ui, "MD5", &p.md5);
            widgets::copy_row_ui(ui, "SHA-256", &p.sha256);
            widgets::copy_row_ui(ui, "FogCloud checksum", &p.checksum);
        });
}

fn offer_ui(ui: &mut Ui, snap: &Snapshot, form: &mut FirmwareForm) {
    ui.add_space(4.0);
    egui::Grid::new("offer").num_columns(2).show(ui, |ui| {
        widgets::text_row_ui(
            ui,
            "Target version",
            &mut form.version,
            "version devices will report",
        );
        widgets::text_row_ui(ui, "Target module", &mut form.module, "default");
        widgets::text_row_ui(
            ui,
            "Description",
            &mut form.description,
            "sent to FogCloud devices",
        );
        widgets::text_row_ui(
            ui,
            "Campaign name",
            &mut form.name,
            "derived from file and version",
        );
        let dji_label = ui.label("DJI upgrade type").id;
        egui::ComboBox::from_id_salt("dji-type")
            .selected_text(dji_type_label(form.settings.dji_upgrade_type))
            .show_ui(ui, |ui| {
                for t in [DjiUpgradeType::Normal, DjiUpgradeType::Consistency] {
                    ui.selectable_value(&mut form.settings.dji_upgrade_type, t, dji_type_label(t));
                }
            })
            .response
            .labelled_by(dji_label);
        ui.end_row();
        let sign_label_id = ui.label("Alibaba signMethod").id;
        egui::ComboBox::from_id_salt("sign-method")
            .selected_text(sign_label(form.settings.sign_method))
            .show_ui(ui, |ui| {
                for m in [SignMethod::Md5, SignMethod::Sha256] {
                    ui.selectable_value(&mut form.settings.sign_method, m, sign_label(m));
                }
            })
            .response
            .labelled_by(sign_label_id);
        ui.end_row();
        ui.label("Download from");
        match &snap.firmware_base {
            Some(base) => ui.label(RichText::new(base).monospace()).on_hover_text(
                "Each campaign gets its own link on this server; devices must be able to reach it.",
            ),
            None => ui.weak("no firmware server configured"),
        };
        ui.end_row();
    });
}

pub fn dji_type_label(t: DjiUpgradeType) -> &'static str {
    match t {
        DjiUpgradeType::Normal => "normal upgrade",
        DjiUpgradeType::Consistency => "consistency upgrade",
    }
}

fn sign_label(m: SignMethod) -> &'static str {
    match m {
        SignMethod::Md5 => "MD5",
        SignMethod::Sha256 => "SHA256",
    }
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
            form.missing(&[]),
            Some("choose or import a firmware package")
        );
        let lib = vec![stored("aa")];
        form.sync_with(&lib);
        assert_eq!(form.package.as_deref(), Some("aa"));
        assert_eq!(form.missing(&lib), Some("enter the target version"));
        form.version = "2.0".into();
        assert_eq!(form.missing(&lib), None);
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
}
