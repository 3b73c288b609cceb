//! The real `ota-console` binary as a child process in black-box tests: spawned with its stderr
//! read line by line on a thread, waited on with a bound, and killed with SIGKILL to simulate a
//! crash. Never sleeps for luck: every wait ends at a deadline and says what it saw.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `ota-console` binary cargo built for this test run. Cargo gives an integration test the
/// path at compile time (`CARGO_BIN_EXE_ota-console`), but this library is compiled before
/// the tests: the variable is read at run time when the runner sets it (cargo-nextest does),
/// else the binary is where cargo puts it, beside the `deps/` folder of the test executable.
pub fn console_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CARGO_BIN_EXE_ota-console") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable is in <target>/<profile>/deps/");
    let binary = profile_dir.join(format!("ota-console{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} was not built (cargo builds it for integration tests)",
        binary.display()
    );
    binary
}

/// The longest a test waits for one line or for the console to exit.
pub const WAIT_FOR_CONSOLE: Duration = Duration::from_secs(90);

pub struct Console {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Console {
    /// Starts `ota-console ARGS` with its data directory (packages) in `data_dir`.
    pub fn spawn(args: &[String], data_dir: &Path) -> Console {
        let mut child = Command::new(console_binary())
            .args(args)
            .env("OTA_CONSOLE_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("console starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let line = match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => String::from_utf8_lossy(&buf).trim_end().to_owned(),
                    Err(e) => format!("<cannot read the console's stderr: {e}>"),
                };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Console {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a stderr line containing `needle` and returns it.
    pub fn expect_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT_FOR_CONSOLE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line with {needle:?} ({e}); console {:?}; saw {:#?}",
                    self.child.try_wait(),
                    self.seen
                ),
            }
        }
    }

    /// Waits for `campaign N running` and returns N.
    pub fn campaign_id(&mut self) -> i64 {
        let line = self.expect_line(" running");
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no campaign id in {line:?}"))
    }

    /// Takes the lines printed so far into `seen`, without waiting.
    pub fn drain(&mut self) {
        self.seen.extend(self.lines.try_iter());
    }

    /// SIGKILL: the console gets no chance to flush, close or say goodbye.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        let _ = self.child.wait();
        self.drain();
    }

    /// Waits (bounded) for the console to exit; its exit code and every stderr line.
    pub fn wait(mut self) -> (i32, Vec<String>) {
        let deadline = Instant::now() + WAIT_FOR_CONSOLE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread may still hold the last lines: drain until it hangs up.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(line);
                }
                return (status.code().unwrap_or(-1), std::mem::take(&mut self.seen));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("console did not finish; saw {:#?}", self.seen);
            }
            self.seen.extend(self.lines.try_iter());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Console {
    /// A failed assertion must not leave a console running behind the test.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `rollout` with a broker, a firmware server on a free loopback port, a database in `dir`,
/// the package `fw` as version 2.0.0, a generous rate and a 30 s device timeout.
pub fn rollout_args(broker: &str, dir: &Path, fw: &Path) -> Vec<String> {
    [
        "rollout",
        "--broker",
        broker,
        "--http-bind",
        "127.0.0.1:0",
        "--db",
        &dir.join("console.db").display().to_string(),
        "--firmware",
        &fw.display().to_string(),
        "--version",
        "2.0.0",
        "--rate",
        "6000/min",
        "--device-timeout",
        "30s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Replaces the value of `flag` in `args` (which must hold it).
pub fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let at = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} is not in {args:?}"));
    args[at + 1] = value.to_owned();
}
