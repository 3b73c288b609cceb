//! The simulator's seam: what a dialect gives so that its devices can be simulated. A dialect
//! implements [`SimFactory`] next to its simulated devices (`protocol/<dialect>/sim.rs`) and
//! returns it from `Dialect::sim`; the fleet, the credentials, the `ota-console sim` flags and
//! the demo are all built from the factories, so nothing here names a dialect.
//!
//! Owns: what a fleet holds ([`SimConfig`]: its entries, names, version, seed, behaviour) and
//! its validation; the description of a kind of unit ([`UnitKind`]: its flag, name tag, random stream,
//! members), one entry of a fleet ([`UnitSpec`]), turning `(flag, count)` pairs into entries
//! ([`units_from_flags`]) and [`Spawner`], through which a factory starts its units on the
//! shared runtime (links, hubs, stats) without seeing how connections are shared.
//!
//! Dependencies point one way: `protocol` (each dialect's factory) uses `sim`; `sim` never
//! uses `protocol` (the simulator stays an independent reading of the documents, and the caller
//! picks factories from the dialect registry and hands them in).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::device_id::{DeviceId, DeviceIdError, DialectId};

use super::config::{Behaviour, BrokerAddr};
use super::credentials::SimLogins;
use super::ctx::Ctx;
use super::error::SimError;
use super::hub::{self, Shared};
use super::stats::StatsCell;
use crate::i18n::tr;

/// Longest name prefix / product key / version string accepted (they end up in topics and JSON).
const MAX_TEXT_BYTES: usize = 64;

/// The options of `ota-console sim` that are not generated from factories, and the global
/// ones: a factory's flag must be none of them (`cli/sim.rs`'s tests keep the list complete).
pub const FIXED_OPTIONS: &[&str] = &[
    "broker",
    "version",
    "module",
    "seed",
    "product-key",
    "name-prefix",
    "bandwidth",
    "install-secs",
    "fail-download",
    "fail-verify",
    "fail-flash",
    "reject",
    "silent",
    "offline-mid-download",
    "offline-secs",
    "pull",
    "pull-secs",
    "progress-secs",
    "summary-secs",
    "strict",
    "subscribe-delay-ms",
    "credentials",
    "provision",
    "per-connection",
    "json",
    "help",
    "dialect-file",
    "log",
    "lang",
];

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
    pub logins: std::sync::Arc<SimLogins>,
    /// How many units that would each hold a connection (a device, a gateway with its
    /// sub-devices, a dock with its drone) share one MQTT connection, as devices behind a
    /// site proxy do (`ota-console sim --per-connection N`); 1 (the default): each its own.
    /// Units share only with units of their own kind; a shared connection logs in as the site
    /// user that lists all its devices (see [`SimLogins::provision`]). Alibaba devices
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

