//! A device app on an official vendor SDK (tests/sdk/*_device.py), run as a child process that
//! prints one JSON event per line: the events read on a thread, waited for with a bound, the
//! stderr kept for the failure message. Shared by tests/sdk_aliyun.rs and tests/sdk_aws.rs;
//! each builds its own command line.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long a device app may take for any one step.
pub const DEVICE_WAIT: Duration = Duration::from_secs(60);

/// One running device app.
pub struct SdkDevice {
    name: String,
    child: Child,
    /// Kept open: the app exits when it closes.
    _stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    stderr: Arc<Mutex<String>>,
}

impl SdkDevice {
    /// Starts `command` (the app and its options) as device `name`.
    pub fn spawn(name: &str, mut command: Command) -> SdkDevice {
        let mut child = command
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the SDK device {name}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|_| json!({"event": "not_json", "line": line}));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        SdkDevice {
            name: name.to_owned(),
            child,
            _stdin: stdin,
            events,
            seen: Vec::new(),
            stderr,
        }
    }

    /// The device's name, as it was started.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits (at most [`DEVICE_WAIT`]) for the next event named `name` and returns it.
    pub fn expect(&mut self, name: &str) -> Value {
        self.expect_within(name, DEVICE_WAIT)
    }

    /// Waits at most `wait` for the next event named `name` and returns it.
    pub fn expect_within(&mut self, name: &str, wait: Duration) -> Value {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => {
                    self.seen.push(event.clone());
                    if event["event"] == name {
                        return event;
                    }
                }
                Err(e) => panic!(
                    "SDK device {}: no {name:?} event ({e}); exited: {:?}; events {:#?}; stderr:\n{}",
                    self.name,
                    self.child.try_wait(),
                    self.seen,
                    self.stderr.lock().unwrap()
                ),
            }
        }
    }

    /// Every event up to now, without waiting.
    pub fn drain(&mut self) -> &[Value] {
        self.seen.extend(self.events.try_iter());
        &self.seen
    }

    /// Waits (at most [`DEVICE_WAIT`]) for the app to exit on its own; its exit code.
    pub fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + DEVICE_WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= deadline {
                let events = self.drain().to_vec();
                panic!("SDK device {} did not exit; events {events:#?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SdkDevice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
