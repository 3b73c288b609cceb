//! How the process log reads on the operator's terminal. By default (no `RUST_LOG`, no
//! `--log`) it speaks to people: `warning: …` / `error: …` in the language in force, the
//! message and its fields, no timestamp or module path (the CLI's own lines look the same).
//! A filter given with `RUST_LOG` or `--log` asks for the developer's format: timestamps,
//! levels and targets, as tracing prints them.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::i18n::tr;

/// The filter when nobody gave one: what an operator should read.
pub const DEFAULT_FILTER: &str = "warn";

/// Added to [`DEFAULT_FILTER`] when nobody gave a filter: the windowing and graphics crates'
/// warnings ("error setting XSETTINGS…", "XRandR reported that the display's 0mm in size…")
/// are their developers' English about the desktop, not about the console; an operator reads
/// their errors only.
pub const QUIET_FOR_PEOPLE: &[&str] = &[
    "winit=error",
    "sctk=error",
    "smithay_client_toolkit=error",
    "eframe=error",
    "egui_winit=error",
    "egui_glow=error",
    "egui_wgpu=error",
    "wgpu=error",
    "wgpu_core=error",
    "wgpu_hal=error",
    "naga=error",
    "glutin=error",
    "arboard=error",
    "zbus=error",
];

/// Prints each event as a sentence: `warning: MESSAGE field=value…`.
pub struct PeopleFormat;

impl<S, N> FormatEvent<S, N> for PeopleFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut message = String::new();
        ctx.format_fields(Writer::new(&mut message), event)?;
        let line = match *event.metadata().level() {
            Level::ERROR => tr!("cli.error", message = message),
            Level::WARN => tr!("cli.warning", message = message),
            _ => message,
        };
        writeln!(writer, "{line}")
    }
}
