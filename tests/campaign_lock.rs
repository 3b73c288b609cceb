//! The campaign lock (`rollout::lock`) between real `ota-console rollout` processes on one real
//! Mosquitto: two consoles started at the same moment on the same campaign (one drives it, the
//! other exits naming the holder, and every simulated device gets exactly one notice), and a
//! holder killed with `kill -9` (its Will clears its claim: the next console takes the
//! campaign over, while a console started before the kill is refused, and so is the killed
//! console's `--resume` while the other drives it).

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ota_console::engine::CLIENT_ID_FILE;
use ota_console::sim::{Behaviour, SimConfig, SimFleet};
use ota_console::testing::console::{Console, rollout_args};
use ota_console::testing::firmware_file;
use ota_console::testing::mosquitto::{Mosquitto, free_port};
use ota_console::testing::sim_units;

/// `rollout`'s exit code when another console holds the campaign.
const HELD_ELSEWHERE: i32 = 3;
const DEVICES: usize = 20;
const FLEET_WAIT: Duration = Duration::from_secs(30);

fn data_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `rollout` on `broker` with its own data directory and database in `dir`, then `extra`.
fn args(broker: &str, dir: &Path, fw: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = rollout_args(broker, dir, fw);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

fn client_id(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(CLIENT_ID_FILE))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consoles_on_one_campaign_one_drives_and_the_other_names_the_holder() {
    let root = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(root.path(), free_port(), "allow_anonymous true");
    let fw = firmware_file(root.path(), 16 * 1024);
    let flags = [
        "--all",
        "--discover-for",
        "4s",
        "--wave",
        "100%",
        "--concurrency",
        "100",
        "--campaign",
        "site A to 2.0.0",
    ];
    let (dir_a, dir_b) = (data_dir(root.path(), "a"), data_dir(root.path(), "b"));
    // Started together: each listens 4 s, then claims the campaign within moments of the other.
    let mut a = Console::spawn(&args(&broker.url(), &dir_a, &fw, &flags), &dir_a);
    let mut b = Console::spawn(&args(&broker.url(), &dir_b, &fw, &flags), &dir_b);
    // Devices announce themselves when they connect: once both consoles listen.
    tokio::task::block_in_place(|| {
        a.expect_line("listening for devices");
        b.expect_line("listening for devices");
    });
    let fleet = SimFleet::start(SimConfig {
        broker_url: broker.url(),
        version: "1.0.0".into(),
        units: sim_units(&[("aliyun", DEVICES)]),
        behaviour: Behaviour {
            install: Duration::from_millis(100),
            ..Behaviour::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + FLEET_WAIT;
    while fleet.stats().devices.iter().any(|d| d.connects == 0) {
        assert!(Instant::now() < deadline, "the fleet did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let ((code_a, lines_a), (code_b, lines_b)) =
        tokio::task::block_in_place(|| (a.wait(), b.wait()));

    let outcomes = [(code_a, &lines_a, &dir_a), (code_b, &lines_b, &dir_b)];
    let drivers: Vec<_> = outcomes.iter().filter(|(c, ..)| *c == 0).collect();
    let held: Vec<_> = outcomes
        .iter()
        .filter(|(c, ..)| *c == HELD_ELSEWHERE)
        .collect();
    assert!(
        drivers.len() == 1 && held.len() == 1,
        "exactly one console drives, the other is refused: a {code_a} {lines_a:#?}, b {code_b} \
         {lines_b:#?}"
    );
    let (_, _, driver_dir) = drivers[0];
    let (_, refused_lines, _) = held[0];
    let holder = client_id(driver_dir);
    let told = refused_lines
        .iter()
        .find(|l| l.contains("is held by console"))
        .unwrap_or_else(|| panic!("no holder named: {refused_lines:#?}"));
    assert!(
        told.contains("\"site A to 2.0.0\"")
            && told.contains(&format!("console {holder} on host "))
            && told.contains(" since "),
        "{told}"
    );
    assert!(
        !refused_lines.iter().any(|l| l.contains(" running")),
        "the refused console started nothing: {refused_lines:#?}"
    );

    let stats = fleet.stats();
    for device in &stats.devices {
        assert_eq!(
            (device.notices_received, device.version.as_str()),
            (1, "2.0.0"),
            "{} got {} notice(s)",
            device.id,
            device.notices_received
        );
    }
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_with_sigkill_leaves_the_campaign_to_the_next_console() {
    let root = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(root.path(), free_port(), "allow_anonymous true");
    let fw = firmware_file(root.path(), 4 * 1024);
    // A device that never answers: the holder waits for it long past the test.
    let flags = [
        "--target",
        "aliyun:pk/away",
        "--discover-for",
        "0s",
        "--campaign",
        "night",
        "--retries",
        "0",
    ];
    let (dir_a, dir_c, dir_b) = (
        data_dir(root.path(), "a"),
        data_dir(root.path(), "c"),
        data_dir(root.path(), "b"),
    );
    let mut holder = Console::spawn(&args(&broker.url(), &dir_a, &fw, &flags), &dir_a);
    let id = holder.campaign_id();
    let holder_id = client_id(&dir_a);

    let refused = Console::spawn(&args(&broker.url(), &dir_c, &fw, &flags), &dir_c);
    let (code, lines) = tokio::task::block_in_place(|| refused.wait());
    assert_eq!(code, HELD_ELSEWHERE, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("is held by console {holder_id} "))),
        "{lines:#?}"
    );

    holder.kill();
    // The broker publishes the dead holder's Will (its claims cleared) when its socket closes.
    let mut next = Console::spawn(&args(&broker.url(), &dir_b, &fw, &flags), &dir_b);
    next.campaign_id();
    next.drain();
    assert!(
        !next.seen.iter().any(|l| l.contains("is held by")),
        "{:#?}",
        next.seen
    );

    // The killed console's operator resumes its campaign while the other drives it: refused.
    let resume: Vec<String> = [
        "rollout",
        "--broker",
        &broker.url(),
        "--http-bind",
        "127.0.0.1:0",
        "--db",
        &dir_a.join("console.db").display().to_string(),
        "--resume",
        &id.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let resumed = Console::spawn(&resume, &dir_a);
    let (code, lines) = tokio::task::block_in_place(|| resumed.wait());
    assert_eq!(code, HELD_ELSEWHERE, "{lines:#?}");
    let taker = client_id(&dir_b);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("is held by console {taker} "))),
        "{lines:#?}"
    );
    next.kill();
}

/// The engine itself, as the window drives it: two engines on one Mosquitto start the same
/// campaign at the same moment; the refused one's snapshot carries the alert the window shows;
/// once the holder cancels its campaign the name is free, and the other engine takes it; once
/// that one stops, the first may take it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_race_and_a_canceled_campaign_frees_its_name() {
    use ota_console::device_id::DeviceId;
    use ota_console::engine::{BrokerChoice, CampaignRequest, Command, CommandError, EngineError};
    use ota_console::rollout::{DialectSettings, Policy};
    use ota_console::testing::engine::{loopback_config, start_engine, wait_for};
    use ota_console::transport::mqtt::LinkOptions;

    let root = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(root.path(), free_port(), "allow_anonymous true");
    let fw = firmware_file(root.path(), 4 * 1024);
    let mut engines = Vec::new();
    for name in ["a", "b"] {
        let mut config = loopback_config(&data_dir(root.path(), name));
        config.broker = BrokerChoice::External(LinkOptions::new(broker.url().parse().unwrap()));
        let engine = start_engine(config).await;
        engine
            .wait_connected(Duration::from_secs(30))
            .await
            .unwrap();
        engines.push(engine);
    }
    let mut requests = Vec::new();
    for engine in &engines {
        let package = engine.import_firmware(fw.clone()).await.unwrap();
        requests.push(CampaignRequest {
            name: "dock site".into(),
            package_sha256: package.package.sha256,
            version: "2.0.0".into(),
            module: None,
            description: String::new(),
            // Nobody answers: the campaign runs until it is canceled.
            targets: vec!["aliyun:pk/away".parse::<DeviceId>().unwrap()],
            policy: Policy::default(),
            settings: DialectSettings::default(),
            download_url: None,
        });
    }
    let (first, second) = tokio::join!(
        engines[0].start_campaign(requests[0].clone()),
        engines[1].start_campaign(requests[1].clone())
    );
    let (holder_idx, refused_idx, id, refused) = match (first, second) {
        (Ok(id), Err(e)) => (0, 1, id, e),
        (Err(e), Ok(id)) => (1, 0, id, e),
        other => panic!("exactly one engine starts the campaign: {other:?}"),
    };
    assert!(
        matches!(
            &refused,
            EngineError::Refused(CommandError::CampaignHeld { key, holder })
                if key == "dock site"
                    && holder.console.console == client_id(&root.path().join(["a", "b"][holder_idx]))
        ),
        "{refused}"
    );
    let text = refused.to_string();
    wait_for(
        &engines[refused_idx],
        "the window's alert naming the holder",
        |s| s.alerts.iter().any(|a| a.text == text),
    )
    .await;

    // The holder cancels: its claim is cleared, and the other engine may start the campaign.
    engines[holder_idx].send(Command::Cancel(id)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match engines[refused_idx]
            .start_campaign(requests[refused_idx].clone())
            .await
        {
            Ok(_) => break,
            Err(EngineError::Refused(CommandError::CampaignHeld { .. }))
                if Instant::now() < deadline =>
            {
                // The holder gives the name up at its next housekeeping (every second).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the freed campaign could not be started: {e}"),
        }
    }

    // The new holder stops: it clears its claim on the way out (a clean disconnect sends no
    // Will), so the first engine may start the campaign again at once, not a lease later.
    engines[refused_idx].send(Command::Shutdown).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match engines[holder_idx]
            .start_campaign(requests[holder_idx].clone())
            .await
        {
            Ok(_) => break,
            Err(EngineError::Refused(CommandError::CampaignHeld { .. }))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the campaign of a console that stopped stayed held: {e}"),
        }
    }
}

/// The window resumes the unfinished campaigns of its data directory at start; one that another
/// console drives meanwhile stays in the history with an alert naming it, and is resumed once
/// that console let it go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_resumes_at_start_only_what_no_other_console_holds() {
    use ota_console::device_id::DeviceId;
    use ota_console::engine::{BrokerChoice, CampaignRequest, Command, EngineConfig, EngineHandle};
    use ota_console::rollout::{DialectSettings, Policy};
    use ota_console::testing::engine::{loopback_config, start_engine, wait_for};
    use ota_console::transport::mqtt::LinkOptions;

    let root = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(root.path(), free_port(), "allow_anonymous true");
    let fw = firmware_file(root.path(), 4 * 1024);
    let config = |name: &str| -> EngineConfig {
        let mut config = loopback_config(&data_dir(root.path(), name));
        config.broker = BrokerChoice::External(LinkOptions::new(broker.url().parse().unwrap()));
        config.resume_unfinished = true;
        config
    };
    let start_yard = |engine: EngineHandle| {
        let fw = fw.clone();
        async move {
            let package = engine.import_firmware(fw).await.unwrap();
            engine
                .start_campaign(CampaignRequest {
                    name: "yard".into(),
                    package_sha256: package.package.sha256,
                    version: "2.0.0".into(),
                    module: None,
                    description: String::new(),
                    targets: vec!["aliyun:pk/away".parse::<DeviceId>().unwrap()],
                    policy: Policy::default(),
                    settings: DialectSettings::default(),
                    // Served elsewhere: a restarted engine's firmware server, on another free
                    // port, has nothing to serve again.
                    download_url: Some("http://127.0.0.1:9/yard/fw.bin".into()),
                })
                .await
        }
    };
    // Until the engine task is gone (its snapshot channel closes): its claim is cleared and its
    // data directory free.
    let stop = |engine: EngineHandle| async move {
        let mut watch = engine.watch();
        engine.send(Command::Shutdown).unwrap();
        tokio::time::timeout(Duration::from_secs(30), async {
            while watch.changed().await.is_ok() {}
        })
        .await
        .expect("the engine stops");
    };

    let a = start_engine(config("a")).await;
    a.wait_connected(Duration::from_secs(30)).await.unwrap();
    let id = start_yard(a.clone()).await.unwrap();
    stop(a).await;
    let b = start_engine(config("b")).await;
    b.wait_connected(Duration::from_secs(30)).await.unwrap();
    start_yard(b.clone()).await.unwrap();
    let taker = client_id(&root.path().join("b"));

    let a = start_engine(config("a")).await;
    let snap = wait_for(
        &a,
        "an alert naming the console that holds the campaign",
        |s| {
            s.alerts
                .iter()
                .any(|al| al.text.contains(&format!("is held by console {taker} ")))
        },
    )
    .await;
    assert!(
        !snap.campaigns.iter().any(|c| c.snapshot.id == id && c.live),
        "campaign {id} resumed while another console holds it"
    );
    stop(a).await;

    stop(b).await;
    let a = start_engine(config("a")).await;
    let mut watch = a.watch();
    let resumed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let live = watch
                .borrow_and_update()
                .campaigns
                .iter()
                .any(|c| c.snapshot.id == id && c.live);
            if live || watch.changed().await.is_err() {
                return live;
            }
        }
    })
    .await;
    let snap = a.snapshot();
    assert!(
        resumed == Ok(true),
        "campaign {id} not resumed once nobody holds it; alerts {:#?}; inspector {:#?}",
        snap.alerts,
        a.messages(None, 50)
            .iter()
            .map(|m| format!("{:?} {} {}", m.direction, m.topic, m.payload))
            .collect::<Vec<_>>()
    );
}
