//! What a simulated fleet looks like and how its devices behave: which units (each entry a
//! dialect's kind of unit and how many, see `unit.rs`), names, starting version, timing,
//! failure odds and the seed that makes every choice reproducible.
//!
//! Owns: validating a [`SimConfig`], the deterministic naming scheme, per-device random number
//! generators and the per-upgrade fault roll. Must never: touch the network or read a clock.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{SimError, UnitSpec};

/// Longest name prefix / product key / version string accepted (they end up in topics and JSON).
const MAX_TEXT_BYTES: usize = 64;

/// The whole fleet to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Broker URL: `mqtt://host:port` (`tcp://` also accepted, port defaults to 1883).
    pub broker_url: String,
    /// The units to simulate, started in this order: each entry a dialect's kind of unit (a
    /// device, a gateway with sub-devices, a dock with its drone) and how many, one MQTT
    /// connection each unless [`SimConfig::per_connection`] says otherwise.
    pub units: Vec<UnitSpec>,
    /// The firmware version every device (and module) reports at start.
    pub version: String,
    /// Extra modules (besides the default one) of the devices whose dialect reports a version
    /// per module (`ota-console sim --module`); the others ignore them.
    pub modules: Vec<String>,
    /// Product key of the devices whose ids have one.
    pub product_key: String,
    /// Start of every device name (`{prefix}-ali-0001`, `{prefix}-dock-0001`, ...).
    pub name_prefix: String,
    /// Seed of every random choice (failures, secrets); same seed, same fleet, same choices.
    pub seed: u64,
    pub behaviour: Behaviour,
    /// Behave like the strictest embedded device stacks (`ota-console sim --strict`): report
    /// the version right after connecting and subscribe only `behaviour.strict_subscribe_delay`
    /// later (so a notice sent the instant the report arrives is lost); ignore as broken any
    /// notice with a missing or empty field (notes.md), counting it in `broken_notices`; and
    /// download firmware with a minimal HTTP/1.1 client that finds headers by their exact names
    /// and needs `Content-Length` (what many vendor SDKs do).
    pub strict: bool,
    /// What devices log in with on a secured broker (default: nothing, for an open broker).
    pub logins: std::sync::Arc<super::SimLogins>,
    /// How many units that would each hold a connection (a device, a gateway with its
    /// sub-devices, a dock with its drone) share one MQTT connection, as devices behind a
    /// site proxy do (`ota-console sim --per-connection N`); 1 (the default): each its own.
    /// Units share only with units of their own kind; a shared connection logs in as the site
    /// user that lists all its devices (see [`super::SimLogins::provision`]). Alibaba devices
    /// Units that sign their login with a secret of their own keep one connection each.
    /// Each unit still subscribes its own topics and publishes its own messages, so what the
    /// console reads and sends is the same; what changes is the cost per device.
    pub per_connection: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            broker_url: "mqtt://127.0.0.1:1883".to_owned(),
            units: Vec::new(),
            version: "1.0.0".to_owned(),
            modules: Vec::new(),
            product_key: "a1SimProduct".to_owned(),
            name_prefix: "sim".to_owned(),
            seed: 1,
            behaviour: Behaviour::default(),
            strict: false,
            logins: std::sync::Arc::default(),
            per_connection: 1,
        }
    }
}

