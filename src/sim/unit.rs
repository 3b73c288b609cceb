//! The simulator's seam: what a dialect gives so that its devices can be simulated. A dialect
//! implements [`SimFactory`] next to its simulated devices (`protocol/<dialect>/sim.rs`) and
//! returns it from `Dialect::sim`; the fleet, the credentials, the `ota-console sim` flags and
//! the demo are all built from the factories, so nothing here names a dialect.
//!
//! Owns: the description of a kind of unit ([`UnitKind`]: its flag, name tag, random stream,
//! members), one entry of a fleet ([`UnitSpec`]), turning `(flag, count)` pairs into entries
//! ([`units_from_flags`]) and [`Spawner`], through which a factory starts its units on the
//! shared runtime (links, hubs, stats) without seeing how connections are shared.
//!
//! Dependencies point one way: `protocol` (each dialect's factory) uses `sim`; `sim` never
//! uses `protocol` (the simulator stays an independent reading of the documents, and the caller
//! picks factories from the dialect registry and hands them in).

use std::future::Future;
use std::sync::Arc;

use crate::device_id::{DeviceId, DeviceIdError, DialectId};

use super::hub::Shared;
use super::stats::StatsCell;
use super::{Ctx, SimConfig, SimError, SimFleet};

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
            return Err(SimError::InvalidConfig(format!(
                "{} is not a kind of unit the {} simulator offers",
                self.kind.label,
                self.factory.dialect()
            )));
        }
        match &self.kind.members {
            Some(m) if self.count > 0 && self.members == 0 => {
                Err(SimError::InvalidConfig(format!(
                    "{} need at least one {} (--{})",
                    self.kind.label, m.noun, m.flag
                )))
            }
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
        return Err(SimError::InvalidConfig(format!(
            "no simulated unit is counted by --{flag}"
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
    pub(super) fleet: &'a mut SimFleet,
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
            self.fleet.spawn_group(self.ctx, site, &ids, units);
        }
        Ok(())
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
