//! How simulated devices behave: timing, failure odds and the random streams that make every
//! choice reproducible from the fleet's seed; and the broker address they connect to. (What a
//! fleet holds, [`super::SimConfig`], is in `unit.rs`, beside the factories its entries name.)
//!
//! Owns: validating the fault odds, per-device random number generators, the per-upgrade fault
//! roll and parsing the broker URL. Must never: touch the network or read a clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::error::SimError;
use crate::i18n::tr;

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
    /// Faults chosen in advance instead of rolled: the fleet's upgrades, in the order they
    /// start, suffer these; later upgrades roll the odds above. A story told with a fleet of
    /// one device (the demo's "fails once, then the retry recovers") needs no luck.
    pub script: Option<Arc<FaultScript>>,
}

/// The faults of a fleet's first upgrades, in order ([`FaultOdds::script`]). Shared by every
/// device of the fleet: give a device a script of its own by giving it a fleet of its own.
#[derive(Debug, Default)]
pub struct FaultScript {
    faults: Vec<Fault>,
    next: AtomicUsize,
}

impl FaultScript {
    pub fn new(faults: Vec<Fault>) -> Arc<FaultScript> {
        Arc::new(FaultScript {
            faults,
            next: AtomicUsize::new(0),
        })
    }

    /// The next scripted fault, `None` once the script is spent.
    fn take(&self) -> Option<Fault> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.faults.get(i).copied()
    }
}

impl PartialEq for FaultScript {
    fn eq(&self, other: &Self) -> bool {
        self.faults == other.faults
    }
}

impl FaultOdds {
    pub(crate) fn validate(&self) -> Result<(), SimError> {
        for (name, p) in [
            ("fail-download", self.download),
            ("fail-verify", self.verify),
            ("fail-flash", self.flash),
            ("reject", self.reject),
            ("silent", self.silent),
            ("offline-mid-download", self.offline_mid_download),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::InvalidConfig(tr!(
                    "sim.config.probability",
                    option = format!("--{name}"),
                    value = p
                )));
            }
        }
        Ok(())
    }
}

/// The failure one upgrade will suffer, rolled (or taken from a [`FaultScript`]) when the
/// upgrade starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The connection drops half-way through the download; the device comes back later.
    OfflineMidDownload,
    /// The download breaks off half-way.
    Download,
    /// The downloaded bytes are corrupted: the digest does not match.
    Verify,
    /// Writing to flash fails after the install time.
    Flash,
}

impl Fault {
    /// The script's next fault if it has one; otherwise rolls every kind in a fixed order so
    /// the same seed gives the same sequence of faults (a scripted upgrade draws nothing).
    pub(crate) fn roll(odds: &FaultOdds, rng: &mut StdRng) -> Fault {
        if let Some(fault) = odds.script.as_deref().and_then(FaultScript::take) {
            return fault;
        }
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

/// A broker address parsed from `mqtt://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl BrokerAddr {
    pub(crate) fn parse(url: &str) -> Result<BrokerAddr, SimError> {
        let bad = |why: String| SimError::InvalidBroker {
            url: url.chars().take(200).collect(),
            why,
        };
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .ok_or_else(|| bad(tr!("sim.broker.scheme")))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| bad(tr!("sim.broker.ipv6_bracket")))?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err(bad(tr!("sim.broker.after_ipv6"))),
            }
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            Some(p) => p.parse::<u16>().map_err(|_| bad(tr!("sim.broker.port")))?,
            None => 1883,
        };
        if host.is_empty() || port == 0 {
            return Err(bad(tr!("sim.broker.host_port")));
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
    use crate::sim::{SimConfig, UnitSpec};

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

    #[test]
    fn a_script_decides_the_first_upgrades_then_the_odds_do() {
        let mut rng = unit_rng(1, 5, 0);
        let odds = FaultOdds {
            flash: 1.0,
            script: Some(FaultScript::new(vec![Fault::Download, Fault::None])),
            ..FaultOdds::default()
        };
        let rolled: Vec<Fault> = (0..3).map(|_| Fault::roll(&odds, &mut rng)).collect();
        assert_eq!(rolled, [Fault::Download, Fault::None, Fault::Flash]);
    }
}
