//! The conformance suite: every check here runs for every dialect in `protocol::registry::all()`,
//! so a new dialect gets all of it by registering (ARCHITECTURE.md, "Adding a dialect"). It
//! checks a dialect against its own declarations — its [`Samples`] (golden messages from its
//! document), its topic routes, its error table, its notice settings and its capabilities — and
//! never names a dialect (its end-to-end part runs each dialect's own simulated fleet, from
//! `Dialect::sim`). Two dialect files are registered first (the README's example and the
//! tests' own, `tests/dialects/widget.toml`), so every check runs on run-time dialects too, the
//! end-to-end test with the simulated devices the simulator builds from each file.
//!
//! Dialect-specific quirks of the documents stay in tests/codecs.rs.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::collections::{BTreeSet, HashSet};

use ota_console::access::rules::{Decision, Direction, Identity, Part, RouteTable, Rules};
use ota_console::device_id::{DeviceId, IdShape};
use ota_console::protocol::{
    self, Acknowledgement, CancelSupport, DecodeError, Dialect, Event, Failure, FirmwareOffer,
    KeyScope, KeySource, MAX_PAYLOAD_BYTES, NothingPending, Notice, NoticeAddress, OfferField,
    Outbound, Pull, SettingValues, SubDevices, Subject, TaskRef, UpgradeNotice, UpgradeStatus,
    registry,
};
use proptest::prelude::*;
use serde_json::Value;

/// Every registered dialect, with the dialect files of the tests registered first (once per test
/// binary): the example of the README and a protocol none of the built-ins resembles.
fn dialects() -> Vec<&'static dyn Dialect> {
    static USER_DIALECTS: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    USER_DIALECTS.get_or_init(|| {
        for file in ["assets/dialects/acme.toml", "tests/dialects/widget.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            protocol::user::register_file(&path).unwrap_or_else(|e| panic!("{e}"));
        }
    });
    let all = registry::all();
    assert!(
        all.iter().any(|d| d.id().as_str() == "widget"),
        "the tests' dialect file is registered"
    );
    assert!(!all.is_empty(), "no dialect is registered");
    all
}

/// The rules over the dialect's own routes only (and the AWS Jobs routes access keeps), knowing
/// its sample sub-device's gateway.
fn own_rules(d: &dyn Dialect) -> Rules {
    let table = RouteTable::new([(d.id(), d.topic_routes())]);
    let pairs: Vec<(DeviceId, DeviceId)> = sub_device(d).into_iter().collect();
    Rules::with_gateways(table, pairs.iter().map(|(s, g)| (s, g)))
}

fn device(d: &dyn Dialect) -> DeviceId {
    let text = d.samples().device;
    let id: DeviceId = text
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text}: {e}", d.id()));
    assert_eq!(id.dialect(), d.id(), "{text}");
    id
}

/// The sample sub-device and its gateway.
fn sub_device(d: &dyn Dialect) -> Option<(DeviceId, DeviceId)> {
    let (sub, gw) = d.samples().sub_device?;
    let parse = |t: &str| -> DeviceId { t.parse().unwrap_or_else(|e| panic!("{t}: {e}")) };
    let (sub, gw) = (parse(sub), parse(gw));
    assert_eq!((sub.dialect(), gw.dialect()), (d.id(), d.id()));
    Some((sub, gw))
}

/// A device of the dialect with every segment `x`: what a subscription's `+` stands for.
fn device_named(d: &dyn Dialect, name: &str) -> DeviceId {
    let key = match d.id().shape() {
        IdShape::KeyAndName { .. } => Some(name),
        IdShape::Name { .. } => None,
    };
    DeviceId::new(d.id(), key, name).unwrap()
}

/// An offer whose every field has a value found nowhere else in a notice.
fn offer() -> FirmwareOffer {
    FirmwareOffer {
        version: "31.41.59".into(),
        url: "http://127.0.0.1:9/fw/conformance-url.bin".into(),
        size: 1_048_573,
        md5: "0123456789abcdef0123456789abcdef".into(),
        sha256: "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210".into(),
        checksum: "5a5b5c5d".into(),
        file_name: "conformance-file-name.bin".into(),
        description: "conformance-description".into(),
    }
}

