//! Loader and codec tests of dialect files: the example and the tests' own file load and round
//! trip; each class of mistake is refused naming file, line and field.

use serde_json::{Value, json};

use super::*;
use crate::protocol::{FirmwareGet, MsgId, NoticeAddress, TaskRef, UpgradeNotice, UpgradeStatus};

const ACME: &str = include_str!("../../../assets/dialects/acme.toml");
const WIDGET: &str = include_str!("../../../tests/dialects/widget.toml");

/// A rank no registered dialect has: parsing alone never registers.
const RANK: u16 = 60_000;

fn parse(src: &str) -> Result<UserDialect, LoadError> {
    UserDialect::parse("t.toml", src, RANK)
}

fn notice(d: &UserDialect, device: DeviceId, task: TaskRef) -> UpgradeNotice {
    assert_eq!(device.dialect(), d.id());
    UpgradeNotice {
        device,
        offer: crate::protocol::FirmwareOffer {
            version: "2.0.0".into(),
            url: "http://10.0.0.1:8080/fw/a.bin".into(),
            size: 40_000,
            md5: "0123456789abcdef0123456789abcdef".into(),
            sha256: "ab".repeat(32),
            checksum: "0001e240".into(),
            file_name: "a.bin".into(),
            description: "fixes \"the\" bug".into(),
        },
        address: NoticeAddress {
            msg_id: 5,
            timestamp_ms: 1_700_000_000_000,
            gateway: None,
            task,
            exchange_id: None,
            device_timeout_ms: None,
        },
        settings: Default::default(),
    }
}

fn json_of(out: &Outbound) -> Value {
    serde_json::from_slice(&out.payload).unwrap()
}

#[test]
fn the_example_file_loads_and_round_trips() {
    let d = parse(ACME).unwrap();
    assert_eq!(d.id().as_str(), "acme");
    assert_eq!(d.id().label(), "ACME lab boards");
    assert_eq!(
        d.subscriptions(),
        [
            "acme/+/+/fw/version",
            "acme/+/+/fw/status",
            "acme/+/+/fw/get"
        ]
    );
    let caps = d.capabilities();
    assert_eq!(caps.task_key.source, KeySource::Counter);
    assert!(caps.ack.by_first_report());
    assert_eq!(
        caps.pull,
        Pull::Supported {
            nothing_pending: NothingPending::EmptyReply
        }
    );
    assert!(caps.offer_fields.contains(&OfferField::Sha256));
    assert!(!caps.offer_fields.contains(&OfferField::Checksum));

    let dev = DeviceId::new(d.id(), Some("lab-3"), "board-17").unwrap();
    let mcu = dev.clone().with_module(Some("mcu")).unwrap();
    let out = d
        .encode(&Notice::Upgrade(notice(
            &d,
            mcu.clone(),
            TaskRef::Key("9".into()),
        )))
        .unwrap();
    assert_eq!(out.topic, "acme/lab-3/board-17/fw/cmd");
    let v = json_of(&out);
    assert_eq!(v["task"], "9");
    assert_eq!(v["module"], "mcu");
    assert_eq!(v["image"]["bytes"], 40_000);
    assert_eq!(v["image"]["url"], "http://10.0.0.1:8080/fw/a.bin");
    assert_eq!(v["note"], "fixes \"the\" bug");
    assert_eq!(v["reboot"], true);

    // The device's answers, as the file describes them.
    let events = d
        .decode(
            "acme/lab-3/board-17/fw/version",
            br#"{"fw":{"version":"2.0.0","module":"mcu"}}"#,
        )
        .unwrap();
    assert_eq!(
        events,
        [Event::Version(crate::protocol::VersionReport {
            device: mcu.clone(),
            version: "2.0.0".into(),
            gateway: None
        })]
    );
    let progress = |payload: Value| -> crate::protocol::ProgressReport {
        let events = d
            .decode(
                "acme/lab-3/board-17/fw/status",
                payload.to_string().as_bytes(),
            )
            .unwrap();
        match events.as_slice() {
            [Event::Progress(p)] => p.clone(),
            other => panic!("{other:?}"),
        }
    };
    let p = progress(json!({"status": {"task": 9, "percent": 140, "code": 0}}));
    assert_eq!(p.task, TaskRef::Key("9".into()));
    assert_eq!((p.percent, p.percent_clamped), (Some(100), true));
    assert_eq!(p.status, UpgradeStatus::InProgress);
    let p = progress(json!({"status": {"task": "9", "code": -2, "reason": "bad md5"}}));
    let UpgradeStatus::Failed(f) = &p.status else {
        panic!("{p:?}")
    };
    assert_eq!(
        (f.code, d.errors().describe(f.code).as_str()),
        (-2, "image digest mismatch")
    );
    assert_eq!(p.desc.as_deref(), Some("bad md5"));
    let p = progress(json!({"status": {"code": -9}}));
    let UpgradeStatus::Failed(f) = &p.status else {
        panic!("{p:?}")
    };
    assert_eq!(d.errors().describe(f.code), "board error -9");
}

