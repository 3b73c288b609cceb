//! Simulated device fleets that behave like real devices of each dialect, following the
//! documents in `shared/protocols/`: used to test rollouts end to end, by `ota-console sim` and
//! by the GUI's demo mode.
//!
//! Owns: the runtime every simulated device shares — starting and stopping units and reading
//! their counters, grouping them onto connections, downloads, upgrades, credentials. Each unit
//! (a device, a gateway, a dock) holds its own MQTT connection (`link.rs`), or shares one with
//! others of its kind (`hub.rs`, [`SimConfig::per_connection`]), and runs upgrades as real
//! devices do (`upgrade.rs`, `download.rs`) with failures chosen reproducibly from the seed
//! ([`config`]).
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
pub(crate) mod download;
mod fetch;
pub(crate) mod hub;
pub(crate) mod link;
pub(crate) mod stats;
pub(crate) mod strict;
mod strict_http;
mod unit;
pub(crate) mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::device_id::{DeviceId, DeviceIdError};

pub use config::{Behaviour, FaultOdds, SimConfig};
pub(crate) use credentials::Login;
pub use credentials::{SimLoginError, SimLogins};
pub use stats::{DeviceState, DeviceStats, SimStats, SimTotals};
pub(crate) use unit::SimUnit;
pub use unit::{
    Credential, MemberKind, SimFactory, Spawner, UnitKind, UnitSpec, demo_units, units_from_flags,
};

use config::BrokerAddr;
use stats::StatsCell;

/// How long a simulated device waits for an HTTP connection to the firmware server.
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a simulated fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator configuration: {0}")]
    InvalidConfig(String),
    #[error("broker URL {url:?} is not usable: {why}")]
    InvalidBroker { url: String, why: String },
    #[error("a simulated device name is not a valid device id: {0}")]
    DeviceName(#[from] DeviceIdError),
    #[error("cannot build the HTTP client for firmware downloads: {0}")]
    Http(#[source] reqwest::Error),
}

/// What every device task shares: where the broker is, how to behave, how to download.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub addr: BrokerAddr,
    pub behaviour: Behaviour,
    pub http: fetch::HttpClient,
    /// Shared by every device's link to pace connection storms.
    pub connect_gate: Arc<tokio::sync::Semaphore>,
    /// [`SimConfig::strict`].
    pub strict: bool,
    /// [`SimConfig::logins`].
    pub logins: Arc<SimLogins>,
}

impl Ctx {
    /// Under `strict`, the timer after which a device that just connected (and reported its
    /// version) subscribes; `None`: it subscribes at once, before reporting.
    pub(crate) fn subscribe_timer(&self) -> Option<std::pin::Pin<Box<tokio::time::Sleep>>> {
        self.strict
            .then(|| Box::pin(tokio::time::sleep(self.behaviour.strict_subscribe_delay)))
    }
}

/// A running simulated fleet. Dropping it stops every device (their tasks are aborted and
/// their connections close); [`SimFleet::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct SimFleet {
    cells: Vec<StatsCell>,
    tasks: JoinSet<()>,
}

impl SimFleet {
    /// Starts every device of `cfg` as a tokio task on the current runtime. Devices connect in
    /// the background; watch [`SimFleet::stats`] (`connects`) to know when they are up.
    pub async fn start(cfg: SimConfig) -> Result<SimFleet, SimError> {
        cfg.validate()?;
        let http = if cfg.strict {
            fetch::HttpClient::Strict {
                connect_timeout: HTTP_CONNECT_TIMEOUT,
            }
        } else {
            fetch::HttpClient::Relaxed(
                reqwest::Client::builder()
                    .connect_timeout(HTTP_CONNECT_TIMEOUT)
                    // Devices talk to the firmware server directly; a proxy from the environment
                    // would make the simulator test something else.
                    .no_proxy()
                    .build()
                    .map_err(SimError::Http)?,
            )
        };
        let ctx = Arc::new(Ctx {
            addr: BrokerAddr::parse(&cfg.broker_url)?,
            behaviour: cfg.behaviour.clone(),
            http,
            connect_gate: Arc::new(tokio::sync::Semaphore::new(link::CONNECTS_IN_FLIGHT)),
            strict: cfg.strict,
            logins: cfg.logins.clone(),
        });
        let mut fleet = SimFleet {
            cells: Vec::new(),
            tasks: JoinSet::new(),
        };
        for unit in &cfg.units {
            let mut spawner = unit::Spawner {
                fleet: &mut fleet,
                ctx: &ctx,
                cfg: &cfg,
            };
            unit.factory.spawn(unit, &mut spawner)?;
        }
        Ok(fleet)
    }

    /// Starts `units` of one kind: each on its own connection, or, when there are several and
    /// `site` names their shared connection's client id, all on that one connection, logged
    /// in as the site user that lists `devices` (see `hub.rs`).
    fn spawn_group<U: SimUnit>(
        &mut self,
        ctx: &Arc<Ctx>,
        site: Option<String>,
        devices: &[DeviceId],
        units: Vec<U>,
    ) {
        let site = site.filter(|_| units.len() > 1);
        let Some(client_id) = site else {
            for unit in units {
                self.cells.extend(unit.cells());
                self.tasks.spawn(unit.start(None));
            }
            return;
        };
        let mut hub = hub::Hub::new();
        for unit in units {
            let unit_cells = unit.cells();
            // The unit's own cell (a gateway's, a dock's) counts what its link sends.
            let Some(own) = unit_cells.first().cloned() else {
                continue;
            };
            self.cells.extend(unit_cells);
            let shared = hub.add(own);
            self.tasks.spawn(unit.start(Some(shared)));
        }
        let login = ctx.logins.site_login(devices, client_id);
        self.tasks
            .spawn(hub.run(ctx.addr.clone(), login, ctx.connect_gate.clone()));
    }

    /// Every simulated device (gateways, sub-devices, docks and drones included), sorted.
    pub fn device_ids(&self) -> Vec<DeviceId> {
        let mut ids: Vec<DeviceId> = self
            .cells
            .iter()
            .map(|c| c.update(|s| s.id.clone()))
            .collect();
        ids.sort();
        ids
    }

    /// A copy of every device's counters, sorted by device id.
    pub fn stats(&self) -> SimStats {
        let mut devices: Vec<DeviceStats> = self.cells.iter().map(StatsCell::snapshot).collect();
        devices.sort_by(|a, b| a.id.cmp(&b.id));
        SimStats { devices }
    }

    /// Stops every device and waits until their tasks are gone.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Milliseconds since the Unix epoch, for `timestamp` fields and signed logins.
pub(crate) fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Resolves once `timer` fires; never when there is none (for optional `select!` arms).
pub(crate) async fn fire(timer: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves on the next tick of `interval`; never when there is none.
pub(crate) async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}