/// The notice the campaign would build for `device` (through `gateway`), addressed as the
/// dialect's capabilities say.
fn notice(
    d: &dyn Dialect,
    device: &DeviceId,
    gateway: Option<&DeviceId>,
    settings: SettingValues,
) -> UpgradeNotice {
    let caps = d.capabilities();
    let task = match caps.task_key.source {
        KeySource::None => TaskRef::None,
        KeySource::Counter => TaskRef::Key("7".into()),
        KeySource::Uuid => TaskRef::Key("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
    };
    let exchange_id = match caps.ack {
        Acknowledgement::ByReply(_) => Some("7c9e6679-7425-40de-944b-e07fc1f90ae7".into()),
        Acknowledgement::ByFirstReport => None,
    };
    UpgradeNotice {
        device: device.clone(),
        offer: offer(),
        address: NoticeAddress {
            msg_id: 42,
            timestamp_ms: 1_654_070_968_655,
            gateway: gateway.cloned(),
            task,
            exchange_id,
            device_timeout_ms: Some(20_000),
        },
        settings,
    }
}

/// Every combination of the dialect's notice settings' choices.
fn setting_combinations(d: &dyn Dialect) -> Vec<SettingValues> {
    let mut all = vec![SettingValues::default()];
    // A text setting (a template) is the dialect's own to test: the suite keeps its default.
    for setting in d.notice_settings().iter().filter(|s| s.text().is_none()) {
        all = all
            .into_iter()
            .flat_map(|values| {
                setting.choices().iter().map(move |c| {
                    let mut v = values.clone();
                    v.0.insert(setting.key.to_owned(), c.value.to_owned());
                    v
                })
            })
            .collect();
    }
    all
}

fn encode(d: &dyn Dialect, n: &Notice) -> Outbound {
    let out = d
        .encode(n)
        .unwrap_or_else(|e| panic!("{}: {n:?}: {e}", d.id()));
    assert_eq!(protocol::encode(n).as_ref(), Ok(&out), "registry dispatch");
    out
}

/// `receiver` may subscribe to the topic of `out` under the dialect's own routes, and a
/// stranger of the same dialect may not.
#[track_caller]
fn assert_delivered_to(d: &dyn Dialect, out: &Outbound, receiver: &DeviceId) {
    let rules = own_rules(d);
    assert_eq!(
        rules.may_subscribe(&Identity::Device(receiver.device()), &out.topic),
        Decision::Allow,
        "{}: {receiver} may not subscribe to {}",
        d.id(),
        out.topic
    );
    let stranger = device_named(d, "conformance-stranger");
    assert!(
        !rules
            .may_subscribe(&Identity::Device(stranger.clone()), &out.topic)
            .is_allowed(),
        "{}: {stranger} may subscribe to {}",
        d.id(),
        out.topic
    );
}

/// The sample's events, decoded through the dialect and through the registry (same answer).
fn decode_sample(d: &dyn Dialect, topic: &str, payload: &[u8]) -> Vec<Event> {
    let events = d
        .decode(topic, payload)
        .unwrap_or_else(|e| panic!("{}: {topic}: {e}", d.id()));
    assert_eq!(protocol::decode(topic, payload), Ok(events.clone()));
    events
}

fn failures(events: &[Event]) -> Vec<&Failure> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Progress(p) => match &p.status {
                UpgradeStatus::Failed(f) | UpgradeStatus::Rejected(f) => Some(f),
                _ => None,
            },
            Event::Reply(r) => r.failure.as_ref(),
            _ => None,
        })
        .collect()
}

/// MQTT filter matching (3.1.1 §4.7): `+` one level, `#` the rest.
fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

// ---------------------------------------------------------------- topics

#[test]
fn subscriptions_are_owned_by_their_dialect_alone_and_are_its_uplink() {
    for d in dialects() {
        assert!(!d.subscriptions().is_empty(), "{}", d.id());
        let rules = own_rules(d);
        let x = device_named(d, "x");
        for filter in d.subscriptions() {
            let topic = filter.replace(['+', '#'], "x");
            assert!(d.owns_topic(&topic), "{}: {filter}", d.id());
            for other in dialects().into_iter().filter(|o| o.id() != d.id()) {
                assert!(
                    !other.owns_topic(&topic),
                    "{filter} is also {}'s",
                    other.id()
                );
            }
            assert_eq!(
                registry::dialect_of_topic(&topic).map(|o| o.id()),
                Some(d.id())
            );
            // What the console listens to is what the dialect's devices may publish.
            assert_eq!(
                rules.may_publish(&Identity::Device(x.clone()), &topic),
                Decision::Allow,
                "{}: subscription {filter} is no uplink route of the dialect",
                d.id()
            );
        }
    }
}

