//! The console's own words in the operator's language: English and Simplified Chinese.
//!
//! Owns: [`Lang`] (the languages there are), which one is in force ([`set`], [`lang`], and a
//! per-thread override for tests, [`ThreadLang`]), reading it from the system locale
//! ([`from_system`]), and the `tr!` macro every user-visible sentence goes through.
//!
//! The texts live in `locales/*.toml` (rust-i18n's one-file-per-area format, `_version = 2`:
//! each key carries every language) and are compiled into the binary by `rust_i18n::i18n!`
//! in `lib.rs`. `tr!("key", name = value)` is rust-i18n's `t!` with the language of this
//! module, so a test thread can speak Chinese while another speaks English.
//!
//! What is not here: device texts (data, shown as they came), protocol and field names, and
//! the English of clap's derive doc comments and of the dialects' data (`NoticeSetting`,
//! `ErrorTable`), whose Chinese lives under keys derived from the command path or the dialect
//! (`locales/cli_help.toml`, `locales/dialects.toml`; see `cli::help` and `terms::dialect`).
//! A leaf: it depends on nothing else in the crate, so every module may speak through it.

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::{Deserialize, Serialize};

/// A language the console speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lang {
    #[default]
    En,
    /// Simplified Chinese (`zh-CN`).
    ZhCn,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::ZhCn];

    /// The locale code of the texts in `locales/`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhCn => "zh-CN",
        }
    }

    /// The language's name in itself, as a language switch shows it.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::ZhCn => "简体中文",
        }
    }

    /// A locale as the system or an operator writes it: `zh_CN.UTF-8`, `zh-CN`, `zh-Hans`,
    /// `zh`, `en_US`, `C`… Traditional Chinese (`zh_TW`, `zh_HK`, `zh-Hant`) and languages
    /// without texts here are `None`: the caller falls back to English.
    pub fn parse(locale: &str) -> Option<Lang> {
        // `zh_CN.UTF-8@variant`: language and territory only.
        let base = locale.split(['.', '@']).next().unwrap_or("").trim();
        let mut parts = base.split(['_', '-']);
        let language = parts.next().unwrap_or("").to_ascii_lowercase();
        let rest: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
        match language.as_str() {
            "en" | "c" | "posix" => Some(Lang::En),
            "zh" if rest
                .iter()
                .any(|p| p == "tw" || p == "hk" || p == "mo" || p == "hant") =>
            {
                None
            }
            "zh" => Some(Lang::ZhCn),
            _ => None,
        }
    }
}

impl std::fmt::Display for Lang {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Lang {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lang::parse(s).ok_or_else(|| crate::i18n::tr!("i18n.unknown_language"))
    }
}

/// The language of the system's messages: `LC_ALL`, else `LC_MESSAGES`, else `LANG` (POSIX's
/// order; `sys-locale` reads the same variables on Unix and asks the OS elsewhere). English
/// when none names a language the console speaks.
pub fn from_system() -> Lang {
    sys_locale::get_locale()
        .as_deref()
        .and_then(Lang::parse)
        .unwrap_or_default()
}

/// The process's language (0 = English); a thread may override it with [`ThreadLang`].
static GLOBAL: AtomicU8 = AtomicU8::new(0);

thread_local! {
    static THREAD: Cell<Option<Lang>> = const { Cell::new(None) };
}

fn encode(lang: Lang) -> u8 {
    match lang {
        Lang::En => 0,
        Lang::ZhCn => 1,
    }
}

/// The language in force on this thread.
pub fn lang() -> Lang {
    THREAD
        .with(Cell::get)
        .unwrap_or_else(|| match GLOBAL.load(Ordering::Relaxed) {
            1 => Lang::ZhCn,
            _ => Lang::En,
        })
}

/// The locale code [`tr!`] looks texts up in.
pub fn locale() -> &'static str {
    lang().code()
}

/// Switches the process to `lang`; on a thread that speaks its own language ([`ThreadLang`]:
/// a test's window), that thread only, so tests of both languages run side by side.
pub fn set(lang: Lang) {
    let own = THREAD.with(|t| {
        let own = t.get().is_some();
        if own {
            t.set(Some(lang));
        }
        own
    });
    if !own {
        GLOBAL.store(encode(lang), Ordering::Relaxed);
    }
}

/// While alive, this thread speaks `lang` whatever the process does: tests of both languages
/// run side by side in one process. Dropping it restores what the thread spoke before.
#[derive(Debug)]
pub struct ThreadLang {
    before: Option<Lang>,
}

impl ThreadLang {
    pub fn new(lang: Lang) -> ThreadLang {
        let before = THREAD.with(|t| t.replace(Some(lang)));
        ThreadLang { before }
    }
}

