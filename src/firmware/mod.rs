//! Firmware packages: one-pass digests of a file (size, MD5, SHA-256, FogCloud checksum) and the
//! content-addressed store that keeps an immutable copy of every imported file under its SHA-256.
//!
//! - [`package`]: `FirmwarePackage`, the plain data every dialect's upgrade notice needs.
//! - [`checksum`]: the FogCloud additive checksum.
//! - [`digest`]: the one-pass, multi-threaded hashing pipeline, with progress and cancellation.
//! - [`store`]: `FirmwareStore` (import, open, get, verify) and `default_data_dir`.
//! - [`cancel`]: `CancelToken`; [`error`]: `FirmwareError`.
//!
//! Blocking code (std threads and files): async callers run it in `spawn_blocking`. Never
//! imports the UI, the engine or the network.

pub mod cancel;
pub mod checksum;
pub mod digest;
pub mod error;
pub mod package;
pub mod store;

pub use cancel::CancelToken;
pub use checksum::{FogChecksum, fog_checksum};
pub use digest::{HashOptions, Progress, hash_file, hash_file_with};
pub use error::{FirmwareError, IoAction};
pub use package::FirmwarePackage;
pub use store::{FirmwareStore, StoredPackage, default_data_dir};
