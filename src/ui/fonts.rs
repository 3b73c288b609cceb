//! Fonts that can draw what devices send: egui's defaults have no CJK glyphs, and FogCloud
//! devices report failures in Chinese ("OTA升级失败,请求不到升级包信息。"). We add the system's
//! CJK font when one is found (Noto Sans CJK, WenQuanYi, Droid Fallback, Microsoft YaHei, ...)
//! and always a bundled subset of Noto Sans SC (`assets/fonts`, SIL OFL 1.1) after it, as fallbacks
//! behind egui's own fonts so Latin text keeps its look.
//!
//! Loading reads a file of up to tens of MiB: done once, before the window opens (never on the
//! UI thread while it draws).

use std::path::{Path, PathBuf};

use egui::{FontData, FontFamily, FontInsert, FontPriority, InsertFontFamily};

use crate::i18n::tr;

/// The bundled fallback (≈ 0.8 MiB; see `assets/fonts/LICENSE-OFL.txt`).
const BUNDLED_SUBSET: &[u8] = include_bytes!("../../assets/fonts/NotoSansSC-subset.otf");

/// Environment variable naming a font file to use instead of searching.
pub const FONT_ENV: &str = "OTA_CONSOLE_CJK_FONT";

/// A system font bigger than this is not a font we want to keep in memory.
const MAX_FONT_BYTES: u64 = 64 * 1024 * 1024;

/// Known places of CJK fonts and the face to use (Simplified Chinese in collections).
const CANDIDATES: &[(&str, u32)] = &[
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc", 2),
    (
        "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
        2,
    ),
    (
        "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
        0,
    ),
    (
        "/usr/share/fonts/google-noto-sans-cjk-fonts/NotoSansCJK-Regular.ttc",
        2,
    ),
    ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", 0),
    (
        "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
        0,
    ),
    (
        "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
        0,
    ),
    ("/System/Library/Fonts/STHeiti Light.ttc", 0),
    ("/System/Library/Fonts/Hiragino Sans GB.ttc", 0),
    ("C:\\Windows\\Fonts\\msyh.ttc", 0),
    ("C:\\Windows\\Fonts\\simsun.ttc", 0),
];

/// Fonts ready to install: name and data, in fallback order.
#[derive(Clone)]
pub struct CjkFonts {
    pub fonts: Vec<(String, FontData)>,
    /// The system file in use, for the About line; `None` = bundled subset only.
    pub system_file: Option<PathBuf>,
}

impl CjkFonts {
    /// Only the bundled subset (tests use this to prove the fallback covers device text).
    pub fn bundled_only() -> CjkFonts {
        CjkFonts {
            fonts: vec![(
                "noto-sans-sc-subset".into(),
                FontData::from_static(BUNDLED_SUBSET),
            )],
            system_file: None,
        }
    }

    /// The system's CJK font when found and readable, then the bundled subset.
    pub fn load() -> CjkFonts {
        let mut fonts = CjkFonts::bundled_only();
        let override_path = std::env::var_os(FONT_ENV).map(PathBuf::from);
        let candidates = override_path
            .into_iter()
            .map(|p| (p, 0))
            .chain(CANDIDATES.iter().map(|(p, i)| (PathBuf::from(p), *i)));
        for (path, index) in candidates {
            match read_face(&path, index) {
                Ok(data) => {
                    tracing::debug!(font = %path.display(), index, "using system CJK font");
                    fonts.fonts.insert(0, ("system-cjk".into(), data));
                    fonts.system_file = Some(path);
                    break;
                }
                Err(FontFileError::Missing) => {}
                Err(e) => tracing::warn!(
                    "{}",
                    tr!("ui.fonts.skipped", font = path.display(), why = e)
                ),
            }
        }
        fonts
    }

    /// Appends the fonts to the proportional and monospace fallback chains of `ctx`.
    pub fn install(&self, ctx: &egui::Context) {
        for (name, data) in &self.fonts {
            ctx.add_font(FontInsert::new(
                name,
                data.clone(),
                vec![
                    InsertFontFamily {
                        family: FontFamily::Proportional,
                        priority: FontPriority::Lowest,
                    },
                    InsertFontFamily {
                        family: FontFamily::Monospace,
                        priority: FontPriority::Lowest,
                    },
                ],
            ));
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum FontFileError {
    #[error("{}", tr!("ui.fonts.missing"))]
    Missing,
    #[error("{}", tr!("ui.fonts.unreadable", why = crate::i18n::io_error(_0)))]
    Io(std::io::Error),
    #[error("{}", tr!("ui.fonts.too_large", size = _0, limit = MAX_FONT_BYTES))]
    TooLarge(u64),
    #[error("{}", tr!("ui.fonts.not_a_font", face = _0))]
    NotAFont(u32),
}

fn read_face(path: &Path, index: u32) -> Result<FontData, FontFileError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FontFileError::Missing,
        _ => FontFileError::Io(e),
    })?;
    if meta.len() > MAX_FONT_BYTES {
        return Err(FontFileError::TooLarge(meta.len()));
    }
    let bytes = std::fs::read(path).map_err(FontFileError::Io)?;
    // A collection whose face index is wrong falls back to the first face.
    let index = match face_count(&bytes) {
        Some(n) if index < n => index,
        Some(n) if n > 0 => 0,
        _ => return Err(FontFileError::NotAFont(index)),
    };
    let mut data = FontData::from_owned(bytes);
    data.index = index;
    Ok(data)
}