#[test]
fn every_uplink_route_is_subscribed_and_owned() {
    for d in dialects() {
        assert!(!d.topic_routes().is_empty(), "{}", d.id());
        for route in d.topic_routes() {
            let levels: Vec<&str> = route
                .parts
                .iter()
                .map(|p| match p {
                    Part::Lit(lit) => lit,
                    Part::Key | Part::Name | Part::JobId => "x",
                    Part::Answer => "accepted",
                })
                .collect();
            let topic = levels.join("/");
            if route.direction == Direction::Up {
                // Else devices may publish what nobody reads.
                assert!(
                    d.subscriptions().iter().any(|f| filter_matches(f, &topic)),
                    "{}: uplink {topic} is not subscribed",
                    d.id()
                );
                assert!(d.owns_topic(&topic), "{}: {topic}", d.id());
            }
            let owners: Vec<_> = dialects()
                .into_iter()
                .filter(|o| o.owns_topic(&topic))
                .map(|o| o.id())
                .collect();
            assert!(
                owners.is_empty() || owners == [d.id()],
                "{}: {topic} is owned by {owners:?}",
                d.id()
            );
        }
    }
}

// ---------------------------------------------------------------- golden samples

#[test]
fn golden_samples_decode_to_their_events_of_their_dialect() {
    for d in dialects() {
        let samples = d.samples();
        assert!(!samples.uplink.is_empty(), "{}", d.id());
        let mut failed = 0;
        for s in samples.uplink {
            assert_eq!(
                registry::dialect_of_topic(s.topic).map(|o| o.id()),
                Some(d.id()),
                "{}: {}",
                d.id(),
                s.name
            );
            let events = decode_sample(d, s.topic, s.payload.as_bytes());
            let kinds: Vec<_> = events.iter().map(Event::kind).collect();
            assert_eq!(kinds, s.events, "{}: {}: {events:?}", d.id(), s.name);
            for e in &events {
                assert_eq!(e.device().dialect(), d.id(), "{}: {e:?}", s.name);
            }
            failed += failures(&events).len();
        }
        assert!(failed > 0, "{}: no sample reports a failure", d.id());
    }
}

#[test]
fn errors_explain_their_codes_and_decoded_failures_carry_the_explanation() {
    for d in dialects() {
        let table = d.errors();
        assert!(
            !table.codes.is_empty() && !table.fields.is_empty(),
            "{}",
            d.id()
        );
        let mut seen = HashSet::new();
        for c in table.codes {
            assert!(seen.insert(c.code), "{}: code {} twice", d.id(), c.code);
            assert!(!c.text.trim().is_empty(), "{}: {}", d.id(), c.code);
            let described = table.describe(c.code);
            assert!(described.contains(c.text), "{}: {described}", d.id());
            assert!(!described.contains('{'), "{}: {described}", d.id());
        }
        let unknown = (i64::MIN..).find(|c| !seen.contains(c)).unwrap();
        let described = table.describe(unknown);
        assert!(
            !described.trim().is_empty() && !described.contains('{'),
            "{}: {described:?}",
            d.id()
        );
        for s in d.samples().uplink {
            for f in failures(&decode_sample(d, s.topic, s.payload.as_bytes())) {
                assert_eq!(f.dialect, d.id(), "{}", s.name);
                assert_eq!(registry::describe(f), table.describe(f.code), "{}", s.name);
                assert!(table.meaning(f.code).is_some(), "{}: {f:?}", s.name);
            }
        }
    }
}

// ---------------------------------------------------------------- notices

#[test]
fn upgrade_notices_encode_and_reach_only_their_device() {
    for d in dialects() {
        let direct = device(d);
        let mut cases = vec![(direct.clone(), None)];
        if let Some((sub, gw)) = sub_device(d) {
            cases.push((sub, Some(gw)));
        }
        for (target, gateway) in &cases {
            for settings in setting_combinations(d) {
                let n = Notice::Upgrade(notice(d, target, gateway.as_ref(), settings));
                let out = encode(d, &n);
                assert!(!out.payload.is_empty());
                assert_delivered_to(d, &out, gateway.as_ref().unwrap_or(target));
            }
        }
    }
}

