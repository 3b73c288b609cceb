//! Dialect files at start: `--dialect-file FILE` (global, repeatable) and every `*.toml` of the
//! data dir's `dialects/` folder, registered *before* clap builds the command line, because the
//! command line is generated from the registry (the rollout's setting flags, `--target`'s id
//! forms, the about line).
//!
//! So the flags are read by a small pre-scan of the raw arguments rather than by clap: clap then
//! parses the same arguments again, with the flag declared (`Cli::dialect_files`), so it shows
//! in `--help` and is checked like any other. A two-stage clap parse would have to ignore every
//! error of a command that cannot be complete yet; the pre-scan reads exactly two flags.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use crate::protocol::user::{self, LoadError};

/// The flag naming a dialect file.
pub const DIALECT_FILE: &str = "--dialect-file";
const DATA_DIR: &str = "--data-dir";

/// What the pre-scan found in the arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prescan {
    pub dialect_files: Vec<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

/// Reads `--dialect-file FILE`, `--dialect-file=FILE` and the first `--data-dir` from `args`
/// (the program name first, as `std::env::args_os` gives them), up to a `--`.
pub fn prescan(args: &[OsString]) -> Prescan {
    let mut out = Prescan::default();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if arg == "--" {
            break;
        }
        let Some(text) = arg.to_str() else { continue };
        for (flag, is_file) in [(DIALECT_FILE, true), (DATA_DIR, false)] {
            let value: Option<&OsStr> = if text == flag {
                rest.next().map(OsString::as_os_str)
            } else {
                text.strip_prefix(flag)
                    .and_then(|v| v.strip_prefix('='))
                    .map(OsStr::new)
            };
            if let Some(value) = value {
                if is_file {
                    out.dialect_files.push(PathBuf::from(value));
                } else if out.data_dir.is_none() {
                    out.data_dir = Some(PathBuf::from(value));
                }
            }
        }
    }
    out
}

/// What loading at start came to.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Files of the dialects folder that were refused (and skipped).
    pub skipped: Vec<LoadError>,
    /// Files named with `--dialect-file` that were refused.
    pub failed: Vec<LoadError>,
}

/// Registers the dialects folder of the data dir (the one `--data-dir` names, else the default)
/// and then every `--dialect-file` of `args`.
pub fn load(args: &[OsString]) -> Loaded {
    let scan = prescan(args);
    let data_dir = scan
        .data_dir
        .unwrap_or_else(crate::firmware::default_data_dir);
    load_from(&data_dir, &scan.dialect_files)
}

/// As [`load`], with the data dir and the files given.
pub fn load_from(data_dir: &Path, files: &[PathBuf]) -> Loaded {
    let skipped = user::register_dir(&data_dir.join(user::DIALECTS_FOLDER))
        .into_iter()
        .filter_map(Result::err)
        .collect();
    let failed = files
        .iter()
        .filter_map(|f| user::register_file(f).err())
        .collect();
    Loaded { skipped, failed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_prescan_reads_both_spellings_and_stops_at_double_dash() {
        let scan = prescan(&args(&[
            "ota-console",
            "--dialect-file",
            "a.toml",
            "rollout",
            "--dialect-file=b.toml",
            "--data-dir",
            "/d1",
            "--data-dir=/d2",
            "--",
            "--dialect-file",
            "c.toml",
        ]));
        assert_eq!(
            scan,
            Prescan {
                dialect_files: vec!["a.toml".into(), "b.toml".into()],
                data_dir: Some("/d1".into()),
            }
        );
        assert_eq!(
            prescan(&args(&["ota-console", "--dialect-file"])),
            Prescan::default()
        );
    }
}