/// Faces in a font file: the count of a `ttcf` collection, 1 for a single font, `None` when
/// the header is neither.
fn face_count(bytes: &[u8]) -> Option<u32> {
    let tag = bytes.get(0..4)?;
    match tag {
        b"ttcf" => bytes
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes),
        b"OTTO" | b"true" | [0, 1, 0, 0] => Some(1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(face_count(b"ttcf\0\x02\0\0\0\0\0\x0a"), Some(10));
        assert_eq!(face_count(b"OTTO...."), Some(1));
        assert_eq!(face_count(&[0, 1, 0, 0, 9]), Some(1));
        assert_eq!(face_count(b"<html>"), None);
        assert_eq!(face_count(b"tt"), None);
        assert_eq!(face_count(BUNDLED_SUBSET), Some(1));
        assert!(BUNDLED_SUBSET.len() < 2 * 1024 * 1024);
    }

    #[test]
    fn unreadable_files_are_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_face(&dir.path().join("none.ttf"), 0),
            Err(FontFileError::Missing)
        ));
        let junk = dir.path().join("junk.ttf");
        std::fs::write(&junk, b"<html>not a font</html>").unwrap();
        assert!(matches!(
            read_face(&junk, 0),
            Err(FontFileError::NotAFont(0))
        ));
        let single = dir.path().join("sub.otf");
        std::fs::write(&single, BUNDLED_SUBSET).unwrap();
        assert_eq!(read_face(&single, 3).unwrap().index, 0);
    }

    /// egui panics on a glyph no font has once told to; the bundled subset alone must cover
    /// the FogCloud document's failure text.
    #[test]
    fn bundled_subset_draws_the_fogcloud_failure_text() {
        let ctx = egui::Context::default();
        ctx.set_missing_glyph_policy(egui::MissingGlyphPolicy::Panic);
        CjkFonts::bundled_only().install(&ctx);
        for _ in 0..2 {
            let mut out = ctx.run_ui(egui::RawInput::default(), |ui| {
                ui.label("OTA升级失败,请求不到升级包信息。");
            });
            out.textures_delta.clear();
        }
    }

    /// The check above can fail: egui's own fonts alone cannot draw it.
    #[test]
    #[should_panic(expected = "No glyph for")]
    fn default_fonts_cannot_draw_chinese() {
        let ctx = egui::Context::default();
        ctx.set_missing_glyph_policy(egui::MissingGlyphPolicy::Panic);
        for _ in 0..2 {
            let mut out = ctx.run_ui(egui::RawInput::default(), |ui| {
                ui.label("请求不到升级包信息");
            });
            out.textures_delta.clear();
        }
    }
    /// Every word of the console, in every language, draws on a machine without a system CJK
    /// font (the Chinese window on a bare Debian, and CI): egui's own fonts and the bundled
    /// subset cover them. A word with a new character fails here; `scripts/font-subset` makes
    /// the subset again.
    #[test]
    fn every_translation_draws_without_a_system_font() {
        let ctx = egui::Context::default();
        CjkFonts::bundled_only().install(&ctx);
        let mut out = ctx.run_ui(egui::RawInput::default(), |_| {});
        out.textures_delta.clear();
        let font = egui::FontId::proportional(14.0);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("locales");
        let mut missing = std::collections::BTreeSet::new();
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let table: toml::Table = toml::from_str(&text).unwrap();
            for (key, langs) in &table {
                for word in langs.as_table().into_iter().flat_map(|t| t.values()) {
                    for c in word.as_str().unwrap_or_default().chars() {
                        checked += 1;
                        if !c.is_control() && !ctx.fonts_mut(|f| f.has_glyph(&font, c)) {
                            missing.insert(format!("{c:?} (U+{:04X}) in {key}", u32::from(c)));
                        }
                    }
                }
            }
        }
        assert!(
            checked > 10_000,
            "only {checked} characters read from {}",
            dir.display()
        );
        assert!(missing.is_empty(), "no glyph for: {missing:#?}");
    }
}
