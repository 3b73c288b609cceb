//! Topic authorization, generated from each dialect's topic layout.
//!
//! Owns: the route types ([`TopicRoute`]: which way a topic flows, whose segments it carries),
//! the [`RouteTable`] of every topic the console's dialects use, and the decision for one client
//! and one topic or filter. The rules:
//! - the console may publish anything and subscribe to anything, wildcards included;
//! - a device, gateway or site may publish only its own uplink topics and subscribe only to its
//!   own downlink topics, named literally (no `+` or `#`);
//! - a topic outside every dialect's layout is refused for everyone but the console.
//!
//! Each dialect lists its own routes, with the decisions taken from its document, in
//! `protocol/<dialect>/routes.rs`; `protocol::registry::topic_routes` gathers them into the
//! table every [`Rules`] is built from. This module does not depend on `protocol` (the
//! dependency runs the other way). A route marked `relayed` is one a gateway may publish in the
//! name of a sub-device [`Rules`] knows to be its own (DJI drone `state` and `osd`).
//!
//! - Route parts [`Part::JobId`] and [`Part::Answer`] serve request/answer layouts such as
//!   AWS IoT Jobs': a job id level takes any valid segment, and an answer level (`accepted` /
//!   `rejected`) may be written `+` in a filter, where it can only match an answer to the
//!   client's own request (the SDKs subscribe to `<request>/+`).
//!
//! Pure; never panics on a topic or filter.

use crate::i18n::tr;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use std::sync::Arc;

use crate::device_id::{DeviceId, DialectId, Segment};

/// Longest topic or filter considered (MQTT allows 65535 bytes; ours are under 200).
pub const MAX_TOPIC_BYTES: usize = 1024;

/// Who a client authenticated as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// The console itself: every topic, every filter.
    Console,
    /// One device or gateway (its module, if any, is ignored: topics are per device).
    Device(DeviceId),
    /// Several devices sharing one user name (per-site credentials): the union of their rights.
    Site {
        name: String,
        devices: BTreeSet<DeviceId>,
    },
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Console => f.write_str("the console"),
            Identity::Device(id) => write!(f, "{}", id.device()),
            Identity::Site { name, .. } => write!(f, "site {name:?}"),
        }
    }
}

/// The answer for one publish or subscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Why a publish or subscribe was refused (shown in the log and the inspector).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("{}", tr!("error.denial.malformed", topic = format!("{topic:?}"), why = why))]
    Malformed { topic: String, why: Malformation },
    #[error("{}", tr!("error.denial.wildcard", filter = format!("{filter:?}")))]
    Wildcard { filter: String },
    #[error("{}", tr!("error.denial.downlink", topic = format!("{topic:?}")))]
    Downlink { topic: String },
    #[error("{}", tr!("error.denial.not_downlink", topic = format!("{topic:?}"), identity = identity))]
    NotDownlink { topic: String, identity: String },
    #[error("{}", tr!("error.denial.not_own", topic = format!("{topic:?}"), identity = identity))]
    NotOwn { topic: String, identity: String },
    #[error("{}", tr!("error.denial.unknown_topic", topic = format!("{topic:?}")))]
    UnknownTopic { topic: String },
}

/// What is wrong with a topic name or filter (MQTT 3.1.1 §4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformation {
    #[error("{}", tr!("error.denial.why.empty"))]
    Empty,
    #[error("{}", tr!("error.denial.why.too_long"))]
    TooLong,
    #[error("{}", tr!("error.denial.why.nul"))]
    Nul,
    #[error("{}", tr!("error.denial.why.wildcard_in_name"))]
    WildcardInName,
    #[error("{}", tr!("error.denial.why.hash_not_last"))]
    HashNotLast,
    #[error("{}", tr!("error.denial.why.plus_not_whole"))]
    PlusNotWhole,
}

/// Device to console, or console to device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

/// One level of a topic template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Lit(&'static str),
    /// The key segment of a device id (Alibaba/FogCloud product key), for dialects whose ids
    /// have one.
    Key,
    /// The name segment of a device id (device name, DJI serial number, AWS thing name).
    Name,
    /// Any one level that is a valid segment (an AWS job id, `$next` included); a filter may
    /// write `+` here.
    JobId,
    /// `accepted` or `rejected`; a filter may write `+` here (AWS Jobs answers).
    Answer,
}

/// One topic of one dialect: which way it flows and its levels. Each dialect lists its own
/// (each dialect's `topic_routes`); a [`RouteTable`] gathers them for [`Rules`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicRoute {
    pub direction: Direction,
    pub parts: &'static [Part],
    /// The gateway publishes this topic in its sub-device's name (DJI drone state and osd).
    pub relayed: bool,
}

impl TopicRoute {
    /// A topic the device publishes.
    pub const fn up(parts: &'static [Part]) -> TopicRoute {
        TopicRoute {
            direction: Direction::Up,
            parts,
            relayed: false,
        }
    }

