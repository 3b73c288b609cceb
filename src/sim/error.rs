//! Why a simulated fleet could not start: the one error type of the simulator's runtime (a leaf:
//! every other file of `sim/` may use it).

use crate::device_id::DeviceIdError;

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
