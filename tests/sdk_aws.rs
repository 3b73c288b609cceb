//! End to end with a device stack nobody on the project wrote: AWS's official Python device SDK
//! v2 (`awsiotsdk` on `awscrt`, from PyPI, pinned in `tests/sdk/requirements.txt`) and its Jobs
//! client under a thin device app (`tests/sdk/aws_device.py`, written after AWS's own jobs
//! sample), connected with its thing certificate to a real Mosquitto that requires client
//! certificates of a test CA, upgraded by the real `ota-console rollout` (which logs in to the same
//! broker with a certificate of its own) and the console's firmware server, all on loopback ports
//! picked by the system.
//!
//! The SDK runs in the Python environment `scripts/dev test` creates (`.venv/`), whose
//! interpreter is named by `OTA_TEST_PYTHON`. Without one these tests fail and say how to get
//! it: they never pass without having driven the SDK.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ota_console::access::credentials::ConsoleCredentials;
use ota_console::access::site_ca::SiteCa;
use ota_console::access::tls::{ClientCerts, server_config};
use ota_console::protocol::registry;
use ota_console::testing::console::{Console, rollout_args};
use ota_console::testing::firmware_file;
use ota_console::testing::mosquitto::Mosquitto;
use ota_console::testing::mutual_tls::{TestPki, mqtts_url, start_mutual_tls_mosquitto};
use ota_console::testing::sdk_device::{DEVICE_WAIT, SdkDevice};
use ota_console::transport::broker::{BrokerSettings, BrokerTls, EmbeddedBroker};
use ota_console::transport::mqtt::{BrokerUrl, Inbound, LinkOptions, LinkState, MqttLink};
use serde_json::{Value, json};