    /// A topic the device subscribes to.
    pub const fn down(parts: &'static [Part]) -> TopicRoute {
        TopicRoute {
            direction: Direction::Down,
            parts,
            relayed: false,
        }
    }

    /// A topic the device publishes, and its gateway for it when the device is a sub-device
    /// the rules know.
    pub const fn relayed(parts: &'static [Part]) -> TopicRoute {
        TopicRoute {
            direction: Direction::Up,
            parts,
            relayed: true,
        }
    }
}

/// Whose identities a route serves: the devices of one dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Dialect(DialectId),
}

impl Family {
    fn serves(self, id: &DeviceId) -> bool {
        self == Family::Dialect(id.dialect())
    }
}

/// Every topic the rules know: the routes of each dialect given to [`RouteTable::new`] (the
/// caller takes them from the dialect registry, which this module does not depend on). Cheap
/// to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: Arc<[(Family, TopicRoute)]>,
}

impl RouteTable {
    /// The routes of `dialects`, in the order given.
    pub fn new<'a>(
        dialects: impl IntoIterator<Item = (DialectId, &'a [TopicRoute])>,
    ) -> RouteTable {
        let routes: Vec<(Family, TopicRoute)> = dialects
            .into_iter()
            .flat_map(|(d, routes)| routes.iter().map(move |r| (Family::Dialect(d), *r)))
            .collect();
        RouteTable {
            routes: routes.into(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = &(Family, TopicRoute)> {
        self.routes.iter()
    }
}

use Part::{Answer, JobId, Lit, Name};

/// The segments a topic carries, once matched against a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bound<'t> {
    pk: Option<&'t str>,
    name: &'t str,
}

/// Matches the levels of a topic (or a filter, when `filter` is set: `+` allowed in `Answer`
/// and `JobId`)
/// against `route`; the product key and name it carries.
fn bind<'t>(route: &TopicRoute, levels: &[&'t str], filter: bool) -> Option<Bound<'t>> {
    if levels.len() != route.parts.len() {
        return None;
    }
    let mut pk = None;
    let mut name = None;
    for (part, &level) in route.parts.iter().zip(levels) {
        match *part {
            Lit(lit) => {
                if level != lit {
                    return None;
                }
            }
            Part::Key => pk = Some(level),
            Name => name = Some(level),
            JobId => {
                // The SDKs subscribe to `…/jobs/+/update/accepted` (any of the client's own
                // jobs), so a filter may write `+` here too.
                if !(filter && level == "+") && Segment::new("job id", level).is_err() {
                    return None;
                }
            }
            Answer => {
                if !(level == "accepted" || level == "rejected" || (filter && level == "+")) {
                    return None;
                }
            }
        }
    }
    // Levels that fill a segment are what a `DeviceId` accepts, so `+`, `#`, empty and
    // invisible characters can never stand for a device.
    let valid = |what, v: &str| Segment::new(what, v).is_ok();
    if pk.is_some_and(|pk| !valid("productKey", pk)) {
        return None;
    }
    let name = name?;
    if !valid("name", name) {
        return None;
    }
    Some(Bound { pk, name })
}

/// The decisions, with what is known about gateways and their sub-devices.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Every topic of every dialect (and AWS Jobs).
    routes: RouteTable,
    /// Sub-device → its gateway (a DJI drone → its dock), from the inventory or `update_topo`.
    gateway_of: BTreeMap<DeviceId, DeviceId>,
}

impl Rules {
    /// Rules over `routes` (from `protocol::registry::topic_routes`) without any known
    /// sub-device.
    pub fn new(routes: RouteTable) -> Rules {
        Rules {
            routes,
            gateway_of: BTreeMap::new(),
        }
    }

