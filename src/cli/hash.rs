//! `ota-console hash FILE [--json]`: size, MD5, SHA-256 and FogCloud checksum of a firmware file
//! in one read, as text or JSON on stdout. The progress bar goes to stderr and only when stderr
//! is a terminal, so piped output stays clean. Never writes anything to disk.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::firmware::{CancelToken, FirmwarePackage, hash_file};
use crate::i18n::tr;

#[derive(Debug, Clone, Args)]
pub struct HashArgs {
    /// The firmware file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print one JSON object (`file_name`, `size`, `md5`, `sha256`, `checksum`).
    #[arg(long)]
    pub json: bool,
}

/// Hashes the file and prints the result.
pub fn run(args: &HashArgs) -> anyhow::Result<()> {
    let bar = progress_bar();
    let result = hash_file(
        &args.file,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
        &CancelToken::new(),
    );
    bar.finish_and_clear();
    // Every error hashing a file can hit already names the file.
    let package = result?;
    if args.json {
        let json = serde_json::to_string_pretty(&package).context(tr!("cli.hash.json"))?;
        println!("{json}");
    } else {
        print!("{}", text_report(&package));
    }
    Ok(())
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    // The template is a constant; if indicatif ever rejects it we keep its default style.
    if let Ok(style) = ProgressStyle::with_template(&tr!("cli.hash.progress")) {
        bar.set_style(style);
    }
    bar
}

fn text_report(p: &FirmwarePackage) -> String {
    tr!(
        "cli.hash.report",
        file = p.file_name,
        size = p.size,
        md5 = p.md5,
        sha256 = p.sha256,
        checksum = p.checksum
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_report_has_every_digest() {
        let p = FirmwarePackage {
            file_name: "fw.bin".into(),
            size: 3,
            md5: "5289df737df57326fcdd22597afb1fac".into(),
            sha256: "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81".into(),
            checksum: "06000000".into(),
        };
        let text = text_report(&p);
        for needle in ["fw.bin", "3 bytes", &p.md5, &p.sha256, "06000000"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
