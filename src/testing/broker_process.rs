//! A broker in a process of its own that a test can kill -9 and start again on the same port:
//! the embedded broker (`ota-console broker`) or Mosquitto, behind one trait.

use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::console::console_binary;
use super::mosquitto::Mosquitto;

const WAIT: Duration = Duration::from_secs(15);

/// A broker the test can take away and bring back.
pub trait KillableBroker {
    /// `mqtt://127.0.0.1:PORT`
    fn url(&self) -> String;
    /// SIGKILL: no clean disconnect, nothing persisted.
    fn kill(&mut self);
    /// Starts it again on the same port and waits until it accepts connections.
    fn restart(&mut self);
}

impl KillableBroker for Mosquitto {
    fn url(&self) -> String {
        Mosquitto::url(self)
    }

    fn kill(&mut self) {
        Mosquitto::kill(self);
    }

    fn restart(&mut self) {
        Mosquitto::restart(self);
    }
}

/// `ota-console broker --open-broker --listen 127.0.0.1:PORT`, killed with SIGKILL when dropped.
pub struct EmbeddedBrokerProcess {
    child: Child,
    port: u16,
}

impl EmbeddedBrokerProcess {
    pub fn start(port: u16) -> Self {
        let child = Command::new(console_binary())
            // Open: the tests that kill it are about faults, not access (tests/cli_broker.rs
            // covers the secure default of this command).
            .args([
                "broker",
                "--open-broker",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ota-console broker starts");
        let mut broker = EmbeddedBrokerProcess { child, port };
        broker.wait_listening();
        broker
    }

    fn wait_listening(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let started = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ota-console broker exited with {status}");
            }
            assert!(
                started.elapsed() < WAIT,
                "ota-console broker did not listen within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl KillableBroker for EmbeddedBrokerProcess {
    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn restart(&mut self) {
        *self = Self::start(self.port);
    }
}

impl Drop for EmbeddedBrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