impl SimConfig {
    /// Checks everything that would otherwise fail later inside a device task.
    pub fn validate(&self) -> Result<(), SimError> {
        self.behaviour.faults.validate()?;
        for (what, text) in [
            (tr!("sim.config.what_version"), self.version.as_str()),
            (
                tr!("sim.config.what_product_key"),
                self.product_key.as_str(),
            ),
            (
                tr!("sim.config.what_name_prefix"),
                self.name_prefix.as_str(),
            ),
        ] {
            if text.is_empty() || text.len() > MAX_TEXT_BYTES {
                return Err(SimError::InvalidConfig(tr!(
                    "sim.config.text_length",
                    what = what,
                    max = MAX_TEXT_BYTES,
                    got = text.len()
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
                return Err(SimError::InvalidConfig(tr!(
                    "sim.config.listed_twice",
                    kind = unit.kind.label,
                    option = format!("--{}", unit.kind.flag)
                )));
            }
        }
        if self.behaviour.progress_interval == Some(Duration::ZERO) {
            return Err(SimError::InvalidConfig(tr!("sim.config.progress_zero")));
        }
        if self.behaviour.strict_subscribe_delay > Duration::from_secs(600) {
            return Err(SimError::InvalidConfig(tr!("sim.config.subscribe_delay")));
        }
        if self.behaviour.bandwidth_bytes_per_sec == Some(0) {
            return Err(SimError::InvalidConfig(tr!("sim.config.bandwidth_zero")));
        }
        if self.per_connection == 0 {
            return Err(SimError::InvalidConfig(tr!(
                "sim.config.per_connection_zero"
            )));
        }
        BrokerAddr::parse(&self.broker_url)?;
        Ok(())
    }

    /// The same fleet with `units` instead of its units.
    pub fn with_units(self, units: Vec<UnitSpec>) -> SimConfig {
        SimConfig { units, ..self }
    }

    /// The name (or serial number) of the `index`-th (from 0) unit whose kind has the name tag
    /// `tag` ([`UnitKind::tag`]): `{prefix}-{tag}-0001` for index 0.
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

/// What a dialect offers the simulator. Implementations are stateless `'static` values.
pub trait SimFactory: Send + Sync + 'static {
    /// The dialect whose devices this simulates.
    fn dialect(&self) -> DialectId;

    /// The kinds of unit it offers (a device, a gateway with sub-devices, a dock with its
    /// drone); the first is the default ([`UnitSpec::of`]).
    fn kinds(&self) -> &'static [UnitKind];

    /// Starts `unit.count` units of `unit.kind` (one of [`SimFactory::kinds`]) on `fleet`.
    fn spawn(&self, unit: &UnitSpec, fleet: &mut Spawner<'_>) -> Result<(), SimError>;

    /// What the `index`-th unit of `unit` needs to log in to a secured broker (what
    /// `ota-console sim --provision` writes for it).
    fn credential(
        &self,
        unit: &UnitSpec,
        cfg: &SimConfig,
        index: usize,
    ) -> Result<Credential, DeviceIdError>;
}

/// One kind of simulated unit: something that holds (or shares) one MQTT connection.
#[derive(Debug)]
pub struct UnitKind {
    /// Names the kind within its factory (`devices`, `gateways`, `docks`).
    pub key: &'static str,
    /// Plural noun for messages (e.g. "FogCloud gateways").
    pub label: &'static str,
    /// The `ota-console sim` option giving how many, without dashes; unique over all dialects.
    pub flag: &'static str,
    /// Placeholder of the option's value in `--help`.
    pub value_name: &'static str,
    /// The option's help.
    pub help: &'static str,
    /// In device names (`{prefix}-{tag}-0001`) and shared connections' client ids; unique
    /// over all dialects.
    pub tag: &'static str,
    /// Salt of the units' random streams, unique over all kinds and members, so that the same
    /// seed gives the same choices whatever else the fleet holds.
    pub stream: u64,
    /// Devices attached to each unit whose number is chosen per fleet (sub-devices).
    pub members: Option<MemberKind>,
    /// How many the GUI's demo fleet has ([`demo_units`]).
    pub demo: usize,
}

/// The devices behind each unit of a kind (e.g. a gateway's sub-devices).
#[derive(Debug)]
pub struct MemberKind {
    /// Singular noun for messages (e.g. "sub-device").
    pub noun: &'static str,
    /// The option giving how many per unit, without dashes; unique over all dialects.
    pub flag: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    /// How many when the fleet does not say.
    pub default: usize,
    /// How many in the GUI's demo fleet.
    pub demo: usize,
}

/// One entry of a fleet: `count` units of one kind of one dialect's factory.
#[derive(Clone, Copy)]
pub struct UnitSpec {
    pub factory: &'static dyn SimFactory,
    pub kind: &'static UnitKind,
    pub count: usize,
    /// Members per unit, for kinds that have them (otherwise 0).
    pub members: usize,
}

impl std::fmt::Debug for UnitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitSpec")
            .field("dialect", &self.factory.dialect().as_str())
            .field("kind", &self.kind.key)
            .field("count", &self.count)
            .field("members", &self.members)
            .finish()
    }
}

impl UnitSpec {
    /// `count` units of `kind`, with the kind's default number of members.
    pub fn new(factory: &'static dyn SimFactory, kind: &'static UnitKind, count: usize) -> Self {
        UnitSpec {
            factory,
            kind,
            count,
            members: kind.members.as_ref().map_or(0, |m| m.default),
        }
    }

    /// `count` units of the factory's default kind; `None` if it offers no kind.
    pub fn of(factory: &'static dyn SimFactory, count: usize) -> Option<Self> {
        let kind = factory.kinds().first()?;
        Some(UnitSpec::new(factory, kind, count))
    }

    /// The same with `members` members per unit.
    pub fn with_members(self, members: usize) -> Self {
        UnitSpec { members, ..self }
    }

    /// Whether this entry is of `kind` (kinds are told apart by [`UnitKind::key`]).
    pub fn is(&self, kind: &UnitKind) -> bool {
        self.kind.key == kind.key
    }

    pub(crate) fn validate(&self) -> Result<(), SimError> {
        if !self.factory.kinds().iter().any(|k| self.is(k)) {
            return Err(SimError::InvalidConfig(tr!(
                "sim.config.unknown_kind",
                kind = self.kind.label,
                dialect = self.factory.dialect()
            )));
        }
        match &self.kind.members {
            Some(m) if self.count > 0 && self.members == 0 => Err(SimError::InvalidConfig(tr!(
                "sim.config.no_members",
                kind = self.kind.label,
                member = m.noun,
                option = format!("--{}", m.flag)
            ))),
            _ => Ok(()),
        }
    }
}

/// What one unit logs in with on a secured broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A per-device secret it signs its own login with (so it never shares a connection when
    /// it has one): the secrets file's `(product key, name)`.
    Secret { product_key: String, name: String },
    /// A user of `mqtt-users.txt` naming these devices (a unit speaking for others lists them).
    User(Vec<DeviceId>),
}

/// The entries `counts` describes, each `(flag, n)` naming a kind's option
/// ([`UnitKind::flag`], `n` units) or a member option ([`MemberKind::flag`], `n` members per
/// unit of that kind), as `ota-console sim` reads them. Entries follow the order of
/// `factories` and their kinds; kinds with no units are left out.
pub fn units_from_flags(
    factories: &[&'static dyn SimFactory],
    counts: &[(&str, usize)],
) -> Result<Vec<UnitSpec>, SimError> {
    let known = |flag: &str| {
        factories.iter().any(|f| {
            f.kinds()
                .iter()
                .any(|k| k.flag == flag || k.members.as_ref().is_some_and(|m| m.flag == flag))
        })
    };
    if let Some((flag, _)) = counts.iter().find(|(flag, _)| !known(flag)) {
        return Err(SimError::InvalidConfig(tr!(
            "sim.config.unknown_flag",
            option = format!("--{flag}")
        )));
    }
    let given = |flag: &str| counts.iter().rev().find(|(f, _)| *f == flag).map(|c| c.1);
    let mut units = Vec::new();
    for &factory in factories {
        for kind in factory.kinds() {
            let count = given(kind.flag).unwrap_or(0);
            if count == 0 {
                continue;
            }
            let mut unit = UnitSpec::new(factory, kind, count);
            if let Some(n) = kind.members.as_ref().and_then(|m| given(m.flag)) {
                unit.members = n;
            }
            units.push(unit);
        }
    }
    Ok(units)
}

/// The GUI demo's units: every kind of every factory, as many as [`UnitKind::demo`] says.
pub fn demo_units(factories: &[&'static dyn SimFactory]) -> Vec<UnitSpec> {
    factories
        .iter()
        .flat_map(|&f| {
            f.kinds().iter().filter(|k| k.demo > 0).map(move |k| {
                let unit = UnitSpec::new(f, k, k.demo);
                match &k.members {
                    Some(m) => unit.with_members(m.demo),
                    None => unit,
                }
            })
        })
        .collect()
}

/// A simulated unit as the shared runtime runs it. Implemented by each dialect's device types;
/// generic rather than boxed, so a unit costs no more than its own state.
pub(crate) trait SimUnit: Send + Sized + 'static {
    /// The devices its connection speaks for (what a shared connection's site login lists).
    fn ids(&self) -> Vec<DeviceId>;

    /// Its devices' counters; the first is the unit's own (it counts what its link sends).
    fn cells(&self) -> Vec<StatsCell>;

    /// Whether it may share a connection with others of its kind (not when it signs its own
    /// login with a per-device secret).
    fn may_share(&self) -> bool {
        true
    }

    /// Runs the unit on its own connection, or on `shared` (see `hub.rs`).
    fn start(self, shared: Option<Shared>) -> impl Future<Output = ()> + Send + 'static;
}

/// How a factory starts its units on the fleet being built (see [`SimFactory::spawn`]).
pub struct Spawner<'a> {
    pub(super) cells: &'a mut Vec<StatsCell>,
    pub(super) tasks: &'a mut JoinSet<()>,
    pub(super) ctx: &'a Arc<Ctx>,
    pub(super) cfg: &'a SimConfig,
}

impl Spawner<'_> {
    /// Makes `unit.count` units with `make(cfg, index, ctx)` and starts them, grouped
    /// [`SimConfig::per_connection`] to a connection.
    pub(crate) fn spawn_units<U: SimUnit>(
        &mut self,
        unit: &UnitSpec,
        mut make: impl FnMut(&SimConfig, usize, Arc<Ctx>) -> Result<U, SimError>,
    ) -> Result<(), SimError> {
        let per = self.cfg.per_connection.max(1);
        for first in (0..unit.count).step_by(per) {
            let units = (first..unit.count.min(first + per))
                .map(|i| make(self.cfg, i, self.ctx.clone()))
                .collect::<Result<Vec<U>, _>>()?;
            let ids = units.iter().flat_map(U::ids).collect::<Vec<_>>();
            let site = units
                .iter()
                .all(U::may_share)
                .then(|| self.cfg.site_client_id(unit.kind.tag, first / per));
            self.spawn_group(site, &ids, units);
        }
        Ok(())
    }

