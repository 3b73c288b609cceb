use ota_console::protocol::*;
use ota_console::rollout::*;
use std::time::Instant;
#[test]
fn bench_machine() {
    let offer = FirmwareOffer {
        version: "2".into(),
        url: "u".into(),
        size: 1,
        md5: "0".repeat(32),
        sha256: "f".repeat(64),
        checksum: "0".repeat(8),
        file_name: "f".into(),
        description: "".into(),
    };
    let n = 10_000;
    let targets: Vec<Target> = (0..n)
        .map(|i| Target {
            device: format!("aliyun:pk/d{i}").parse().unwrap(),
            version: Some("1".into()),
            online: i % 2 == 0,
        })
        .collect();
    let policy = Policy {
        canary: CanarySize::Percent(100),
        rate: RateLimit {
            per_minute: 100000,
            burst: 100000,
        },
        max_in_flight: 10000,
        ..Policy::default()
    };
    let spec = CampaignSpec {
        name: "b".into(),
        offer,
        module: None,
        settings: DialectSettings::default(),
        policy,
    };
    let mut c = Campaign::new(CampaignId(1), spec, targets, Timestamp::from_millis(0)).unwrap();
    let mut ids = SequentialIds::new();
    c.handle(Input::Start, Timestamp::from_millis(1), &mut ids);
    let t0 = Instant::now();
    let events = 200_000u64;
    for k in 0..events {
        let i = ((k * 7919) % (n as u64 / 2)) * 2;
        let ev = Event::Progress(ProgressReport {
            device: format!("aliyun:pk/d{i}").parse().unwrap(),
            task: TaskRef::None,
            status: UpgradeStatus::InProgress,
            phase: Phase::Unspecified,
            percent: Some((k % 100) as u8),
            percent_clamped: false,
            desc: None,
            gateway: None,
            ack: None,
        });
        c.handle(
            Input::Event(ev),
            Timestamp::from_millis(1 + k * 10),
            &mut ids,
        );
        let _ = c.next_deadline();
    }
    let el = t0.elapsed();
    println!(
        "{events} progress events over {n} devices (5000 offline and pending, no rate/concurrency limit reached): {el:?} ({:.0} events/s), counts {:?}",
        events as f64 / el.as_secs_f64(),
        c.counts()
    );
}
