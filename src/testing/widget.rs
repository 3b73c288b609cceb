//! `tests/dialects/widget.toml`, the tests' dialect file (a protocol none of the built-ins
//! resembles): where it is, and registering it once per test binary. Its devices are the
//! simulator's (`ota-console sim --widget N`, `testing::sim_units(&[("widget", N)])`). Used by
//! tests/cli_dialects.rs and tests/ui.rs.

use std::path::{Path, PathBuf};

/// The tests' dialect file.
pub fn widget_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dialects/widget.toml")
}

/// Registers the tests' dialect file once per test binary.
pub fn register_widget() {
    static ONCE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        crate::protocol::user::register_file(&widget_file())
            .unwrap_or_else(|e| panic!("the tests' dialect file loads: {e}"));
    });
}