/// How every device behaves during an upgrade.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Per-device download cap; `None` downloads as fast as the server sends.
    pub bandwidth_bytes_per_sec: Option<u64>,
    /// Time between a verified download and the new version being reported.
    pub install: Duration,
    pub faults: FaultOdds,
    /// Devices ask for pending firmware at start and every `pull_interval` while idle.
    pub pull: bool,
    pub pull_interval: Duration,
    /// How long a device that drops off mid-download stays away.
    pub offline_for: Duration,
    /// A DJI reply (status_reply, events_reply) not received within this is counted missing.
    pub reply_timeout: Duration,
    /// Give up on a download when no bytes arrive for this long.
    pub download_stall_timeout: Duration,
    /// Report download progress on this period (the share received so far) instead of at each
    /// 10 % mark, as devices with a progress timer do; `None`: at the marks only.
    pub progress_interval: Option<Duration>,
    /// Under `strict`: how long after its version report (on every connection) a device
    /// subscribes to its notice topics.
    pub strict_subscribe_delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            bandwidth_bytes_per_sec: None,
            install: Duration::from_secs(2),
            faults: FaultOdds::default(),
            pull: false,
            pull_interval: Duration::from_secs(60),
            offline_for: Duration::from_secs(5),
            reply_timeout: Duration::from_secs(5),
            download_stall_timeout: Duration::from_secs(30),
            progress_interval: None,
            strict_subscribe_delay: Duration::from_millis(500),
        }
    }
}

/// Probabilities (0..=1) of each injected failure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultOdds {
    /// The download breaks off half-way (Alibaba -2, FogCloud -1, DJI failed).
    pub download: f64,
    /// The downloaded bytes are corrupted, so real digest verification fails (Alibaba -3).
    pub verify: f64,
    /// Writing to flash fails after the install time (Alibaba -4).
    pub flash: f64,
    /// A DJI dock rejects `ota_create` (312015 aircraft in flight / 312704 battery low).
    pub reject: f64,
    /// Chosen once per device at start: it reports its version but never answers anything.
    pub silent: f64,
    /// The device loses its connection half-way through the download and comes back later.
    pub offline_mid_download: f64,
}

impl FaultOdds {
    fn validate(&self) -> Result<(), SimError> {
        for (name, p) in [
            ("fail-download", self.download),
            ("fail-verify", self.verify),
            ("fail-flash", self.flash),
            ("reject", self.reject),
            ("silent", self.silent),
            ("offline-mid-download", self.offline_mid_download),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::InvalidConfig(format!(
                    "--{name} is {p}; a probability must be between 0 and 1"
                )));
            }
        }
        Ok(())
    }
}

/// The failure one upgrade will suffer, rolled when the upgrade starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    None,
    OfflineMidDownload,
    Download,
    Verify,
    Flash,
}

impl Fault {
    /// Rolls every kind in a fixed order so the same seed gives the same sequence of faults.
    pub(crate) fn roll(odds: &FaultOdds, rng: &mut StdRng) -> Fault {
        let hits = [
            (odds.offline_mid_download, Fault::OfflineMidDownload),
            (odds.download, Fault::Download),
            (odds.verify, Fault::Verify),
            (odds.flash, Fault::Flash),
        ]
        .map(|(p, fault)| (rng.random_bool(p), fault));
        hits.into_iter()
            .find_map(|(hit, fault)| hit.then_some(fault))
            .unwrap_or(Fault::None)
    }
}

/// A random stream for one unit, derived from the fleet seed, its kind's stream salt
/// ([`super::UnitKind::stream`], which keeps units of different kinds with the same index
/// apart) and its index (splitmix64 mixing, so neighbouring indices get unrelated streams).
pub(crate) fn unit_rng(seed: u64, stream: u64, index: usize) -> StdRng {
    let mut x = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(x ^ (x >> 31))
}

/// A unit's random stream, seeded when it is first drawn from: the same draws as
/// [`unit_rng`], without 320 bytes of generator state for each of the many sub-devices that
/// never upgrade.
#[derive(Debug)]
pub(crate) struct LazyRng {
    seed: u64,
    stream: u64,
    index: usize,
    rng: Option<Box<StdRng>>,
}

impl LazyRng {
    pub(crate) fn new(seed: u64, stream: u64, index: usize) -> LazyRng {
        LazyRng {
            seed,
            stream,
            index,
            rng: None,
        }
    }