    /// Starts `units` of one kind: each on its own connection, or, when there are several and
    /// `site` names their shared connection's client id, all on that one connection, logged
    /// in as the site user that lists `devices` (see `hub.rs`).
    fn spawn_group<U: SimUnit>(
        &mut self,
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
        let login = self.ctx.logins.site_login(devices, client_id);
        self.tasks
            .spawn(hub.run(self.ctx.addr.clone(), login, self.ctx.connect_gate.clone()));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! A dialect-free factory, so the runtime's own tests need no real dialect.
    use super::*;
    use crate::device_id::{DialectIdent, IdShape};

    const IDENT: DialectIdent = DialectIdent {
        rank: 900,
        prefix: "testsim",
        label: "Test simulator",
        shape: IdShape::KeyAndName {
            key: "pk",
            name: "name",
        },
    };

    /// Devices that sign their login with a secret, and hubs that speak for two members each.
    pub(crate) struct TestFactory;

    pub(crate) static FACTORY: TestFactory = TestFactory;

    pub(crate) const SIGNED: UnitKind = UnitKind {
        key: "signed",
        label: "test devices",
        flag: "test-signed",
        value_name: "N",
        help: "Test devices",
        tag: "ts",
        stream: 901,
        members: None,
        demo: 1,
    };

    pub(crate) const HUBS: UnitKind = UnitKind {
        key: "hubs",
        label: "test hubs",
        flag: "test-hubs",
        value_name: "N",
        help: "Test hubs",
        tag: "th",
        stream: 902,
        members: Some(MemberKind {
            noun: "member",
            flag: "test-members",
            value_name: "K",
            help: "Members per test hub",
            default: 2,
            demo: 3,
        }),
        demo: 0,
    };

    static KINDS: [UnitKind; 2] = [SIGNED, HUBS];

    /// A device id the credential files accept: they parse ids through the dialect registry,
    /// so a registered dialect's (any with a key and a name) rather than this test dialect's.
    pub(crate) fn id(cfg: &SimConfig, name: &str) -> DeviceId {
        format!("fogcloud:{}/{name}", cfg.product_key)
            .parse()
            .unwrap()
    }

    impl SimFactory for TestFactory {
        fn dialect(&self) -> DialectId {
            DialectId::new(&IDENT)
        }

        fn kinds(&self) -> &'static [UnitKind] {
            &KINDS
        }

        fn spawn(&self, _unit: &UnitSpec, _fleet: &mut Spawner<'_>) -> Result<(), SimError> {
            Ok(())
        }

        fn credential(
            &self,
            unit: &UnitSpec,
            cfg: &SimConfig,
            index: usize,
        ) -> Result<Credential, DeviceIdError> {
            let name = cfg.unit_name(unit.kind.tag, index);
            if unit.is(&KINDS[0]) {
                return Ok(Credential::Secret {
                    product_key: cfg.product_key.clone(),
                    name,
                });
            }
            let mut devices = vec![id(cfg, &name)];
            for m in 0..unit.members {
                devices.push(id(cfg, &cfg.member_name(unit.kind.tag, index, m)));
            }
            Ok(Credential::User(devices))
        }
    }

