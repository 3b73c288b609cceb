//! The window's language switch: English, Simplified Chinese, or the system's (the saved
//! choice in [`super::Settings::language`]; `OtaApp` applies it).

use egui::Ui;

use crate::i18n::{self, Lang, tr};

/// A combo box choosing the window's language; `None` follows the system locale.
pub fn language_ui(ui: &mut Ui, choice: &mut Option<Lang>) {
    let name = |lang: Option<Lang>| match lang {
        Some(lang) => lang.native_name().to_owned(),
        None => tr!(
            "ui.language.system",
            lang = i18n::from_system().native_name()
        ),
    };
    // An id of its own: the label changes with the language.
    egui::ComboBox::new("language", tr!("ui.language.label"))
        .selected_text(name(*choice))
        .show_ui(ui, |ui| {
            ui.selectable_value(choice, None, name(None));
            for lang in Lang::ALL {
                ui.selectable_value(choice, Some(lang), lang.native_name());
            }
        });
}

/// The language a saved choice stands for.
pub fn resolve(choice: Option<Lang>) -> Lang {
    choice.unwrap_or_else(i18n::from_system)
}