    pub(crate) fn get(&mut self) -> &mut StdRng {
        let (seed, stream, index) = (self.seed, self.stream, self.index);
        self.rng
            .get_or_insert_with(|| Box::new(unit_rng(seed, stream, index)))
    }
}

impl SimConfig {
    /// Checks everything that would otherwise fail later inside a device task.
    pub fn validate(&self) -> Result<(), SimError> {
        self.behaviour.faults.validate()?;
        for (what, text) in [
            ("version", self.version.as_str()),
            ("product key", self.product_key.as_str()),
            ("name prefix", self.name_prefix.as_str()),
        ] {
            if text.is_empty() || text.len() > MAX_TEXT_BYTES {
                return Err(SimError::InvalidConfig(format!(
                    "the {what} must be 1 to {MAX_TEXT_BYTES} bytes, got {} bytes",
                    text.len()
                )));
            }
        }
        for (i, unit) in self.units.iter().enumerate() {
            unit.validate()?;
            // Units are named by kind and index: a second entry of a kind would repeat names.
            let earlier = self.units.iter().take(i);
            if earlier
                .filter(|u| u.factory.dialect() == unit.factory.dialect())
                .any(|u| u.is(unit.kind))
            {
                return Err(SimError::InvalidConfig(format!(
                    "{} are listed twice; give their number once (--{})",
                    unit.kind.label, unit.kind.flag
                )));
            }
        }
        if self.behaviour.progress_interval == Some(Duration::ZERO) {
            return Err(SimError::InvalidConfig(
                "--progress-secs 0 would report progress without pause; leave it out to report \
                 at the 10 % marks"
                    .to_owned(),
            ));
        }
        if self.behaviour.strict_subscribe_delay > Duration::from_secs(600) {
            return Err(SimError::InvalidConfig(
                "--subscribe-delay-ms above 600000 would keep devices deaf for over 10 minutes"
                    .to_owned(),
            ));
        }
        if self.behaviour.bandwidth_bytes_per_sec == Some(0) {
            return Err(SimError::InvalidConfig(
                "--bandwidth 0 would never download anything; leave it out for no cap".to_owned(),
            ));
        }
        if self.per_connection == 0 {
            return Err(SimError::InvalidConfig(
                "--per-connection 0 would connect no device; 1 gives each its own connection"
                    .to_owned(),
            ));
        }
        BrokerAddr::parse(&self.broker_url)?;
        Ok(())
    }

    /// The same fleet with `units` instead of its units.
    pub fn with_units(self, units: Vec<UnitSpec>) -> SimConfig {
        SimConfig { units, ..self }
    }

    /// The name (or serial number) of the `index`-th (from 0) unit whose kind has the name tag
    /// `tag` ([`super::UnitKind::tag`]): `{prefix}-{tag}-0001` for index 0.
    pub fn unit_name(&self, tag: &str, index: usize) -> String {
        format!("{}-{tag}-{:04}", self.name_prefix, index + 1)
    }

    /// The name of member `member` of the `unit`-th unit tagged `tag` (a gateway's
    /// sub-device): `{prefix}-{tag}-0001-s001` for the first of the first.
    pub fn member_name(&self, tag: &str, unit: usize, member: usize) -> String {
        format!(
            "{}-{tag}-{:04}-s{:03}",
            self.name_prefix,
            unit + 1,
            member + 1
        )
    }

    /// The client id of the `group`-th shared connection of units tagged `tag`.
    pub(crate) fn site_client_id(&self, tag: &str, group: usize) -> String {
        format!("{}-site-{tag}-{:04}", self.name_prefix, group + 1)
    }
}

