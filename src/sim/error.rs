//! Why a simulated fleet could not start: the one error type of the simulator's runtime (a leaf:
//! every other file of `sim/` may use it).

use crate::device_id::DeviceIdError;
use crate::i18n::tr;

/// Why a simulated fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{}", tr!("sim.invalid_config", why = _0))]
    InvalidConfig(String),
    #[error("{}", tr!("sim.bad_broker", url = format!("{url:?}"), why = why))]
    InvalidBroker { url: String, why: String },
    #[error("{}", tr!("sim.bad_device_name", why = _0))]
    DeviceName(#[from] DeviceIdError),
    #[error("{}", tr!("sim.no_http_client", why = _0))]
    Http(#[source] reqwest::Error),
}