    /// Rules over `routes` knowing each `(device, gateway)` pair, e.g. from the inventory.
    pub fn with_gateways<'a>(
        routes: RouteTable,
        pairs: impl IntoIterator<Item = (&'a DeviceId, &'a DeviceId)>,
    ) -> Rules {
        let mut rules = Rules::new(routes);
        for (device, gateway) in pairs {
            rules.set_gateway(device, Some(gateway));
        }
        rules
    }

    /// Records (or with `None` forgets) the gateway `device` reports through.
    pub fn set_gateway(&mut self, device: &DeviceId, gateway: Option<&DeviceId>) {
        match gateway {
            Some(gw) => {
                self.gateway_of.insert(device.device(), gw.device());
            }
            None => {
                self.gateway_of.remove(&device.device());
            }
        }
    }

    /// The gateway `device` is known to belong to.
    pub fn gateway_of(&self, device: &DeviceId) -> Option<&DeviceId> {
        self.gateway_of.get(&device.device())
    }

    /// The sub-devices known for `gateway`.
    pub fn sub_devices_of<'a>(
        &'a self,
        gateway: &'a DeviceId,
    ) -> impl Iterator<Item = &'a DeviceId> + 'a {
        let gateway = gateway.device();
        self.gateway_of
            .iter()
            .filter(move |(_, gw)| **gw == gateway)
            .map(|(sub, _)| sub)
    }

    /// May `identity` publish on `topic`?
    pub fn may_publish(&self, identity: &Identity, topic: &str) -> Decision {
        if let Err(why) = check_topic_name(topic) {
            return deny_malformed(topic, why);
        }
        if *identity == Identity::Console {
            return Decision::Allow;
        }
        let levels: Vec<&str> = topic.split('/').collect();
        let mut matched = false;
        for (family, route) in self.routes.iter() {
            let Some(bound) = bind(route, &levels, false) else {
                continue;
            };
            matched = true;
            if route.direction == Direction::Down {
                return Decision::Deny(Denial::Downlink { topic: clip(topic) });
            }
            if self.owns(identity, *family, route, bound) {
                return Decision::Allow;
            }
        }
        if matched {
            Decision::Deny(Denial::NotOwn {
                topic: clip(topic),
                identity: identity.to_string(),
            })
        } else {
            Decision::Deny(Denial::UnknownTopic { topic: clip(topic) })
        }
    }

    /// May `identity` subscribe to `filter`?
    pub fn may_subscribe(&self, identity: &Identity, filter: &str) -> Decision {
        if let Err(why) = check_filter(filter) {
            return deny_malformed(filter, why);
        }
        if *identity == Identity::Console {
            return Decision::Allow;
        }
        let levels: Vec<&str> = filter.split('/').collect();
        let mut matched = None;
        for (family, route) in self.routes.iter() {
            let Some(bound) = bind(route, &levels, true) else {
                continue;
            };
            if route.direction == Direction::Up {
                matched.get_or_insert(Direction::Up);
                continue;
            }
            matched = Some(Direction::Down);
            if self.owns(identity, *family, route, bound) {
                return Decision::Allow;
            }
        }
        let (filter_c, who) = (clip(filter), identity.to_string());
        Decision::Deny(match matched {
            // A wildcard the layout does not allow is refused as such, whatever else it says.
            _ if filter.contains(['+', '#']) => Denial::Wildcard { filter: filter_c },
            Some(Direction::Down) => Denial::NotOwn {
                topic: filter_c,
                identity: who,
            },
            Some(Direction::Up) => Denial::NotDownlink {
                topic: filter_c,
                identity: who,
            },
            None => Denial::UnknownTopic { topic: filter_c },
        })
    }

    /// Whether the segments `bound` of `route` are `identity`'s own.
    fn owns(
        &self,
        identity: &Identity,
        family: Family,
        route: &TopicRoute,
        bound: Bound<'_>,
    ) -> bool {
        match identity {
            Identity::Console => true,
            Identity::Device(id) => self.device_owns(id, family, route, bound),
            Identity::Site { devices, .. } => devices
                .iter()
                .any(|id| self.device_owns(id, family, route, bound)),
        }
    }

    fn device_owns(
        &self,
        id: &DeviceId,
        family: Family,
        route: &TopicRoute,
        bound: Bound<'_>,
    ) -> bool {
        if !family.serves(id) {
            return false;
        }
        if is_device(id, bound) {
            return true;
        }
        route.relayed
            && self
                .gateway_of
                .iter()
                .any(|(sub, gw)| is_device(sub, bound) && gw == &id.device())
    }

    /// The topics `identity` may publish and the filters it may subscribe to, literally, for a
    /// broker whose ACL is a list (Mosquitto). AWS job ids are written `+`.
    pub fn grants(&self, identity: &Identity) -> Grants {
        let mut grants = Grants::default();
        let mut add = |route: &TopicRoute, pk: Option<&str>, name: &str| {
            let text = render(route, pk, name);
            match route.direction {
                Direction::Up => grants.publish.insert(text),
                Direction::Down => grants.subscribe.insert(text),
            };
        };
        let mut devices: Vec<&DeviceId> = Vec::new();
        match identity {
            Identity::Console => {
                grants.publish.insert("#".into());
                grants.subscribe.insert("#".into());
                // `#` does not match topics that start with `$` (MQTT 3.1.1 §4.7.2).
                grants.publish.insert("$aws/#".into());
                grants.subscribe.insert("$aws/#".into());
                return grants;
            }
            Identity::Device(id) => devices.push(id),
            Identity::Site { devices: all, .. } => devices.extend(all),
        }
        for id in devices {
            for (_, route) in self.routes.iter().filter(|(f, _)| f.serves(id)) {
                add(route, id.product_key(), id.name());
                if route.relayed {
                    for sub in self.sub_devices_of(id) {
                        add(route, sub.product_key(), sub.name());
                    }
                }
            }
        }
        grants
    }
}

