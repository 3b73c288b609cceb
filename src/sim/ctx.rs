//! What every unit's task shares ([`Ctx`]): where the broker is, how to behave, how to download,
//! the connection gate and the logins. Built once per fleet by `fleet.rs`.

use std::sync::Arc;

use super::config::{Behaviour, BrokerAddr};
use super::credentials::SimLogins;
use super::fetch::HttpClient;

/// What every device task shares: where the broker is, how to behave, how to download.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub addr: BrokerAddr,
    pub behaviour: Behaviour,
    pub http: HttpClient,
    /// Shared by every device's link to pace connection storms.
    pub connect_gate: Arc<tokio::sync::Semaphore>,
    /// [`super::SimConfig::strict`].
    pub strict: bool,
    /// [`super::SimConfig::logins`].
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