#[test]
fn the_offer_fields_a_dialect_declares_are_the_ones_its_notices_carry() {
    let o = offer();
    let fields = [
        (OfferField::Url, o.url.clone()),
        (OfferField::Size, o.size.to_string()),
        (OfferField::Md5, o.md5.clone()),
        (OfferField::Sha256, o.sha256.clone()),
        (OfferField::Checksum, o.checksum.clone()),
        (OfferField::Version, o.version.clone()),
        (OfferField::FileName, o.file_name.clone()),
        (OfferField::Description, o.description.clone()),
    ];
    for d in dialects() {
        let caps = d.capabilities();
        // Every settings combination: a field may depend on a setting (Alibaba's sign).
        let payloads: Vec<String> = setting_combinations(d)
            .into_iter()
            .map(|s| {
                let out = encode(d, &Notice::Upgrade(notice(d, &device(d), None, s)));
                String::from_utf8(out.payload).unwrap().to_lowercase()
            })
            .collect();
        for (field, value) in &fields {
            let carried = payloads.iter().any(|p| p.contains(&value.to_lowercase()));
            assert_eq!(
                carried,
                caps.offer_fields.contains(field),
                "{}: {field:?} is {}declared but {}carried",
                d.id(),
                if caps.offer_fields.contains(field) {
                    ""
                } else {
                    "not "
                },
                if carried { "" } else { "not " },
            );
        }
    }
}

#[test]
fn answers_and_firmware_get_replies_encode_for_the_asking_device() {
    for d in dialects() {
        let caps = d.capabilities();
        let mut asked = 0;
        for s in d.samples().uplink {
            for e in decode_sample(d, s.topic, s.payload.as_bytes()) {
                match e {
                    Event::Answer(answer) => {
                        let to = answer.to.clone();
                        let n = Notice::Answer {
                            answer,
                            timestamp_ms: 1_654_070_968_656,
                        };
                        assert_delivered_to(d, &encode(d, &n), &to);
                    }
                    Event::FirmwareGet(request) => {
                        asked += 1;
                        let Pull::Supported { nothing_pending } = caps.pull else {
                            panic!("{}: {} asks, but pull is unsupported", d.id(), s.name)
                        };
                        let (asker, gateway) = match sub_device(d) {
                            Some((sub, gw)) if sub.device() == request.device.device() => {
                                (request.device.clone(), Some(gw))
                            }
                            _ => (request.device.clone(), None),
                        };
                        let pending = notice(d, &asker, gateway.as_ref(), SettingValues::default());
                        let n = Notice::FirmwareGetReply {
                            request: request.clone(),
                            pending: Some(pending),
                        };
                        let receiver = gateway.clone().unwrap_or_else(|| asker.clone());
                        assert_delivered_to(d, &encode(d, &n), &receiver);
                        let nothing = Notice::FirmwareGetReply {
                            request,
                            pending: None,
                        };
                        match nothing_pending {
                            NothingPending::EmptyReply => {
                                assert_delivered_to(d, &encode(d, &nothing), &receiver);
                            }
                            // No message exists for it: encoding must refuse, so it is never sent.
                            NothingPending::Silence => assert!(d.encode(&nothing).is_err()),
                        }
                    }
                    _ => {}
                }
            }
        }
        if matches!(caps.pull, Pull::Supported { .. }) {
            assert!(asked > 0, "{}: pull supported but no sample asks", d.id());
        }
    }
}

// ---------------------------------------------------------------- declarations