/// The interpreter of the venv holding the SDK: `OTA_TEST_PYTHON`, else `.venv/` in the
/// checkout. Fails the test, with the way to install it, when there is none or it lacks the SDK.
fn sdk_python() -> PathBuf {
    const HOW: &str = "run the tests with `scripts/dev test` (it creates .venv/ from \
        tests/sdk/requirements.txt and sets OTA_TEST_PYTHON), or create it yourself: \
        python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/requirements.txt, \
        then OTA_TEST_PYTHON=$PWD/.venv/bin/python cargo test --test sdk_aws";
    let python = match std::env::var_os("OTA_TEST_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
            assert!(
                venv.exists(),
                "AWS's Python device SDK is needed and OTA_TEST_PYTHON is not set and \
                 {} does not exist: {HOW}",
                venv.display()
            );
            venv
        }
    };
    let probe = Command::new(&python)
        .args([
            "-c",
            "import awscrt.mqtt, awsiot.iotjobs, awsiot.mqtt_connection_builder",
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}; {HOW}", python.display()));
    assert!(
        probe.status.success(),
        "{} cannot import AWS's SDK ({}): {HOW}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    python
}

/// A mutual-TLS Mosquitto, its test CA, and the console's client certificate.
struct Bench {
    dir: tempfile::TempDir,
    pki: TestPki,
    broker: Mosquitto,
    python: PathBuf,
}

impl Bench {
    fn start() -> Bench {
        let python = sdk_python();
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::create(dir.path());
        let broker = start_mutual_tls_mosquitto(dir.path(), &pki, "");
        Bench {
            dir,
            pki,
            broker,
            python,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the device app as thing `thing` on firmware 1.0.0 with its own certificate of the
    /// bench CA; `extra` are more options of the app.
    fn device(&self, thing: &str, extra: &[&str]) -> SdkDevice {
        let cert = self.pki.client(thing);
        self.device_with(thing, &cert.cert, &cert.key, extra)
    }

    fn device_with(&self, thing: &str, cert: &Path, key: &Path, extra: &[&str]) -> SdkDevice {
        let tls = DeviceTls {
            port: self.broker.port,
            ca: &self.pki.ca,
            cert,
            key,
        };
        start_device(&self.python, &tls, thing, self.path(), extra)
    }

    /// Link options of the console's own client certificate to this broker.
    fn console_link(&self, subscriptions: &[&str]) -> LinkOptions {
        let cert = self.pki.client("ota-console");
        let mut o = LinkOptions::new(mqtts_url(&self.broker).parse::<BrokerUrl>().unwrap());
        o.ca_file = Some(self.pki.ca.clone());
        o.client_cert = Some(cert.cert);
        o.client_key = Some(cert.key);
        o.subscriptions = subscriptions.iter().map(|s| s.to_string()).collect();
        o
    }
}

/// Where a device app connects (127.0.0.1) and with which certificates.
struct DeviceTls<'a> {
    port: u16,
    /// The CA the broker's certificate is checked against.
    ca: &'a Path,
    cert: &'a Path,
    key: &'a Path,
}

/// Starts the device app as thing `thing` on firmware 1.0.0, its "flash" in a folder of
/// `dir`; `extra` are more options of the app.
fn start_device(
    python: &Path,
    tls: &DeviceTls,
    thing: &str,
    dir: &Path,
    extra: &[&str],
) -> SdkDevice {
    let work_dir = dir.join(format!("device-{thing}"));
    std::fs::create_dir_all(&work_dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/aws_device.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .args(["--host", "127.0.0.1", "--port"])
        .arg(tls.port.to_string())
        .arg("--ca")
        .arg(tls.ca)
        .arg("--cert")
        .arg(tls.cert)
        .arg("--key")
        .arg(tls.key)
        .args(["--thing-name", thing, "--version", "1.0.0", "--work-dir"])
        .arg(&work_dir)
        .args(extra);
    SdkDevice::spawn(thing, command)
}

/// The nine reply and notify topics the SDK's Jobs client subscribes to for `thing`, in the
/// app's order (AWS's sample subscribes to update replies of job id `+`).
fn job_topics(thing: &str) -> Vec<String> {
    [
        "notify-next",
        "get/accepted",
        "get/rejected",
        "start-next/accepted",
        "start-next/rejected",
        "+/get/accepted",
        "+/get/rejected",
        "+/update/accepted",
        "+/update/rejected",
    ]
    .iter()
    .map(|t| format!("$aws/things/{thing}/jobs/{t}"))
    .collect()
}

/// A tokio runtime for the console-side link of a test, and a bounded receive on it.
struct Observer {
    runtime: tokio::runtime::Runtime,
    _link: MqttLink,
    rx: tokio::sync::mpsc::Receiver<Inbound>,
}

impl Observer {
    /// Connects with `options` and waits (bounded) until the link is up.
    fn connect(options: LinkOptions) -> Observer {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (link, rx) = {
            let _guard = runtime.enter();
            MqttLink::start(options).unwrap()
        };
        let mut state = link.state();
        let connected = runtime.block_on(async {
            tokio::time::timeout(DEVICE_WAIT, state.wait_for(|s| *s == LinkState::Connected))
                .await
                .is_ok()
        });
        assert!(
            connected,
            "the console's link is not up within {DEVICE_WAIT:?}: {:?}",
            *link.state().borrow()
        );
        Observer {
            runtime,
            _link: link,
            rx,
        }
    }

    /// The next publish on a topic ending in `suffix`, within [`DEVICE_WAIT`].
    fn next_on(&mut self, suffix: &str) -> (String, Value) {
        let rx = &mut self.rx;
        self.runtime.block_on(async {
            tokio::time::timeout(DEVICE_WAIT, async {
                loop {
                    let msg = rx.recv().await.expect("link alive");
                    if msg.topic.ends_with(suffix) {
                        let body = serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
                            panic!("{}: not JSON ({e}): {:?}", msg.topic, msg.payload)
                        });
                        return (msg.topic, body);
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("nothing on *{suffix} within {DEVICE_WAIT:?}"))
        })
    }
}

/// The broker admits the SDK with its thing certificate (it subscribes to its nine Jobs topics,
/// all granted QoS 1) and refuses the same SDK presenting a certificate of another CA; the
/// console's own client certificate gets it in too.
#[test]
fn sdk_device_gets_into_the_mutual_tls_broker_with_a_certificate_of_its_ca_only() {
    let bench = Bench::start();
    let mut good = bench.device("thing-good", &["--reply-wait", "1"]);
    good.expect("connected");
    let subscribed = good.expect("subscribed");
    assert_eq!(subscribed["topics"], json!(job_topics("thing-good")));
    assert_eq!(subscribed["granted_qos"], json!(vec![1; 9]));

    let other_dir = bench.path().join("other-ca");
    std::fs::create_dir_all(&other_dir).unwrap();
    let stranger = TestPki::create(&other_dir).client("thing-stranger");
    let mut bad = bench.device_with("thing-stranger", &stranger.cert, &stranger.key, &[]);
    let refused = bad.expect("connect_failed");
    assert!(
        refused["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{refused}"
    );
    assert_eq!(bad.exit_code(), Some(3), "{:#?}", bad.drain());

    let _console = Observer::connect(bench.console_link(&[]));
}

/// Before any console answers, the SDK's requests are the ones written down in
/// /work/wt/signals/aws_sdk_requests.md and that the console's Jobs dialect must accept: `get`
/// and `start-next` on the thing's topics, QoS 1 JSON objects with the client token as their only
/// field.
#[test]
fn sdk_device_asks_for_its_jobs_on_the_documented_topics() {
    let bench = Bench::start();
    let mut observer = Observer::connect(bench.console_link(&["$aws/things/+/jobs/#"]));
    let mut device = bench.device("thing-ask", &["--reply-wait", "1"]);
    device.expect("subscribed");

    let (topic, body) = observer.next_on("/jobs/get");
    assert_eq!(topic, "$aws/things/thing-ask/jobs/get");
    let token = body["clientToken"].as_str().unwrap_or_default();
    assert!(token.starts_with("get-"), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(device.expect("no_reply")["op"], "get");

    let (topic, body) = observer.next_on("/jobs/start-next");
    assert_eq!(topic, "$aws/things/thing-ask/jobs/start-next");
    let requested = device.expect("requesting_next");
    assert_eq!(body, json!({"clientToken": requested["client_token"]}));
    assert_eq!(device.expect("no_reply")["op"], "start-next");
}

/// The package the console announced (`fw.bin: SIZE bytes, md5 M, sha256 S`).
fn announced_package(console: &mut Console) -> Value {
    let line = console.expect_line("fw.bin: ");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        let at = words
            .iter()
            .position(|w| *w == key)
            .unwrap_or_else(|| panic!("{line}"));
        words
            .get(at + 1)
            .map(|w| w.trim_end_matches(','))
            .unwrap_or_default()
            .to_owned()
    };
    json!({
        "size": words.get(1).and_then(|n| n.parse::<u64>().ok()),
        "md5": after("md5"),
        "sha256": after("sha256"),
    })
}

fn report_device<'a>(report: &'a Value, thing: &str) -> &'a Value {
    let id = format!("aws:{thing}");
    report["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} is not in the report {report:#}"))
}

/// Waits for the job a device was given and checks its document against the package: the
/// console's own firmware URL, the exact size, SHA-256 and MD5, the target version. The app then
/// describes the execution (`{jobId}/get`): the service answers with the same job, execution
/// and document, IN_PROGRESS since start-next.
fn expect_job(device: &mut SdkDevice, package: &Value) -> Value {
    let job = device.expect("job");
    assert_eq!(job["status"], "IN_PROGRESS", "{job}");
    let described = device.expect("described");
    assert_eq!(described["code"], Value::Null, "{described}");
    for key in [
        "job_id",
        "status",
        "execution_number",
        "version_number",
        "document",
    ] {
        assert_eq!(described[key], job[key], "{key}: {described} vs {job}");
    }
    let doc = &job["document"];
    assert!(
        doc["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{job}"
    );
    assert_eq!(
        doc["size"].to_string(),
        package["size"].to_string(),
        "{job}"
    );
    assert_eq!(doc["sha256"], package["sha256"], "{job}");
    assert_eq!(doc["md5"], package["md5"], "{job}");
    assert_eq!(doc["version"], "2.0.0", "{job}");
    job
}

/// `ota-console rollout` of a 64 KiB firmware as 2.0.0 to `things` over the bench's broker, with
/// the console's own client certificate, no retries, no abort, and a JSON report in the bench dir.
fn start_rollout(bench: &Bench, things: &[&str]) -> Console {
    let dir = bench.path();
    let fw = firmware_file(dir, 64 * 1024);
    let mut args = rollout_args(&mqtts_url(&bench.broker), dir, &fw);
    let cert = bench.pki.client("ota-console");
    args.extend(["--ca".to_owned(), bench.pki.ca.display().to_string()]);
    args.extend(["--client-cert".to_owned(), cert.cert.display().to_string()]);
    args.extend(["--client-key".to_owned(), cert.key.display().to_string()]);
    for thing in things {
        args.extend(["--target".to_owned(), format!("aws:{thing}")]);
    }
    args.extend(["--wave", "100%", "--retries", "0", "--no-abort", "--report"].map(String::from));
    args.push(dir.join("report.json").display().to_string());
    Console::spawn(&args, dir)
}

/// The device's next `updated` event: it must have the status `status` and have been accepted.
fn expect_update(device: &mut SdkDevice, status: &str) -> Value {
    let update = device.expect("updated");
    if update["status"] != status || update["accepted"] != true {
        let events = device.drain().to_vec();
        panic!(
            "{}: wanted {status} accepted, got {update}; events {events:#?}",
            device.name()
        );
    }
    update
}

/// A whole upgrade: IN_PROGRESS (0 %), the download checked, IN_PROGRESS (50 %), SUCCEEDED with
/// the new version, and SUCCEEDED read back with a describe of the same job.
fn check_upgrade(device: &mut SdkDevice, package: &Value) {
    expect_job(device, package);
    assert_eq!(
        expect_update(device, "IN_PROGRESS")["details"]["progress"],
        "0"
    );
    assert_eq!(device.expect("downloaded")["bytes"], package["size"]);
    assert_eq!(
        expect_update(device, "IN_PROGRESS")["details"]["progress"],
        "50"
    );
    assert_eq!(
        expect_update(device, "SUCCEEDED")["details"]["version"],
        "2.0.0"
    );
    assert_eq!(device.expect("upgraded")["version"], "2.0.0");
}

/// A download whose digest check fails: FAILED with the mismatch as its reason (returned).
fn check_digest_failure(device: &mut SdkDevice, package: &Value) -> String {
    expect_job(device, package);
    expect_update(device, "IN_PROGRESS");
    expect_update(device, "FAILED");
    let failed = device.expect("failed");
    let reason = failed["reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("sha256 mismatch"), "{failed}");
    reason
}

/// A refused job: REJECTED with a reason (returned), nothing downloaded.
fn check_rejection(device: &mut SdkDevice, package: &Value) -> String {
    expect_job(device, package);
    expect_update(device, "REJECTED");
    let reason = device.expect("rejected")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !device.drain().iter().any(|e| e["event"] == "downloaded"),
        "{:#?}",
        device.drain()
    );
    reason
}

/// Nothing went wrong on the wire after boot: every request after the boot-time get and
/// start-next had its reply, parsed by the SDK and accepted, and the connection held.
fn assert_no_trouble(device: &mut SdkDevice) {
    let name = device.name().to_owned();
    let trouble: Vec<Value> = device
        .drain()
        .iter()
        .filter(|e| {
            let event = e["event"].as_str().unwrap_or_default();
            let boot_ask = event == "no_reply" && (e["op"] == "get" || e["op"] == "start-next");
            [
                "request_rejected",
                "unparseable_reply",
                "unmatched_reply",
                "no_reply",
                "connection_interrupted",
                "error",
            ]
            .contains(&event)
                && !boot_ask
        })
        .cloned()
        .collect();
    assert!(trouble.is_empty(), "{name}: {trouble:#?}");
}

/// The whole story on AWS's SDK, driven by `ota-console rollout` over the mutual-TLS broker:
/// - `thing-ok` and `thing-no` are up before the rollout and idle (nothing pending); the console's
///   notify-next wakes them and they ask with start-next; `thing-bad` boots after the rollout
///   started and asks on its own (get, start-next);
/// - `thing-ok` downloads from the console's firmware server, checks size and SHA-256, reports
///   IN_PROGRESS with its progress and SUCCEEDED with 2.0.0, and reads SUCCEEDED back (describe);
/// - `thing-bad` gets the bytes with one flipped, so its digest check fails: it reports FAILED
///   with the mismatch as its reason, and the report shows the status and that reason;
/// - `thing-no` REJECTs the job with a reason, which the report shows as a rejection.
#[test]
fn sdk_devices_upgrade_fail_and_reject_through_rollout() {
    let bench = Bench::start();
    let mut ok = bench.device("thing-ok", &["--reply-wait", "5"]);
    let mut no = bench.device("thing-no", &["--reply-wait", "5", "--scenario", "reject"]);
    for d in [&mut ok, &mut no] {
        d.expect("subscribed");
        // Nobody answers yet: the boot-time get and start-next go unanswered, the app idles.
        assert_eq!(d.expect("no_reply")["op"], "get");
        assert_eq!(d.expect("no_reply")["op"], "start-next");
    }

    let mut console = start_rollout(&bench, &["thing-ok", "thing-bad", "thing-no"]);
    let package = announced_package(&mut console);
    console.campaign_id();
    let mut bad = bench.device("thing-bad", &["--scenario", "corrupt"]);

    assert!(ok.expect("notify_next")["job_id"].is_string());
    check_upgrade(&mut ok, &package);
    let pending = bad.expect("pending");
    assert_eq!(
        pending["queued"].as_array().map(Vec::len),
        Some(1),
        "{pending}"
    );
    let reason = check_digest_failure(&mut bad, &package);
    assert!(no.expect("notify_next")["job_id"].is_string());
    let refusal = check_rejection(&mut no, &package);
    for d in [&mut ok, &mut bad, &mut no] {
        assert_no_trouble(d);
    }

    let (code, lines) = console.wait();
    let text = std::fs::read_to_string(bench.path().join("report.json"))
        .unwrap_or_else(|e| panic!("no report ({e}); console said {lines:#?}"));
    let report: Value = serde_json::from_str(&text).unwrap();
    for key in ["size", "md5", "sha256"] {
        assert_eq!(
            report["campaign"]["package"][key], package[key],
            "{report:#}"
        );
    }
    for thing in ["thing-ok", "thing-bad", "thing-no"] {
        eprintln!("report: {}", report_device(&report, thing));
    }
    let entry = report_device(&report, "thing-ok");
    assert_eq!(entry["status"], "succeeded", "{entry}");
    assert_eq!(entry["to_version"], "2.0.0", "{entry}");
    assert_eq!(entry["percent"], 100, "{entry}");
    let entry = report_device(&report, "thing-bad");
    assert_eq!(entry["status"], "failed", "{entry}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("FAILED") && error.contains(&reason),
        "{entry}"
    );
    let entry = report_device(&report, "thing-no");
    assert_eq!(entry["status"], "rejected", "{entry}");
    let error = entry["error"].as_str().unwrap_or_default();
    assert!(error.contains(&refusal), "{entry}");
    assert_eq!(code, 1, "failures end the rollout with 1: {lines:#?}");
    assert_eq!(report["campaign"]["state"], "completed", "{report:#}");
}

/// Without Mosquitto: the console's own embedded broker (secure, as `ota-console broker` runs
/// it, with a TLS listener next to the plain one), the thing logging in with a client
/// certificate the data directory's site CA issued for `aws:thing-emb` (as `broker-config
/// --issue-cert` gives one) and no password (the SDK's user name is its `?SDK=…` metrics). The
/// SDK's `$aws/...` subscriptions and publishes pass the gate's topic rules for that thing, and
/// `rollout` (logged in with the console's credentials) upgrades it.
///
/// The broker runs in the test, not inside `rollout`: when `rollout` brings its own broker, it
/// stops it the moment the last device has a final status, and the reply to that device's last
/// update can be lost with it (seen in 1 run of 5; a finding for the CLI, not for the SDK).
#[test]
fn sdk_device_upgrades_through_the_embedded_broker_with_a_site_ca_certificate() {
    let python = sdk_python();
    let dir = tempfile::tempdir().unwrap();
    let site_ca = SiteCa::load_or_create(dir.path()).unwrap();
    let (cert_pem, key_pem) = site_ca.issue_client("aws:thing-emb").unwrap();
    let cert = dir.path().join("thing-emb.pem");
    let key = dir.path().join("thing-emb.key");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let identity = site_ca.issue_server(&["127.0.0.1".to_owned()]).unwrap();
    let mut settings = BrokerSettings::secure(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().to_path_buf(),
        registry::topic_routes(),
    );
    settings.tls = Some(BrokerTls {
        listen: "127.0.0.1:0".parse().unwrap(),
        server: server_config(
            &identity,
            ClientCerts::Optional(vec![site_ca.certificate()]),
        )
        .unwrap(),
    });
    let broker = EmbeddedBroker::start(settings).unwrap();

    let fw = firmware_file(dir.path(), 64 * 1024);
    let mut args = rollout_args(&format!("mqtt://{}", broker.local_addr()), dir.path(), &fw);
    let console = ConsoleCredentials::load_or_create(dir.path()).unwrap();
    args.extend(["--username".to_owned(), console.username]);
    args.extend(["--password".to_owned(), console.password]);
    args.extend(["--target", "aws:thing-emb", "--retries", "0", "--report"].map(String::from));
    args.push(dir.path().join("report.json").display().to_string());
    let mut console = Console::spawn(&args, dir.path());
    let package = announced_package(&mut console);
    console.campaign_id();

    let tls = DeviceTls {
        port: broker.tls_addr().unwrap().port(),
        ca: &site_ca.cert_path(),
        cert: &cert,
        key: &key,
    };
    let mut device = start_device(&python, &tls, "thing-emb", dir.path(), &[]);
    let subscribed = device.expect("subscribed");
    assert_eq!(subscribed["topics"], json!(job_topics("thing-emb")));
    assert_eq!(subscribed["granted_qos"], json!(vec![1; 9]), "{subscribed}");
    check_upgrade(&mut device, &package);
    assert_no_trouble(&mut device);

    let (code, lines) = console.wait();
    assert_eq!(code, 0, "{lines:#?}");
    let text = std::fs::read_to_string(dir.path().join("report.json")).unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    let entry = report_device(&report, "thing-emb");
    assert_eq!(entry["status"], "succeeded", "{entry}");
    assert_eq!(entry["to_version"], "2.0.0", "{entry}");
}
