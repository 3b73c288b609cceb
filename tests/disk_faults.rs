//! Disk faults of the real `ota-console rollout`: a database or firmware store on a read-only
//! mount, a disk that fills up while a package is imported, and a temp file a crashed import
//! left on a nearly full disk. The promises checked:
//!
//! - the console exits non-zero with an `error:` line that names the path and says why
//!   (read-only, no space left), never a panic or a backtrace;
//! - nothing half-written is kept or served: no partial or temp file in the store, no package
//!   or campaign in the database (which passes `integrity_check`), no notice to any device;
//! - with the fault gone, the same command works (so the error was about the disk).
//!
//! Tests run as root (here and in CI), and root ignores file modes, so a read-only or full disk
//! must be a real mount: each console runs in a shell inside a private mount (and PID) namespace
//! made with `unshare`, which mounts a tmpfs (`ro`, or `size=1m`) before starting it. Nothing
//! is mounted in the test process's own namespace, and the PID namespace makes sure nothing
//! started there outlives the test. Without `unshare` and namespaces these tests fail and say so.

// Test code throughout: clippy's allow-unwrap-in-tests (clippy.toml) goes by `cfg(test)`.
#![cfg(test)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ota_console::device_id::DeviceId;
use ota_console::firmware::{CancelToken, hash_file};
use ota_console::sim::{Behaviour, SimConfig, SimFleet};
use ota_console::store::Store;
use ota_console::testing::firmware_file;
use ota_console::testing::sim_units;
use ota_console::transport::broker::{BrokerSettings, EmbeddedBroker};

/// The longest a test waits for one step of a namespace script (a console run included).
const WAIT: Duration = Duration::from_secs(90);
/// Bigger than the small tmpfs, so the import cannot fit.
const FIRMWARE_BYTES: usize = 3 * 1024 * 1024;

/// `unshare` flags: own user namespace (so a non-root developer may mount, where allowed), own
/// mount and PID namespaces; killing `unshare` kills the shell, PID 1 of the namespace, which
/// takes every process in it along.
const UNSHARE: &[&str] = &[
    "--user",
    "--map-root-user",
    "--mount",
    "--pid",
    "--fork",
    "--kill-child",
];

