//! The one list of dialects. Built-ins are listed in `BUILTINS` (one line each, in rank
//! order); dialects loaded at run time are appended with [`register`] and never removed. Every
//! question about a dialect — which topics it owns, how to decode and encode, what it can do —
//! starts here, so the rest of the console never names one.
//!
//! Also where device ids are parsed (`FromStr`/`Deserialize` for `DeviceId` and `DialectId`):
//! the text's prefix picks the dialect, whose id shape says how the rest is split.

use crate::i18n::tr;
use std::str::FromStr;
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Deserializer};

use super::{Capabilities, Dialect, aliyun, aws, dji, fogcloud};
use crate::access::rules::RouteTable;
use crate::device_id::{DeviceId, DeviceIdError, DialectId};

/// The built-in dialects; a dialect's `id().rank()` is its index here.
static BUILTINS: [&dyn Dialect; 4] = [
    &aliyun::DIALECT,
    &fogcloud::DIALECT,
    &dji::DIALECT,
    &aws::DIALECT,
];

/// Ranks of dialects registered at run time start here.
pub const FIRST_USER_RANK: u16 = 1000;

/// Dialects registered at run time (rank = `FIRST_USER_RANK` + index).
static USER: RwLock<Vec<&'static dyn Dialect>> = RwLock::new(Vec::new());

/// Why a dialect could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{}", tr!("error.registry.prefix_taken", prefix = format!("{_0:?}")))]
    PrefixTaken(String),
    #[error("{}", tr!("error.registry.wrong_rank", dialect = format!("{dialect:?}"), rank = rank, expected = expected))]
    WrongRank {
        dialect: String,
        rank: u16,
        expected: u16,
    },
    #[error("{}", tr!("error.registry.topic_taken", topic = format!("{topic:?}"), dialect = format!("{dialect:?}"), owner = format!("{owner:?}")))]
    TopicTaken {
        dialect: String,
        topic: String,
        owner: String,
    },
}

/// The dialect `id` names.
///
/// A `DialectId` is only made by a dialect listed here (built-ins are checked by this module's
/// tests, user dialects get theirs from [`register`]), so the lookup cannot miss: a miss is a
/// bug in this crate, not input, and panics.
pub fn get(id: DialectId) -> &'static dyn Dialect {
    lookup(id).unwrap_or_else(|| panic!("dialect {id} is not registered"))
}

fn lookup(id: DialectId) -> Option<&'static dyn Dialect> {
    let rank = usize::from(id.rank());
    if let Some(d) = BUILTINS.get(rank) {
        return Some(*d);
    }
    let index = rank.checked_sub(usize::from(FIRST_USER_RANK))?;
    user().get(index).copied()
}

/// The sentence the failure's dialect gives for its code, for the window, logs and reports.
pub fn describe(failure: &super::Failure) -> String {
    get(failure.dialect).errors().describe(failure.code)
}

/// What the dialect of `id` can do.
pub fn capabilities(id: DialectId) -> &'static Capabilities {
    get(id).capabilities()
}

fn user() -> std::sync::RwLockReadGuard<'static, Vec<&'static dyn Dialect>> {
    USER.read().unwrap_or_else(PoisonError::into_inner)
}

/// Every dialect, in rank order.
pub fn all() -> Vec<&'static dyn Dialect> {
    let mut list: Vec<&'static dyn Dialect> = BUILTINS.to_vec();
    list.extend(user().iter().copied());
    list
}

/// Every dialect's id, in rank order.
pub fn ids() -> Vec<DialectId> {
    all().into_iter().map(|d| d.id()).collect()
}

/// The labels of the dialects whose notices carry `field` (e.g. which ones send the operator's
/// description), in rank order.
pub fn labels_sending(field: super::OfferField) -> Vec<&'static str> {
    all()
        .into_iter()
        .filter(|d| d.capabilities().offer_fields.contains(&field))
        .map(|d| d.id().label())
        .collect()
}

/// The dialect whose text prefix is `prefix` (ignoring ASCII case). Every device id parsed
/// (database rows, JSON, the command line) asks this, so it looks without allocating.
pub fn by_prefix(prefix: &str) -> Option<DialectId> {
    let named = |d: &dyn Dialect| d.id().as_str().eq_ignore_ascii_case(prefix);
    if let Some(d) = BUILTINS.iter().find(|d| named(**d)) {
        return Some(d.id());
    }
    user().iter().find(|d| named(**d)).map(|d| d.id())
}

