//! Values tests build again and again: a firmware file with a recognisable pattern, a
//! `FirmwareOffer`, a policy that gets out of a test's way and a simulated fleet as strict as
//! real device stacks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::FirmwareOffer;
use crate::protocol::{Dialect, registry};
use crate::rollout::{CanarySize, Policy, RateLimit};
use crate::sim::{Behaviour, SimConfig, UnitSpec, units_from_flags};

/// `size` bytes of firmware: a pattern whose period (251, a prime) does not divide a power of
/// two, so a range served at the wrong offset does not match by chance.
pub fn firmware_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 % 251) as u8).collect()
}

/// Writes [`firmware_bytes`]`(size)` to `dir/fw.bin` and returns its path (the console names
/// the package by its file name: tests/sdk_aliyun.rs reads the line `fw.bin: SIZE bytes, …`).
pub fn firmware_file(dir: &Path, size: usize) -> PathBuf {
    let path = dir.join("fw.bin");
    std::fs::write(&path, firmware_bytes(size)).expect("the firmware file is written");
    path
}

/// An offer of `version` with well-formed values in every field (a 3-byte package on an
/// unreachable loopback port); change the fields a test is about with `..offer(v)`.
pub fn offer(version: &str) -> FirmwareOffer {
    FirmwareOffer {
        version: version.into(),
        url: "http://127.0.0.1:1/fw.bin".into(),
        size: 3,
        md5: "5289df737df57326fcdd22597afb1fac".into(),
        sha256: "039058c6f2c0cb492c533b0a4d14ef77cc0f78abccced5287d84a1a2011cfb81".into(),
        checksum: "06000000".into(),
        file_name: "fw.bin".into(),
        description: "test".into(),
    }
}

/// A policy that gets out of a test's way: a canary of one, then everyone, no rate or
/// concurrency limit worth noting, no retries, no abort.
pub fn fast_policy(device_timeout_secs: u64) -> Policy {
    Policy {
        canary: CanarySize::Count(1),
        wave_size: 0,
        rate: RateLimit {
            per_minute: 60_000,
            burst: 1_000,
        },
        max_in_flight: 1_000,
        device_timeout_secs,
        retries: 0,
        retry_interval_secs: 1,
        abort: None,
        ..Policy::default()
    }
}

/// A fleet's units as `ota-console sim` would read them: each `(option, n)` names a kind of
/// unit of a registered dialect's simulator (`("aliyun", 2)`, `("fogcloud-gateways", 1)`,
/// `("dji-docks", 3)`) or its members (`("subs", 4)`), e.g. `sim_units(&[("aliyun", 2)])`.
pub fn sim_units(counts: &[(&str, usize)]) -> Vec<UnitSpec> {
    units_from_flags(&registry::sim_factories(), counts).expect("every option names a kind")
}

/// `count` units of `dialect`'s default kind of simulated unit (its simulator's first kind:
/// a device, a gateway, a dock). Panics if the dialect has no simulator: every dialect must
/// give one, so that the conformance suite can run it end to end.
pub fn default_units(dialect: &'static dyn Dialect, count: usize) -> Vec<UnitSpec> {
    let factory = dialect
        .sim()
        .unwrap_or_else(|| panic!("dialect {} has no simulated device", dialect.id()));
    let unit = UnitSpec::of(factory, count)
        .unwrap_or_else(|| panic!("the simulator of {} offers no unit", dialect.id()));
    vec![unit]
}

/// A simulated fleet on `broker_url` (the default shape) with devices as strict as real
/// stacks: they report before subscribing, drop notices with a missing or empty field and
/// download by exact header names with Content-Length required (tests/e2e_notices.rs checks
/// the console's notices are never dropped as broken). Installs take 100 ms.
pub fn strict_sim(broker_url: &str, seed: u64) -> SimConfig {
    SimConfig {
        broker_url: broker_url.to_owned(),
        version: "1.0.0".into(),
        seed,
        strict: true,
        behaviour: Behaviour {
            install: Duration::from_millis(100),
            ..Behaviour::default()
        },
        ..SimConfig::default()
    }
}
