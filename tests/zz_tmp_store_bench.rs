use std::time::Instant;
use ota_console::protocol::FirmwareOffer;
use ota_console::rollout::*;
use ota_console::store::*;
#[test]
fn bench() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut store = Store::open(&dir.path().join("b.db")).unwrap();
    let offer = FirmwareOffer { version: "2".into(), url: "u".into(), size: 1, md5: "0".repeat(32), sha256: "f".repeat(64), checksum: "0".repeat(8), file_name: "f".into(), description: "".into() };
    store.save_package(&PackageRecord { sha256: "f".repeat(64), file_name: "f".into(), size: 1, md5: "0".repeat(32), checksum: "0".repeat(8), store_path: "/x".into(), imported_at: Timestamp::from_millis(0) }).unwrap();
    let targets: Vec<Target> = (0..2000).map(|i| Target { device: format!("aliyun:pk/d{i}").parse().unwrap(), version: Some("1".into()), online: true }).collect();
    let policy = Policy { canary: CanarySize::Percent(100), rate: RateLimit { per_minute: 100000, burst: 100000 }, max_in_flight: 100000, ..Policy::default() };
    let spec = CampaignSpec { name: "b".into(), offer, module: None, settings: DialectSettings::default(), policy };
    let mut c = Campaign::new(CampaignId(1), spec, targets, Timestamp::from_millis(0)).unwrap();
    store.create_campaign(&c.persisted()).unwrap();
    let t0 = Instant::now();
    let acts = c.handle(Input::Start, Timestamp::from_millis(1), &mut SequentialIds::new());
    let machine = t0.elapsed();
    let ts: Vec<Transition> = acts.into_iter().filter_map(|a| match a { Action::Persist(t) => Some(t), _ => None }).collect();
    let (one, batch) = ts.split_at(1000);
    let t1 = Instant::now();
    for t in one { store.apply(t).unwrap(); }
    let single = t1.elapsed();
    let t2 = Instant::now();
    store.apply_all(batch).unwrap();
    let batched = t2.elapsed();
    println!("start of 2000 devices: machine {machine:?} for {} transitions; apply one by one: {} tx in {single:?} ({:.0}/s); apply_all: {} in {batched:?}", ts.len(), one.len(), one.len() as f64 / single.as_secs_f64(), batch.len());
}