/// Every dialect's simulator, in rank order (dialects without one are left out): what
/// `ota-console sim`, the demo and tests build simulated fleets from.
pub fn sim_factories() -> Vec<&'static dyn crate::sim::SimFactory> {
    all().into_iter().filter_map(|d| d.sim()).collect()
}

/// The wildcard topics the console subscribes to for one dialect.
pub fn subscriptions(id: DialectId) -> &'static [&'static str] {
    let dialect = get(id);
    dialect.subscriptions()
}

/// Every registered dialect's topic routes, for the broker's authorization
/// (`access::rules::Rules`): the one place the rules' table is built from, by the embedded
/// broker, `broker-config` and tests alike. Dialects registered later are not in it.
pub fn topic_routes() -> RouteTable {
    RouteTable::new(all().into_iter().map(|d| (d.id(), d.topic_routes())))
}

/// Which dialect a topic belongs to, by its shape alone.
pub fn dialect_of_topic(topic: &str) -> Option<&'static dyn Dialect> {
    if let Some(d) = BUILTINS.iter().find(|d| d.owns_topic(topic)) {
        return Some(*d);
    }
    user().iter().find(|d| d.owns_topic(topic)).copied()
}

/// Adds a dialect loaded at run time. Its rank must be the next free one (see
/// [`next_user_rank`]), its prefix new, and none of its subscriptions owned by another dialect.
pub fn register(dialect: &'static dyn Dialect) -> Result<DialectId, RegistryError> {
    // The dialects' own methods run here and may ask the registry themselves (a dialect calls
    // `next_user_rank` to make its id): nothing of theirs is called with the lock held.
    let id = dialect.id();
    let (others, registered) = {
        let list = user();
        let others: Vec<&'static dyn Dialect> = BUILTINS
            .iter()
            .copied()
            .chain(list.iter().copied())
            .collect();
        (others, list.len())
    };
    check_rank(id, registered)?;
    for other in others {
        check_clash(dialect, other)?;
    }
    let mut list = USER.write().unwrap_or_else(PoisonError::into_inner);
    // Another registration may have come in between: the rank decides.
    check_rank(id, list.len())?;
    list.push(dialect);
    Ok(id)
}

fn check_rank(id: DialectId, registered: usize) -> Result<(), RegistryError> {
    let expected = rank_after(registered);
    if id.rank() == expected {
        Ok(())
    } else {
        Err(RegistryError::WrongRank {
            dialect: id.as_str().to_owned(),
            rank: id.rank(),
            expected,
        })
    }
}

/// A prefix taken, or a topic one of the two would own from the other's subscriptions.
fn check_clash(new: &dyn Dialect, other: &dyn Dialect) -> Result<(), RegistryError> {
    let id = new.id();
    if other.id().as_str().eq_ignore_ascii_case(id.as_str()) {
        return Err(RegistryError::PrefixTaken(id.as_str().to_owned()));
    }
    let probe = |filter: &str| filter.replace(['+', '#'], "x");
    let taken = new
        .subscriptions()
        .iter()
        .find(|t| other.owns_topic(&probe(t)))
        .or_else(|| {
            other
                .subscriptions()
                .iter()
                .find(|t| new.owns_topic(&probe(t)))
        });
    match taken {
        Some(topic) => Err(RegistryError::TopicTaken {
            dialect: id.as_str().to_owned(),
            topic: (*topic).to_owned(),
            owner: other.id().as_str().to_owned(),
        }),
        None => Ok(()),
    }
}

/// The rank the next dialect given to [`register`] must have.
pub fn next_user_rank() -> u16 {
    rank_after(user().len())
}

fn rank_after(registered: usize) -> u16 {
    u16::try_from(registered)
        .ok()
        .and_then(|n| FIRST_USER_RANK.checked_add(n))
        .unwrap_or(u16::MAX)
}

fn unknown_dialect(name: &str) -> DeviceIdError {
    DeviceIdError::UnknownDialect {
        name: name.chars().take(32).collect(),
        known: ids()
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

impl FromStr for DialectId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        by_prefix(s.trim()).ok_or_else(|| unknown_dialect(s))
    }
}