#[test]
fn notice_settings_are_well_formed() {
    let mut flags = HashSet::new();
    let mut legacy = HashSet::new();
    for d in dialects() {
        let mut keys = HashSet::new();
        for s in d.notice_settings() {
            assert!(keys.insert(s.key), "{}: setting {} twice", d.id(), s.key);
            assert!(flags.insert(s.cli_flag), "CLI flag --{} twice", s.cli_flag);
            if let Some(key) = s.legacy_key {
                assert!(legacy.insert(key), "legacy key {key} twice");
            }
            assert!(!s.label.is_empty() && !s.help.is_empty(), "{}", s.key);
            assert!(
                !s.cli_flag.starts_with('-') && !s.cli_flag.contains(' '),
                "{}",
                s.cli_flag
            );
            if let Some(text) = s.text() {
                // Its default is what an empty field means, and passes its own check.
                assert!(
                    s.default.is_empty() || (text.validate)(s.default).is_ok(),
                    "{}",
                    s.key
                );
                assert!(s.choices().is_empty(), "{}", s.key);
                continue;
            }
            assert!(!s.choices().is_empty(), "{}", s.key);
            assert_eq!(
                s.choice(s.default).map(|c| c.value),
                Some(s.default),
                "{}",
                s.key
            );
            // Spellings are compared ignoring case, as `choice` reads them.
            let mut spellings = std::collections::HashMap::new();
            for c in s.choices() {
                assert!(!c.label.is_empty(), "{}: {}", s.key, c.value);
                for spelling in std::iter::once(&c.value).chain(c.aliases) {
                    let named = spellings
                        .entry(spelling.to_ascii_lowercase())
                        .or_insert(c.value);
                    assert_eq!(*named, c.value, "{}: {spelling} names two choices", s.key);
                    assert_eq!(s.choice(spelling).map(|x| x.value), Some(c.value));
                }
            }
        }
    }
}

#[test]
fn capabilities_are_consistent() {
    for d in dialects() {
        let c = d.capabilities();
        let id = d.id();
        if let Acknowledgement::ByReply(spec) = &c.ack {
            assert_ne!(
                c.task_key.source,
                KeySource::None,
                "{id}: a reply names its task"
            );
            assert!(!spec.request.is_empty(), "{id}");
            // Its reply is among the samples, decoded as a reply to that request.
            let replies = d
                .samples()
                .uplink
                .iter()
                .flat_map(|s| decode_sample(d, s.topic, s.payload.as_bytes()))
                .filter(|e| matches!(e, Event::Reply(r) if r.request == spec.request))
                .count();
            assert!(replies > 0, "{id}: no sample replies to {}", spec.request);
        }
        if c.task_key.scope == KeyScope::Global {
            assert_ne!(
                c.task_key.source,
                KeySource::None,
                "{id}: a global report names a key"
            );
        }
        if c.progress_subject == Subject::Gateway {
            // The report names the gateway, so only a key can say whose upgrade it is.
            assert_eq!(c.task_key.scope, KeyScope::Global, "{id}");
            assert!(
                matches!(c.sub_devices, SubDevices::ThroughGateway { .. }),
                "{id}"
            );
        }
        if c.one_upgrade_per_gateway {
            assert!(
                matches!(c.sub_devices, SubDevices::ThroughGateway { .. }),
                "{id}"
            );
        }
        // The suite checks sub-devices exactly for dialects that have them.
        assert_eq!(
            matches!(c.sub_devices, SubDevices::ThroughGateway { .. }),
            d.samples().sub_device.is_some(),
            "{id}"
        );
        if let CancelSupport::CannotRecall { note, detail } = &c.cancel {
            assert!(!note.is_empty() && !detail.is_empty(), "{id}");
        }
        for needed in [OfferField::Url, OfferField::Version] {
            assert!(c.offer_fields.contains(&needed), "{id}: {needed:?}");
        }
        let unique: BTreeSet<_> = c.offer_fields.iter().map(|f| format!("{f:?}")).collect();
        assert_eq!(unique.len(), c.offer_fields.len(), "{id}");
    }
}

// ---------------------------------------------------------------- hostile mutations

/// How a sample is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut the payload.
    Truncate(prop::sample::Index),
    /// Flip one byte.
    Flip(prop::sample::Index, u8),
    /// Replace one JSON value (any depth) with one of the wrong type or size.
    Replace(prop::sample::Index, Wrong),
    /// Remove one object key.
    Remove(prop::sample::Index),
    /// Pad the payload to just over the size limit.
    OverLimit,
    /// Replace one level of the topic.
    Topic(prop::sample::Index, &'static str),
}

