//! A running simulated fleet ([`SimFleet`]): building the shared context, asking each entry's
//! factory to start its units, reading every device's counters, stopping.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::config::BrokerAddr;
use super::ctx::Ctx;
use super::error::SimError;
use super::fetch::HttpClient;
use super::link::CONNECTS_IN_FLIGHT;
use super::stats::{DeviceStats, SimStats, StatsCell};
use super::unit::{SimConfig, Spawner};
use crate::device_id::DeviceId;

/// How long a simulated device waits for an HTTP connection to the firmware server.
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running simulated fleet. Dropping it stops every device (their tasks are aborted and
/// their connections close); [`SimFleet::shutdown`] does the same and waits for it.
#[derive(Debug)]
pub struct SimFleet {
    cells: Vec<StatsCell>,
    tasks: JoinSet<()>,
    /// The permits every connection attempt of the fleet takes one of.
    connect_gate: Arc<tokio::sync::Semaphore>,
    /// Started by [`SimFleet::start_held`] and not yet released.
    held: std::sync::atomic::AtomicBool,
}

impl SimFleet {
    /// Starts every device of `cfg` as a tokio task on the current runtime. Devices connect in
    /// the background; watch [`SimFleet::stats`] (`connects`) to know when they are up.
    pub async fn start(cfg: SimConfig) -> Result<SimFleet, SimError> {
        Self::start_gated(cfg, CONNECTS_IN_FLIGHT).await
    }

    /// Starts every device as [`SimFleet::start`] does, but none connects before
    /// [`SimFleet::release`]: its ids are known ([`SimFleet::device_ids`]) while the broker
    /// has heard nothing of it (the demo names its story's devices in a campaign before they
    /// are heard, so that none of them is chosen for the canary).
    pub async fn start_held(cfg: SimConfig) -> Result<SimFleet, SimError> {
        let fleet = Self::start_gated(cfg, 0).await?;
        fleet.held.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(fleet)
    }

    /// Lets the devices of a held fleet connect; nothing for a fleet that is not held.
    pub fn release(&self) {
        if self.held.swap(false, std::sync::atomic::Ordering::Relaxed) {
            self.connect_gate.add_permits(CONNECTS_IN_FLIGHT);
        }
    }

    async fn start_gated(cfg: SimConfig, permits: usize) -> Result<SimFleet, SimError> {
        cfg.validate()?;
        let http = if cfg.strict {
            HttpClient::Strict {
                connect_timeout: HTTP_CONNECT_TIMEOUT,
            }
        } else {
            HttpClient::Relaxed(
                reqwest::Client::builder()
                    .connect_timeout(HTTP_CONNECT_TIMEOUT)
                    // Devices talk to the firmware server directly; a proxy from the environment
                    // would make the simulator test something else.
                    .no_proxy()
                    // Each download on its own connection, as each real device has its own: a
                    // pooled connection shared between simulated devices could be one the
                    // server has just closed, failing a download for a reason no device has.
                    .pool_max_idle_per_host(0)
                    .build()
                    .map_err(SimError::Http)?,
            )
        };
        let connect_gate = Arc::new(tokio::sync::Semaphore::new(permits));
        let ctx = Arc::new(Ctx {
            addr: BrokerAddr::parse(&cfg.broker_url)?,
            behaviour: cfg.behaviour.clone(),
            http,
            connect_gate: connect_gate.clone(),
            strict: cfg.strict,
            logins: cfg.logins.clone(),
        });
        let mut fleet = SimFleet {
            cells: Vec::new(),
            tasks: JoinSet::new(),
            connect_gate,
            held: std::sync::atomic::AtomicBool::new(false),
        };
        for unit in &cfg.units {
            let mut spawner = Spawner {
                cells: &mut fleet.cells,
                tasks: &mut fleet.tasks,
                ctx: &ctx,
                cfg: &cfg,
            };
            unit.factory.spawn(unit, &mut spawner)?;
        }
        Ok(fleet)
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