impl<'de> Deserialize<'de> for DialectId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for DeviceId {
    type Err = DeviceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (prefix, rest) = s
            .split_once(':')
            .ok_or_else(|| DeviceIdError::Malformed(s.chars().take(300).collect()))?;
        let dialect = by_prefix(prefix).ok_or_else(|| unknown_dialect(prefix))?;
        DeviceId::parse_after_prefix(dialect, rest)
    }
}

impl<'de> Deserialize<'de> for DeviceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_id::{DeviceIdError, MAX_SEGMENT_BYTES};

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "aliyun:a1B2c3/dev-01",
            "fogcloud:12097812/00000001",
            "dji:4TADKAQ000002J",
            "aliyun:pk/dn#MCU",
            "dji:1581F5BK#camera",
            "fogcloud:pk/设备一号",
        ] {
            let id: DeviceId = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), id);
        }
    }

    #[test]
    fn parts_are_exposed() {
        let id: DeviceId = "aliyun:pk/dn#MCU".parse().unwrap();
        assert_eq!(id.dialect(), aliyun::ID);
        assert_eq!(id.product_key(), Some("pk"));
        assert_eq!(id.name(), "dn");
        assert_eq!(id.module(), Some("MCU"));
        assert_eq!(id.device().to_string(), "aliyun:pk/dn");
        let dji = DeviceId::dji("SN1").unwrap();
        assert_eq!(dji.product_key(), None);
    }

    #[test]
    fn default_module_is_no_module() {
        let id = DeviceId::dji("SN")
            .unwrap()
            .with_module(Some("default"))
            .unwrap();
        assert_eq!(id.module(), None);
        assert!("dji:SN#default".parse::<DeviceId>().is_err());
    }

    #[test]
    fn hostile_segments_are_rejected() {
        let long = "x".repeat(MAX_SEGMENT_BYTES + 1);
        for (pk, dn) in [
            ("", "dn"),
            ("pk", ""),
            ("p+k", "dn"),
            ("pk", "d#n"),
            ("pk", "a/b"),
            ("pk", "nul\0"),
            (long.as_str(), "dn"),
        ] {
            assert!(DeviceId::aliyun(pk, dn).is_err(), "{pk:?}/{dn:?}");
            assert!(DeviceId::fogcloud(pk, dn).is_err(), "{pk:?}/{dn:?}");
        }
        assert!(DeviceId::dji(&"x".repeat(MAX_SEGMENT_BYTES)).is_ok());
        assert!(DeviceId::dji("a/b").is_err());
        let err = DeviceId::dji("+").unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
    }

    #[test]
    fn names_that_could_pose_as_another_device_are_rejected() {
        // "pump-7" shown right-to-left, or with a zero-width space, looks like another device.
        for dn in [
            "pump\u{202E}7-",
            "pump\u{200B}-7",
            "\u{2067}pump-7",
            "\u{FEFF}pump-7",
        ] {
            let err = DeviceId::aliyun("pk", dn).unwrap_err();
            assert!(matches!(err, DeviceIdError::ForbiddenChar { .. }), "{dn:?}");
        }
        // Non-ASCII letters are fine: device names in Chinese exist.
        assert!(DeviceId::aliyun("pk", "水泵-7").is_ok());
        assert!(DeviceId::aliyun("pk", "pump_7@lab.a:b").is_ok());
    }

    #[test]
    fn malformed_texts_are_rejected() {
        for text in [
            "",
            "aliyun",
            "aliyun:pk",
            "aliyun:pk/dn/x",
            "mqtt:pk/dn",
            "dji:",
            "dji:sn#",
            "dji:a/b",
            "fogcloud:pk/dn#m/x",
        ] {
            assert!(text.parse::<DeviceId>().is_err(), "{text:?}");
        }
    }

    #[test]
    fn builtins_are_ranked_by_position_with_unique_prefixes() {
        for (i, d) in BUILTINS.iter().enumerate() {
            assert_eq!(usize::from(d.id().rank()), i, "{}", d.id());
            assert!(std::ptr::eq(get(d.id()), *d));
            assert_eq!(by_prefix(d.id().as_str()), Some(d.id()));
            assert_eq!(d.id().as_str().parse::<DialectId>().unwrap(), d.id());
        }
        let mut prefixes: Vec<_> = BUILTINS.iter().map(|d| d.id().as_str()).collect();
        prefixes.dedup();
        assert_eq!(prefixes.len(), BUILTINS.len());
        let err = "mqtt".parse::<DialectId>().unwrap_err();
        assert!(err.to_string().contains("aliyun, fogcloud, dji"), "{err}");
    }

    #[test]
    fn every_subscription_is_owned_by_its_dialect_alone() {
        for d in all() {
            for filter in d.subscriptions() {
                let topic = filter.replace('+', "x");
                let owner = dialect_of_topic(&topic).map(|o| o.id());
                assert_eq!(owner, Some(d.id()), "{filter}");
                let owners = all().iter().filter(|o| o.owns_topic(&topic)).count();
                assert_eq!(owners, 1, "{filter} is owned by {owners} dialects");
            }
        }
    }

    #[test]
    fn simulated_unit_kinds_have_unique_flags_tags_and_streams() {
        let mut flags = Vec::new();
        let mut tags = Vec::new();
        let mut streams = Vec::new();
        for d in all() {
            let Some(factory) = d.sim() else { continue };
            assert_eq!(factory.dialect(), d.id());
            assert!(!factory.kinds().is_empty(), "{}", d.id());
            for kind in factory.kinds() {
                flags.push(kind.flag);
                flags.extend(kind.members.as_ref().map(|m| m.flag));
                tags.push(kind.tag);
                streams.push(kind.stream);
            }
        }
        for list in [&mut flags, &mut tags] {
            let n = list.len();
            list.sort_unstable();
            list.dedup();
            assert_eq!(list.len(), n, "{list:?}");
        }
        let n = streams.len();
        streams.sort_unstable();
        streams.dedup();
        assert_eq!(streams.len(), n);
        assert_eq!(sim_factories().len(), BUILTINS.len());
    }

    #[test]
    fn built_in_simulators_keep_their_random_streams() {
        // The salts the simulator used before it had a seam (its `UnitKind` enum, 1-based):
        // the same seed still picks the same silent devices, faults and secrets.
        let streams: Vec<(&str, u64)> = sim_factories()
            .iter()
            .flat_map(|f| f.kinds().iter().map(|k| (k.flag, k.stream)))
            .collect();
        assert_eq!(
            streams,
            [
                ("aliyun", 1),
                ("fogcloud", 2),
                ("fogcloud-gateways", 3),
                ("dji-docks", 5),
                ("aws", 20)
            ]
        );
    }

    #[test]
    fn a_user_dialect_with_a_taken_prefix_or_rank_is_refused() {
        struct Copycat;
        const IDENT: crate::device_id::DialectIdent = crate::device_id::DialectIdent {
            rank: 7,
            prefix: "copycat",
            label: "Copycat",
            shape: crate::device_id::IdShape::Name { name: "sn" },
        };
        impl Dialect for Copycat {
            fn id(&self) -> DialectId {
                // A dialect may ask the registry while it is being registered.
                assert!(by_prefix("aliyun").is_some());
                let _ = next_user_rank();
                DialectId::new(&IDENT)
            }
            fn subscriptions(&self) -> &[&'static str] {
                &["copycat/+/up"]
            }
            fn owns_topic(&self, topic: &str) -> bool {
                topic.starts_with("copycat/")
            }
            fn decode(
                &self,
                _topic: &str,
                _payload: &[u8],
            ) -> Result<Vec<crate::protocol::Event>, crate::protocol::DecodeError> {
                Ok(Vec::new())
            }
            fn encode(
                &self,
                notice: &crate::protocol::Notice,
            ) -> Result<crate::protocol::Outbound, crate::protocol::EncodeError> {
                Err(crate::protocol::EncodeError::DialectMismatch {
                    device: notice.device().clone(),
                })
            }
            fn capabilities(&self) -> &'static Capabilities {
                aliyun::DIALECT.capabilities()
            }
            fn errors(&self) -> &'static crate::protocol::ErrorTable {
                &aliyun::ERRORS
            }
            fn topic_routes(&self) -> &'static [crate::access::rules::TopicRoute] {
                &[]
            }
            fn samples(&self) -> &'static crate::protocol::Samples {
                aliyun::DIALECT.samples()
            }
        }
        static COPYCAT: Copycat = Copycat;
        // Bounded: a registration that holds the registry's lock while it asks the dialect
        // (whose `id` asks the registry) would hang.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(register(&COPYCAT));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("register returns");
        assert!(matches!(
            result,
            Err(RegistryError::WrongRank { rank: 7, .. })
        ));
        assert!(by_prefix("copycat").is_none());
    }
}