impl Drop for ThreadLang {
    fn drop(&mut self) {
        let before = self.before;
        THREAD.with(|t| t.set(before));
    }
}

/// `f`'s words in English whatever the language in force: what goes on the wire (an AWS
/// Jobs rejection's `message`) and what stays English by design (reports).
pub fn in_english<T>(f: impl FnOnce() -> T) -> T {
    let _en = ThreadLang::new(Lang::En);
    f()
}

/// A text of `locales/` in the language in force: `tr!("key")`, `tr!("key", name = value)`
/// (`%{name}` in the text): rust-i18n's `t!` with the language of [`locale`]. Keys are
/// literals so that the missing-translation test finds every one in `src/`. A key the language
/// lacks falls back to English (the test suite fails on such a key).
macro_rules! tr {
    ($key:literal $(, $name:ident = $value:expr)* $(,)?) => {
        ::rust_i18n::t!($key, locale = $crate::i18n::locale() $(, $name = $value)*).into_owned()
    };
}
pub(crate) use tr;

/// Whether `key` has a text in `lang` itself (no fallback): what the missing-translation tests
/// ask.
pub fn has_text(lang: Lang, key: &str) -> bool {
    crate::_rust_i18n_backend()
        .translate(lang.code(), key)
        .is_some()
}

/// An I/O error in words of the language in force: the OS's English (`strerror`) for the
/// kinds an operator meets (a missing file, no permission, a port in use…) in Chinese.
pub fn io_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    if lang() == Lang::En {
        return e.to_string();
    }
    let words = match e.kind() {
        ErrorKind::NotFound => tr!("io.not_found"),
        ErrorKind::PermissionDenied => tr!("io.permission_denied"),
        ErrorKind::AlreadyExists => tr!("io.already_exists"),
        ErrorKind::AddrInUse => tr!("io.addr_in_use"),
        ErrorKind::AddrNotAvailable => tr!("io.addr_not_available"),
        ErrorKind::ConnectionRefused => tr!("io.connection_refused"),
        ErrorKind::TimedOut => tr!("io.timed_out"),
        ErrorKind::StorageFull => tr!("io.storage_full"),
        ErrorKind::ReadOnlyFilesystem => tr!("io.read_only"),
        ErrorKind::IsADirectory => tr!("io.is_a_directory"),
        ErrorKind::NotADirectory => tr!("io.not_a_directory"),
        _ => return e.to_string(),
    };
    match e.raw_os_error() {
        Some(code) => tr!("io.with_code", words = words, code = code),
        None => words,
    }
}

/// The text of `key` in `lang` itself (no fallback), if it has one.
pub fn text_of(lang: Lang, key: &str) -> Option<String> {
    crate::_rust_i18n_backend()
        .translate(lang.code(), key)
        .map(std::borrow::Cow::into_owned)
}

/// A text that is data in English (a dialect's setting label, a clap doc comment), in the
/// language in force: the text under `key` when this language has one, else `english` as it
/// is. A dialect read from a file has no keys here, so its own words show in every language.
pub fn dialect_text(key: &str, english: &'static str) -> std::borrow::Cow<'static, str> {
    match lang() {
        Lang::En => std::borrow::Cow::Borrowed(english),
        other => crate::_rust_i18n_backend()
            .translate(other.code(), key)
            .map_or(std::borrow::Cow::Borrowed(english), |t| {
                std::borrow::Cow::Owned(t.into_owned())
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_locales_name_the_language() {
        for (locale, lang) in [
            ("zh_CN.UTF-8", Some(Lang::ZhCn)),
            ("zh-CN", Some(Lang::ZhCn)),
            ("zh_SG.UTF-8", Some(Lang::ZhCn)),
            ("zh-Hans-CN", Some(Lang::ZhCn)),
            ("zh", Some(Lang::ZhCn)),
            ("zh_TW.UTF-8", None),
            ("zh-Hant", None),
            ("en_US.UTF-8", Some(Lang::En)),
            ("C", Some(Lang::En)),
            ("C.UTF-8", Some(Lang::En)),
            ("POSIX", Some(Lang::En)),
            ("de_DE.UTF-8", None),
            ("", None),
        ] {
            assert_eq!(Lang::parse(locale), lang, "{locale}");
        }
    }

    #[test]
    fn a_thread_can_speak_another_language_than_the_process() {
        let _zh = ThreadLang::new(Lang::ZhCn);
        assert_eq!(lang(), Lang::ZhCn);
        let other = std::thread::spawn(lang).join().unwrap();
        assert_eq!(other, Lang::En);
        assert_eq!(tr!("cli.campaign_running", id = 7), "升级任务 7 运行中");
        drop(_zh);
        let _en = ThreadLang::new(Lang::En);
        assert_eq!(tr!("cli.campaign_running", id = 7), "campaign 7 running");
    }
}
