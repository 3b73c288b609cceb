//! Simulated device fleets that behave like real devices of each dialect, following the
//! documents in `shared/protocols/`: used to test rollouts end to end, by `ota-console sim` and
//! by the GUI's demo mode.
//!
//! Owns: the runtime every simulated device shares — starting and stopping units and reading
//! their counters (`fleet.rs`, `stats.rs`), grouping them onto connections, downloads,
//! upgrades, credentials (`credentials.rs`, `provision.rs`). Each unit (a device, a gateway, a
//! dock) holds its own MQTT connection (`link.rs`), or shares one with others of its kind
//! (`hub.rs`, [`SimConfig::per_connection`]), and runs upgrades as real devices do
//! (`upgrade.rs`, `fetch.rs`, `download.rs`, `strict_http.rs`) with failures chosen
//! reproducibly from the seed ([`config`]). This file only lists the parts and what they
//! export.
//!
//! The devices themselves belong to their dialects: each dialect's `protocol/<dialect>/sim.rs`
//! speaks its dialect with payloads it builds itself and offers its kinds of unit through a
//! [`SimFactory`] (`unit.rs`), which `Dialect::sim` returns. A [`SimConfig`] lists
//! [`UnitSpec`]s, each carrying its factory, so this module never looks a dialect up.
//!
//! Must never: import `crate::protocol` (the dependency goes the other way, from each
//! dialect's factory to this runtime); and a dialect's simulated device must never use the
//! console's codecs for what it sends or parses: the simulator is an independent
//! implementation of the documents, so that it catches the console's misreadings instead of
//! echoing them.

pub mod config;
mod credentials;
mod ctx;
pub(crate) mod download;
mod error;
mod fetch;
mod fleet;
pub(crate) mod hub;
pub(crate) mod link;
mod provision;
pub(crate) mod stats;
pub(crate) mod strict;
mod strict_http;
mod timers;
mod unit;
pub(crate) mod upgrade;

pub use config::{Behaviour, Fault, FaultOdds, FaultScript};
pub(crate) use credentials::Login;
pub use credentials::{SimLoginError, SimLogins};
pub(crate) use ctx::Ctx;
pub use error::SimError;
pub use fleet::SimFleet;
pub use stats::{DeviceState, DeviceStats, SimStats, SimTotals};
pub(crate) use timers::{fire, now_millis, tick};
pub(crate) use unit::SimUnit;
pub use unit::{
    Credential, FIXED_OPTIONS, MemberKind, SimConfig, SimFactory, Spawner, UnitKind, UnitSpec,
    demo_units, units_from_flags,
};