/// A broker address parsed from `mqtt://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl BrokerAddr {
    pub(crate) fn parse(url: &str) -> Result<BrokerAddr, SimError> {
        let bad = |why: &str| SimError::InvalidBroker {
            url: url.chars().take(200).collect(),
            why: why.to_owned(),
        };
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| bad("only mqtt://host:port is supported (no TLS)"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad("an IPv6 address needs a closing ]"))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(bad("unexpected text after the IPv6 address")),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number 1..65535"))?,
            None => 1883,
        };
        if host.is_empty() || port == 0 {
            return Err(bad("host and a non-zero port are required"));
        }
        Ok(BrokerAddr {
            host: host.to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            BrokerAddr::parse("mqtt://127.0.0.1:1884").unwrap(),
            BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1884
            }
        );
        assert_eq!(BrokerAddr::parse("tcp://broker").unwrap().port, 1883);
        assert_eq!(BrokerAddr::parse("mqtt://[::1]:9000").unwrap().host, "::1");
        for bad in [
            "mqtts://x:1",
            "x:1",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
        ] {
            assert!(BrokerAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_deterministic() {
        let cfg = SimConfig::default();
        assert_eq!(cfg.unit_name("ali", 0), "sim-ali-0001");
        assert_eq!(cfg.member_name("fgw", 1, 2), "sim-fgw-0002-s003");
        assert_eq!(cfg.unit_name("dock", 9), "sim-dock-0010");
        assert_eq!(cfg.site_client_id("fog", 0), "sim-site-fog-0001");
    }

    #[test]
    fn probabilities_are_checked() {
        let mut cfg = SimConfig::default();
        cfg.behaviour.faults.verify = 1.5;
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("fail-verify"), "{err}");
    }

    #[test]
    fn a_zero_progress_interval_is_refused() {
        let mut cfg = SimConfig::default();
        cfg.behaviour.progress_interval = Some(Duration::ZERO);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("--progress-secs"), "{err}");
        cfg.behaviour.progress_interval = Some(Duration::from_secs(1));
        cfg.validate().unwrap();
    }

    #[test]
    fn a_kind_listed_twice_is_refused() {
        use crate::sim::unit::tests::{FACTORY, HUBS, SIGNED};
        let twice = SimConfig {
            units: vec![
                UnitSpec::new(&FACTORY, &SIGNED, 1),
                UnitSpec::new(&FACTORY, &HUBS, 1),
                UnitSpec::new(&FACTORY, &SIGNED, 2),
            ],
            ..SimConfig::default()
        };
        let err = twice.validate().unwrap_err().to_string();
        assert!(err.contains("test devices are listed twice"), "{err}");
        let once = SimConfig {
            units: twice.units[..2].to_vec(),
            ..SimConfig::default()
        };
        once.validate().unwrap();
    }

    #[test]
    fn zero_units_per_connection_is_refused() {
        let cfg = SimConfig {
            per_connection: 0,
            ..SimConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("--per-connection"), "{err}");
    }

    #[test]
    fn fault_rolls_repeat_with_the_seed() {
        let odds = FaultOdds {
            download: 0.3,
            verify: 0.3,
            flash: 0.3,
            ..FaultOdds::default()
        };
        let run = |seed| {
            let mut rng = unit_rng(seed, 1, 7);
            (0..50)
                .map(|_| Fault::roll(&odds, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let mixed = run(42);
        assert!(mixed.contains(&Fault::None) && mixed.contains(&Fault::Verify));
    }

    #[test]
    fn a_lazy_stream_draws_what_the_eager_one_does() {
        let mut eager = unit_rng(9, 4, 42);
        let mut lazy = LazyRng::new(9, 4, 42);
        for _ in 0..20 {
            assert_eq!(eager.random::<u64>(), lazy.get().random::<u64>());
        }
    }

    #[test]
    fn certain_and_impossible_faults() {
        let mut rng = unit_rng(1, 5, 0);
        let never = FaultOdds::default();
        assert_eq!(Fault::roll(&never, &mut rng), Fault::None);
        let flash = FaultOdds {
            flash: 1.0,
            ..FaultOdds::default()
        };
        assert_eq!(Fault::roll(&flash, &mut rng), Fault::Flash);
    }
}
