//! Test support: the fixtures the integration tests, benches and unit tests share, written once.
//!
//! Compiled only with the `test-support` feature. The package's dev-dependency on itself turns
//! the feature on for tests and benches; `cargo build --release` of the binary leaves it out.
//! Everything here is `pub`, so a test that uses part of it leaves no dead code behind.
//!
//! - [`fixtures`]: a firmware file, an offer, a policy that gets out of a test's way, a strict
//!   simulated fleet, a fleet's units by their `ota-console sim` options ([`sim_units`]) or
//!   a dialect's default kind ([`default_units`]).
//! - [`engine`]: starting the real engine on loopback and waiting on it (bounded, explained).
//! - [`console`]: the `ota-console` binary as a child process (and its `rollout` arguments).
//! - [`mosquitto`], [`broker_process`]: real brokers a test can kill and start again;
//!   [`mutual_tls`]: a test CA and a Mosquitto that takes only clients with its certificates.
//! - [`widget`]: a device for the tests' dialect file (tests/dialects/widget.toml).
//! - [`sim_fleet`]: simulator processes a benchmark loads a console with, and `/proc` readings.
//!
//! Like the tests it serves, support code panics on a failed set-up, with a message saying
//! what did not start; it never sleeps for luck and binds only to `127.0.0.1` port 0.

pub mod broker_process;
pub mod console;
pub mod engine;
pub mod fixtures;
pub mod mosquitto;
pub mod mutual_tls;
pub mod sdk_device;
pub mod sim_fleet;
pub mod widget;

/// Runs each named test function (taking an [`crate::i18n::Lang`]) once per language of the
/// window: `name::en` and `name::zh_cn`.
#[macro_export]
macro_rules! in_both_languages {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn en() {
                super::$name($crate::i18n::Lang::En);
            }
            #[test]
            fn zh_cn() {
                super::$name($crate::i18n::Lang::ZhCn);
            }
        }
    )*};
}

pub use fixtures::{
    default_units, fast_policy, firmware_bytes, firmware_file, offer, sim_units, strict_sim,
};