#[derive(Debug, Clone)]
enum Wrong {
    Json(Value),
    /// Arrays nested this deep (serde_json refuses more than 128).
    Nested(usize),
    /// A string this long.
    Long(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let wrong = prop_oneof![
        prop::sample::select(vec![
            Value::Null,
            Value::Bool(true),
            serde_json::json!(-1),
            serde_json::json!(1e308),
            serde_json::json!(u64::MAX),
            serde_json::json!(i64::MIN),
            serde_json::json!(""),
            serde_json::json!("-1"),
            serde_json::json!("\u{202E}\u{0}"),
            serde_json::json!([]),
            serde_json::json!({}),
            serde_json::json!([{"a": 1}]),
        ])
        .prop_map(Wrong::Json),
        prop::sample::select(vec![10usize, 100, 127, 200, 5000]).prop_map(Wrong::Nested),
        prop::sample::select(vec![129usize, 70_000, MAX_PAYLOAD_BYTES - 1024])
            .prop_map(Wrong::Long),
    ];
    prop_oneof![
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        4 => (any::<prop::sample::Index>(), wrong).prop_map(|(i, w)| Mutation::Replace(i, w)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Remove),
        1 => Just(Mutation::OverLimit),
        1 => (
            any::<prop::sample::Index>(),
            prop::sample::select(vec!["", "+", "#", "..", "x/y", "a\u{0}b", "\u{FEFF}x"]),
        )
            .prop_map(|(i, l)| Mutation::Topic(i, l)),
    ]
}

/// JSON pointers to every value in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = k.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

fn apply(m: &Mutation, topic: &str, payload: &[u8]) -> (String, Vec<u8>) {
    let mut topic = topic.to_owned();
    let json = || -> (Value, Vec<String>) {
        let v: Value = serde_json::from_slice(payload).expect("samples are JSON");
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        (v, all)
    };
    let payload = match m {
        Mutation::Truncate(i) => payload[..i.index(payload.len() + 1)].to_vec(),
        Mutation::Flip(i, b) => {
            let mut p = payload.to_vec();
            if !p.is_empty() {
                let at = i.index(p.len());
                p[at] ^= b | 1;
            }
            p
        }
        Mutation::Replace(i, wrong) => {
            let (mut v, all) = json();
            let at = i.get(&all);
            let new = match wrong {
                Wrong::Json(value) => value.clone(),
                Wrong::Nested(depth) => {
                    let text = format!("{}{}", "[".repeat(*depth), "]".repeat(*depth));
                    return (topic, splice(&v, at, &text));
                }
                Wrong::Long(n) => Value::String("9".repeat(*n)),
            };
            *v.pointer_mut(at).unwrap() = new;
            serde_json::to_vec(&v).unwrap()
        }
        Mutation::Remove(i) => {
            let (mut v, all) = json();
            let at = i.get(&all);
            if let Some((parent, key)) = at.rsplit_once('/')
                && let Some(Value::Object(map)) = v.pointer_mut(parent)
            {
                map.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            serde_json::to_vec(&v).unwrap()
        }
        Mutation::OverLimit => {
            let mut p = payload.to_vec();
            p.resize(MAX_PAYLOAD_BYTES + 1, b' ');
            p
        }
        Mutation::Topic(i, level) => {
            let mut levels: Vec<&str> = topic.split('/').collect();
            let at = i.index(levels.len());
            levels[at] = level;
            topic = levels.join("/");
            payload.to_vec()
        }
    };
    (topic, payload)
}

/// `v` as text with the value at pointer `at` replaced by the raw JSON `raw` (nesting deeper
/// than serde_json would build).
fn splice(v: &Value, at: &str, raw: &str) -> Vec<u8> {
    const MARK: &str = "\u{1}conformance-splice\u{1}";
    let mut v = v.clone();
    *v.pointer_mut(at).unwrap() = Value::String(MARK.into());
    let text = serde_json::to_string(&v).unwrap();
    let quoted = serde_json::to_string(MARK).unwrap();
    text.replacen(&quoted, raw, 1).into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(768)
    ))]

    /// Damaged samples of every dialect: decoding answers (events or an error) and never panics;
    /// what it decodes keeps the dialect's promises, and every answer it asks for encodes.
    #[test]
    fn decoding_damaged_samples_never_panics_and_keeps_its_promises(
        pick in any::<prop::sample::Index>(),
        sample in any::<prop::sample::Index>(),
        m in mutation(),
    ) {
        let all = dialects();
        let d = *pick.get(&all);
        let s = sample.get(d.samples().uplink);
        let (topic, payload) = apply(&m, s.topic, s.payload.as_bytes());
        let result = protocol::decode(&topic, &payload);
        if payload.len() > MAX_PAYLOAD_BYTES {
            prop_assert_eq!(result.clone(), Err(DecodeError::TooLarge { len: payload.len() }));
        }
        if let Ok(events) = result {
            let owner = registry::dialect_of_topic(&topic).unwrap().id();
            for e in &events {
                prop_assert_eq!(e.device().dialect(), owner, "{:?}", e);
                if let Event::Progress(p) = e {
                    prop_assert!(p.percent.is_none_or(|v| v <= 100));
                }
                if let Event::Answer(answer) = e {
                    let n = Notice::Answer { answer: answer.clone(), timestamp_ms: 1 };
                    prop_assert!(protocol::encode(&n).is_ok(), "{:?}", answer);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- end to end

/// A fleet of `d`'s own simulator (`Dialect::sim`): one unit of each kind it offers (a
/// gateway with one sub-device where it has them), or two when it offers one kind.
fn sim_fleet_of(
    d: &dyn Dialect,
    base: ota_console::sim::SimConfig,
) -> Option<ota_console::sim::SimConfig> {
    use ota_console::sim::{SimConfig, UnitSpec};
    let factory = d.sim()?;
    let kinds = factory.kinds();
    let each = if kinds.len() == 1 { 2 } else { 1 };
    let units = kinds
        .iter()
        .map(|kind| {
            let unit = UnitSpec::new(factory, kind, each);
            match kind.members {
                Some(_) => unit.with_members(1),
                None => unit,
            }
        })
        .collect();
    Some(SimConfig { units, ..base })
}

/// One rollout over a simulated fleet of dialect `d` alone; `flash_fails` makes every install
/// fail.
async fn rollout_of(
    d: &dyn Dialect,
    flash_fails: bool,
) -> (
    ota_console::engine::CampaignView,
    ota_console::sim::SimStats,
) {
    use ota_console::rollout::CanarySize;
    use ota_console::sim::FaultOdds;
    use ota_console::testing::engine::{
        discover, run_to_end, start_embedded, start_fleet, start_rollout,
    };
    use ota_console::testing::{fast_policy, firmware_file, strict_sim};

    let dir = tempfile::tempdir().unwrap();
    let handle = start_embedded(dir.path()).await;
    let mut config = sim_fleet_of(d, strict_sim(handle.broker_url(), 5))
        .unwrap_or_else(|| panic!("{}: no simulated device for this dialect", d.id()));
    if flash_fails {
        config.behaviour.faults = FaultOdds {
            flash: 1.0,
            ..FaultOdds::default()
        };
    }
    let fleet = start_fleet(dir.path(), config)
        .await
        .expect("simulated fleet starts");
    let ids = fleet.device_ids();
    assert!(ids.iter().all(|id| id.dialect() == d.id()), "{ids:?}");
    discover(&handle, &ids).await;
    let fw = firmware_file(dir.path(), 40_000);
    let policy = ota_console::rollout::Policy {
        canary: CanarySize::Percent(100),
        ..fast_policy(20)
    };
    let id = start_rollout(&handle, &fw, ids, policy).await;
    let view = run_to_end(&handle, id).await;
    let stats = fleet.stats();
    fleet.shutdown().await;
    (view, stats)
}

/// Each dialect's simulated devices (a gateway with its sub-device where the dialect has them)
/// upgrade through the real engine and the secure embedded broker (so through the dialect's
/// topic routes too); then, with every install failing, each fails with a code its dialect's
/// error table explains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_upgrades_end_to_end_and_explains_its_failures() {
    use ota_console::rollout::DeviceStatus;
    for d in dialects() {
        let (view, stats) = rollout_of(d, false).await;
        assert!(view.snapshot.devices.len() >= 2, "{}", d.id());
        for device in &view.snapshot.devices {
            assert_eq!(
                device.status,
                DeviceStatus::Succeeded,
                "{}: {device:?}",
                d.id()
            );
            let sim = stats.get(&device.id.device()).expect("device is simulated");
            assert_eq!(
                sim.version, "2.0.0",
                "{}: the device itself says so",
                device.id
            );
        }

        let (view, _) = rollout_of(d, true).await;
        for device in &view.snapshot.devices {
            assert_eq!(
                device.status,
                DeviceStatus::Failed,
                "{}: {device:?}",
                d.id()
            );
            let code = device
                .code
                .unwrap_or_else(|| panic!("{device:?} has no code"));
            let error = device
                .error
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let explained = d.errors().describe(code);
            assert!(
                error.contains(&explained),
                "{}: {error:?} vs {explained:?}",
                d.id()
            );
        }
    }
}