/// What one identity may do, as literal topics and filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub publish: BTreeSet<String>,
    pub subscribe: BTreeSet<String>,
}

fn render(route: &TopicRoute, pk: Option<&str>, name: &str) -> String {
    let levels: Vec<&str> = route
        .parts
        .iter()
        .map(|part| match *part {
            Lit(lit) => lit,
            Part::Key => pk.unwrap_or(""),
            Name => name,
            JobId | Answer => "+",
        })
        .collect();
    levels.join("/")
}

fn is_device(id: &DeviceId, bound: Bound<'_>) -> bool {
    id.product_key() == bound.pk && id.name() == bound.name
}

fn deny_malformed(topic: &str, why: Malformation) -> Decision {
    Decision::Deny(Denial::Malformed {
        topic: clip(topic),
        why,
    })
}

/// A topic as it appears in a refusal: bounded, so a hostile topic cannot flood the log.
fn clip(topic: &str) -> String {
    const SHOWN: usize = 200;
    if topic.len() <= SHOWN {
        return topic.to_owned();
    }
    let mut end = SHOWN;
    while !topic.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &topic.get(..end).unwrap_or_default())
}

/// MQTT 3.1.1 §4.7: a topic name is non-empty, has no wildcard and no NUL.
fn check_topic_name(topic: &str) -> Result<(), Malformation> {
    check_common(topic)?;
    if topic.contains(['+', '#']) {
        return Err(Malformation::WildcardInName);
    }
    Ok(())
}

/// MQTT 3.1.1 §4.7: `+` fills a whole level, `#` fills the last one.
fn check_filter(filter: &str) -> Result<(), Malformation> {
    check_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(Malformation::HashNotLast);
        }
        if level.contains('+') && level != "+" {
            return Err(Malformation::PlusNotWhole);
        }
    }
    Ok(())
}