#[test]
fn the_example_answers_a_pull_and_keeps_to_its_topics() {
    let d = parse(ACME).unwrap();
    let dev = DeviceId::new(d.id(), Some("lab-3"), "board-17").unwrap();
    // Pull: the request, the reply echoing its id, and "nothing pending".
    let events = d
        .decode("acme/lab-3/board-17/fw/get", br#"{"req":"r-1"}"#)
        .unwrap();
    let request = FirmwareGet {
        device: dev.clone(),
        id: MsgId::Str("r-1".into()),
    };
    assert_eq!(events, [Event::FirmwareGet(request.clone())]);
    let reply = d
        .encode(&Notice::FirmwareGetReply {
            request: request.clone(),
            pending: Some(notice(&d, dev.clone(), TaskRef::Key("3".into()))),
        })
        .unwrap();
    assert_eq!(reply.topic, "acme/lab-3/board-17/fw/cmd");
    assert_eq!(json_of(&reply)["req"], "r-1");
    assert_eq!(json_of(&reply)["task"], "3");
    let none = d
        .encode(&Notice::FirmwareGetReply {
            request,
            pending: None,
        })
        .unwrap();
    assert_eq!(json_of(&none), json!({"cmd": "none", "req": "r-1"}));

    // Topics of other devices' shapes or other dialects are not this dialect's.
    assert!(d.owns_topic("acme/a/b/fw/status"));
    assert!(!d.owns_topic("acme/a/b/fw/other"));
    assert!(d.decode("acme/a/b/fw/other", b"{}").is_err());
    assert!(matches!(
        d.decode("acme/a/b+/fw/status", b"{}"),
        Err(DecodeError::BadIdentity(_))
    ));
}

#[test]
fn the_tests_dialect_tells_messages_on_one_topic_apart() {
    let d = parse(WIDGET).unwrap();
    assert_eq!(d.subscriptions(), ["bench/widgets/+/events"]);
    assert_eq!(d.capabilities().task_key.source, KeySource::Uuid);
    assert_eq!(
        d.capabilities().pull,
        Pull::Supported {
            nothing_pending: NothingPending::EmptyReply
        }
    );
    let dev = DeviceId::new(d.id(), None, "W-0042").unwrap();
    let topic = "bench/widgets/W-0042/events";
    let kinds = |payload: Value| -> Vec<EventKind> {
        d.decode(topic, payload.to_string().as_bytes())
            .unwrap()
            .iter()
            .map(Event::kind)
            .collect()
    };
    assert_eq!(
        kinds(json!({"type": "hello", "build": {"semver": "1.0.0"}})),
        [EventKind::Version]
    );
    assert_eq!(
        kinds(json!({"type": "flash-state", "flash": {"done": 20}})),
        [EventKind::Progress]
    );
    assert_eq!(
        kinds(json!({"type": "anything-for-me", "seq": 4})),
        [EventKind::FirmwareGet]
    );
    assert!(d.decode(topic, br#"{"type":"reboot"}"#).is_err());
    let events = d
        .decode(
            topic,
            br#"{"type":"flash-state","flash":{"job":"j1","result":"E_CRC","why":"crc 1234"}}"#,
        )
        .unwrap();
    let [Event::Progress(p)] = events.as_slice() else {
        panic!("{events:?}")
    };
    let UpgradeStatus::Failed(f) = &p.status else {
        panic!("{p:?}")
    };
    assert_eq!(
        (f.code, d.errors().describe(f.code).as_str()),
        (12, "image checksum wrong")
    );
    assert_eq!(p.task, TaskRef::Key("j1".into()));
    // A text value not listed is a state, not a failure ("listed").
    let events = d
        .decode(topic, br#"{"type":"flash-state","flash":{"result":"OK"}}"#)
        .unwrap();
    assert!(matches!(&events[..], [Event::Progress(p)] if p.status == UpgradeStatus::InProgress));

    let out = d
        .encode(&Notice::Upgrade(notice(
            &d,
            dev,
            TaskRef::Key("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        )))
        .unwrap();
    assert_eq!(out.topic, "bench/widgets/W-0042/inbox");
    let v = json_of(&out);
    assert_eq!(v["artifact"]["length"], 40_000);
    assert_eq!(v["artifact"]["crc"], "0001e240");
    assert_eq!(v["job"], "0f8fad5b-d9cb-469f-a165-70867728950e");
}

/// `src` with `from` replaced by `to` (which must occur).
fn edit(src: &str, from: &str, to: &str) -> String {
    assert!(src.contains(from), "{from}");
    src.replacen(from, to, 1)
}

/// The file's line (1-based) where `needle` first occurs.
fn line_of(src: &str, needle: &str) -> usize {
    let at = src.find(needle).unwrap_or_else(|| panic!("{needle}"));
    src[..at].matches('\n').count() + 1
}

#[track_caller]
fn refused(src: &str, line_text: &str, field: &str, says: &str) {
    let err = parse(src).map(|d| d.id()).unwrap_err();
    let line = line_of(src, line_text);
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("t.toml:{line}: {field}: ")),
        "want t.toml:{line}: {field}: …, got {shown}"
    );
    assert!(shown.contains(says), "{shown}");
}

#[test]
fn toml_mistakes_are_refused_with_file_line_and_field() {
    // TOML and serde: typos, missing and mistyped fields.
    refused(
        &edit(
            ACME,
            "percent = \"/status/percent\"",
            "percnt = \"/status/percent\"",
        ),
        "percnt",
        "progress",
        "unknown field `percnt`",
    );
    refused(
        &edit(ACME, "task_key = \"counter\"", "task_key = \"sequence\""),
        "task_key = \"sequence\"",
        "dialect.task_key",
        "unknown variant",
    );
    refused(
        &edit(ACME, "label = \"ACME lab boards\"", "label = 7"),
        "label = 7",
        "dialect.label",
        "invalid type",
    );
    // A misspelt table; a missing field, named in full on the line of its table.
    refused(
        &edit(ACME, "[announce]", "[announcement]"),
        "[announcement]",
        "announcement",
        "unknown field `announcement`",
    );
    refused(
        &edit(ACME, "version = \"/fw/version\"", ""),
        "[announce]",
        "announce.version",
        "missing field `version`",
    );
    refused(
        &edit(ACME, "version = \"/fw/version\"", "version = \"/fw/version"),
        "version = \"/fw/version",
        "version",
        "invalid",
    );
}

#[test]
fn identity_and_topic_mistakes_are_refused_with_file_line_and_field() {
    // Identity.
    refused(
        &edit(ACME, "prefix = \"acme\"", "prefix = \"Acme Labs\""),
        "prefix = ",
        "dialect.prefix",
        "lowercase",
    );
    // Topics: a missing placeholder, a placeholder inside a level, a written wildcard.
    refused(
        &edit(
            ACME,
            "topic = \"acme/{key}/{name}/fw/status\"",
            "topic = \"acme/{name}/fw/status\"",
        ),
        "topic = \"acme/{name}/fw/status\"",
        "progress.topic",
        "needs {key}",
    );
    refused(
        &edit(
            ACME,
            "topic = \"acme/{key}/{name}/fw/cmd\"",
            "topic = \"acme/{key}/fw/cmd\"",
        ),
        "topic = \"acme/{key}/fw/cmd\"",
        "notice.topic",
        "needs {name}",
    );
    refused(
        &edit(ACME, "acme/{key}/{name}/fw/get", "acme/{key}/{name}/fw/+"),
        "acme/{key}/{name}/fw/+",
        "pull.topic",
        "wildcards",
    );
}

#[test]
fn payload_mistakes_are_refused_with_file_line_and_field() {
    // Payload templates: unknown placeholder, invalid JSON, a required field missing, a field
    // where there is no offer.
    refused(
        &edit(
            ACME,
            "\"note\": \"{{description}}\"",
            "\"note\": \"{{notes}}\"",
        ),
        "payload = '''",
        "notice.payload",
        "unknown placeholder {{notes}}",
    );
    refused(
        &edit(
            ACME,
            "\"target\": \"{{version}}\"",
            "\"target\": {{version}}",
        ),
        // Reported on the line where the rendered JSON breaks.
        "\"target\": {{version}}",
        "notice.payload",
        "renders invalid JSON",
    );
    let src = edit(ACME, "\"reboot\": true\n}", "\"reboot\": true,\n}");
    let err = parse(&src).unwrap_err().to_string();
    let line = line_of(&src, "\"reboot\": true,") + 1;
    assert!(
        err.starts_with(&format!(
            "t.toml:{line}: notice.payload: renders invalid JSON"
        )),
        "{err}"
    );
    refused(
        &edit(ACME, "\"target\": \"{{version}}\",", ""),
        "payload = '''",
        "notice.payload",
        "must carry {{version}}",
    );
    refused(
        &edit(
            ACME,
            "\"req\": {{request_id}} }'",
            "\"url\": \"{{url}}\" }'",
        ),
        "nothing = ",
        "pull.nothing",
        "not available here",
    );
}

#[test]
fn pointer_and_failure_mistakes_are_refused_with_file_line_and_field() {
    // Pointers and failures.
    refused(
        &edit(
            ACME,
            "percent = \"/status/percent\"",
            "percent = \"status.percent\"",
        ),
        "percent = ",
        "progress.percent",
        "JSON pointer",
    );
    refused(
        &edit(ACME, "{ value = -2, text", "{ value = \"MD5\", text"),
        "{ value = \"MD5\"",
        "progress.failure.codes[1].code",
        "needs a numeric `code`",
    );
    refused(
        &edit(ACME, "{ value = -3, text", "{ value = -1, text"),
        "{ value = -1, text = \"flash",
        "progress.failure.codes[2].value",
        "listed twice",
    );
    refused(
        &edit(
            ACME,
            "text = \"download failed\"",
            "text = \"download {failed}\"",
        ),
        "download {failed}",
        "progress.failure.codes[0].text",
        "braces",
    );
}

#[test]
fn shared_topics_and_overlapping_directions_are_refused() {
    // Kinds sharing a topic need a `when` each; up and down topics never meet.
    let src = edit(
        ACME,
        "acme/{key}/{name}/fw/get",
        "acme/{key}/{name}/fw/status",
    );
    let err = parse(&src).unwrap_err().to_string();
    let line = src.lines().position(|l| l.starts_with("[pull]")).unwrap() + 2;
    assert!(
        err.starts_with(&format!("t.toml:{line}: pull.when: ")),
        "{err}"
    );
    let src = edit(
        ACME,
        "acme/{key}/{name}/fw/cmd\"",
        "acme/{key}/{name}/fw/version\"",
    );
    let err = parse(&src).unwrap_err().to_string();
    assert!(
        err.contains("notice.topic") && err.contains("same topic"),
        "{err}"
    );
}

#[test]
fn a_file_taking_a_builtin_topic_is_refused_naming_the_file() {
    // Built-in topics, written as a dialect file would: FogCloud's uplink.
    let src = edit(
        ACME,
        "topic = \"acme/{key}/{name}/fw/version\"",
        "topic = \"fogcloud/{key}/{name}/thing/up/ota\"",
    );
    let err = register_source("stolen.toml", &src)
        .unwrap_err()
        .to_string();
    let line = line_of(&src, "fogcloud/{key}");
    assert!(
        err.starts_with(&format!("stolen.toml:{line}: announce.topic: ")),
        "{err}"
    );
    assert!(err.contains("fogcloud"), "{err}");
    assert!(registry::by_prefix("acme").is_none());
}

#[test]
fn a_pointer_clash_is_found_at_load() {
    // The percent lives inside the version's string: no message can carry both.
    let src = edit(
        ACME,
        "percent = \"/status/percent\"",
        "percent = \"/status/code/x\"",
    );
    let err = parse(&src).unwrap_err().to_string();
    assert!(err.contains("progress") && err.contains("overlap"), "{err}");
}

#[test]
fn the_broker_lets_each_device_use_its_own_topics_only() {
    use crate::access::rules::{Identity, RouteTable, Rules};
    let d = parse(WIDGET).unwrap();
    let rules = Rules::new(RouteTable::new([(d.id(), d.topic_routes())]));
    let me = Identity::Device(DeviceId::new(d.id(), None, "W-1").unwrap());
    assert!(
        rules
            .may_publish(&me, "bench/widgets/W-1/events")
            .is_allowed()
    );
    assert!(
        rules
            .may_subscribe(&me, "bench/widgets/W-1/inbox")
            .is_allowed()
    );
    for (topic, why) in [
        ("bench/widgets/W-2/events", "another device's uplink"),
        ("bench/widgets/W-1/inbox", "its own downlink"),
        ("bench/widgets/W-1/other", "no topic of the dialect"),
    ] {
        assert!(!rules.may_publish(&me, topic).is_allowed(), "{why}");
    }
    for filter in [
        "bench/widgets/W-2/inbox",
        "bench/widgets/+/inbox",
        "bench/widgets/W-1/events",
    ] {
        assert!(!rules.may_subscribe(&me, filter).is_allowed(), "{filter}");
    }
    let acme = parse(ACME).unwrap();
    let rules = Rules::new(RouteTable::new([(acme.id(), acme.topic_routes())]));
    let board = Identity::Device(DeviceId::new(acme.id(), Some("lab"), "b1").unwrap());
    assert!(rules.may_publish(&board, "acme/lab/b1/fw/get").is_allowed());
    assert!(
        !rules
            .may_publish(&board, "acme/lab2/b1/fw/get")
            .is_allowed()
    );
    assert!(
        rules
            .may_subscribe(&board, "acme/lab/b1/fw/cmd")
            .is_allowed()
    );
}

#[test]
fn a_code_names_one_known_simulator_fault_at_most_once() {
    refused(
        &edit(ACME, "sim = \"verify\"", "sim = \"explode\""),
        "sim = \"explode\"",
        "progress.failure.codes[1].sim",
        "one of \"download\", \"verify\", \"flash\"",
    );
    refused(
        &edit(ACME, "sim = \"flash\"", "sim = \"verify\""),
        "flash write failed",
        "progress.failure.codes[2].sim",
        "given to two values",
    );
}