/// A shell script running inside a private mount namespace. The script prints marker lines on
/// stdout and may stop at `pause` until the test calls [`Sandbox::resume`], so the test can
/// look at the mounted file systems' copies and the fleet between two console runs.
struct Sandbox {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// Shell functions every script can use. `run NAME ARGS...` runs the console with stderr to
/// `$OUT/NAME.err` and prints `NAME exited CODE` (a failing console does not end a `set -e`
/// script); `pause NAME` prints `NAME paused` and waits for a line on stdin.
const PRELUDE: &str = r#"
set -u
run() { name=$1; shift; "$BIN" "$@" 2>"$OUT/$name.err" && rc=0 || rc=$?; echo "$name exited $rc"; }
pause() { echo "$1 paused"; read -r _; }
"#;

impl Sandbox {
    fn start(script: &str, out: &Path) -> Sandbox {
        require_namespaces();
        let mut child = Command::new("unshare")
            .args(UNSHARE)
            .args(["sh", "-c", &format!("{PRELUDE}\n{script}")])
            .env("BIN", env!("CARGO_BIN_EXE_ota-console"))
            .env("OUT", out)
            .env("RUST_LOG", "warn")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unshare starts (checked by require_namespaces)");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sandbox {
            child,
            stdin,
            stdout: lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for the stdout line starting with `prefix`; returns the rest of it.
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "the namespace script printed no {prefix:?} within {WAIT:?}; stdout {:#?}",
                    self.seen
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "the namespace script ended ({:?}) before printing {prefix:?}; stdout {:#?}",
                    self.child.wait(),
                    self.seen
                ),
            }
        }
    }

    /// The exit code of console run `name` (waits for it).
    fn exit_code(&mut self, name: &str) -> i32 {
        let rest = self.expect(&format!("{name} exited "));
        rest.trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad exit line for {name}: {rest:?}"))
    }

    fn wait_paused(&mut self, name: &str) {
        self.expect(&format!("{name} paused"));
    }

    fn resume(&mut self) {
        let stdin = self.stdin.as_mut().expect("script still running");
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits (bounded) for the script to end and checks that it ran to its last line.
    fn finish(mut self) {
        self.stdin = None;
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "namespace script failed ({status}); stdout {:#?}",
                    self.seen
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "namespace script did not end; stdout {:#?}",
                self.seen
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // After a failed assertion: the PID namespace dies with the shell, consoles included.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails (never skips) when this machine cannot give a console its own mounts.
fn require_namespaces() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Command::new("unshare")
        .args(UNSHARE)
        .args([
            "sh",
            "-c",
            r#"mount -t tmpfs -o ro,size=64k tmpfs "$1" && mount --bind "$1" "$1" \
               && mount -o remount,bind,ro "$1""#,
            "probe",
        ])
        .arg(dir.path())
        .output();
    let why = match probe {
        Ok(out) if out.status.success() => return,
        Ok(out) => format!(
            "it failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("it could not be run: {e}"),
    };
    panic!(
        "the disk fault tests need `unshare` (util-linux) and the right to create user, mount \
         and PID namespaces and mount a tmpfs in them (root, or unprivileged user namespaces \
         enabled: sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0); \
         `unshare {}` {why}",
        UNSHARE.join(" ")
    );
}

/// A quoted shell word.
fn sh(word: impl AsRef<std::ffi::OsStr>) -> String {
    let text = word.as_ref().to_string_lossy().into_owned();
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn sh_args(args: &[OsString]) -> String {
    args.iter().map(sh).collect::<Vec<_>>().join(" ")
}

fn sha256_of(path: &Path) -> String {
    hash_file(path, &mut |_, _| {}, &CancelToken::new())
        .unwrap()
        .sha256
}

/// The console's stderr of run `name`, as lines.
fn stderr_of(out: &Path, name: &str) -> Vec<String> {
    std::fs::read_to_string(out.join(format!("{name}.err")))
        .unwrap_or_else(|e| panic!("no stderr of {name}: {e}"))
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The `error:` line the console ends with, checked for what every disk error must be: the
/// last line, naming `path`, saying `why` (case-insensitive), and no panic anywhere.
fn final_error(lines: &[String], path: &Path, why: &str) -> String {
    for line in lines {
        assert!(
            !line.contains("panicked") && !line.to_lowercase().contains("backtrace"),
            "the console panicked: {lines:#?}"
        );
    }
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("error: "),
        "no final error line: {lines:#?}"
    );
    assert!(
        last.contains(&path.display().to_string()),
        "the error does not name {}: {last}",
        path.display()
    );
    assert!(
        last.to_lowercase().contains(&why.to_lowercase()),
        "the error does not say {why:?}: {last}"
    );
    last
}

/// Entries of a directory, sorted (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The entries of a data directory other than the console's MQTT session files (its client id
/// and the session lock, written whole at start, before anything can fail).
fn entries_but_session(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| {
            n != "mqtt-client-id" && !(n.starts_with("mqtt-session-") && n.ends_with(".lock"))
        })
        .collect()
}

/// The database holds no package and no campaign, and is sound.
fn assert_db_untouched(db: &Path) {
    let store = Store::open(db).unwrap();
    store.integrity_check().unwrap();
    assert_eq!(
        store.list_packages().unwrap(),
        Vec::new(),
        "{}",
        db.display()
    );
    assert!(
        store.list_campaigns().unwrap().is_empty(),
        "{}",
        db.display()
    );
}

/// A broker and a simulated fleet in this process; consoles in namespaces reach them over
/// loopback (the namespaces share the network).
struct Rig {
    rt: tokio::runtime::Runtime,
    broker: EmbeddedBroker,
    fleet: Option<SimFleet>,
}

impl Rig {
    fn start(devices: usize) -> Rig {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let broker =
            EmbeddedBroker::start(BrokerSettings::open("127.0.0.1:0".parse().unwrap())).unwrap();
        let fleet = rt
            .block_on(SimFleet::start(SimConfig {
                broker_url: format!("mqtt://{}", broker.local_addr()),
                units: sim_units(&[("aliyun", devices)]),
                version: "1.0.0".into(),
                behaviour: Behaviour {
                    install: Duration::from_millis(50),
                    ..Behaviour::default()
                },
                // Devices download like embedded SDKs: exact header names, Content-Length
                // required.
                strict: true,
                ..SimConfig::default()
            }))
            .unwrap();
        let rig = Rig {
            rt,
            broker,
            fleet: Some(fleet),
        };
        rig.wait_connected();
        rig
    }

    fn fleet(&self) -> &SimFleet {
        self.fleet.as_ref().unwrap()
    }

    fn wait_connected(&self) {
        let deadline = Instant::now() + WAIT;
        while self.fleet().stats().devices.iter().any(|d| d.connects == 0) {
            assert!(Instant::now() < deadline, "the fleet did not connect");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `rollout` of `fw` to every device of the fleet, with the database at `db` and the data
    /// directory (firmware store) at `data`.
    fn rollout_args(&self, db: &Path, data: &Path, fw: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = [
            "rollout",
            "--broker",
            &format!("mqtt://{}", self.broker.local_addr()),
            "--http-bind",
            "127.0.0.1:0",
            "--version",
            "2.0.0",
            "--rate",
            "6000/min",
            "--device-timeout",
            "30s",
            "--discover-for",
            "0s",
            "--wave",
            "100%",
        ]
        .map(OsString::from)
        .to_vec();
        args.extend(["--db".into(), db.into(), "--data-dir".into(), data.into()]);
        args.extend(["--firmware".into(), fw.into()]);
        for id in self.fleet().device_ids() {
            args.extend(["--target".into(), id.to_string().into()]);
        }
        args
    }

    fn notices(&self) -> Vec<(DeviceId, u64)> {
        self.fleet()
            .stats()
            .devices
            .iter()
            .map(|d| (d.id.clone(), d.notices_received))
            .collect()
    }

    fn assert_no_notice(&self) {
        for (id, n) in self.notices() {
            assert_eq!(n, 0, "{id} was noticed for a package that was never stored");
        }
    }

    /// After a successful run: every device upgraded, each with exactly one notice (so none
    /// came from the failed run before).
    fn assert_upgraded_once(&self) {
        for d in &self.fleet().stats().devices {
            assert_eq!(d.version, "2.0.0", "{d:?}");
            assert_eq!(d.notices_received, 1, "{d:?}");
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(fleet) = self.fleet.take() {
            self.rt.block_on(fleet.shutdown());
        }
    }
}

/// The database cannot be written: the console stops before doing anything, with one line that
/// names the file or directory and says it is read-only.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario per way the database can be unwritable, in one sandbox"
)]
#[test]
fn an_unwritable_database_stops_the_console_with_one_line() {
    let root = tempfile::tempdir().unwrap();
    let fw = firmware_file(root.path(), FIRMWARE_BYTES);
    let out = root.path().join("out");
    std::fs::create_dir(&out).unwrap();
    // Where nothing listens: the database is opened before any connection is tried.
    let base: Vec<OsString> = [
        "rollout",
        "--broker",
        "mqtt://127.0.0.1:9",
        "--http-bind",
        "127.0.0.1:0",
        "--version",
        "2.0.0",
        "--target",
        "aliyun:a1Product/dev1",
        "--firmware",
    ]
    .map(OsString::from)
    .into_iter()
    .chain([fw.clone().into_os_string()])
    .collect();

    struct Case {
        name: &'static str,
        db: PathBuf,
        data: PathBuf,
        /// What the error line must name (besides saying "read-only").
        named: PathBuf,
    }
    let dir = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        // Already private: the console's start-up finds nothing to tighten in the data folder.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        dir
    };
    // A fresh, private data folder on a read-only mount (the database is created inside it).
    let ro_data = dir("ro-data");
    // The same with a mount whose mode the console would tighten: it cannot.
    let loose_data = dir("loose-data");
    // `--db` on a read-only mount, the data folder writable.
    let ro_db_dir = dir("ro-db");
    let rw_data = dir("rw-data");
    // An existing database, its folder mounted read-only.
    let old_dir = dir("old");
    // An existing database whose file alone is mounted read-only (its folder is writable).
    let old_file_dir = dir("old-file");
    for dir in [&old_dir, &old_file_dir] {
        Store::open(&dir.join("console.db")).unwrap();
    }
    let before = std::fs::read(old_dir.join("console.db")).unwrap();

    let cases = [
        Case {
            name: "fresh",
            db: ro_data.join("ota-console.db"),
            data: ro_data.clone(),
            named: ro_data.join("ota-console.db"),
        },
        Case {
            name: "loose",
            db: loose_data.join("ota-console.db"),
            data: loose_data.clone(),
            named: loose_data.clone(),
        },
        Case {
            name: "db_flag",
            db: ro_db_dir.join("console.db"),
            data: rw_data.clone(),
            named: ro_db_dir.join("console.db"),
        },
        Case {
            name: "existing",
            db: old_dir.join("console.db"),
            data: old_dir.clone(),
            named: old_dir.join("console.db"),
        },
        Case {
            name: "existing_file",
            db: old_file_dir.join("console.db"),
            data: old_file_dir.clone(),
            named: old_file_dir.join("console.db"),
        },
    ];
    let mut script = String::from("set -e\n");
    script += &format!(
        "mount -t tmpfs -o ro,mode=0700 tmpfs {}\n\
         mount -t tmpfs -o ro,mode=0700 tmpfs {}\n\
         mount -t tmpfs -o ro,mode=0755 tmpfs {}\n",
        sh(&ro_data),
        sh(&ro_db_dir),
        sh(&loose_data)
    );
    for bound in [&old_dir, &old_file_dir.join("console.db")] {
        // A read-only bind mount of the thing itself: the same bytes, no longer writable.
        script += &format!(
            "mount --bind {p} {p}\nmount -o remount,bind,ro {p}\n",
            p = sh(bound)
        );
    }
    for case in &cases {
        let mut args = base.clone();
        args.extend([
            "--db".into(),
            case.db.clone().into(),
            "--data-dir".into(),
            case.data.clone().into(),
        ]);
        script += &format!("run {} {}\n", case.name, sh_args(&args));
    }
    let mut sandbox = Sandbox::start(&script, &out);
    for case in &cases {
        let code = sandbox.exit_code(case.name);
        let lines = stderr_of(&out, case.name);
        assert_ne!(code, 0, "{}: {lines:#?}", case.name);
        assert_eq!(
            lines.len(),
            1,
            "{}: one line expected: {lines:#?}",
            case.name
        );
        final_error(&lines, &case.named, "read-only");
    }
    sandbox.finish();

    // The existing database was not touched, and no -wal/-shm files were left beside it.
    assert_eq!(std::fs::read(old_dir.join("console.db")).unwrap(), before);
    assert_eq!(entries(&old_dir), vec!["console.db"]);
    Store::open(&old_file_dir.join("console.db"))
        .unwrap()
        .integrity_check()
        .unwrap();
}

/// The firmware store is on a read-only mount while the database is writable: the import
/// fails naming the store, no package or campaign is recorded, no device is noticed. Without
/// the mount, the same command then completes the rollout on the same database.
#[test]
fn an_unwritable_firmware_store_fails_the_import_and_records_nothing() {
    let rig = Rig::start(2);
    let root = tempfile::tempdir().unwrap();
    let fw = firmware_file(root.path(), FIRMWARE_BYTES);
    let out = root.path().join("out");
    let data = root.path().join("data");
    let store = data.join("firmware");
    for dir in [&out, &data, &store] {
        std::fs::create_dir(dir).unwrap();
    }
    let db = data.join("ota-console.db");
    let args = sh_args(&rig.rollout_args(&db, &data, &fw));
    let script = format!(
        "set -e\n\
         mount -t tmpfs -o ro tmpfs {store}\n\
         run readonly {args}\n\
         pause readonly\n\
         umount {store}\n\
         run writable {args}\n",
        store = sh(&store)
    );
    let mut sandbox = Sandbox::start(&script, &out);

    let code = sandbox.exit_code("readonly");
    let lines = stderr_of(&out, "readonly");
    assert_ne!(code, 0, "{lines:#?}");
    let line = final_error(&lines, &store, "read-only");
    assert!(line.contains("firmware store"), "{line}");
    sandbox.wait_paused("readonly");
    assert_db_untouched(&db);
    rig.assert_no_notice();

    sandbox.resume();
    let code = sandbox.exit_code("writable");
    assert_eq!(code, 0, "{:#?}", stderr_of(&out, "writable"));
    sandbox.finish();
    rig.assert_upgraded_once();
    let sha = sha256_of(&fw);
    let db = Store::open(&db).unwrap();
    db.integrity_check().unwrap();
    let packages = db.list_packages().unwrap();
    assert_eq!(packages.len(), 1);
    assert_eq!(packages[0].sha256, sha);
    assert_eq!(db.list_campaigns().unwrap().len(), 1);
    assert_eq!(entries(&store), vec![sha.clone(), format!("{sha}.json")]);
}

/// Where the database lives in the disk-full scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DbPlace {
    /// On a normal disk; only the store fills up.
    Elsewhere,
    /// On the same full tmpfs as the store.
    SameDisk,
}

/// The disk fills up while the package is copied into the store: a clear "no space left"
/// error, and afterwards no partial or temp file, no package or campaign in the database, no
/// notice. With more space (a bigger tmpfs holding what the full one held) the same command
/// completes.
fn disk_full_while_importing(place: DbPlace) {
    let rig = Rig::start(2);
    let root = tempfile::tempdir().unwrap();
    let fw = firmware_file(root.path(), FIRMWARE_BYTES);
    let out = root.path().join("out");
    let data = root.path().join("data");
    let normal = root.path().join("normal");
    for dir in [&out, &data, &normal] {
        std::fs::create_dir(dir).unwrap();
    }
    let db = match place {
        DbPlace::Elsewhere => normal.join("console.db"),
        DbPlace::SameDisk => data.join("ota-console.db"),
    };
    let store = data.join("firmware");
    let args = sh_args(&rig.rollout_args(&db, &data, &fw));
    // What the tmpfs held after each run is copied out before the namespace (and it) ends.
    // More space is a bigger tmpfs over the full one, holding what it held: a tmpfs cannot be
    // resized with `remount` inside a user namespace of a non-root developer.
    let script = format!(
        "set -e\n\
         mount -t tmpfs -o size=1m tmpfs {data}\n\
         run full {args}\n\
         mkdir {out}/after-full && cp -a {data}/. {out}/after-full/\n\
         pause full\n\
         mount -t tmpfs -o size=16m tmpfs {data}\n\
         cp -a {out}/after-full/. {data}/\n\
         run roomy {args}\n\
         mkdir {out}/after-roomy && cp -a {data}/. {out}/after-roomy/\n",
        data = sh(&data),
        out = sh(&out),
    );
    let mut sandbox = Sandbox::start(&script, &out);

    let code = sandbox.exit_code("full");
    let lines = stderr_of(&out, "full");
    assert_ne!(code, 0, "{lines:#?}");
    let line = final_error(&lines, &store, "no space left");
    assert!(line.contains("firmware store"), "{line}");
    sandbox.wait_paused("full");
    let copy = out.join("after-full");
    let store_copy = copy.join("firmware");
    assert_eq!(
        entries(&store_copy),
        Vec::<String>::new(),
        "a partial package or temp file was left in the store"
    );
    match place {
        DbPlace::Elsewhere => {
            assert_eq!(entries_but_session(&copy), vec!["firmware"]);
            assert_db_untouched(&db);
        }
        DbPlace::SameDisk => {
            let names = entries_but_session(&copy);
            assert!(
                names
                    .iter()
                    .all(|n| n == "firmware" || n.starts_with("ota-console.db")),
                "{names:?}"
            );
            assert_db_untouched(&copy.join("ota-console.db"));
        }
    }
    rig.assert_no_notice();

    sandbox.resume();
    let code = sandbox.exit_code("roomy");
    assert_eq!(code, 0, "{:#?}", stderr_of(&out, "roomy"));
    sandbox.finish();
    rig.assert_upgraded_once();
    let sha = sha256_of(&fw);
    let copy = out.join("after-roomy");
    assert_eq!(
        entries(&copy.join("firmware")),
        vec![sha.clone(), format!("{sha}.json")]
    );
    assert_eq!(sha256_of(&copy.join("firmware").join(&sha)), sha);
    let db = match place {
        DbPlace::Elsewhere => db,
        DbPlace::SameDisk => copy.join("ota-console.db"),
    };
    let db = Store::open(&db).unwrap();
    db.integrity_check().unwrap();
    let packages = db.list_packages().unwrap();
    assert_eq!(packages.len(), 1);
    assert_eq!(packages[0].sha256, sha);
    assert_eq!(db.list_campaigns().unwrap().len(), 1);
}

#[test]
fn disk_full_under_the_store_with_the_database_elsewhere() {
    disk_full_while_importing(DbPlace::Elsewhere);
}

#[test]
fn disk_full_under_the_store_and_the_database() {
    disk_full_while_importing(DbPlace::SameDisk);
}

/// A crashed import left a big temp file on a disk that now has no room for the next import
/// beside it: the import sweeps the dead temp file first and fits. A temp file of a live import
/// (recent) is left alone.
#[test]
fn a_temp_file_left_by_a_crash_is_swept_before_the_next_import() {
    let rig = Rig::start(1);
    let root = tempfile::tempdir().unwrap();
    let fw = firmware_file(root.path(), FIRMWARE_BYTES);
    let out = root.path().join("out");
    let data = root.path().join("data");
    for dir in [&out, &data] {
        std::fs::create_dir(dir).unwrap();
    }
    let db = root.path().join("console.db");
    let store = data.join("firmware");
    let args = sh_args(&rig.rollout_args(&db, &data, &fw));
    // 5 MiB: the 3 MiB package fits, but not beside the 2.5 MiB a crash left.
    let script = format!(
        "set -e\n\
         mount -t tmpfs -o size=5m tmpfs {data}\n\
         mkdir {store}\n\
         head -c 2621440 /dev/zero > {store}/.import-crashed\n\
         touch -d '2 hours ago' {store}/.import-crashed\n\
         echo live > {store}/.import-live\n\
         run swept {args}\n\
         mkdir {out}/after && cp -a {data}/. {out}/after/\n",
        data = sh(&data),
        store = sh(&store),
        out = sh(&out),
    );
    let mut sandbox = Sandbox::start(&script, &out);
    let code = sandbox.exit_code("swept");
    assert_eq!(code, 0, "{:#?}", stderr_of(&out, "swept"));
    sandbox.finish();
    rig.assert_upgraded_once();
    let sha = sha256_of(&fw);
    assert_eq!(
        entries(&out.join("after").join("firmware")),
        vec![
            ".import-live".to_owned(),
            sha.clone(),
            format!("{sha}.json")
        ]
    );
}

/// The disk under the database fills up while a rollout runs: the console stops sending (no
/// notice the database does not know of), says so, and exits; with space again, `--resume`
/// finishes the rollout and no device that had succeeded is noticed again.
#[expect(
    clippy::too_many_lines,
    reason = "one scenario: fill the disk mid-rollout, check the stop, free it, resume"
)]
#[test]
fn a_disk_that_fills_mid_rollout_stops_the_rollout_and_resume_finishes_it() {
    let rig = Rig::start(6);
    let root = tempfile::tempdir().unwrap();
    let fw = firmware_file(root.path(), FIRMWARE_BYTES);
    let out = root.path().join("out");
    let data = root.path().join("data");
    for dir in [&out, &data] {
        std::fs::create_dir(dir).unwrap();
    }
    let db = data.join("ota-console.db");
    // Devices keep the URL they were given: both runs serve on the same address.
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut first = rig.rollout_args(&db, &data, &fw);
    for (flag, value) in [
        ("--http-bind", http.as_str()),
        ("--rate", "60/min"),
        ("--device-timeout", "5s"),
    ] {
        let at = first.iter().position(|a| a == flag).unwrap() + 1;
        first[at] = value.into();
    }
    first.extend(
        [
            "--concurrency",
            "1",
            "--retries",
            "3",
            "--retry-interval",
            "1s",
        ]
        .map(OsString::from),
    );
    let resume_args = |id: &str| -> Vec<OsString> {
        let broker = first[first.iter().position(|a| a == "--broker").unwrap() + 1].clone();
        [
            "rollout".into(),
            "--broker".into(),
            broker,
            "--http-bind".into(),
            http.clone().into(),
            "--db".into(),
            db.clone().into(),
            "--data-dir".into(),
            data.clone().into(),
            "--resume".into(),
            id.into(),
        ]
        .to_vec()
    };
    let script = format!(
        "set -e\n\
         mount -t tmpfs -o size=8m tmpfs {data}\n\
         ( run mid {args} ) &\n\
         pause filling\n\
         dd if=/dev/zero of={data}/filler bs=64k 2>/dev/null || true\n\
         echo filled\n\
         wait\n\
         mkdir {out}/after-mid && cp -a {data}/. {out}/after-mid/\n\
         pause stopped\n\
         rm {data}/filler\n\
         read -r id\n\
         eval \"run resumed $(printf '%s' \"$id\")\"\n",
        data = sh(&data),
        out = sh(&out),
        args = sh_args(&first),
    );
    let mut sandbox = Sandbox::start(&script, &out);
    sandbox.wait_paused("filling");

    // Fill the disk once two devices are through and the rest wait their turn.
    let deadline = Instant::now() + WAIT;
    while rig
        .fleet()
        .stats()
        .devices
        .iter()
        .filter(|d| d.version == "2.0.0")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "no device upgraded before the fill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sandbox.resume();
    sandbox.expect("filled");
    let code = sandbox.exit_code("mid");
    let lines = stderr_of(&out, "mid");
    assert_eq!(code, 2, "{lines:#?}");
    let last = lines.last().cloned().unwrap_or_default();
    assert!(
        last.contains("stopped") && last.to_lowercase().contains("full"),
        "{lines:#?}"
    );
    let id: String = last
        .split("--resume ")
        .nth(1)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| panic!("no resume hint in {last:?}"));
    let noticed_by_first_run = rig.notices();
    sandbox.wait_paused("stopped");

    // Everything the first run sent is in its database: a notice per recorded attempt.
    let copy = Store::open(&out.join("after-mid").join("ota-console.db")).unwrap();
    copy.integrity_check().unwrap();
    let campaign = ota_console::rollout::CampaignId(id.parse().unwrap());
    let recorded = copy.device_outcomes(campaign).unwrap();
    for (device, notices) in &noticed_by_first_run {
        let attempts = recorded
            .iter()
            .find(|r| r.device == *device)
            .map_or(0, |r| r.attempts);
        assert!(
            *notices <= u64::from(attempts),
            "{device} got {notices} notice(s), the database knows of {attempts}"
        );
    }
    let succeeded_before: Vec<DeviceId> = recorded
        .iter()
        .filter(|r| r.status == ota_console::rollout::DeviceStatus::Succeeded)
        .map(|r| r.device.clone())
        .collect();
    assert!(succeeded_before.len() >= 2 && succeeded_before.len() < 6);

    sandbox.resume();
    let resume = sh_args(&resume_args(&id));
    let stdin = sandbox.stdin.as_mut().unwrap();
    writeln!(stdin, "{resume}").unwrap();
    stdin.flush().unwrap();
    let code = sandbox.exit_code("resumed");
    assert_eq!(code, 0, "{:#?}", stderr_of(&out, "resumed"));
    sandbox.finish();
    for d in &rig.fleet().stats().devices {
        assert_eq!(d.version, "2.0.0", "{d:?}");
    }
    for (device, notices) in rig.notices() {
        if succeeded_before.contains(&device) {
            assert_eq!(notices, 1, "{device} had succeeded and was noticed again");
        }
    }
}