    fn factories() -> [&'static dyn SimFactory; 1] {
        [&FACTORY]
    }

    #[test]
    fn flags_become_entries_in_the_factories_order() {
        let units = units_from_flags(
            &factories(),
            &[("test-hubs", 3), ("test-members", 5), ("test-signed", 2)],
        )
        .unwrap();
        assert_eq!(units.len(), 2);
        assert!(units[0].is(&KINDS[0]) && units[0].count == 2 && units[0].members == 0);
        assert!(units[1].is(&KINDS[1]) && units[1].count == 3 && units[1].members == 5);
        let defaults = units_from_flags(&factories(), &[("test-hubs", 1)]).unwrap();
        assert_eq!(defaults[0].members, 2);
        assert!(
            units_from_flags(&factories(), &[("test-signed", 0)])
                .unwrap()
                .is_empty()
        );
        let err = units_from_flags(&factories(), &[("nope", 1)]).unwrap_err();
        assert!(err.to_string().contains("--nope"), "{err}");
    }

    #[test]
    fn the_demo_has_each_kind_it_asks_for() {
        let units = demo_units(&factories());
        assert_eq!(units.len(), 1);
        assert!(units[0].is(&SIGNED) && units[0].count == 1);
    }

    #[test]
    fn a_kind_with_members_needs_one() {
        let unit = UnitSpec::new(&FACTORY, &KINDS[1], 1).with_members(0);
        let err = unit.validate().unwrap_err().to_string();
        assert!(
            err.contains("test hubs need at least one member (--test-members)"),
            "{err}"
        );
        UnitSpec::new(&FACTORY, &KINDS[1], 0)
            .with_members(0)
            .validate()
            .unwrap();
        static OTHER: UnitKind = UnitKind {
            key: "other",
            ..SIGNED
        };
        let foreign = UnitSpec::new(&FACTORY, &OTHER, 1);
        assert!(
            foreign.validate().is_err(),
            "not one of the factory's kinds"
        );
        assert_eq!(UnitSpec::of(&FACTORY, 4).unwrap().kind.key, "signed");
    }
}