fn check_common(topic: &str) -> Result<(), Malformation> {
    if topic.is_empty() {
        return Err(Malformation::Empty);
    }
    if topic.len() > MAX_TOPIC_BYTES {
        return Err(Malformation::TooLong);
    }
    if topic.contains('\0') {
        return Err(Malformation::Nul);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry's table, as the broker and `broker-config` build it.
    fn routes() -> RouteTable {
        crate::protocol::registry::topic_routes()
    }

    fn dev(text: &str) -> Identity {
        Identity::Device(text.parse().unwrap())
    }

    fn id(text: &str) -> DeviceId {
        text.parse().unwrap()
    }

    #[track_caller]
    fn allowed(d: Decision) {
        assert_eq!(d, Decision::Allow);
    }

    #[track_caller]
    fn denied(d: Decision) -> Denial {
        match d {
            Decision::Deny(why) => why,
            Decision::Allow => panic!("allowed, expected a refusal"),
        }
    }

    const ALIYUN_UP: [&str; 3] = [
        "/ota/device/inform/pk/dn",
        "/ota/device/progress/pk/dn",
        "/sys/pk/dn/thing/ota/firmware/get",
    ];
    const ALIYUN_DOWN: [&str; 2] = [
        "/ota/device/upgrade/pk/dn",
        "/sys/pk/dn/thing/ota/firmware/get_reply",
    ];

    #[test]
    fn an_alibaba_device_publishes_its_uplink_and_subscribes_its_downlink() {
        let rules = Rules::new(routes());
        let me = dev("aliyun:pk/dn");
        for t in ALIYUN_UP {
            allowed(rules.may_publish(&me, t));
            assert!(
                matches!(
                    denied(rules.may_subscribe(&me, t)),
                    Denial::NotDownlink { .. }
                ),
                "{t}"
            );
        }
        for t in ALIYUN_DOWN {
            allowed(rules.may_subscribe(&me, t));
            assert!(
                matches!(denied(rules.may_publish(&me, t)), Denial::Downlink { .. }),
                "{t}"
            );
        }
        // A module in the identity changes nothing: topics are per device.
        let with_module = Identity::Device(id("aliyun:pk/dn#MCU"));
        allowed(rules.may_publish(&with_module, ALIYUN_UP[0]));
    }

    #[test]
    fn only_the_routes_in_the_table_are_known() {
        let none = Rules::new(RouteTable::new([]));
        let me = dev("aliyun:pk/dn");
        assert!(matches!(
            denied(none.may_publish(&me, ALIYUN_UP[0])),
            Denial::UnknownTopic { .. }
        ));
        // AWS IoT Jobs topics are a dialect's like any other: unknown without its routes.
        assert!(matches!(
            denied(none.may_publish(&dev("aws:t"), "$aws/things/t/jobs/get")),
            Denial::UnknownTopic { .. }
        ));
        // One dialect's routes serve its own devices only.
        let aliyun = me_dialect_table("aliyun:pk/dn");
        allowed(aliyun.may_publish(&me, ALIYUN_UP[0]));
        assert!(matches!(
            denied(aliyun.may_publish(&dev("fogcloud:pk/dn"), "fogcloud/pk/dn/thing/up/ota")),
            Denial::UnknownTopic { .. }
        ));
    }

    /// Rules over the routes of `device`'s dialect alone.
    fn me_dialect_table(device: &str) -> Rules {
        let d = crate::protocol::registry::get(id(device).dialect());
        Rules::new(RouteTable::new([(d.id(), d.topic_routes())]))
    }

    #[test]
    fn another_devices_topics_are_refused() {
        let rules = Rules::new(routes());
        let me = dev("aliyun:pk/dn");
        for t in [
            "/ota/device/inform/pk/dn2",
            "/ota/device/inform/pk2/dn",
            "/ota/device/inform/dn/pk",
            "/sys/pk/other/thing/ota/firmware/get",
        ] {
            let why = denied(rules.may_publish(&me, t));
            assert!(matches!(why, Denial::NotOwn { .. }), "{t}: {why}");
            assert!(why.to_string().contains("aliyun:pk/dn"), "{why}");
        }
        let why = denied(rules.may_subscribe(&me, "/ota/device/upgrade/pk/victim"));
        assert!(matches!(why, Denial::NotOwn { .. }), "{why}");
        // The same names in another dialect are another device.
        let fog = dev("fogcloud:pk/dn");
        assert!(matches!(
            denied(rules.may_publish(&fog, ALIYUN_UP[0])),
            Denial::NotOwn { .. }
        ));
        allowed(rules.may_publish(&fog, "fogcloud/pk/dn/thing/up/ota"));
    }

    #[test]
    fn prefixes_empty_levels_and_extra_levels_are_not_the_layout() {
        let rules = Rules::new(routes());
        let me = dev("aliyun:pk/dn");
        for t in [
            "ota/device/inform/pk/dn",    // missing leading `/`
            "//ota/device/inform/pk/dn",  // extra empty level
            "/ota/device/inform/pk/dn/",  // trailing empty level
            "/ota/device/inform/pk/dn/x", // extra level
            "/ota/device/inform//pk/dn",  // empty level inside
            "/ota/device/inform/pk",      // too short
            "/OTA/device/inform/pk/dn",   // case matters in MQTT
            "/ota/device/inform/pk/dn ",  // trailing space is another level value
            "/sys/pk/dn/thing/event/property/post",
        ] {
            let why = denied(rules.may_publish(&me, t));
            assert!(
                matches!(why, Denial::UnknownTopic { .. } | Denial::NotOwn { .. }),
                "{t}: {why}"
            );
        }
        // FogCloud and DJI have no leading `/`; with one they are unknown.
        let fog = dev("fogcloud:pk/dn");
        assert!(matches!(
            denied(rules.may_publish(&fog, "/fogcloud/pk/dn/thing/up/ota")),
            Denial::UnknownTopic { .. }
        ));
        let dock = dev("dji:DOCK1");
        assert!(matches!(
            denied(rules.may_publish(&dock, "/sys/product/DOCK1/status")),
            Denial::UnknownTopic { .. }
        ));
        // An empty device level never stands for a device, even one named "".
        assert!(matches!(
            denied(rules.may_publish(&fog, "fogcloud//dn/thing/up/ota")),
            Denial::UnknownTopic { .. }
        ));
    }

    #[test]
    fn malformed_topics_and_filters_are_refused_even_for_the_console() {
        let rules = Rules::new(routes());
        for t in [
            "",
            "a/+/b",
            "a/#",
            "#",
            "nul\0",
            &"x".repeat(MAX_TOPIC_BYTES + 1),
        ] {
            assert!(
                matches!(
                    denied(rules.may_publish(&Identity::Console, t)),
                    Denial::Malformed { .. }
                ),
                "{t:?}"
            );
        }
        for f in ["", "a/#/b", "a/b#", "a/+b", "+x/y", "nul\0"] {
            assert!(
                matches!(
                    denied(rules.may_subscribe(&Identity::Console, f)),
                    Denial::Malformed { .. }
                ),
                "{f:?}"
            );
        }
        let long = "é".repeat(700);
        let why = denied(rules.may_publish(&dev("dji:SN"), &long));
        assert!(why.to_string().chars().count() < 300, "{why}");
    }

    /// The campaign lock (`rollout::lock`) is the consoles' own: a device can neither forge a
    /// claim (or clear one) nor read who runs which campaign.
    #[test]
    fn only_the_console_uses_the_campaign_lock_topics() {
        use crate::rollout::lock::{LOCK_FILTER, lock_topic};
        let rules = Rules::new(routes());
        let topic = lock_topic("ota-console-1a2b3c4d");
        allowed(rules.may_publish(&Identity::Console, &topic));
        allowed(rules.may_subscribe(&Identity::Console, LOCK_FILTER));
        for device in [dev("aliyun:pk/a"), dev("fogcloud:pk/dn"), dev("dji:DOCK1")] {
            denied(rules.may_publish(&device, &topic));
            denied(rules.may_subscribe(&device, &topic));
            denied(rules.may_subscribe(&device, LOCK_FILTER));
        }
    }

    #[test]
    fn the_console_publishes_and_subscribes_anything_valid() {
        let rules = Rules::new(routes());
        for t in ALIYUN_DOWN
            .iter()
            .chain(&ALIYUN_UP)
            .chain(&["anything/else", "$aws/things/t/jobs/notify"])
        {
            allowed(rules.may_publish(&Identity::Console, t));
        }
        for f in [
            "#",
            "+/+",
            "/ota/device/inform/+/+",
            "thing/product/+/events",
            "$aws/things/+/jobs/#",
        ] {
            allowed(rules.may_subscribe(&Identity::Console, f));
        }
    }

    #[test]
    fn wildcards_in_a_devices_filter_are_refused() {
        let rules = Rules::new(routes());
        let me = dev("aliyun:pk/dn");
        for f in [
            "#",
            "+",
            "/ota/device/upgrade/pk/+",
            "/ota/device/upgrade/+/dn",
            "/ota/device/upgrade/#",
            "/ota/device/+/pk/dn",
            "/sys/pk/dn/#",
            "/sys/pk/dn/thing/ota/firmware/+",
        ] {
            let why = denied(rules.may_subscribe(&me, f));
            assert!(matches!(why, Denial::Wildcard { .. }), "{f}: {why}");
        }
        let fog = dev("fogcloud:pk/dn");
        assert!(matches!(
            denied(rules.may_subscribe(&fog, "fogcloud/pk/dn/thing/down/+")),
            Denial::Wildcard { .. }
        ));
        assert!(matches!(
            denied(rules.may_subscribe(&fog, "fogcloud/pk/dn/#")),
            Denial::Wildcard { .. }
        ));
    }

    #[test]
    fn wildcard_characters_inside_names_never_match_a_device() {
        // DeviceId forbids `+` and `#`, so `p+k` is no device's product key: a literal topic
        // level `+` (refused as malformed in a topic name) or a filter level can never be "own".
        let rules = Rules::new(routes());
        assert!(DeviceId::aliyun("p+k", "dn").is_err());
        let me = dev("aliyun:pk/dn");
        assert!(matches!(
            denied(rules.may_publish(&me, "/ota/device/inform/p+k/dn")),
            Denial::Malformed { .. }
        ));
        assert!(matches!(
            denied(rules.may_subscribe(&me, "/ota/device/upgrade/p+k/dn")),
            Denial::Malformed { .. }
        ));
        // Invisible characters make another name too.
        assert!(matches!(
            denied(rules.may_publish(&me, "/ota/device/inform/pk/dn\u{200B}")),
            Denial::UnknownTopic { .. }
        ));
    }

    #[test]
    fn a_fogcloud_gateway_uses_only_its_own_topics() {
        let rules =
            Rules::with_gateways(routes(), [(&id("fogcloud:pk/sub1"), &id("fogcloud:pk/gw"))]);
        let gw = dev("fogcloud:pk/gw");
        allowed(rules.may_publish(&gw, "fogcloud/pk/gw/thing/up/ota"));
        allowed(rules.may_subscribe(&gw, "fogcloud/pk/gw/thing/down/ota"));
        // Sub-devices talk through the gateway's topics (`sub.*` methods), never their own.
        assert!(matches!(
            denied(rules.may_publish(&gw, "fogcloud/pk/sub1/thing/up/ota")),
            Denial::NotOwn { .. }
        ));
        assert!(matches!(
            denied(rules.may_subscribe(&gw, "fogcloud/pk/sub1/thing/down/ota")),
            Denial::NotOwn { .. }
        ));
        assert!(matches!(
            denied(rules.may_publish(&gw, "fogcloud/pk/gw/thing/down/ota")),
            Denial::Downlink { .. }
        ));
    }

    #[test]
    fn a_dji_dock_uses_its_topics_and_reports_for_its_own_drone_only() {
        let rules = Rules::with_gateways(
            routes(),
            [
                (&id("dji:DRONE1"), &id("dji:DOCK1")),
                (&id("dji:DRONE2"), &id("dji:DOCK2")),
            ],
        );
        let dock = dev("dji:DOCK1");
        for t in [
            "sys/product/DOCK1/status",
            "thing/product/DOCK1/state",
            "thing/product/DOCK1/osd",
            "thing/product/DOCK1/services_reply",
            "thing/product/DOCK1/events",
            "thing/product/DRONE1/state",
            "thing/product/DRONE1/osd",
        ] {
            allowed(rules.may_publish(&dock, t));
        }
        for t in [
            "thing/product/DOCK1/services",
            "thing/product/DOCK1/events_reply",
            "sys/product/DOCK1/status_reply",
        ] {
            allowed(rules.may_subscribe(&dock, t));
            assert!(
                matches!(denied(rules.may_publish(&dock, t)), Denial::Downlink { .. }),
                "{t}"
            );
        }
        // Only state and osd are published in the drone's name; the rest is the dock's.
        for t in [
            "sys/product/DRONE1/status",
            "thing/product/DRONE1/events",
            "thing/product/DRONE1/services_reply",
        ] {
            assert!(
                matches!(denied(rules.may_publish(&dock, t)), Denial::NotOwn { .. }),
                "{t}"
            );
        }
        // Another dock's drone, another dock, an unknown drone.
        for t in [
            "thing/product/DRONE2/state",
            "thing/product/DOCK2/events",
            "thing/product/NEWDRONE/state",
        ] {
            assert!(
                matches!(denied(rules.may_publish(&dock, t)), Denial::NotOwn { .. }),
                "{t}"
            );
        }
        assert!(matches!(
            denied(rules.may_subscribe(&dock, "thing/product/DRONE1/services")),
            Denial::NotOwn { .. }
        ));
        assert!(matches!(
            denied(rules.may_subscribe(&dock, "thing/product/+/services")),
            Denial::Wildcard { .. }
        ));
        // Outside the OTA documents.
        assert!(matches!(
            denied(rules.may_publish(&dock, "thing/product/DOCK1/requests")),
            Denial::UnknownTopic { .. }
        ));
        // Forgetting the drone withdraws the right.
        let mut rules = rules;
        rules.set_gateway(&id("dji:DRONE1"), None);
        assert!(matches!(
            denied(rules.may_publish(&dock, "thing/product/DRONE1/state")),
            Denial::NotOwn { .. }
        ));
    }

    #[test]
    fn a_site_has_the_union_of_its_devices_rights() {
        let rules = Rules::new(routes());
        let site = Identity::Site {
            name: "lab".into(),
            devices: [id("fogcloud:pk/a"), id("aliyun:pk/b")].into(),
        };
        allowed(rules.may_publish(&site, "fogcloud/pk/a/thing/up/ota"));
        allowed(rules.may_publish(&site, "/ota/device/inform/pk/b"));
        allowed(rules.may_subscribe(&site, "/ota/device/upgrade/pk/b"));
        assert!(matches!(
            denied(rules.may_publish(&site, "/ota/device/inform/pk/a")),
            Denial::NotOwn { .. }
        ));
        assert!(
            denied(rules.may_publish(&site, "fogcloud/pk/c/thing/up/ota"))
                .to_string()
                .contains("site \"lab\"")
        );
    }

    #[test]
    fn an_aws_thing_uses_the_jobs_topics_of_its_own_name() {
        let rules = Rules::new(routes());
        let me = dev("aws:pump-7");
        for t in [
            "$aws/things/pump-7/jobs/get",
            "$aws/things/pump-7/jobs/start-next",
            "$aws/things/pump-7/jobs/job-1/get",
            "$aws/things/pump-7/jobs/$next/get",
            "$aws/things/pump-7/jobs/job-1/update",
        ] {
            allowed(rules.may_publish(&me, t));
        }
        for f in [
            "$aws/things/pump-7/jobs/notify",
            "$aws/things/pump-7/jobs/notify-next",
            "$aws/things/pump-7/jobs/get/accepted",
            "$aws/things/pump-7/jobs/get/+",
            "$aws/things/pump-7/jobs/start-next/rejected",
            "$aws/things/pump-7/jobs/job-1/update/+",
            "$aws/things/pump-7/jobs/$next/get/+",
            // AWS's device SDK samples subscribe to every job's answers at once.
            "$aws/things/pump-7/jobs/+/update/accepted",
            "$aws/things/pump-7/jobs/+/get/+",
        ] {
            allowed(rules.may_subscribe(&me, f));
        }
        for t in [
            "$aws/things/pump-7/jobs/notify",
            "$aws/things/pump-7/jobs/get/accepted",
            "$aws/things/pump-7/jobs/job-1/update/accepted",
        ] {
            assert!(
                matches!(denied(rules.may_publish(&me, t)), Denial::Downlink { .. }),
                "{t}"
            );
        }
        for f in [
            "$aws/things/pump-7/jobs/#",
            "$aws/things/+/jobs/notify",
            "$aws/things/pump-7/+",
        ] {
            assert!(
                matches!(denied(rules.may_subscribe(&me, f)), Denial::Wildcard { .. }),
                "{f}"
            );
        }
        assert!(matches!(
            denied(rules.may_publish(&me, "$aws/things/other/jobs/get")),
            Denial::NotOwn { .. }
        ));
        assert!(matches!(
            denied(rules.may_subscribe(&me, "$aws/things/other/jobs/notify")),
            Denial::NotOwn { .. }
        ));
        assert!(matches!(
            denied(rules.may_publish(&me, "$aws/things/pump-7/jobs//get")),
            Denial::UnknownTopic { .. }
        ));
        // A device of another dialect has no Jobs topics, and a thing none of theirs.
        assert!(matches!(
            denied(rules.may_publish(&dev("dji:pump-7"), "$aws/things/pump-7/jobs/get")),
            Denial::NotOwn { .. }
        ));
        assert!(matches!(
            denied(rules.may_publish(&me, "thing/product/pump-7/state")),
            Denial::NotOwn { .. }
        ));
        assert!("aws:a/b".parse::<DeviceId>().is_err());
    }

    #[test]
    fn grants_list_exactly_what_the_decisions_allow() {
        let rules = Rules::with_gateways(routes(), [(&id("dji:DRONE1"), &id("dji:DOCK1"))]);
        let dock = dev("dji:DOCK1");
        let g = rules.grants(&dock);
        assert!(g.publish.contains("thing/product/DRONE1/state"));
        assert!(!g.publish.contains("thing/product/DRONE1/events"));
        for identity in [
            dock,
            dev("aliyun:pk/dn"),
            dev("fogcloud:pk/dn"),
            dev("aws:t"),
        ] {
            let g = rules.grants(&identity);
            assert!(!g.publish.is_empty() && !g.subscribe.is_empty());
            for t in &g.publish {
                // Job ids are rendered `+`; check them with a concrete id.
                allowed(rules.may_publish(&identity, &t.replace('+', "job-1")));
            }
            for f in &g.subscribe {
                allowed(rules.may_subscribe(&identity, &f.replace("/+/", "/job-1/")));
            }
        }
        let console = rules.grants(&Identity::Console);
        assert!(console.subscribe.contains("#") && console.subscribe.contains("$aws/#"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Levels that build real topics, near misses and wildcards.
        fn level() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "",
                    "ota",
                    "device",
                    "inform",
                    "progress",
                    "upgrade",
                    "sys",
                    "thing",
                    "firmware",
                    "get",
                    "get_reply",
                    "fogcloud",
                    "up",
                    "down",
                    "product",
                    "status",
                    "state",
                    "osd",
                    "events",
                    "services",
                    "services_reply",
                    "events_reply",
                    "status_reply",
                    "pk",
                    "dn",
                    "other",
                    "DOCK1",
                    "DRONE1",
                    "DRONE2",
                    "+",
                    "#",
                    "$aws",
                    "things",
                    "jobs",
                ])
                .prop_map(str::to_owned),
                "[a-z+#/ ]{0,4}",
            ]
        }

        /// Every topic some device may use (its own and its neighbours'), and random ones.
        fn topic() -> impl Strategy<Value = String> {
            let rules = Rules::with_gateways(
                routes(),
                [
                    (&id("dji:DRONE1"), &id("dji:DOCK1")),
                    (&id("dji:DRONE2"), &id("dji:DOCK2")),
                ],
            );
            let mut known = Vec::new();
            for who in [
                "aliyun:pk/dn",
                "aliyun:pk/other",
                "fogcloud:pk/dn",
                "fogcloud:other/dn",
                "dji:DOCK1",
                "dji:DOCK2",
                "dji:DRONE1",
            ] {
                let g = rules.grants(&dev(who));
                known.extend(g.publish.into_iter().chain(g.subscribe));
            }
            prop_oneof![
                prop::sample::select(known),
                prop::collection::vec(level(), 1..9).prop_map(|levels| levels.join("/")),
            ]
        }

        proptest! {
            /// The embedded broker's decisions and the Mosquitto ACL list say the same thing,
            /// and nothing panics.
            #[test]
            fn decisions_and_grants_agree(t in topic()) {
                let rules = Rules::with_gateways(routes(), [(&id("dji:DRONE1"), &id("dji:DOCK1"))]);
                for who in ["aliyun:pk/dn", "fogcloud:pk/dn", "dji:DOCK1", "dji:DRONE2"] {
                    let me = dev(who);
                    let grants = rules.grants(&me);
                    prop_assert_eq!(rules.may_publish(&me, &t).is_allowed(), grants.publish.contains(&t), "{} publish {:?}", who, t);
                    prop_assert_eq!(rules.may_subscribe(&me, &t).is_allowed(), grants.subscribe.contains(&t), "{} subscribe {:?}", who, t);
                }
                // The console may do everything well-formed.
                let _ = rules.may_publish(&Identity::Console, &t);
                let _ = rules.may_subscribe(&Identity::Console, &t);
            }
        }
    }
}
